FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN scripts/setup && scripts/build && cmake --install build --prefix /opt/moongate

FROM debian:12-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libluajit-5.1-2 libuv1 lua-luv lua-cjson libcurl4 libwebsockets17 libwebsockets-evlib-uv \
      libhttp-parser2.9 zlib1g libzstd1 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/moongate /opt/moongate
ENV MOONGATE_LUA_DIR=/opt/moongate/share/moongate/lua MOONGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/opt/moongate/bin/moongate"]
CMD ["serve"]

# moongate on Debian 12, as the non-root user "moongate".
#   docker build -t moongate .
#   docker run -d -p 8080:8080 -v moongate:/home/moongate/.config/moongate moongate
# $MOONGATE_HOME (stored accounts) defaults to /home/moongate/.config/moongate:
# keep it in a volume. A config: -v ./config.lua:/etc/moongate/config.lua:ro
# and the command `serve --config /etc/moongate/config.lua`.
FROM debian:12-slim AS build
WORKDIR /src
# Only the sources: a build/ folder from the host would carry a foreign CMakeCache.
COPY CMakeLists.txt README.md ./
COPY src src
COPY lua lua
COPY scripts scripts
COPY packaging packaging
RUN scripts/setup && scripts/build && cmake --install build --prefix /opt/moongate

FROM debian:12-slim
# curl: only for the HEALTHCHECK (libcurl4 is needed anyway).
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libluajit2-5.1-2 libuv1 lua-luv lua-cjson libcurl4 libwebsockets17 libwebsockets-evlib-uv \
      libhttp-parser2.9 zlib1g libzstd1 ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/moongate --shell /usr/sbin/nologin moongate \
 && mkdir -p /home/moongate/.config/moongate \
 && chown -R moongate:moongate /home/moongate && chmod 700 /home/moongate/.config/moongate
# The binary finds /opt/moongate/share/moongate/lua by its own path.
COPY --from=build /opt/moongate /opt/moongate
ENV PATH=/opt/moongate/bin:$PATH MOONGATE_LISTEN=0.0.0.0:8080
USER moongate
WORKDIR /home/moongate
# A named volume mounted here starts as a copy of this folder: owned by moongate, mode 0700.
VOLUME /home/moongate/.config/moongate
EXPOSE 8080
# Checks the default port: change it with MOONGATE_LISTEN and this probe fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD curl -fsS --max-time 4 -o /dev/null http://127.0.0.1:8080/health || exit 1
# SIGTERM lets running streams finish for up to shutdown_timeout (30 s by
# default), past docker stop's 10 s: run with --stop-timeout 35 to give them that.
ENTRYPOINT ["/opt/moongate/bin/moongate"]
CMD ["serve"]

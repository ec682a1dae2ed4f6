/* A fast mock upstream for scripts/bench: libuv + http-parser, keep-alive,
 * TCP_NODELAY. It answers POST /v1/chat/completions (OpenAI) and
 * POST /v1/messages (Anthropic) by the model named in the body:
 *   "zero"    at once
 *   "delay20" after 20 ms
 *   "paced"   streamed: 64 deltas 20 ms apart (SSE, whatever "stream" says)
 *   "hold"    streamed: one delta a second for 10 s (for many open streams)
 *   "burst"   streamed: 2,000 deltas at once (CPU per frame)
 * Non-streamed answers are fixed JSON bodies; streamed ones end with the
 * format's own closing frames. Usage: mock PORT
 */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	http_parser parser;
	char url[64];
	char *body;
	size_t blen, bcap;
	int anthropic, stream, sent, total, interval;
	int closing, handles;
} conn;

static uv_loop_t *loop;
static http_parser_settings settings;

static const char oa_json[] =
	"{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
	"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello from the mock.\"},"
	"\"logprobs\":null,\"finish_reason\":\"stop\"}],"
	"\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":5,\"total_tokens\":14}}";
static const char an_json[] =
	"{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\","
	"\"content\":[{\"type\":\"text\",\"text\":\"Hello from the mock.\"}],\"stop_reason\":\"end_turn\","
	"\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":5}}";

static void on_closed(uv_handle_t *h)
{
	conn *c = h->data;
	if (--c->handles == 0) {
		free(c->body);
		free(c);
	}
}

static void conn_close(conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_close((uv_handle_t *)&c->timer, on_closed);
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

typedef struct { uv_write_t w; char data[]; } wreq;

static void on_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void send_bytes(conn *c, const char *p, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	int m;
	wreq *w;

	if (c->closing)
		return;
	m = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (m == (int)n)
		return;
	if (m < 0 && m != UV_EAGAIN) {
		conn_close(c);
		return;
	}
	if (m < 0)
		m = 0;
	w = malloc(sizeof *w + n - (size_t)m);
	memcpy(w->data, p + m, n - (size_t)m);
	b = uv_buf_init(w->data, (unsigned)(n - (size_t)m));
	uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

static void send_chunk(conn *c, const char *p, size_t n)
{
	char head[16];
	int hl = snprintf(head, sizeof head, "%zx\r\n", n);
	char *buf = malloc((size_t)hl + n + 2);
	memcpy(buf, head, (size_t)hl);
	memcpy(buf + hl, p, n);
	memcpy(buf + hl + n, "\r\n", 2);
	send_bytes(c, buf, (size_t)hl + n + 2);
	free(buf);
}

static void send_delta(conn *c)
{
	char frame[512];
	int n;

	if (c->anthropic) {
		if (c->sent == 0) {
			static const char start[] =
				"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock\","
				"\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,"
				"\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n"
				"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
				"\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
			send_chunk(c, start, sizeof start - 1);
		}
		n = snprintf(frame, sizeof frame, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
			     "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok%d \"}}\n\n", c->sent);
	} else {
		n = snprintf(frame, sizeof frame, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
			     "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"tok%d \"},"
			     "\"finish_reason\":null}]}\n\n", c->sent == 0 ? "\"role\":\"assistant\"," : "", c->sent);
	}
	send_chunk(c, frame, (size_t)n);
	c->sent++;
}

static void send_end(conn *c)
{
	static const char oa_end[] =
		"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
		"\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
		"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
		"\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":64,\"total_tokens\":73}}\n\n"
		"data: [DONE]\n\n";
	static const char an_end[] =
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
		"\"stop_sequence\":null},\"usage\":{\"output_tokens\":64}}\n\n"
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
	if (c->anthropic)
		send_chunk(c, an_end, sizeof an_end - 1);
	else
		send_chunk(c, oa_end, sizeof oa_end - 1);
	send_bytes(c, "0\r\n\r\n", 5);
	c->stream = 0;
	http_parser_pause(&c->parser, 0);
}

static void send_json(conn *c)
{
	char head[160];
	const char *body = c->anthropic ? an_json : oa_json;
	size_t bl = c->anthropic ? sizeof an_json - 1 : sizeof oa_json - 1;
	int hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
			  "content-length: %zu\r\n\r\n", bl);
	char *buf = malloc((size_t)hl + bl);
	memcpy(buf, head, (size_t)hl);
	memcpy(buf + hl, body, bl);
	send_bytes(c, buf, (size_t)hl + bl);
	free(buf);
}

static void on_tick(uv_timer_t *t)
{
	conn *c = t->data;

	if (!c->stream) { /* the delayed JSON answer */
		send_json(c);
		http_parser_pause(&c->parser, 0);
		return;
	}
	if (c->sent < c->total) {
		send_delta(c);
		uv_timer_start(&c->timer, on_tick, (uint64_t)c->interval, 0);
	} else {
		send_end(c);
	}
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	conn *c = p->data;
	size_t l = strlen(c->url);
	if (l + n < sizeof c->url) {
		memcpy(c->url + l, at, n);
		c->url[l + n] = 0;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	conn *c = p->data;
	if (c->blen + n + 1 > c->bcap) {
		c->bcap = (c->blen + n + 1) * 2;
		c->body = realloc(c->body, c->bcap);
	}
	memcpy(c->body + c->blen, at, n);
	c->blen += n;
	c->body[c->blen] = 0;
	return 0;
}

static int on_begin(http_parser *p)
{
	conn *c = p->data;
	c->url[0] = 0;
	c->blen = 0;
	if (c->body)
		c->body[0] = 0;
	return 0;
}

static int on_complete(http_parser *p)
{
	conn *c = p->data;
	const char *b = c->body ? c->body : "";

	c->anthropic = strstr(c->url, "/messages") != NULL;
	if (strstr(b, "\"burst\"")) {
		static const char head[] = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
					   "transfer-encoding: chunked\r\n\r\n";
		c->stream = 1;
		c->sent = 0;
		send_bytes(c, head, sizeof head - 1);
		while (c->sent < 2000)
			send_delta(c);
		send_end(c);
	} else if (strstr(b, "\"paced\"") || strstr(b, "\"hold\"")) {
		static const char head[] = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
					   "transfer-encoding: chunked\r\n\r\n";
		int hold = strstr(b, "\"hold\"") != NULL;
		c->stream = 1;
		c->sent = 0;
		c->total = hold ? 10 : 64;
		c->interval = hold ? 1000 : 20;
		send_bytes(c, head, sizeof head - 1);
		send_delta(c);
		uv_timer_start(&c->timer, on_tick, (uint64_t)c->interval, 0);
		http_parser_pause(p, 1);
	} else if (strstr(b, "\"delay20\"")) {
		c->stream = 0;
		uv_timer_start(&c->timer, on_tick, 20, 0);
		http_parser_pause(p, 1);
	} else {
		send_json(c);
	}
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(s);
	b->len = s;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	conn *c = s->data;

	if (n > 0) {
		size_t done = http_parser_execute(&c->parser, &settings, b->base, (size_t)n);
		/* a paused parser (delayed answer) leaves the rest: clients here
		 * do not pipeline, so it is dropped */
		if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK &&
		    HTTP_PARSER_ERRNO(&c->parser) != HPE_PAUSED)
			conn_close(c);
		(void)done;
	} else if (n < 0) {
		conn_close(c);
	}
	free(b->base);
}

static void on_conn(uv_stream_t *server, int status)
{
	conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
	uv_tcp_t server;
	struct sockaddr_in addr;

	if (argc < 2) {
		fprintf(stderr, "usage: mock PORT\n");
		return 2;
	}
	loop = uv_default_loop();
	http_parser_settings_init(&settings);
	settings.on_message_begin = on_begin;
	settings.on_url = on_url;
	settings.on_body = on_body;
	settings.on_message_complete = on_complete;
	uv_tcp_init(loop, &server);
	uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
	if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) ||
	    uv_listen((uv_stream_t *)&server, 4096, on_conn)) {
		fprintf(stderr, "mock: cannot listen on %s\n", argv[1]);
		return 1;
	}
	printf("mock listening on %s\n", argv[1]);
	fflush(stdout);
	return uv_run(loop, UV_RUN_DEFAULT);
}

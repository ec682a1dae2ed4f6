/* Frame templates: a translated stream's text deltas without Lua.
 *
 * While a translated stream is in a steady state (its client's text, or
 * thinking, block is open), each upstream frame that is a plain text delta
 * becomes one client frame whose only variable part is the delta's string:
 * Lua hands C that frame's two fixed parts (prefix and suffix, from the
 * client format's encoder) and which upstream frames qualify. C checks a
 * frame (jscan.h), takes its string, writes it the way lua-cjson writes a
 * string (so the bytes are those the Lua path would send), and puts it
 * between the two parts. Any other frame goes to Lua, which may hand C a
 * new template.
 *
 * Ownership: an mg_tmpl owns its strings (mg_tmpl_free). Pure: no Lua, no
 * I/O, no state outside the template; any thread may call these. */
#ifndef MG_TMPL_H
#define MG_TMPL_H

#include <stddef.h>

#include "buf.h"

enum {
	MG_TMPL_OPENAI = 1,   /* OpenAI chat chunks: choices[0].delta.content | reasoning_content */
	MG_TMPL_ANTHROPIC,    /* Anthropic content_block_delta: text_delta.text | thinking_delta.thinking */
};

enum { MG_TMPL_TEXT = 1, MG_TMPL_THINKING };

typedef struct mg_tmpl {
	int from;              /* the upstream's format: MG_TMPL_OPENAI ... */
	int kind;              /* MG_TMPL_TEXT | MG_TMPL_THINKING */
	char *prefix, *suffix; /* the client frame around the string */
	size_t plen, slen;
	char *event;           /* the client frame's SSE event name, or NULL */
	size_t elen;
	/* the last frame taken, without its string (mg_tmpl_apply's own):
	 * seen[0 .. pre) came before the string, seen[pre .. pre + post) after */
	char *seen;
	size_t pre, post, seen_cap;
} mg_tmpl;

/* If data (an upstream frame's SSE data, its event name ev) is a plain
 * delta of t's kind, appends the client frame's data to out and returns 1;
 * else returns 0 and leaves out as it was (-1: out of memory). A frame
 * that is the last one taken but for its string (most of a stream's: the
 * same id, model and index) is taken without checking its JSON again,
 * only its string. */
int mg_tmpl_apply(mg_tmpl *t, const char *data, size_t dlen, const char *ev, size_t elen, mg_buf *out);

/* Appends the JSON string body s[0 .. len) (checked JSON, between its
 * quotes) to out as lua-cjson writes that string: quotes around it, '"',
 * '\\' and '/' escaped, \b \f \n \r \t, other control bytes and DEL as
 * \u00XX, every other byte as it is. Returns 0, or -1 out of memory. */
int mg_tmpl_cjson_string(const char *s, size_t len, mg_buf *out);

void mg_tmpl_free(mg_tmpl *t);

#endif

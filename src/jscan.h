/* A one-pass JSON checker that indexes the top level of an object, so that
 * a passthrough can route a request by its model without decoding the body.
 *
 * mg_jscan() walks the whole text once: it checks the grammar (RFC 8259,
 * with the leniency of lua-cjson that moongate decodes with: control
 * characters other than NUL may stand raw in strings) and records, for each
 * key of the top-level object, where its value lies and what it is. A text
 * it accepts is one lua-cjson decodes (spec/unit/jscan_spec.lua checks this
 * against cjson on generated and mutated texts); on one it refuses, the
 * caller decodes with cjson for cjson's own words.
 *
 * Ownership: the caller owns the text and the field array; fields point
 * into the text (key_at/key_len are the key as written, without quotes;
 * key_esc says it holds escapes). No allocation, no state between calls,
 * no Lua: any thread may call it. */
#ifndef MG_JSCAN_H
#define MG_JSCAN_H

#include <stddef.h>

enum {
	MG_JSCAN_OK = 0,
	MG_JSCAN_SYNTAX,     /* not JSON, or nested deeper than max_depth */
	MG_JSCAN_NOT_OBJECT, /* JSON, but its top level is not an object */
	MG_JSCAN_TOO_MANY,   /* more top-level keys than the array holds */
};

enum { MG_JSTR = 's', MG_JNUM = 'n', MG_JTRUE = 't', MG_JFALSE = 'f', MG_JNULL = 'z', MG_JOBJ = 'o', MG_JARR = 'a' };

typedef struct mg_jfield {
	const char *key_at;  /* the key's bytes between its quotes */
	size_t key_len;
	int key_esc;         /* the key holds a backslash escape */
	size_t from, to;     /* the value: text[from .. to) */
	int type;            /* MG_JSTR ... MG_JARR */
	size_t count;        /* an array's elements, an object's keys */
	int esc;             /* a string value holds a backslash escape */
} mg_jfield;

typedef struct mg_jscan_opts {
	int max_depth;       /* nesting allowed (lua-cjson's decode_max_depth) */
	const char *marker;  /* when set: does any string begin with it? */
	size_t marker_len;
} mg_jscan_opts;

typedef struct mg_jscan_out {
	mg_jfield *fields;   /* the caller's array of cap fields */
	size_t cap, n;
	int marked;          /* a string began with opts.marker */
	size_t error_at;     /* where a refused text went wrong (0-based) */
} mg_jscan_out;

/* Checks text[0 .. len) and fills out->fields with the top-level object's
 * keys in order (duplicates included: the caller judges them). Returns
 * MG_JSCAN_OK or one of the errors above. */
int mg_jscan(const char *text, size_t len, const mg_jscan_opts *opts, mg_jscan_out *out);

/* Tokens, for a caller that walks a text itself (jdecode.c). Each takes p
 * at the token's first byte and never reads at or past end.
 * mg_jstr_end: p at a string's opening quote -> past its closing one, or
 *   NULL when the string breaks the grammar (as mg_jscan judges it); *esc
 *   says it holds a backslash escape.
 * mg_jnum_end: -> past the number, or NULL when none starts at p.
 * mg_jws: -> past the whitespace at p.
 * mg_jskip: -> past the value at p, of a text mg_jscan accepted (not
 *   checked again; at worst end). */
const char *mg_jstr_end(const char *p, const char *end, int *esc);
const char *mg_jnum_end(const char *p, const char *end);
const char *mg_jws(const char *p, const char *end);
const char *mg_jskip(const char *p, const char *end);

/* Writes the JSON string body s[0 .. len) (between its quotes, already
 * checked by mg_jscan) unescaped, as UTF-8, into dst (at least len bytes);
 * returns the bytes written. */
size_t mg_junescape(const char *s, size_t len, char *dst);

/* 1 when s[0 .. len) is well-formed UTF-8 (no overlong form, no surrogate,
 * nothing past U+10FFFF), else 0. */
int mg_utf8_valid(const char *s, size_t len);
/* Copies s into out (at least 3 * len bytes) with each ill-formed sequence
 * replaced by U+FFFD, one per maximal subpart as Unicode recommends;
 * returns the bytes written. */
size_t mg_utf8_fix(const char *s, size_t len, char *out);

#endif

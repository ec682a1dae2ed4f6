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

/* The values paths reach in an array, for a caller that leaves them
 * undecoded. text[from .. to) is one array value of a text that mg_jscan
 * accepted (it is not checked again). A path is one or two member names:
 * {a} reaches member a of each element; {a, b} reaches member b of the
 * object that is member a of each element, or of each element of the
 * array that is. A value counts when its kind is right (MG_JSTR: a string;
 * MG_JOBJ: an object with at least one key); nothing counts in an object
 * that holds a member some path names twice (cjson keeps the last one) or
 * any key written with an escape (it may be such a name, given twice).
 * At most cap spans are filled,
 * in text order: path is the path's index, i the outer element's index
 * (0-based), j the inner array's element's index + 1 (0 through an object,
 * or for a path of one). Returns how many spans were filled, or -1 when
 * text[from] is not '[' or a path is not one or two names (npaths <= 8). */
typedef struct mg_jspan {
	size_t from, to; /* the value: text[from .. to) */
	size_t i, j;     /* (above) */
	int path;
} mg_jspan;
typedef struct mg_jpath {
	const char *key[2];
	size_t key_len[2];
	int depth; /* 1 or 2 */
	int kind;  /* MG_JSTR or MG_JOBJ */
} mg_jpath;
long mg_jmembers(const char *text, size_t from, size_t to, const mg_jpath *paths, int npaths, mg_jspan *spans,
		 size_t cap);

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

/* A JSON array decoded into Lua tables in one pass, with the values some
 * paths reach left as the client's text (json.lua's raw values): what a
 * translation reads of an agent's messages and tools, without decoding the
 * files and schemas in them, and without a second text for lua-cjson to
 * read again.
 *
 * The values are lua-cjson's (strings unescaped to UTF-8, numbers by
 * strtod, null as the NULL light userdata, cjson.null; of a key given
 * twice, the last value), each table filled in text order as cjson fills
 * its own. (Made at their size instead, they took no less time; pairs()
 * order is no one's to rely on, as this LuaJIT seeds its string hash per
 * process.) spec/unit/jscan_spec.lua and the doors fuzz target compare
 * the two.
 *
 * Ownership: the caller owns the text, the paths and the scratch buffer;
 * everything made is on the Lua stack (the GC's). A Lua error (out of
 * memory) may leave mg_jdecode at any push: it holds nothing of its own. */
#ifndef MG_JDECODE_H
#define MG_JDECODE_H

#include <lua.h>
#include <stddef.h>

#define MG_JDECODE_PATHS 8

/* A path: one or two member names. {a} reaches member a of each element of
 * the array; {a, b} member b of the object that is member a of each
 * element, or of each element of the array that is. The value counts when
 * it is a string (kind 's') or an object with at least one key (kind 'o'),
 * and, when when_key is set, the object holding it has member when_key
 * equal to one of the when strings. Where two paths name the same member,
 * the one that goes further in takes it when it is an array or object,
 * else the first whose kind fits (its when alone is judged). A value is
 * decoded, not left raw, while 64 others wait on their objects' ends (an
 * object giving one key over and over). */
typedef struct mg_jdpath {
	const char *key[2];
	size_t key_len[2];
	int depth; /* 1 or 2 */
	int kind;  /* 's' or 'o' */
	const char *when_key;
	size_t when_key_len;
	const char *when[8];
	size_t when_len[8];
	int nwhen;
} mg_jdpath;

typedef struct mg_jdecode_in {
	const char *text;
	size_t from, to;         /* the array: text[from .. to), 0-based */
	const mg_jdpath *paths;
	int npaths;              /* 0 .. MG_JDECODE_PATHS */
	const char *str_tag, *obj_tag; /* a value left raw: "<str_tag><n>", or {["<obj_tag><n>"] = true} */
	size_t str_tag_len, obj_tag_len;
	double base;             /* n of the first is base + 1 */
	char *scratch;           /* at least to - from bytes (strings unescaped there) */
	int spans;               /* stack index of a table: per value left raw, 4
				  * entries: from, to (1-based in text), n, the marker
				  * (false when a key given again took its place) */
} mg_jdecode_in;

/* Pushes the array and returns how many numbers it used (the last n is
 * base + that; some may be unused), or pushes nothing and returns -1 when
 * the text is not one JSON array there (or nests deeper than 200). What
 * the paths reach is not checked again: text[from .. to) must lie in a
 * text mg_jscan accepted. */
long mg_jdecode(lua_State *L, const mg_jdecode_in *in);

#endif

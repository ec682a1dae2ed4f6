/* Fuzz target: the adapters' upstream decoders (fuzz/frames.lua says what
 * must hold), in a Lua state made as fuzz/doors.c makes one. */
#define FUZZ_SCRIPT "fuzz/frames.lua"
#include "doors.c"

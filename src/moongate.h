/* Embedding moongate: link the moongate_host library and call mg_main() with
 * a command line, or create Lua states with mg_lua_new(loop, dir, mg_core_preload)
 * (lua_host.h, core.h) and require "moongate.core" for the primitives. */
#ifndef MOONGATE_H
#define MOONGATE_H

/* Runs the command line (serve, check, version, ...). Returns the exit code. */
int mg_main(int argc, char **argv);

#endif

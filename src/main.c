#include "moongate.h"

#include <signal.h>

int main(int argc, char **argv)
{
	/* `serve` handles these once it is set up (server.c); a SIGHUP or
	 * SIGUSR1 before that (moongate reload right after a start) must not
	 * end the process with the default action */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	return mg_main(argc, argv);
}

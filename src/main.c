#include "moongate.h"

int main(int argc, char **argv)
{
	return mg_main(argc, argv);
}

/* Compiles, prints a line, then exits with status 3: the harness must report the failure. */
#include "c_probe.h"

int main(void)
{
	NUM("PRINTED", 1);
	fprintf(stderr, "probe gave up on purpose\n");
	return 3;
}

/* Compiles only without -Werror: the harness must report the compiler's complaint. */
#include "c_probe.h"

int main(void)
{
	int unused_on_purpose;
	return PROBE_STATUS();
}

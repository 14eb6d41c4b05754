/* The probe of c-probe's own test (tests/probe.rs): a struct with padding, a raw-identifier
 * field name on the Rust side, and a constant. */
#include "c_probe.h"

struct self_test {
	uint16_t small;
	uint64_t big;
	uint32_t ref;
};

#define SELF_TEST_MAGIC 0x5a17u

int main(void)
{
	CONST(SELF_TEST_MAGIC);
	SIZE(self_test);
	OFF(self_test, small);
	OFF(self_test, big);
	OFF(self_test, ref);
	return PROBE_STATUS();
}

/* Prints the _IOC encoding constants of <linux/ioctl.h> and one request number built with it, one
 * "NAME VALUE" line each, for the Rust `xen_ioctl` crate to match. Built and run by tests/uapi.rs. */
#include "c_probe.h"
#include <linux/ioctl.h>

int main(void)
{
	NUM("IOC_NONE", _IOC_NONE);
	NUM("IOC_READ", _IOC_READ);
	NUM("IOC_WRITE", _IOC_WRITE);
	NUM("IOC_NRBITS", _IOC_NRBITS);
	NUM("IOC_TYPEBITS", _IOC_TYPEBITS);
	NUM("IOC_SIZEBITS", _IOC_SIZEBITS);
	NUM("IOC_NRSHIFT", _IOC_NRSHIFT);
	NUM("IOC_TYPESHIFT", _IOC_TYPESHIFT);
	NUM("IOC_SIZESHIFT", _IOC_SIZESHIFT);
	NUM("IOC_DIRSHIFT", _IOC_DIRSHIFT);
	NUM("ioc_probe", _IOC(_IOC_READ | _IOC_WRITE, 'Z', 0xab, 0x1234));

	return PROBE_STATUS();
}

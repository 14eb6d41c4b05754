/* Prints every ioctl number, struct size and field offset that the Rust `sys` module of
 * xen-evtchn defines, as computed by the C compiler from the Linux UAPI header, one
 * "NAME VALUE" line each. Built and run by tests/uapi.rs. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/ioctl.h>

/* The header uses this Xen type without defining it outside the kernel tree. */
typedef uint16_t domid_t;

#include <xen/evtchn.h>

#define NUM(name, expr) printf("%s %llu\n", name, (unsigned long long)(expr))
#define CONST(name) NUM(#name, name)
#define SIZE(s) NUM("sizeof." #s, sizeof(struct s))
#define OFF(s, f) NUM("offsetof." #s "." #f, offsetof(struct s, f))

int main(void)
{
	/* The _IOC encoding itself. */
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

	CONST(IOCTL_EVTCHN_BIND_VIRQ);
	CONST(IOCTL_EVTCHN_BIND_INTERDOMAIN);
	CONST(IOCTL_EVTCHN_BIND_UNBOUND_PORT);
	CONST(IOCTL_EVTCHN_UNBIND);
	CONST(IOCTL_EVTCHN_NOTIFY);
	CONST(IOCTL_EVTCHN_RESET);
	CONST(IOCTL_EVTCHN_RESTRICT_DOMID);

	SIZE(ioctl_evtchn_bind_virq);
	OFF(ioctl_evtchn_bind_virq, virq);

	SIZE(ioctl_evtchn_bind_interdomain);
	OFF(ioctl_evtchn_bind_interdomain, remote_domain);
	OFF(ioctl_evtchn_bind_interdomain, remote_port);

	SIZE(ioctl_evtchn_bind_unbound_port);
	OFF(ioctl_evtchn_bind_unbound_port, remote_domain);

	SIZE(ioctl_evtchn_unbind);
	OFF(ioctl_evtchn_unbind, port);

	SIZE(ioctl_evtchn_notify);
	OFF(ioctl_evtchn_notify, port);

	SIZE(ioctl_evtchn_restrict_domid);
	OFF(ioctl_evtchn_restrict_domid, domid);

	/* A pending/unmask transfer is a stream of evtchn_port_t (uint32_t in Linux). */
	NUM("PORT_SIZE", sizeof(uint32_t));

	return ferror(stdout) ? 1 : 0;
}

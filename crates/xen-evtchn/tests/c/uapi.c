/* Prints every ioctl number, struct size and field offset that the Rust `sys` module of
 * xen-evtchn defines, as computed by the C compiler from the Linux UAPI header, one
 * "NAME VALUE" line each. Built and run by tests/uapi.rs. */
#include "c_probe.h"
#include <linux/ioctl.h>

/* The header uses this Xen type without defining it outside the kernel tree. */
typedef uint16_t domid_t;

#include <xen/evtchn.h>

int main(void)
{
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

	return PROBE_STATUS();
}

/* Prints every ioctl number, flag, struct size and field offset that the Rust `sys` module of
 * xen-gnttab defines, as computed by the C compiler from the Linux UAPI headers, one
 * "NAME VALUE" line each. Built and run by tests/uapi.rs. */
#include "c_probe.h"
#include <linux/ioctl.h>

/* The headers use these Xen types without defining them outside the kernel tree. */
typedef uint32_t grant_ref_t;
typedef uint16_t domid_t;

#include <xen/gntalloc.h>
#include <xen/gntdev.h>

int main(void)
{
	/* gntalloc */
	CONST(IOCTL_GNTALLOC_ALLOC_GREF);
	CONST(IOCTL_GNTALLOC_DEALLOC_GREF);
	CONST(IOCTL_GNTALLOC_SET_UNMAP_NOTIFY);
	CONST(GNTALLOC_FLAG_WRITABLE);
	CONST(UNMAP_NOTIFY_CLEAR_BYTE);
	CONST(UNMAP_NOTIFY_SEND_EVENT);

	SIZE(ioctl_gntalloc_alloc_gref);
	OFF(ioctl_gntalloc_alloc_gref, domid);
	OFF(ioctl_gntalloc_alloc_gref, flags);
	OFF(ioctl_gntalloc_alloc_gref, count);
	OFF(ioctl_gntalloc_alloc_gref, index);
	OFF(ioctl_gntalloc_alloc_gref, gref_ids);

	SIZE(ioctl_gntalloc_dealloc_gref);
	OFF(ioctl_gntalloc_dealloc_gref, index);
	OFF(ioctl_gntalloc_dealloc_gref, count);

	SIZE(ioctl_gntalloc_unmap_notify);
	OFF(ioctl_gntalloc_unmap_notify, index);
	OFF(ioctl_gntalloc_unmap_notify, action);
	OFF(ioctl_gntalloc_unmap_notify, event_channel_port);

	/* gntdev */
	CONST(IOCTL_GNTDEV_MAP_GRANT_REF);
	CONST(IOCTL_GNTDEV_UNMAP_GRANT_REF);
	CONST(IOCTL_GNTDEV_SET_UNMAP_NOTIFY);

	SIZE(ioctl_gntdev_grant_ref);
	OFF(ioctl_gntdev_grant_ref, domid);
	OFF(ioctl_gntdev_grant_ref, ref);

	SIZE(ioctl_gntdev_map_grant_ref);
	OFF(ioctl_gntdev_map_grant_ref, count);
	OFF(ioctl_gntdev_map_grant_ref, pad);
	OFF(ioctl_gntdev_map_grant_ref, index);
	OFF(ioctl_gntdev_map_grant_ref, refs);

	SIZE(ioctl_gntdev_unmap_grant_ref);
	OFF(ioctl_gntdev_unmap_grant_ref, index);
	OFF(ioctl_gntdev_unmap_grant_ref, count);
	OFF(ioctl_gntdev_unmap_grant_ref, pad);

	SIZE(ioctl_gntdev_unmap_notify);
	OFF(ioctl_gntdev_unmap_notify, index);
	OFF(ioctl_gntdev_unmap_notify, action);
	OFF(ioctl_gntdev_unmap_notify, event_channel_port);

	return PROBE_STATUS();
}

/* Prints every ioctl number, flag, struct size and field offset that the Rust `sys` module of
 * xen-gnttab defines, as computed by the C compiler from the Linux UAPI headers, one
 * "NAME VALUE" line each. Built and run by tests/uapi.rs. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/ioctl.h>

/* The headers use these Xen types without defining them outside the kernel tree. */
typedef uint32_t grant_ref_t;
typedef uint16_t domid_t;

#include <xen/gntalloc.h>
#include <xen/gntdev.h>

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

	return ferror(stdout) ? 1 : 0;
}

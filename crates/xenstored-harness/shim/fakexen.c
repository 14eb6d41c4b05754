/*
 * fakexen.c - LD_PRELOAD shim that lets Debian's C xenstored (xen-utils-4.17) run as an ordinary
 * process on a machine without Xen. Part of the pipewire-xen-snd test harness; MIT licence.
 *
 * xenstored talks to the hypervisor through exactly 17 library functions (see
 * `nm -D --undefined-only xenstored`) plus two files under /proc/xen. This shim replaces them:
 *
 *   libxenctrl   xc_interface_open/close   a dummy handle
 *                xc_domain_getinfo         every domid exists; it is "dying" once the file
 *                                          $FAKEXEN_DIR/dom<N>.dying exists
 *   libxengnttab map_grant_ref(N, xenstore grant)   mmaps the 4 KiB file $FAKEXEN_DIR/dom<N>.ring
 *                (open/close/unmap/set_max_grants are trivial)
 *   libxenevtchn the event-channel "device" is a unix datagram socket bound at
 *                $FAKEXEN_DIR/xenstored.evtchn. A peer kicks xenstored by sending its domid as
 *                4 native-endian bytes; 0xffffffff stands for VIRQ_DOM_EXC (a domain changed
 *                state). xenstored's notifications to domain N are 4-byte datagrams (the local
 *                port) sent to $FAKEXEN_DIR/dom<N>.evtchn, if anyone listens there.
 *   open()       /proc/xen/xsd_port -> $FAKEXEN_DIR/xsd_port  (dom0's xenstore event channel)
 *                /proc/xen/xsd_kva  -> $FAKEXEN_DIR/dom0.ring (dom0's ring page, unused)
 *
 * Build: cc -shared -fPIC -O2 -o libfakexen.so fakexen.c -ldl   (needs libxen-dev's headers)
 * Set FAKEXEN_DEBUG=1 to log every call to stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xen/grant_table.h>

#define RING_SIZE 4096
#define KICK_VIRQ 0xffffffffu
#define MAX_PORTS 4096
#define SPURIOUS_PORT 0 /* returned for a kick nobody is bound to; never allocated */

static void dbg(const char *fmt, ...)
{
    va_list ap;
    if (!getenv("FAKEXEN_DEBUG"))
        return;
    va_start(ap, fmt);
    fprintf(stderr, "fakexen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* "$FAKEXEN_DIR/<name>" into buf; -1 (errno set) if unset or too long. */
static int fx_path(char *buf, size_t len, const char *fmt, ...)
{
    const char *dir = getenv("FAKEXEN_DIR");
    char name[64];
    va_list ap;
    int n;

    if (!dir) {
        errno = ENOENT;
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* ---- open(): the two /proc/xen files dom0's xenstored reads ---------------------------- */

int open(const char *path, int flags, ...)
{
    static int (*real_open)(const char *, int, ...);
    char buf[PATH_MAX];
    mode_t mode = 0;

    if (!real_open)
        real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        if (fx_path(buf, sizeof(buf), "xsd_port"))
            return -1;
        path = buf;
    } else if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
        if (fx_path(buf, sizeof(buf), "dom0.ring"))
            return -1;
        path = buf;
    }
    return real_open(path, flags, mode);
}

/* ---- libxenctrl ---------------------------------------------------------------------- */

static int dummy_xc; /* the address is the handle */

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger, (void)dombuild_logger, (void)open_flags;
    dbg("xc_interface_open");
    return (xc_interface *)&dummy_xc;
}

int xc_interface_close(xc_interface *xch)
{
    (void)xch;
    return 0;
}

/* Real Xen reports the first existing domain >= first_domid; here every ordinary domid exists,
 * so the answer is always first_domid itself, dying iff its marker file exists. */
int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                      xc_dominfo_t *info)
{
    char buf[PATH_MAX];
    (void)xch;

    if (max_doms == 0 || first_domid >= DOMID_FIRST_RESERVED)
        return 0;
    memset(info, 0, sizeof(*info));
    info->domid = first_domid;
    info->running = 1;
    if (fx_path(buf, sizeof(buf), "dom%u.dying", first_domid) == 0 && access(buf, F_OK) == 0) {
        info->dying = 1;
        info->running = 0;
    }
    dbg("xc_domain_getinfo(%u) dying=%u", first_domid, info->dying);
    return 1;
}

/* ---- libxengnttab -------------------------------------------------------------------- */

static int dummy_gnttab;

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
    (void)logger, (void)open_flags;
    return (xengnttab_handle *)&dummy_gnttab;
}

int xengnttab_close(xengnttab_handle *xgt)
{
    (void)xgt;
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    (void)xgt, (void)nr_grants;
    return 0;
}

/* Only the reserved xenstore grant of a domain can be mapped: its ring page file. */
void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref, int prot)
{
    char buf[PATH_MAX];
    void *addr;
    int fd;
    (void)xgt;

    if (ref != GNTTAB_RESERVED_XENSTORE) {
        errno = EINVAL;
        return NULL;
    }
    if (fx_path(buf, sizeof(buf), "dom%u.ring", domid))
        return NULL;
    fd = open(buf, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        dbg("map_grant_ref(%u): %s: %s", domid, buf, strerror(errno));
        return NULL;
    }
    addr = mmap(NULL, RING_SIZE, prot, MAP_SHARED, fd, 0);
    close(fd);
    dbg("map_grant_ref(%u) -> %p", domid, addr);
    return addr == MAP_FAILED ? NULL : addr;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)count * RING_SIZE);
}

/* ---- libxenevtchn -------------------------------------------------------------------- */

struct xenevtchn_handle {
    int fd;                     /* datagram socket at $FAKEXEN_DIR/xenstored.evtchn */
    uint32_t port_dom[MAX_PORTS]; /* local port -> remote domid; 0 = free */
    uint8_t port_used[MAX_PORTS];
    evtchn_port_t virq_port;
};

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    xenevtchn_handle *h;
    (void)logger, (void)flags;

    if (fx_path(sa.sun_path, sizeof(sa.sun_path), "xenstored.evtchn"))
        return NULL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0)
        goto fail;
    unlink(sa.sun_path);
    if (bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    dbg("xenevtchn_open: %s", sa.sun_path);
    return h;
fail:
    if (h->fd >= 0)
        close(h->fd);
    free(h);
    return NULL;
}

/* Only used by live update, which this harness never does. */
xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd, unsigned open_flags)
{
    (void)logger, (void)fd, (void)open_flags;
    errno = ENOSYS;
    return NULL;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->fd;
}

static xenevtchn_port_or_error_t alloc_port(xenevtchn_handle *xce, uint32_t domid)
{
    evtchn_port_t p;
    for (p = 1; p < MAX_PORTS; p++) {
        if (!xce->port_used[p]) {
            xce->port_used[p] = 1;
            xce->port_dom[p] = domid;
            return p;
        }
    }
    errno = ENOSPC;
    return -1;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                                                     evtchn_port_t remote_port)
{
    xenevtchn_port_or_error_t p = alloc_port(xce, domid);
    dbg("bind_interdomain(dom%u, remote %u) -> %d", domid, remote_port, p);
    return p;
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    xenevtchn_port_or_error_t p = alloc_port(xce, KICK_VIRQ);
    (void)virq;
    if (p > 0)
        xce->virq_port = p;
    return p;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    if (port == 0 || port >= MAX_PORTS || !xce->port_used[port]) {
        errno = EINVAL;
        return -1;
    }
    xce->port_used[port] = 0;
    return 0;
}

/* Send a 4-byte datagram to $FAKEXEN_DIR/dom<N>.evtchn; nobody listening is not an error. */
int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint32_t msg = port;

    if (port == 0 || port >= MAX_PORTS || !xce->port_used[port]) {
        errno = EINVAL;
        return -1;
    }
    if (fx_path(sa.sun_path, sizeof(sa.sun_path), "dom%u.evtchn", xce->port_dom[port]) == 0)
        (void)sendto(xce->fd, &msg, sizeof(msg), MSG_DONTWAIT, (struct sockaddr *)&sa,
                     sizeof(sa));
    return 0;
}

/* One kick datagram -> the local port it stands for. xenstored only calls this when poll()
 * said the fd is readable; it then rescans every ring anyway, so the exact port matters only
 * for VIRQ_DOM_EXC. */
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    uint32_t who;
    evtchn_port_t p;
    ssize_t n = recv(xce->fd, &who, sizeof(who), MSG_DONTWAIT);

    if (n != (ssize_t)sizeof(who))
        return SPURIOUS_PORT;
    if (who == KICK_VIRQ) {
        dbg("pending: VIRQ_DOM_EXC");
        return xce->virq_port;
    }
    for (p = 1; p < MAX_PORTS; p++)
        if (xce->port_used[p] && xce->port_dom[p] == who && p != xce->virq_port)
            return p;
    return SPURIOUS_PORT;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce, (void)port;
    return 0;
}

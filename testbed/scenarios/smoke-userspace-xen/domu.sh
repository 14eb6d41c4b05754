# domU part of smoke-userspace-xen: what a userspace frontend needs from the guest kernel is
# there — the xenbus, gntalloc and evtchn devices — and xenstore works through /dev/xen/xenbus.
# shellcheck shell=dash

for dev in xenbus gntalloc evtchn; do
    tb_check "dev-xen-$dev" "/dev/xen/$dev: $(ls -l "/dev/xen/$dev" 2>&1)" test -c "/dev/xen/$dev"
done

# A relative path: resolved by xenstored against this domain's home, /local/domain/<domid>.
if id=$(xenstore-read domid 2>&1) && [ "$id" -gt 0 ] 2>/dev/null; then
    tb_result xenstore-read-domid PASS "domid=$id"
    xenstore-write data/testbed/seen-domid "$id"
else
    tb_result xenstore-read-domid FAIL "xenstore-read domid: $id"
fi

# dom0 part of smoke-userspace-xen: start a plain domU (default template, no devices) and check
# that the domid it read from xenstore is the one xl gave it.
# shellcheck shell=dash

tb_create_domu || exit 1
tb_wait_domu
seen=$(xenstore-read "/local/domain/$(tb_domid)/data/testbed/seen-domid" 2>/dev/null)
tb_check domid-matches "domU read '$seen', xl says $(tb_domid)" [ "$seen" = "$(tb_domid)" ]

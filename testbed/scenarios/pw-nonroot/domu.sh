# domU part of pw-nonroot: the session runs as a plain user. The initramfs has no udevd, so the
# GROUP and MODE that the shipped udev rule (plugin-conf/udev/*.rules) gives each /dev/xen device
# are read from the rule and applied by hand; the group and the user are written to /etc/group
# and /etc/passwd (busybox here has no addgroup/adduser).
#   1. the user without the group: the module must say why it cannot open the devices (one clear
#      line in the daemon log) and create no nodes
#   2. the user in the group: the nodes appear and pw-play reaches the backend (dom0 compares)
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/session.sh
. /testbed/pipewire/session.sh

user=pwuser uid=1000
rule=$(find /testbed/pipewire/udev -name '*.rules' 2>/dev/null | sort | head -n 1)
if [ -z "$rule" ]; then
    tb_result udev-rule-applied FAIL "no udev rule in the image (plugin-conf/udev/*.rules)"
    exit 1
fi
# Rule lines: SUBSYSTEM=="misc", KERNEL=="xen/<name>", GROUP="<group>", MODE="<mode>"
applied="" group=""
for dev in xenbus gntalloc evtchn; do
    line=$(grep -v '^[[:space:]]*#' "$rule" | grep -F "KERNEL==\"xen/$dev\"" | head -n 1)
    g=$(echo "$line" | sed -n 's/.*GROUP="\([^"]*\)".*/\1/p')
    m=$(echo "$line" | sed -n 's/.*MODE="\([0-7]*\)".*/\1/p')
    if [ -z "$g" ] || [ -z "$m" ]; then
        tb_result udev-rule-applied FAIL "$rule has no GROUP/MODE for xen/$dev: '$line'"
        exit 1
    fi
    [ -n "$group" ] || group=$g
    grep -q "^$g:" /etc/group || echo "$g:x:$((990 + $(wc -l </etc/group))):" >>/etc/group
    if ! chgrp "$g" "/dev/xen/$dev" || ! chmod "$m" "/dev/xen/$dev"; then
        tb_result udev-rule-applied FAIL "chgrp/chmod /dev/xen/$dev failed"
        exit 1
    fi
    applied="$applied /dev/xen/$dev $(stat -c '%A %U:%G' "/dev/xen/$dev");"
done
echo "$user:x:$uid:$uid:PipeWire user:/run/pw/home:/bin/sh" >>/etc/passwd
echo "$user:x:$uid:" >>/etc/group
tb_result udev-rule-applied PASS "$(basename "$rule"):$applied user $user ($uid) created"
PW_USER=$user

# ---- 1: not in the group ----------------------------------------------------------------------
pw_dropin log.level=info || exit 1
if pw_session_start; then
    # The module's one line about the devices (or xenstore) it may not open.
    said() { grep -Ei 'permission|EACCES|access' "$PW_LOGS/pipewire.log" | grep -i 'xen' | tail -n 1 | grep .; }
    tb_wait_until 30 said >/dev/null || true
    msg=$(said | sed 's/^.*\] *//')
    nodes=none
    pw_node_id "$PW_SINK" >/dev/null && nodes=present
    explained() { [ -n "$msg" ] && [ "$nodes" = none ]; }
    tb_check nonroot-denied-explained "as $user ($(id "$user")) without $group: nodes $nodes; the module says: ${msg:-nothing about permissions}" \
        explained
else
    tb_result nonroot-denied-explained FAIL "the session did not come up as $user"
fi
pw_session_stop
pw_session_reset

# ---- 2: in the group --------------------------------------------------------------------------
sed -i "s/^\($group:x:[0-9]*:\)\(.*\)$/\1\2,$user/; s/^\($group:x:[0-9]*:\),/\1/" /etc/group
pw_dropin log.level=info || exit 1
if ! pw_session_start; then
    tb_result nonroot-session FAIL "the session did not come up as $user in $group"
    exit 1
fi
pid=$(pw_pid pipewire)
ids=$(awk '/^Uid:|^Gid:|^Groups:/ { printf "%s ", $0 }' "/proc/$pid/status" | tr -s '\t' ' ')
tb_check nonroot-session "pipewire pid $pid runs as $ids (id $user: $(id "$user"))" \
    grep -q "^Uid:[[:space:]]*${uid}[[:space:]]" "/proc/$pid/status"
if ! pw_wait_node "$PW_SINK" 60; then
    tb_result nonroot-nodes FAIL "no $PW_SINK node after 60 s as $user"
    pw_dump_logs
    exit 1
fi
tb_result nonroot-nodes PASS "$PW_SINK = node $(pw_node_id "$PW_SINK"), $PW_SOURCE = node $(pw_node_id "$PW_SOURCE")"
pw_spawn pw-play --target "$PW_SINK" "$SND_PATTERN"
pw_client_wait pw-play 90
rc=$(pw_rc pw-play)
snd_put pw-play-done "$rc"
tb_check nonroot-play-finished "pw-play as $user: exit $rc" [ "$rc" = 0 ]
pw_session_stop
tb_result nonroot-module-stats PASS "module: $(pw_module_said "$PW_SINK" stopped)"
problems=$(pw_log_problems pipewire)
tb_check session-clean "pipewire exit $(pw_rc pipewire); ${problems:-no abort/panic/corruption in the daemon log}" [ -z "$problems" ]

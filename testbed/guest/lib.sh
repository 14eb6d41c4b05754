# Testbed guest library (busybox ash), sourced by /init and by every scenario's dom0.sh/domu.sh.
# Conventions (see testbed/README.md):
#   TESTBED-PHASE <name> ...               progress marker; the host timestamps it
#   TESTBED-RESULT <name> PASS|FAIL <detail>  one check; dom0 prints them on its console, the
#                                          domU writes them to xenstore and dom0 prints them
#   TESTBED-DONE                           dom0's last line before it powers the machine off
# shellcheck shell=dash
# (busybox ash: POSIX sh plus `local`, like dash)

TB_RUN=/run/testbed                      # runtime state (dom0: domid, result list)
TB_DOMU_NAME=domu                        # xl name of the scenario's guest
TB_DOMU_LOG=/var/log/xen/guest-$TB_DOMU_NAME.log
TB_XS_RESULTS=data/testbed/result        # relative to the domU's /local/domain/<id>
TB_XS_DONE=data/testbed/done

# tb_log MSG...: a diagnostic line on the console.
tb_log() {
    echo "testbed[$TB_ROLE]: $*"
}

# tb_cmdline KEY [DEFAULT]: value of KEY=... on the kernel command line.
tb_cmdline() {
    local cmdline w
    read -r cmdline </proc/cmdline
    for w in $cmdline; do
        case "$w" in "$1"=*) echo "${w#*=}"; return 0 ;; esac
    done
    echo "${2-}"
}

# tb_uptime_cs: uptime in centiseconds (integer, for deadlines).
tb_uptime_cs() {
    local up
    read -r up _ </proc/uptime
    echo "${up%.*}${up#*.}" | sed 's/^0*//;s/^$/0/'
}

# tb_phase NAME: progress marker (with the guest's own uptime for reference).
tb_phase() {
    local up
    read -r up _ </proc/uptime
    echo "TESTBED-PHASE $1 uptime=$up"
}

# tb_valid_name NAME: result names go into xenstore paths and the host's parser.
tb_valid_name() {
    case "$1" in "" | *[!A-Za-z0-9_-]*) return 1 ;; esac
    return 0
}

# tb_result NAME PASS|FAIL DETAIL...: report one check.
tb_result() {
    local name="$1" status="$2" detail
    shift 2
    # One line per result: the host parses line by line.
    detail=$(printf '%s' "$*" | tr '\n\r\t' '   ' | tr -s ' ')
    if ! tb_valid_name "$name"; then
        tb_log "bad result name '$name' (use [A-Za-z0-9_-])"
        name=bad-result-name status=FAIL
    fi
    case "$status" in PASS | FAIL) ;; *) detail="bad status '$status': $detail" status=FAIL ;; esac
    if [ "$TB_ROLE" = dom0 ]; then
        echo "TESTBED-RESULT $name $status $detail"
        echo "$name $status" >>"$TB_RUN/results"
    else
        # The domU's console reaches the host only through dom0's relay; xenstore is the
        # reliable path. Printed too, for the relayed log.
        echo "domu-result: $name $status $detail"
        xenstore-write "$TB_XS_RESULTS/$name" "$status $detail" ||
            tb_log "could not write result $name to xenstore"
    fi
}

# tb_check NAME DETAIL CMD [ARGS...]: PASS when CMD succeeds, FAIL otherwise.
tb_check() {
    local name="$1" detail="$2"
    shift 2
    if "$@"; then tb_result "$name" PASS "$detail"; else tb_result "$name" FAIL "$detail"; fi
}

# tb_wait_until TIMEOUT_S CMD [ARGS...]: poll CMD (every 0.2 s) until it succeeds; 1 on timeout.
tb_wait_until() {
    local deadline
    deadline=$(($(tb_uptime_cs) + $1 * 100))
    shift
    while ! "$@"; do
        [ "$(tb_uptime_cs)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
    return 0
}

# tb_xs_is PATH VALUE: the xenstore node PATH currently reads VALUE.
tb_xs_is() {
    [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]
}

# tb_modprobe NAME...: load kernel modules with their dependencies, using the load order
# build-initrd wrote to /etc/testbed/modules (the image has no modprobe/depmod data).
tb_modprobe() {
    local kver want line ko mod
    kver=$(cat /etc/testbed/kernel-version)
    for want in "$@"; do
        line=$(grep "^$want " /etc/testbed/modules) || {
            tb_log "module $want is not in the image (add it to MODULES in testbed/build-initrd)"
            return 1
        }
        for ko in ${line#* }; do
            mod=$(basename "$ko" .ko | tr - _)
            [ -d "/sys/module/$mod" ] && continue
            insmod "/lib/modules/$kver/$ko" || {
                tb_log "insmod $ko failed"
                return 1
            }
        done
    done
}

# tb_mount_basics: the pseudo file systems both roles need.
tb_mount_basics() {
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mkdir -p /dev/pts /dev/shm
    mount -t devpts devpts /dev/pts
    mount -t tmpfs tmpfs /run
    mount -t tmpfs tmpfs /tmp
    mkdir -p "$TB_RUN"
}

# tb_run_part FILE TIMEOUT_S: run a scenario part (sourced, with this library loaded) in a child
# shell under a timeout, from the scenario's directory. Returns its exit status (143 when the
# timeout's SIGTERM ended it).
tb_run_part() {
    # shellcheck disable=SC2016 # $1 is expanded by the child shell
    (cd "$TB_SCENARIO_DIR" && timeout -s TERM -k 5 "$2" sh -c '. /testbed/lib.sh; . "$1"' sh "$1")
}

# tb_scenario_env: export what scenario scripts may use.
tb_scenario_env() {
    TB_SCENARIO=$(tb_cmdline testbed.scenario)
    TB_SCENARIO_DIR=/testbed/scenarios/$TB_SCENARIO
    TB_DOMUTYPE=$(tb_cmdline testbed.domutype pv)
    TB_TIMEOUT=$(tb_cmdline testbed.timeout 180)
    export TB_ROLE TB_SCENARIO TB_SCENARIO_DIR TB_DOMUTYPE TB_TIMEOUT
}

# tb_halt: last resort when poweroff does not take effect.
tb_halt() {
    while :; do sleep 3600; done
}

# ---- dom0 helpers for scenarios ---------------------------------------------------------------

# tb_domid: the domU's domid (after tb_create_domu).
tb_domid() {
    cat "$TB_RUN/domid" 2>/dev/null
}

# tb_start_stub_vsnd_backend: the shell stub backend (InitWait, then Connected once the frontend
# is Initialised). Must run before tb_create_domu: libxl destroys the domain when the backend
# has not reached InitWait 10 s after xl created the device.
tb_start_stub_vsnd_backend() {
    /testbed/stub-vsnd-backend 2>&1 | while IFS= read -r l; do echo "stub| $l"; done &
}

# tb_relay_domu_console: copy the domU's console log (written by xenconsoled) to dom0's console
# as "domU| ..." lines; the host splits them into its domU log. Stops after the domU's
# TESTBED-DOMU-END line and then touches $TB_RUN/relay-done.
tb_relay_domu_console() {
    [ -e "$TB_RUN/relay-started" ] && return 0
    touch "$TB_RUN/relay-started"
    (
        tail -n +1 -F "$TB_DOMU_LOG" 2>/dev/null | while IFS= read -r l; do
            echo "domU| $l"
            case "$l" in *TESTBED-DOMU-END*) touch "$TB_RUN/relay-done" ;; esac
        done
    ) &
}

# tb_create_domu [TEMPLATE]: write /etc/xen/domu.cfg from the scenario's xl.cfg (or TEMPLATE, or
# the default template) and `xl create` it. Placeholders: @NAME@ @TYPE@ @KERNEL@ @RAMDISK@
# @EXTRA@ (the domU's kernel command line; TB_DOMU_EXTRA adds to it) @MEMORY@.
tb_create_domu() {
    local tmpl="${1:-$TB_SCENARIO_DIR/xl.cfg}" domu_timeout extra
    [ -f "$tmpl" ] || tmpl=/testbed/domu.cfg.in
    domu_timeout=$((TB_TIMEOUT - 20))
    extra="console=hvc0 rdinit=/init role=domu testbed.scenario=$TB_SCENARIO testbed.timeout=$domu_timeout ${TB_DOMU_EXTRA:-}"
    sed -e "s|@NAME@|$TB_DOMU_NAME|g" -e "s|@TYPE@|$TB_DOMUTYPE|g" \
        -e "s|@KERNEL@|/boot/domu-kernel|g" -e "s|@RAMDISK@|/boot/initrd.img|g" \
        -e "s|@EXTRA@|$extra|g" -e "s|@MEMORY@|${TB_DOMU_MEMORY:-256}|g" "$tmpl" >/etc/xen/domu.cfg
    tb_relay_domu_console
    tb_phase domu-create
    # Shown live (the host timestamps each line); ash has no PIPESTATUS, hence the status file.
    # TB_XL_FLAGS=-vvv makes libxl explain where the time goes.
    # shellcheck disable=SC2086 # TB_XL_FLAGS is a list of flags
    { xl ${TB_XL_FLAGS:-} create /etc/xen/domu.cfg; echo $? >"$TB_RUN/xl-create.rc"; } 2>&1 |
        while IFS= read -r l; do echo "xl| $l"; done
    if [ "$(cat "$TB_RUN/xl-create.rc")" != 0 ]; then
        tb_result domu-created FAIL "xl create failed (see xl| lines)"
        return 1
    fi
    xl domid "$TB_DOMU_NAME" >"$TB_RUN/domid"
    tb_phase domu-created
    tb_log "domU $TB_DOMU_NAME is domain $(tb_domid) ($TB_DOMUTYPE)"
}

# tb_domu_alive: the domU still exists (its xenstore directory is there).
tb_domu_alive() {
    xenstore-exists "/local/domain/$(tb_domid)/name" 2>/dev/null
}

# tb_domu_done: the domU finished its part (or is gone, which tb_wait_domu reports).
tb_domu_done() {
    xenstore-exists "/local/domain/$(tb_domid)/$TB_XS_DONE" 2>/dev/null || ! tb_domu_alive
}

# tb_wait_domu [TIMEOUT_S]: wait until the domU reports its part finished. 0 when it did.
tb_wait_domu() {
    [ -n "$(tb_domid)" ] || { tb_log "tb_wait_domu: no domU was created"; return 1; }
    tb_wait_until "${1:-$((TB_TIMEOUT - 10))}" tb_domu_done || true
    if xenstore-exists "/local/domain/$(tb_domid)/$TB_XS_DONE" 2>/dev/null; then
        [ -e "$TB_RUN/domu-finished" ] || tb_phase domu-finished
        touch "$TB_RUN/domu-finished"
        return 0
    fi
    return 1
}

# tb_collect_domu: print the domU's results (from xenstore) as dom0 results, once.
tb_collect_domu() {
    [ -e "$TB_RUN/collected" ] && return 0
    touch "$TB_RUN/collected"
    local id base r v
    id=$(tb_domid)
    base="/local/domain/$id/$TB_XS_RESULTS"
    if xenstore-exists "/local/domain/$id/$TB_XS_DONE" 2>/dev/null; then
        tb_log "domU finished: $(xenstore-read "/local/domain/$id/$TB_XS_DONE")"
    elif tb_domu_alive; then
        tb_result domu-finished FAIL "domU $id did not finish its part in time"
    else
        tb_result domu-finished FAIL "domU $id disappeared (crashed or was destroyed)"
    fi
    for r in $(xenstore-list "$base" 2>/dev/null); do
        v=$(xenstore-read "$base/$r")
        tb_valid_name "$r" || continue
        tb_result "$r" "${v%% *}" "$(printf '%s' "$v" | sed 's/^[^ ]* *//;s/ *$//') [domU]"
    done
    # Let the console relay catch up (it polls the log once a second).
    [ -e "$TB_RUN/relay-started" ] && tb_wait_until 5 test -e "$TB_RUN/relay-done"
    return 0
}

# tb_diagnostics: state dumps printed when something failed.
tb_diagnostics() {
    local id f
    echo "diag| --- xl list"
    xl list 2>&1 | sed 's/^/diag| /'
    echo "diag| --- xenstore backend/ and the domU's device/"
    xenstore-ls -f /local/domain/0/backend 2>&1 | sed 's/^/diag| /'
    id=$(tb_domid)
    [ -n "$id" ] && xenstore-ls -f "/local/domain/$id/device" 2>&1 | sed 's/^/diag| /'
    echo "diag| --- xl dmesg (tail)"
    xl dmesg 2>&1 | tail -n 20 | sed 's/^/diag| /'
    echo "diag| --- /var/log/xen/*.log (tails, without the domU console)"
    for f in /var/log/xen/*.log; do
        [ "$f" = "$TB_DOMU_LOG" ] && continue
        [ -f "$f" ] && tail -n 15 "$f" | sed "s#^#diag| $(basename "$f"): #"
    done
}

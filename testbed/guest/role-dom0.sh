# dom0 path of /init (sourced): start the Xen toolstack, run the scenario's dom0.sh, collect the
# domU's results, print TESTBED-DONE and power the machine off.
# shellcheck shell=dash

tb_phase dom0-init

# tb_start_toolstack: the Xen modules, xenfs, xenstored, xen-init-dom0 and xenconsoled.
tb_start_toolstack() {
    mkdir -p /run/xen /run/xenstored /var/lib/xen /var/log/xen
    tb_modprobe xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs || return 1
    # xenstored finds its ring and event channel through /proc/xen/xsd_{kva,port}.
    mount -t xenfs xenfs /proc/xen || { tb_log "mount xenfs failed"; return 1; }
    # -N: no fork, so its messages land in our log and we keep its pid. -T: every request and
    # reply (with its value) goes to a trace file, for scenarios that need to know what a
    # guest read when (snd_dump_domu_trace in snd.sh); a few hundred KiB per run.
    xenstored -N -T /run/xenstored.trace >/var/log/xen/xenstored.log 2>&1 &
    tb_wait_until 20 test -S /run/xenstored/socket || { tb_log "xenstored socket did not appear"; return 1; }
    xen-init-dom0 >/var/log/xen/xen-init-dom0.log 2>&1 || { tb_log "xen-init-dom0 failed"; return 1; }
    # --log=guest: each guest's console goes to /var/log/xen/guest-<name>.log, which is how the
    # domU's console reaches us (tb_relay_domu_console).
    xenconsoled -i --log=guest --log-dir=/var/log/xen >/var/log/xen/xenconsoled.log 2>&1 &
    return 0
}

tb_scenario_env
TB_START_CS=$(tb_uptime_cs)
: >"$TB_RUN/results"
if ! tb_start_toolstack; then
    tb_result toolstack FAIL "starting the Xen toolstack in dom0 failed"
elif [ ! -f "$TB_SCENARIO_DIR/dom0.sh" ]; then
    tb_result scenario FAIL "no scenario '$TB_SCENARIO' in the image (testbed/scenarios/<name>/dom0.sh)"
else
    tb_phase toolstack-ready
    tb_log "scenario $TB_SCENARIO, domU type $TB_DOMUTYPE, budget ${TB_TIMEOUT}s"
    tb_run_part ./dom0.sh "$TB_TIMEOUT"
    rc=$?
    case $rc in
    0) ;;
    124 | 137 | 143) tb_result dom0-part FAIL "dom0.sh timed out after ${TB_TIMEOUT}s" ;;
    *) tb_result dom0-part FAIL "dom0.sh exited with status $rc" ;;
    esac
    if [ -n "$(tb_domid)" ]; then
        # Whatever is left of the budget (at least 5 s) for a domU that is still working.
        left=$((TB_TIMEOUT - ($(tb_uptime_cs) - TB_START_CS) / 100))
        [ "$left" -ge 5 ] || left=5
        tb_wait_domu "$left"
        tb_collect_domu
    fi
fi
grep -q ' FAIL$' "$TB_RUN/results" && tb_diagnostics
tb_phase scenario-end
echo "TESTBED-DONE"
sync
# Xen powers the machine off (ACPI S5) and QEMU exits.
poweroff -f

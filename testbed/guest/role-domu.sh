# domU path of /init (sourced): run the scenario's domu.sh, then report completion through
# xenstore and idle. The domU never powers itself off: its xenstore directory (and with it the
# results) would vanish before dom0 collected them. dom0 powers the whole machine off.
# shellcheck shell=dash

tb_phase domu-init
tb_scenario_env
# The guest's /dev/xen/{evtchn,gntdev,gntalloc}; xenbus is built in. No xenfs: it needs
# xen-privcmd, which a domU does not have. snd_xen_front is left to scenarios (it would claim
# device/vsnd/0 for the kernel).
tb_modprobe xen-evtchn xen-gntdev xen-gntalloc || tb_result domu-modules FAIL "loading the Xen device modules failed"
rc=0
if [ -f "$TB_SCENARIO_DIR/domu.sh" ]; then
    tb_run_part ./domu.sh "$TB_TIMEOUT"
    rc=$?
    case $rc in
    0) ;;
    124 | 137 | 143) tb_result domu-part FAIL "domu.sh timed out after ${TB_TIMEOUT}s" ;;
    *) tb_result domu-part FAIL "domu.sh exited with status $rc" ;;
    esac
fi
xenstore-write "$TB_XS_DONE" "rc=$rc" || tb_log "could not write $TB_XS_DONE"
tb_phase domu-end
echo "TESTBED-DOMU-END"
tb_halt

# domU part of handshake: `xen-snd status` (read-only) shows the card as xl.cfg configured it;
# `xen-snd status --connect` does the whole XenBus handshake with our backend, shows what the
# backend allows, and disconnects again.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

fe=device/vsnd/0
snd_have_bin xen-snd || exit 1
# Lines that depend on the moment (states) or on the connection are compared separately.
only_config() { grep -vE '^  (frontend|backend|note|connected) |^      (transport|backend allows|offered) ' "$1"; }

snd_bounded 60 xen-snd status >/tmp/status.txt 2>/tmp/status.err
rc=$?
[ "$rc" = 124 ] && snd_report_hang "xen-snd status"
sed 's/^/status: /' /tmp/status.txt /tmp/status.err
only_config /tmp/status.txt >/tmp/status.cfg
tb_check status-config "exit $rc; $(diff ./status.expect /tmp/status.cfg | grep '^[-+][^-+]' | head -n 4)" \
    sh -c "[ $rc = 0 ] && diff ./status.expect /tmp/status.cfg >/dev/null"
# Before anybody connects: the frontend as libxl left it, the backend waiting for it.
states="$(grep -E '^  (frontend|backend) ' /tmp/status.txt | sed 's/  */ /g')"
tb_check status-states "$states" sh -c \
    "grep -q '^  frontend .* state Initialising (1)' /tmp/status.txt && grep -q '^  backend   domain 0 .* state InitWait (2)' /tmp/status.txt"

tb_phase connect-start
snd_bounded 90 xen-snd status --connect --timeout 30 >/tmp/connect.txt 2>/tmp/connect.err
rc=$?
[ "$rc" = 124 ] && snd_report_hang "xen-snd status --connect"
tb_phase connect-end
sed 's/^/connect: /' /tmp/connect.txt /tmp/connect.err
tb_check status-connect "exit $rc; $(grep -m1 '^  connect' /tmp/connect.txt) $(head -c 200 /tmp/connect.err)" \
    sh -c "[ $rc = 0 ] && grep -q '^  connected frontend state Connected (4)' /tmp/connect.txt"
only_config /tmp/connect.txt >/tmp/connect.cfg
tb_check status-connect-config "$(diff ./status.expect /tmp/connect.cfg | grep '^[-+][^-+]' | head -n 4)" \
    diff ./status.expect /tmp/connect.cfg
grep '^      offered ' /tmp/connect.txt >/tmp/offered.txt
tb_check status-offered "$(diff ./offered.expect /tmp/offered.txt | grep '^[-+][^-+]' | head -n 4)" \
    diff ./offered.expect /tmp/offered.txt
allows=$(grep -c '^      backend allows formats ' /tmp/connect.txt)
tb_check status-backend-allows "$allows HW_PARAM_QUERY answers: $(grep -m1 '^      backend allows' /tmp/connect.txt | sed 's/^ *//')" \
    [ "$allows" = 2 ]
transport=$(grep -cE '^      transport ring-ref [0-9]+, event-channel [0-9]+, evt-ring-ref [0-9]+, evt-event-channel [0-9]+$' /tmp/connect.txt)
tb_check status-transport "$transport streams with all four transport keys: $(grep '^      transport' /tmp/connect.txt | sed 's/^ *transport //' | tr '\n' ';')" \
    [ "$transport" = 2 ]
# The tool disconnects on exit: frontend Closing, then Closed.
tb_check frontend-closed-after "$fe/state=$(xenstore-read "$fe/state" 2>&1) after exit" \
    tb_wait_until 5 tb_xs_is "$fe/state" 6

# dom0 part of handshake: our xen-snd-backend serves the card; its log shows the frontend and
# itself reaching Connected while `xen-snd status --connect` runs in the domU, and it goes back
# to InitWait when the tool disconnects.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

snd_start_backend || exit 1
tb_result backend-watching PASS "pid $(snd_backend_pid), before xl create"
snd_watch_initwait
tb_create_domu || exit 1
snd_check_initwait backend-initwait
tb_wait_domu 200
id=$(tb_domid)
be=/local/domain/0/backend/vsnd/$id/0
tb_check backend-saw-frontend-connected "$(grep -m1 "\[$id/0\] frontend state changed to 4" "$SND_BE_LOG")" \
    snd_be_logged "\[$id/0\] frontend state changed to 4 "
tb_check backend-connected "$(grep -m1 "\[$id/0\] set backend state to 4" "$SND_BE_LOG")" \
    snd_be_logged "\[$id/0\] set backend state to 4 "
# libxenbe: a frontend that closes while Connected makes the backend close (5, 6) and wait
# for the next frontend (2).
tb_check backend-initwait-again "$be/state=$(xenstore-read "$be/state" 2>&1); log: $(grep "\[$id/0\] set backend state" "$SND_BE_LOG" | sed 's/.*set backend state to //' | tr '\n' ' ')" \
    tb_wait_until 5 tb_xs_is "$be/state" 2
snd_check_backend_clean backend-no-errors
snd_show_backend_log
# Nothing here restarts the frontend: if the backend saw it restart, show what the domU's
# frontend read and wrote (seen once in ~20 runs under load: the engine left a working
# connection right after connecting).
if snd_be_logged 'frontend restarted'; then
    tb_result frontend-restarted FAIL "the backend saw the frontend restart (see the xstrace| lines)"
    snd_dump_domu_trace 400
elif [ -n "$(snd_domu_get hang)" ]; then
    snd_dump_domu_trace 400
fi

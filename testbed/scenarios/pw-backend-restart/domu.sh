# domU part of pw-backend-restart: PipeWire (our module, WirePlumber, pipewire-pulse) plays the
# 15 s pattern with pw-play to the Xen sink; dom0 kills and restarts xen-snd-backend meanwhile.
# No user action here: the same node (id and name) must play on, pw-play must finish normally.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/session.sh
. /testbed/pipewire/session.sh

pw_dropin log.level=info || exit 1
pw_session_start || { tb_result session FAIL "the PipeWire session did not come up"; exit 1; }
if ! pw_wait_node "$PW_SINK" 60; then
    tb_result node-kept FAIL "no $PW_SINK node after 60 s"
    pw_dump_logs
    exit 1
fi
id0=$(pw_node_id "$PW_SINK")
serial0=$(pw_node_prop "$PW_SINK" object.serial)
pw_spawn pw-play --target "$PW_SINK" /testbed/files/pattern-long.wav
if ! tb_wait_until 30 pw_node_running "$PW_SINK"; then
    tb_result play-resumed FAIL "the sink never ran: state $(pw_node_state "$PW_SINK"); $(tail -n 3 "$PW_LOGS/pw-play.log")"
    pw_dump_logs
    exit 1
fi
snd_put pw-playing 1
tb_phase pw-playing
# dom0 kills the backend once 2 s have arrived and says so when the new one runs.
pw__restarted() { [ -n "$(xenstore-read data/testbed/backend-restarted 2>/dev/null)" ]; }
tb_wait_until 150 pw__restarted || tb_log "dom0 never said the backend was restarted"
tb_phase pw-backend-restarted
states=""
# The node's states while the backend is gone and back (polled until pw-play ends).
pw__track() {
    local s
    s=$(pw_node_state "$PW_SINK") || s=gone
    case " $states " in *" $s"*" ") ;; *) states="$states $s" ;; esac
    ! pw_alive pw-play
}
tb_wait_until 120 pw__track || tb_log "pw-play still runs 120 s after the restart"
pw_client_wait pw-play 5
rc=$(pw_rc pw-play)
snd_put pw-play-done "$rc"
id1=$(pw_node_id "$PW_SINK") || id1=none
serial1=$(pw_node_prop "$PW_SINK" object.serial) || serial1=none
same_node() { [ "$id0" = "$id1" ] && [ "$serial0" = "$serial1" ]; }
tb_check node-kept "node $PW_SINK: id $id0 -> $id1, object.serial $serial0 -> $serial1; states seen after the restart:$states" \
    same_node
tb_check play-resumed "pw-play (no user action) exit $rc; $(grep -v '^$' "$PW_LOGS/pw-play.log" | tail -n 2 | tr '\n' ' ')" [ "$rc" = 0 ]
grep -i 'xen-snd' "$PW_LOGS/pipewire.log" | sed 's/^/pwlog| pipewire: /' | tail -n 30
pw_session_stop
problems=$(pw_log_problems pipewire)
tb_check session-clean "pipewire exit $(pw_rc pipewire); ${problems:-no abort/panic/corruption in the daemon log}" [ -z "$problems" ]

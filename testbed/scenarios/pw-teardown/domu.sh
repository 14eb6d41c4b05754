# domU part of pw-teardown: two ways of ending the module while it plays, one session each.
#   1. `pw-cli destroy <module-id>`: the module goes, its nodes go, the daemon stays up and
#      answers (pw-cli, pactl); then the session is stopped normally.
#   2. a new session; SIGTERM to the pipewire daemon: it exits 0 within the bound.
# Neither may leave an abort, a double free, a panic or a segfault in the daemon log; dom0 checks
# that the backend saw the frontend close (5, then 6) each time.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/session.sh
. /testbed/pipewire/session.sh

# play_until_flowing N: session up, node there, pw-play running, and dom0 confirmed that audio
# reaches the backend (data/testbed/tdN-flowing). 1 (with a FAIL result) otherwise.
play_until_flowing() {
    pw_dropin log.level=info || return 1
    if ! pw_session_start; then
        tb_result "teardown$1-setup" FAIL "the PipeWire session did not come up"
        return 1
    fi
    if ! pw_wait_node "$PW_SINK" 60; then
        tb_result "teardown$1-setup" FAIL "no $PW_SINK node after 60 s"
        pw_dump_logs
        return 1
    fi
    pw_spawn pw-play --target "$PW_SINK" /testbed/files/pattern-long.wav
    if ! tb_wait_until 30 pw_node_running "$PW_SINK"; then
        tb_result "teardown$1-setup" FAIL "the sink never ran: $(tail -n 3 "$PW_LOGS/pw-play.log")"
        pw_dump_logs
        return 1
    fi
    snd_put "td$1-playing" 1
    if ! tb_wait_until 60 tb_xs_is "data/testbed/td$1-flowing" 1; then
        tb_result "teardown$1-setup" FAIL "dom0 never saw the audio arrive at the backend"
        return 1
    fi
    tb_result "teardown$1-setup" PASS "playing to node $(pw_node_id "$PW_SINK"), audio reaches the backend"
}

clean_exit() { [ -z "$problems" ] && [ "$(pw_rc pipewire)" = 0 ]; }
pw__module_gone() { ! pw_module_id >/dev/null; }
pw__nodes_gone() { ! pw_node_id "$PW_SINK" >/dev/null && ! pw_node_id "$PW_SOURCE" >/dev/null; }

# ---- 1: pw-cli destroy <module-id> while playing ----------------------------------------------
tb_phase teardown1
if play_until_flowing 1; then
    mid=$(pw_module_id)
    out=$(pw_as pw-cli destroy "$mid" 2>&1)
    rc=$?
    t0=$(tb_uptime_cs)
    if tb_wait_until 20 pw__module_gone && tb_wait_until 20 pw__nodes_gone; then
        gone="module $mid and its nodes gone after $(pw__since "$t0") s"
    else
        gone="module $mid still listed: $(pw_module_id) / nodes: $(pw_node_id "$PW_SINK") $(pw_node_id "$PW_SOURCE")"
    fi
    snd_put td1-destroyed 1
    alive=no
    pw__core_answers && pw__pulse_answers && alive=yes
    unloaded() { [ "$rc" = 0 ] && pw__module_gone && pw__nodes_gone && [ "$alive" = yes ]; }
    tb_check destroy-unloaded "pw-cli destroy $mid: exit $rc $out; $gone; daemon answers: $alive" \
        unloaded
    pw_stop_one pw-play INT
    problems=$(pw_log_problems pipewire)
    pw_session_stop
    tb_check destroy-clean "pipewire exit $(pw_rc pipewire) afterwards; ${problems:-no abort/double free/panic/segfault in the daemon log}" \
        clean_exit
    grep -i 'xen-snd' "$PW_LOGS/pipewire.log" | tail -n 15 | sed 's/^/pwlog| session1: /'
fi
snd_put td1-destroyed 1
pw_session_stop >/dev/null 2>&1
pw_session_reset

# ---- 2: SIGTERM to the daemon while playing ---------------------------------------------------
tb_phase teardown2
if play_until_flowing 2; then
    t0=$(tb_uptime_cs)
    pw_stop_one pipewire TERM
    took=$(pw__since "$t0")
    snd_put td2-terminated 1
    problems=$(pw_log_problems pipewire)
    tb_check sigterm-exit "pipewire exit $(pw_rc pipewire) $took s after SIGTERM while playing; ${problems:-no abort/double free/panic/segfault in the daemon log}" \
        clean_exit
    grep -i 'xen-snd' "$PW_LOGS/pipewire.log" | tail -n 15 | sed 's/^/pwlog| session2: /'
    pw_tail=$(tail -n 5 "$PW_LOGS/pipewire.log" | tr '\n' ' ')
    tb_log "pipewire log tail: $pw_tail"
fi
snd_put td2-terminated 1
pw_session_stop >/dev/null 2>&1

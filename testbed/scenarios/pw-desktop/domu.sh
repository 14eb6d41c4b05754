# domU part of pw-desktop: a headless desktop session (PipeWire + our module through the shipped
# drop-in, WirePlumber, pipewire-pulse) on the guest's vsnd card, served by xen-snd-backend in
# dom0. One boot, three parts:
#   desktop  pactl lists the Xen sink and source with the names from xl.cfg; set-default-sink
#            selects the sink
#   play     pw-play of the pattern to the default sink; dom0 compares what the backend received
#   record   pw-record from the Xen source; compared here with the backend's capture pattern
# plus the delay the nodes report and the daemons' CPU use while playing (result pw-measure).
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/session.sh
. /testbed/pipewire/session.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

domid=$(xenstore-read domid)
pw_dropin log.level=info || { tb_result session FAIL "the shipped drop-in lacks an argument"; exit 1; }
tb_phase pw-session-start
if ! pw_session_start; then
    tb_result session FAIL "the PipeWire session did not come up (pwlog| lines)"
    exit 1
fi
tb_result session PASS "pipewire, wireplumber and pipewire-pulse answer (user $PW_USER)"
tb_phase pw-session-ready
if pw_wait_node "$PW_SINK" 60 && pw_wait_node "$PW_SOURCE" 10; then
    tb_result nodes PASS "$PW_SINK = node $(pw_node_id "$PW_SINK"), $PW_SOURCE = node $(pw_node_id "$PW_SOURCE")"
else
    tb_result nodes FAIL "no $PW_SINK / $PW_SOURCE node after 60 s; module: $(pw_module_id >/dev/null && echo loaded || echo absent)"
    pw_dump_logs
    exit 1
fi
tb_phase pw-nodes

# ---- desktop ---------------------------------------------------------------------------------
# What a desktop's sound settings show: pipewire-pulse's view, once WirePlumber configured the
# nodes (their sample spec appears then).
sink_desc="Xen sound: Testbed (playback)"
source_desc="Xen sound: Testbed (capture 1)"
pw__listed() { # KIND NAME: pactl list KIND shows NAME with a configured sample spec
    pw_as pactl list "$1" >"/tmp/pactl-$1" 2>&1 &&
        awk -v n="Name: $2" '/^[A-Z][a-z]+ #[0-9]+/ { m = 0 } index($0, n) { m = 1 }
            m && /Sample Specification: s16le 2ch 48000Hz/ { f = 1 } END { exit !f }' "/tmp/pactl-$1"
}
# pw__entry KIND NAME: the pactl list block of NAME (without its property list).
pw__entry() {
    awk -v n="Name: $2" '/^[A-Z][a-z]+ #[0-9]+/ { if (m) exit; hdr = $0; m = 0 }
        index($0, n) { m = 1; print hdr }
        m && /^[[:space:]]*Properties:/ { p = 1 }
        m && !p { print }
        m && p && /api\.xen\.card\.long-name|node\.nick|device\.api/ { print }' "/tmp/pactl-$1"
}
if tb_wait_until 30 pw__listed sinks "$PW_SINK"; then
    pw__entry sinks "$PW_SINK" | sed 's/^/pactl-sinks| /'
    entry=$(pw__entry sinks "$PW_SINK")
    if echo "$entry" | grep -qxF "	Description: $sink_desc" &&
        echo "$entry" | grep -q 'api.xen.card.long-name = "Xen PV sound testbed"'; then
        tb_result desktop-sink-listed PASS "pactl: $(echo "$entry" | grep -E 'Sink #|Description:|Sample Spec|Flags:' | tr -s '\t\n' '  ')"
    else
        tb_result desktop-sink-listed FAIL "pactl lists $PW_SINK but not as '$sink_desc' with the card's long name: $(echo "$entry" | tr -s '\t\n' '  ')"
    fi
else
    tb_result desktop-sink-listed FAIL "pactl list sinks has no configured $PW_SINK after 30 s: $(grep -E 'Name:|Description:' /tmp/pactl-sinks | tr -s '\t\n' '  ')"
fi
if tb_wait_until 30 pw__listed sources "$PW_SOURCE"; then
    pw__entry sources "$PW_SOURCE" | sed 's/^/pactl-sources| /'
    entry=$(pw__entry sources "$PW_SOURCE")
    described() { echo "$entry" | grep -qxF "	Description: $source_desc"; }
    tb_check desktop-source-listed "pactl: $(echo "$entry" | grep -E 'Source #|Description:|Sample Spec' | tr -s '\t\n' '  ')" \
        described
else
    tb_result desktop-source-listed FAIL "pactl list sources has no configured $PW_SOURCE after 30 s: $(grep -E 'Name:|Description:' /tmp/pactl-sources | tr -s '\t\n' '  ')"
fi
pw__default_is() { [ "$(pw_as pactl "get-default-$1" 2>/dev/null)" = "$2" ]; }
out=$(pw_as pactl set-default-sink "$PW_SINK" 2>&1)
if tb_wait_until 10 pw__default_is sink "$PW_SINK"; then
    tb_result desktop-default-sink PASS "pactl set-default-sink $PW_SINK; get-default-sink: $(pw_as pactl get-default-sink)"
else
    tb_result desktop-default-sink FAIL "set-default-sink said '$out'; get-default-sink: $(pw_as pactl get-default-sink 2>&1)"
fi
out=$(pw_as pactl set-default-source "$PW_SOURCE" 2>&1)
tb_check desktop-default-source "get-default-source: $(pw_as pactl get-default-source 2>&1) $out" \
    tb_wait_until 10 pw__default_is source "$PW_SOURCE"

# ---- play ------------------------------------------------------------------------------------
# pw-play without a target: WirePlumber routes it to the default sink chosen above. The pattern
# is 240 quanta of 1024 frames (pw-play drops a trailing partial quantum).
tb_phase pw-play-start
lat="" nlat="" links="" slat=""
pw_cpu_begin
pw_spawn pw-play "$SND_PATTERN"
if tb_wait_until 30 pw_node_running "$PW_SINK"; then
    links=$(pw_links_of "$PW_SINK")
    lat=$(pw_pulse_latency "$PW_SINK")
    nlat=$(pw_latency_ms "$PW_SINK")
else
    links="(the sink never ran)"
fi
pw_client_wait pw-play 60
cpu=$(pw_cpu_end)
tb_phase pw-play-end
rc=$(pw_rc pw-play)
mlog="$(pw_module_said "$PW_SINK" started) / $(pw_module_said "$PW_SINK" stopped)"
snd_put pw-play-done "$rc"
tb_check play-finished "pw-play exit $rc; links: $links" [ "$rc" = 0 ]
tb_result pw-measure PASS "while playing: node Latency param ${nlat:-none}; pactl: '${lat:-?}'; module: $mlog; CPU $cpu"

# ---- record ----------------------------------------------------------------------------------
# The recording runs at quantum 2048 (PipeWire's default clock.max-quantum): PipeWire keeps no
# queue on a link, so a recorder that is scheduled too late for its cycle loses that quantum —
# the pw-control scenario shows it with PipeWire's own null sink — and this guest's single TCG
# vCPU now and then runs it more than a 1024-frame cycle (21 ms) late. Twice the quantum, twice
# the slack; the Xen source sizes its buffer toward the backend for it (two quanta).
tb_phase pw-record-start
rm -f /tmp/rec.wav
pw_as pw-metadata -n settings 0 clock.force-quantum 2048 >/dev/null 2>&1 ||
    tb_log "pw-metadata could not force the quantum"
pw_spawn pw-record --target "$PW_SOURCE" --rate 48000 --channels 2 --format s16 /tmp/rec.wav
if tb_wait_until 30 pw_node_running "$PW_SOURCE"; then
    # About 2 s of audio: wait until the file has grown that far (a real condition, bounded).
    recorded_2s() { [ "$(stat -c %s /tmp/rec.wav 2>/dev/null || echo 0)" -ge 384000 ]; }
    tb_wait_until 30 recorded_2s ||
        tb_log "pw-record wrote only $(stat -c %s /tmp/rec.wav 2>/dev/null) bytes in 30 s"
    slat=$(pw_pulse_latency "$PW_SOURCE")
fi
pw_stop_one pw-record INT
pw_as pw-metadata -n settings 0 clock.force-quantum 0 >/dev/null 2>&1
tb_phase pw-record-end
if pwc_wav_data /tmp/rec.wav /tmp/rec.raw; then
    verdict=PASS
    d=$(pwc_capture_match /tmp/rec.raw "$domid/0/0/1") || verdict=FAIL
    tb_result record-bit-exact "$verdict" "pw-record exit $(pw_rc pw-record): $d; pactl source latency '${slat:-?}'; module: $(pw_module_said "$PW_SOURCE" started) / $(pw_module_said "$PW_SOURCE" "restarted with" || echo "no restart") / $(pw_module_said "$PW_SOURCE" stopped)"
else
    tb_result record-bit-exact FAIL "pw-record (exit $(pw_rc pw-record)) wrote no WAV data: $(ls -l /tmp/rec.wav 2>&1); $(tail -n 3 "$PW_LOGS/pw-record.log")"
fi

# ---- the latency a Pulse client sees ---------------------------------------------------------
# pactl list shows "Latency: 0 usec" for every sink: pipewire-pulse 0.3.65 fills that field with a
# constant 0. What reaches a Pulse client's stream (pa_stream_get_latency, used for A/V sync) is
# the sink's delay; paplay -v prints it. 3 s of silence with a 50 ms client buffer (more than
# two quanta: with less the client underruns every cycle and stalls), so what is printed is
# the node's delay plus up to 50 ms (silence does not disturb the play check above).
tb_phase pw-paplay-start
dd if=/dev/zero of=/tmp/zero.raw bs=4800 count=120 2>/dev/null
pw_spawn paplay -v --raw --format=s16le --rate=48000 --channels=2 --latency-msec=50 \
    --device="$PW_SINK" /tmp/zero.raw
pw_client_wait paplay 20
# paplay prints the latency as it goes (several times a second); the first values come while
# the stream fills, the last while it drains: the median says what a client saw.
plat=$(tr '\r' '\n' <"$PW_LOGS/paplay.log" | sed -n 's/.*Latency: \([0-9]*\) usec.*/\1/p' |
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR) printf "median %.1f ms (%d values from %.1f to %.1f ms)", v[int((NR + 1) / 2)] / 1000, NR, v[1] / 1000, v[NR] / 1000 }')
tb_result pulse-client-latency PASS "paplay (exit $(pw_rc paplay)) to $PW_SINK with a 50 ms client buffer reports a stream latency of ${plat:-?} (the node's Latency param: ${nlat:-none})"

# ---- end -------------------------------------------------------------------------------------
pw_session_stop
problems=$(pw_log_problems pipewire)
clean_exit() { [ -z "$problems" ] && [ "$(pw_rc pipewire)" = 0 ]; }
tb_check session-clean "exit statuses: pipewire $(pw_rc pipewire), wireplumber $(pw_rc wireplumber), pipewire-pulse $(pw_rc pipewire-pulse); ${problems:-no abort/panic/corruption in the daemon log}" \
    clean_exit
PW_LOG_LINES=25
pw_dump_logs

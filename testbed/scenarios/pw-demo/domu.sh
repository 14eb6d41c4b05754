# domU part of pw-demo (scripts/demo): a headless desktop session; the Xen sink as a desktop lists
# it (pactl list sinks, printed as "demo| " lines that scripts/demo shows), selected as the
# default sink, then pw-play of a short melody to it. What was played, the delay the node reports
# and the daemons' CPU use go to results; dom0 compares what the backend received.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/session.sh
. /testbed/pipewire/session.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

melody=/testbed/files/melody.wav
pw_dropin log.level=info || exit 1
if ! pw_session_start; then
    tb_result demo-session FAIL "the PipeWire session did not come up"
    exit 1
fi
if ! pw_wait_node "$PW_SINK" 60; then
    tb_result demo-session FAIL "no Xen sink node after 60 s"
    pw_dump_logs
    exit 1
fi
tb_result demo-session PASS "PipeWire, WirePlumber and pipewire-pulse run; the module made $PW_SINK"
listed() { pw_as pactl list sinks 2>/dev/null | grep -q "Sample Specification: s16le 2ch 48000Hz"; }
tb_wait_until 30 listed || true
pw_as pactl list sinks >/tmp/sinks 2>&1
awk -v n="Name: $PW_SINK" '/^Sink #/ { if (m) exit; hdr = $0 } index($0, n) { m = 1; print hdr }
    m && /^[[:space:]]*(Name|Description|Driver|Sample Specification|Channel Map|State|Volume|Flags|Latency):/' /tmp/sinks |
    sed 's/^/demo| /'
pw_as pactl set-default-sink "$PW_SINK"
sink_is_default() { grep -q "Name: $PW_SINK" /tmp/sinks && [ "$(pw_as pactl get-default-sink)" = "$PW_SINK" ]; }
tb_check demo-sink-listed "pactl: $(grep -E 'Description: Xen' /tmp/sinks | tr -s '\t ' ' '); default sink $(pw_as pactl get-default-sink)" \
    sink_is_default

frames=$(($(pwc_size "$melody") - 44))
frames=$((frames / 4))
pw_cpu_begin
pw_spawn pw-play "$melody"
lat=""
if tb_wait_until 30 pw_node_running "$PW_SINK"; then
    lat=$(pw_latency_ms "$PW_SINK")
fi
pw_client_wait pw-play 60
cpu=$(pw_cpu_end)
rc=$(pw_rc pw-play)
snd_put pw-play-done "$rc"
tb_check demo-played "pw-play of melody.wav: exit $rc, $frames frames ($((frames * 10 / 48000 / 10)).$((frames * 10 / 48000 % 10)) s)" [ "$rc" = 0 ]
tb_result demo-measure PASS "delay the node reports: ${lat:-?}; module: $(pw_module_said "$PW_SINK" started) / $(pw_module_said "$PW_SINK" stopped); CPU while playing: $cpu"
pw_session_stop

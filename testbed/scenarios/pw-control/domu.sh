# domU part of pw-control: the same PipeWire session and the same pw-play of the pattern, but to
# PipeWire's own null sink (support.null-audio-sink, driving the graph with its timer) instead of
# the Xen sink, recorded from the null sink's monitor with pw-record. No Xen sound on the data
# path at all: this is the baseline of what PipeWire itself does in this (TCG-emulated) guest.
# Silence inserted here means the graph's clients miss their cycles in this environment, and
# whole quanta missing mean the recorder missed its cycle (a monitor does not wait for it): not
# that the module lost anything. The comparison is a measurement (control-baseline); the checks
# are that the session, the null sink and both clients work.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/session.sh
. /testbed/pipewire/session.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

pw_dropin log.level=info || exit 1
pw_session_start || { tb_result control-session FAIL "the PipeWire session did not come up"; exit 1; }
pw_as pw-cli create-node adapter '{ factory.name = support.null-audio-sink node.name = control_sink media.class = Audio/Sink object.linger = true audio.format = S16LE audio.rate = 48000 audio.channels = 2 audio.position = [ FL FR ] node.latency = 1024/48000 }' >/dev/null 2>&1
if ! pw_wait_node control_sink 30; then
    tb_result control-session FAIL "the null sink did not appear"
    pw_dump_logs
    exit 1
fi
tb_result control-session PASS "null sink control_sink = node $(pw_node_id control_sink)"
pw_spawn pw-record -P '{ stream.capture.sink = true }' --target control_sink --rate 48000 --channels 2 --format s16 /tmp/control.wav
tb_wait_until 30 pw_node_running control_sink || tb_log "the null sink never ran"
pw_cpu_begin
pw_spawn pw-play --target control_sink "$SND_PATTERN"
pw_client_wait pw-play 90
cpu=$(pw_cpu_end)
# Everything played has gone through the monitor once pw-play is gone; stop the recorder.
pw_stop_one pw-record INT
recorded() { pwc_wav_data /tmp/control.wav /tmp/control.raw && pwc_first_sound /tmp/control.raw >/dev/null; }
tb_check control-played "pw-play exit $(pw_rc pw-play), pw-record exit $(pw_rc pw-record)" recorded
pwc_wav_data "$SND_PATTERN" /tmp/want.raw
if d=$(pwc_match /tmp/control.raw /tmp/want.raw); then
    tb_result control-baseline PASS "pw-play -> null sink -> monitor -> pw-record is bit-exact here: $d; CPU $cpu"
else
    tb_result control-baseline PASS "pw-play -> null sink -> monitor -> pw-record is NOT bit-exact here either: $d; as file frames: $(pwc_pattern_runs /tmp/control.raw 12 245760); CPU $cpu"
fi
pw_session_stop

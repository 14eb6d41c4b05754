# dom0 part of pw-backend-restart: while PipeWire in the domU plays the long pattern through the
# Xen sink, xen-snd-backend is killed (SIGKILL, like a crash) and a new one is started. Nobody
# touches the domU: its node must come back by itself, and what the new backend receives must be
# the rest of the file, bit-exact, from wherever it resumed. Each backend writes its own WAV.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

want=/testbed/files/pattern-long.wav
snd_start_backend -o /run/wav1 || exit 1
pwc_create_domu || exit 1
id=$(tb_domid)
stream=$id/0/0/0
# Kill it once the domU is playing and 2 s of audio (leading silence included) have arrived.
playing() { pwc_domu_says pw-playing 1 && [ "$(snd_backend_bytes "$stream")" -ge 384000 ]; }
if ! tb_wait_until 150 playing; then
    tb_result backend-killed FAIL "the domU never played 2 s to the backend: domU says '$(snd_domu_get pw-playing)', backend: $(snd_backend_report "$stream")"
    pwc_tell backend-restarted failed
    exit 1
fi
tb_phase backend-kill
t_kill=$(tb_uptime_cs)
snd_backend_stop KILL || { tb_result backend-killed FAIL "xen-snd-backend survived SIGKILL"; exit 1; }
# The killed backend never fixed up its WAV header: everything after the 44 bytes is data.
tail -c +45 "/run/wav1/$id-0-0-0.wav" >/tmp/part1.raw 2>/dev/null
n1=$(pwc_size /tmp/part1.raw)
killed_log=$(wc -l <"$SND_BE_LOG")
tb_check backend-killed "SIGKILL after $((n1 / 4)) frames had arrived" [ "$n1" -gt 0 ]
# Restart at once; every comparison waits until the domU is done (they take seconds under TCG).
snd_start_backend -o /run/wav2 || { pwc_tell backend-restarted failed; exit 1; }
tb_phase backend-restarted
pwc_tell backend-restarted 1
tb_result backend-restarted PASS "new pid $(snd_backend_pid), started right after the kill"
t_start=$(tb_uptime_cs)
# How long until the guest is connected to the new backend again (its log says Connected).
reconnected() { tail -n +$((killed_log + 1)) "$SND_BE_LOG" | grep -q "\[$id/0\] set backend state to 4 "; }
if tb_wait_until 120 reconnected; then
    t_conn=$(tb_uptime_cs)
    tb_result pw-reconnect-time PASS "connected again $(((t_conn - t_start) / 100)).$((((t_conn - t_start) % 100) / 10)) s after the new backend started, $(((t_conn - t_kill) / 100)).$((((t_conn - t_kill) % 100) / 10)) s after the kill"
fi
tb_wait_domu
tail -n +$((killed_log + 1)) "$SND_BE_LOG" >/tmp/backend2.log
tb_check backend-reconnected "second backend: $(grep "\[$id/0\] \(set backend state\|frontend state changed\)" /tmp/backend2.log | sed 's/.*\] //;s/set backend state to/BE/;s/frontend state changed to/FE/;s/ ([A-Za-z]*)//' | tr '\n' ',')" \
    grep -q "\[$id/0\] set backend state to 4 " /tmp/backend2.log
snd_backend_stop TERM || tb_result backend-stopped FAIL "the second xen-snd-backend did not exit on SIGTERM"
report=$(snd_backend_final "$stream") || report="(no report line)"

pwc_wav_data "$want" /tmp/want.raw
if d1=$(pwc_is_prefix /tmp/part1.raw /tmp/want.raw); then
    tb_result first-part-bit-exact PASS "what the killed backend got: $d1"
else
    tb_result first-part-bit-exact FAIL "what the killed backend got: $d1; as file frames: $(pwc_pattern_runs /tmp/part1.raw)"
fi

# Where the second backend's audio starts in the file: its first sound carries its frame index.
if pwc_wav_data "/run/wav2/$id-0-0-0.wav" /tmp/part2.raw && g2=$(pwc_first_sound /tmp/part2.raw); then
    k2=$(pwc_pattern_index /tmp/part2.raw "$g2")
    d2=$(pwc_match /tmp/part2.raw /tmp/want.raw $((k2 * 4)))
    if pwc_match /tmp/part2.raw /tmp/want.raw $((k2 * 4)) >/dev/null; then
        tb_result rest-bit-exact PASS "from file frame $k2 on: $d2; report: $report"
    else
        tb_result rest-bit-exact FAIL "from file frame $k2 on: $d2; as file frames: $(pwc_pattern_runs /tmp/part2.raw 12 737280 "$k2"); report: $report"
    fi
    # The last file frame the first backend got (by the index it carries) against the second's
    # first: what went missing (or came twice) around the restart.
    k1=-1
    l1=$(pwc_last_sound /tmp/part1.raw) && k1=$(pwc_pattern_index /tmp/part1.raw "$l1")
    lost=$((k2 - k1 - 1))
    if [ "$lost" -ge 0 ]; then what="$lost frames ($((lost * 1000 / 48000)) ms) lost"; else what="$((-lost)) frames ($((-lost * 1000 / 48000)) ms) played twice"; fi
    tb_result pw-restart-loss PASS "$what around the restart: the first backend's last file frame was $k1, the second's first $k2"
else
    tb_result rest-bit-exact FAIL "the second backend received no audio: $(find /run/wav2 -type f 2>&1 | tr '\n' ' ') report: $report"
fi

# dom0 part of backend-restart: once about 1 s of audio has reached the backend, SIGKILL it
# and start a new one (each writes what it receives to its own WAV file). When the domU is
# done, the two parts are placed in the pattern file by the frame indexes the pattern carries:
# what the first backend got must be the file's beginning, what the second got its rest. If
# `xen-snd play` gives up instead, the domU plays the file once more (replay-after-restart).
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

snd_start_backend -o /run/wav1 || exit 1
tb_result backend-watching PASS "pid $(snd_backend_pid), before xl create"
tb_create_domu || exit 1
id=$(tb_domid)
stream=$id/0/0/0
received_1s() { [ "$(snd_backend_bytes "$stream")" -ge 192000 ]; }
if ! tb_wait_until 90 received_1s; then
    tb_result backend-killed FAIL "the backend never received 1 s of audio on $stream: $(snd_backend_report "$stream")"
    exit 1
fi
tb_phase backend-kill
snd_backend_stop KILL || { tb_result backend-killed FAIL "xen-snd-backend survived SIGKILL"; exit 1; }
part1=$TB_RUN/part1.raw part2=$TB_RUN/part2.raw want=$TB_RUN/want.raw
# The killed backend never fixed up its WAV header: take everything after it.
tail -c +45 "/run/wav1/$id-0-0-0.wav" >"$part1" 2>/dev/null
n1=$(stat -c %s "$part1" 2>/dev/null || echo 0)
tb_check backend-killed "SIGKILL after $n1 bytes ($((n1 / 4)) frames) had arrived; backend state node: $(xenstore-read "/local/domain/0/backend/vsnd/$id/0/state")" \
    [ "$n1" -gt 0 ]
killed_log=$(wc -l <"$SND_BE_LOG")
snd_start_backend -o /run/wav2 || exit 1
tb_phase backend-restarted
tb_result backend-restarted PASS "new pid $(snd_backend_pid)"
# The second backend's own log lines (after the first one's) while the first play ran.
tb_wait_until $((TB_TIMEOUT - 60)) snd_domu_get play >/dev/null || tb_log "the domU never reported the end of its play"
tail -n +$((killed_log + 1)) "$SND_BE_LOG" >"$TB_RUN/backend2.log"
xenstore-write "/local/domain/$id/$SND_XS/replay-go" 1
tb_wait_domu 200
tb_check backend-reconnected "second backend: $(grep "\[$id/0\] \(set backend state\|frontend state changed\)" "$TB_RUN/backend2.log" | sed 's/.*\] //;s/set backend state to/BE/;s/frontend state changed to/FE/;s/ ([A-Za-z]*)//' | tr '\n' ',')" \
    grep -q "\[$id/0\] set backend state to 4 " "$TB_RUN/backend2.log"
snd_backend_stop TERM || tb_result backend-stopped FAIL "the second xen-snd-backend did not exit on SIGTERM"

snd_wav_data "$SND_PATTERN" >"$want"
total=$(stat -c %s "$want")
snd_wav_data "/run/wav2/$id-0-0-0.wav" >"$part2" 2>/dev/null || : >"$part2"
n2=$(stat -c %s "$part2")
tb_check first-part-is-prefix "the first backend's $n1 bytes are the file's first $n1" cmp -s -n "$n1" "$part1" "$want"
# If the tool gave up, the domU played the whole file once more: that replay is the end of what
# the second backend received; what came before it is the rest of the first play.
replay=$(snd_domu_get replay)
if [ -n "$replay" ]; then
    rest=$((n2 - total))
    [ "$rest" -ge 0 ] || rest=0
    tb_check replay-after-restart "a second xen-snd play (exit $replay) reached the restarted backend bit-exactly" \
        sh -c "[ $replay = 0 ] && [ $n2 -ge $total ] && cmp -s -n $total '$part2' '$want' $rest 0"
    head -c "$rest" "$part2" >"$part2.rest"
    mv "$part2.rest" "$part2"
    n2=$rest
fi
if [ "$n2" -gt 0 ]; then
    k2=$(snd_frame_index "$part2" 0)
    o2=$((k2 * 4))
    tb_check rest-arrived "the second backend got $n2 bytes, from frame $k2 (byte $o2) on; the file has $total" \
        sh -c "[ $((o2 + n2)) = $total ] && cmp -s -n $n2 '$part2' '$want' 0 $o2"
    lost=$((o2 - n1))
    if [ "$lost" -ge 0 ]; then what="$lost bytes ($((lost / 4)) frames, $((lost * 1000 / 192000)) ms) lost"; else what="$((-lost)) bytes ($((-lost / 4)) frames) sent twice"; fi
    tb_result loss PASS "$what between the first backend's end (byte $n1) and the second's start (byte $o2)"
else
    tb_result rest-arrived FAIL "the rest of the play never reached the second backend ($((total - n1)) of $total bytes)"
    tb_result loss FAIL "$((total - n1)) bytes ($(((total - n1) * 1000 / 192000)) ms): everything after the kill"
fi
snd_check_backend_clean backend-no-errors
snd_show_backend_log
[ -z "$(snd_domu_get hang)" ] || snd_dump_domu_trace 400

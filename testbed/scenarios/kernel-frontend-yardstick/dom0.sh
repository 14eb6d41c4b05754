# dom0 part of kernel-frontend-yardstick: our xen-snd-backend serves the card (writing what it
# receives to a WAV file too); once aplay in the domU is done the backend is stopped and its
# SHA-256 of the playback stream is compared with the pattern file's PCM data.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

wavdir=/run/backend-wav
snd_start_backend -o "$wavdir" || exit 1
tb_result backend-watching PASS "pid $(snd_backend_pid), before xl create"
tb_create_domu || exit 1
tb_wait_domu 200
id=$(tb_domid)
tb_check backend-connected "backend log: $(grep -m1 'set backend state to 4' "$SND_BE_LOG")" \
    snd_be_logged "\[$id/0\] set backend state to 4 "

# The expected data: the pattern file's data part, hashed here, and the host's hash of it.
read -r host_sha host_n <"$SND_PATTERN.sha256"
want=$(snd_wav_data_sha "$SND_PATTERN")
want_sha=$(snd_word 1 "$want") want_n=$(snd_word 2 "$want")
[ "$want_sha $want_n" = "$host_sha $host_n" ] ||
    tb_result fixture FAIL "pattern.wav data in dom0: $want_sha $want_n; host: $host_sha $host_n"

snd_backend_stop TERM || tb_result backend-stopped FAIL "xen-snd-backend did not exit on SIGTERM"

# arecord's data must be the first bytes of the capture stream's pattern.
rec=$(snd_domu_get arecord)
rec_sha=$(snd_word 1 "$rec") rec_n=$(snd_word 2 "$rec")
pat_sha=$(snd_word 4 "$(xen-snd-backend --print-pattern-sha256 "$id/0/0/1:${rec_n:-0}")")
arecord_ok() { [ -n "$rec_sha" ] && [ "${rec_n:-0}" -gt 0 ] && [ "$rec_sha" = "$pat_sha" ]; }
tb_check backend-capture-sha256 "arecord got ${rec_n:-no} bytes sha256 ${rec_sha:-none}; pattern of $id/0/0/1: $pat_sha" arecord_ok
line=$(snd_backend_final "$id/0/0/0") || line="(no report line for $id/0/0/0)"
got_n=$(snd_word 3 "$line") got_sha=$(snd_word 4 "$line")
tb_check backend-sha256 "backend: $got_n bytes sha256 $got_sha; file: $want_n bytes $want_sha" \
    [ "$got_sha $got_n" = "$want_sha $want_n" ]

# Where the backend's copy departs from the file (aplay may pad or cut the last period).
got_wav="$wavdir/$id-0-0-0.wav"
if snd_wav_data "$got_wav" >/tmp/got.raw && snd_wav_data "$SND_PATTERN" >/tmp/want.raw; then
    cmp=$(snd_compare_prefix /tmp/got.raw /tmp/want.raw)
    common=$(snd_word 1 "$cmp")
    tb_result backend-prefix PASS "common prefix $common bytes ($((common / 4)) frames); backend $(snd_word 2 "$cmp") bytes, file $(snd_word 3 "$cmp") bytes"
else
    tb_result backend-prefix FAIL "no WAV data from the backend at $got_wav: $(ls -l "$wavdir" 2>&1)"
fi
snd_show_backend_log

# dom0 part of pw-desktop: xen-snd-backend serves the card and writes what the playback stream
# receives to a WAV file; once the domU is done it is stopped (final SHA-256 report) and its copy
# of the playback stream is compared with the pattern file: bit-exact after PipeWire's leading
# silence, then nothing but silence (testbed/pipewire/checks.sh).
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

wavdir=/run/backend-wav
snd_start_backend -o "$wavdir" || exit 1
pwc_create_domu || exit 1
tb_wait_domu
id=$(tb_domid)
snd_backend_stop TERM || tb_result backend-stopped FAIL "xen-snd-backend did not exit on SIGTERM"
report=$(snd_backend_final "$id/0/0/0") || report="(no report line for $id/0/0/0)"
if [ "$(snd_domu_get pw-play-done)" != 0 ]; then
    tb_result play-bit-exact FAIL "pw-play did not finish in the domU (exit '$(snd_domu_get pw-play-done)'); backend: $report"
else
    pwc_playback_result play-bit-exact "$wavdir/$id-0-0-0.wav" "$SND_PATTERN" "backend report: $report" || true
fi

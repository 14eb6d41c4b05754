# dom0 part of pw-nonroot: serves the card and compares what the playback stream received (the
# domU's second session, as a plain user in the udev rule's group) with the pattern file.
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
    tb_result nonroot-play-bit-exact FAIL "pw-play did not finish as the user (exit '$(snd_domu_get pw-play-done)'); backend: $report"
else
    pwc_playback_result nonroot-play-bit-exact "$wavdir/$id-0-0-0.wav" "$SND_PATTERN" "backend report: $report" || true
fi

# dom0 part of pw-demo (scripts/demo): xen-snd-backend writes what the Xen sink plays to a WAV
# file; once the domU is done the file is compared with the melody and handed to the host on the
# raw disk that scripts/demo attaches (testbed/run --disk), where it lands as
# target/demo/xen-snd-demo.wav.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

wavdir=/run/demo-wav
snd_start_backend -o "$wavdir" || exit 1
pwc_create_domu || exit 1
tb_wait_domu
id=$(tb_domid)
snd_backend_stop TERM || tb_result backend-stopped FAIL "xen-snd-backend did not exit on SIGTERM"
report=$(snd_backend_final "$id/0/0/0") || report=""
# "sha256 STREAM BYTES HEX"
# shellcheck disable=SC2086 # split into words
set -- $report
bytes=${3:-0}
got="$wavdir/$id-0-0-0.wav"
tb_result demo-received PASS "the backend received $((bytes / 4)) frames ($bytes bytes) on stream $id/0/0/0, leading and trailing silence included"
pwc_playback_result demo-bit-exact "$got" /testbed/files/melody.wav || true
if d=$(pwc_export_file "$got" xen-snd-demo.wav); then
    tb_result demo-exported PASS "$d"
else
    tb_result demo-exported FAIL "$d"
fi

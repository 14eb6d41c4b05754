# domU part of kernel-frontend-yardstick: Linux's own frontend (snd_xen_front) and aplay play
# the pattern file to our backend in dom0.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

fe=device/vsnd/0
if ! tb_modprobe snd_xen_front; then
    tb_result frontend-connected FAIL "loading snd_xen_front failed"
    exit 1
fi
if tb_wait_until 60 tb_xs_is "$fe/state" 4; then
    tb_result frontend-connected PASS "$fe/state=4"
else
    tb_result frontend-connected FAIL "$fe/state=$(xenstore-read "$fe/state" 2>&1) after 60 s"
    exit 1
fi
tb_wait_until 10 test -e /dev/snd/pcmC0D0p || tb_log "no /dev/snd/pcmC0D0p after 10 s"

# -v prints the negotiated setup (period and buffer sizes) to stdout. -B: a 1.024 s buffer, so
# 4 periods of 12288 frames; the file is 20 such periods (aplay pads a partial last period).
tb_phase aplay-start
snd_bounded 120 aplay -v -B 1024000 -D hw:0,0 "$SND_PATTERN" >/tmp/aplay.log 2>&1
rc=$?
[ "$rc" = 124 ] && snd_report_hang aplay
tb_phase aplay-end
sed 's/^/aplay: /' /tmp/aplay.log
setup=$(grep -E '^ *(period_size|buffer_size) *:' /tmp/aplay.log | tr -s ' ' | tr '\n' ' ')
snd_put aplay-setup "$setup"
xruns=$(grep -c 'underrun!!!' /tmp/aplay.log)
tb_check aplay-played "aplay exit $rc; $setup; $xruns underrun(s)" [ "$rc" = 0 ]

# The same for capture: arecord through the kernel frontend takes 5 s of the backend's pattern;
# dom0 knows what the pattern holds.
tb_phase arecord-start
snd_bounded 120 arecord -B 1024000 -D hw:0,0 -f S16_LE -r 48000 -c 2 -d 5 /tmp/arecord.wav >/tmp/arecord.log 2>&1
rc=$?
[ "$rc" = 124 ] && snd_report_hang arecord
tb_phase arecord-end
sed 's/^/arecord: /' /tmp/arecord.log
snd_put arecord "$(snd_wav_data_sha /tmp/arecord.wav)"
tb_check arecord-recorded "arecord exit $rc; $(snd_wav_data_sha /tmp/arecord.wav); $(grep -c 'overrun!!!' /tmp/arecord.log) overrun(s)" [ "$rc" = 0 ]

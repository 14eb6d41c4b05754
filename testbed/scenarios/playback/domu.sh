# domU part of playback: `xen-snd play` sends the pattern file to our backend; its summary
# (frames, SHA-256 of what it sent) goes to dom0 through xenstore.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

snd_have_bin xen-snd || exit 1
want=$(snd_wav_data_sha "$SND_PATTERN")
want_sha=$(snd_word 1 "$want") want_n=$(snd_word 2 "$want")

tb_phase play-start
snd_bounded 120 xen-snd play "$SND_PATTERN" --no-progress --timeout 30 >/tmp/play.out 2>/tmp/play.err
rc=$?
[ "$rc" = 124 ] && snd_report_hang "xen-snd play"
tb_phase play-end
sed 's/^/play: /' /tmp/play.out /tmp/play.err
sha=$(snd_summary /tmp/play.out sha256)
frames=$(snd_summary /tmp/play.out frames)
snd_put play "rc=$rc frames=$frames sha256=$sha"
snd_put play-sha256 "$sha"
tb_check play-exit "exit $rc; $(head -c 300 /tmp/play.err | tr '\n' ' ')" [ "$rc" = 0 ]
tb_check play-frames "frames $frames of $((want_n / 4)); underruns $(snd_summary /tmp/play.out underruns); delay_ms $(snd_summary /tmp/play.out delay_ms)" \
    [ "$frames" = $((want_n / 4)) ]
tb_check play-sha256 "xen-snd sent sha256 $sha; the file's data $want_sha" [ "$sha" = "$want_sha" ]

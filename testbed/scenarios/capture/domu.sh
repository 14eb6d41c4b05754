# domU part of capture: `xen-snd record` takes 5 s from the capture stream; the byte count and
# the SHA-256 of the file's data go to dom0, which knows what the backend's pattern holds.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

snd_have_bin xen-snd || exit 1
out=/tmp/capture.wav
tb_phase record-start
snd_bounded 120 xen-snd record "$out" --seconds 5 --no-progress --timeout 30 >/tmp/record.out 2>/tmp/record.err
rc=$?
[ "$rc" = 124 ] && snd_report_hang "xen-snd record"
tb_phase record-end
sed 's/^/record: /' /tmp/record.out /tmp/record.err
sha=$(snd_summary /tmp/record.out sha256)
bytes=$(snd_summary /tmp/record.out bytes)
file=$(snd_wav_data_sha "$out")
file_sha=$(snd_word 1 "$file") file_n=$(snd_word 2 "$file")
snd_put record "rc=$rc bytes=$bytes sha256=$sha"
snd_put capture "$file_n $file_sha"
tb_check record-exit "exit $rc; $(head -c 300 /tmp/record.err | tr '\n' ' ')" [ "$rc" = 0 ]
# 5 s of 48 kHz S16LE stereo (the defaults).
bytes_ok() { [ "$bytes" = 960000 ] && [ "$file_n" = 960000 ]; }
tb_check record-bytes "$(snd_summary /tmp/record.out format) $(snd_summary /tmp/record.out rate) Hz $(snd_summary /tmp/record.out channels) ch: $bytes bytes in the summary, $file_n in the file; overruns $(snd_summary /tmp/record.out overruns)" \
    bytes_ok
tb_check record-file-sha256 "summary sha256 $sha; file data $file_sha" [ "$sha" = "$file_sha" ]

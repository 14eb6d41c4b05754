# domU part of backend-restart: one `xen-snd play` of the pattern file; dom0 kills and restarts
# the backend while it runs. The tool's exit status and messages go to dom0's results.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

fe=device/vsnd/0
snd_have_bin xen-snd || exit 1
tb_phase play-start
snd_bounded 120 xen-snd play "$SND_PATTERN" --no-progress --timeout 30 >/tmp/play.out 2>/tmp/play.err
rc=$?
[ "$rc" = 124 ] && snd_report_hang "xen-snd play"
tb_phase play-end
sed 's/^/play: /' /tmp/play.out /tmp/play.err
snd_put play "rc=$rc frames=$(snd_summary /tmp/play.out frames)"
tb_check play-survived "exit $rc; $(grep -v '^playing ' /tmp/play.err | head -c 300 | tr '\n' ' ') frames played: $(snd_summary /tmp/play.out frames); frontend state after exit: $(xenstore-read "$fe/state" 2>&1)" \
    [ "$rc" = 0 ]

# The tool gave up: does a fresh `xen-snd play` work with the restarted backend? (dom0 finds
# this replay at the end of what the second backend received.)
if [ "$rc" != 0 ]; then
    # dom0 first notes how far the second backend got during the first play.
    tb_wait_until 20 xenstore-exists "$SND_XS/replay-go" || tb_log "no replay-go from dom0 after 20 s"
    tb_phase replay-start
    snd_bounded 120 xen-snd play "$SND_PATTERN" --no-progress --timeout 30 >/tmp/replay.out 2>/tmp/replay.err
    rc2=$?
    [ "$rc2" = 124 ] && snd_report_hang "xen-snd play (replay)"
    tb_phase replay-end
    sed 's/^/replay: /' /tmp/replay.out /tmp/replay.err
    snd_put replay "$rc2"
    tb_check replay-exit "a second xen-snd play after the restart: exit $rc2; $(grep -v '^playing ' /tmp/replay.err | head -c 200 | tr '\n' ' ')" \
        [ "$rc2" = 0 ]
fi

# domU part of smoke-kernel-frontend: load Linux's snd_xen_front and check that it connects to
# the stub backend and registers the ALSA card described in xl.cfg.
# shellcheck shell=dash

fe=device/vsnd/0
if ! tb_modprobe snd_xen_front; then
    tb_result frontend-connected FAIL "loading snd_xen_front failed"
    exit 1
fi
if tb_wait_until 60 tb_xs_is "$fe/state" 4; then
    tb_result frontend-connected PASS "$fe/state=4"
else
    tb_result frontend-connected FAIL "$fe/state=$(xenstore-read "$fe/state" 2>&1) after 60 s"
fi

# The card appears as "vsnd". (Observed with Linux 6.1: the card's short and long names stay
# empty whatever xl.cfg says; the PCM name does come from xl.cfg's PCM entry.)
card_listed() { grep -q '^ *0 \[vsnd *\]' /proc/asound/cards 2>/dev/null; }
if tb_wait_until 10 card_listed; then
    tb_result alsa-card PASS "$(grep -m1 'vsnd' /proc/asound/cards)"
else
    tb_result alsa-card FAIL "/proc/asound/cards: $(cat /proc/asound/cards 2>&1)"
fi

# aplay (alsa-utils) works in the image and sees the card's PCM, named by xl.cfg: the yardstick
# tool for later scenarios.
aplay -l >/tmp/aplay-l.txt 2>&1
tb_check aplay-lists-card "$(grep -m1 '^card' /tmp/aplay-l.txt || cat /tmp/aplay-l.txt)" \
    grep -q '^card 0: vsnd .*device 0: Testbed' /tmp/aplay-l.txt

# dom0 part of pw-control: a backend is running (the module finds its card as usual), but the
# data path under test does not touch it. See domu.sh.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

snd_start_backend || exit 1
pwc_create_domu || exit 1
tb_wait_domu
snd_backend_stop TERM || true

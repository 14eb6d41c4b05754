# dom0 part of capture: the backend serves its deterministic pattern on the capture stream; the
# domU's recording must be exactly the first N bytes of it, as `xen-snd-backend
# --print-pattern-sha256` computes them here.
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh

snd_start_backend --capture pattern || exit 1
tb_result backend-watching PASS "pid $(snd_backend_pid), before xl create"
tb_create_domu || exit 1
tb_wait_domu 200
id=$(tb_domid)
capture=$(snd_domu_get capture)
n=$(snd_word 1 "$capture") got=$(snd_word 2 "$capture")
want=$(xen-snd-backend --print-pattern-sha256 "$id/0/0/1:${n:-0}")
want_sha=$(snd_word 4 "$want")
capture_ok() { [ -n "$got" ] && [ "$got" = "$want_sha" ] && [ "${n:-0}" -gt 0 ]; }
tb_check capture-sha256 "recorded ${n:-no} bytes sha256 ${got:-none}; pattern of $id/0/0/1: $want_sha" capture_ok
snd_backend_stop TERM || tb_result backend-stopped FAIL "xen-snd-backend did not exit on SIGTERM"
snd_check_backend_clean backend-no-errors
snd_show_backend_log
[ -z "$(snd_domu_get hang)" ] || snd_dump_domu_trace 400

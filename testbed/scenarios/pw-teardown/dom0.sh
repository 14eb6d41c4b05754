# dom0 part of pw-teardown: serves the card; for each of the domU's two teardowns it confirms
# that audio arrives before the teardown and that the frontend then closes toward the backend:
# the backend's log shows the frontend state going to 5 (Closing) and then 6 (Closed).
# shellcheck shell=dash
# shellcheck source=../../guest/snd.sh
. /testbed/snd.sh
# shellcheck source=../../pipewire/checks.sh
. /testbed/pipewire/checks.sh

snd_start_backend || exit 1
pwc_create_domu || exit 1
id=$(tb_domid)
stream=$id/0/0/0

# fe_states_since LINE: the frontend states the backend logged for our device after log line LINE.
fe_states_since() {
    tail -n +$(($1 + 1)) "$SND_BE_LOG" | sed -n "s/.*\[$id\/0\] frontend state changed to \([0-9]\).*/\1/p" | tr '\n' ' '
}
# closed_since LINE: a 5 and a later 6 among those states.
closed_since() {
    case " $(fe_states_since "$1")" in *" 5 "*"6 "*) return 0 ;; esac
    return 1
}

for n in 1 2; do
    case $n in 1) what="pw-cli destroy of the module" done_key=td1-destroyed ;; 2) what="SIGTERM to pipewire" done_key=td2-terminated ;; esac
    if ! tb_wait_until 150 pwc_domu_says "td$n-playing" 1; then
        tb_result "teardown$n-closed" FAIL "the domU never started playing for teardown $n"
        continue
    fi
    base=$(snd_backend_bytes "$stream")
    flowing() { [ "$(snd_backend_bytes "$stream")" -ge $((base + 96000)) ]; }
    if ! tb_wait_until 60 flowing; then
        tb_result "teardown$n-closed" FAIL "no audio reached the backend before teardown $n (bytes stay at $base)"
        continue
    fi
    mark=$(wc -l <"$SND_BE_LOG")
    pwc_tell "td$n-flowing" 1
    if ! tb_wait_until 90 pwc_domu_says "$done_key" 1; then
        tb_result "teardown$n-closed" FAIL "the domU never reported teardown $n"
        continue
    fi
    tb_wait_until 20 closed_since "$mark" || true
    tb_check "teardown$n-closed" "after the $what the backend saw the frontend go: $(fe_states_since "$mark")" closed_since "$mark"
done
tb_wait_domu
snd_backend_stop TERM || tb_result backend-stopped FAIL "xen-snd-backend did not exit on SIGTERM"

# Helpers for the scenarios that run our own binaries (xen-snd-backend in dom0, xen-snd or the
# kernel frontend in the domU). Source it from dom0.sh/domu.sh after lib.sh (the runner loads
# lib.sh): `. /testbed/snd.sh`. The image needs
#   testbed/build-initrd --bin target/release/xen-snd-backend --bin target/release/xen-snd \
#                        --file <fixtures>/pattern.wav --file <fixtures>/pattern.wav.sha256
# (scripts/testbed-scenarios does all of it).
# shellcheck shell=dash

# shellcheck disable=SC2034 # used by the scenarios that source this file
SND_PATTERN=/testbed/files/pattern.wav    # testbed/make-pattern-wav: 245760 frames, S16LE stereo
SND_BE_OUT=$TB_RUN/backend.out            # the backend's stdout: its SHA-256 reports
SND_BE_LOG=/var/log/xen/backend.log       # its stderr (-v: states, binds, errors); shown by diag
SND_BE_PID=$TB_RUN/backend.pid
SND_XS=data/testbed                       # the domU's scratch directory below its home

# snd_have_bin NAME: the image has our binary NAME (else a FAIL result naming the build step).
snd_have_bin() {
    command -v "$1" >/dev/null 2>&1 && return 0
    tb_result "missing-$1" FAIL "$1 is not in the image (testbed/build-initrd --bin target/release/$1)"
    return 1
}

# snd_word N TEXT: the Nth whitespace-separated word of TEXT (nothing if it has fewer).
snd_word() {
    local n="$1"
    # shellcheck disable=SC2086 # splitting TEXT into words is the point
    set -- $2
    [ "$n" -ge 1 ] && [ "$n" -le $# ] || return 0
    eval "echo \"\${$n}\""
}

# snd_wav_data FILE: the data part of a canonical WAV file (44-byte header: what
# make-pattern-wav, xen-snd record and xen-snd-backend -o write) on stdout; 1 if FILE is not one.
snd_wav_data() {
    [ "$(dd if="$1" bs=1 skip=36 count=4 2>/dev/null)" = data ] || return 1
    tail -c +45 "$1"
}

# snd_wav_data_sha FILE: "<sha256 of the data part> <data bytes>", or nothing.
snd_wav_data_sha() {
    local sha n
    [ "$(dd if="$1" bs=1 skip=36 count=4 2>/dev/null)" = data ] || return 1
    sha=$(tail -c +45 "$1" | sha256sum) || return 1
    n=$(($(stat -c %s "$1") - 44))
    echo "${sha%% *} $n"
}

# snd_frame_index FILE OFFSET: the pattern frame index stored at byte OFFSET of FILE (a frame of
# make-pattern-wav: left = k & 0xffff, right & 0xf = k >> 16); empty past the end.
snd_frame_index() {
    local l r
    # shellcheck disable=SC2046 # od prints two numbers
    set -- $(od -A n -t u2 -j "$2" -N 4 "$1" 2>/dev/null)
    l=${1-}
    r=${2-}
    [ -n "$l" ] && [ -n "$r" ] || return 1
    echo $((l | ((r & 15) << 16)))
}

# ---- dom0: the backend ------------------------------------------------------------------------

# snd_backend_pid: the pid of the backend started last.
snd_backend_pid() {
    cat "$SND_BE_PID" 2>/dev/null
}

# snd_backend_alive: it is running (a zombie counts as gone).
snd_backend_alive() {
    local pid
    pid=$(snd_backend_pid)
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null
}

# snd_started_count: how many backend instances have logged their start so far.
snd_started_count() {
    local n
    n=$(grep -c 'backend started, watching' "$SND_BE_LOG" 2>/dev/null)
    echo "${n:-0}"
}

# snd_start_backend [ARGS...]: start `xen-snd-backend -v ARGS` in the background and wait (10 s)
# until it watches backend/vsnd. Start it before tb_create_domu: libxl gives the backend 10 s
# to reach InitWait. Status 1 (and a backend-started FAIL) if it does not come up.
# shellcheck disable=SC2120 # the arguments are optional
snd_start_backend() {
    local before
    snd_have_bin xen-snd-backend || return 1
    before=$(snd_started_count)
    xen-snd-backend -v "$@" >>"$SND_BE_OUT" 2>>"$SND_BE_LOG" &
    echo $! >"$SND_BE_PID"
    if tb_wait_until 10 snd__started_after "$before"; then
        tb_log "xen-snd-backend $* running as pid $(snd_backend_pid)"
        return 0
    fi
    tb_result backend-started FAIL "xen-snd-backend $* did not start: $(tail -n 3 "$SND_BE_LOG" 2>/dev/null)"
    return 1
}

snd__started_after() {
    [ "$(snd_started_count)" -gt "$1" ] || return 1
}

# snd_backend_report STREAM [TIMEOUT_S]: SIGUSR1 the backend and print its report line for STREAM
# (<fe>/<dev>/<pcm>/<stream>): "sha256 STREAM BYTES HEX". Status 1 when no line for STREAM came.
snd_backend_report() {
    local before pid
    pid=$(snd_backend_pid)
    snd_backend_alive || return 1
    before=$(stat -c %s "$SND_BE_OUT" 2>/dev/null || echo 0)
    kill -USR1 "$pid" || return 1
    tb_wait_until "${2:-5}" snd__report_line "$before" "$1" >/dev/null || return 1
    snd__report_line "$before" "$1"
}

snd__report_line() {
    tail -c +$(($1 + 1)) "$SND_BE_OUT" 2>/dev/null | grep "^sha256 $2 " | tail -n 1 | grep .
}

# snd_backend_bytes STREAM: bytes the running backend has received on STREAM (0 if none yet).
snd_backend_bytes() {
    local line n
    line=$(snd_backend_report "$1" 2) || { echo 0; return 0; }
    n=$(snd_word 3 "$line")
    echo "${n:-0}"
}

# snd_backend_stop [SIGNAL]: stop the backend (default TERM: it closes its devices and prints
# its final report), wait (10 s) until it is gone. 1 if it would not exit.
snd_backend_stop() {
    local pid
    pid=$(snd_backend_pid)
    [ -n "$pid" ] || return 1
    kill "-${1:-TERM}" "$pid" 2>/dev/null
    tb_wait_until 10 snd__gone || return 1
    wait "$pid" 2>/dev/null
    return 0
}

snd__gone() {
    ! snd_backend_alive
}

# snd_backend_final STREAM: the last report line for STREAM in the backend's output (after
# snd_backend_stop TERM, the final report).
snd_backend_final() {
    grep "^sha256 $1 " "$SND_BE_OUT" 2>/dev/null | tail -n 1 | grep .
}

# snd_show_backend_log: the backend's log on the console as "be| ..." lines (serial.log keeps
# them for every run, not only failed ones).
snd_show_backend_log() {
    sed 's/^xen-snd-backend: /be| /' "$SND_BE_LOG" 2>/dev/null
}

# snd_dump_domu_trace [LINES]: the last LINES (default 300) requests and replies of the domU's
# xenstore connection from xenstored's trace (role-dom0.sh runs it with -T), as "xstrace| ..."
# lines: what the guest's frontend read and wrote, with the values, when something went wrong.
snd_dump_domu_trace() {
    local conn
    # The first ring-ref write below device/vsnd/: only a frontend writes those (libxl, in
    # dom0, writes the rest of the directory).
    conn=$(grep -m1 -E "^IN [^ ]+ [^ ]+ [^ ]+ WRITE \((/local/domain/$(tb_domid)/)?device/vsnd/[0-9]+/[0-9]+/[0-9]+/ring-ref " \
        /run/xenstored.trace 2>/dev/null | awk '{ print $2 }')
    [ -n "$conn" ] || { tb_log "no xenstore trace of the domU's vsnd writes"; return 0; }
    awk -v c="$conn" '$2 == c' /run/xenstored.trace | tail -n "${1:-300}" | sed 's/^/xstrace| /'
}

# snd_be_logged REGEX: the backend's log has a line matching REGEX (grep -E).
snd_be_logged() {
    grep -Eq "$1" "$SND_BE_LOG" 2>/dev/null
}

# snd_check_backend_clean NAME: result NAME passes when the backend logged no error.
snd_check_backend_clean() {
    local errs
    errs=$(grep -c '^xen-snd-backend: error' "$SND_BE_LOG" 2>/dev/null)
    tb_check "$1" "${errs:-0} error line(s) in the backend log: $(grep -m2 '^xen-snd-backend: error' "$SND_BE_LOG" 2>/dev/null)" \
        [ "${errs:-0}" = 0 ]
}

# snd_watch_initwait: in the background, measure how long after libxl created the first vsnd
# backend directory its state first read InitWait (2): centiseconds into $TB_RUN/initwait-cs
# ("never" if not within 15 s). Start it before tb_create_domu.
snd_watch_initwait() {
    (
        deadline=$(($(tb_uptime_cs) + 6000))
        until dev=$(snd__first_device); do
            [ "$(tb_uptime_cs)" -lt "$deadline" ] || exit 0
            sleep 0.05
        done
        t0=$(tb_uptime_cs)
        until tb_xs_is "$dev/state" 2; do
            if [ $(($(tb_uptime_cs) - t0)) -gt 1500 ]; then
                echo never >"$TB_RUN/initwait-cs"
                exit 0
            fi
            sleep 0.05
        done
        echo $(($(tb_uptime_cs) - t0)) >"$TB_RUN/initwait-cs"
    ) &
}

snd__first_device() {
    local base=/local/domain/0/backend/vsnd d n
    for d in $(xenstore-list "$base" 2>/dev/null); do
        for n in $(xenstore-list "$base/$d" 2>/dev/null); do
            echo "$base/$d/$n"
            return 0
        done
    done
    return 1
}

# snd_check_initwait NAME: result NAME from snd_watch_initwait's measurement (libxl's limit is
# 10 s).
snd_check_initwait() {
    local cs
    tb_wait_until 5 test -s "$TB_RUN/initwait-cs" || true
    cs=$(cat "$TB_RUN/initwait-cs" 2>/dev/null)
    case "$cs" in
    "" | never) tb_result "$1" FAIL "the backend did not reach InitWait within 15 s of libxl creating the device (${cs:-not measured})" ;;
    *) tb_check "$1" "InitWait $((cs / 100)).$(printf '%02d' $((cs % 100))) s after libxl created the device (limit 10 s)" [ "$cs" -lt 1000 ] ;;
    esac
}

# snd_domu_get KEY: read the domU's data/testbed/KEY (written by snd_put in the domU).
snd_domu_get() {
    xenstore-read "/local/domain/$(tb_domid)/$SND_XS/$1" 2>/dev/null
}

# snd_compare_prefix A B: "<common prefix bytes> <bytes of A> <bytes of B>" of two files.
snd_compare_prefix() {
    local a b first
    a=$(stat -c %s "$1")
    b=$(stat -c %s "$2")
    # busybox cmp: "<file1> <file2> differ: char N, line L" (1-based), or "EOF on <file>".
    first=$(cmp "$1" "$2" 2>&1)
    case "$first" in
    "") echo "$a $a $b" ;;
    *"differ: char "*)
        first=${first#*differ: char }
        first=${first%%,*}
        echo "$((first - 1)) $a $b"
        ;;
    *EOF*) if [ "$a" -lt "$b" ]; then echo "$a $a $b"; else echo "$b $a $b"; fi ;;
    *) echo "0 $a $b" ;;
    esac
}

# ---- domU -------------------------------------------------------------------------------------

SND_HANG=/tmp/snd-hang.txt    # snd_bounded's report on a command that did not finish

# snd_bounded SECS CMD [ARGS...]: run CMD (with the caller's redirections) for at most SECS. If
# it is still running then, write what each of its threads is blocked in (state, wchan, system
# call, kernel stack) to $SND_HANG, SIGTERM it and SIGKILL it 5 s later. Status: CMD's, or 124
# after the time ran out. (A hang then costs SECS, not the scenario's whole budget, and leaves
# evidence.)
snd_bounded() {
    local secs="$1" pid rc
    shift
    "$@" &
    pid=$!
    if tb_wait_until "$secs" snd__exited "$pid"; then
        wait "$pid"
        return $?
    fi
    snd__threads "$pid" >"$SND_HANG" 2>&1
    kill -TERM "$pid" 2>/dev/null
    tb_wait_until 5 snd__exited "$pid" || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=124
    return $rc
}

snd__exited() {
    [ -r "/proc/$1/stat" ] || return 0
    grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

# snd__threads PID: one block per thread of PID: "comm state wchan syscall" and its kernel stack.
snd__threads() {
    local t
    echo "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) (pid $1) did not finish:"
    for t in /proc/"$1"/task/*; do
        [ -d "$t" ] || continue
        echo "thread ${t##*/} $(cat "$t/comm" 2>/dev/null) state $(cut -d' ' -f3 "$t/stat" 2>/dev/null) wchan $(cat "$t/wchan" 2>/dev/null) syscall $(cut -d' ' -f1 "$t/syscall" 2>/dev/null)"
        head -n 6 "$t/stack" 2>/dev/null | sed 's/^/    /'
    done
}

# snd_report_hang WHAT: after snd_bounded returned 124: print $SND_HANG, hand a summary to dom0
# (data/testbed/hang, which makes dom0 dump the domU's xenstore traffic).
snd_report_hang() {
    sed 's/^/hang: /' "$SND_HANG"
    snd_put hang "$1: $(grep '^thread' "$SND_HANG" | sed 's/^thread [0-9]* //' | tr '\n' ';' | head -c 400)"
}


# snd_put KEY VALUE...: leave a value for dom0 in data/testbed/KEY.
snd_put() {
    local k="$1"
    shift
    xenstore-write "$SND_XS/$k" "$*" || tb_log "could not write $SND_XS/$k"
}

# snd_summary FILE KEY: the value of "KEY value" in a xen-snd summary (stdout) file.
snd_summary() {
    awk -v k="$2" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$1"
}

# A private, headless desktop audio session in the domU: PipeWire with our module (loaded through
# the shipped drop-in 50-xen-snd.conf, arguments set by the scenario), WirePlumber headless and
# pipewire-pulse, without D-Bus. Source it from a pw-* scenario's domu.sh (lib.sh is loaded):
#
#   . /testbed/pipewire/session.sh
#   pw_dropin log.level=info || exit 1     # the module's arguments (keys of the shipped file)
#   pw_session_start || exit 1             # pipewire, wireplumber, pipewire-pulse; bounded waits
#   pw_wait_node "$PW_SINK" 60 ...
#   pw_session_stop                        # SIGTERM, bounded; exit statuses in $PW_ROOT/<name>.rc
#
# Everything lives below $PW_ROOT (XDG_RUNTIME_DIR, XDG_CONFIG_HOME, HOME, logs). PW_USER (default
# root) runs the daemons and every client. The image needs testbed/pipewire/initrd-args.
# On a failure the callers print the logs' tails with pw_dump_logs (lines "pwlog| ...").
# shellcheck shell=dash
# shellcheck disable=SC2034 # PW_SINK etc. are for the scenarios that source this

PW_DIR=${PW_DIR:-/testbed/pipewire} # session.sh, checks.sh, the shipped drop-in
PW_ROOT=${PW_ROOT:-/run/pw}
PW_LOGS=$PW_ROOT/logs
PW_USER=${PW_USER:-root}
PW_READY_S=${PW_READY_S:-60}                     # bound of each readiness wait (TCG is slow)
PW_MODULE=libpipewire-module-xen-snd
PW_SINK=xen_snd.card0.dev0.playback0             # card 0 (device/vsnd/0), PCM 0, stream 0
PW_SOURCE=xen_snd.card0.dev0.capture1            # the same PCM device's stream 1
PW_DAEMONS="pipewire wireplumber pipewire-pulse" # start order; stopped in reverse

# pw_env: the session's environment, for this shell and everything it starts.
pw_env() {
    export XDG_RUNTIME_DIR="$PW_ROOT/run" XDG_CONFIG_HOME="$PW_ROOT/config" HOME="$PW_ROOT/home"
    # No D-Bus in the testbed; nothing must point elsewhere.
    unset DBUS_SESSION_BUS_ADDRESS PIPEWIRE_REMOTE PIPEWIRE_CONFIG_DIR PULSE_SERVER
}
pw_env

# pw_quote ARGS...: the arguments as one shell command line, each single-quoted.
pw_quote() {
    local a out=""
    for a in "$@"; do
        out="$out'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")' "
    done
    printf '%s' "$out"
}

# pw_as CMD [ARGS...]: run CMD as PW_USER (in the foreground), keeping the session environment.
pw_as() {
    if [ "$PW_USER" = root ]; then
        "$@"
    else
        # busybox su: -p keeps the environment. The command goes in as one quoted -c string:
        # su's option parser would take a later "--target" for one of its own options.
        su -p -s /bin/sh "$PW_USER" -c "exec $(pw_quote "$@")"
    fi
}

# pw_prepare: directories (owned by PW_USER), /dev/shm, WirePlumber's headless settings.
pw_prepare() {
    mkdir -p "$PW_ROOT/run" "$PW_ROOT/home" "$PW_LOGS" \
        "$XDG_CONFIG_HOME/pipewire/pipewire.conf.d" "$XDG_CONFIG_HOME/wireplumber/main.lua.d" \
        "$XDG_CONFIG_HOME/wireplumber/bluetooth.lua.d"
    chmod 700 "$PW_ROOT/run"
    # The initramfs only has /dev/shm as a directory of devtmpfs; shared memory wants a tmpfs.
    grep -q ' /dev/shm ' /proc/mounts || mount -t tmpfs -o mode=1777 shm /dev/shm
    # Without D-Bus, stock WirePlumber 0.4 exits (rc 70): the ALSA device reservation and the
    # flatpak portal permission store are the two parts that need the bus.
    cat >"$XDG_CONFIG_HOME/wireplumber/main.lua.d/51-headless.lua" <<'EOF'
alsa_monitor.properties["alsa.reserve"] = false
default_access.properties["enable-flatpak-portal"] = false
EOF
    # A third one a guest without systemd needs: the Bluetooth monitor loads WirePlumber's logind
    # module, whose sd_login_monitor_new() fails without /run/systemd/seats (ENOENT), and that
    # failure ends WirePlumber ("disconnected from pipewire") right after it connected. A PV
    # guest has no Bluetooth anyway.
    cat >"$XDG_CONFIG_HOME/wireplumber/bluetooth.lua.d/51-headless.lua" <<'EOF'
bluez_monitor.enabled = false
EOF
    [ "$PW_USER" = root ] || chown -R "$PW_USER" "$PW_ROOT"
}

# pw_dropin KEY=VALUE...: install the shipped 50-xen-snd.conf as the session's drop-in with these
# module arguments set (each KEY must be one of the file's documented, commented-out arguments;
# VALUE in SPA-JSON, quoted by the caller if it needs quotes), then those of
# $PW_DIR/module-args (the host's XEN_SND_PW_ARGS, see initrd-args). 1 if a key is not in the file.
pw_dropin() {
    local src="$PW_DIR/50-xen-snd.conf" out tmp kv key extra
    extra=$(cat "$PW_DIR/module-args" 2>/dev/null)
    # shellcheck disable=SC2086 # split into arguments
    set -- "$@" $extra
    out="$XDG_CONFIG_HOME/pipewire/pipewire.conf.d/50-xen-snd.conf"
    mkdir -p "$(dirname "$out")"
    tmp="$out.tmp"
    cp "$src" "$tmp" || return 1
    for kv in "$@"; do
        key=${kv%%=*}
        if ! grep -Eq "^[[:space:]]*#?$key = " "$tmp"; then
            tb_log "pw_dropin: the shipped drop-in has no argument '$key'"
            rm -f "$tmp"
            return 1
        fi
        awk -v key="$key" -v val="${kv#*=}" '
            !done && match($0, "^[[:space:]]*#?" key " = ") {
                ind = $0; sub(/[^[:space:]].*/, "", ind)
                print ind key " = " val; done = 1; next
            }
            { print }' "$tmp" >"$tmp.2" && mv "$tmp.2" "$tmp"
    done
    mv "$tmp" "$out"
    [ "$PW_USER" = root ] || chown -R "$PW_USER" "$XDG_CONFIG_HOME"
    tb_log "drop-in $out: $(grep -Ev '^[[:space:]]*(#|$)' "$out" | tr -s ' \n' '  ')"
}

# pw_spawn NAME [ARGS...]: start daemon NAME as PW_USER in the background, logging to
# $PW_LOGS/NAME.log; its pid goes to $PW_ROOT/NAME.pid.
pw_spawn() {
    local name="$1"
    if [ "$PW_USER" = root ]; then
        "$@" >"$PW_LOGS/$name.log" 2>&1 &
    else
        su -p -s /bin/sh "$PW_USER" -c "exec $(pw_quote "$@")" >"$PW_LOGS/$name.log" 2>&1 &
    fi
    echo $! >"$PW_ROOT/$name.pid"
    rm -f "$PW_ROOT/$name.rc"
}

# pw_pid NAME: the pid of a session daemon.
pw_pid() {
    cat "$PW_ROOT/$1.pid" 2>/dev/null
}

# pw_alive NAME: the daemon runs (a zombie counts as gone).
pw_alive() {
    local pid
    pid=$(pw_pid "$1")
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null
}

pw__core_answers() {
    pw_alive pipewire && [ -S "$XDG_RUNTIME_DIR/pipewire-0" ] && pw_as pw-cli info 0 >/dev/null 2>&1
}

pw__pulse_answers() {
    pw_alive pipewire-pulse && pw_as pactl info >/dev/null 2>&1
}

pw__wp_ready() {
    # WirePlumber created the "default" metadata (pactl set-default-sink needs it).
    pw_alive wireplumber && pw_as pw-cli ls Metadata 2>/dev/null | grep -q 'metadata.name = "default"'
}

# pw_session_start: pipewire, then WirePlumber and pipewire-pulse, each waited for (PW_READY_S
# at most). 0 when all three answer; 1 (after dumping the logs) otherwise.
pw_session_start() {
    local t0
    pw_prepare
    t0=$(tb_uptime_cs)
    pw_spawn pipewire
    if ! tb_wait_until "$PW_READY_S" pw__core_answers; then
        tb_log "pipewire did not answer within ${PW_READY_S}s"
        pw_dump_logs
        return 1
    fi
    tb_log "pipewire answers after $(pw__since "$t0") s (pid $(pw_pid pipewire), user $PW_USER)"
    pw_spawn wireplumber
    pw_spawn pipewire-pulse
    if ! tb_wait_until "$PW_READY_S" pw__pulse_answers; then
        tb_log "pipewire-pulse did not answer within ${PW_READY_S}s"
        pw_dump_logs
        return 1
    fi
    if ! tb_wait_until "$PW_READY_S" pw__wp_ready; then
        tb_log "WirePlumber did not create the default metadata within ${PW_READY_S}s"
        pw_dump_logs
        return 1
    fi
    tb_log "session ready after $(pw__since "$t0") s"
    return 0
}

# pw__since CS: seconds (one decimal) since the uptime CS (centiseconds).
pw__since() {
    local d
    d=$(($(tb_uptime_cs) - $1))
    echo "$((d / 100)).$(((d % 100) / 10))"
}

# pw_stop_one NAME [SIGNAL]: signal a daemon (default TERM) and wait (20 s) until it exited; its
# exit status goes to $PW_ROOT/NAME.rc. 1 when it would not exit (it is then SIGKILLed).
pw_stop_one() {
    local pid rc
    pid=$(pw_pid "$1")
    [ -n "$pid" ] || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null
    if ! tb_wait_until 20 pw__gone "$1"; then
        tb_log "$1 (pid $pid) did not exit within 20 s after SIG${2:-TERM}: killing it"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        echo timeout >"$PW_ROOT/$1.rc"
        return 1
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    echo "$rc" >"$PW_ROOT/$1.rc"
    return 0
}

pw__gone() {
    ! pw_alive "$1"
}

# pw_rc NAME: the exit status recorded by pw_stop_one ("timeout" if it had to be killed).
pw_rc() {
    cat "$PW_ROOT/$1.rc" 2>/dev/null
}

# pw_session_stop: SIGTERM the daemons in reverse start order. 1 if one would not exit.
pw_session_stop() {
    local ok=0
    pw_stop_one pipewire-pulse || ok=1
    pw_stop_one wireplumber || ok=1
    pw_stop_one pipewire || ok=1
    return $ok
}

# pw_session_reset: forget the last session (logs and state), keeping nothing running. For a
# second session in the same boot; the old logs are kept as $PW_ROOT.<N>.
pw_session_reset() {
    local n=1
    while [ -e "$PW_ROOT.$n" ]; do n=$((n + 1)); done
    mv "$PW_ROOT" "$PW_ROOT.$n"
    tb_log "previous session moved to $PW_ROOT.$n"
}

# pw_dump_logs: the tail (PW_LOG_LINES, default 40 lines) of every session log on the console
# ("pwlog| <name>: ...").
pw_dump_logs() {
    local f n="${PW_LOG_LINES:-40}"
    for f in "$PW_LOGS"/*.log; do
        [ -f "$f" ] || continue
        echo "pwlog| ---- $f (last $n lines)"
        tail -n "$n" "$f" | sed "s#^#pwlog| $(basename "$f" .log): #"
    done
}

# pw_log_problems NAME: the lines of NAME's log that show a crash or memory corruption (empty
# when clean): abort, double free, corruption, panic, segfault, assertion.
pw_log_problems() {
    grep -Ei 'abort|double free|corrupt|panick|panic |segmentation|assert|stack smashing' \
        "$PW_LOGS/$1.log" 2>/dev/null
}

# ---- graph objects ------------------------------------------------------------------------------

# pw_ls KIND: `pw-cli ls KIND` as "id key=value" lines (one per property).
pw_ls() {
    pw_as pw-cli ls "$1" 2>/dev/null | awk '
        /^[[:space:]]*id [0-9]+, type / { id = $2; sub(/,$/, "", id); next }
        id != "" && / = / {
            line = $0; sub(/^[[:space:]]*/, "", line)
            k = line; sub(/ = .*/, "", k)
            v = line; sub(/^[^=]*= /, "", v); gsub(/^"|"$/, "", v)
            print id " " k "=" v
        }'
}

# pw_object_id KIND KEY VALUE: the id of the first KIND object whose KEY is VALUE.
pw_object_id() {
    pw_ls "$1" | awk -v kv="$2=$3" 'substr($0, index($0, " ") + 1) == kv { print $1; exit }' | grep .
}

# pw_node_id NAME / pw_module_id: ids of our node NAME and of our module.
pw_node_id() {
    pw_object_id Node node.name "$1"
}
pw_module_id() {
    pw_object_id Module module.name "$PW_MODULE"
}

# pw_node_prop NAME KEY: a property of node NAME.
pw_node_prop() {
    local id
    id=$(pw_node_id "$1") || return 1
    pw_ls Node | awk -v id="$id" -v k="$2" '$1 == id && index($2, k "=") == 1 {
        v = substr($0, index($0, "=") + 1); print v; exit }' | grep .
}

# pw_wait_node NAME SECS: wait until node NAME exists.
pw_wait_node() {
    tb_wait_until "$2" pw_node_id "$1" >/dev/null
}

# pw_dump_object ID: the lines of object ID in pw-dump's output. (`pw-dump ID` is no help: its
# filter also matches object.serial, which is another object's id.)
pw_dump_object() {
    pw_as pw-dump 2>/dev/null | awk -v id="$1" '
        /^    "id": [0-9]+,/ { n = $2; sub(/,/, "", n); mine = (n == id) }
        mine { print }' | grep .
}

# pw_node_state NAME: the node's state as pw-dump shows it (running, idle, suspended, error...).
pw_node_state() {
    local id
    id=$(pw_node_id "$1") || return 1
    pw_dump_object "$id" | awk -F'"' '/"state": / { print $4; exit }' | grep .
}

# pw_node_running NAME: the node is in state running.
pw_node_running() {
    [ "$(pw_node_state "$1")" = running ]
}

# pw_cpu_ticks PID: utime + stime of a process in clock ticks (USER_HZ = 100).
pw_cpu_ticks() {
    # Fields after the "(comm)": state is 3rd; utime and stime are the 14th and 15th overall.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

# ---- clients and measurements -------------------------------------------------------------------

# pw_client_wait NAME SECS: wait (SECS at most) until the client started with `pw_spawn NAME ...`
# exits; its status goes to $PW_ROOT/NAME.rc. 1 on timeout (the client is then SIGKILLed).
pw_client_wait() {
    local pid rc
    pid=$(pw_pid "$1")
    if ! tb_wait_until "$2" pw__gone "$1"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        echo timeout >"$PW_ROOT/$1.rc"
        return 1
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    echo "$rc" >"$PW_ROOT/$1.rc"
    return 0
}

# pw_pulse_latency NAME: "Latency: X usec, configured Y usec" of sink or source NAME as pactl
# shows it (pipewire-pulse's view of the node's delay).
pw_pulse_latency() {
    local kind=sinks
    case "$1" in *capture*) kind=sources ;; esac
    pw_as pactl list "$kind" 2>/dev/null | awk -v n="Name: $1" '
        $0 ~ /^[A-Z][a-z]+ #[0-9]+/ { mine = 0 }
        index($0, n) { mine = 1 }
        mine && /^[[:space:]]*Latency:/ { sub(/^[[:space:]]*Latency: */, ""); print; exit }' | grep .
}

# pw_node_latency NAME: the node's Latency/ProcessLatency params and latency properties from
# pw-dump, flattened to one line (what the node itself reports).
pw_node_latency() {
    local id
    id=$(pw_node_id "$1") || return 1
    pw_dump_object "$id" | tr -d '\n' | tr -s ' ' |
        grep -o '"\(Latency\|ProcessLatency\)": \[[^]]*\]\|"[a-z.]*latency[a-z.]*": [^,}]*' | tr '\n' ' ' | grep .
}

# pw_module_said NAME WORD: the module's last log line about node NAME containing WORD (e.g.
# "started": its buffer and period; "stopped": cycles and underruns), without the log prefix.
# PipeWire 0.3.65 cannot show a driver's clock.delay from outside (pw-top has no batch mode).
pw_module_said() {
    grep -F "mod.xen-snd" "$PW_LOGS/pipewire.log" 2>/dev/null | grep -F "$1" | grep -F "$2" |
        tail -n 1 | sed 's/^.*\] *//' | grep .
}

# pw_latency_ms NAME: the node's Latency param (minRate/maxRate frames, minNs) as milliseconds
# at 48 kHz, e.g. "3840 frames (80.0 ms)".
pw_latency_ms() {
    local r
    r=$(pw_node_latency "$1" | sed -n 's/.*"minRate": \([0-9]*\).*/\1/p') || return 1
    [ -n "$r" ] || return 1
    echo "$r frames ($((r / 48)).$(((r % 48) * 10 / 48)) ms)"
}

# pw_cpu_begin / pw_cpu_end: the session daemons' CPU use between the two calls, as
# "pipewire X% wireplumber Y% pipewire-pulse Z% over S s" (utime+stime over wall time).
pw_cpu_begin() {
    local d
    PW_CPU_T0=$(tb_uptime_cs)
    PW_CPU_C0=""
    for d in $PW_DAEMONS; do PW_CPU_C0="$PW_CPU_C0 $(pw_cpu_ticks "$(pw_pid "$d")")"; done
}
pw_cpu_end() {
    local d dt out="" c0 c1
    dt=$(($(tb_uptime_cs) - PW_CPU_T0))
    [ "$dt" -gt 0 ] || dt=1
    # shellcheck disable=SC2086 # one number per daemon
    set -- $PW_CPU_C0
    for d in $PW_DAEMONS; do
        c0=${1:-0}
        shift
        c1=$(pw_cpu_ticks "$(pw_pid "$d")")
        [ -n "$c1" ] || c1=$c0
        # ticks are 1/100 s like the centiseconds of dt: percent with one decimal.
        out="$out$d $(((c1 - c0) * 100 / dt)).$((((c1 - c0) * 1000 / dt) % 10))% "
    done
    echo "${out}over $((dt / 100)).$(((dt % 100) / 10)) s"
}

# pw_links_of NAME: the links to or from node NAME's ports (pw-link -l lines), one line.
pw_links_of() {
    pw_as pw-link -l 2>/dev/null | awk -v n="$1:" '
        index($0, n) == 1 { cur = $0; next }
        /^[[:space:]]+\|/ && cur != "" { sub(/^[[:space:]]+/, ""); print cur " " $0; next }
        { cur = "" }' | tr '\n' ';' | grep .
}

#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for tests and benchmarks: 1 monitor + 1 OSD on memstore,
# auth none, 127.0.0.1, no systemd, everything (data, logs, sockets, pids, crash dumps) inside DIR.
#
#   scripts/ceph-cluster.sh install      install the Debian packages when they are missing
#   scripts/ceph-cluster.sh start DIR    start a cluster in DIR; prints DIR/ceph.conf as its last line
#   scripts/ceph-cluster.sh stop DIR     stop the OSD, then the monitor, by the PIDs recorded in DIR
#   scripts/ceph-cluster.sh status DIR   is it up? (exit status 0 when both daemons run)
#
# Environment: CEPH_POOL (default cloudstore-test), CEPH_START_TIMEOUT seconds (default 90).
# `conf=$(scripts/ceph-cluster.sh start DIR)` returns: the daemons get no inherited descriptors.
# Memstore keeps every object in the OSD's memory and never gives it back: stop the cluster after
# each run rather than reusing it for days.
set -euo pipefail

POOL="${CEPH_POOL:-cloudstore-test}"
START_TIMEOUT="${CEPH_START_TIMEOUT:-90}"
PACKAGES=(ceph-mon ceph-osd ceph-common librados-dev)

say() { echo "ceph-cluster: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Installs the packages when a binary or the librados header is missing (needs root or sudo).
install_packages() {
    if command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
        command -v rados >/dev/null && command -v ceph >/dev/null &&
        [ -e /usr/include/rados/librados.h ]; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: install ${PACKAGES[*]} by hand"
        sudo=(sudo)
    fi
    say "installing ${PACKAGES[*]} (about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    # postinst prints "Failed to connect to bus" without systemd: harmless, no service starts.
    "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2 ||
        die "apt-get install ${PACKAGES[*]} failed"
    command -v ceph-mon >/dev/null || die "ceph-mon still missing after the install"
}

abs_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd)
}

# A TCP port nobody listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return 0
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free TCP port found"
}

# Is PID alive and a ceph daemon of this DIR (not a reused PID)?
daemon_alive() {
    local pid="$1" dir="$2"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # a zombie has an empty cmdline: it counts as gone
    [[ "$cmdline" == *"$dir/ceph.conf"* ]]
}

# Has PID not finished exiting? (a zombie has; an exiting daemon with its memory freed has not)
proc_running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

pid_of() {
    local f="$1/pids/$2.pid"
    [ -s "$f" ] && cat "$f" || true
}

# Runs a daemon in the background, detached: own session, stdin from /dev/null, output to a log,
# and no descriptor of the caller (a `$(...)` pipe or a lock fd would keep the caller waiting).
spawn() {
    local name="$1" dir="$2"
    shift 2
    (
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null || true
        done
        exec setsid "$@" </dev/null >>"$dir/log/$name.out" 2>&1
    ) &
    echo $! >"$dir/pids/$name.pid"
}

fail_with_logs() {
    local dir="$1"
    shift
    say "error: $*"
    local f
    for f in "$dir"/log/mon.a.out "$dir"/log/mon.a.log "$dir"/log/osd.0.out "$dir"/log/osd.0.log "$dir"/log/setup.log; do
        [ -s "$f" ] || continue
        say "---- last lines of $f ----"
        tail -n 12 "$f" >&2
    done
    say "stopping what was started"
    stop_cluster "$dir" || true
    exit 1
}

# Retries COMMAND every 0.2 s until it succeeds or TIMEOUT seconds pass.
wait_for() {
    local dir="$1" timeout="$2" what="$3"
    shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >>"$dir/log/setup.log" 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail_with_logs "$dir" "timed out after ${timeout}s waiting for $what"
        local d
        for d in mon.a osd.0; do
            local pid
            pid="$(pid_of "$dir" "$d")"
            if [ -n "$pid" ] && ! daemon_alive "$pid" "$dir"; then
                fail_with_logs "$dir" "$d (pid $pid) exited while waiting for $what"
            fi
        done
        sleep 0.2
    done
}

write_conf() {
    local dir="$1" port="$2" fsid="$3"
    cat >"$dir/ceph.conf" <<EOF
# Throwaway test cluster made by scripts/ceph-cluster.sh; delete with: scripts/ceph-cluster.sh stop $dir
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon warn on pool no redundancy = false
mon mgr mkfs grace = 31536000
mon allow pool delete = true
mon allow pool size one = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
paxos propose interval = 0.05
run dir = $dir/run
crash dir = $dir/crash
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/cluster.log
keyring = $dir/keyring
# a full or unreachable cluster must fail, not hang
client mount timeout = 10
rados osd op timeout = 30
rados mon op timeout = 30

[mon]
mon data = $dir/\$name
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok

[osd]
osd data = $dir/\$name
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
osd objectstore = memstore
memstore device bytes = 4294967296
# without it the memstore usage counter underflows after bulk deletes and every write blocks
fake statfs for testing = 4294967296
osd max object size = 134217728
# a small machine: few op threads, no op tracking, no in-memory debug logs
osd op num shards = 2
osd op num threads per shard = 1
osd enable op tracker = false
debug osd = 0/0
debug memstore = 0/0
debug objclass = 0/0

[client]
# clients: one shared log, sockets per process under run dir
log file = $dir/log/client.log
EOF
}

start_cluster() {
    [ $# -eq 1 ] || usage
    install_packages
    local dir
    dir="$(abs_dir "$1")"
    local pid
    for d in mon.a osd.0; do
        pid="$(pid_of "$dir" "$d")"
        if [ -n "$pid" ] && daemon_alive "$pid" "$dir"; then
            die "a cluster is already running in $dir ($d pid $pid): run '$0 stop $dir' first"
        fi
    done
    rm -rf "$dir/mon.a" "$dir/osd.0" "$dir/run" "$dir/pids" "$dir/log" "$dir/crash" "$dir/monmap" "$dir/ceph.conf"
    mkdir -p "$dir/run" "$dir/pids" "$dir/log" "$dir/crash" "$dir/mon.a" "$dir/osd.0"
    local conf="$dir/ceph.conf" port fsid
    port="$(free_port)"
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    write_conf "$dir" "$port" "$fsid"
    say "starting in $dir (monitor on 127.0.0.1:$port, pool $POOL)"

    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" \
        >>"$dir/log/setup.log" 2>&1 || fail_with_logs "$dir" "monmaptool failed"
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "ceph-mon --mkfs failed"
    spawn mon.a "$dir" ceph-mon -c "$conf" -f -i a

    local ceph=(timeout 20 ceph -c "$conf" --connect-timeout 15)
    wait_for "$dir" "$START_TIMEOUT" "the monitor" "${ceph[@]}" mon stat

    local uuid id
    uuid="$(cat /proc/sys/kernel/random/uuid)"
    id="$("${ceph[@]}" osd new "$uuid" 2>>"$dir/log/setup.log")" || fail_with_logs "$dir" "ceph osd new failed"
    [ "$id" = 0 ] || fail_with_logs "$dir" "expected OSD id 0, the monitor gave '$id'"
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "ceph-osd --mkfs failed"
    spawn osd.0 "$dir" ceph-osd -c "$conf" -f -i 0

    "${ceph[@]}" osd pool create "$POOL" 8 8 >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "creating pool $POOL failed"
    "${ceph[@]}" osd pool application enable "$POOL" rados >>"$dir/log/setup.log" 2>&1 || true
    wait_for "$dir" "$START_TIMEOUT" "osd.0 to be up" \
        bash -c "${ceph[*]} osd dump | grep -q '^osd.0 up'"
    wait_for "$dir" "$START_TIMEOUT" "a first object write" \
        bash -c "echo probe | timeout 20 rados -c '$conf' -p '$POOL' put cluster-probe - && timeout 20 rados -c '$conf' -p '$POOL' rm cluster-probe"
    say "up: osd.0 pid $(pid_of "$dir" osd.0), mon.a pid $(pid_of "$dir" mon.a)"
    echo "$conf"
}

# Sends SIGTERM, waits up to 20 s, then SIGKILL.
stop_daemon() {
    local dir="$1" name="$2" pid
    pid="$(pid_of "$dir" "$name")"
    if [ -z "$pid" ]; then
        return 0
    fi
    if daemon_alive "$pid" "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while proc_running "$pid"; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "$name (pid $pid) ignored SIGTERM for 20s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.5
                break
            fi
            sleep 0.1
        done
    fi
    rm -f "$dir/pids/$name.pid"
}

stop_cluster() {
    [ $# -eq 1 ] || usage
    [ -d "$1" ] || die "no such directory: $1"
    local dir
    dir="$(abs_dir "$1")"
    # the OSD first: a monitor gone first leaves the OSD retrying it
    stop_daemon "$dir" osd.0
    stop_daemon "$dir" mon.a
    say "stopped the cluster in $dir"
}

status_cluster() {
    [ $# -eq 1 ] || usage
    local dir pid rc=0
    dir="$(abs_dir "$1")"
    for d in mon.a osd.0; do
        pid="$(pid_of "$dir" "$d")"
        if [ -n "$pid" ] && daemon_alive "$pid" "$dir"; then
            echo "$d running (pid $pid)"
        else
            echo "$d not running"
            rc=1
        fi
    done
    return $rc
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
install) install_packages ;;
start) start_cluster "$@" ;;
stop) stop_cluster "$@" ;;
status) status_cluster "$@" ;;
*) usage ;;
esac

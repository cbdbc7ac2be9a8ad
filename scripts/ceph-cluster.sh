#!/usr/bin/env bash
# A throwaway Ceph cluster for tests and benchmarks: 1 monitor + 1 OSD on memstore, auth none,
# 127.0.0.1, no systemd, everything (data, logs, sockets, pids, crash dumps) inside DIR. The fault
# mode (--osds 3) runs 3 OSDs, pools of size 3 / min_size 2; --cephx adds cephx auth and a
# restricted client; --mgr adds a ceph-mgr (mgr.x), which pool quotas need (the monitor sets a
# pool's full_quota flag from the manager's pool statistics); --mds adds a metadata server (mds.a)
# and a CephFS named cephfs (pools cephfs-data, cephfs-meta), for ceph-fuse. Memstore keeps an OSD's objects in its memory: an OSD killed with -9 comes
# back (start-osd) as an empty store with the same id, uuid and key, and the cluster backfills it.
#
#   scripts/ceph-cluster.sh install [--mds]
#                                        install the Debian packages when they are missing (--mds:
#                                        also ceph-mds and ceph-fuse)
#   scripts/ceph-cluster.sh start DIR [--osds N] [--cephx] [--mgr] [--mds]
#                                        start a cluster in DIR; prints DIR/ceph.conf as its last line
#   scripts/ceph-cluster.sh stop DIR     stop the OSDs, the manager and the MDS, then the monitor, by the PIDs
#                                        recorded in DIR
#   scripts/ceph-cluster.sh status DIR   is it up? (exit status 0 when every daemon runs)
#   scripts/ceph-cluster.sh kill-osd DIR ID     kill -9 osd.ID (and wait until it is gone)
#   scripts/ceph-cluster.sh start-osd DIR ID    start osd.ID again (after kill-osd), empty
#   scripts/ceph-cluster.sh freeze DIR [DAEMON...]
#                                        SIGSTOP every daemon (or those named: osd.1 mon.a): the
#                                        cluster hangs with its connections open
#   scripts/ceph-cluster.sh thaw DIR     SIGCONT every daemon
#   scripts/ceph-cluster.sh wait-clean DIR [SECONDS]
#                                        wait until every OSD is up and in and every PG active+clean
#
# With --cephx, DIR also holds: keyring (client.admin, used by ceph.conf), limited.conf and
# cloudstore-limited.keyring (client.cloudstore-limited: mon 'allow r', osd 'allow rw
# pool=POOL'), wrong-key.conf (the same client name with a key the cluster never issued), and a
# second pool, CEPH_OTHER_POOL, that the limited client may not use.
#
# Environment: CEPH_POOL (default cloudstore-test), CEPH_OTHER_POOL (default cloudstore-other),
# CEPH_START_TIMEOUT seconds (default 90).
# `conf=$(scripts/ceph-cluster.sh start DIR)` returns: the daemons get no inherited descriptors.
# Memstore keeps every object in the OSD's memory and never gives it back: stop the cluster after
# each run rather than reusing it for days.
set -euo pipefail

POOL="${CEPH_POOL:-cloudstore-test}"
OTHER_POOL="${CEPH_OTHER_POOL:-cloudstore-other}"
LIMITED_USER=cloudstore-limited
START_TIMEOUT="${CEPH_START_TIMEOUT:-90}"
PACKAGES=(ceph-mon ceph-osd ceph-mgr ceph-common librados-dev)
MDS_PACKAGES=(ceph-mds ceph-fuse)

say() { echo "ceph-cluster: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Installs the packages when a binary or the librados header is missing (needs root or sudo);
# with --mds also the metadata server and ceph-fuse.
install_packages() {
    local packages=("${PACKAGES[@]}") mds_ok=1
    if [ "${1:-}" = --mds ]; then
        packages+=("${MDS_PACKAGES[@]}")
        command -v ceph-mds >/dev/null && command -v ceph-fuse >/dev/null || mds_ok=0
    fi
    if command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
        command -v ceph-mgr >/dev/null && command -v rados >/dev/null && command -v ceph >/dev/null &&
        [ -e /usr/include/rados/librados.h ] && [ "$mds_ok" = 1 ]; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: install ${packages[*]} by hand"
        sudo=(sudo)
    fi
    say "installing ${packages[*]} (about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    # postinst prints "Failed to connect to bus" without systemd: harmless, no service starts.
    "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 ||
        die "apt-get install ${packages[*]} failed"
    command -v ceph-mon >/dev/null || die "ceph-mon still missing after the install"
    [ "$mds_ok" = 1 ] || command -v ceph-mds >/dev/null || die "ceph-mds still missing after the install"
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

# The daemons of the cluster in DIR, OSDs first (the order they are stopped in), the monitor last.
daemons() {
    local dir="$1" n=1 i
    [ -s "$dir/osds" ] && n="$(cat "$dir/osds")"
    for ((i = 0; i < n; i++)); do
        echo "osd.$i"
    done
    [ -e "$dir/mgr" ] && echo mgr.x
    [ -e "$dir/mds" ] && echo mds.a
    echo mon.a
}

fail_with_logs() {
    local dir="$1"
    shift
    say "error: $*"
    local f d
    for d in $(daemons "$dir") setup; do
        for f in "$dir/log/$d.out" "$dir/log/$d.log"; do
            [ -s "$f" ] || continue
            say "---- last lines of $f ----"
            tail -n 12 "$f" >&2
        done
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
        for d in $(daemons "$dir"); do
            local pid
            pid="$(pid_of "$dir" "$d")"
            if [ -n "$pid" ] && ! daemon_alive "$pid" "$dir"; then
                fail_with_logs "$dir" "$d (pid $pid) exited while waiting for $what"
            fi
        done
        sleep 0.2
    done
}

# ceph.conf. Fault mode (more than one OSD): pools of size 3 / min_size 2, and a dead OSD noticed
# within seconds although every OSD lives on one host.
write_conf() {
    local dir="$1" port="$2" fsid="$3" osds="$4" cephx="$5" mgr="$6"
    local auth=none size=1 min_size=1
    [ "$cephx" = 1 ] && auth=cephx
    if [ "$osds" -gt 1 ]; then
        size=3
        min_size=2
    fi
    # Pool quotas: the OSDs report usage to the manager, the manager a digest to the monitor,
    # which sets a pool's full_quota flag at its tick. With a manager, every step each second
    # instead of every 5, so a quota shows within seconds. It loads no python module: none is
    # needed for that, together they cost ~250 MB, and devicehealth would create a pool.
    local mgr_global="" mgr_section=""
    if [ "$mgr" = 1 ]; then
        mgr_global="mon tick interval = 1
mon mgr digest period = 1
osd mon report interval = 1"
        mgr_section="mgr stats period = 1
mgr tick period = 1
mgr initial modules =
mgr disabled modules = $(ls /usr/share/ceph/mgr 2>/dev/null | grep -v '\.py$' | tr '\n' ' ')"
    fi
    cat >"$dir/ceph.conf" <<EOF
# Throwaway test cluster made by scripts/ceph-cluster.sh; delete with: scripts/ceph-cluster.sh stop $dir
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = $auth
auth service required = $auth
auth client required = $auth
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon warn on pool no redundancy = false
mon mgr mkfs grace = 31536000
mon allow pool delete = true
mon allow pool size one = true
# the monitor refuses to start when its disk has under 5% free (the default): on a shared CI
# disk that is a machine-wide condition, not a fault of the cluster under test
mon data avail crit = 1
mon data avail warn = 2
osd pool default size = $size
osd pool default min size = $min_size
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
$mgr_global

[mgr]
mgr data = $dir/\$name
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
$mgr_section

[mds]
mds data = $dir/\$name
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok

[mon]
mon data = $dir/\$name
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
EOF
    if [ "$osds" -gt 1 ]; then
        cat >>"$dir/ceph.conf" <<EOF
# every OSD lives on this one host: count each OSD as a reporter, or none is ever marked down
mon osd reporter subtree level = osd
mon osd min down reporters = 1
mon osd adjust heartbeat grace = false
EOF
    fi
    cat >>"$dir/ceph.conf" <<EOF

[osd]
osd data = $dir/\$name
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
keyring = $dir/\$name/keyring
osd max object size = 134217728
# a small machine: few op threads, no op tracking, no in-memory debug logs
osd op num shards = 2
osd op num threads per shard = 1
osd enable op tracker = false
debug osd = 0/0
debug memstore = 0/0
debug objclass = 0/0
EOF
    cat >>"$dir/ceph.conf" <<EOF
osd objectstore = memstore
memstore device bytes = 4294967296
# without it the memstore usage counter underflows after bulk deletes and every write blocks
fake statfs for testing = 4294967296
EOF
    if [ "$osds" -gt 1 ]; then
        cat >>"$dir/ceph.conf" <<EOF
# a dead peer is noticed by heartbeats within seconds (a killed one at once: connection refused)
osd heartbeat interval = 1
osd heartbeat grace = 6
EOF
    fi
    cat >>"$dir/ceph.conf" <<EOF

[client]
# clients: one shared log, sockets per process under run dir
log file = $dir/log/client.log
EOF
}

# cephx: the keyring of the monitor and of client.admin, made before the monitor's mkfs.
make_admin_keyring() {
    local dir="$1"
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' \
        >>"$dir/log/setup.log" 2>&1 || fail_with_logs "$dir" "ceph-authtool (mon.) failed"
    ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' --cap mds 'allow *' >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "ceph-authtool (client.admin) failed"
    chmod 600 "$dir/keyring"
}

# cephx: client.cloudstore-limited (may use POOL only), its conf, and a conf with a wrong key.
make_limited_client() {
    local dir="$1"
    shift
    local ceph=("$@")
    local keyring="$dir/$LIMITED_USER.keyring"
    "${ceph[@]}" auth get-or-create "client.$LIMITED_USER" mon 'allow r' osd "allow rw pool=$POOL" \
        -o "$keyring" >>"$dir/log/setup.log" 2>&1 || fail_with_logs "$dir" "creating client.$LIMITED_USER failed"
    chmod 600 "$keyring"
    sed "s|^keyring = .*|keyring = $keyring|" "$dir/ceph.conf" >"$dir/limited.conf"
    ceph-authtool --create-keyring "$dir/wrong-key.keyring" --gen-key -n "client.$LIMITED_USER" \
        >>"$dir/log/setup.log" 2>&1 || fail_with_logs "$dir" "ceph-authtool (wrong key) failed"
    sed "s|^keyring = .*|keyring = $dir/wrong-key.keyring|" "$dir/ceph.conf" >"$dir/wrong-key.conf"
}

# Registers osd.ID with the monitor (id, uuid, cephx key); mkfs_and_spawn_osd makes its store.
create_osd() {
    local dir="$1" id="$2"
    shift 2
    local ceph=("$@")
    local uuid got
    uuid="$(cat /proc/sys/kernel/random/uuid)"
    got="$("${ceph[@]}" osd new "$uuid" 2>>"$dir/log/setup.log")" || fail_with_logs "$dir" "ceph osd new failed"
    [ "$got" = "$id" ] || fail_with_logs "$dir" "expected OSD id $id, the monitor gave '$got'"
    mkdir -p "$dir/osd.$id"
    echo "$uuid" >"$dir/osd.$id/uuid"
    if [ -e "$dir/cephx" ]; then
        "${ceph[@]}" auth get-or-create "osd.$id" mon 'allow profile osd' mgr 'allow profile osd' \
            osd 'allow *' -o "$dir/osd.$id/keyring" >>"$dir/log/setup.log" 2>&1 ||
            fail_with_logs "$dir" "creating the key of osd.$id failed"
    fi
}

mkfs_and_spawn_osd() {
    local dir="$1" id="$2" conf="$1/ceph.conf"
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$(cat "$dir/osd.$id/uuid")" \
        >>"$dir/log/osd.$id.mkfs.log" 2>&1 || return 1
    spawn "osd.$id" "$dir" ceph-osd -c "$conf" -f -i "$id"
}

# The manager, mgr.x: its key (also without cephx: the monitor keeps one), then the daemon in
# the foreground (-f: without it, it daemonizes and the recorded pid is not its own). Run in the
# background: it must not exit the script (fail_with_logs) from there, so it returns 1 instead.
spawn_mgr() {
    local dir="$1"
    shift
    local ceph=("$@")
    mkdir -p "$dir/mgr.x"
    "${ceph[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        -o "$dir/mgr.x/keyring" >>"$dir/log/setup.log" 2>&1 || return 1
    spawn mgr.x "$dir" ceph-mgr -c "$dir/ceph.conf" -f -i x --mgr-data "$dir/mgr.x" \
        --keyring "$dir/mgr.x/keyring"
    # The always-on python modules it does not load are a health error: muted.
    "${ceph[@]}" health mute MGR_MODULE_ERROR --sticky >>"$dir/log/setup.log" 2>&1 || true
}

# The metadata server, mds.a, and a CephFS (for ceph-fuse): its key, the daemon in the foreground
# (-f, as the manager), the two pools and the filesystem; then waits until the MDS is active.
start_mds() {
    local dir="$1"
    shift
    local ceph=("$@") pool
    mkdir -p "$dir/mds.a"
    "${ceph[@]}" auth get-or-create mds.a mon 'allow profile mds' osd 'allow rwx' mds 'allow *' \
        mgr 'allow profile mds' -o "$dir/mds.a/keyring" >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "creating the key of mds.a failed"
    for pool in cephfs-meta cephfs-data; do
        "${ceph[@]}" osd pool create "$pool" 8 8 >>"$dir/log/setup.log" 2>&1 ||
            fail_with_logs "$dir" "creating pool $pool failed"
    done
    "${ceph[@]}" fs new cephfs cephfs-meta cephfs-data >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "ceph fs new failed"
    spawn mds.a "$dir" ceph-mds -c "$dir/ceph.conf" -f -i a --keyring "$dir/mds.a/keyring"
    wait_for "$dir" "$START_TIMEOUT" "the MDS to be active" \
        bash -c "${ceph[*]} mds stat | grep -q 'up:active'"
}

start_cluster() {
    [ $# -ge 1 ] || usage
    local dir_arg="$1" osds=1 cephx=0 mgr=0 mds=0
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
        --osds)
            [ $# -ge 2 ] && [[ "$2" =~ ^[1-9]$ ]] || die "--osds takes a number from 1 to 9"
            osds="$2"
            shift 2
            ;;
        --cephx)
            cephx=1
            shift
            ;;
        --mgr)
            mgr=1
            shift
            ;;
        --mds)
            mds=1
            shift
            ;;
        *) usage ;;
        esac
    done
    [ "$osds" = 1 ] || [ "$osds" -ge 3 ] || die "--osds: 1, or at least 3 (pools of size 3)"
    if [ "$mds" = 1 ]; then install_packages --mds; else install_packages; fi
    local dir
    dir="$(abs_dir "$dir_arg")"
    local pid d
    for d in $(daemons "$dir"); do
        pid="$(pid_of "$dir" "$d")"
        if [ -n "$pid" ] && daemon_alive "$pid" "$dir"; then
            die "a cluster is already running in $dir ($d pid $pid): run '$0 stop $dir' first"
        fi
    done
    rm -rf "$dir"/osd.* "$dir/mon.a" "$dir/run" "$dir/pids" "$dir/log" "$dir/crash" "$dir/monmap" \
        "$dir/ceph.conf" "$dir/limited.conf" "$dir/wrong-key.conf" "$dir"/*.keyring "$dir/keyring" \
        "$dir/osds" "$dir/cephx" "$dir/mgr" "$dir/mgr.x" "$dir/mds" "$dir/mds.a"
    mkdir -p "$dir/run" "$dir/pids" "$dir/log" "$dir/crash" "$dir/mon.a"
    echo "$osds" >"$dir/osds"
    [ "$cephx" = 1 ] && touch "$dir/cephx"
    [ "$mgr" = 1 ] && touch "$dir/mgr"
    [ "$mds" = 1 ] && touch "$dir/mds"
    local conf="$dir/ceph.conf" port fsid
    port="$(free_port)"
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    write_conf "$dir" "$port" "$fsid" "$osds" "$cephx" "$mgr"
    local mode="$osds OSD(s)"
    [ "$cephx" = 1 ] && mode="$mode, cephx"
    [ "$mgr" = 1 ] && mode="$mode, a manager"
    [ "$mds" = 1 ] && mode="$mode, an MDS and a CephFS"
    say "starting in $dir (monitor on 127.0.0.1:$port, pool $POOL, $mode)"

    local mon_keyring=()
    if [ "$cephx" = 1 ]; then
        make_admin_keyring "$dir"
        mon_keyring=(--keyring "$dir/keyring")
    fi
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" \
        >>"$dir/log/setup.log" 2>&1 || fail_with_logs "$dir" "monmaptool failed"
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" "${mon_keyring[@]}" >>"$dir/log/setup.log" 2>&1 ||
        fail_with_logs "$dir" "ceph-mon --mkfs failed"
    spawn mon.a "$dir" ceph-mon -c "$conf" -f -i a

    local ceph=(timeout 20 ceph -c "$conf" --connect-timeout 15)
    wait_for "$dir" "$START_TIMEOUT" "the monitor" "${ceph[@]}" mon stat

    # The manager beside the OSDs (its key and health mute are two more `ceph` calls). Nothing
    # waits for it to be active (~3 s more): a test of a quota waits for the pool's flag anyway.
    local mgr_pid=""
    if [ "$mgr" = 1 ]; then
        spawn_mgr "$dir" "${ceph[@]}" &
        mgr_pid=$!
    fi
    local id
    for ((id = 0; id < osds; id++)); do
        create_osd "$dir" "$id" "${ceph[@]}"
    done
    local mkfs_pids=()
    for ((id = 0; id < osds; id++)); do
        mkfs_and_spawn_osd "$dir" "$id" &
        mkfs_pids+=($!)
    done
    for ((id = 0; id < osds; id++)); do
        wait "${mkfs_pids[$id]}" || {
            cat "$dir/log/osd.$id.mkfs.log" >>"$dir/log/setup.log"
            fail_with_logs "$dir" "ceph-osd --mkfs of osd.$id failed (see $dir/log/osd.$id.mkfs.log)"
        }
    done

    local pool
    local pools=("$POOL")
    [ "$cephx" = 1 ] && pools+=("$OTHER_POOL")
    for pool in "${pools[@]}"; do
        "${ceph[@]}" osd pool create "$pool" 8 8 >>"$dir/log/setup.log" 2>&1 ||
            fail_with_logs "$dir" "creating pool $pool failed"
        "${ceph[@]}" osd pool application enable "$pool" rados >>"$dir/log/setup.log" 2>&1 || true
    done
    [ "$cephx" = 1 ] && make_limited_client "$dir" "${ceph[@]}"
    wait_for "$dir" "$START_TIMEOUT" "$osds OSD(s) to be up" \
        bash -c "[ \$(${ceph[*]} osd dump | grep -c '^osd\.[0-9]* up') = $osds ]"
    wait_for "$dir" "$START_TIMEOUT" "a first object write" \
        bash -c "echo probe | timeout 20 rados -c '$conf' -p '$POOL' put cluster-probe - && timeout 20 rados -c '$conf' -p '$POOL' rm cluster-probe"
    if [ "$mgr" = 1 ]; then
        wait "$mgr_pid" || fail_with_logs "$dir" "starting mgr.x failed"
    fi
    [ "$mds" = 1 ] && start_mds "$dir" "${ceph[@]}"
    local up=()
    for d in $(daemons "$dir"); do
        up+=("$d pid $(pid_of "$dir" "$d")")
    done
    say "up: $(IFS=,; echo "${up[*]}" | sed 's/,/, /g')"
    echo "$conf"
}

# Sends SIGTERM (and SIGCONT, for a frozen daemon), waits up to 20 s, then SIGKILL.
stop_daemon() {
    local dir="$1" name="$2" pid
    pid="$(pid_of "$dir" "$name")"
    if [ -z "$pid" ]; then
        return 0
    fi
    if daemon_alive "$pid" "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true
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
    local dir d
    dir="$(abs_dir "$1")"
    # the OSDs first: a monitor gone first leaves the OSDs retrying it; a frozen cluster is
    # thawed first, or the OSDs would wait for the monitor while stopping
    thaw_cluster "$dir" 2>/dev/null || true
    local stoppers=()
    for d in $(daemons "$dir"); do
        if [ "$d" != mon.a ]; then
            stop_daemon "$dir" "$d" &
            stoppers+=($!)
        fi
    done
    # only these: a bare `wait` would also wait for the daemons this shell spawned
    wait "${stoppers[@]}"
    stop_daemon "$dir" mon.a
    say "stopped the cluster in $dir"
}

status_cluster() {
    [ $# -eq 1 ] || usage
    local dir pid rc=0 d
    dir="$(abs_dir "$1")"
    for d in $(daemons "$dir"); do
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

# The directory of a running cluster and the number of one of its OSDs, checked.
osd_arg() {
    [ $# -eq 2 ] || usage
    [ -d "$1" ] || die "no such directory: $1"
    [[ "$2" =~ ^[0-9]+$ ]] && [ -d "$1/osd.$2" ] || die "no osd.$2 in $1"
}

kill_osd() {
    osd_arg "$@"
    local dir pid
    dir="$(abs_dir "$1")"
    pid="$(pid_of "$dir" "osd.$2")"
    [ -n "$pid" ] && daemon_alive "$pid" "$dir" || die "osd.$2 is not running"
    kill -KILL "$pid"
    while proc_running "$pid"; do sleep 0.05; done
    rm -f "$dir/pids/osd.$2.pid"
    say "killed osd.$2 (pid $pid) with SIGKILL"
}

start_osd() {
    osd_arg "$@"
    local dir pid
    dir="$(abs_dir "$1")"
    pid="$(pid_of "$dir" "osd.$2")"
    if [ -n "$pid" ] && daemon_alive "$pid" "$dir"; then
        die "osd.$2 is already running (pid $pid)"
    fi
    # Memstore kept the objects in the killed process: a new empty store with the same id, uuid
    # and key boots as the same OSD, and the cluster backfills it.
    find "$dir/osd.$2" -mindepth 1 ! -name keyring ! -name uuid -delete
    mkfs_and_spawn_osd "$dir" "$2" || die "ceph-osd --mkfs of osd.$2 failed (see $dir/log/osd.$2.mkfs.log)"
    say "started osd.$2 (pid $(pid_of "$dir" "osd.$2")) on an empty store: the cluster backfills it"
}

# Sends SIG to the named daemons, or to every daemon of the cluster (the monitor last on STOP,
# first on CONT).
signal_daemons() {
    local dir="$1" sig="$2" d pid list
    shift 2
    if [ $# -gt 0 ]; then
        list="$*"
    else
        list="$(daemons "$dir")"
        [ "$sig" = CONT ] && list="$(echo "$list" | tac)"
    fi
    for d in $list; do
        [ -n "$(daemons "$dir" | grep -x "$d")" ] || die "no daemon $d in $dir"
        pid="$(pid_of "$dir" "$d")"
        if [ -n "$pid" ] && daemon_alive "$pid" "$dir"; then
            kill "-$sig" "$pid"
        fi
    done
}

freeze_cluster() {
    [ $# -ge 1 ] || usage
    local dir
    dir="$(abs_dir "$1")"
    shift
    signal_daemons "$dir" STOP "$@"
    say "froze ${*:-every daemon} in $dir (SIGSTOP)"
}

thaw_cluster() {
    [ $# -eq 1 ] || usage
    local dir
    dir="$(abs_dir "$1")"
    signal_daemons "$dir" CONT
    say "thawed every daemon in $dir (SIGCONT)"
}

# Every OSD up and in, every PG of every pool active+clean. The PG states come from the primary
# OSDs (`pg query`): without a ceph-mgr, `ceph pg stat` has no one to answer it.
wait_clean() {
    [ $# -ge 1 ] && [ $# -le 2 ] || usage
    local dir timeout="${2:-120}"
    dir="$(abs_dir "$1")"
    local start=$SECONDS
    /usr/bin/python3 - "$dir/ceph.conf" "$timeout" <<'EOF' || die "not clean after ${timeout}s (see above)"
import json, sys, time
import rados

conf, timeout = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + timeout
cluster = rados.Rados(conffile=conf, conf={"client_mount_timeout": "10", "rados_mon_op_timeout": "10",
                                           "rados_osd_op_timeout": "10"})
cluster.connect(timeout=10)

def mon(prefix):
    ret, out, err = cluster.mon_command(json.dumps({"prefix": prefix, "format": "json"}), b"")
    if ret != 0:
        raise RuntimeError(f"{prefix}: {err}")
    return json.loads(out)

last = "no answer yet"
while True:
    try:
        dump = mon("osd dump")
        not_ready = [f"osd.{o['osd']} " + ("up" if o["up"] else "down") + "/" + ("in" if o["in"] else "out")
                     for o in dump["osds"] if not (o["up"] and o["in"])]
        if not_ready:
            last = "OSDs not up and in: " + ", ".join(not_ready)
        else:
            unclean = []
            for pool in dump["pools"]:
                for i in range(pool["pg_num"]):
                    pgid = f"{pool['pool']}.{i:x}"
                    ret, out, err = cluster.pg_command(pgid, json.dumps({"prefix": "query", "pgid": pgid, "format": "json"}), b"", timeout=10)
                    state = json.loads(out)["state"] if ret == 0 else f"query failed ({ret}: {err})"
                    if state != "active+clean":
                        unclean.append(f"{pgid} {state}")
            if not unclean:
                break
            last = "PGs not active+clean: " + ", ".join(unclean)
    except Exception as e:  # a monitor or OSD still starting
        last = f"{type(e).__name__}: {e}"
    if time.monotonic() > deadline:
        print(f"ceph-cluster: {last}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.3)
cluster.shutdown()
EOF
    say "clean: every OSD up and in, every PG active+clean (after $((SECONDS - start))s)"
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
install) install_packages "$@" ;;
start) start_cluster "$@" ;;
stop) stop_cluster "$@" ;;
status) status_cluster "$@" ;;
kill-osd) kill_osd "$@" ;;
start-osd) start_osd "$@" ;;
freeze) freeze_cluster "$@" ;;
thaw) thaw_cluster "$@" ;;
wait-clean) wait_clean "$@" ;;
*) usage ;;
esac

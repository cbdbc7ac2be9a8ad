#!/usr/bin/env bash
# Mount benchmark: the same file workloads, in one run, on
#   cs      cloudstore-fs over LevelDB (release build, mounted with --daemon),
#   bindfs  bindfs (FUSE passthrough) over a directory on the same disk: the FUSE peer,
#   plain   that disk's directory itself, no FUSE,
#   ceph    (optional) cloudstore-fs over Ceph, when CLOUDSTORE_BENCH_CEPH_CONF names a ceph.conf
#           (pool CLOUDSTORE_BENCH_CEPH_POOL, default cloudstore-test; a fresh RADOS namespace).
#
#   sudo benches/mount.sh
#   conf=$(scripts/ceph-cluster.sh start /tmp/bench-ceph)
#   sudo CLOUDSTORE_BENCH_CEPH_CONF=$conf benches/mount.sh; scripts/ceph-cluster.sh stop /tmp/bench-ceph
#
# Workloads (each timed on its own, wall clock): create 10,000 x 4 KiB files (cp from a source
# directory), ls -l, cat * > /dev/null, tar c (piped through cat: GNU tar skips reading the files
# when its output is /dev/null itself), rm of all, rsync -a into the empty target, rsync -a again
# (nothing to transfer; checked), and dd bs=1M of a 512 MiB file of random bytes: write (conv=fsync,
# so every target ends with the data on disk) and read (Ceph: 64 MiB, its default max chunk size).
# Before every step: sync. Before the read steps (ls -l, cat, tar, rsync again, dd read) the page,
# dentry and inode caches are dropped as well (echo 3 > /proc/sys/vm/drop_caches): cold reads on
# every target. cloudstore-fs's own memory (LevelDB memtable and block cache) is not dropped.
#
# Prints seconds per step and target, cloudstore-fs / bindfs and cloudstore-fs / plain, the CPU
# seconds the FUSE daemons spent per step, and cloudstore-fs's peak RSS (VmHWM of the daemon).
#
# Environment: CARGO_TARGET_DIR (where the build goes), CLOUDSTORE_BENCH_TMP (parent of the
# temporary directory, default /var/tmp: must be on a real disk, not tmpfs), CLOUDSTORE_BENCH_FILES
# (default 10000), CLOUDSTORE_BENCH_BIG_MIB (default 512), CLOUDSTORE_BENCH_STEP_TIMEOUT (seconds,
# default 120). Needs root (mount, /dev/fuse, drop_caches). It unmounts what it mounted, stops only
# the daemons it started (by PID) and removes its temporary directory, also on failure.
set -euo pipefail

FILES=${CLOUDSTORE_BENCH_FILES:-10000}
BIG_MIB=${CLOUDSTORE_BENCH_BIG_MIB:-512}
CEPH_BIG_MIB=$((BIG_MIB < 64 ? BIG_MIB : 64))
STEP_TIMEOUT=${CLOUDSTORE_BENCH_STEP_TIMEOUT:-120}
CEPH_CONF=${CLOUDSTORE_BENCH_CEPH_CONF:-}
CEPH_POOL=${CLOUDSTORE_BENCH_CEPH_POOL:-cloudstore-test}

say() { echo "mount-bench: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

if [ "$(id -u)" != 0 ]; then
    die "needs root (FUSE mounts through mount(2), /dev/fuse, /proc/sys/vm/drop_caches): sudo $0"
fi
for tool in rsync tar dd cp awk; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if ! command -v bindfs >/dev/null; then
    say "installing bindfs (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q bindfs >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bindfs >&2; } ||
        die "cannot install bindfs"
fi
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    . "$HOME/.cargo/env"
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
features=()
[ -n "$CEPH_CONF" ] && features=(--features ceph)
say "building: cargo build --release ${features[*]}"
(cd "$repo" && cargo build --release --quiet "${features[@]}") || die "build failed"
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$repo/$target ;; esac
BIN=$target/release/cloudstore-fs
[ -x "$BIN" ] || die "no binary at $BIN"

# --- everything the cleanup undoes -------------------------------------------------------------
BASE=""
CS_MOUNTS=()  # cloudstore-fs mountpoints we mounted
FUSE_MOUNTS=() # bindfs mountpoints we mounted
PIDS=()       # daemons we started

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

stop_pid() { # PID: waits up to 10 s for it to exit after its unmount, then TERM, then KILL
    local pid=$1 i
    for i in $(seq 1 100); do alive "$pid" || return 0; sleep 0.1; done
    say "daemon $pid still running after its unmount: SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
    say "daemon $pid still running: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

unmount_cs() { # MNT
    local mnt=$1
    mountpoint -q "$mnt" 2>/dev/null || return 0
    timeout 60 "$BIN" unmount "$mnt" >&2 || umount -l "$mnt" 2>/dev/null || true
}

unmount_fuse() { # MNT
    local mnt=$1
    mountpoint -q "$mnt" 2>/dev/null || return 0
    timeout 30 umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
}

cleanup() {
    local rc=$? m p
    trap - EXIT INT TERM
    set +e
    for m in "${CS_MOUNTS[@]}"; do unmount_cs "$m"; done
    for m in "${FUSE_MOUNTS[@]}"; do unmount_fuse "$m"; done
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [ -n "$BASE" ] && [ -d "$BASE" ]; then
        # Never delete through a mount that is still there.
        if grep -q " $BASE/" /proc/self/mounts; then
            say "something under $BASE is still mounted: leaving the directory in place"
        else
            rm -rf "$BASE"
        fi
    fi
    [ "$rc" = 0 ] || say "failed (exit $rc); cleaned up"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

parent=${CLOUDSTORE_BENCH_TMP:-/var/tmp}
BASE=$(mktemp -d "$parent/cloudstore-mount-bench.XXXXXX")
fstype=$(stat -f -c %T "$BASE")
[ "$fstype" = tmpfs ] && die "$BASE is on tmpfs; set CLOUDSTORE_BENCH_TMP to a directory on a disk"

# --- inputs --------------------------------------------------------------------------------------
SRC=$BASE/src
BIG=$BASE/big.src
mkdir -p "$SRC"
say "generating $FILES x 4 KiB files and a $BIG_MIB MiB file of random bytes in $BASE ($fstype)"
# Names: "ab" + 4 hex digits (lowercase, even length: valid chunk names).
head -c $((FILES * 4096)) /dev/urandom | (cd "$SRC" && split -b 4096 -a 4 -x - ab)
[ "$(find "$SRC" -type f | wc -l)" = "$FILES" ] || die "source generation failed"
head -c $((BIG_MIB << 20)) /dev/urandom >"$BIG"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

cpu_of() { # PID -> CPU seconds (user + system) so far, or empty
    local pid=$1 hz
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    hz=$(getconf CLK_TCK)
    sed 's/.*) //' "/proc/$pid/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }'
}

declare -A SEC CPU NOTE
STEPS=(create ls_l cat tar rm rsync_in rsync_again dd_write dd_read)
declare -A LABEL=(
    [create]="create ${FILES} x 4 KiB (cp)" [ls_l]="ls -l" [cat]="cat * > /dev/null"
    [tar]="tar c . | cat > /dev/null" [rm]="rm all" [rsync_in]="rsync -a (fresh)"
    [rsync_again]="rsync -a again (no-op)" [dd_write]="dd write bs=1M +fsync"
    [dd_read]="dd read bs=1M"
)

# step TARGET STEP DAEMON_PID COMMAND...: runs and times one step.
step() {
    local tgt=$1 name=$2 pid=$3 t0 t1 c0 c1
    shift 3
    case $name in
        ls_l | cat | tar | rsync_again | dd_read) drop_caches ;;
        *) sync ;;
    esac
    c0=$(cpu_of "$pid")
    t0=$EPOCHREALTIME
    if ! timeout "$STEP_TIMEOUT" "$@"; then
        die "$tgt: step $name failed or took over ${STEP_TIMEOUT}s: $*"
    fi
    t1=$EPOCHREALTIME
    c1=$(cpu_of "$pid")
    SEC[$tgt,$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    if [ -n "$c0" ] && [ -n "$c1" ]; then
        CPU[$tgt,$name]=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
    fi
    say "$tgt: ${LABEL[$name]}: ${SEC[$tgt,$name]} s"
}

# workloads TARGET DIR DAEMON_PID BIG_MIB
workloads() {
    local tgt=$1 dir=$2 pid=$3 mib=$4 n moved
    step "$tgt" create "$pid" bash -c 'cp "$1"/ab* "$2"/' _ "$SRC" "$dir"
    n=$(find "$dir" -maxdepth 1 -name 'ab*' | wc -l)
    [ "$n" = "$FILES" ] || die "$tgt: $n files after the create, expected $FILES"
    for f in ab0000 "$(printf "ab%04x" $((FILES / 2)))" "$(printf "ab%04x" $((FILES - 1)))"; do
        cmp -s "$SRC/$f" "$dir/$f" || die "$tgt: $f differs from its source"
    done
    step "$tgt" ls_l "$pid" bash -c 'ls -l "$1" >/dev/null' _ "$dir"
    step "$tgt" cat "$pid" bash -c 'cat "$1"/ab* >/dev/null' _ "$dir"
    step "$tgt" tar "$pid" bash -c 'tar -C "$1" -cf - . | cat >/dev/null' _ "$dir"
    step "$tgt" rm "$pid" bash -c 'rm -f "$1"/ab*' _ "$dir"
    n=$(find "$dir" -maxdepth 1 -name 'ab*' | wc -l)
    [ "$n" = 0 ] || die "$tgt: $n files left after rm"
    step "$tgt" rsync_in "$pid" rsync -a "$SRC/" "$dir/"
    step "$tgt" rsync_again "$pid" bash -c \
        'rsync -a --stats "$1/" "$2/" | grep "regular files transferred" >"$3"' \
        _ "$SRC" "$dir" "$BASE/rsync-stats"
    moved=$(sed 's/.*: *//' "$BASE/rsync-stats")
    NOTE[$tgt,rsync_again]=$moved
    [ "$moved" = 0 ] || say "$tgt: the second rsync transferred $moved files (expected 0)"
    rm -f "$dir"/ab*
    [ -n "$pid" ] && HWM_SMALL[$tgt]=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    cat "$BIG" >/dev/null # the source of the write: in the page cache for every target
    step "$tgt" dd_write "$pid" dd if="$BIG" of="$dir/b1b1" bs=1M count="$mib" conv=fsync status=none
    [ "$(stat -c %s "$dir/b1b1")" = $((mib << 20)) ] || die "$tgt: the dd file has the wrong size"
    step "$tgt" dd_read "$pid" dd if="$dir/b1b1" of=/dev/null bs=1M status=none
    rm -f "$dir/b1b1"
}

declare -A HWM_SMALL HWM
TARGETS=()

# --- (c) the plain directory ---------------------------------------------------------------------
run_plain() {
    mkdir -p "$BASE/plain"
    TARGETS+=(plain)
    workloads plain "$BASE/plain" "" "$BIG_MIB"
}

# --- (b) bindfs ----------------------------------------------------------------------------------
run_bindfs() {
    local back=$BASE/bindfs-back mnt=$BASE/bindfs-mnt pid i
    mkdir -p "$back" "$mnt"
    FUSE_MOUNTS+=("$mnt")
    bindfs -f "$back" "$mnt" </dev/null >>"$BASE/bindfs.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
    mountpoint -q "$mnt" || die "bindfs did not mount: $(cat "$BASE/bindfs.log")"
    TARGETS+=(bindfs)
    workloads bindfs "$mnt" "$pid" "$BIG_MIB"
    unmount_fuse "$mnt"
    stop_pid "$pid"
}

# --- (a) and (d) cloudstore-fs -------------------------------------------------------------------
# run_cs TARGET BIG_MIB MOUNT-OPTIONS...
run_cs() {
    local tgt=$1 mib=$2 mnt=$BASE/$1-mnt out pid
    shift 2
    mkdir -p "$mnt"
    CS_MOUNTS+=("$mnt")
    out=$(CLOUDSTORE_FS_LOG=$BASE/$tgt.log "$BIN" "$@" mount --daemon "$mnt") ||
        die "$tgt: mount failed: $out"
    pid=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
    if [ -z "$pid" ]; then
        pid=$(awk -v m="$mnt" 'FNR == 1 { p = $1 } FNR == 2 && $0 == m { print p }' \
            /run/cloudstore-fs/*.pid 2>/dev/null | head -n 1)
    fi
    [ -n "$pid" ] && alive "$pid" || die "$tgt: cannot find the daemon's pid ($out)"
    PIDS+=("$pid")
    TARGETS+=("$tgt")
    workloads "$tgt" "$mnt" "$pid" "$mib"
    HWM[$tgt]=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    unmount_cs "$mnt"
    stop_pid "$pid"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$EPOCHREALTIME
run_plain
run_bindfs
# The memory budget must hold the big file twice while it is committed (the write buffer and the
# store's copy) or fetched (the value and the store's transient copy): three times, with room.
run_cs cs "$BIG_MIB" --data-dir "$BASE/cs-data" --max-chunk-size $(((BIG_MIB << 20) + (1 << 20))) \
    --memory-budget $(((BIG_MIB << 20) * 3))
if [ -n "$CEPH_CONF" ]; then
    run_cs ceph "$CEPH_BIG_MIB" --backend ceph --ceph-conf "$CEPH_CONF" --pool "$CEPH_POOL" \
        --namespace "mount-bench-$$-$(date +%s)"
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# --- report --------------------------------------------------------------------------------------
ratio() { # A B -> A/B with an x, or -
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.1fx", a / b }'
}
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "Machine: $(nproc) cores ($cpu_model), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "Disk: $BASE on $fstype ($(df --output=source "$BASE" | tail -n 1)); bindfs $(bindfs --version 2>&1 | head -n 1 | awk '{ print $2 }')"
echo "Load average before: $load0; after: $load1; benchmark time ${total}s"
echo "Caches: sync before every step; page/dentry/inode caches dropped before ls -l, cat, tar, rsync again, dd read"
echo "dd: ${BIG_MIB} MiB (Ceph: ${CEPH_BIG_MIB} MiB), random bytes, write with conv=fsync"
echo
hdr="| step | cloudstore-fs (s) | bindfs (s) | plain dir (s) | cs / bindfs | cs / plain |"
sep="|---|--:|--:|--:|--:|--:|"
if [ -n "$CEPH_CONF" ]; then
    hdr="$hdr cs-ceph (s) | ceph / bindfs |"
    sep="$sep--:|--:|"
fi
echo "$hdr"
echo "$sep"
for s in "${STEPS[@]}"; do
    label=${LABEL[$s]}
    case $s in dd_*) label="$label ${BIG_MIB} MiB" ;; esac
    row="| $label | ${SEC[cs,$s]} | ${SEC[bindfs,$s]} | ${SEC[plain,$s]} | $(ratio "${SEC[cs,$s]}" "${SEC[bindfs,$s]}") | $(ratio "${SEC[cs,$s]}" "${SEC[plain,$s]}") |"
    if [ -n "$CEPH_CONF" ]; then
        case $s in
            dd_*) row="$row ${SEC[ceph,$s]} (${CEPH_BIG_MIB} MiB) | - |" ;;
            *) row="$row ${SEC[ceph,$s]} | $(ratio "${SEC[ceph,$s]}" "${SEC[bindfs,$s]}") |" ;;
        esac
    fi
    echo "$row"
done
echo
mibs() { awk -v m="$1" -v s="${2:-}" 'BEGIN { if (s == "" || s + 0 == 0) print "-"; else printf "%.0f", m / s }'; }
echo "dd MiB/s: write cs $(mibs "$BIG_MIB" "${SEC[cs,dd_write]}"), bindfs $(mibs "$BIG_MIB" "${SEC[bindfs,dd_write]}"), plain $(mibs "$BIG_MIB" "${SEC[plain,dd_write]}")$([ -z "$CEPH_CONF" ] || echo ", ceph $(mibs "$CEPH_BIG_MIB" "${SEC[ceph,dd_write]}")");" \
    "read cs $(mibs "$BIG_MIB" "${SEC[cs,dd_read]}"), bindfs $(mibs "$BIG_MIB" "${SEC[bindfs,dd_read]}"), plain $(mibs "$BIG_MIB" "${SEC[plain,dd_read]}")$([ -z "$CEPH_CONF" ] || echo ", ceph $(mibs "$CEPH_BIG_MIB" "${SEC[ceph,dd_read]}")")"
line="FUSE daemon CPU seconds per step (user+sys):"
for s in "${STEPS[@]}"; do
    line="$line $s cs ${CPU[cs,$s]:-?} / bindfs ${CPU[bindfs,$s]:-?}$([ -z "$CEPH_CONF" ] || echo " / ceph ${CPU[ceph,$s]:-?}");"
done
echo "$line"
echo "Second rsync, regular files transferred: cs ${NOTE[cs,rsync_again]}, bindfs ${NOTE[bindfs,rsync_again]}, plain ${NOTE[plain,rsync_again]}$([ -z "$CEPH_CONF" ] || echo ", ceph ${NOTE[ceph,rsync_again]}")"
kib() { awk -v k="${1:-0}" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
echo "cloudstore-fs peak RSS (VmHWM): $(kib "${HWM_SMALL[cs]}") after the small-file steps, $(kib "${HWM[cs]}") after the ${BIG_MIB} MiB file$([ -z "$CEPH_CONF" ] || echo "; ceph: $(kib "${HWM_SMALL[ceph]}") / $(kib "${HWM[ceph]}") (${CEPH_BIG_MIB} MiB)")"

#!/usr/bin/env bash
# Mount benchmark: the same workloads, in one run, on
#   plain     a directory on a real disk, no FUSE (the yardstick),
#   bindfs    bindfs (FUSE passthrough) over a directory on the same disk: the FUSE peer,
#   cs        cloudstore-fs over LevelDB (release build, mounted with --daemon),
#   ceph      (with Ceph) cloudstore-fs over Ceph RADOS, a fresh RADOS namespace,
#   cephfuse  (with Ceph) ceph-fuse over CephFS on the same cluster: the Ceph peer.
#
#   sudo benches/mount.sh                                  # LevelDB, bindfs, plain
#   sudo CLOUDSTORE_BENCH_CEPH=1 benches/mount.sh          # also Ceph: starts its own throwaway
#                                                          # cluster with an MDS and a CephFS
#   sudo CLOUDSTORE_BENCH_CEPH_CONF=$conf benches/mount.sh # also Ceph, on a running cluster
#                                                          # (ceph-fuse only if it has a CephFS:
#                                                          # scripts/ceph-cluster.sh start DIR --mds)
#
# Workloads (each timed on its own, wall clock):
# - files: create N x 4 KiB files (cp from a source directory), ls -l, cat * > /dev/null, tar c
#   (piped through cat: GNU tar skips reading the files when its output is /dev/null itself),
#   rm of all, rsync -a into the empty target, rsync -a again (nothing to transfer; checked), and
#   dd bs=1M of a file of random bytes: write (conv=fsync, so every target ends with the data on
#   disk) and read. N is 10,000 (LevelDB, bindfs, plain) and 1,000 on the Ceph targets; the dd
#   file 512 MiB, on Ceph 64 MiB (its default max chunk size).
#   Cold and warm: before ls -l, cat, tar, rsync again and dd read the page, dentry and inode
#   caches are dropped (echo 3 > /proc/sys/vm/drop_caches); each of ls -l, cat, tar and dd read is
#   then run again at once without dropping anything (the "warm" rows). cloudstore-fs's own memory
#   is never dropped.
# - fio, shaped like mountpoint-s3's jobs (sync engine): sequential read bs=256k of one file,
#   random read bs=256k of it (caches dropped before each), and 10 jobs x M small-file creates
#   (10 processes: open, write 4 KiB, close; hex names, which fio's filecreate engine cannot give),
#   on every target but bindfs.
# - real clients on a content-addressed set (sha256 names, 0 B to 64 MiB, a few hundred MiB, most
#   files small): rsync -a in, restic backup, restic restore into the emptied target, rsync -a
#   --inplace --checksum of the source right after the restore (issue 14's slow case), tar c,
#   GNU cpio out, cpio in (into the emptied target), rsync -a out; the files rsync'ed out are then
#   checked against their names (sha256). On every target but bindfs.
#
# Prints seconds per step and target, the ratios (cloudstore-fs / plain and / bindfs; ceph-fuse /
# cloudstore-fs over Ceph: how many times faster we are), FUSE requests per file of the create
# and cat steps from `cloudstore-fs stats` (requests_total), the CPU seconds the FUSE daemons
# spent per step, cloudstore-fs's peak RSS (VmHWM) after each phase, the commit, the command and
# the machine's load (uptime) before and after.
#
# Environment (sizes are configurable):
#   CLOUDSTORE_BENCH_FILES (10000)         small files on LevelDB, bindfs and plain
#   CLOUDSTORE_BENCH_CEPH_FILES (1000)     small files on the Ceph targets
#   CLOUDSTORE_BENCH_BIG_MIB (512)         the dd file (Ceph: at most 64)
#   CLOUDSTORE_BENCH_FIO_MIB (256)         the fio read file (Ceph: at most 64)
#   CLOUDSTORE_BENCH_FIO_FILES (1000)      small files per create job (10 jobs)
#   CLOUDSTORE_BENCH_CA_MIB (300)          size of the content-addressed set
#   CLOUDSTORE_BENCH_CA_MAX_MIB (64)       its largest file
#   CLOUDSTORE_BENCH_PARTS (files fio clients)  which parts to run
#   CLOUDSTORE_BENCH_CEPH (0)              1: start a throwaway cluster with an MDS (in the
#                                          temporary directory) for the Ceph targets
#   CLOUDSTORE_BENCH_CEPH_CONF             or: a running cluster's ceph.conf
#   CLOUDSTORE_BENCH_CEPH_POOL (cloudstore-test)
#   CLOUDSTORE_BENCH_TMP (/var/tmp)        parent of the temporary directory (a real disk)
#   CLOUDSTORE_BENCH_STEP_TIMEOUT (300)    seconds a step may take
#   CARGO_TARGET_DIR                       where the build goes
#   CLOUDSTORE_BENCH_BIN                   a cloudstore-fs binary to measure instead of building
#                                          (e.g. an older commit's, for a before/after)
# Needs root (mount, /dev/fuse, drop_caches); installs bindfs, fio and cpio when missing (and
# ceph-mds, ceph-fuse through scripts/ceph-cluster.sh install --mds). It unmounts what it
# mounted, stops only the daemons it started (by PID), stops the cluster it started, and removes
# its temporary directory, also on failure.
set -euo pipefail

FILES=${CLOUDSTORE_BENCH_FILES:-10000}
CEPH_FILES=${CLOUDSTORE_BENCH_CEPH_FILES:-1000}
BIG_MIB=${CLOUDSTORE_BENCH_BIG_MIB:-512}
CEPH_BIG_MIB=$((BIG_MIB < 64 ? BIG_MIB : 64))
FIO_MIB=${CLOUDSTORE_BENCH_FIO_MIB:-256}
CEPH_FIO_MIB=$((FIO_MIB < 64 ? FIO_MIB : 64))
FIO_FILES=${CLOUDSTORE_BENCH_FIO_FILES:-1000}
CA_MIB=${CLOUDSTORE_BENCH_CA_MIB:-300}
CA_MAX_MIB=${CLOUDSTORE_BENCH_CA_MAX_MIB:-64}
PARTS=${CLOUDSTORE_BENCH_PARTS:-files fio clients}
STEP_TIMEOUT=${CLOUDSTORE_BENCH_STEP_TIMEOUT:-300}
CEPH_START=${CLOUDSTORE_BENCH_CEPH:-0}
CEPH_CONF=${CLOUDSTORE_BENCH_CEPH_CONF:-}
CEPH_POOL=${CLOUDSTORE_BENCH_CEPH_POOL:-cloudstore-test}
command_line="$0 $*"
env_line=$(env | grep '^CLOUDSTORE_BENCH_' | sort | tr '\n' ' ' || true)

say() { echo "mount-bench: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}
part() { [[ " $PARTS " == *" $1 "* ]]; }

if [ "$(id -u)" != 0 ]; then
    die "needs root (FUSE mounts through mount(2), /dev/fuse, /proc/sys/vm/drop_caches): sudo $0"
fi
missing=()
for tool in bindfs fio cpio; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } ||
        die "cannot install ${missing[*]}"
fi
for tool in rsync tar dd cp awk restic sha256sum python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    . "$HOME/.cargo/env"
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
CEPH=0
[ -n "$CEPH_CONF" ] || [ "$CEPH_START" = 1 ] && CEPH=1
features=()
[ "$CEPH" = 1 ] && features=(--features ceph)
if [ -n "${CLOUDSTORE_BENCH_BIN:-}" ]; then
    BIN=$CLOUDSTORE_BENCH_BIN
    commit="binary $BIN"
else
    say "building: cargo build --release ${features[*]}"
    (cd "$repo" && cargo build --release --quiet "${features[@]}") || die "build failed"
    target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$repo/$target ;; esac
    BIN=$target/release/cloudstore-fs
    commit=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(cd "$repo" && git status --porcelain --untracked-files=no 2>/dev/null || true)
    [ -n "$dirty" ] && commit="$commit (with uncommitted changes)"
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- everything the cleanup undoes -------------------------------------------------------------
BASE=""
CS_MOUNTS=()   # cloudstore-fs mountpoints we mounted
FUSE_MOUNTS=() # bindfs and ceph-fuse mountpoints we mounted
PIDS=()        # daemons we started
CLUSTER=""     # the Ceph cluster we started

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
    [ -n "$CLUSTER" ] && "$repo/scripts/ceph-cluster.sh" stop "$CLUSTER" >/dev/null 2>&1
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
uptime0=$(uptime)

# --- Ceph ----------------------------------------------------------------------------------------
CEPHFS=0
if [ "$CEPH" = 1 ]; then
    if [ -z "$CEPH_CONF" ]; then
        CLUSTER=$BASE/ceph
        say "starting a throwaway Ceph cluster with an MDS in $CLUSTER"
        CEPH_CONF=$("$repo/scripts/ceph-cluster.sh" start "$CLUSTER" --mds | tail -n 1) ||
            die "the Ceph cluster did not start"
    fi
    if ceph -c "$CEPH_CONF" --connect-timeout 15 fs ls 2>/dev/null | grep -q 'name:'; then
        command -v ceph-fuse >/dev/null || "$repo/scripts/ceph-cluster.sh" install --mds
        CEPHFS=1
    else
        say "the cluster of $CEPH_CONF has no CephFS: no ceph-fuse target (start it with --mds)"
    fi
fi

# --- inputs --------------------------------------------------------------------------------------
SRC=$BASE/src
SRC_CEPH=$BASE/src-ceph
BIG=$BASE/big.src
CA=$BASE/ca.src
mkdir -p "$SRC" "$SRC_CEPH"
say "generating $FILES x 4 KiB files and a $BIG_MIB MiB file of random bytes in $BASE ($fstype)"
# Names: "ab" + 4 hex digits (lowercase, even length: valid chunk names).
head -c $((FILES * 4096)) /dev/urandom | (cd "$SRC" && split -b 4096 -a 4 -x - ab)
[ "$(find "$SRC" -type f | wc -l)" = "$FILES" ] || die "source generation failed"
[ "$CEPH_FILES" -le "$FILES" ] || die "CLOUDSTORE_BENCH_CEPH_FILES must not exceed CLOUDSTORE_BENCH_FILES"
for ((i = 0; i < CEPH_FILES; i++)); do
    ln "$SRC/$(printf 'ab%04x' "$i")" "$SRC_CEPH/"
done
big_src_mib=$((BIG_MIB > FIO_MIB ? BIG_MIB : FIO_MIB))
head -c $((big_src_mib << 20)) /dev/urandom >"$BIG"
if part clients; then
    say "generating a content-addressed set of about $CA_MIB MiB (sha256 names, 0 B to $CA_MAX_MIB MiB)"
    python3 - "$CA" "$CA_MIB" "$CA_MAX_MIB" <<'EOF'
import hashlib, os, random, sys
out, total_mib, max_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
rng = random.Random(14)
sizes, total = [0], 0
# About 40% of the bytes in big files (1 MiB to the maximum), the rest in files of 0-256 KiB,
# as in a restic data set.
while total < total_mib * 0.4 * 2**20:
    sizes.append(rng.randrange(2**20, max(max_mib * 2**20, 2**20 + 1)))
    total += sizes[-1]
while total < total_mib * 2**20:
    sizes.append(rng.randrange(0, 256 * 1024))
    total += sizes[-1]
rng.shuffle(sizes)
for n in sizes:
    data = os.urandom(n)
    with open(os.path.join(out, hashlib.sha256(data).hexdigest()), "wb") as f:
        f.write(data)
EOF
fi
CA_N=0
CA_BYTES=0
if [ -d "$CA" ]; then
    CA_N=$(find "$CA" -type f | wc -l)
    CA_BYTES=$(du -sb "$CA" | cut -f1)
fi

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

cpu_of() { # PID -> CPU seconds (user + system) so far, or empty
    local pid=$1 hz
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    hz=$(getconf CLK_TCK)
    sed 's/.*) //' "/proc/$pid/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }'
}

requests_of() { # MNT -> FUSE requests the cloudstore-fs daemon has answered, or empty
    "$BIN" stats "$1" 2>/dev/null | awk -F': ' '$1 == "requests_total" { print $2 }'
}

hwm_of() { # PID -> VmHWM in KiB, or empty
    [ -n "$1" ] && awk '/VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

declare -A SEC CPU NOTE REQ MNT_OF PID_OF NFILES HWM
FILE_STEPS=(create ls_l ls_l_warm cat cat_warm tar tar_warm rm rsync_in rsync_again dd_write dd_read dd_read_warm)
FIO_STEPS=(fio_seq_read fio_rand_read fio_small_files)
CA_STEPS=(ca_rsync_in ca_restic_backup ca_restic_restore ca_rsync_checksum ca_tar ca_cpio_out ca_cpio_in ca_rsync_out)
declare -A LABEL=(
    [create]="create N x 4 KiB (cp)" [ls_l]="ls -l, cold" [ls_l_warm]="ls -l, warm"
    [cat]="cat * > /dev/null, cold" [cat_warm]="cat *, warm"
    [tar]="tar c . | cat > /dev/null, cold" [tar_warm]="tar c, warm" [rm]="rm all"
    [rsync_in]="rsync -a (fresh)" [rsync_again]="rsync -a again (no-op), cold"
    [dd_write]="dd write bs=1M +fsync" [dd_read]="dd read bs=1M, cold" [dd_read_warm]="dd read, warm"
    [fio_seq_read]="fio seq read bs=256k, cold" [fio_rand_read]="fio rand read bs=256k, cold"
    [fio_small_files]="10 jobs x $FIO_FILES creates of 4 KiB"
    [ca_rsync_in]="rsync -a in" [ca_restic_backup]="restic backup, cold"
    [ca_restic_restore]="restic restore (into the emptied target)"
    [ca_rsync_checksum]="rsync -a --inplace --checksum after the restore"
    [ca_tar]="tar c, cold" [ca_cpio_out]="cpio -o, cold" [ca_cpio_in]="cpio -i (emptied target)"
    [ca_rsync_out]="rsync -a out, cold"
)

# step TARGET STEP COMMAND...: runs and times one step (with the daemon's CPU and, on
# cloudstore-fs, the FUSE requests it answered).
step() {
    local tgt=$1 name=$2 pid=${PID_OF[$1]:-} mnt=${MNT_OF[$1]:-} t0 t1 c0 c1 r0="" r1=""
    shift 2
    case $name in
        *_warm) ;;
        ls_l | cat | tar | rsync_again | dd_read | fio_* | ca_restic_backup | ca_tar | ca_cpio_out | ca_rsync_out) drop_caches ;;
        *) sync ;;
    esac
    c0=$(cpu_of "$pid")
    [ -n "$mnt" ] && r0=$(requests_of "$mnt")
    t0=$EPOCHREALTIME
    if ! timeout "$STEP_TIMEOUT" "$@"; then
        die "$tgt: step $name failed or took over ${STEP_TIMEOUT}s: $*"
    fi
    t1=$EPOCHREALTIME
    c1=$(cpu_of "$pid")
    [ -n "$mnt" ] && r1=$(requests_of "$mnt")
    SEC[$tgt,$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    if [ -n "$c0" ] && [ -n "$c1" ]; then
        CPU[$tgt,$name]=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
    fi
    # The stats command's own requests (a lookup and a read of the control file) are in r1.
    [ -n "$r0" ] && [ -n "$r1" ] && REQ[$tgt,$name]=$((r1 - r0))
    say "$tgt: ${LABEL[$name]}: ${SEC[$tgt,$name]} s"
}

# file_workloads TARGET DIR SRC N BIG_MIB
file_workloads() {
    local tgt=$1 dir=$2 src=$3 n=$4 mib=$5 got moved last
    NFILES[$tgt]=$n
    step "$tgt" create bash -c 'cp "$1"/ab* "$2"/' _ "$src" "$dir"
    got=$(find "$dir" -maxdepth 1 -name 'ab*' | wc -l)
    [ "$got" = "$n" ] || die "$tgt: $got files after the create, expected $n"
    last=$(printf "ab%04x" $((n - 1)))
    for f in ab0000 "$last"; do
        cmp -s "$src/$f" "$dir/$f" || die "$tgt: $f differs from its source"
    done
    step "$tgt" ls_l bash -c 'ls -l "$1" >/dev/null' _ "$dir"
    step "$tgt" ls_l_warm bash -c 'ls -l "$1" >/dev/null' _ "$dir"
    step "$tgt" cat bash -c 'cat "$1"/ab* >/dev/null' _ "$dir"
    step "$tgt" cat_warm bash -c 'cat "$1"/ab* >/dev/null' _ "$dir"
    step "$tgt" tar bash -c 'tar -C "$1" -cf - . | cat >/dev/null' _ "$dir"
    step "$tgt" tar_warm bash -c 'tar -C "$1" -cf - . | cat >/dev/null' _ "$dir"
    step "$tgt" rm bash -c 'rm -f "$1"/ab*' _ "$dir"
    got=$(find "$dir" -maxdepth 1 -name 'ab*' | wc -l)
    [ "$got" = 0 ] || die "$tgt: $got files left after rm"
    step "$tgt" rsync_in rsync -a "$src/" "$dir/"
    step "$tgt" rsync_again bash -c \
        'rsync -a --stats "$1/" "$2/" | grep "regular files transferred" >"$3"' \
        _ "$src" "$dir" "$BASE/rsync-stats"
    moved=$(sed 's/.*: *//' "$BASE/rsync-stats")
    NOTE[$tgt,rsync_again]=$moved
    [ "$moved" = 0 ] || say "$tgt: the second rsync transferred $moved files (expected 0)"
    rm -f "$dir"/ab*
    HWM[$tgt,files]=$(hwm_of "${PID_OF[$tgt]:-}")
    cat "$BIG" >/dev/null # the source of the write: in the page cache for every target
    step "$tgt" dd_write dd if="$BIG" of="$dir/b1b1" bs=1M count="$mib" conv=fsync status=none
    [ "$(stat -c %s "$dir/b1b1")" = $((mib << 20)) ] || die "$tgt: the dd file has the wrong size"
    step "$tgt" dd_read dd if="$dir/b1b1" of=/dev/null bs=1M status=none
    step "$tgt" dd_read_warm dd if="$dir/b1b1" of=/dev/null bs=1M status=none
    rm -f "$dir/b1b1"
    HWM[$tgt,big]=$(hwm_of "${PID_OF[$tgt]:-}")
}

# fio_figure JSON -> what fio measured (without its own start-up): MiB/s read, or for the
# filecreate jobs files created per second (all jobs' files over the longest job's runtime).
fio_figure() {
    python3 - "$1" <<'EOF'
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
if jobs[0]["job options"].get("ioengine") == "filecreate" or len(jobs) > 1:
    files = sum(j["read"]["total_ios"] + j["write"]["total_ios"] for j in jobs)
    ms = max(max(j["job_runtime"] for j in jobs), 1)
    print(f"{files / ms * 1000:.0f}")
else:
    print(f"{sum(j['read']['bw_bytes'] for j in jobs) / 2**20:.0f}")
EOF
}

# fio_workloads TARGET DIR FILE_MIB: mountpoint-s3's shapes (sync engine, bs=256k).
declare -A FIO_MIBS FIO
fio_workloads() {
    local tgt=$1 dir=$2 mib=$3 job j i names
    FIO_MIBS[$tgt]=$mib
    dd if="$BIG" of="$dir/f10f10" bs=1M count="$mib" conv=fsync status=none
    for job in seq_read:read rand_read:randread; do
        step "$tgt" "fio_${job%%:*}" fio --name="${job%%:*}" --filename="$dir/f10f10" \
            --rw="${job#*:}" --bs=256k --ioengine=sync --size="${mib}M" \
            --output-format=json --output="$BASE/fio-$tgt-${job%%:*}.json"
        FIO[$tgt,fio_${job%%:*}]=$(fio_figure "$BASE/fio-$tgt-${job%%:*}.json")
    done
    rm -f "$dir/f10f10"
    # 10 jobs, each creating FIO_FILES files of 4 KiB, as mountpoint-s3's small-file jobs. Not
    # with fio's filecreate engine: its names are not hex (they would be scratch files here, never
    # chunks), and a list of names per job is capped at 4,096 characters. Ten processes instead,
    # each open(O_CREAT|O_EXCL), write 4 KiB, close, in a loop; files per second over the wall time.
    step "$tgt" fio_small_files python3 - "$dir" "$FIO_FILES" "$BASE/small-$tgt.rate" <<'EOF'
import os, sys, time
from multiprocessing import Process
d, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = os.urandom(4096)
def job(j):
    for i in range(n):
        fd = os.open(os.path.join(d, "fc%02x%06x" % (j, i)), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, data)
        os.close(fd)
t = time.monotonic()
jobs = [Process(target=job, args=(j,)) for j in range(10)]
for p in jobs:
    p.start()
for p in jobs:
    p.join()
    if p.exitcode != 0:
        sys.exit(1)
open(out, "w").write("%.0f\n" % (10 * n / (time.monotonic() - t)))
EOF
    FIO[$tgt,fio_small_files]=$(cat "$BASE/small-$tgt.rate")
    local got
    got=$(find "$dir" -maxdepth 1 -name 'fc*' | wc -l)
    [ "$got" = $((10 * FIO_FILES)) ] || die "$tgt: $got files after the fio creates, expected $((10 * FIO_FILES))"
    find "$dir" -maxdepth 1 -name 'fc*' -delete
    HWM[$tgt,fio]=$(hwm_of "${PID_OF[$tgt]:-}")
}

# client_workloads TARGET DIR: real programs on the content-addressed set.
client_workloads() {
    local tgt=$1 dir=$2 repo=$BASE/restic-$tgt out=$BASE/ca-out-$tgt moved bad n
    export RESTIC_PASSWORD=mount-bench
    restic init -q --no-cache -r "$repo" >/dev/null
    step "$tgt" ca_rsync_in rsync -a "$CA/" "$dir/"
    step "$tgt" ca_restic_backup bash -c 'cd "$1" && restic backup -q --no-cache -r "$2" .' _ "$dir" "$repo"
    find "$dir" -mindepth 1 -maxdepth 1 -delete
    step "$tgt" ca_restic_restore restic restore -q --no-cache -r "$repo" latest --target "$dir"
    step "$tgt" ca_rsync_checksum bash -c \
        'rsync -a --inplace --checksum --stats "$1/" "$2/" | grep "regular files transferred" >"$3"' \
        _ "$CA" "$dir" "$BASE/rsync-stats"
    moved=$(sed 's/.*: *//' "$BASE/rsync-stats")
    NOTE[$tgt,ca_rsync_checksum]=$moved
    [ "$moved" = 0 ] || say "$tgt: rsync --checksum after the restore transferred $moved files (expected 0)"
    step "$tgt" ca_tar bash -c 'tar -C "$1" -cf - . | cat >/dev/null' _ "$dir"
    step "$tgt" ca_cpio_out bash -c 'cd "$1" && find . -type f | cpio -o -H newc --quiet >"$2"' \
        _ "$dir" "$BASE/ca-$tgt.cpio"
    find "$dir" -mindepth 1 -maxdepth 1 -delete
    step "$tgt" ca_cpio_in bash -c 'cd "$1" && cpio -i -m --quiet <"$2"' _ "$dir" "$BASE/ca-$tgt.cpio"
    step "$tgt" ca_rsync_out rsync -a "$dir/" "$out/"
    n=$(find "$out" -type f | wc -l)
    [ "$n" = "$CA_N" ] || die "$tgt: $n files came back out, expected $CA_N"
    bad=$(cd "$out" && sha256sum -- * | awk '$1 != $2' | wc -l)
    [ "$bad" = 0 ] || die "$tgt: $bad files came back out with other bytes than their sha256 names say"
    rm -rf "$out" "$repo" "$BASE/ca-$tgt.cpio"
    find "$dir" -mindepth 1 -maxdepth 1 -delete
    HWM[$tgt,clients]=$(hwm_of "${PID_OF[$tgt]:-}")
}

# all_workloads TARGET DIR SMALL-SRC N BIG_MIB FIO_MIB
TARGETS=()
all_workloads() {
    local tgt=$1 dir=$2
    TARGETS+=("$tgt")
    part files && file_workloads "$tgt" "$dir" "$3" "$4" "$5"
    [ "$tgt" = bindfs ] && return 0
    part fio && fio_workloads "$tgt" "$dir" "$6"
    part clients && client_workloads "$tgt" "$dir"
    return 0
}

# --- the targets ---------------------------------------------------------------------------------
run_plain() {
    mkdir -p "$BASE/plain"
    all_workloads plain "$BASE/plain" "$SRC" "$FILES" "$BIG_MIB" "$FIO_MIB"
}

run_bindfs() {
    local back=$BASE/bindfs-back mnt=$BASE/bindfs-mnt pid i
    mkdir -p "$back" "$mnt"
    FUSE_MOUNTS+=("$mnt")
    bindfs -f "$back" "$mnt" </dev/null >>"$BASE/bindfs.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
    mountpoint -q "$mnt" || die "bindfs did not mount: $(cat "$BASE/bindfs.log")"
    PID_OF[bindfs]=$pid
    all_workloads bindfs "$mnt" "$SRC" "$FILES" "$BIG_MIB" "$FIO_MIB"
    unmount_fuse "$mnt"
    stop_pid "$pid"
}

run_cephfuse() {
    local mnt=$BASE/cephfuse-mnt pid i dir
    mkdir -p "$mnt"
    FUSE_MOUNTS+=("$mnt")
    ceph-fuse -c "$CEPH_CONF" --client_fs cephfs -f "$mnt" </dev/null >>"$BASE/ceph-fuse.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 200); do mountpoint -q "$mnt" && break; sleep 0.1; done
    mountpoint -q "$mnt" || die "ceph-fuse did not mount: $(tail -n 5 "$BASE/ceph-fuse.log")"
    dir=$mnt/mount-bench-$$
    mkdir "$dir"
    PID_OF[cephfuse]=$pid
    all_workloads cephfuse "$dir" "$SRC_CEPH" "$CEPH_FILES" "$CEPH_BIG_MIB" "$CEPH_FIO_MIB"
    rm -rf "$dir"
    unmount_fuse "$mnt"
    stop_pid "$pid"
}

# run_cs TARGET SMALL-SRC N BIG_MIB FIO_MIB MOUNT-OPTIONS...
run_cs() {
    local tgt=$1 src=$2 n=$3 mib=$4 fio_mib=$5 mnt=$BASE/$1-mnt out pid
    shift 5
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
    PID_OF[$tgt]=$pid
    MNT_OF[$tgt]=$mnt
    all_workloads "$tgt" "$mnt" "$src" "$n" "$mib" "$fio_mib"
    HWM[$tgt,all]=$(hwm_of "$pid")
    unmount_cs "$mnt"
    stop_pid "$pid"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$EPOCHREALTIME
run_plain
part files && run_bindfs
# The memory budget must hold what a commit of the big file at dd's fsync holds: the write buffer
# (kept: the file is still open) and LevelDB's copies of a value as big as its write buffer (about
# 3 1/6 times: see SEMANTICS.md, "What the store libraries hold"), so 4 1/2 times, with room.
budget=$(((BIG_MIB > CA_MAX_MIB ? BIG_MIB : CA_MAX_MIB) * 9 / 2))
max_chunk=$(((BIG_MIB > CA_MAX_MIB ? BIG_MIB : CA_MAX_MIB) + 1))
run_cs cs "$SRC" "$FILES" "$BIG_MIB" "$FIO_MIB" --data-dir "$BASE/cs-data" \
    --max-chunk-size "${max_chunk}M" --memory-budget "$((budget > 1024 ? budget : 1024))M"
if [ "$CEPH" = 1 ]; then
    run_cs ceph "$SRC_CEPH" "$CEPH_FILES" "$CEPH_BIG_MIB" "$CEPH_FIO_MIB" --backend ceph \
        --ceph-conf "$CEPH_CONF" --pool "$CEPH_POOL" --namespace "mount-bench-$$-$(date +%s)"
    [ "$CEPHFS" = 1 ] && run_cephfuse
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)
uptime1=$(uptime)
total=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# --- report --------------------------------------------------------------------------------------
ratio() { # A B -> A/B with an x, or -
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'
}
has() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
cell() { echo "${SEC[$1,$2]:--}"; }
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "Commit: $commit. Command: $env_line$command_line"
echo "Machine: $(nproc) cores ($cpu_model), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "Disk: $BASE on $fstype ($(df --output=source "$BASE" | tail -n 1)); bindfs $(bindfs --version 2>&1 | awk 'NR == 1 { print $2 }'), fio $(fio --version), restic $(restic version | awk '{ print $2 }')"
echo "uptime before: $uptime0"
echo "uptime after:  $uptime1"
echo "Load average before: $load0; after: $load1; benchmark time ${total}s"
echo "Caches: sync before every step; page/dentry/inode caches dropped before every 'cold' step; 'warm' = the same step again at once"
echo "Files: $FILES x 4 KiB (Ceph targets: $CEPH_FILES); dd: $BIG_MIB MiB (Ceph: $CEPH_BIG_MIB MiB); fio file $FIO_MIB MiB (Ceph: $CEPH_FIO_MIB MiB), 10 x $FIO_FILES creates"
[ "$CA_N" -gt 0 ] && echo "Content-addressed set: $CA_N files, $((CA_BYTES >> 20)) MiB, 0 B to $CA_MAX_MIB MiB"
echo
rows() { # STEP... : the LevelDB table's rows
    local s label
    for s in "$@"; do
        label=${LABEL[$s]/N x/$FILES x}
        case $s in dd_*) label="$label ($BIG_MIB MiB)" ;; fio_seq* | fio_rand*) label="$label ($FIO_MIB MiB)" ;; esac
        echo "| $label | $(cell cs "$s") | $(cell plain "$s") | $(cell bindfs "$s") | $(ratio "${SEC[cs,$s]:-}" "${SEC[plain,$s]:-}") | $(ratio "${SEC[cs,$s]:-}" "${SEC[bindfs,$s]:-}") |"
    done
}
echo "LevelDB: seconds, and cloudstore-fs's time over the plain directory's and bindfs's (lower is better)"
echo
echo "| step | cloudstore-fs s | plain s | bindfs s | cs / plain | cs / bindfs |"
echo "|---|--:|--:|--:|--:|--:|"
part files && rows "${FILE_STEPS[@]}"
part clients && rows "${CA_STEPS[@]}"
if has ceph; then
    echo
    echo "Ceph: seconds, and how many times faster cloudstore-fs is than ceph-fuse on the same cluster (ceph-fuse s / cloudstore-fs s; higher is better)"
    echo
    echo "| step | cloudstore-fs (Ceph) s | ceph-fuse s | ceph-fuse / cs |"
    echo "|---|--:|--:|--:|"
    steps=()
    part files && steps+=("${FILE_STEPS[@]}")
    part clients && steps+=("${CA_STEPS[@]}")
    for s in "${steps[@]}"; do
        label=${LABEL[$s]/N x/$CEPH_FILES x}
        case $s in dd_*) label="$label ($CEPH_BIG_MIB MiB)" ;; fio_seq* | fio_rand*) label="$label ($CEPH_FIO_MIB MiB)" ;; esac
        echo "| $label | $(cell ceph "$s") | $(cell cephfuse "$s") | $(ratio "${SEC[cephfuse,$s]:-}" "${SEC[ceph,$s]:-}") |"
    done
fi
echo
mibs() { awk -v m="$1" -v s="${2:-}" 'BEGIN { if (s == "" || s + 0 == 0) print "-"; else printf "%.0f", m / s }'; }
if part files; then
    line="dd MiB/s (write / read cold / read warm):"
    for t in "${TARGETS[@]}"; do
        m=$BIG_MIB
        case $t in ceph | cephfuse) m=$CEPH_BIG_MIB ;; esac
        line="$line $t $(mibs "$m" "${SEC[$t,dd_write]:-}") / $(mibs "$m" "${SEC[$t,dd_read]:-}") / $(mibs "$m" "${SEC[$t,dd_read_warm]:-}");"
    done
    echo "$line"
fi
if part fio; then
    echo
    echo "fio, as fio measured it (higher is better): read MiB/s, small files created per second; wall seconds (with fio's start-up) in brackets"
    echo
    hdr="| job | plain | cloudstore-fs | cs / plain |"
    sep="|---|--:|--:|--:|"
    if has ceph; then
        hdr="$hdr cloudstore-fs (Ceph) | ceph-fuse | cs-ceph / ceph-fuse |"
        sep="$sep--:|--:|--:|"
    fi
    echo "$hdr"
    echo "$sep"
    for s in "${FIO_STEPS[@]}"; do
        label=${LABEL[$s]}
        case $s in fio_seq* | fio_rand*) label="$label ($FIO_MIB MiB; Ceph $CEPH_FIO_MIB MiB)" ;; esac
        row="| $label | ${FIO[plain,$s]:--} ($(cell plain "$s")) | ${FIO[cs,$s]:--} ($(cell cs "$s")) | $(ratio "${FIO[cs,$s]:-}" "${FIO[plain,$s]:-}") |"
        if has ceph; then
            row="$row ${FIO[ceph,$s]:--} ($(cell ceph "$s")) | ${FIO[cephfuse,$s]:--} ($(cell cephfuse "$s")) | $(ratio "${FIO[ceph,$s]:-}" "${FIO[cephfuse,$s]:-}") |"
        fi
        echo "$row"
    done
    echo
fi
per_file() { awk -v r="${1:-}" -v n="${2:-0}" 'BEGIN { if (r == "" || n == 0) print "-"; else printf "%.2f", r / n }'; }
for t in cs ceph; do
    has "$t" && part files || continue
    n=${NFILES[$t]}
    echo "FUSE requests per file ($t, from cloudstore-fs stats): create $(per_file "${REQ[$t,create]:-}" "$n"), ls -l cold $(per_file "${REQ[$t,ls_l]:-}" "$n"), cat cold $(per_file "${REQ[$t,cat]:-}" "$n"), cat warm $(per_file "${REQ[$t,cat_warm]:-}" "$n"), tar cold $(per_file "${REQ[$t,tar]:-}" "$n"), rsync again $(per_file "${REQ[$t,rsync_again]:-}" "$n")"
done
line="FUSE daemon CPU seconds per step (user+sys):"
for t in "${TARGETS[@]}"; do
    [ "$t" = plain ] && continue
    line="$line $t:"
    for s in "${FILE_STEPS[@]}" "${FIO_STEPS[@]}" "${CA_STEPS[@]}"; do
        [ -n "${CPU[$t,$s]:-}" ] && line="$line $s ${CPU[$t,$s]}"
    done
    line="$line;"
done
echo "$line"
part files && echo "Second rsync, regular files transferred (expected 0): $(for t in "${TARGETS[@]}"; do printf '%s %s; ' "$t" "${NOTE[$t,rsync_again]:-}"; done)"
part clients && echo "rsync --checksum after the restore, regular files transferred (expected 0): $(for t in "${TARGETS[@]}"; do [ "$t" = bindfs ] || printf '%s %s; ' "$t" "${NOTE[$t,ca_rsync_checksum]:-}"; done)"
kib() { awk -v k="${1:-}" 'BEGIN { if (k == "") print "-"; else printf "%.0f MiB", k / 1024 }'; }
for t in cs ceph; do
    has "$t" || continue
    echo "cloudstore-fs ($t) peak RSS (VmHWM, cumulative): after the small files $(kib "${HWM[$t,files]:-}"), after the dd file $(kib "${HWM[$t,big]:-}"), after fio $(kib "${HWM[$t,fio]:-}"), after the real clients $(kib "${HWM[$t,clients]:-}")"
done

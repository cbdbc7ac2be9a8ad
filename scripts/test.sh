#!/usr/bin/env bash
# Runs every test of cloudstore-fs on this machine, installing what the tests need first:
# Debian packages (Ceph daemons, librados, clang, cmake, rsync, strace), plyvel, fsx (the file
# system exerciser, from crates.io), two throwaway Ceph clusters (single-node, and 3 OSDs with
# cephx for the fault tests; stopped again on exit, even when tests fail), then formatting, lints
# and `cargo test --all-features`, then the tests that touch global kernel state (tests/serial.rs:
# drop_caches) alone, with one thread.
#
#   scripts/test.sh            everything (needs root for apt-get and the FUSE mounts)
#   scripts/test.sh -- ARGS    extra arguments for `cargo test` (e.g. a test name filter)
#
# CI runs this with CI=true, where a missing Ceph cluster or FUSE device fails the tests
# instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test.sh: $*" >&2; }

# rustup's cargo may be missing from a non-login shell's PATH.
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# 1. Packages. The Ceph ones (librados-dev among them) are installed by the cluster script; the
# rest here: the C++ LevelDB build (clang, cmake: Debian's GCC 12 rejects a flag of its CMake),
# the tools the tests drive (rsync, cmp, tar, strace, vim for tests/everyday.rs, restic for
# tests/serial.rs, curl for tests/metrics_snapshot.rs) and plyvel
# (C++ LevelDB for Python) for the interop tests.
need=()
command -v rsync >/dev/null || need+=(rsync)
command -v cmp >/dev/null || need+=(diffutils)
command -v tar >/dev/null || need+=(tar)
command -v curl >/dev/null || need+=(curl)
command -v strace >/dev/null || need+=(strace)
command -v vim >/dev/null || command -v vim.tiny >/dev/null || need+=(vim-tiny)
command -v restic >/dev/null || need+=(restic)
command -v clang++ >/dev/null || need+=(clang)
command -v cmake >/dev/null || need+=(cmake)
command -v python3 >/dev/null || need+=(python3 python3-pip)
# fusermount3 (setuid root) for the unprivileged mount of tests/system.rs
command -v fusermount3 >/dev/null || need+=(fuse3)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! python3 -c 'import plyvel' 2>/dev/null; then
    say "installing plyvel (pip)"
    python3 -m pip install -q plyvel 2>/dev/null ||
        python3 -m pip install -q --break-system-packages plyvel
fi
scripts/ceph-cluster.sh install

# fsx for tests/fsx.rs, pinned: a seed's operation sequence depends on the version.
FSX_VERSION=0.3.2
fsx_bin="${CARGO_HOME:-$HOME/.cargo}/bin/fsx"
if [ "$("$fsx_bin" --version 2>/dev/null)" != "fsx $FSX_VERSION" ]; then
    say "installing fsx $FSX_VERSION (cargo install)"
    cargo install fsx --version "$FSX_VERSION" --locked
fi
export FSX="$fsx_bin"

# cargo-deb for the package test of tests/system.rs (it builds the .deb from the debug binary).
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
    say "installing cargo-deb $CARGO_DEB_VERSION (cargo install)"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# 2. Formatting and lints: cheap, and they fail fast.
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --all-targets --all-features -- -D warnings
say "cargo clippy --no-default-features (the LevelDB-only build)"
cargo clippy --all-targets --no-default-features -- -D warnings

# 3. Two throwaway Ceph clusters, started in parallel and always stopped on exit: the single-node
# one for the Ceph suites, with a ceph-mgr for the pool quotas of tests/ceph_clients.rs (34 MB,
# no longer start), and the fault cluster (3 OSDs, pools of size 3 / min_size 2, cephx)
# that tests/ceph_faults.rs kills, freezes and restarts.
cluster=$(mktemp -d /tmp/cloudstore-ceph.XXXXXX)
fault_cluster=$(mktemp -d /tmp/cloudstore-ceph-fault.XXXXXX)
stop_clusters() {
    # a start still under way would leave daemons behind: let it finish (or fail) first
    if [ -n "${fault_pid:-}" ]; then wait "$fault_pid" 2>/dev/null || true; fi
    scripts/ceph-cluster.sh stop "$cluster" || true
    scripts/ceph-cluster.sh stop "$fault_cluster" || true
    rm -rf "$cluster" "$fault_cluster" "$fault_cluster.out"
}
trap stop_clusters EXIT
say "starting a Ceph cluster in $cluster and a 3-OSD cephx cluster in $fault_cluster"
scripts/ceph-cluster.sh start "$fault_cluster" --osds 3 --cephx >"$fault_cluster.out" 2>&1 &
fault_pid=$!
conf=$(scripts/ceph-cluster.sh start "$cluster" --mgr | tail -n 1)
if ! wait "$fault_pid"; then
    cat "$fault_cluster.out" >&2
    rm -f "$fault_cluster.out"
    say "the 3-OSD Ceph cluster did not start"
    exit 1
fi
rm -f "$fault_cluster.out"
export CLOUDSTORE_TEST_CEPH_CONF="$conf"
export CLOUDSTORE_TEST_CEPH_POOL="${CEPH_POOL:-cloudstore-test}"
# The fault cluster: its directory (the tests drive scripts/ceph-cluster.sh with it), the admin
# conf, and the restricted client's conf (its keyring is named inside).
export CLOUDSTORE_TEST_CEPH_FAULT_DIR="$fault_cluster"
export CLOUDSTORE_TEST_CEPH_FAULT_CONF="$fault_cluster/ceph.conf"
export CLOUDSTORE_TEST_CEPH_FAULT_LIMITED_CONF="$fault_cluster/limited.conf"

# 4. All the tests, every backend. The property tests (fs_model, store_model) draw their cases
# from a fixed seed under CI, so that a CI run repeats; elsewhere every run draws new ones (they
# print the failing sequence; PROPTEST_RNG_SEED=N repeats a run, PROPTEST_CASES=N sets its size).
if [ "${CI:-}" = true ] && [ -z "${PROPTEST_RNG_SEED:-}" ]; then
    export PROPTEST_RNG_SEED=20261206
fi
say "proptest seed: ${PROPTEST_RNG_SEED:-random}"
shift_args=()
if [ "${1:-}" = "--" ]; then
    shift
    shift_args=("$@")
fi
say "cargo test --all-features (Ceph conf: $conf)"
log="$cluster/cargo-test.log"
status=0
# --no-fail-fast: every test binary runs, so that the total below counts them all.
cargo test --all-features --no-fail-fast "${shift_args[@]}" 2>&1 | tee "$log" || status=$?
# 5. The tests that touch global kernel state, alone (no other test binary runs now) and one at
# a time; Cargo.toml leaves them out of the run above (`test = false`).
say "cargo test --all-features --test serial, one thread"
RUST_TEST_THREADS=1 cargo test --all-features --no-fail-fast --test serial "${shift_args[@]}" 2>&1 | tee -a "$log" \
    || status=$?
# One closing line for both runs (cargo prints one per test binary, the last often doc-tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

#!/usr/bin/env bash
# Runs every test of cloudstore-fs on this machine, installing what the tests need first:
# Debian packages (Ceph daemons, librados, clang, cmake, rsync, strace), plyvel, fsx (the file
# system exerciser, from crates.io), a throwaway single-node Ceph cluster (stopped again on exit,
# even when tests fail), then formatting, lints and `cargo test --all-features`, then the tests
# that touch global kernel state (tests/serial.rs: drop_caches) alone, with one thread.
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
# the tools the tests drive (rsync, cmp, tar, strace) and plyvel (C++ LevelDB for Python) for
# the interop tests.
need=()
command -v rsync >/dev/null || need+=(rsync)
command -v cmp >/dev/null || need+=(diffutils)
command -v tar >/dev/null || need+=(tar)
command -v strace >/dev/null || need+=(strace)
command -v clang++ >/dev/null || need+=(clang)
command -v cmake >/dev/null || need+=(cmake)
command -v python3 >/dev/null || need+=(python3 python3-pip)
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

# 2. Formatting and lints: cheap, and they fail fast.
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --all-targets --all-features -- -D warnings
say "cargo clippy --no-default-features (the LevelDB-only build)"
cargo clippy --all-targets --no-default-features -- -D warnings

# 3. A throwaway Ceph cluster for the Ceph suites; always stopped on exit.
cluster=$(mktemp -d /tmp/cloudstore-ceph.XXXXXX)
stop_cluster() {
    scripts/ceph-cluster.sh stop "$cluster" || true
    rm -rf "$cluster"
}
trap stop_cluster EXIT
say "starting a Ceph cluster in $cluster"
conf=$(scripts/ceph-cluster.sh start "$cluster" | tail -n 1)
export CLOUDSTORE_TEST_CEPH_CONF="$conf"
export CLOUDSTORE_TEST_CEPH_POOL="${CEPH_POOL:-cloudstore-test}"

# 4. All the tests, every backend.
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

#!/bin/sh
# Builds cloudstore-fs in release mode and mounts the LevelDB store in the background.
#
#   ./mount.sh [DATA_DIR [MOUNTPOINT]]
#
# Defaults: data in ./cloudstore-data, mounted at ./mnt (also settable through the environment:
# CLOUDSTORE_DATA_DIR, CLOUDSTORE_MOUNTPOINT; the daemon's log goes to CLOUDSTORE_FS_LOG, by
# default a file in /run/cloudstore-fs named after the mountpoint). Mounting needs root.
set -eu

data=${1:-${CLOUDSTORE_DATA_DIR:-./cloudstore-data}}
mnt=${2:-${CLOUDSTORE_MOUNTPOINT:-./mnt}}

if [ "$(id -u)" != 0 ]; then
    echo "mount.sh: mounting needs root: sudo $0 $*" >&2
    exit 1
fi
# rustup's cargo may be missing from a non-login (or sudo) shell's PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    . "$HOME/.cargo/env"
fi

# Build dependencies: clang and cmake for the bundled C++ LevelDB, librados-dev for Ceph.
need=""
command -v clang++ >/dev/null 2>&1 || need="$need clang"
command -v cmake >/dev/null 2>&1 || need="$need cmake"
[ -e /usr/include/rados/librados.h ] || need="$need librados-dev"
if [ -n "$need" ]; then
    echo "mount.sh: installing build dependencies:$need" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# Paths are relative to where mount.sh is run from; the build happens in the repository.
mkdir -p "$data" "$mnt"
data=$(cd "$data" && pwd)
mnt=$(cd "$mnt" && pwd)
repo=$(cd "$(dirname "$0")" && pwd)
(cd "$repo" && cargo build --release --quiet)
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$repo/$target ;; esac
bin=$target/release/cloudstore-fs

"$bin" mount --data-dir "$data" --daemon "$mnt"
echo "mount.sh: the LevelDB store in $data is mounted at $mnt. Try:"
echo "    cp /etc/hostname $mnt/0001 && ls -l $mnt && cat $mnt/0001"
echo "Unmount with:"
echo "    $bin unmount $mnt"

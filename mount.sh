#!/bin/sh
# Builds cloudstore-fs in release mode and mounts the LevelDB store in the background.
#
#   ./mount.sh [DATA_DIR [MOUNTPOINT]]
#
# Defaults: data in ./cloudstore-data, mounted at ./mnt (also settable through the environment:
# CLOUDSTORE_DATA_DIR, CLOUDSTORE_MOUNTPOINT; the daemon's log goes to CLOUDSTORE_FS_LOG, by
# default a file in /tmp named after the mountpoint). Mounting needs root.
set -eu
cd "$(dirname "$0")"

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

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/cloudstore-fs

mkdir -p "$data" "$mnt"
"$bin" mount --data-dir "$data" --daemon "$mnt"
echo "mount.sh: $(cd "$data" && pwd) is mounted at $(cd "$mnt" && pwd). Try:"
echo "    cp /etc/hostname $mnt/0001 && ls -l $mnt && cat $mnt/0001"
echo "Unmount with:"
echo "    $bin unmount $mnt"

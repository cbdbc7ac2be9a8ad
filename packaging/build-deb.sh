#!/usr/bin/env bash
# Builds the Debian package: the release binary, its man page and shell completions (generated
# from the clap definition by the binary itself), then `cargo deb --no-build` with the metadata
# in Cargo.toml. The .deb lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --all-features
bin=target/release/cloudstore-fs
assets=target/assets
mkdir -p "$assets"
"$bin" man | gzip -9n > "$assets/cloudstore-fs.1.gz"
"$bin" completions bash > "$assets/cloudstore-fs.bash"
"$bin" completions zsh > "$assets/_cloudstore-fs"
"$bin" completions fish > "$assets/cloudstore-fs.fish"
cargo deb --no-build "$@"

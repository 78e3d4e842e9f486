#!/bin/sh
# Builds protector for Linux (one static binary for every x86_64 distribution) and Windows,
# and puts both where the protector formula expects them: FILE_ROOT/protector/files/.
# The successor of the original "copy the binaries to Salt's file server" script.
#
#   examples/salt/publish.sh [--linux-only] [FILE_ROOT]      (FILE_ROOT defaults to /srv/salt)
#
# The Linux binary must be static (x86_64-unknown-linux-musl): a binary linked against this
# machine's glibc would not start on older distributions, and the formula pushes it to every
# minion. When the musl target cannot be installed this fails; it never publishes another build.
set -eu
linux_only=no
if [ "${1:-}" = "--linux-only" ]; then linux_only=yes; shift; fi
root=${1:-/srv/salt}
cd "$(dirname "$0")/../.."
dest="$root/protector/files"

if ! rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1; then
    echo "publish.sh: cannot install the Rust target x86_64-unknown-linux-musl (rustup target add x86_64-unknown-linux-musl); nothing published" >&2
    exit 1
fi
cargo build --release --target x86_64-unknown-linux-musl
bin=target/x86_64-unknown-linux-musl/release/protector
if readelf -l "$bin" | grep -q 'INTERP'; then
    echo "publish.sh: $bin asks for a dynamic loader: it is not static; nothing published" >&2
    exit 1
fi
mkdir -p "$dest"
install -m 755 "$bin" "$dest/protector"
echo "published $dest/protector (static, x86_64-unknown-linux-musl)"

if [ "$linux_only" = yes ]; then exit 0; fi
if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 &&
    rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1; then
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
        cargo build --release --target x86_64-pc-windows-gnu
    install -m 644 target/x86_64-pc-windows-gnu/release/protector.exe "$dest/protector.exe"
    echo "published $dest/protector.exe"
else
    echo "SKIPPED: Windows build: needs mingw-w64 (apt-get install gcc-mingw-w64-x86-64) and the Rust target x86_64-pc-windows-gnu"
fi

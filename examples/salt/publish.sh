#!/bin/sh
# Builds protector for Linux (one static binary for every x86_64 distribution, one for every
# aarch64 one) and Windows (10 / Server 2016 and later; and 7 / 2008 R2 / 2012 R2), and puts
# them where the protector formula expects them:
# FILE_ROOT/protector/files/{protector,protector-aarch64,protector.exe,protector-win7.exe}.
# The successor of the original "copy the binaries to Salt's file server" script.
#
#   examples/salt/publish.sh [--linux-only] [FILE_ROOT]      (FILE_ROOT defaults to /srv/salt)
#
# The binaries are built, checked to be static and smoke-tested by .ci/dist (the release
# build; see the README's Install section). The Linux binaries must be static (musl): a binary
# linked against this machine's glibc would not start on older distributions, and the formula
# pushes it to every minion. When they cannot be built this fails; it never publishes another build.
set -eu
linux_only=
if [ "${1:-}" = "--linux-only" ]; then linux_only=--linux-only; shift; fi
root=${1:-/srv/salt}
cd "$(dirname "$0")/../.."
dest="$root/protector/files"
out=target/publish
version=$(.ci/version)

.ci/dist --binaries-only $linux_only "$out"
mkdir -p "$dest"
install -m 755 "$out/protector-$version-x86_64-unknown-linux-musl" "$dest/protector"
install -m 755 "$out/protector-$version-aarch64-unknown-linux-musl" "$dest/protector-aarch64"
echo "published $dest/protector and $dest/protector-aarch64 (static, x86_64 and aarch64 musl)"
if [ -f "$out/protector-$version-x86_64-pc-windows-gnu.exe" ]; then
    install -m 644 "$out/protector-$version-x86_64-pc-windows-gnu.exe" "$dest/protector.exe"
    echo "published $dest/protector.exe"
fi
# Windows 7 / Server 2008 R2 / 2012 R2: the formula gives it to minions older than Windows 10.
if [ -f "$out/protector-$version-x86_64-win7-windows-gnu.exe" ]; then
    install -m 644 "$out/protector-$version-x86_64-win7-windows-gnu.exe" "$dest/protector-win7.exe"
    echo "published $dest/protector-win7.exe"
fi

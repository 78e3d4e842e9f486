#!/bin/sh
# Builds protector for Linux (one static binary for every x86_64 distribution, one for every
# aarch64 one) and Windows (10 / Server 2016 and later; and 7 / 2008 R2 / 2012 R2), and puts
# them where the protector formula expects them:
# FILE_ROOT/protector/files/{protector,protector-aarch64,protector.exe,protector-win7.exe}.
# The successor of the original "copy the binaries to Salt's file server" script.
#
#   examples/salt/publish.sh [--linux-only] [FILE_ROOT]      (FILE_ROOT defaults to /srv/salt)
#   examples/salt/publish.sh --from RELEASE_DIR [FILE_ROOT]
#
# The binaries are built, checked to be static and smoke-tested by .ci/dist (the release
# build; see the README's Install section). The Linux binaries must be static (musl): a binary
# linked against this machine's glibc would not start on older distributions, and the formula
# pushes it to every minion. When they cannot be built this fails; it never publishes another build.
# With --from, nothing is built (no Rust toolchain needed): the files of a release (what
# .ci/dist leaves in dist/, SHA256SUMS included) are checked against its SHA256SUMS and
# published; a file that does not match, or a release without the x86_64 Linux binary, fails.
set -eu
linux_only=
from=
case "${1:-}" in
--linux-only) linux_only=--linux-only; shift ;;
--from) from=${2:?--from needs a directory}; shift 2 ;;
esac
root=${1:-/srv/salt}
dest="$root/protector/files"
if [ -n "$from" ]; then
    out=$(cd "$from" && pwd)
    linux=$(cd "$out" && ls protector-*-x86_64-unknown-linux-musl 2>/dev/null || true)
    [ "$(echo "$linux" | wc -w)" = 1 ] || { echo "publish.sh: $out holds no single protector-VERSION-x86_64-unknown-linux-musl" >&2; exit 1; }
    version=${linux#protector-}
    version=${version%-x86_64-unknown-linux-musl}
    grep -q " $linux\$" "$out/SHA256SUMS" || { echo "publish.sh: $out/SHA256SUMS does not list $linux" >&2; exit 1; }
    (cd "$out" && sha256sum --quiet --ignore-missing -c SHA256SUMS) || { echo "publish.sh: files in $out do not match its SHA256SUMS" >&2; exit 1; }
else
    cd "$(dirname "$0")/../.."
    out=target/publish
    version=$(.ci/version)
    .ci/dist --binaries-only $linux_only "$out"
fi
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

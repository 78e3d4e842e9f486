# Sourced by .ci/windows and .ci/windows7: mingw-w64 and Wine from Debian's packages when
# missing, and wine_prefix DIR to make (once) a headless Wine prefix there and use it.
WINE=/usr/lib/wine/wine64

need=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
command -v x86_64-w64-mingw32-objdump >/dev/null 2>&1 || need+=(binutils-mingw-w64-x86-64)
[ -x "$WINE" ] || need+=(wine wine64)
if [ ${#need[@]} -gt 0 ]; then
    echo "wine setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT

# wine_prefix DIR: the prefix Wine uses from now on, made at DIR if it is not there yet.
wine_prefix() {
    export WINEPREFIX=$1
    mkdir -p "$(dirname "$WINEPREFIX")"
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
        "$WINE" wineboot --init >/dev/null 2>&1 || true
        wineserver -w
    fi
}

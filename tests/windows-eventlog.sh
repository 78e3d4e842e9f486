#!/usr/bin/env bash
# protector.exe's records in the Windows Event Log have the type of their level: error,
# warning, information; debug records are not written there. Wine keeps no Event Log, but its
# ReportEventW says each record on its debug channel `eventlog` at the level of the record's
# type (err: error, warn: warning, trace: information), which is what this reads.
#
#   tests/windows-eventlog.sh [PROTECTOR_EXE]
# Run by .ci/windows, after the build (default: the debug build of x86_64-pc-windows-gnu), in
# its Wine prefix, with --event-log and -v.
set -euo pipefail
cd "$(dirname "$0")/.."
EXE=$(realpath "${1:-target/x86_64-pc-windows-gnu/debug/protector.exe}")
source .ci/wine/setup.sh
wine_prefix "$PWD/target/wine-prefix"
T=$(mktemp -d)
pid=
# (Each step may fail without failing the script: the protector is usually gone already.)
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; wineserver -k >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
say() { printf '[eventlog %s] %s\n' "$(date +%T)" "$*"; }
fail() {
    say "FAIL: $*"
    tail -n 40 "$T/err" || true
    exit 1
}

# Two targets: `stale` never gets a heartbeat and its commands fail; `fresh` gets one every
# 0.3 s from here (each one seen is a debug record).
cat >"$T/protector.yaml" <<'YAML'
targets:
  - name: stale
    heartbeat: 'C:\nowhere\alive'
    timeout: 1s
    shell: true
    stop: cmd /c exit 3
    start: cmd /c exit 4
  - name: fresh
    heartbeat: fresh.beat
    timeout: 2s
    start: [cmd, /c, exit, '0']
YAML
(cd "$T" && WINEDEBUG=err+eventlog,warn+eventlog,trace+eventlog \
    exec "$WINE" "$EXE" -v --event-log --config protector.yaml >"$T/out" 2>"$T/err") &
pid=$!
(while kill -0 "$pid" 2>/dev/null; do date >>"$T/fresh.beat"; sleep 0.3; done) &
# What ReportEventW was given, by type.
reported() { grep -a ":$1:eventlog:ReportEventW " "$T/err" || true; }
end=$((SECONDS + 120))
until reported err | grep -q 'event=\\"restart_failed\\"' && grep -aq ' DEBUG ' "$T/err"; do
    [ $SECONDS -lt $end ] || fail "no restart_failed record in the Event Log, or no debug record, within 120 s"
    kill -0 "$pid" 2>/dev/null || fail "protector.exe exited"
    sleep 0.5
done
kill "$pid"

reported trace | grep -q 'protector is running event=\\"started\\"' ||
    fail "started is not an information record"
reported warn | grep -q 'heartbeat is stale; restarting target=stale event=\\"stale\\"' ||
    fail "stale is not a warning record"
reported err | grep -q 'restart failed: the start command ended with exit code: 4 target=stale' ||
    fail "restart_failed is not an error record"
! reported warn | grep -q 'event=\\"restart_failed\\"' ||
    fail "restart_failed was also written as a warning"
# -v: debug records reach stderr, never the Event Log.
grep -aq 'DEBUG' "$T/err" || fail "no debug record on stderr with -v: nothing to compare"
debug_events=$(grep -a ' DEBUG ' "$T/err" | grep -o 'event="[a-z_]*"' | sort -u)
for ev in $debug_events; do
    esc=${ev//\"/\\\\\"}
    ! reported '[a-z]*' | grep -q "$esc" || fail "debug record $ev was written to the Event Log"
done
# No time and no level of protector's own: the Event Log has both.
! reported '[a-z]*' | grep -qE 'L"[0-9]{4}-[0-9]{2}-[0-9]{2}T|L"(INFO|WARN|ERROR) ' ||
    fail "a record carries protector's own time or level"
say "PASS: information, warning and error records typed by level; debug ($(wc -w <<<"$debug_events") kinds) not written"

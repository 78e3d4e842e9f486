#!/usr/bin/env bash
# A fleet of N minions on one machine (not part of .ci/run: it takes about an hour):
#
#   tests/fleet-scale.sh [N]        (N = 100 by default; fewer when memory or cores are short)
#
# N Debian minions, each booted with systemd-nspawn (systemd as PID 1, Salt's salt-minion
# unit), all overlays of one read-only root, against one real salt-master on 127.0.0.1, with
# the protector formula applied with its defaults. Like tests/salt-e2e.sh it changes only the
# master's address and ports and scales the timings down (timeout 120 s, heartbeat every 30 s,
# restart_splay 72 s: the formula's ratios), so a scenario takes minutes; and, because a
# hundred minions share 2 cores here, each minion runs its jobs in threads
# (`multiprocessing: False`) instead of forking a process for each: with the default, the
# heartbeats alone kept both cores busy, beats came late and minions were restarted for it
# (that cost is the minion's own, on its own machine in a real fleet). It reports:
#   1. steady state for 3 timeouts: restarts (want 0);
#   2. the master stopped for 3 timeouts: restarts (want 0), protectors holding;
#   3. the master back: restarts (want 0), time until every protector watches again; then a
#      master restart (new process, same keys): restarts (want 0);
#   4. 10% of the minions frozen (SIGSTOP) with the master up: exactly those restarted; time
#      from the freeze to answering test.ping again, p50/p99/max;
#   5. `salt '*' protector.status`: time to answer, minions accounted for;
#   6. what one heartbeat costs the master at this N: CPU, memory, job-cache files and bytes,
#      events on the bus; then the same with a beat that returns its result added, for
#      comparison (what the quiet beats save); then the master without beats (the fleet
#      paused, the reactor not acting), so what a beat adds can be told from its own cost,
#      and a quiet beat published to every minion and to one, so what of it grows with N can
#      be told from what does not.
# Needs root. Cleans up every process, mount and cgroup it made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SAY_AS=fleet
source tests/salt/lib.sh
KIT=$ROOT/examples/salt
FORMULA=$KIT/protector-formula
TIMEOUT=120
PERIOD=30
SPLAY=72

[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn, overlay mounts)"
WANT=${1:-100}
# A booted minion (systemd, journald, salt-minion and its keepalive parent, protector) is
# counted at 120 MiB (80 measured, the run prints it); 3 GiB are kept for the master and the
# machine.
mem_avail() { awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo; }
avail_mib=$(mem_avail)
fit=$(((avail_mib - 3072) / 120))
N=$WANT
if [ "$fit" -lt "$N" ]; then
    N=$fit
    say "memory: ${avail_mib} MiB available, room for $N minions of 120 MiB: using $N, not $WANT"
fi
# And 15 minions a core: 100 Salt 3008 minions on 2 cores kept both busy (load above 200)
# with nothing but their start and authentication, and never all answered test.ping.
cores=$(nproc)
if [ "$N" -gt $((15 * cores)) ]; then
    N=$((15 * cores))
    say "CPU: $cores cores, about 15 minions a core: using $N, not $WANT"
fi
[ "$N" -ge 10 ] || fail "room for only $N minions"
MINIONS=()
for i in $(seq -w 1 "$N"); do MINIONS+=("f$i"); done

apt_get systemd-container debootstrap binutils
salt_venv
minion_root
export PATH="$VENV/bin:$PATH"
T=$(mktemp -d /tmp/pfleet.XXXXXX)
M=$T/master
mkdir -p "$M/etc/master.d" "$T/files" "$T/pillar"
# Each container's systemd and journald take inotify instances and kernel keys: the default
# limits (128 instances a user, 200 keys) stop the 23rd container's boot. Raised for the run,
# restored after.
declare -A SYSCTL_WAS=()
for kv in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 \
    kernel.keys.maxkeys=20000 kernel.keys.maxbytes=2000000; do
    SYSCTL_WAS[${kv%%=*}]=$(sysctl -n "${kv%%=*}")
    sysctl -q -w "$kv"
done
cleanup() {
    local status=$?
    set +e
    [ -n "${EVENTS_PID:-}" ] && kill "$EVENTS_PID" 2>/dev/null
    [ -n "${MASTER_SID:-}" ] && [ "$MASTER_SID" -gt 1 ] && pkill -KILL -s "$MASTER_SID" 2>/dev/null
    pkill -KILL -f "salt-master -c $M/etc" 2>/dev/null
    cleanup_minions
    for k in "${!SYSCTL_WAS[@]}"; do sysctl -q -w "$k=${SYSCTL_WAS[$k]}"; done
    [ -n "${KEEP:-}" ] || rm -rf "$T"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say "publishing protector to the master's file server"
"$KIT/publish.sh" --linux-only "$T/files" >"$T/publish.log" 2>&1 || { tail -n 20 "$T/publish.log"; fail "publish.sh failed"; }

PUB=$(free_port)
RET=$(free_port)
while [ "$RET" = "$PUB" ]; do RET=$(free_port); done
# The kit is a file root, for its reactor (salt://reactor/protector-heartbeat.sls).
MASTER_WORKERS=4 MASTER_GATHER_TIMEOUT=10 master_config "$M" "$PUB" "$RET" "$T/pillar" "$FORMULA" "$T/files" "$KIT"
# The kit's heartbeat schedule and reactor, the period scaled down (the beats fail harmlessly
# on minions until the formula has synced protector.beat to them).
sed -e "s/seconds: 60/seconds: $PERIOD/" "$KIT/master.d/protector-heartbeat.conf" >"$M/etc/master.d/protector-heartbeat.conf"
printf "base:\n  '*':\n    - protector\n" >"$T/pillar/top.sls"
printf 'protector:\n  salt_minion:\n    timeout: %ss\n    restart_splay: %ss\n' "$TIMEOUT" "$SPLAY" >"$T/pillar/protector.sls"

say "starting salt-master on 127.0.0.1 (ports $PUB/$RET)"
start_master "$M"

t0=$SECONDS
mem0=$(mem_avail)
for m in "${MINIONS[@]}"; do
    REAUTH_DELAY=5 minion_config "$(minion_dir "$m")/upper/etc/salt/minion.d/fleet.conf" "$m" "$PUB" "$RET"
    echo "multiprocessing: False" >>"$(minion_dir "$m")/upper/etc/salt/minion.d/fleet.conf"
    boot_minion "$m"
done
say "booted $N minions in $((SECONDS - t0)) s, $(((mem0 - $(mem_avail)) / N)) MiB of memory each"
count_true() { grep -c ': True' || true; }
pinged() { salt -c "$M/etc" --timeout 30 '*' test.ping --out=txt 2>/dev/null | count_true; }
all_ping() { [ "$(pinged)" = "$N" ]; }
wait_for 600 "all $N minions to answer test.ping" all_ping

say "salt -b 10 '*' state.apply protector"
t0=$SECONDS
salt -c "$M/etc" --timeout 600 -b 10 '*' state.apply protector --out=txt >"$T/apply.out" 2>&1 ||
    { tail -n 40 "$T/apply.out"; fail "state.apply protector failed"; }
say "applied on $N minions in $((SECONDS - t0)) s"

# What every minion's protector says, asked on the minion: "STATE RESTARTS" of its target.
# (status exits 1 while a target is not watching normally: that is data here, not a failure;
# a state of two words becomes one, `backing_off`, so the count stays the third field.)
local_state() {
    { in_minion "$1" protector status --json 2>/dev/null || true; } |
        "$VENV/bin/python" -c 'import json,sys; t=json.load(sys.stdin)["targets"][0]; print(t["state"].replace(" ", "_"), t["restarts_total"])' 2>/dev/null ||
        echo "unknown -"
}
states() { for m in "${MINIONS[@]}"; do echo "$m $(local_state "$m")"; done; }
count_state() { states | awk -v s="$1" '$2 == s' | wc -l; }
total_restarts() { states | awk '{ n += $3 } END { print n + 0 }'; }
fresh_everywhere() { [ "$(count_state watching)" = "$N" ]; }
wait_for $((4 * TIMEOUT)) "every protector to watch a fresh heartbeat" fresh_everywhere
RESULTS=()
# Each result is said as it comes, so a run that fails later still leaves its numbers.
result() { RESULTS+=("$1"); say "result: $1"; }
sleep_until() { local end=$((SECONDS + $1)); while [ $SECONDS -lt $end ]; do sleep 1; done; }

# --- the cost of a heartbeat at this N --------------------------------------------------------
cpu_ticks() { # user+system ticks of every process of the master's session
    local p t=0 s
    for p in $(pgrep -s "$MASTER_SID"); do
        s=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + ${s% *} + ${s#* }))
    done
    echo "$t"
}
rss_kib() { local p t=0 r; for p in $(pgrep -s "$MASTER_SID"); do r=$(awk '/^Rss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || continue; t=$((t + ${r:-0})); done; echo "$t"; }
jobs_files() { find "$M/cache/jobs" -type f 2>/dev/null | wc -l; }
jobs_bytes() { du -sb "$M/cache/jobs" 2>/dev/null | cut -f1; }
jobs_disk() { du -sk "$M/cache/jobs" 2>/dev/null | cut -f1; }
salt-run -c "$M/etc" state.event count=-1 >"$T/bus.txt" 2>/dev/null &
EVENTS_PID=$!
WINDOW=$((3 * TIMEOUT))
hz=$(getconf CLK_TCK)
# measure SECONDS LABEL [COMMAND...]: the master's CPU, job cache and bus over SECONDS, while
# COMMAND (if any) runs every period; prints one line of numbers per beat and per minion.
measure() {
    local secs=$1 label=$2 c0 f0 b0 e0 w0 c1 f1 b1 e1 w1 next
    shift 2
    c0=$(cpu_ticks) f0=$(jobs_files) b0=$(jobs_disk) e0=$(wc -l <"$T/bus.txt") w0=$SECONDS
    next=$SECONDS
    while [ $SECONDS -lt $((w0 + secs)) ]; do
        if [ $# -gt 0 ] && [ $SECONDS -ge $next ]; then
            "$@" >/dev/null 2>&1 || true
            next=$((next + PERIOD))
        fi
        sleep 1
    done
    c1=$(cpu_ticks) f1=$(jobs_files) b1=$(jobs_disk) e1=$(wc -l <"$T/bus.txt") w1=$SECONDS
    awk -v c=$((c1 - c0)) -v hz="$hz" -v w=$((w1 - w0)) -v p="$PERIOD" -v n="$N" -v f=$((f1 - f0)) \
        -v k=$((b1 - b0)) -v e=$((e1 - e0)) -v label="$label" 'BEGIN {
        cpu = c / hz; beats = w / p
        printf "%s: master CPU %.2f%% of a core (%.1f ms a beat, %.2f ms a beat a minion); job cache +%.1f files, +%.1f KiB on disk a beat; %.1f events on the bus a beat", label, 100 * cpu / w, 1000 * cpu / beats, 1000 * cpu / (beats * n), f / beats, k / beats, e / beats
    }'
}
say "scenario 1: steady state for $WINDOW s (3 timeouts), measuring the master"
r0=$(total_restarts)
quiet=$(measure "$WINDOW" "the kit's beats (quiet, not waited for)")
rss=$(rss_kib)
r1=$(total_restarts)
[ "$r1" = "$r0" ] || fail "steady state: $((r1 - r0)) restarts"
result "1 steady state, $WINDOW s, $N minions: $((r1 - r0)) restarts"
result "6a one heartbeat every $PERIOD s at N = $N, $quiet; master RSS $((rss / 1024)) MiB"
# For comparison, what the beats would cost if every minion returned its result to the job
# cache (the kit's schedule before quiet beats): the same window with such a beat added.
say "scenario 6b: the same, plus a beat with returns (salt --async '*' protector.beat) every $PERIOD s"
loud=$(measure "$WINDOW" "plus a beat with returns" salt -c "$M/etc" --async '*' protector.beat)
result "6b $loud"
r_pause=$(total_restarts)
# The master's own cost, without beats, to tell what a beat adds to it: the fleet paused (as
# for master maintenance, so no protector restarts a minion for the missing beats) and the
# reactor told to act on nothing (its schedule's event still comes; no beat is published).
say "scenario 6c: the fleet paused, the reactor not acting: the master without beats"
salt -c "$M/etc" --timeout 60 '*' protector.pause salt-minion for=30m --out=txt >"$T/pause.out" 2>&1 ||
    { tail -n 20 "$T/pause.out"; fail "protector.pause across the fleet failed"; }
salt-run -c "$M/etc" reactor.set_leader False >/dev/null || fail "cannot pause the reactor"
SUB=$((WINDOW / 2))
idle=$(measure "$SUB" "no beats (the fleet paused, the reactor not acting)")
# What of a quiet beat's publish grows with N: the same publish to every minion, then to one.
first=${MINIONS[0]}
to_all=$(measure "$SUB" "a quiet beat published to all $N minions (salt --async)" salt -c "$M/etc" --async '*' protector.beat quiet=True)
to_one=$(measure "$SUB" "a quiet beat published to 1 minion (salt --async)" salt -c "$M/etc" --async "$first" protector.beat quiet=True)
t_lead=$(date +%s)
salt-run -c "$M/etc" reactor.set_leader True >/dev/null || fail "cannot resume the reactor"
# Resumed with a stale heartbeat, a protector would restart its minion: resume after a beat.
beaten_since() {
    local m
    for m in "${MINIONS[@]}"; do
        [ "$(in_minion "$m" stat -c %Y /run/protector/salt-minion.alive 2>/dev/null || echo 0)" -ge "$1" ] || return 1
    done
}
wait_for $((3 * PERIOD)) "a beat on every minion after the reactor resumed" beaten_since "$t_lead"
salt -c "$M/etc" --timeout 60 '*' protector.resume salt-minion --out=txt >"$T/resume.out" 2>&1 ||
    { tail -n 20 "$T/resume.out"; fail "protector.resume across the fleet failed"; }
wait_for $((2 * TIMEOUT)) "every protector to watch a fresh heartbeat after the pause" fresh_everywhere
result "6c $idle"
result "6d $to_all"
result "6e $to_one"
r1=$(total_restarts)
result "6 the fleet paused $((SUB * 3)) s without beats, then resumed: $((r1 - r_pause)) restarts"
[ "$r1" = "$r_pause" ] || fail "the fleet paused, then resumed: $((r1 - r_pause)) restarts"

# --- 2. the master down for 3 timeouts ----------------------------------------------------------
say "scenario 2: salt-master stopped for $WINDOW s"
kill "$EVENTS_PID" 2>/dev/null || true
EVENTS_PID=
declare -A MAIN=()
minion_main() { in_minion "$1" systemctl show salt-minion -p MainPID --value; }
for m in "${MINIONS[@]}"; do MAIN[$m]=$(minion_main "$m"); done
t_down=$SECONDS
stop_master "$M"
all_held() { [ "$(count_state held)" = "$N" ]; }
wait_for $((WINDOW + 60)) "every protector to hold its salt-minion" all_held
held_after=$((SECONDS - t_down))
sleep_until $((t_down + WINDOW - SECONDS))
r2=$(total_restarts)
same_main=0
for m in "${MINIONS[@]}"; do [ "$(minion_main "$m")" = "${MAIN[$m]}" ] && same_main=$((same_main + 1)); done
result "2 master down $WINDOW s: every protector holding after $held_after s, $((r2 - r1)) restarts, $same_main of $N salt-minions the same process"
[ "$r2" = "$r1" ] || fail "master down: $((r2 - r1)) restarts"

# --- 3. the master back, then restarted -------------------------------------------------------
say "scenario 3: salt-master started again"
t_up=$SECONDS
start_master "$M"
wait_for 900 "all $N minions to answer test.ping after the master's return" all_ping
pinged_after=$((SECONDS - t_up))
wait_for $((4 * TIMEOUT)) "every protector to watch again" fresh_everywhere
watching_after=$((SECONDS - t_up))
r3=$(total_restarts)
result "3 master back: all $N answering test.ping after $pinged_after s, every protector watching (heartbeat fresh) after $watching_after s, $((r3 - r2)) restarts"
[ "$r3" = "$r2" ] || fail "master back: $((r3 - r2)) restarts"
say "scenario 3b: the master restarted (new process, same keys)"
t_re=$SECONDS
stop_master "$M"
start_master "$M"
wait_for 900 "all $N minions to answer test.ping after the master's restart" all_ping
answered_after=$((SECONDS - t_re))
# Two timeouts more: a restart caused by the master's restart would come within them.
sleep_until $((2 * TIMEOUT))
wait_for $((4 * TIMEOUT)) "every protector to watch" fresh_everywhere
r4=$(total_restarts)
result "3 master restarted: all answering test.ping after $answered_after s, $((r4 - r3)) restarts in the $((SECONDS - t_re)) s after"
[ "$r4" = "$r3" ] || fail "master restart: $((r4 - r3)) restarts"

# --- 4. 10% frozen ------------------------------------------------------------------------------
FROZEN=()
for ((i = 0; i < N; i += 10)); do FROZEN+=("${MINIONS[$i]}"); done
say "scenario 4: ${#FROZEN[@]} minions frozen (SIGSTOP): ${FROZEN[*]}"
declare -A FROZE_AT=() BACK=()
for m in "${FROZEN[@]}"; do MAIN[$m]=$(minion_main "$m"); in_minion "$m" pkill -STOP -f bin/salt-minion; FROZE_AT[$m]=$(date +%s.%N); done
answering() { salt -c "$M/etc" --timeout 10 "$1" test.ping --out=txt 2>/dev/null | grep -q ': True'; }
all_back() {
    local m now
    for m in "${FROZEN[@]}"; do
        [ -z "${BACK[$m]:-}" ] || continue
        now=$(minion_main "$m")
        [ -n "$now" ] && [ "$now" != 0 ] && [ "$now" != "${MAIN[$m]}" ] && answering "$m" && BACK[$m]=$(date +%s.%N)
    done
    [ ${#BACK[@]} = ${#FROZEN[@]} ]
}
wait_for $((10 * TIMEOUT)) "the frozen minions to be restarted and answer" all_back
r5=$(total_restarts)
times=$(for m in "${FROZEN[@]}"; do awk -v a="${FROZE_AT[$m]}" -v b="${BACK[$m]}" 'BEGIN { printf "%.1f\n", b - a }'; done | sort -n)
pct() { awk -v q="$1" '{ v[NR] = $1 } END { i = int(q * NR + 0.999); if (i < 1) i = 1; print v[i] }' <<<"$times"; }
result "4 ${#FROZEN[@]} of $N frozen: $((r5 - r4)) restarts; freeze to answering test.ping p50 $(pct 0.5) s, p99 $(pct 0.99) s, max $(pct 1) s (timeout $TIMEOUT s + splay up to $SPLAY s + the minion's stop and start)"
if [ "$((r5 - r4))" != "${#FROZEN[@]}" ]; then
    for m in "${FROZEN[@]}"; do say "$m: $(local_state "$m"), salt-minion ${MAIN[$m]} -> $(minion_main "$m")"; done
fi
[ "$((r5 - r4))" = "${#FROZEN[@]}" ] || fail "frozen: $((r5 - r4)) restarts for ${#FROZEN[@]} frozen minions"

# --- 5. the fleet's status from the master -----------------------------------------------------
t5=$(date +%s.%N)
salt -c "$M/etc" --timeout 60 '*' protector.status --out=json --static >"$T/status.json" 2>/dev/null || true
t6=$(date +%s.%N)
answered=$("$VENV/bin/python" -c "import json; s=json.load(open('$T/status.json')); print(sum(1 for v in s.values() if isinstance(v, dict) and 'targets' in v))")
result "5 salt '*' protector.status: $answered of $N minions answered in $(awk -v a="$t5" -v b="$t6" 'BEGIN { printf "%.1f", b - a }') s"

say "done (N = $N, timeout ${TIMEOUT}s, heartbeat every ${PERIOD}s, restart_splay ${SPLAY}s)"
for r in "${RESULTS[@]}"; do echo "  $r"; done

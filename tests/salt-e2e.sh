#!/usr/bin/env bash
# End-to-end: protector keeping a real salt-minion alive against a real salt-master, both on
# 127.0.0.1 with free ports and everything under one short temp dir. The roll-out kit in
# examples/salt/ is used the way an operator would use it: publish.sh puts the binary on the
# master's file server, the master's heartbeat schedule comes from master.d/, and
# `state.apply protector` installs protector and renders its config from pillar.
#
# Scenarios, after the original tool's manual test plan: steady state, minion killed, minion
# frozen (SIGSTOP), master stopped and started again. Each prints its timings.
#
# Cleans up every process it started (each names this run's temp dir in its command line),
# even when it fails; never touches another process.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KIT=$ROOT/examples/salt
SALT_VERSION=3008.4
# Salt takes a minute or two to install; keep it between runs (and between clones).
VENV=${PROTECTOR_SALT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/protector/salt-$SALT_VERSION}
TIMEOUT=10            # protector's timeout (s); the master touches the heartbeat every 2 s

say() { printf '[salt-e2e %s] %s\n' "$(date +%T)" "$*"; }
fail() {
    say "FAIL: $*"
    exit 1
}

if ! "$VENV/bin/salt-master" --version >/dev/null 2>&1; then
    say "installing salt $SALT_VERSION from PyPI into $VENV (cached for later runs)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "salt==$SALT_VERSION"
fi
export PATH="$VENV/bin:$PATH"

T=$(mktemp -d /tmp/pe2e.XXXXXX)
M=$T/m
N=$T/n
mkdir -p "$M/etc/master.d" "$N/etc" "$T/files" "$T/pillar"

# --- cleanup: only processes whose command line names this run's temp dir ----------------
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$T"; }
kill_ours() {
    local pid
    for pid in $(pgrep -f "$T" || true); do
        if ours "$pid"; then
            kill -CONT "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}
cleanup() {
    local status=$?
    [ -n "${PROTECTOR_PID:-}" ] && kill -KILL "$PROTECTOR_PID" 2>/dev/null || true
    kill_ours
    sleep 0.5
    kill_ours
    if [ "$status" -ne 0 ]; then
        say "logs of the failed run:"
        tail -n 40 "$T/protector.log" 2>/dev/null | sed 's/^/  protector: /' || true
        sed 's/^/  state: /' "$N/state.json" 2>/dev/null || true
        tail -n 15 "$N/minion.log" 2>/dev/null | sed 's/^/  minion: /' || true
    fi
    rm -rf "$T"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PUB=$(free_port)
RET=$(free_port)
while [ "$RET" = "$PUB" ]; do RET=$(free_port); done

# Wait for a condition: wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        [ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.2
    done
}
now() { date +%s.%N; }
mtime() { stat -c %.9Y "$1" 2>/dev/null || echo 0; }
minion_pid() { cat "$N/minion.pid" 2>/dev/null || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null; }
count() { grep -c "$1" "$T/protector.log" 2>/dev/null || true; }
more_than() { [ "$(count "$1")" -gt "$2" ]; } # more than N log records contain $1
ping_ok() { salt -c "$M/etc" --timeout 5 e2e-minion test.ping 2>/dev/null | grep -q True; }
heartbeat_after() { awk -v a="$(mtime "$T/heartbeat")" -v b="$1" 'BEGIN { exit !(a > b) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
log_time() { # the timestamp of the Nth (1-based) log record containing $2, as epoch seconds
    grep "$2" "$T/protector.log" | sed -n "${1}p" |
        python3 -c 'import sys,json,datetime; r=json.loads(sys.stdin.read()); print(datetime.datetime.fromisoformat(r["timestamp"].replace("Z","+00:00")).timestamp())'
}

# --- the master: file server = the kit's state tree + published binaries ------------------
say "publishing protector to the master's file server (examples/salt/publish.sh)"
"$KIT/publish.sh" --linux-only "$T/files" | sed 's/^/  /'

cat >"$M/etc/master" <<EOF
interface: 127.0.0.1
publish_port: $PUB
ret_port: $RET
root_dir: $M
pki_dir: $M/pki
cachedir: $M/cache
sock_dir: $M/sock
pidfile: $M/master.pid
log_file: $M/master.log
user: root
auto_accept: True
worker_threads: 2
gather_job_timeout: 2
file_roots:
  base:
    - $KIT/srv/salt
    - $T/files
pillar_roots:
  base:
    - $T/pillar
EOF
# The kit's heartbeat schedule, with this run's path and a 2 s period.
sed -e "s|/var/run/protector/salt-minion.alive|$T/heartbeat|" -e 's/seconds: 60/seconds: 2/' \
    -e 's/timeout: 30/timeout: 5/' "$KIT/master.d/protector-heartbeat.conf" >"$M/etc/master.d/protector-heartbeat.conf"
grep -q "$T/heartbeat" "$M/etc/master.d/protector-heartbeat.conf" || fail "the kit's schedule snippet changed shape"

cp "$KIT/srv/pillar/top.sls" "$T/pillar/top.sls"
cat >"$T/pillar/protector.sls" <<EOF
protector:
  service_manager: none
  bin: $N/protector
  config: $N/protector.yaml
  state_file: $N/state.json
  heartbeat: $T/heartbeat
  timeout: ${TIMEOUT}s
  command_timeout: 30s
  backoff: {after: 1, max: 40s}
  # Stop: TERM every process of this minion (also children left behind by a killed one),
  # wait up to 8 s for them to go, then KILL (a frozen minion ignores TERM).
  stop: >-
    pids=\$(pgrep -f '[s]alt-minion -c $N/etc') || exit 0;
    kill -TERM \$pids 2>/dev/null;
    i=0; while [ \$i -lt 40 ] && pgrep -f '[s]alt-minion -c $N/etc' >/dev/null; do sleep 0.2; i=\$((i+1)); done;
    if pgrep -f '[s]alt-minion -c $N/etc' >/dev/null; then echo "graceful stop timed out, escalating to KILL";
    pkill -KILL -f '[s]alt-minion -c $N/etc'; while pgrep -f '[s]alt-minion -c $N/etc' >/dev/null; do sleep 0.1; done; fi
  start: rm -f $N/minion.pid; $VENV/bin/salt-minion -c $N/etc -d
EOF

cat >"$N/etc/minion" <<EOF
id: e2e-minion
master: 127.0.0.1
master_port: $RET
publish_port: $PUB
root_dir: $N
pki_dir: $N/pki
cachedir: $N/cache
sock_dir: $N/sock
pidfile: $N/minion.pid
log_file: $N/minion.log
user: root
acceptance_wait_time: 1
random_reauth_delay: 0
enable_fqdns_grains: False
EOF

start_master() {
    salt-master -c "$M/etc" -d
    wait_for 30 "the master's pid file" test -s "$M/master.pid"
}
say "starting salt-master (ports $PUB/$RET) and salt-minion under $T"
start_master
salt-minion -c "$N/etc" -d
wait_for 30 "the minion's pid file" test -s "$N/minion.pid"
wait_for 90 "the minion to answer test.ping" ping_ok

say "state.apply protector (binary and config from the kit, values from pillar)"
salt -c "$M/etc" --timeout 120 e2e-minion state.apply protector --out=txt >"$T/state.out" 2>&1 ||
    { cat "$T/state.out"; fail "state.apply protector failed"; }
[ -x "$N/protector" ] || fail "the state did not install the binary"
"$N/protector" check --config "$N/protector.yaml" >/dev/null || fail "the rendered config is invalid"
grep -q "timeout: \"${TIMEOUT}s\"" "$N/protector.yaml" || fail "the config was not rendered from pillar"
file "$N/protector" 2>/dev/null | sed 's/^/  /' || true

wait_for 30 "the master's schedule to touch the heartbeat" test -e "$T/heartbeat"
"$N/protector" --log-format json --config "$N/protector.yaml" 2>"$T/protector.log" &
PROTECTOR_PID=$!
disown "$PROTECTOR_PID"
wait_for 10 "protector to run" grep -q "protector is running" "$T/protector.log"

sample() { # RSS (KiB) and CPU seconds of protector
    local rss cpu
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PROTECTOR_PID/status")
    cpu=$(awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$PROTECTOR_PID/stat")
    echo "$rss $cpu"
}
RESULTS=()

# --- 1. steady state: three timeouts without a restart ------------------------------------
say "scenario 1: steady state for $((3 * TIMEOUT)) s"
read -r rss0 cpu0 < <(sample)
touches=0
last=$(mtime "$T/heartbeat")
end=$((SECONDS + 3 * TIMEOUT))
while [ $SECONDS -lt $end ]; do
    m=$(mtime "$T/heartbeat")
    if [ "$m" != "$last" ]; then touches=$((touches + 1)); last=$m; fi
    [ "$(count 'heartbeat is stale')" = 0 ] || fail "restarted while the heartbeat was fresh"
    sleep 0.5
done
read -r rss1 cpu1 < <(sample)
[ "$touches" -ge 5 ] || fail "the master touched the heartbeat only $touches times"
[ "$rss1" -le $((rss0 + 512)) ] || fail "protector's RSS grew from $rss0 to $rss1 KiB"
RESULTS+=("1 steady state $((3 * TIMEOUT)) s: $touches heartbeats, 0 restarts; protector RSS ${rss0} -> ${rss1} KiB, CPU ${cpu0} -> ${cpu1} s")

# --- 2 and 3: minion killed, minion frozen --------------------------------------------------
restart_scenario() { # number, signal, description
    local n=$1 sig=$2 what=$3 old stale0 beat t_stale t_back back0
    old=$(minion_pid)
    stale0=$(count 'heartbeat is stale')
    back0=$(count 'heartbeat is back after restart')
    beat=$(mtime "$T/heartbeat")
    say "scenario $n: $what (kill -$sig $old)"
    kill "-$sig" "$old"
    wait_for $((TIMEOUT * 4)) "protector to restart the minion" more_than 'heartbeat is stale' "$stale0"
    t_stale=$(log_time "$((stale0 + 1))" 'heartbeat is stale')
    wait_for 60 "the old minion to be gone" bash -c "! kill -0 $old 2>/dev/null || grep -q '^State:.*Z' /proc/$old/status"
    wait_for 60 "a new minion" bash -c "p=\$(cat $N/minion.pid 2>/dev/null); [ -n \"\$p\" ] && [ \"\$p\" != $old ] && kill -0 \$p"
        wait_for 90 "the new minion to answer test.ping" ping_ok
    wait_for 60 "the heartbeat to resume" heartbeat_after "$t_stale"
    t_back=$(now)
    wait_for $((TIMEOUT * 3)) "protector to see the heartbeat back" more_than 'heartbeat is back after restart' "$back0"
    RESULTS+=("$n $what: restart $(secs "$beat" "$t_stale") s after the last heartbeat; answering and touched again $(secs "$t_stale" "$t_back") s later")
}
restart_scenario 2 KILL "minion killed"
restart_scenario 3 STOP "minion frozen"
grep -q 'escalating to KILL' "$T/protector.log" || fail "the stop command did not escalate to KILL for the frozen minion"

# --- 4. master stopped: restarts with growing backoff; master back: heartbeat resumes --------
say "scenario 4: master stopped"
done0=$(count '"restart done"')
stale0=$(count 'heartbeat is stale')
back0=$(count 'heartbeat is back after restart')
beat=$(mtime "$T/heartbeat")
master=$(cat "$M/master.pid")
kill -TERM "$master"
wait_for 60 "the master to stop" bash -c "! kill -0 $master 2>/dev/null"
wait_for 150 "three restarts without a master" more_than '"restart done"' $((done0 + 2))
waits=$(grep '"restart done"' "$T/protector.log" | tail -n 3 |
    python3 -c 'import sys,json; print(" ".join(json.loads(l)["next_check_in"] for l in sys.stdin))')
[ "$waits" = "10s 20s 40s" ] || fail "backoff did not grow as configured: $waits"
t_first=$(log_time "$((stale0 + 1))" 'heartbeat is stale')
say "restarting the master"
start_master
t_master=$(now)
wait_for 150 "the heartbeat to come back" more_than 'heartbeat is back after restart' "$back0"
wait_for 30 "the state file to show the reset" \
    python3 -c "import json,sys; t=json.load(open('$N/state.json'))['targets'][0]; sys.exit(t['consecutive_restarts'] != 0 or t['state'] != 'watching')"
wait_for 90 "the minion to answer again" ping_ok
RESULTS+=("4 master stopped: first restart $(secs "$beat" "$t_first") s after the last heartbeat, then waits of $waits; heartbeat back $(secs "$t_master" "$(now)") s after the master restarted, backoff reset")

# Exactly one minion is left (its own children aside): no restart left an old one behind.
minions=$(pgrep -f "salt-minion -c $N/etc" || true)
roots=0
for pid in $minions; do
    parent=$(ps -o ppid= -p "$pid" | tr -d ' ')
    case " $(echo $minions) " in *" $parent "*) ;; *) roots=$((roots + 1)) ;; esac
done
[ "$roots" -eq 1 ] || fail "$roots minions are running; a restart left an old one behind"
say "all scenarios passed"
for r in "${RESULTS[@]}"; do echo "  $r"; done

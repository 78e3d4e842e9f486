#!/usr/bin/env bash
# End-to-end: the protector formula as a site rolls it out, on a fleet of five minions, each a
# Debian system booted with systemd-nspawn (systemd as PID 1, Salt's salt-minion unit), against
# a real salt-master on 127.0.0.1. Everything comes from the kit's defaults: publish.sh puts
# the static binary on the file server, the master runs the kit's heartbeat schedule
# (protector.beat) and reactor, and `state.apply protector` installs protector with an empty
# pillar but for the timeout; one minion (m3) is set up as a site that installs from its
# package repository (pillar install: package; the repository is the .deb in a local
# directory, as apt sees a site's). What the test changes, and why, is checked below: the
# master's address and ports, and timings scaled down so the run takes minutes, not hours.
#
# Proves: the binary is static; protector's unit comes up (Type=notify, READY); the default
# heartbeat path is touched through protector.beat; no restart in steady state; two minions
# frozen and one killed: exactly those three restarted via systemctl and answering again, the
# events on the master's bus, each naming the incident kept before the restart (collected
# with protector.incidents: the frozen minions' processes stopped, the killed one's gone),
# `salt '*' protector.status` shows it (the packaged protector on m3
# among them); protector SIGKILLed:
# systemd brings it back with its counts; a pillar change reloads it keeping its state; a
# reboot (fresh /run): heartbeats resume with no restart; `protector.pause` from the master
# holds off the restart of a frozen minion and `protector.resume` ends it; protector.status
# fails where protector is stopped; protector.clean uninstalls it (the binary on m5, the package
# on m3). Prints the timings.
#
# Needs root (containers, overlay mounts). Cleans up every process, mount and cgroup it made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SAY_AS=salt-e2e
source tests/salt/lib.sh
KIT=$ROOT/examples/salt
FORMULA=$KIT/protector-formula
MINIONS=(m1 m2 m3 m4 m5)
# Timings scaled down (the formula: 5m timeout, the master's schedule every 60 s). Same ratio:
# the timeout is several heartbeat periods.
TIMEOUT=20
PERIOD=3
# The formula's 3m of restart_splay against its 5m timeout, in the same ratio.
SPLAY=12

[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn, overlay mounts)"
apt_get systemd-container debootstrap binutils dpkg-dev
salt_venv
minion_root
export PATH="$VENV/bin:$PATH"

T=$(mktemp -d /tmp/pe2e.XXXXXX)
M=$T/master
mkdir -p "$M/etc/master.d" "$T/files" "$T/pillar"
cleanup() {
    local status=$?
    set +e
    if [ "$status" -ne 0 ]; then
        say "logs of the failed run:"
        for m in "${MINIONS[@]}"; do
            leader "$m" >/dev/null 2>&1 || continue
            in_minion "$m" journalctl -u protector -u salt-minion --no-pager -n 25 2>/dev/null | sed "s/^/  $m: /"
        done
        tail -n 20 "$M/master.log" 2>/dev/null | sed 's/^/  master: /'
    fi
    [ -n "${EVENTS_PID:-}" ] && kill "$EVENTS_PID" 2>/dev/null
    [ -n "${JOBS_PID:-}" ] && kill "$JOBS_PID" 2>/dev/null
    [ -n "${MASTER_SID:-}" ] && [ "$MASTER_SID" -gt 1 ] && pkill -KILL -s "$MASTER_SID" 2>/dev/null
    pkill -KILL -f "salt-master -c $M/etc" 2>/dev/null
    cleanup_minions
    rm -rf "$T"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- the binary: static, published by the kit's script --------------------------------------
say "publishing protector to the master's file server (examples/salt/publish.sh)"
"$KIT/publish.sh" --linux-only "$T/files" 2>&1 | grep -v '^ *\(Compiling\|Finished\|Downloaded\|Downloading\)' | sed 's/^/  /'
BIN=$T/files/protector/files/protector
if readelf -l "$BIN" | grep -q INTERP; then fail "the published binary asks for a dynamic loader"; fi
[ -z "$(readelf -d "$BIN" | grep NEEDED || true)" ] || fail "the published binary needs shared libraries"
# Static means it runs where there is nothing else: a root holding only itself and a config.
mkdir -p "$T/empty-root"
cp "$BIN" "$T/empty-root/protector"
# (Nothing else is there, /bin/true included: the config says its program comes later.)
printf 'targets:\n  - name: t\n    heartbeat: /beat\n    timeout: 5m\n    start: [/bin/true]\n    allow_missing_programs: true\n' >"$T/empty-root/p.yaml"
chroot "$T/empty-root" /protector check --config /p.yaml | grep -q "valid for linux; 1 target" ||
    fail "the published binary does not run in an empty root"
say "the published binary is static: no interpreter, no shared libraries, runs in an empty root"

# The site's package repository for m3: the .deb that .ci/dist builds of the same tree (the
# build is the one publish.sh just made), indexed as apt wants it.
say "building the packages (.ci/dist --linux-only) for m3's repository"
.ci/dist --linux-only "$T/dist" >"$T/dist.log" 2>&1 || { tail -n 30 "$T/dist.log"; fail ".ci/dist failed"; }
mkdir -p "$T/repo"
cp "$T/dist/protector_$(.ci/version)-1_amd64.deb" "$T/repo/"
cmp -s "$BIN" "$T/dist/protector-$(.ci/version)-x86_64-unknown-linux-musl" ||
    fail "the packaged binary is not the published one"
(cd "$T/repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
grep -q '^Package: protector$' "$T/repo/Packages" || fail "the repository's index has no protector"

# --- the master -----------------------------------------------------------------------------
PUB=$(free_port)
RET=$(free_port)
while [ "$RET" = "$PUB" ]; do RET=$(free_port); done
master_config "$M" "$PUB" "$RET" "$T/pillar" "$FORMULA" "$T/files" "$KIT"
# The kit's schedule and reactors (the kit is a file root: salt://reactor/); the schedule's
# period scaled down.
sed -e "s/seconds: 60/seconds: $PERIOD/" \
    "$KIT/master.d/protector-heartbeat.conf" >"$M/etc/master.d/protector-heartbeat.conf"
cp "$KIT/master.d/protector-reactor.conf" "$M/etc/master.d/"
changed=$(diff "$KIT/master.d/protector-heartbeat.conf" "$M/etc/master.d/protector-heartbeat.conf" | grep '^>' || true)
[ "$changed" = "$(printf '>     seconds: %s' "$PERIOD")" ] ||
    fail "the test changes more of the kit's schedule than its timings: $changed"

# The pillar: empty but for timings. Only these keys may be set, so the run uses the defaults
# the formula ships.
printf "base:\n  '*':\n    - protector\n  m3:\n    - protector-package\n" >"$T/pillar/top.sls"
# m3 installs from the site's package repository; nothing else differs.
printf "protector:\n  install: package\n" >"$T/pillar/protector-package.sls"
pillar() { # pillar [EXTRA_CONFIG_YAML]
    {
        echo "protector:"
        echo "  salt_minion:"
        echo "    timeout: ${TIMEOUT}s"
        echo "    restart_splay: ${SPLAY}s"
        [ -z "${1:-}" ] || printf '  config:\n    %s\n' "$1"
    } >"$T/pillar/protector.sls"
    "$VENV/bin/python" - "$T/pillar/protector.sls" <<'PY' || fail "the test's pillar overrides a default of the formula"
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))["protector"]
allowed = {"salt_minion": {"timeout", "restart_grace", "startup_grace", "restart_splay"},
           "config": {"max_parallel_commands"}}  # the reload scenarios change this one
for key, value in p.items():
    assert key in allowed, key
    assert set(value) <= allowed[key], (key, value)
PY
}
pillar

say "starting salt-master on 127.0.0.1 (ports $PUB/$RET)"
start_master "$M"
salt-run -c "$M/etc" state.event 'protector/*' count=-1 >"$T/events.txt" 2>"$T/events.err" &
EVENTS_PID=$!

# --- the minions: Debian + systemd + Salt's unit, pointed at the master ------------------------
for m in "${MINIONS[@]}"; do
    # Besides the master's address and ports: the id, and Salt's waits shortened (salt.md).
    minion_config "$(minion_dir "$m")/upper/etc/salt/minion.d/e2e.conf" "$m" "$PUB" "$RET"
    boot_minion "$m"
done
say "booted ${#MINIONS[@]} minions: ${MINIONS[*]}"
# m3's apt knows only the site's repository (nothing leaves this machine).
R3=$(minion_dir m3)/root
cp -r "$T/repo" "$R3/var/tmp/protector-repo"
rm -f "$R3"/etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:/var/tmp/protector-repo ./" >"$R3/etc/apt/sources.list"
all_ping() { [ "$(salt -c "$M/etc" --timeout 10 '*' test.ping --out=txt 2>/dev/null | grep -c ': True')" = "${#MINIONS[@]}" ]; }
wait_for 180 "every minion to answer test.ping" all_ping

# --- the formula, as a site applies it ----------------------------------------------------------
say "salt '*' state.apply protector"
t0=$SECONDS
salt -c "$M/etc" --timeout 300 '*' state.apply protector --out=txt >"$T/apply.out" 2>&1 ||
    { tail -n 60 "$T/apply.out"; fail "state.apply protector failed"; }
say "applied on ${#MINIONS[@]} minions in $((SECONDS - t0)) s"

unit_prop() { in_minion "$1" systemctl show "$2" -p "$3" --value; }
for m in "${MINIONS[@]}"; do
    [ "$(unit_prop "$m" protector ActiveState)" = active ] || fail "$m: protector is not active"
    [ "$(unit_prop "$m" protector Type)" = notify ] || fail "$m: protector's unit is not Type=notify"
    [ "$(unit_prop "$m" protector StatusErrno)" = 0 ] || fail "$m: protector reported an error to systemd"
done
say "protector's unit is active (READY sent) on every minion"
# m3 runs the package's protector and unit (with the formula's drop-in), the others the binary.
[ "$(in_minion m3 dpkg-query -W -f '${Status}' protector)" = "install ok installed" ] ||
    fail "m3: the protector package is not installed"
[ "$(in_minion m3 readlink -f "$(unit_prop m3 protector FragmentPath)")" = /usr/lib/systemd/system/protector.service ] ||
    fail "m3: protector's unit is not the package's"
in_minion m3 test ! -e /usr/local/bin/protector || fail "m3: the binary was installed as well as the package"
unit_prop m3 protector ExecStart | grep -q 'path=/usr/bin/protector ' || fail "m3: protector does not run from /usr/bin"
for m in m1 m2 m4 m5; do
    in_minion "$m" test -x /usr/local/bin/protector || fail "$m: no /usr/local/bin/protector"
    ! in_minion "$m" dpkg-query -W protector >/dev/null 2>&1 || fail "$m: a protector package is installed"
done
say "m3 runs protector from the package (/usr/bin, the package's unit), the others the binary"

beat_mtime() { in_minion "$1" stat -c %.3Y /run/protector/salt-minion.alive 2>/dev/null; }
beaten() { [ -n "$(beat_mtime "$1")" ]; }
for m in "${MINIONS[@]}"; do wait_for 60 "$m's default heartbeat to be touched" beaten "$m"; done
say "the master's schedule touches /run/protector/salt-minion.alive on every minion (protector.beat)"

# status_json: salt '*' protector.status as one JSON object keyed by minion id.
status_json() { salt -c "$M/etc" --timeout 30 '*' protector.status --out=json --static 2>/dev/null || true; }
# field MINION PYTHON_EXPR: evaluates EXPR on that minion's status ('t' is its salt-minion target).
fleet_check() {
    status_json >"$T/status.json"
    "$VENV/bin/python" - "$T/status.json" "$@" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
ok = True
for expr in sys.argv[2:]:
    if not eval(expr, {"s": s, "t": lambda m: s[m]["targets"][0]}):
        ok = False
sys.exit(0 if ok else 1)
PY
}

# --- 1. steady state ----------------------------------------------------------------------------
say "scenario 1: steady state for $((2 * TIMEOUT)) s"
sleep_until() { local end=$((SECONDS + $1)); while [ $SECONDS -lt $end ]; do sleep 1; done; }
# The beats' jobs on the master's bus: published, but no minion returns one (quiet=True).
salt-run -c "$M/etc" state.event 'salt/job/*' count=-1 >"$T/jobs.txt" 2>/dev/null &
JOBS_PID=$!
sleep_until $((2 * TIMEOUT)) # a span of time is what is tested here, not an event
kill "$JOBS_PID" 2>/dev/null || true
beat_jobs=$(grep -c '^salt/job/[0-9]*/new.*"fun": "protector.beat"' "$T/jobs.txt" || true)
beat_returns=$(grep -c '^salt/job/[0-9]*/ret/.*"fun": "protector.beat"' "$T/jobs.txt" || true)
[ "$beat_jobs" -ge 2 ] && [ "$beat_returns" = 0 ] ||
    { head -c 3000 "$T/jobs.txt"; fail "beats: $beat_jobs published, $beat_returns returns (want 2 or more, and none)"; }
fleet_check "all(s[m]['running'] and s[m]['healthy'] for m in s)" \
    "all(t(m)['restarts_total'] == 0 for m in s)" "len(s) == ${#MINIONS[@]}" ||
    { cat "$T/status.json"; fail "a minion was restarted in steady state, or protector is not healthy"; }
RESULTS=("1 steady state, $((2 * TIMEOUT)) s on ${#MINIONS[@]} minions: no restart, every protector healthy; $beat_jobs beats published, no return from any minion")

# --- 2. the fleet: two frozen, one killed --------------------------------------------------------
minion_main() { unit_prop "$1" salt-minion MainPID; }
declare -A OLD=() LAST=()
for m in m2 m3 m4; do OLD[$m]=$(minion_main "$m"); LAST[$m]=$(beat_mtime "$m"); done
say "scenario 2: m2 and m3 frozen (SIGSTOP), m4 killed (SIGKILL); m1 and m5 left alone"
# Every process of the minion: its keepalive parent (the unit's main process) and the minion.
minion_pids() { in_minion "$1" pgrep -f bin/salt-minion | tr '\n' ' '; }
declare -A PIDS=()
for m in m2 m3 m4; do PIDS[$m]=$(minion_pids "$m"); done
for m in m2 m3; do in_minion "$m" pkill -STOP -f bin/salt-minion; done
in_minion m4 pkill -KILL -f bin/salt-minion
answering() { salt -c "$M/etc" --timeout 10 "$1" test.ping --out=txt 2>/dev/null | grep -q ': True'; }
restarted_and_back() {
    local m=$1 now
    now=$(minion_main "$m")
    [ -n "$now" ] && [ "$now" != 0 ] && [ "$now" != "${OLD[$m]}" ] && answering "$m"
}
declare -A BACK=()
all_back() { # records when each minion first answers again
    local m
    for m in m2 m3 m4; do
        [ -n "${BACK[$m]:-}" ] || ! restarted_and_back "$m" || BACK[$m]=$(date +%s.%N)
    done
    [ ${#BACK[@]} = 3 ]
}
wait_for $((TIMEOUT * 6)) "m2, m3 and m4 to be restarted and answer test.ping" all_back
watching_again() { fleet_check "t('$1')['state'] == 'watching' and t('$1')['consecutive_restarts'] == 0"; }
for m in m2 m3 m4; do wait_for $((TIMEOUT * 4)) "protector on $m to see the heartbeat back" watching_again "$m"; done
fleet_check "all(t(m)['restarts_total'] == 1 for m in ['m2', 'm3', 'm4'])" \
    "all(t(m)['restarts_total'] == 0 for m in ['m1', 'm5'])" \
    "all(c['exit_code'] == 0 for m in ['m2', 'm3', 'm4'] for c in t(m)['last_restart']['commands'])" ||
    { cat "$T/status.json"; fail "not exactly m2, m3 and m4 were restarted (once each, stop and start exiting 0)"; }
# The salt-minion units were stopped and started by systemctl (fresh main processes, above),
# and nothing of the old minions is left: a frozen minion ignores SIGTERM, systemd kills only
# the unit's main process (Salt's unit has KillMode=process), the stop command the rest.
for m in m2 m3 m4; do
    now=" $(minion_pids "$m")"
    for p in ${PIDS[$m]}; do
        case "$now" in *" $p "*) fail "$m: process $p of the old minion is still there" ;; esac
    done
done
# (Without --static: with it, salt exits 0 whatever the minions' return codes.)
salt -c "$M/etc" --timeout 30 '*' protector.status --out=quiet >/dev/null 2>&1 ||
    fail "salt '*' protector.status does not exit 0 with every protector healthy"
for m in m2 m3 m4; do
    at=$("$VENV/bin/python" -c "import json; print(json.load(open('$T/status.json'))['$m']['targets'][0]['last_restart']['at'])")
    RESULTS+=("2 $m $([ $m = m4 ] && echo killed || echo frozen): restarted $(awk -v a="${LAST[$m]}" -v b="$at" 'BEGIN { printf "%.1f", b - a }') s after its last heartbeat; answering test.ping $(awk -v a="$at" -v b="${BACK[$m]}" 'BEGIN { printf "%.1f", b - a }') s after the restart")
done
# The restart events reached the master's bus: one from each restarted minion, none from others.
restart_events() { "$VENV/bin/python" - "$T/events.txt" <<'PY'
import json, sys
ids = []
for line in open(sys.argv[1]):
    tag, _, data = line.partition("\t")
    if tag == "protector/restart/salt-minion":
        d = json.loads(data)
        assert d["data"]["target"] == "salt-minion" and d["data"]["restarts"] == 1, d
        ids.append(d["id"])
print(" ".join(sorted(ids)))
PY
}
have_restart_events() { [ "$(restart_events)" = "m2 m3 m4" ]; }
wait_for 90 "restart events from m2, m3 and m4 (and no other) on the master's bus" have_restart_events
grep -q "protector on m4: restart of salt-minion" "$M/master.log" ||
    fail "the kit's reactor did not log the restart event on the master"
RESULTS+=("2 events: protector/restart/salt-minion from m2, m3, m4 on the master's bus; the reactor logged each")
# Each restart kept an incident before its stop: the master collects the latest with
# protector.incidents; a frozen minion's shows its processes stopped and its threads (the
# formula's diagnose), the killed one's that its process was gone; each restart event names
# its incident.
salt -c "$M/etc" --timeout 30 'm[2-4]' protector.incidents salt-minion last=1 --out=json --static \
    >"$T/incidents.json" 2>/dev/null || true
"$VENV/bin/python" - "$T/incidents.json" "$T/events.txt" <<'PY' || fail "the restarts' incidents are not as expected (above)"
import json, sys
incidents = json.load(open(sys.argv[1]))
events = {}
for line in open(sys.argv[2]):
    tag, _, data = line.partition("\t")
    if tag == "protector/restart/salt-minion":
        d = json.loads(data)
        events[d["id"]] = d["data"].get("incident")
problems = []
for m in ["m2", "m3", "m4"]:
    got = incidents.get(m)
    if not isinstance(got, list) or len(got) != 1:
        problems.append(f"{m}: not one incident: {got!r}")
        continue
    i = got[0]
    if m == "m4":
        if "is not running" not in i["summary"]:
            problems.append(f"{m} (killed): {i['summary']!r}")
    else:
        states = [p["state"] for p in i["processes"]]
        # Stopped, every one; a child that ended after the freeze stays a zombie (Z): its
        # stopped parent cannot reap it (a job the master's schedule had just started).
        frozen = [s for s in states if not s.startswith("Z")]
        if not frozen or not all(s.startswith("T") for s in frozen) or "T (stopped)" not in i["summary"]:
            problems.append(f"{m} (frozen): processes {states}, summary {i['summary']!r}")
        if "== process" not in (i.get("diagnose") or {}).get("stdout", ""):
            problems.append(f"{m} (frozen): the diagnose saw no minion process: {i.get('diagnose')!r}")
    if events.get(m) != i["id"]:
        problems.append(f"{m}: the restart event names incident {events.get(m)!r}, not {i['id']!r}")
    print(f"  {m}: {i['id']}  {i['summary']}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
PY
RESULTS+=("2 incidents: m2, m3 stopped (T), m4's process gone, collected by protector.incidents; each restart event names its incident")

# --- 3. protector itself killed: systemd restarts it, with its counts -----------------------------
say "scenario 3: protector SIGKILLed on m2"
old=$(unit_prop m2 protector MainPID)
in_minion m2 kill -KILL "$old"
new_protector() { local p; p=$(unit_prop m2 protector MainPID); [ "$p" != 0 ] && [ "$p" != "$old" ] && [ "$(unit_prop m2 protector ActiveState)" = active ]; }
wait_for 60 "systemd to restart protector" new_protector
fleet_check "s['m2']['running'] and t('m2')['restarts_total'] == 1" ||
    { cat "$T/status.json"; fail "protector came back without its counts"; }
RESULTS+=("3 protector SIGKILLed: systemd started it again (Restart=always), restart count kept")

# --- 4. a pillar change: the formula reloads protector, which keeps its state -----------------------
say "scenario 4: pillar change, state.apply on m2 (reload)"
pid=$(unit_prop m2 protector MainPID)
reloads() { in_minion m2 journalctl -u protector --no-pager -o cat | grep -c '^Reloaded' || true; }
r0=$(reloads)
pillar "max_parallel_commands: 64"
salt -c "$M/etc" --timeout 120 m2 state.apply protector --out=txt >"$T/apply2.out" 2>&1 ||
    { tail -n 40 "$T/apply2.out"; fail "state.apply after the pillar change failed"; }
in_minion m2 grep -q 'max_parallel_commands: 64' /etc/protector/protector.yaml || fail "the pillar change did not reach the config"
reloaded() { [ "$(reloads)" -gt "$r0" ]; }
wait_for 30 "systemd to report protector reloaded" reloaded
[ "$(unit_prop m2 protector MainPID)" = "$pid" ] || fail "protector was restarted instead of reloaded"
fleet_check "t('m2')['restarts_total'] == 1 and t('m2')['state'] == 'watching'" ||
    { cat "$T/status.json"; fail "the reload lost protector's state"; }
RESULTS+=("4 pillar change: config re-rendered, protector reloaded (same process), state kept")
# A pillar that makes an invalid config: the state fails, the watchdog goes on untouched.
pillar "max_parallel_commands: lots"
if salt -c "$M/etc" --timeout 120 m2 state.apply protector --out=txt >"$T/apply-bad.out" 2>&1; then
    tail -n 40 "$T/apply-bad.out"
    fail "state.apply with an invalid pillar succeeded"
fi
grep -q 'max_parallel_commands' "$T/apply-bad.out" || { tail -n 40 "$T/apply-bad.out"; fail "the failed state does not say what is wrong"; }
in_minion m2 grep -q 'max_parallel_commands: 64' /etc/protector/protector.yaml || fail "the invalid config replaced the accepted one"
[ "$(unit_prop m2 protector MainPID)" = "$pid" ] && [ "$(unit_prop m2 protector ActiveState)" = active ] ||
    fail "an invalid pillar stopped or restarted protector"
pillar "max_parallel_commands: 64"
RESULTS+=("4b invalid pillar: state.apply fails naming the key, config and protector untouched")

# --- 5. a reboot: fresh /run, heartbeats resume, no restart ---------------------------------------
say "scenario 5: reboot of m1"
t_reboot=$(date +%s)
reboot_minion m1
protector_up() { [ "$(unit_prop m1 protector ActiveState)" = active ]; }
wait_for 60 "protector to start at boot" protector_up
wait_for 60 "the heartbeat after the reboot" beaten m1
first_beat=$(beat_mtime m1)
awk -v a="$first_beat" -v b="$t_reboot" 'BEGIN { exit !(a >= b) }' || fail "the heartbeat survived the reboot: /run was not fresh"
sleep_until $((2 * TIMEOUT)) # again a span: no restart may happen in it
fleet_check "t('m1')['restarts_total'] == 0 and s['m1']['healthy']" ||
    { cat "$T/status.json"; fail "a restart after the reboot"; }
RESULTS+=("5 reboot: /run/protector created again, first heartbeat $(awk -v a="$t_reboot" -v b="$first_beat" 'BEGIN { printf "%.0f", b - a }') s after the reboot began, no restart in $((2 * TIMEOUT)) s")

# --- 6. an operator pauses the minion's target from the master -----------------------------------
say "scenario 6: salt m3 protector.pause salt-minion for=30m, then m3's minion frozen"
salt -c "$M/etc" --timeout 30 m3 protector.pause salt-minion for=30m reason="salt upgrade" --out=json >"$T/pause.json" ||
    { cat "$T/pause.json"; fail "salt m3 protector.pause failed"; }
"$VENV/bin/python" -c "import json,sys; r=json.load(open('$T/pause.json'))['m3']; sys.exit(not (r['ok'] and r['targets'][0]['message'] == 'paused for 30m00s: salt upgrade'))" ||
    { cat "$T/pause.json"; fail "protector.pause did not say it paused"; }
fleet_check "t('m3')['state'] == 'paused' and t('m3')['pause_reason'] == 'salt upgrade'" ||
    { cat "$T/status.json"; fail "protector.status does not show the pause"; }
paused_main=$(minion_main m3)
in_minion m3 pkill -STOP -f bin/salt-minion
sleep_until $((2 * TIMEOUT)) # a span: a frozen minion that is paused is never restarted
[ "$(minion_main m3)" = "$paused_main" ] || fail "the paused minion was restarted"
in_minion m3 pkill -CONT -f bin/salt-minion
wait_for 60 "m3 to answer again" answering m3
salt -c "$M/etc" --timeout 30 m3 protector.resume salt-minion --out=txt >"$T/resume.out" ||
    { cat "$T/resume.out"; fail "salt m3 protector.resume failed"; }
fleet_check "t('m3')['state'] == 'watching'" || { cat "$T/status.json"; fail "m3 is not watched again"; }
RESULTS+=("6 pause from the master: protector.pause shown by protector.status; the frozen minion not restarted for $((2 * TIMEOUT)) s; protector.resume watches it again")

# --- 7. the master down for longer than the timeout: nothing restarted, back: nothing ------------
say "scenario 7: salt-master stopped for $((3 * TIMEOUT)) s"
# Asked on each minion (the master is away): protector status --json (which exits 1 while a
# target is held), and its salt-minion's pid.
local_state() { { in_minion "$1" protector status --json 2>/dev/null || true; } | "$VENV/bin/python" -c 'import json,sys; t=json.load(sys.stdin)["targets"][0]; print(t["state"].replace(" ", "_"), t["restarts_total"])'; }
declare -A BEFORE=() MAIN=()
for m in "${MINIONS[@]}"; do BEFORE[$m]=$(local_state "$m" | cut -d' ' -f2); MAIN[$m]=$(minion_main "$m"); done
kill "$EVENTS_PID" 2>/dev/null || true
t_down=$SECONDS
stop_master "$M"
held() { [ "$(local_state "$1" | cut -d' ' -f1)" = held ]; }
for m in "${MINIONS[@]}"; do wait_for $((3 * TIMEOUT)) "protector on $m to hold its salt-minion (master down)" held "$m"; done
held_after=$((SECONDS - t_down))
for m in "${MINIONS[@]}"; do
    in_minion "$m" journalctl -u protector --no-pager -o cat | grep '"dependency_down"' >/dev/null ||
        fail "$m: no dependency_down in protector's journal"
done
sleep_until $((t_down + 3 * TIMEOUT - SECONDS)) # a span: the master stays down this long
for m in "${MINIONS[@]}"; do
    got=$(local_state "$m")
    [ "$got" = "held ${BEFORE[$m]}" ] || fail "$m: with the master down, protector says '$got' (want held ${BEFORE[$m]})"
    [ "$(minion_main "$m")" = "${MAIN[$m]}" ] || fail "$m: its salt-minion was restarted while the master was down"
done
say "starting salt-master again (same keys and config)"
t_up=$SECONDS
start_master "$M"
salt-run -c "$M/etc" state.event 'protector/*' count=-1 >"$T/events2.txt" 2>"$T/events2.err" &
EVENTS_PID=$!
wait_for 180 "every minion to answer test.ping after the master's return" all_ping
watching() { [ "$(local_state "$1" | cut -d' ' -f1)" = watching ]; }
for m in "${MINIONS[@]}"; do wait_for $((3 * TIMEOUT + 60)) "protector on $m to watch again (heartbeats back)" watching "$m"; done
back_after=$((SECONDS - t_up))
for m in "${MINIONS[@]}"; do
    [ "$(local_state "$m")" = "watching ${BEFORE[$m]}" ] || fail "$m: restarted after the master came back"
    [ "$(minion_main "$m")" = "${MAIN[$m]}" ] || fail "$m: its salt-minion was restarted after the master came back"
done
# A minion that hangs now, with its master up, is still restarted.
OLD[m4]=${MAIN[m4]}
in_minion m4 pkill -STOP -f bin/salt-minion
t_frozen=$SECONDS
wait_for $((TIMEOUT * 6)) "m4, frozen after the outage, to be restarted and answer" restarted_and_back m4
RESULTS+=("7 master down $((3 * TIMEOUT)) s: every protector held its salt-minion within ${held_after} s (dependency_down), none restarted; master back: every minion answering and watched again within ${back_after} s, none restarted; m4 frozen afterwards: restarted and answering after $((SECONDS - t_frozen)) s")

# --- 8. protector stopped, then the formula's clean state -----------------------------------------
say "scenario 8: protector stopped on m5, then state.apply protector.clean (m5, and m3's package)"
in_minion m5 systemctl stop protector
if salt -c "$M/etc" --timeout 30 m5 protector.status --out=json >"$T/m5.json"; then
    cat "$T/m5.json"
    fail "salt m5 protector.status exits 0 with protector stopped"
fi
"$VENV/bin/python" -c "import json,sys; s=json.load(open('$T/m5.json'))['m5']; sys.exit(s['running'] is not False)" ||
    { cat "$T/m5.json"; fail "protector.status does not say protector is not running"; }
salt -c "$M/etc" --timeout 120 m5 state.apply protector.clean --out=txt >"$T/clean.out" 2>&1 ||
    { tail -n 40 "$T/clean.out"; fail "state.apply protector.clean failed"; }
for f in /usr/local/bin/protector /etc/protector/protector.yaml /etc/systemd/system/protector.service; do
    in_minion m5 test ! -e "$f" || fail "protector.clean left $f behind"
done
[ "$(unit_prop m5 protector LoadState)" = not-found ] || fail "protector.clean left the unit loaded"
in_minion m5 test -s /var/lib/protector/state.json || fail "protector.clean removed the state file (kept unless asked)"
salt -c "$M/etc" --timeout 120 m3 state.apply protector.clean --out=txt >"$T/clean3.out" 2>&1 ||
    { tail -n 40 "$T/clean3.out"; fail "state.apply protector.clean failed on m3 (package)"; }
status3=$(in_minion m3 dpkg-query -W -f '${Status}' protector 2>/dev/null || true)
case "$status3" in "" | "deinstall ok config-files" | "unknown ok not-installed") ;;
    *) fail "m3: protector.clean left the package: $status3" ;; esac
for f in /usr/bin/protector /usr/lib/systemd/system/protector.service /etc/protector/protector.yaml; do
    in_minion m3 test ! -e "$f" || fail "m3: protector.clean left $f behind"
done
in_minion m3 pgrep -x protector >/dev/null && fail "m3: a protector process is left after protector.clean"
in_minion m3 test -s /var/lib/protector/state.json || fail "m3: protector.clean removed the state file"
RESULTS+=("8 protector stopped: protector.status fails on that minion, running: false; protector.clean removed service, binary and config, kept the state; on m3 it removed the package")

say "all scenarios passed (timeout ${TIMEOUT}s, heartbeat every ${PERIOD}s)"
for r in "${RESULTS[@]}"; do echo "  $r"; done

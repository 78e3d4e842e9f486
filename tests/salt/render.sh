#!/usr/bin/env bash
# The protector formula rendered for a Linux and a Windows minion, without a master: Salt's
# own renderer (`salt-call --local`) with the minion's grains set to each OS. Checks the states,
# the rendered protector.yaml (with `protector check --os`), that the protector.beat module
# and the formula agree on every path, and that pillar.example renders to a valid config.
# Needs Salt (installed from PyPI into the cache when missing) and a built protector.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SAY_AS=salt-render
source tests/salt/lib.sh
FORMULA=$ROOT/examples/salt/protector-formula
PROTECTOR=${PROTECTOR_BIN:-$ROOT/target/debug/protector}
[ -x "$PROTECTOR" ] || cargo build -q
salt_venv
T=$(mktemp -d /tmp/prender.XXXXXX)
trap 's=$?; [ $s = 0 ] || say "FAIL (exit $s)"; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

# render KERNEL PILLAR_FILE: sets up a masterless minion with those grains and pillar.
setup() {
    local kernel=$1 pillar=$2 dir=$T/$1-$(basename "$2")
    mkdir -p "$dir/pillar"
    cp "$pillar" "$dir/pillar/protector.sls"
    printf "base:\n  '*':\n    - protector\n" >"$dir/pillar/top.sls"
    {
        echo "id: render-$kernel"
        echo "root_dir: $dir"
        echo "file_client: local"
        echo "file_roots: {base: [$FORMULA]}"
        echo "pillar_roots: {base: [$dir/pillar]}"
        echo "enable_fqdns_grains: False"
        if [ "$kernel" = Windows ]; then
            echo "grains: {kernel: Windows, os: Windows, os_family: Windows, osrelease: 2022Server, osversion: 10.0.20348}"
        fi
    } >"$dir/minion"
    echo "$dir"
}
call() { # call DIR ARGS...: salt-call --local with that minion's config, output as JSON
    local dir=$1
    shift
    "$VENV/bin/salt-call" --local -c "$dir" --out=json --log-level=quiet "$@"
}
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['local']$2)" "$1"; }

empty=$T/empty.sls
echo "{}" >"$empty"
for kernel in Linux Windows; do
    dir=$(setup "$kernel" "$empty")
    call "$dir" saltutil.sync_modules >/dev/null
    call "$dir" state.show_sls protector >"$dir/states.json" || { cat "$dir/states.json"; fail "$kernel: state.show_sls protector failed"; }
    call "$dir" state.show_sls protector.clean >"$dir/clean.json" || { cat "$dir/clean.json"; fail "$kernel: state.show_sls protector.clean failed"; }
    call "$dir" cp.get_template salt://protector/files/protector.yaml.j2 "$dir/protector.yaml" >/dev/null
    call "$dir" protector.heartbeat_path >"$dir/beat.json"
    python3 - "$kernel" "$dir" "$PROTECTOR" <<'PY' || fail "$kernel: rendered formula is not as expected"
import json, subprocess, sys
kernel, d, protector = sys.argv[1:]
states = json.load(open(d + "/states.json"))["local"]
clean = json.load(open(d + "/clean.json"))["local"]
beat = json.load(open(d + "/beat.json"))["local"]
def arg(state, fun, key):
    for item in states[state][fun]:
        if isinstance(item, dict) and key in item:
            return item[key]
    raise KeyError((state, fun, key))
win = kernel == "Windows"
expect = {
    "bin": r"C:\ProgramData\protector\protector.exe" if win else "/usr/local/bin/protector",
    "config": r"C:\ProgramData\protector\protector.yaml" if win else "/etc/protector/protector.yaml",
    "heartbeat": r"C:\ProgramData\protector\salt-minion.alive" if win else "/run/protector/salt-minion.alive",
    "stop": "net stop salt-minion" if win else
            "systemctl stop salt-minion; s=$?; pkill -KILL -f 'bin/[s]alt-minion'; exit $s",
    "start": "net start salt-minion" if win else "systemctl start salt-minion",
}
problems = []
def check(what, got, want):
    if got != want:
        problems.append(f"{what}: got {got!r}, want {want!r}")
check("binary path", arg("protector-binary", "file", "name"), expect["bin"])
check("binary source", arg("protector-binary", "file", "source"),
      "salt://protector/files/protector" + (".exe" if win else ""))
check("config path", arg("protector-config", "file", "name"), expect["config"])
check("module synced before the service", "protector-module" in states, True)
if win:
    check("service install", arg("protector-service-installed", "cmd", "name"),
          f'"{expect["bin"]}" service install --config "{expect["config"]}"')
    check("no systemd unit on Windows", "protector-unit" in states, False)
    check("clean unregisters the service", "protector-clean-unregister" in clean, True)
    check("a changed config is reloaded over the pipe", arg("protector-reload", "cmd", "name"),
          f'"{expect["bin"]}" reload --config "{expect["config"]}"')
    check("the reload waits for a service just started", arg("protector-reload", "cmd", "retry"),
          {"attempts": 5, "interval": 2})
else:
    check("unit", arg("protector-unit", "file", "name"), "/etc/systemd/system/protector.service")
    dropin = arg("protector-unit-paths", "file", "contents")
    check("unit runs the config", f"ExecStart={expect['bin']} --config {expect['config']}" in dropin, True)
    check("reload on config change", "protector-reload" in states, True)
names = [i["names"] for i in clean["protector-clean-files"]["file"] if isinstance(i, dict) and "names" in i][0]
check("clean removes binary and config, keeps state", sorted(names), sorted([expect["bin"], expect["config"]]))
# The module touches exactly the heartbeat the formula configures.
check("protector.beat's path", beat, expect["heartbeat"])
# The rendered config: valid for that OS, salt-minion target with the OS's defaults.
os_name = "windows" if win else "linux"
out = subprocess.run([protector, "check", "--config", d + "/protector.yaml", "--os", os_name],
                     capture_output=True, text=True)
if out.returncode != 0:
    problems.append("protector check failed: " + out.stderr)
text = out.stdout
# The minion depends on its master (Salt's default name `salt`, port 4506, as this minion's
# configuration names no other), and its restarts are spread over 3 minutes.
for want in [f"target salt-minion", f"heartbeat:       {expect['heartbeat']}", "timeout:         5m",
             "command_timeout: 2m", "event.send", "depends_on:      tcp salt:4506 (any one)",
             "restart_splay:   a random wait of up to 3m",
             # It gives up (and the reactor can act) after 20 restarts in a row.
             "max_restarts:    20", "service:         salt-minion"]:
    check(f"check output has {want!r}", want in text, True)
# The minion's own pid file (Salt's default under this minion's root_dir, as its configuration
# names no other), so that `protector status` shows its pid.
pid_line = [l for l in text.splitlines() if l.startswith("  pid_file:")]
check("the minion's pid file", [l.endswith("/var/run/salt-minion.pid") for l in pid_line], [True])
# Before a restart, the diagnose command keeps what the minion looked like; on Linux its
# shell script runs here as it is (no minion: it still says each part).
diag = [l for l in text.splitlines() if l.startswith("  diagnose:")]
check("a diagnose command, bounded", [l.endswith("(at most 10s)") for l in diag], [True])
if diag and not win:
    argv = json.loads(diag[0].split(":", 1)[1].strip().rsplit(" (at most", 1)[0])
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    for part in ["== TCP connections", "== the minion's last log lines"]:
        check(f"the diagnose script says {part!r}", part in ran.stdout, True)
    check("the diagnose script is good shell", "syntax" in ran.stderr, False)
if diag and win:
    check("the diagnose command asks PowerShell", "Get-NetTCPConnection" in diag[0], True)
shell = '["cmd","/C",' if win else '["/bin/sh","-c",'
for cmd in ["stop", "start"]:
    line = f'{cmd}:'.ljust(17) + shell + json.dumps(expect[cmd]) + "]"
    check(f"{cmd} command", line in text, True)
if problems:
    print("\n".join(problems))
    print(text)
    sys.exit(1)
print(f"  {kernel}: states, paths, service, clean and protector.yaml as expected")
PY
done

# pillar.example: more targets and settings render to a config protector accepts.
for kernel in Linux Windows; do
    dir=$(setup "$kernel" "$FORMULA/pillar.example")
    call "$dir" cp.get_template salt://protector/files/protector.yaml.j2 "$dir/protector.yaml" >/dev/null
    os_name=$([ "$kernel" = Windows ] && echo windows || echo linux)
    out=$("$PROTECTOR" check --config "$dir/protector.yaml" --os "$os_name") ||
        { cat "$dir/protector.yaml"; fail "$kernel: pillar.example renders to an invalid config"; }
    for want in "2 targets" "target salt-minion" "target nginx" "max_parallel_commands: 16" "timeout:         10m"; do
        grep -qF "$want" <<<"$out" || { echo "$out"; fail "$kernel: pillar.example: no '$want' in the checked config"; }
    done
    echo "  $kernel: pillar.example renders to a valid config with its 2 targets"
done
# The masters the minion's own configuration names: a list (failover) with its master_port,
# IPv6 in brackets, a port written with the master kept; none for a minion without a master.
for kernel in Linux Windows; do
    dir=$(setup "$kernel" "$empty")
    printf 'master: [m1.example, "2001:db8::5", "[2001:db8::6]:4510", "10.1.2.3:4520"]\nmaster_port: 4507\nmaster_type: failover\n' >>"$dir/minion"
    call "$dir" cp.get_template salt://protector/files/protector.yaml.j2 "$dir/protector.yaml" >/dev/null
    os_name=$([ "$kernel" = Windows ] && echo windows || echo linux)
    out=$("$PROTECTOR" check --config "$dir/protector.yaml" --os "$os_name")
    want="tcp m1.example:4507, [2001:db8::5]:4507, [2001:db8::6]:4510, 10.1.2.3:4520 (any one)"
    grep -qF "$want" <<<"$out" || { echo "$out"; fail "$kernel: the salt-minion does not depend on the configured masters"; }
    dir=$(setup "$kernel" "$empty")
    echo "master_type: disable" >>"$dir/minion"
    call "$dir" cp.get_template salt://protector/files/protector.yaml.j2 "$dir/protector.yaml" >/dev/null
    ! grep -q depends_on "$dir/protector.yaml" || fail "$kernel: a minion with master_type disable depends on a master"
done
printf 'protector:\n  salt_minion_depends_on_master: false\n' >"$T/nodep.sls"
dir=$(setup Linux "$T/nodep.sls")
call "$dir" cp.get_template salt://protector/files/protector.yaml.j2 "$dir/protector.yaml" >/dev/null
! grep -q depends_on "$dir/protector.yaml" || fail "salt_minion_depends_on_master: false leaves the dependency in"
echo "  the salt-minion depends on the masters the minion's configuration names (Linux, Windows), none without"
# A heartbeat and binary set in pillar: the module finds them too (Salt 3008 masks pillar
# values a module reads through pillar.get).
custom=$T/custom.sls
printf 'protector:\n  bin: /opt/protector/bin/protector\n  salt_minion:\n    heartbeat: /srv/beats/minion.alive\n' >"$custom"
dir=$(setup Linux "$custom")
call "$dir" saltutil.sync_modules >/dev/null
got=$(call "$dir" protector.heartbeat_path | python3 -c 'import json,sys; print(json.load(sys.stdin)["local"])')
[ "$got" = /srv/beats/minion.alive ] || fail "protector.heartbeat_path ignores the pillar: $got"
call "$dir" cp.get_template salt://protector/files/protector.yaml.j2 "$dir/protector.yaml" >/dev/null
grep -qF 'heartbeat: /srv/beats/minion.alive' "$dir/protector.yaml" || fail "the config ignores the pillar's heartbeat"
got=$( (call "$dir" protector.status || true) | python3 -c 'import json,sys; print(json.load(sys.stdin)["local"]["error"])')
case "$got" in *"/opt/protector/bin/protector"*) ;; *) fail "protector.status does not run the pillar's binary: $got" ;; esac
echo "  pillar's heartbeat and binary reach the module and the config"
# The operators' functions build protector's command line: a stand-in binary (from pillar)
# answers with the arguments it was given.
fake=$T/fake-protector
printf '#!/bin/sh\nexec python3 -c "import json,sys; print(json.dumps({\\"ok\\": True, \\"args\\": sys.argv[1:]}))" "$@"\n' >"$fake"
chmod +x "$fake"
printf 'protector:\n  bin: %s\n' "$fake" >"$T/fake.sls"
dir=$(setup Linux "$T/fake.sls")
call "$dir" saltutil.sync_modules >/dev/null
args_of() { call "$dir" "$@" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["local"]["args"]))'; }
tail=" --config /etc/protector/protector.yaml --json"
for c in "protector.pause salt-minion for=30m reason=upgrade|pause salt-minion --for 30m --reason upgrade" \
    "protector.pause salt-minion until_resumed=True|pause salt-minion --until-resumed" \
    "protector.resume all=True|resume --all" "protector.restart a b|restart a b" \
    "protector.reset all=True|reset --all" "protector.reload|reload" \
    "protector.incidents salt-minion last=1|incidents salt-minion --last 1" \
    "protector.incidents id=2026-12-06T220215Z-a-e677|incidents show 2026-12-06T220215Z-a-e677"; do
    # shellcheck disable=SC2086 # the call's words
    got=$(args_of ${c%%|*})
    [ "$got" = "${c#*|}$tail" ] || fail "salt-call ${c%%|*} ran protector $got"
done
call "$dir" protector.resume >"$T/noname.json" 2>&1 && fail "protector.resume with no target name was accepted"
grep -q "name at least one target" "$T/noname.json" || { cat "$T/noname.json"; fail "protector.resume without a name does not say why"; }
echo "  protector.pause/resume/restart/reset/reload/incidents run protector with the arguments asked for"
# An aarch64 minion gets the aarch64 build (publish.sh puts both on the file server).
dir=$(setup Linux "$empty")
echo "grains: {cpuarch: aarch64}" >>"$dir/minion"
call "$dir" state.show_sls protector >"$dir/states.json" || fail "aarch64: state.show_sls failed"
grep -q '"source": "salt://protector/files/protector-aarch64"' "$dir/states.json" ||
    { cat "$dir/states.json"; fail "an aarch64 minion does not get protector-aarch64"; }
echo "  an aarch64 minion gets the aarch64 binary"
# Windows before 10 / Server 2016 gets protector-win7.exe, installed under the same name.
for release in "2012ServerR2 6.3.9600 protector-win7.exe" "7 6.1.7601 protector-win7.exe" \
    "2016Server 10.0.14393 protector.exe" "11 10.0.22631 protector.exe"; do
    set -- $release
    dir=$(setup Windows "$empty")
    sed -i "s/osrelease: 2022Server, osversion: 10.0.20348/osrelease: $1, osversion: $2/" "$dir/minion"
    call "$dir" state.show_sls protector >"$dir/states.json" || fail "Windows $1: state.show_sls failed"
    grep -q "\"source\": \"salt://protector/files/$3\"" "$dir/states.json" ||
        { cat "$dir/states.json"; fail "Windows $1 ($2) does not get $3"; }
    grep -q '"name": "C:\\\\ProgramData\\\\protector\\\\protector.exe"' "$dir/states.json" ||
        { grep -n ProgramData "$dir/states.json" | head -3; fail "Windows $1: not installed as protector.exe"; }
done
echo "  Windows 7 / 2008 R2 / 2012 R2 get protector-win7.exe, 10 / 2016 and later protector.exe"
# install: package: the site's .deb/.rpm with pkg.installed; the package's unit (the formula
# installs none), /usr/bin/protector wherever the formula or the module runs protector; clean
# removes the package. On Windows, and for an unknown way, the state fails and says why.
pkg=$T/package.sls
printf 'protector:\n  install: package\n  package_version: 0.1.0-1\n' >"$pkg"
for kernel in Linux Windows; do
    dir=$(setup "$kernel" "$pkg")
    call "$dir" saltutil.sync_modules >/dev/null
    call "$dir" state.show_sls protector >"$dir/states.json" || { cat "$dir/states.json"; fail "$kernel: install: package does not render"; }
    call "$dir" state.show_sls protector.clean >"$dir/clean.json" || { cat "$dir/clean.json"; fail "$kernel: clean with install: package does not render"; }
    (call "$dir" protector.status || true) >"$dir/status.json"
    python3 - "$kernel" "$dir" <<'PY' || fail "$kernel: install: package is not rendered as expected"
import json, sys
kernel, d = sys.argv[1:]
states = json.load(open(d + "/states.json"))["local"]
clean = json.load(open(d + "/clean.json"))["local"]
status = json.load(open(d + "/status.json"))["local"]
def args(state, fun):
    return {k: v for i in states[state][fun] if isinstance(i, dict) for k, v in i.items() if k != "order"}
problems = []
def check(what, got, want):
    if got != want:
        problems.append(f"{what}: got {got!r}, want {want!r}")
if kernel == "Windows":
    check("refused on Windows", "test" in states["protector-binary"], True)
    check("the reason", "for Linux" in args("protector-binary", "test")["name"], True)
else:
    check("pkg.installed", args("protector-binary", "pkg"), {"name": "protector", "version": "0.1.0-1"})
    check("no unit file from the formula", "protector-unit" in states, False)
    dropin = args("protector-unit-paths", "file")["contents"]
    check("the drop-in runs the package's binary",
          "ExecStart=/usr/bin/protector --config /etc/protector/protector.yaml" in dropin, True)
    check("config checked with the package's binary",
          args("protector-config", "file")["check_cmd"].startswith('"/usr/bin/protector" check'), True)
    check("clean removes the package", "pkg" in clean.get("protector-clean-package", {}), True)
    names = [i["names"] for i in clean["protector-clean-files"]["file"] if isinstance(i, dict) and "names" in i][0]
    check("clean leaves the package's binary to the package", names, ["/etc/protector/protector.yaml"])
    check("the module runs the package's binary", "/usr/bin/protector" in status.get("error", ""), True)
if problems:
    print("\n".join(problems))
    sys.exit(1)
PY
done
printf 'protector:\n  install: tarball\n' >"$pkg"
dir=$(setup Linux "$pkg")
call "$dir" state.show_sls protector >"$dir/states.json" || fail "install: tarball does not render"
grep -q 'install must be binary or package, not tarball' "$dir/states.json" || fail "an unknown install way is not refused"
echo "  install: package: pkg.installed, the package's unit and binary, clean removes the package; refused on Windows"
say "formula renders as expected for Linux and Windows minions"

#!/usr/bin/env bash
# The .deb and the .rpm that `.ci/dist` builds, installed as a sysadmin installs them.
#
# .deb: `dpkg -i` into a Debian system booted with systemd-nspawn (systemd as PID 1): the unit
# is installed in /usr/lib/systemd/system, enabled and active, and the packaged config watches
# nothing (protector logs no_targets), with its manual page; `protector check` (no argument: the default config path)
# accepts the installed config; an upgrade restarts protector and keeps an operator's edited
# config; `dpkg -r` stops the service and removes the binary and the unit, keeping the config;
# `dpkg --purge` removes the config, the state directory and the enablement. An upgrade over
# a broken edit keeps protector watching on the last accepted config. A target file dropped
# into /etc/protector/conf.d is watched after a reload. Under systemd,
# protector's journal records carry their priority and no second timestamp, and `systemctl
# reload` fails when the config is refused.
# .rpm: its file list, config file flags (%config(noreplace)) and scriptlets inspected with
# rpm -qlp / -qp; `rpm -i --root` into a temporary root (an overlay of the same Debian system,
# which has the shell and systemctl the scriptlets run): files in place, the unit enabled;
# an upgrade keeps the edited config; `rpm -e` removes it.
#
# Uses dist/ as `.ci/dist` left it (runs it when the packages are missing). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SAY_AS=packages
source tests/salt/lib.sh
[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn, overlay mounts)"

VERSION=$(.ci/version)
DEB=$ROOT/dist/protector_$VERSION-1_amd64.deb
RPM=$ROOT/dist/protector-$VERSION-1.x86_64.rpm
# dist/ as .ci/dist left it, if it was built from this commit (CI runs .ci/dist just before);
# otherwise built again, so that old packages are never what is tested.
built_from() { "$ROOT/dist/protector-$VERSION-x86_64-unknown-linux-musl" --version 2>/dev/null | grep -o 'commit [0-9a-f]*'; }
if ! { [ -f "$DEB" ] && [ -f "$RPM" ] && [ "$(built_from)" = "commit $(git rev-parse --short=12 HEAD)" ]; }; then
    say "dist/ is missing or from another commit: .ci/dist"
    .ci/dist
fi
apt_get systemd-container debootstrap rpm

# The Salt kit publishes a release's files as they are (no toolchain), and refuses a file
# that does not match the release's SHA256SUMS.
mkdir -p "$ROOT/target/release-copy"
cp "$ROOT/dist/"* "$ROOT/target/release-copy/"
PUB=$(mktemp -d /tmp/ppub.XXXXXX)
"$ROOT/examples/salt/publish.sh" --from "$ROOT/target/release-copy" "$PUB" >/dev/null || fail "publish.sh --from a release failed"
cmp -s "$PUB/protector/files/protector" "$ROOT/dist/protector-$VERSION-x86_64-unknown-linux-musl" &&
    cmp -s "$PUB/protector/files/protector-aarch64" "$ROOT/dist/protector-$VERSION-aarch64-unknown-linux-musl" ||
    fail "publish.sh --from did not publish the release's binaries"
printf 'x' >>"$ROOT/target/release-copy/protector-$VERSION-aarch64-unknown-linux-musl"
if "$ROOT/examples/salt/publish.sh" --from "$ROOT/target/release-copy" "$PUB" >/dev/null 2>&1; then
    fail "publish.sh --from published a file that does not match SHA256SUMS"
fi
rm -rf "$PUB" "$ROOT/target/release-copy"
say "publish.sh --from a release: its binaries published as they are; a file not matching SHA256SUMS refused"
minion_root
export PATH=$CACHE/tools/bin:$PATH

T=$(mktemp -d /tmp/ppkg.XXXXXX)
cleanup() {
    local status=$?
    set +e
    if [ "$status" -ne 0 ] && has_leader deb 2>/dev/null; then
        in_minion deb journalctl -u protector --no-pager -n 30 2>/dev/null | sed 's/^/  deb: /'
    fi
    cleanup_minions
    mountpoint -q "$T/rpm/root" && umount -l "$T/rpm/root"
    rm -rf "$T"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The upgrades: the same files under the next revision, as a site's next build would be.
cargo deb -q --no-build --target x86_64-unknown-linux-musl --deb-revision 2 -o "$T/" >/dev/null
cargo generate-rpm --target x86_64-unknown-linux-musl -s 'release = "2"' -o "$T/"
DEB2=$T/protector_$VERSION-2_amd64.deb
RPM2=$T/protector-$VERSION-2.x86_64.rpm
[ -f "$DEB2" ] && [ -f "$RPM2" ] || fail "upgrade packages not built: $(ls "$T")"

CONFIG=/etc/protector/protector.yaml
# The operator's edit: the target stays off (nothing to restart here), its timeout changes.
EDIT='s/^    timeout: 5m$/    timeout: 7m  # edited by the operator/'

# --- .deb ------------------------------------------------------------------------------------
say "booting a Debian system with systemd"
boot_minion deb
R=$T/deb/root
cp "$DEB" "$DEB2" "$R/var/tmp/"
in_minion deb dpkg -i "/var/tmp/$(basename "$DEB")" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -i failed"; }
active() { in_minion deb systemctl is-active -q protector; }
wait_for 60 "protector to be active after dpkg -i" active
[ "$(in_minion deb systemctl is-enabled protector)" = enabled ] || fail "the unit is not enabled"
# (Debian's /lib is /usr/lib: systemd may name the unit by either path.)
in_minion deb dpkg-query -L protector | grep -qx /usr/lib/systemd/system/protector.service &&
    [ "$(in_minion deb readlink -f "$(in_minion deb systemctl show -p FragmentPath --value protector)")" = /usr/lib/systemd/system/protector.service ] ||
    fail "the unit in use is not /usr/lib/systemd/system/protector.service"
# systemd's own check of the installed unit: no unknown directive, no bad value.
verify=$(in_minion deb systemd-analyze verify protector.service 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$(grep -i protector <<<"$verify")" ] || fail "systemd-analyze verify complains: $verify"
logged() { in_minion deb journalctl -u protector -o cat --no-pager | grep -q "event=\"$1\""; }
wait_for 30 "no_targets in protector's journal" logged no_targets
[ "$(stat -c '%a %U' "$R$CONFIG")" = "600 root" ] || fail "config is not root's 0600: $(stat -c '%a %U' "$R$CONFIG")"
out=$(in_minion deb protector check 2>&1) || fail "protector check on the installed config failed: $out"
grep -q "^$CONFIG: valid for linux; 1 target" <<<"$out" && grep -q "^target salt-minion (disabled)" <<<"$out" ||
    fail "unexpected check output: $out"
in_minion deb dpkg-query -L protector | grep -qx /usr/share/doc/protector/README.md || fail "no README in the package"
in_minion deb dpkg-query -L protector | grep -qx /usr/share/man/man1/protector.1.gz || fail "no manual page in the package"
zcat "$R/usr/share/man/man1/protector.1.gz" | grep -q '^\.SH "EXIT STATUS"' || fail "the manual page has no EXIT STATUS"
# The demo, as the README tells a package's user to run it: a copy in a directory of their own.
for ex in demo multi protector; do
    in_minion deb dpkg-query -L protector | grep -qx "/usr/share/doc/protector/examples/$ex.yaml" ||
        fail "no examples/$ex.yaml in the package"
done
out=$(in_minion deb sh -c 'd=$(mktemp -d) && cp /usr/share/doc/protector/examples/demo.yaml "$d/" && protector check "$d/demo.yaml"' 2>&1) ||
    fail "the packaged demo does not pass check: $out"
say "dpkg -i: unit enabled and active, watching nothing; protector check accepts the config"

# The journal: each record has its priority (journalctl -p filters on it) and no timestamp of
# protector's own.
warned=$(in_minion deb journalctl -u protector -p warning -o cat --no-pager)
grep -q '^WARN no enabled targets; nothing to watch event="no_targets"' <<<"$warned" ||
    fail "journalctl -p warning does not show no_targets as protector wrote it: $warned"
errors=$(in_minion deb journalctl -u protector -p err -o cat --no-pager)
[ -z "$(grep 'event=' <<<"$errors")" ] || fail "journalctl -p err shows records below error: $errors"
infos=$(in_minion deb journalctl -u protector -p info -o cat --no-pager)
grep -q '^INFO .*event="started"' <<<"$infos" || fail "no INFO started record in the journal: $infos"
say "journal: records at their priority (-p warning shows no_targets, -p err nothing), no second timestamp"
# The scheduler thread runs ahead of the commands it starts (nice -10, as root; the packaged
# binary is a musl build, whose sched_* functions only say ENOSYS: protector asks the kernel).
pid=$(in_minion deb systemctl show -p MainPID --value protector)
nice=$(in_minion deb cut -d' ' -f19 "/proc/$pid/stat")
[ "$nice" = -10 ] || fail "the packaged protector's scheduler thread runs at nice $nice, not -10"
say "the packaged protector's scheduler thread runs at nice -10"

# A refused reload fails `systemctl reload` with the reason; the old config goes on.
cp "$R$CONFIG" "$T/accepted.yaml"
printf 'bogus_key: 1\n' >>"$R$CONFIG"
pid=$(in_minion deb systemctl show -p MainPID --value protector)
if out=$(in_minion deb systemctl reload protector 2>&1); then
    fail "systemctl reload succeeded on an invalid config: $out"
fi
active || fail "protector is not active after a refused reload"
[ "$(in_minion deb systemctl show -p MainPID --value protector)" = "$pid" ] || fail "a refused reload restarted protector"
why=$(in_minion deb journalctl -u protector -o cat --no-pager)
grep -q "bogus_key" <<<"$why" && grep -q "reload refused; still running the previous config" <<<"$why" ||
    fail "the journal does not say why the reload was refused: $(tail -n 5 <<<"$why")"
cp "$T/accepted.yaml" "$R$CONFIG"
in_minion deb systemctl reload protector || fail "systemctl reload of the valid config failed"
say "systemctl reload: refused config -> reload fails, the reason in the journal, protector runs on"

# A target dropped into /etc/protector/conf.d (as a package or a Salt state adds one) is taken
# at the next reload, and `check` and `status` show it; removed, it is gone at the next.
[ -f "$R/etc/protector/conf.d/README" ] || fail "no /etc/protector/conf.d/README in the package"
cat >"$R/etc/protector/conf.d/extra.yaml" <<'YAML'
targets:
  - name: extra
    heartbeat: /run/protector/extra.alive
    timeout: 1h
    start: /bin/true
YAML
chmod 600 "$R/etc/protector/conf.d/extra.yaml"
in_minion deb systemctl reload protector || fail "reload with a target in conf.d failed"
out=$(in_minion deb protector check 2>&1) || fail "check with a target in conf.d failed: $out"
grep -q "^target extra (from /etc/protector/conf.d/extra.yaml)$" <<<"$out" ||
    fail "check does not show the target of conf.d/extra.yaml: $out"
out=$(in_minion deb protector status 2>&1) || true
grep -q "^extra " <<<"$out" || fail "status does not show the target of conf.d/extra.yaml: $out"
rm "$R/etc/protector/conf.d/extra.yaml"
in_minion deb systemctl reload protector || fail "reload without conf.d/extra.yaml failed"
out=$(in_minion deb protector status 2>&1) || true
! grep -q "^extra " <<<"$out" || fail "status still shows the removed target: $out"
say "conf.d: a dropped target file is watched after systemctl reload (check names its file), gone once removed"

# What a start command leaves running (here a loop that writes to the output it inherited and
# counts) survives protector being killed, then upgraded: it would die of SIGPIPE at its next
# write if protector were the only reader of that output. Its own heartbeat keeps it from
# being restarted; a loop that died would be, with a new pid.
cat >>"$R$CONFIG" <<'YAML'
  - name: writer
    heartbeat: /run/protector/writer.alive
    timeout: 5s
    shell: true
    start: (i=0; while [ ! -e /root/writer.stop ]; do i=$((i+1)); echo tick $i; echo $i >/root/writer.count; touch /run/protector/writer.alive; sleep 0.2; done) & echo $! >/root/writer.pid
YAML
in_minion deb systemctl reload protector || fail "reload with the writer target failed"
wait_for 60 "protector to start the writer" test -s "$R/root/writer.pid"
writer=$(cat "$R/root/writer.pid")
drained() { in_minion deb pgrep -f -- '__drain-output writer$' >/dev/null; }
wait_for 30 "a drain holding the writer's output once its start command ended" drained
counted() { [ "$(cat "$R/root/writer.count" 2>/dev/null || echo 0)" -gt "$1" ]; }
pid=$(in_minion deb systemctl show -p MainPID --value protector)
in_minion deb kill -9 "$pid"
restarted() { active && [ "$(in_minion deb systemctl show -p MainPID --value protector)" != "$pid" ]; }
wait_for 60 "systemd to start protector again after SIGKILL" restarted
wait_for 30 "the writer writing after protector was killed" counted "$(cat "$R/root/writer.count")"
say "a daemon left by a start command: still writing after protector was SIGKILLed (a drain holds its output)"

sed -i "$EDIT" "$R$CONFIG"
in_minion deb systemctl reload protector
old_pid=$(in_minion deb systemctl show -p MainPID --value protector)
in_minion deb dpkg -i "/var/tmp/$(basename "$DEB2")" >"$T/dpkg2.log" 2>&1 || { cat "$T/dpkg2.log"; fail "upgrade failed"; }
[ "$(in_minion deb dpkg-query -W -f '${Version}' protector)" = "$VERSION-2" ] || fail "not upgraded"
grep -q 'edited by the operator' "$R$CONFIG" || fail "the upgrade replaced the edited config"
[ ! -e "$R$CONFIG.dpkg-new" ] && [ ! -e "$R$CONFIG.dpkg-dist" ] || fail "the upgrade left a .dpkg-new/.dpkg-dist config"
wait_for 60 "protector to be active after the upgrade" active
new_pid=$(in_minion deb systemctl show -p MainPID --value protector)
[ "$new_pid" != "$old_pid" ] || fail "protector was not restarted by the upgrade"
out=$(in_minion deb protector check 2>&1) && grep -q 'timeout:         7m' <<<"$out" ||
    fail "the edited config is not the one in use: $out"
say "upgrade: protector restarted, the edited config kept"
wait_for 30 "the writer writing after the upgrade" counted "$(cat "$R/root/writer.count")"
in_minion deb kill -0 "$writer" || fail "the writer started before the upgrade is gone"
[ "$(cat "$R/root/writer.pid")" = "$writer" ] || fail "the writer was restarted (it had died)"
touch "$R/root/writer.stop"
sed -i '/^  - name: writer$/,$d' "$R$CONFIG"
in_minion deb systemctl reload protector || fail "reload without the writer failed"
say "upgrade: the daemon left by a start command is the same process, still writing"

# An edit with a mistake, then an upgrade (here: the same package again, which restarts
# protector as an upgrade does): the host stays watched on the last accepted config, and
# dpkg, the journal and `protector status` say so.
cp "$R$CONFIG" "$T/accepted.yaml"
printf 'bogus_key: 1\n' >>"$R$CONFIG"
old_pid=$(in_minion deb systemctl show -p MainPID --value protector)
in_minion deb dpkg -i "/var/tmp/$(basename "$DEB2")" >"$T/dpkg-bad.log" 2>&1 || { cat "$T/dpkg-bad.log"; fail "the upgrade over a broken edit failed"; }
grep -q "WARNING: $CONFIG is refused" "$T/dpkg-bad.log" && grep -q bogus_key "$T/dpkg-bad.log" ||
    fail "the upgrade did not warn of the refused config: $(cat "$T/dpkg-bad.log")"
wait_for 60 "protector to be active after the upgrade over a broken edit" active
new_pid=$(in_minion deb systemctl show -p MainPID --value protector)
[ "$new_pid" != "$old_pid" ] || fail "protector was not restarted by the upgrade"
refused() { in_minion deb journalctl -u protector -p err -o cat --no-pager | grep -q 'event="config_refused"'; }
wait_for 30 "config_refused at priority err in the journal" refused
out=$(in_minion deb protector status 2>&1) && fail "status exits 0 while the config is refused: $out"
grep -q '^CONFIG REFUSED' <<<"$out" && grep -q bogus_key <<<"$out" && grep -q '/etc/protector/.protector.yaml.accepted' <<<"$out" ||
    fail "status does not say the config is refused and what runs instead: $out"
sleep_s=$(in_minion deb systemctl show -p NRestarts --value protector)
[ "$sleep_s" = 0 ] || fail "systemd restarted protector $sleep_s times"
cp "$T/accepted.yaml" "$R$CONFIG"
in_minion deb systemctl reload protector || fail "reload of the fixed config failed"
out=$(in_minion deb protector status 2>&1) || true
! grep -q '^CONFIG REFUSED' <<<"$out" || fail "status still says refused after the fix and reload: $out"
say "upgrade over a broken edit: dpkg warned, protector runs on the last accepted config (status, journal say so); fixed and reloaded, the file is in force"

# systemd older than 235 (CentOS 7 has 219) ignores StateDirectory= and
# RuntimeDirectoryPreserve=: as there, neither is in force (a drop-in clears them) and the
# directories are gone; protector must make its state directory itself, root's and closed to
# others, and start as usual.
DROPIN=/etc/systemd/system/protector.service.d/old-systemd.conf
in_minion deb systemctl stop protector
mkdir -p "$(dirname "$R$DROPIN")"
printf '[Service]\nStateDirectory=\nRuntimeDirectoryPreserve=no\n' >"$R$DROPIN"
rm -rf "$R/var/lib/protector"
in_minion deb systemctl daemon-reload
[ -z "$(in_minion deb systemctl show -p StateDirectory --value protector)" ] ||
    fail "the drop-in did not clear StateDirectory="
in_minion deb systemctl start protector
wait_for 60 "protector to be active without StateDirectory=" active
has_state() { [ -s "$R/var/lib/protector/state.json" ]; }
wait_for 30 "protector to write its state file into a directory it made" has_state
perm=$(stat -c '%U %A' "$R/var/lib/protector")
case "$perm" in "root d"????-??-?) ;; *) fail "/var/lib/protector made by protector is $perm" ;; esac
rm -f "$R$DROPIN"
in_minion deb systemctl daemon-reload
in_minion deb systemctl restart protector
wait_for 60 "protector to be active again with the packaged unit alone" active
say "without StateDirectory= (systemd < 235): protector made /var/lib/protector ($perm) itself"

in_minion deb dpkg -r protector >"$T/dpkg3.log" 2>&1 || { cat "$T/dpkg3.log"; fail "dpkg -r failed"; }
state=$(in_minion deb systemctl is-active protector 2>/dev/null) || true
[ "$state" = inactive ] || [ "$state" = unknown ] || fail "protector is still $state after dpkg -r"
in_minion deb pgrep -x protector >/dev/null && fail "a protector process is left after dpkg -r"
for f in /usr/bin/protector /usr/lib/systemd/system/protector.service; do
    [ ! -e "$R$f" ] || fail "$f is left after dpkg -r"
done
in_minion deb systemctl daemon-reload
load=$(in_minion deb systemctl show -p LoadState --value protector)
[ "$load" = not-found ] || [ "$load" = masked ] || fail "systemd still knows the unit after dpkg -r: $load"
grep -q 'edited by the operator' "$R$CONFIG" || fail "dpkg -r removed the config (only --purge should)"
in_minion deb dpkg --purge protector >/dev/null 2>&1 || fail "dpkg --purge failed"
# (As every Debian service: the enablement is forgotten at purge, so a reinstall keeps it.)
wants=/etc/systemd/system/multi-user.target.wants/protector.service
[ ! -e "$R$CONFIG" ] && [ ! -e "$R/var/lib/protector" ] && [ ! -L "$R$wants" ] ||
    fail "dpkg --purge left the config, /var/lib/protector or $wants"
say "dpkg -r: stopped, binary and unit removed, config kept; --purge removed the config, state and enablement"

# --- .rpm ------------------------------------------------------------------------------------
list=$(rpm -qlp "$RPM")
for f in /usr/bin/protector /usr/lib/systemd/system/protector.service "$CONFIG" \
    /usr/share/doc/protector/README.md /usr/share/licenses/protector/LICENSE \
    /usr/share/doc/protector/examples/demo.yaml /usr/share/doc/protector/examples/multi.yaml \
    /usr/share/man/man1/protector.1.gz /etc/protector/conf.d/README; do
    grep -qx "$f" <<<"$list" || fail "rpm -qlp: $f is not in the package"
done
flags=$(rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILENAMES}\n]' "$RPM")
grep -qx "cn -rw------- $CONFIG" <<<"$flags" || fail "the config is not %config(noreplace) 0600: $flags"
scripts=$(rpm -qp --scripts "$RPM")
for want in 'systemctl enable protector.service' 'systemctl stop protector.service' 'try-restart protector.service'; do
    grep -q "$want" <<<"$scripts" || fail "rpm -qp --scripts: no '$want'"
done
# Static: no shared library required (the scriptlets' /bin/sh is).
! rpm -qp --requires "$RPM" | grep -q '\.so' || fail "the static build requires libraries: $(rpm -qp --requires "$RPM")"

mkdir -p "$T/rpm/upper" "$T/rpm/work" "$T/rpm/root"
mount -t overlay overlay -o "lowerdir=$MINION_ROOT,upperdir=$T/rpm/upper,workdir=$T/rpm/work" "$T/rpm/root"
RR=$T/rpm/root
# --nodeps: the temporary root's packages are Debian's, not in its rpm database.
rpm -i --force-debian --root "$RR" --nodeps "$RPM" || fail "rpm -i --root failed"
[ -x "$RR/usr/bin/protector" ] && [ -f "$RR/usr/lib/systemd/system/protector.service" ] || fail "rpm -i: files missing"
[ -L "$RR/etc/systemd/system/multi-user.target.wants/protector.service" ] || fail "rpm -i: the unit is not enabled"
out=$(chroot "$RR" /usr/bin/protector check 2>&1) || fail "protector check in the rpm root failed: $out"
sed -i "$EDIT" "$RR$CONFIG"
rpm -U --force-debian --root "$RR" --nodeps "$RPM2" || fail "rpm -U failed"
[ "$(rpm -q --root "$RR" --queryformat '%{RELEASE}' protector)" = 2 ] || fail "rpm -U did not upgrade"
grep -q 'edited by the operator' "$RR$CONFIG" || fail "rpm -U replaced the edited config"
rpm -e --force-debian --root "$RR" --nodeps protector 2>/dev/null || fail "rpm -e failed"
grep -q "edited by the operator" "$RR$CONFIG.rpmsave" || fail "rpm -e did not keep the edited config as .rpmsave"
[ ! -e "$RR/usr/bin/protector" ] && [ ! -L "$RR/etc/systemd/system/multi-user.target.wants/protector.service" ] ||
    fail "rpm -e left the binary or the enabled unit"
say "rpm: files, noreplace config, scriptlets; rpm -i --root enables the unit; upgrade keeps the edit; rpm -e removes it"
say "PASS"

# Shared by the Salt and package tests (sourced): Salt from PyPI on this machine, and a Debian root with
# systemd and Salt for minions booted with systemd-nspawn. Everything that takes long to make
# is cached under CACHE (between runs and between clones) and made again when missing.
SALT_VERSION=3008.4
DEBIAN_SUITE=bookworm
CACHE=${PROTECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/protector}
WHEELS=$CACHE/salt-$SALT_VERSION-wheels
VENV=$CACHE/salt-$SALT_VERSION
MINION_ROOT=$CACHE/debian-$DEBIAN_SUITE-salt-$SALT_VERSION

say() { printf '[%s %s] %s\n' "${SAY_AS:-salt}" "$(date +%T)" "$*"; }
fail() {
    say "FAIL: $*"
    exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds, or fails the test.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        [ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.3
    done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Salt's wheels (built once: salt and timelib compile here), then a venv on this machine.
salt_wheels() {
    [ -f "$WHEELS/.complete" ] && return
    say "building Salt $SALT_VERSION wheels from PyPI into $WHEELS (once, about 2 minutes)"
    rm -rf "$WHEELS"
    python3 -m pip wheel -q -w "$WHEELS" "salt==$SALT_VERSION"
    touch "$WHEELS/.complete"
}
salt_venv() {
    "$VENV/bin/salt-master" --version >/dev/null 2>&1 && return
    salt_wheels
    say "installing Salt $SALT_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" "salt==$SALT_VERSION"
}

# The minions' root: Debian with systemd as PID 1, Salt in /opt/salt with salt-minion and
# salt-call on PATH, and a salt-minion unit like the one Salt's packages ship. Never booted
# itself: every minion boots an overlay of it.
minion_root() {
    [ -f "$MINION_ROOT/.complete" ] && return
    apt_get systemd-container debootstrap
    salt_wheels
    local tmp=$MINION_ROOT.tmp mirror
    rm -rf "$tmp"
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    say "debootstrap $DEBIAN_SUITE with systemd and Python into $MINION_ROOT (once, about a minute)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,python3,python3-venv \
        "$DEBIAN_SUITE" "$tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -n 20 "$CACHE/debootstrap.log"; fail "debootstrap failed"; }
    say "installing Salt $SALT_VERSION into the minions' root"
    mkdir -p "$tmp/tmp/wheels"
    cp "$WHEELS"/*.whl "$tmp/tmp/wheels/"
    chroot "$tmp" python3 -m venv /opt/salt
    chroot "$tmp" /opt/salt/bin/pip install -q --no-index --find-links /tmp/wheels "salt==$SALT_VERSION"
    rm -rf "$tmp/tmp/wheels"
    for b in salt-minion salt-call; do ln -sf "/opt/salt/bin/$b" "$tmp/usr/bin/$b"; done
    # Salt's own unit for the minion (as its packages ship it).
    cat >"$tmp/etc/systemd/system/salt-minion.service" <<'UNIT'
[Unit]
Description=The Salt Minion
After=network.target

[Service]
KillMode=process
Type=notify
NotifyAccess=all
LimitNOFILE=8192
ExecStart=/usr/bin/salt-minion

[Install]
WantedBy=multi-user.target
UNIT
    chroot "$tmp" systemctl enable salt-minion.service >/dev/null 2>&1
    # Timings scaled down like the rest of the test: systemd waits 10 s, not 90 s, for a unit
    # that ignores SIGTERM before it kills it (protector's command_timeout outlasts both).
    mkdir -p "$tmp/etc/systemd/system.conf.d"
    printf '[Manager]\nDefaultTimeoutStopSec=10s\n' >"$tmp/etc/systemd/system.conf.d/e2e-timeouts.conf"
    # Nothing in a container needs these; they only slow its boot.
    chroot "$tmp" systemctl mask systemd-journald-audit.socket systemd-udevd.service \
        systemd-udev-trigger.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true
    touch "$tmp/.complete"
    rm -rf "$MINION_ROOT"
    mv "$tmp" "$MINION_ROOT"
}

apt_get() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# --- the master ------------------------------------------------------------------------------
# master_config DIR PUB RET PILLAR_ROOT FILE_ROOT...: a salt-master on 127.0.0.1 with its
# config in DIR/etc/master and everything it writes under DIR, serving FILE_ROOT... and
# PILLAR_ROOT (MASTER_WORKERS worker threads, default 3; MASTER_GATHER_TIMEOUT, default 5 s).
master_config() {
    local dir=$1 pub=$2 ret=$3 pillar=$4 root
    shift 4
    mkdir -p "$dir/etc/master.d"
    {
        cat <<EOF
interface: 127.0.0.1
publish_port: $pub
ret_port: $ret
root_dir: $dir
pki_dir: $dir/pki
cachedir: $dir/cache
sock_dir: $dir/sock
pidfile: $dir/master.pid
log_file: $dir/master.log
user: root
auto_accept: True
worker_threads: ${MASTER_WORKERS:-3}
gather_job_timeout: ${MASTER_GATHER_TIMEOUT:-5}
file_roots:
  base:
EOF
        for root in "$@"; do echo "    - $root"; done
        printf 'pillar_roots:\n  base:\n    - %s\n' "$pillar"
    } >"$dir/etc/master"
}
# start_master DIR: starts the master configured in DIR, waits for its event bus, and sets
# MASTER_SID (its session: its workers rename themselves, so they are found by it).
start_master() {
    salt-master -c "$1/etc" -d
    wait_for 60 "the master's pid file" test -s "$1/master.pid"
    MASTER_SID=$(ps -o sid= -p "$(cat "$1/master.pid")" | tr -d ' ')
    wait_for 60 "the master's event bus" test -S "$1/sock/master_event_pub.ipc"
}
# stop_master DIR: stops it (SIGTERM to its session) and waits until every process is gone.
stop_master() {
    pkill -TERM -s "$MASTER_SID" || true
    wait_for 60 "the master to stop" bash -c "! pgrep -s $MASTER_SID >/dev/null"
    rm -f "$1/master.pid"
}
# minion_config FILE ID PUB RET: points a minion at that master, with Salt's waits shortened
# (REAUTH_DELAY seconds of random re-authentication delay, default 0).
minion_config() {
    mkdir -p "$(dirname "$1")"
    cat >"$1" <<EOF
id: $2
master: 127.0.0.1
master_port: $4
publish_port: $3
acceptance_wait_time: 1
random_reauth_delay: ${REAUTH_DELAY:-0}
enable_fqdns_grains: False
EOF
}

# --- minions in containers ------------------------------------------------------------------
# Each minion NAME boots an overlay of MINION_ROOT at $T/NAME/root (its writes go to
# $T/NAME/upper and survive a reboot) with systemd-nspawn, started from a cgroup of its own
# (on a host with a hybrid cgroup layout nspawn leaves cgroups behind otherwise).
# They share this machine's loopback, so they reach the master on 127.0.0.1.
CGROUP_PREFIX=protector-e2e-$$
minion_dir() { echo "$T/$1"; }
nspawn_pid() { cat "$T/$1/nspawn.pid" 2>/dev/null; }
leader() { # the container's systemd (PID 1 inside)
    local p
    p=$(nspawn_pid "$1") && [ -n "$p" ] && pgrep -P "$p" -x systemd | head -n 1
}
has_leader() { [ -n "$(leader "$1")" ]; }
in_minion() { # in_minion NAME COMMAND...: runs COMMAND inside the container
    local name=$1 l
    shift
    l=$(leader "$name") && [ -n "$l" ] || fail "minion $name is not running"
    nsenter -t "$l" -a "$@"
}
system_up() {
    local s
    s=$(in_minion "$1" systemctl is-system-running 2>/dev/null) || true
    [ "$s" = running ] || [ "$s" = degraded ]
}
boot_minion() {
    local name=$1 dir=$T/$1 c
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    mountpoint -q "$dir/root" ||
        mount -t overlay overlay -o "lowerdir=$MINION_ROOT,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
    for c in systemd unified; do mkdir -p "/sys/fs/cgroup/$c/$CGROUP_PREFIX-$name"; done
    (
        for c in systemd unified; do echo "$BASHPID" >"/sys/fs/cgroup/$c/$CGROUP_PREFIX-$name/cgroup.procs"; done
        exec systemd-nspawn -q -D "$dir/root" -M "$name" --boot --register=no --keep-unit \
            --console=pipe </dev/null >>"$dir/nspawn.log" 2>&1
    ) &
    echo $! >"$dir/nspawn.pid"
    wait_for 60 "minion $name's systemd" has_leader "$name"
    wait_for 120 "minion $name to finish booting" system_up "$name"
}
# Reboots the container from inside (systemctl reboot: /run starts empty, the overlay keeps
# the disk). systemd-nspawn ends when its container reboots; it is booted again here.
reboot_minion() {
    local name=$1 old p
    old=$(leader "$name")
    p=$(nspawn_pid "$name")
    in_minion "$name" systemctl reboot || true
    wait_for 120 "minion $name to go down" bash -c "! kill -0 $old 2>/dev/null"
    if ! kill -0 "$p" 2>/dev/null || ! has_leader "$name"; then
        wait_for 60 "systemd-nspawn of $name to end" bash -c "! kill -0 $p 2>/dev/null"
        boot_minion "$name"
    else
        wait_for 120 "minion $name to finish booting" system_up "$name"
    fi
}
cleanup_minions() {
    set +e
    local d p c
    for d in "$T"/*/nspawn.pid; do
        [ -f "$d" ] || continue
        p=$(cat "$d")
        kill -TERM "$p" 2>/dev/null
    done
    for d in "$T"/*/nspawn.pid; do
        [ -f "$d" ] || continue
        p=$(cat "$d")
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$p" 2>/dev/null
    done
    sleep 0.5
    for d in "$T"/*/root; do mountpoint -q "$d" && umount -l "$d"; done
    for c in systemd unified; do
        for d in /sys/fs/cgroup/$c/$CGROUP_PREFIX-*; do
            [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
    done
    rm -rf /run/systemd/nspawn 2>/dev/null
    return 0
}

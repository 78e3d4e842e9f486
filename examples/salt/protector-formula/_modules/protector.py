"""
protector: the minion's side of the protector formula.

protector (a watchdog on each minion) restarts the salt-minion when its heartbeat file has not
changed for a while. The master writes that heartbeat by calling ``protector.beat`` on every
minion; each minion touches its own file, wherever it is on that OS, so the master needs no
per-OS path:

    salt '*' protector.beat
    salt '*' protector.status
    salt 'web*' protector.pause salt-minion for=30m reason="manual upgrade"
    salt 'web*' protector.resume salt-minion
    salt 'web*' protector.restart nginx
    salt '*' protector.reset salt-minion
    salt '*' protector.reload
    salt '*' protector.incidents salt-minion last=1

Paths come from pillar ``protector`` (the same keys as the formula's pillar), else the
formula's defaults below. They must agree with protector/defaults.yaml, kernelmap.yaml and
installmap.yaml (the formula's test checks that they do).
"""

import json
import os
import subprocess
import time

import salt.exceptions
import salt.utils.data

__virtualname__ = "protector"

# The formula's defaults (defaults.yaml, kernelmap.yaml), by the `kernel` grain.
DEFAULTS = {
    "Linux": {
        "bin": "/usr/local/bin/protector",
        "config_file": "/etc/protector/protector.yaml",
        "heartbeat": "/run/protector/salt-minion.alive",
    },
    "Windows": {
        "bin": "C:\\ProgramData\\protector\\protector.exe",
        "config_file": "C:\\ProgramData\\protector\\protector.yaml",
        "heartbeat": "C:\\ProgramData\\protector\\salt-minion.alive",
    },
}


def __virtual__():
    return __virtualname__


# What differs when pillar `protector:install` is `package` (installmap.yaml).
PACKAGE = {"bin": "/usr/bin/protector"}


def _pillar(key):
    # Read __pillar__ itself: pillar.get masks values when called from a module (Salt 3008).
    return salt.utils.data.traverse_dict_and_list(__pillar__, "protector:" + key, None)


def _setting(key, pillar_key=None):
    value = _pillar(pillar_key or key)
    if value:
        return value
    if _pillar("install") == "package" and key in PACKAGE:
        return PACKAGE[key]
    return DEFAULTS.get(__grains__.get("kernel"), DEFAULTS["Linux"])[key]


def _expand(path):
    # protector expands ~ and environment variables in heartbeat paths; so does this.
    return os.path.expanduser(os.path.expandvars(path))


def heartbeat_path():
    """
    The heartbeat file of the salt-minion target on this minion.

    CLI Example:

        salt '*' protector.heartbeat_path
    """
    return _expand(_setting("heartbeat", "salt_minion:heartbeat"))


def beat(path=None, quiet=False):
    """
    Write the time into this minion's heartbeat file (creating it, and its directory, when
    missing), so protector knows the minion still answers its master.

    path
        Another heartbeat file to touch (default: the salt-minion target's).

    quiet
        Send no return to the master (the kit's heartbeat does so: a beat then costs the
        master one publish, whatever the number of minions). The minion leaves out the return
        of a job whose result is ``{"__no_return__": True}`` (salt/minion.py, Salt's own way
        for queued states); a Salt without it returns the result as usual.

    CLI Example:

        salt '*' protector.beat
    """
    path = _expand(path) if path else heartbeat_path()
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    # Never follow a symlink planted where the heartbeat should be. The time is written, not
    # only the file touched: on a filesystem with whole-second file times (ext3, FAT, some
    # NFS) protector tells two beats in the same second apart by the content.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    try:
        now = time.time()
        os.write(fd, ("%.6f\n" % now).encode())
        os.utime(fd if os.utime in os.supports_fd else path, (now, now))
    finally:
        os.close(fd)
    if quiet:
        return {"__no_return__": True}
    return {"heartbeat": path, "touched_at": now}


def status():
    """
    What protector on this minion knows: ``protector status --json`` as data (targets with
    their state, heartbeat age and restart counts). The job's return code is protector's:
    0 when it runs and every target is watching normally, else 1 (``salt`` then exits
    non-zero; ``running: False`` says protector itself is not running).

    CLI Example:

        salt '*' protector.status
        salt '*' protector.status --out=json
    """
    return _run(["status"], {"running": False, "healthy": False})


def _run(args, failed, timeout=30):
    """
    Runs ``protector ARGS --config CONFIG --json`` and returns its JSON output as data; the
    job's return code is protector's. When there is no JSON to return, ``failed`` with the
    error.
    """
    cmd = [_setting("bin")] + args + ["--config", _setting("config_file"), "--json"]
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        __context__["retcode"] = 1
        return dict(failed, error=str(exc))
    __context__["retcode"] = proc.returncode
    out = proc.stdout.decode("utf-8", "replace")
    try:
        return json.loads(out)
    except ValueError:
        err = proc.stderr.decode("utf-8", "replace").strip()
        return dict(failed, error=err or out.strip())


def incidents(*names, **kwargs):
    """
    What the services looked like when protector restarted them (``protector incidents
    --json``): the newest incidents of these targets (default: all), oldest first, each with
    why, the heartbeat's age, the output of the target's ``diagnose`` command and the
    processes' states, waits and TCP connections. Kept only when protector has a state file.

    last
        Only the newest N (default 20).
    id
        One incident, whole, by its id (from a list, or the ``restart_done`` log record).

    CLI Example:

        salt '*' protector.incidents salt-minion last=1
        salt 'web1' protector.incidents id=2026-12-06T220215Z-salt-minion-e677
    """
    if kwargs.get("id"):
        return _run(["incidents", "show", str(kwargs["id"])], {"ok": False})
    args = ["incidents"] + list(names)
    if kwargs.get("last"):
        args += ["--last", str(int(kwargs["last"]))]
    return _run(args, {"ok": False})


def _control(args, timeout=30):
    """
    A request to the running protector over its control socket or pipe; its answer as data
    (the job's return code is 0 when everything asked for was done).
    """
    return _run(args, {"ok": False}, timeout)


def _which(names, kwargs):
    """The targets' part of the command line: ``--all``, or the names (at least one)."""
    if kwargs.get("all"):
        return ["--all"]
    if not names:
        raise salt.exceptions.SaltInvocationError(
            "name at least one target, or all=True for every one"
        )
    return list(names)


def pause(*names, **kwargs):
    """
    Stop protector from judging (so from restarting) these targets until ``protector.resume``
    or the pause ends by itself, e.g. while the salt-minion is upgraded by hand.

    for
        How long (``30m``, ``2h``; default 1h): a forgotten pause ends by itself.
    until_resumed
        True: no end of its own, until ``protector.resume`` (protector says it in its log once
        a day while it lasts).
    reason
        Shown by ``protector status`` and logged.
    all
        True: every target.

    CLI Example:

        salt 'web*' protector.pause salt-minion for=30m reason="salt upgrade"
    """
    args = ["pause"] + _which(names, kwargs)
    if kwargs.get("for"):
        args += ["--for", str(kwargs["for"])]
    if kwargs.get("until_resumed") in (True, "True", "true"):
        args += ["--until-resumed"]
    if kwargs.get("reason"):
        args += ["--reason", str(kwargs["reason"])]
    return _control(args)


def resume(*names, **kwargs):
    """
    Watch paused targets again.

    CLI Example:

        salt 'web*' protector.resume salt-minion
    """
    return _control(["resume"] + _which(names, kwargs))


def restart(*names, **kwargs):
    """
    Restart targets now (their stop, then start command) and return the outcome once they
    end; a restart already under way is not doubled. Restarting the salt-minion itself stops
    the minion that runs this job, so no answer comes back (the restart still happens; see
    ``protector.status`` afterwards).

    CLI Example:

        salt 'web*' protector.restart nginx
    """
    args = ["restart"] + _which(names, kwargs)
    return _control(args, timeout=kwargs.get("timeout", 600))


def reset(*names, **kwargs):
    """
    Clear targets' backoff, consecutive restarts and a given-up state.

    CLI Example:

        salt '*' protector.reset salt-minion
    """
    return _control(["reset"] + _which(names, kwargs))


def reload():
    """
    Reload protector's config and say whether it was applied (the old one stays when the new
    one is invalid). On Windows this is how a changed config takes effect without a restart.

    CLI Example:

        salt '*' protector.reload
    """
    return _control(["reload"])

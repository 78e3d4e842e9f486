//! protector runs as root; these try what an unprivileged local user (`nobody`, through
//! setpriv) could do to it: block it, make it write where they choose, run their commands,
//! read its logs, spoof heartbeats, forge log lines. Each needs root (to be the root
//! protector and to act as another user) and says it is skipped otherwise.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use predicates::prelude::*;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A sandbox another user can reach (the attacker gets into it, not necessarily write), or
/// `None` when this does not run as root.
fn arena() -> Option<Sandbox> {
    if !is_root() {
        eprintln!("skipped: acting as root and as another user needs root");
        return None;
    }
    let sb = Sandbox::new();
    chmod(sb.dir.path(), 0o755);
    Some(sb)
}

/// Today's date in UTC (`YYYY-MM-DD`), as a log file's name ends.
fn today_utc() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory any user can write, sticky and root's, like /tmp.
fn shared_dir(sb: &Sandbox, name: &str) -> std::path::PathBuf {
    let dir = sb.path(name);
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o1777);
    dir
}

/// Runs `script` with `sh -c` in the sandbox as `nobody`; did it succeed?
fn as_nobody(sb: &Sandbox, script: &str) -> bool {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .current_dir(sb.dir.path())
        .status()
        .expect("setpriv (util-linux)")
        .success()
}

/// Sets a kernel setting for the life of the guard, then puts back what was there. Tests
/// that change one hold [`SYSCTL`], so they do not overlap.
struct Sysctl {
    path: String,
    old: String,
}

static SYSCTL: Mutex<()> = Mutex::new(());

impl Sysctl {
    fn set(name: &str, value: &str) -> Option<Sysctl> {
        let path = format!("/proc/sys/fs/{name}");
        let old = std::fs::read_to_string(&path).ok()?;
        std::fs::write(&path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, self.old.trim());
    }
}

/// Runs `test` with the kernel's protections `names` (fs.protected_*) off, then on, holding
/// [`SYSCTL`], and puts them back; says so and does nothing where they cannot be changed.
fn with_protections_off_then_on(names: &[&str], mut test: impl FnMut(&str)) {
    let _serial = SYSCTL.lock().unwrap_or_else(|p| p.into_inner());
    for protected in ["0", "1"] {
        let guards: Option<Vec<Sysctl>> = names.iter().map(|n| Sysctl::set(n, protected)).collect();
        let Some(_guards) = guards else {
            eprintln!("skipped: cannot change fs.protected_*");
            return;
        };
        test(protected);
    }
}

fn one_target(extra: &str) -> String {
    format!(
        "{extra}targets:\n  - name: svc\n    heartbeat: svc.beat\n    timeout: 1h\n    start: 'true'\n"
    )
}

/// `protector ARGS` run to its end (a bounded wait): exit code and stderr.
fn run_once(sb: &Sandbox, args: &[&str]) -> (i32, String) {
    let out = protector_cmd(sb.dir.path())
        .args(args)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_default_lock_is_in_a_directory_only_root_can_write_and_named_after_the_config() {
    let Some(sb) = arena() else { return };
    sb.touch("svc.beat");
    sb.write("a.yaml", &one_target(""));
    sb.write("b.yaml", &one_target(""));
    std::os::unix::fs::symlink("a.yaml", sb.path("current.yaml")).unwrap();
    let first = sb.spawn(&["--config", "current.yaml"]);
    first.wait_events("started", None, 1);

    // Another user can neither take the name first nor put anything beside it.
    assert!(!as_nobody(&sb, "touch /run/protector/x.lock"));
    let meta = std::fs::metadata("/run/protector").unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o022), (0, 0));

    // Re-pointing the link the first one was started with does not make room for a second.
    std::fs::remove_file(sb.path("current.yaml")).unwrap();
    std::os::unix::fs::symlink("b.yaml", sb.path("current.yaml")).unwrap();
    let (code, err) = run_once(&sb, &["--config", "current.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains("lock file /run/protector/protector-"), "{err}");
}

#[test]
fn a_lock_file_another_user_made_or_linked_is_never_used_nor_written() {
    let Some(sb) = arena() else { return };
    shared_dir(&sb, "shared");
    sb.touch("svc.beat");
    sb.write("victim", "root's secret\n");
    chmod(&sb.path("victim"), 0o600);
    sb.write("protector.yaml", &one_target("lock_file: shared/x.lock\n"));
    with_protections_off_then_on(&["protected_symlinks", "protected_regular"], |protected| {
        // A symlink planted where the lock goes: refused, and where it leads is untouched.
        let _ = std::fs::remove_file(sb.path("shared/x.lock"));
        assert!(as_nobody(&sb, "ln -s ../victim shared/x.lock"));
        let (code, err) = run_once(&sb, &["--config", "protector.yaml"]);
        assert_eq!(code, 1, "protected={protected}: {err}");
        assert!(
            err.contains("symbolic link"),
            "protected={protected}: {err}"
        );
        assert_eq!(sb.lines("victim"), ["root's secret"]);

        // A file made by another user (to hold a lock on it and keep protector from ever
        // starting): refused, naming them, and not truncated.
        std::fs::remove_file(sb.path("shared/x.lock")).unwrap();
        assert!(as_nobody(&sb, "echo 4242 > shared/x.lock"));
        let (code, err) = run_once(&sb, &["--config", "protector.yaml"]);
        assert_eq!(code, 1, "protected={protected}: {err}");
        assert!(
            err.contains("belongs to uid 65534 (nobody)"),
            "protected={protected}: {err}"
        );
        assert_eq!(sb.lines("shared/x.lock"), ["4242"]);
    });
}

#[test]
fn a_hard_link_to_a_root_file_is_never_used_as_lock_or_log() {
    let Some(sb) = arena() else { return };
    shared_dir(&sb, "shared");
    sb.touch("svc.beat");
    let victim = sb.write("victim", "root's secret\n");
    chmod(&victim, 0o640);
    sb.write("protector.yaml", &one_target("lock_file: shared/x.lock\n"));
    let today = today_utc();
    let log = format!("shared/protector.log.{today}");
    with_protections_off_then_on(&["protected_hardlinks"], |protected| {
        for (planted, args) in [
            ("shared/x.lock", vec!["--config", "protector.yaml"]),
            (
                log.as_str(),
                vec![
                    "--log-file",
                    "shared/protector.log",
                    "--config",
                    "protector.yaml",
                ],
            ),
        ] {
            let _ = std::fs::remove_file(sb.path("shared/x.lock"));
            let _ = std::fs::remove_file(sb.path(planted));
            // The kernel's protection keeps another user from linking root's file at all.
            if !as_nobody(&sb, &format!("ln victim {planted} 2>/dev/null")) {
                assert_eq!(
                    protected, "1",
                    "{planted}: the link should have been possible"
                );
                continue;
            }
            let (code, err) = run_once(&sb, &args);
            assert_eq!(code, 1, "protected={protected} {planted}: {err}");
            assert!(
                err.contains("2 names (hard links)"),
                "protected={protected}: {err}"
            );
            assert_eq!(sb.lines("victim"), ["root's secret"], "{planted}");
            let mode = std::fs::metadata(&victim).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o640, "{planted}: the victim's mode");
        }
    });
}

#[test]
fn a_state_file_another_user_planted_is_not_read() {
    let Some(sb) = arena() else { return };
    shared_dir(&sb, "shared");
    sb.touch("svc.beat");
    sb.write(
        "protector.yaml",
        &one_target("state_file: shared/state.json\n"),
    );
    // A state file as protector writes it, with a pause of a year: a real one, then planted.
    let p = sb.spawn(&["--config", "protector.yaml"]);
    p.wait_events("started", None, 1);
    wait_until(PATIENCE, "the state file", || {
        sb.path("shared/state.json").exists()
    });
    drop(p);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path("shared/state.json")).unwrap())
            .unwrap();
    std::fs::remove_file(sb.path("shared/state.json")).unwrap();
    let year = 365.0 * 86400.0;
    state["targets"][0]["paused_until"] = (state["written_at"].as_f64().unwrap() + year).into();
    state["targets"][0]["restarts_total"] = 1_000_000.into();
    sb.write("planted.json", &state.to_string());
    chmod(&sb.path("planted.json"), 0o644);
    assert!(as_nobody(&sb, "cp planted.json shared/state.json"));

    let p = sb.spawn(&["--config", "protector.yaml"]);
    let refused = p.wait_events("state_file_refused", None, 1);
    assert_eq!(refused[0]["level"], "ERROR");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("uid 65534 (nobody)"),
        "{}",
        refused[0]
    );
    let aside = refused[0]["moved_to"].as_str().unwrap();
    assert!(aside.contains("state.json.corrupt-"), "{aside}");
    assert!(Path::new(aside).exists() || sb.path(aside).exists());
    p.wait_events("started", None, 1);
    assert!(
        p.events("pause_restored", None).is_empty(),
        "the planted pause was restored"
    );
    wait_until(PATIENCE, "protector's own state file", || {
        std::fs::read_to_string(sb.path("shared/state.json"))
            .is_ok_and(|t| t.contains("\"restarts_total\":0"))
    });
}

#[test]
fn a_symlink_planted_for_a_temporary_file_is_left_alone() {
    let Some(sb) = arena() else { return };
    shared_dir(&sb, "shared");
    sb.write("victim", "root's secret\n");
    chmod(&sb.path("victim"), 0o600);
    // Judged every 300 ms: the state file is written again and again.
    let p = sb.run_config(&one_target("state_file: shared/state.json\n").replace("1h", "300ms"));
    p.wait_events("started", None, 1);
    // The name an older protector would have used next, and a few more.
    let pid = p.pid();
    for n in [pid, pid + 1, pid + 2] {
        assert!(as_nobody(
            &sb,
            &format!("ln -s ../victim shared/.state.json.tmp-{n}")
        ));
    }
    // Heartbeats get the state file written again, a few times.
    for i in 0..3 {
        let before = std::fs::metadata(sb.path("shared/state.json"))
            .map(|m| m.ino())
            .ok();
        sb.write("svc.beat", &format!("{i}"));
        wait_until(PATIENCE, "the state file to be written again", || {
            std::fs::metadata(sb.path("shared/state.json"))
                .map(|m| m.ino())
                .ok()
                != before
        });
    }
    assert_eq!(sb.lines("victim"), ["root's secret"]);
    let state = std::fs::symlink_metadata(sb.path("shared/state.json")).unwrap();
    assert!(state.is_file() && state.uid() == 0);
    assert!(
        std::fs::symlink_metadata(sb.path(&format!("shared/.state.json.tmp-{pid}")))
            .unwrap()
            .file_type()
            .is_symlink(),
        "another user's symlink is not protector's to remove"
    );
}

#[test]
fn a_config_another_user_can_change_is_refused_at_start_and_at_reload() {
    let Some(sb) = arena() else { return };
    sb.touch("svc.beat");
    let cfg = sb.write("protector.yaml", &one_target(""));
    chmod(&cfg, 0o666);
    let (code, err) = run_once(&sb, &["--config", "protector.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is writable by every user"), "{err}");
    assert!(err.contains("mode 0666"), "{err}");
    assert!(err.contains("--no-strict-modes"), "{err}");
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "protector.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is writable by every user"));
    // Those who must can say so.
    protector_cmd(sb.dir.path())
        .args(["check", "--no-strict-modes", "--config", "protector.yaml"])
        .assert()
        .success();

    // Made writable by others while protector runs, then edited by one of them: the reload
    // is refused and their command never runs.
    chmod(&cfg, 0o644);
    let p = sb.spawn(&["--config", "protector.yaml"]);
    p.wait_events("started", None, 1);
    chmod(&cfg, 0o666);
    sb.write(
        "evil.yaml",
        &one_target("")
            .replace("start: 'true'", "start: [touch, owned]")
            .replace("1h", "100ms"),
    );
    assert!(as_nobody(&sb, "cat evil.yaml > protector.yaml"));
    p.signal("HUP");
    let failed = p.wait_events("reload_failed", None, 1);
    assert_eq!(failed[0]["level"], "ERROR");
    let problem = p.wait_events("config_problem", None, 1);
    assert!(
        problem[0]["message"]
            .as_str()
            .unwrap()
            .contains("writable by every user"),
        "{}",
        problem[0]
    );
    assert!(!sb.path("owned").exists());
    // A directory above it open to all is the same.
    chmod(&cfg, 0o644);
    chmod(sb.dir.path(), 0o777);
    let (code, err) = run_once(&sb, &["check", "--config", "protector.yaml"]);
    chmod(sb.dir.path(), 0o755);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is writable by every user (owner uid 0 (root), mode 0777)"),
        "{err}"
    );
}

#[test]
fn a_config_reached_through_another_users_symlink_is_refused() {
    let Some(sb) = arena() else { return };
    // root's config in root's directory, reached as etc/conf/protector.yaml where etc/conf is
    // root's link to u/link, a link nobody made: they can re-point it at a config of their
    // own at any time. u is first nobody's directory, then a shared one (sticky, like /tmp).
    let real = sb.path("real");
    std::fs::create_dir(&real).unwrap();
    sb.write("real/protector.yaml", &one_target(""));
    sb.touch("real/svc.beat");
    std::fs::create_dir(sb.path("etc")).unwrap();
    std::os::unix::fs::symlink("../u/link", sb.path("etc/conf")).unwrap();
    let evil = one_target("").replace("start: 'true'", "start: [touch, owned]");
    let plant =
        format!("mkdir u/evil && printf '{evil}' > u/evil/protector.yaml && ln -s ../real u/link");
    let u = sb.path("u");
    std::fs::create_dir(&u).unwrap();
    std::os::unix::fs::chown(&u, Some(65534), Some(65534)).unwrap();
    assert!(as_nobody(&sb, &plant));
    let config = "etc/conf/protector.yaml";
    let refused = |expected: &str| {
        for args in [&["check", "--config", config][..], &["--config", config]] {
            let (code, err) = run_once(&sb, args);
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    };
    refused("/u belongs to uid 65534 (nobody)");
    std::fs::remove_dir_all(&u).unwrap();
    shared_dir(&sb, "u");
    assert!(as_nobody(&sb, &plant));
    refused("the symlink /");
    refused("/u/link belongs to uid 65534 (nobody)");
    // The same for a directory protector writes into.
    sb.write(
        "protector.yaml",
        &one_target("state_file: etc/conf/state.json\n"),
    );
    let (code, err) = run_once(&sb, &["check", "--config", "protector.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/u/link belongs to uid 65534 (nobody)"),
        "{err}"
    );
    assert!(!sb.path("owned").exists());
}

#[test]
fn an_included_file_another_user_can_change_or_made_is_refused() {
    let Some(sb) = arena() else { return };
    sb.touch("svc.beat");
    sb.write("protector.yaml", &one_target("include: conf.d/*.yaml\n"));
    let conf_d = sb.path("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    let evil = "targets:\n  - name: evil\n    heartbeat: svc.beat\n    timeout: 100ms\n    start: [touch, owned]\n";
    // A directory open to all (sticky, like /tmp): another user's file in it is theirs.
    chmod(&conf_d, 0o1777);
    assert!(as_nobody(
        &sb,
        &format!("printf '{evil}' > conf.d/evil.yaml")
    ));
    let (code, err) = run_once(&sb, &["check", "--config", "protector.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("conf.d/evil.yaml: "), "{err}");
    assert!(err.contains("nobody"), "{err}");
    assert!(err.contains("--no-strict-modes"), "{err}");
    // root's own file there, but writable by a group.
    std::fs::remove_file(conf_d.join("evil.yaml")).unwrap();
    chmod(&conf_d, 0o755);
    let web = sb.write("conf.d/web.yaml", evil);
    chmod(&web, 0o664);
    let (code, err) = run_once(&sb, &["--config", "protector.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("conf.d/web.yaml: "), "{err}");
    assert!(err.contains("writable by its group"), "{err}");
    assert!(!sb.path("owned").exists());
}

#[test]
fn log_files_are_for_root_only() {
    let Some(sb) = arena() else { return };
    let p = sb.spawn(&[
        "--log-file",
        "logs/protector.log",
        "--config",
        sb.write(
            "protector.yaml",
            "targets:\n  - name: svc\n    heartbeat: svc.beat\n    timeout: 200ms\n    \
             startup_grace: 200ms\n    max_restarts: 1\n    start: [sh, -c, 'echo token-1234']\n",
        )
        .to_str()
        .unwrap(),
    ]);
    p.wait_events("restart_done", Some("svc"), 1);
    let log = std::fs::read_dir(sb.path("logs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    wait_until(PATIENCE, "the command's output in the log file", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("token-1234"))
    });
    assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
    assert!(!as_nobody(
        &sb,
        &format!("cat '{}' >/dev/null 2>&1", log.display())
    ));
}

#[test]
fn a_log_file_another_user_planted_is_refused_not_waited_on_nor_written() {
    let Some(sb) = arena() else { return };
    shared_dir(&sb, "logs");
    sb.touch("svc.beat");
    sb.write("protector.yaml", &one_target(""));
    let today = today_utc();
    let log = format!("logs/protector.log.{today}");
    let args = [
        "--log-file",
        "logs/protector.log",
        "--config",
        "protector.yaml",
    ];
    // With the kernel's protections (systemd turns them on) the open itself is refused to
    // root; without them protector refuses what it opened. Either way the owner is named.
    with_protections_off_then_on(&["protected_regular", "protected_fifos"], |protected| {
        // Today's file (UTC), made first by another user as a FIFO nobody reads.
        let _ = std::fs::remove_file(sb.path(&log));
        assert!(as_nobody(&sb, &format!("mkfifo {log}")));
        let (code, err) = run_once(&sb, &args);
        assert_eq!(code, 1, "protected={protected}: {err}");
        assert!(
            err.contains("cannot open log file"),
            "protected={protected}: {err}"
        );
        // A plain file of theirs, which they could read: refused too, and left empty.
        std::fs::remove_file(sb.path(&log)).unwrap();
        assert!(as_nobody(&sb, &format!("touch {log}")));
        let (code, err) = run_once(&sb, &args);
        assert_eq!(code, 1, "protected={protected}: {err}");
        assert!(
            err.contains("belongs to uid 65534 (nobody)"),
            "protected={protected}: {err}"
        );
        assert_eq!(std::fs::metadata(sb.path(&log)).unwrap().len(), 0);
    });
}

#[test]
fn heartbeats_any_user_can_write_are_warned_about() {
    let Some(sb) = arena() else { return };
    shared_dir(&sb, "shared");
    sb.write(
        "protector.yaml",
        "targets:\n  - name: svc\n    heartbeat: shared/svc.beat\n    timeout: 1h\n    start: 'true'\n",
    );
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "protector.yaml"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "any user can create the heartbeat file before the writer does",
        ));
    let p = sb.spawn(&["--config", "protector.yaml"]);
    let exposed = p.wait_events("heartbeat_exposed", Some("svc"), 1);
    assert_eq!(exposed[0]["level"], "WARN");
    // So does the original form, whose own default was /tmp.
    let beat = sb.path("shared/legacy.alive");
    let legacy = sb.spawn(&[beat.to_str().unwrap(), "true", "true", "3600"]);
    legacy.wait_events("heartbeat_exposed", None, 1);
    // Why it matters: anyone keeps a hung service "alive".
    assert!(as_nobody(&sb, "touch shared/svc.beat"));
}

/// A child killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn output_and_names_cannot_forge_log_lines_or_reach_a_terminal() {
    let Some(sb) = arena() else { return };
    sb.write(
        "forge.sh",
        "printf 'ok\\n2026-01-01T00:00:00Z  INFO heartbeat is back target=salt-minion\\033[2J'\n",
    );
    sb.write(
        "protector.yaml",
        "targets:\n  - name: svc\n    heartbeat: svc.beat\n    timeout: 200ms\n    \
         startup_grace: 200ms\n    max_restarts: 1\n    start: [sh, forge.sh]\n",
    );
    // The text log (the default format), to a file.
    let err = std::fs::File::create(sb.path("stderr")).unwrap();
    let child = std::process::Command::new(bin())
        .args(["--config", "protector.yaml"])
        .current_dir(sb.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_until(PATIENCE, "the restart in the text log", || {
        std::fs::read_to_string(sb.path("stderr")).is_ok_and(|t| t.contains("restart done"))
    });
    let _ = child.0.kill();
    let _ = child.0.wait();
    let text = std::fs::read_to_string(sb.path("stderr")).unwrap();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line: {text}"
    );
    assert!(text.contains(r"ok\n2026-01-01"), "{text}");

    // A name that would carry the same is refused, and shown escaped.
    sb.write(
        "bad.yaml",
        "targets:\n  - name: \"svc\\n2026 INFO forged\\e[2J\"\n    heartbeat: x\n    timeout: 1h\n    start: 'true'\n",
    );
    let (code, err) = run_once(&sb, &["check", "--config", "bad.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a valid name"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn an_incidents_directory_another_user_made_or_linked_is_not_written() {
    let Some(sb) = arena() else { return };
    let yaml = "state_file: lib/state.json\ntargets:\n  - name: svc\n    heartbeat: svc.beat\n    timeout: 500ms\n    restart_grace: 1h\n    diagnose: [echo, secret output]\n    start: 'true'\n";
    let lib = sb.path("lib");
    std::fs::create_dir(&lib).unwrap();
    for planted in ["their directory", "a symlink to theirs"] {
        // A fresh start each time: the state file would put the next restart an hour off.
        let _ = std::fs::remove_file(lib.join("state.json"));
        let incidents = lib.join("incidents");
        let _ = std::fs::remove_dir_all(&incidents);
        let _ = std::fs::remove_file(&incidents);
        let theirs = sb.path("theirs");
        let _ = std::fs::remove_dir_all(&theirs);
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        if planted == "their directory" {
            std::fs::rename(&theirs, &incidents).unwrap();
        } else {
            std::os::unix::fs::symlink(&theirs, &incidents).unwrap();
        }
        let mut p = sb.run_config(yaml);
        let refused = p.wait_events("incident_not_kept", Some("svc"), 1);
        assert!(
            refused[0]["reason"].as_str().unwrap().contains("incidents"),
            "{planted}: {}",
            refused[0]
        );
        p.wait_events("restart_done", Some("svc"), 1);
        // Ended before the next protector takes the lock.
        p.signal("TERM");
        p.wait_exit(PATIENCE);
        for dir in [&incidents, &theirs] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                assert_eq!(
                    entries.count(),
                    0,
                    "{planted}: written into {}",
                    dir.display()
                );
            }
        }
    }
}

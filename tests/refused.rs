//! A config file protector refuses never leaves the host unwatched: a protector started (or
//! restarted, as a package upgrade does) on it runs on the last config it accepted, says so in
//! its log, `status` and `check`, and the file is in force again once fixed and reloaded.

#![cfg(unix)]

mod common;

use common::*;

const GOOD: &str = "state_file: state.json
targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1h
    start: [sh, -c, 'echo start >> events']
";

#[test]
fn a_protector_started_on_a_refused_file_runs_on_the_last_accepted_copy() {
    let sb = Sandbox::new();
    let cfg = sb.write("protector.yaml", GOOD);
    let copy = sb.path(".protector.yaml.accepted");

    // Accepted: kept as the copy, closed to other users.
    let mut p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    p.wait_events("started", None, 1);
    wait_until(PATIENCE, "the accepted copy", || copy.exists());
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), GOOD);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the copy is the owner's alone");
    }
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));

    // An edit with a mistake, then a restart (as an upgrade does): protector runs on.
    let edited = GOOD.replace("    timeout: 1h\n", "    timeout: 1h\n    timout: 2h\n");
    std::fs::write(&cfg, &edited).unwrap();
    let mut p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    let refused = p.wait_events("config_refused", None, 1);
    assert_eq!(refused[0]["level"], "ERROR");
    assert_eq!(refused[0]["running_on"], copy.to_str().unwrap());
    let problems = p.events("config_problem", None);
    assert!(
        problems
            .iter()
            .any(|v| v["message"].as_str().unwrap().contains("timout")),
        "the problem is named: {problems:?}"
    );
    let started = p.wait_events("started", None, 1);
    assert_eq!(started[0]["targets"], 1, "the accepted target is watched");
    assert!(p.child_alive());
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        GOOD,
        "the copy is kept as it was"
    );

    // status says so first, and is not fine; check says what is in force.
    let (code, out, _) = ctl(&sb, &cfg, &["status"]);
    assert_eq!(code, 1, "{out}");
    let first = out.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with("CONFIG REFUSED"), "{out}");
    assert!(
        out.contains(copy.to_str().unwrap()) && out.contains("timout"),
        "{out}"
    );
    let (code, _, err) = ctl(&sb, &cfg, &["check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("one started now runs on the last accepted copy"),
        "{err}"
    );

    // Fixed and reloaded: the file is in force, status is fine again.
    std::fs::write(&cfg, GOOD.replace("1h", "2h")).unwrap();
    let (code, out, err) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    p.wait_events("config_in_force", None, 1);
    let (code, out, _) = ctl(&sb, &cfg, &["status"]);
    assert!(!out.contains("CONFIG REFUSED"), "{out}");
    assert_eq!(code, 0, "fine again: {out}");
    assert!(
        std::fs::read_to_string(&copy).unwrap().contains("2h"),
        "the reloaded file is the copy now"
    );
}

#[test]
fn without_an_accepted_copy_a_refused_file_stops_protector_with_the_reason() {
    let sb = Sandbox::new();
    let cfg = sb.write("protector.yaml", "targets: [");
    protector_cmd(sb.dir.path())
        .args(["--config", cfg.to_str().unwrap()])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "protector.yaml:2:1: invalid YAML",
        ));
    // status names the config's problem, not the positional form.
    let (code, _, err) = ctl(&sb, &cfg, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("protector.yaml:2:1: invalid YAML"), "{err}");
    assert!(!err.contains("positional"), "{err}");
}

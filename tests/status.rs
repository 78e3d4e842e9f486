//! What protector keeps and shows: the state file (surviving a restart, set aside when corrupt,
//! never read when it is not a regular file), `protector status`, and the metrics file.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;
use predicates::prelude::*;

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.unwrap().success(), "mkfifo {}", path.display());
}

fn read_json(sb: &Sandbox, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(sb.path(name)).unwrap()).unwrap()
}

#[test]
fn state_file_survives_a_restart_of_protector_and_backoff_continues() {
    let sb = Sandbox::new();
    let cfg = format!(
        "state_file: state.json\ntargets:\n{}",
        target(
            "svc",
            "    timeout: 500ms\n    startup_grace: 500ms\n    restart_grace: 500ms\n    backoff: {after: 1, max: 30s}\n    stop: ['true']\n"
        )
    );
    let mut p = sb.run_config(&cfg);
    let done = p.wait_events("restart_done", Some("svc"), 3);
    assert_eq!(done[2]["next_check_in_secs"], 2.0);
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));

    let state = read_json(&sb, "state.json");
    assert_eq!(state["format"], "protector-state");
    let t = &state["targets"][0];
    assert_eq!(t["name"], "svc");
    assert_eq!(t["state"], "backing off");
    assert_eq!(t["consecutive_restarts"], 3);
    assert_eq!(t["restarts_total"], 3);
    assert_eq!(t["backoff_secs"], 2.0);
    assert!(t["heartbeat"].as_str().unwrap().ends_with("svc.beat"));
    let last = &t["last_restart"]["commands"];
    assert_eq!(last[0]["command"], "stop");
    assert_eq!(last[0]["exit_code"], 0);
    assert_eq!(last[1]["command"], "start");
    assert_eq!(last[1]["timed_out"], false);

    // A new protector restores the streak: the next wait keeps doubling.
    let p = sb.spawn(&["--config", "protector.yaml"]);
    let restored = p.wait_events("state_restored", Some("svc"), 1);
    assert_eq!(restored[0]["consecutive_restarts"], 3);
    let done = p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(done[0]["consecutive_restarts"], 4);
    assert_eq!(done[0]["next_check_in_secs"], 4.0);
}

#[test]
fn a_corrupt_state_file_is_set_aside() {
    let sb = Sandbox::new();
    sb.write("state.json", "{ this is not json");
    let p = sb.run_config(&format!(
        "state_file: state.json\ntargets:\n{}",
        target("svc", "    timeout: 1h\n")
    ));
    let aside = p.wait_events("state_file_unusable", None, 1);
    let moved = aside[0]["moved_to"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(&moved).unwrap(),
        "{ this is not json"
    );
    wait_until(PATIENCE, "a fresh state file", || {
        std::fs::read_to_string(sb.path("state.json")).is_ok_and(|t| t.contains("protector-state"))
    });
}

#[test]
fn status_shows_targets_and_exits_by_health() {
    let sb = Sandbox::new();
    // Written half an hour ago when protector starts (its timeout is 1h: fine), then again
    // before `status`: the age shown is the file's now, not the one protector last saw.
    sb.touch("fine.beat");
    std::fs::File::options()
        .write(true)
        .open(sb.path("fine.beat"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(1800))
        .unwrap();
    let mut p = sb.run_config(&format!(
        "state_file: state.json\ntargets:\n{}{}",
        target("fine", "    timeout: 1h\n"),
        target(
            "sick",
            "    timeout: 500ms\n    restart_grace: 1h\n    stop: [sh, -c, 'echo cannot stop it >&2; exit 3']\n"
        )
    ));
    p.wait_events("restart_done", Some("sick"), 1);
    wait_until(PATIENCE, "state file shows the restart", || {
        std::fs::read_to_string(sb.path("state.json")).is_ok_and(|t| t.contains("recovering"))
    });
    sb.touch("fine.beat");
    let out = protector_cmd(sb.dir.path())
        .args(["status", "--config", "protector.yaml"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains(&format!("protector is running (pid {}, up ", p.pid())),
        "{text}"
    );
    let fine = text.lines().find(|l| l.starts_with("fine ")).unwrap();
    assert!(
        fine.contains("watching") && fine.contains("in 29m") && !fine.contains("30m"),
        "{text}"
    );
    let age = fine.split_whitespace().nth(2).unwrap();
    assert!(age.ends_with('s') && !age.contains('m'), "{text}");
    // sick.beat was never written.
    let sick = text.lines().find(|l| l.starts_with("sick ")).unwrap();
    assert!(sick.contains("missing"), "{text}");
    let sick = text.lines().find(|l| l.starts_with("sick ")).unwrap();
    assert!(
        sick.contains("recovering") && sick.contains("1 (1 in a row)"),
        "{text}"
    );
    assert!(sick.contains("ago: stop exit 3, start ok"), "{text}");
    // The failed command's own words, after the table.
    assert!(
        text.contains("\nsick: stop 0s ago (exit status: 3):\n    cannot stop it\n")
            || text.contains("\nsick: stop 1s ago (exit status: 3):\n    cannot stop it\n"),
        "{text}"
    );

    // Only the targets asked for; the exit status is theirs. An unknown one is named.
    protector_cmd(sb.dir.path())
        .args(["status", "protector.yaml", "fine"])
        .assert()
        .success()
        .stdout(predicate::str::contains("fine ").and(predicate::str::contains("sick ").not()));
    protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no target named \"nope\"; known: fine, sick",
        ));

    let out = protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json", "--json"])
        .assert()
        .code(1);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["healthy"], false);
    assert_eq!(json["targets"][1]["state"], "recovering");
    // What protector last saw, and the file now.
    assert!(json["targets"][0]["heartbeat_age_secs"].as_f64().unwrap() > 1700.0);
    assert!(
        json["targets"][0]["heartbeat_file_age_secs"]
            .as_f64()
            .unwrap()
            < 60.0
    );
    assert!(json["targets"][1]["heartbeat_file_age_secs"].is_null());

    // Without protector, nothing is watched and no check is coming: said first, and the
    // states are what they were.
    p.signal("TERM");
    p.wait_exit(PATIENCE);
    let out = protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.starts_with("protector is NOT running: what it last wrote (pid "),
        "{text}"
    );
    let fine = text.lines().find(|l| l.starts_with("fine ")).unwrap();
    assert!(
        fine.contains("was watching") && !fine.contains("in 29m"),
        "{text}"
    );
}

#[test]
fn status_exits_0_when_everything_is_watching() {
    let sb = Sandbox::new();
    sb.touch("fine.beat");
    let p = sb.run_config(&format!(
        "state_file: state.json\ntargets:\n{}{}",
        target("fine", "    timeout: 1h\n"),
        target("off", "    timeout: 1s\n    enabled: false\n")
    ));
    p.wait_events("started", None, 1);
    wait_until(PATIENCE, "state file", || sb.path("state.json").exists());
    protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("disabled"));
}

#[test]
fn status_shows_the_service_pid_from_its_pid_file() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    sb.touch("gone.beat");
    // A live service (a process of this test) and one whose pid file outlived it.
    let mut service = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    sb.write("svc.pid", &format!("{}\n", service.id()));
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    sb.write("gone.pid", &format!("{dead_pid}\n"));
    let p = sb.run_config(&format!(
        "state_file: state.json\ntargets:\n{}{}{}",
        target("svc", "    timeout: 1h\n    pid_file: svc.pid\n"),
        target("gone", "    timeout: 1h\n    pid_file: gone.pid\n"),
        target("plain", "    timeout: 1h\n"),
    ));
    p.wait_events("started", None, 1);
    wait_until(PATIENCE, "state file", || sb.path("state.json").exists());
    let (_, out, _) = ctl(&sb, &sb.path("protector.yaml"), &["status"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("TARGET  STATE     SERVICE PID"),
        "{out}"
    );
    let cells = |name: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(cells("svc")[2], service.id().to_string(), "{out}");
    assert_eq!(
        cells("gone")[2],
        format!("{dead_pid} (not running)"),
        "{out}"
    );
    assert_eq!(cells("plain")[2], "-", "{out}");
    let (_, json, _) = ctl(&sb, &sb.path("protector.yaml"), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["targets"][0]["service_pid"], service.id());
    assert_eq!(v["targets"][0]["service_running"], true);
    assert_eq!(v["targets"][1]["service_running"], false);
    assert!(v["targets"][2].get("service_pid").is_none());
    // Gone: no pid file.
    std::fs::remove_file(sb.path("svc.pid")).unwrap();
    let (_, out, _) = ctl(&sb, &sb.path("protector.yaml"), &["status"]);
    assert!(out.contains("no pid file"), "{out}");
    service.kill().unwrap();
    service.wait().unwrap();
}

#[test]
fn status_neither_hangs_nor_panics_on_a_hostile_state_file() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let mut p = sb.run_config(&format!(
        "state_file: state.json\ntargets:\n{}",
        target("svc", "    timeout: 1h\n")
    ));
    p.wait_events("started", None, 1);
    wait_until(PATIENCE, "state file", || sb.path("state.json").exists());
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));
    let mut state = read_json(&sb, "state.json");
    // A lock "file" that is a FIFO no one writes (a blocking open would wait for ever), and
    // a name longer than any format width.
    let fifo = sb.path("lock.fifo");
    mkfifo(&fifo);
    state["lock_file"] = fifo.to_str().unwrap().into();
    let long = "n".repeat(65_536);
    state["targets"][0]["name"] = long.as_str().into();
    sb.write("hostile.json", &state.to_string());
    let out = protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "hostile.json"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("protector is NOT running"),
        "{}",
        &stdout[..200.min(stdout.len())]
    );
    assert!(
        stdout.contains(&format!("\n{long}  was watching")),
        "the long name's row"
    );

    // A state file with a second name (a hard link) is not read either.
    std::fs::hard_link(sb.path("state.json"), sb.path("other-name.json")).unwrap();
    protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("it has 2 names (hard links)"));
}

/// Parses the Prometheus text format strictly enough to catch malformed output.
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP protector_") || rest.starts_with("TYPE protector_"),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().expect(line);
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "{line}");
                (n.to_string(), l.trim_end_matches('}').to_string())
            }
            None => (series.to_string(), String::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect(line);
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
        }
        samples.push((name, labels, value));
    }
    samples
}

#[test]
fn metrics_file_is_prometheus_text_matching_what_happened() {
    let sb = Sandbox::new();
    let _p = sb.run_config(&format!(
        "metrics_file: protector.prom\nstate_file: state.json\ntargets:\n{}",
        "  - name: svc\n    heartbeat: svc.beat\n    timeout: 500ms\n    restart_grace: 500ms\n    backoff: {after: 100}\n    max_restarts: 2\n    start: [sh, -c, 'exit 1']\n"
    ));
    let mut samples = Vec::new();
    wait_until(PATIENCE, "metrics after giving up", || {
        let text = std::fs::read_to_string(sb.path("protector.prom")).unwrap_or_default();
        samples = parse_metrics(&text);
        samples
            .iter()
            .any(|(n, l, v)| n == "protector_target_state" && l.contains("given up") && *v == 1.0)
    });
    // `status` shows no next check for a target that only waits for a heartbeat.
    let out = protector_cmd(sb.dir.path())
        .args(["status", "protector.yaml"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let row = text.lines().find(|l| l.starts_with("svc ")).unwrap();
    let header = text.lines().find(|l| l.starts_with("TARGET")).unwrap();
    let at = header.find("NEXT CHECK").unwrap();
    assert!(
        row.contains("given up") && row[at..].starts_with("- "),
        "{text}"
    );
    let get = |name: &str, label: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.contains(label))
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name} {label}"))
    };
    assert_eq!(get("protector_restarts_total", "target=\"svc\""), 2.0);
    assert_eq!(get("protector_consecutive_restarts", "target=\"svc\""), 2.0);
    assert_eq!(
        get("protector_command_failures_total", "target=\"svc\""),
        2.0
    );
    assert_eq!(
        get("protector_command_timeouts_total", "target=\"svc\""),
        0.0
    );
    assert_eq!(get("protector_target_state", "state=\"watching\""), 0.0);
    assert!(get("protector_last_restart_timestamp_seconds", "svc") > 1.7e9);
    assert!(get("protector_start_time_seconds", "") > 1.7e9);
    assert_eq!(
        get(
            "protector_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
}

#[test]
fn a_state_file_that_is_a_fifo_or_a_device_is_never_read_renamed_or_written() {
    let sb = Sandbox::new();
    let fifo = sb.path("state.json");
    mkfifo(&fifo);
    std::os::unix::fs::symlink("/dev/zero", sb.path("zero.json")).unwrap();
    for (state, what) in [("state.json", "a FIFO"), ("zero.json", "/dev/zero")] {
        let mut p = sb.run_config(&format!(
            "state_file: {state}\nlock_file: {state}.lock\ntargets:\n{}",
            target("svc", "    timeout: 1h\n")
        ));
        let unusable = p.wait_events("state_file_unusable", None, 1);
        assert_eq!(unusable[0]["level"], "ERROR", "{what}");
        p.wait_events("started", None, 1);
        // `status` does not hang on it either.
        protector_cmd(sb.dir.path())
            .args(["status", "--state-file", state])
            .timeout(Duration::from_secs(20))
            .assert()
            .code(1)
            .stderr(predicate::str::contains("not a regular file"));
        p.signal("TERM");
        assert_eq!(p.wait_exit(PATIENCE), Some(0), "{what}");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO was replaced"
    );
    assert!(
        std::fs::metadata("/dev/zero")
            .unwrap()
            .file_type()
            .is_char_device(),
        "/dev/zero was replaced"
    );
    assert!(
        std::fs::symlink_metadata(sb.path("zero.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

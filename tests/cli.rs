//! The command line: usage errors, subcommands and their defaults, help, and the README's
//! examples of output (`check` itself: tests/check.rs).

mod common;

use std::path::Path;

use common::*;
use predicates::prelude::*;

#[test]
fn run_with_an_invalid_config_exits_1_and_runs_nothing() {
    let sb = Sandbox::new();
    sb.write(
        "c.yaml",
        "targets:\n  - {name: a, heartbeat: a.beat, timeout: 500ms, start: [sh, -c, 'touch ran'], bogus: 1}\n",
    );
    protector_cmd(sb.dir.path())
        .args(["--config", "c.yaml"])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("c.yaml:2:")
                .and(predicate::str::contains("unknown key `bogus`")),
        );
    assert!(!sb.path("ran").exists());
}

#[test]
fn legacy_form_usage_errors_exit_2() {
    let sb = Sandbox::new();
    for args in [
        vec!["/tmp/beat", "stop", "start"],
        vec!["/tmp/beat", "stop", "start", "300", "extra"],
        vec!["/tmp/beat", "stop", "start", "five"],
        vec!["/tmp/beat", "stop", "start", "0"],
    ] {
        protector_cmd(sb.dir.path())
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "usage: protector FILE STOP_CMD START_CMD TIMEOUT_SECS",
            ));
    }
}

#[test]
fn a_mistyped_subcommand_gets_a_suggestion_not_the_positional_form() {
    let sb = Sandbox::new();
    for (args, suggestion) in [
        (&["stauts", "--config", "x"][..], "'status'"),
        (&["chek"], "'check'"),
        (&["shcema"], "'schema'"),
    ] {
        protector_cmd(sb.dir.path())
            .args(args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(format!("unrecognized subcommand '{}'", args[0]))
                    .and(predicate::str::contains(format!(
                        "a similar subcommand exists: {suggestion}"
                    )))
                    // The short usage names every subcommand.
                    .and(predicate::str::contains("protector run"))
                    .and(predicate::str::contains("protector check"))
                    .and(predicate::str::contains("protector status"))
                    .and(predicate::str::contains("protector schema"))
                    .and(predicate::str::contains(
                        "FILE STOP_CMD START_CMD TIMEOUT_SECS",
                    )),
            );
    }
    #[cfg(not(windows))]
    protector_cmd(sb.dir.path())
        .args(["service", "install"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("for Windows only"));
}

#[test]
fn options_of_every_command_may_come_before_the_subcommand() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        // (Its program need not exist: the same file on Windows, under Wine.)
        "targets:\n  - {name: a, heartbeat: a.beat, timeout: 5m, start: [x], allow_missing_programs: true}\n",
    );
    let after = protector_cmd(sb.dir.path())
        .args(["check", "-q", "--log-format", "json", "p.yaml"])
        .output()
        .unwrap();
    assert_eq!(after.status.code(), Some(0), "{after:?}");
    for before in [
        &["-q", "check", "p.yaml"][..],
        &["-q", "--log-format", "json", "check", "p.yaml"],
        &["--log-format=json", "-q", "check", "p.yaml"],
    ] {
        let out = protector_cmd(sb.dir.path()).args(before).output().unwrap();
        assert_eq!(
            (out.status.code(), &out.stdout, &out.stderr),
            (after.status.code(), &after.stdout, &after.stderr),
            "{before:?}"
        );
    }
    // Before something that is not a subcommand, nothing moves: the original form's usage.
    protector_cmd(sb.dir.path())
        .args(["-q", "a.beat"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected 4 arguments"));
}

#[test]
fn the_config_file_has_a_default_and_can_be_given_without_config() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        // (`true` is no program on Windows: allowed to be missing, as that is not the point.)
        "state_file: state.json\ntargets:\n  - name: svc\n    heartbeat: svc.beat\n    timeout: 1h\n    \
         start: 'true'\n    allow_missing_programs: true\n",
    );
    protector_cmd(sb.dir.path())
        .args(["check", "p.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("p.yaml: valid for"));
    // No state yet: status says where it looked (the config's state_file).
    protector_cmd(sb.dir.path())
        .args(["status", "p.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("state.json"));
    // Without a config, the default one (absent here) is what each command reads.
    let (default, shown) = if cfg!(windows) {
        (
            "C:\\ProgramData\\protector\\protector.yaml",
            "protector\\protector.yaml",
        )
    } else {
        (
            "/etc/protector/protector.yaml",
            "/etc/protector/protector.yaml",
        )
    };
    for args in [&["check"][..], &[], &["run"], &["status"]] {
        if std::path::Path::new(default).exists() {
            break;
        }
        protector_cmd(sb.dir.path())
            .args(args)
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .code(1)
            .stderr(predicate::str::contains(shown));
    }
    protector_cmd(sb.dir.path())
        .arg("--help")
        .assert()
        .stdout(predicate::str::contains(shown));
    // The original form keeps no state: status says what to do instead.
    if !std::path::Path::new(default).exists() {
        protector_cmd(sb.dir.path())
            .arg("status")
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "the original positional form keeps none",
            ));
    }
}

/// The indented lines after the README line `intro`, up to the next unindented one.
#[cfg(not(windows))]
fn readme_block(readme: &str, intro: &str) -> String {
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.contains(intro))
        .skip(1)
        .skip_while(|l| l.is_empty());
    let mut block = String::new();
    for line in lines.by_ref() {
        match line.strip_prefix("    ") {
            Some(rest) => {
                block.push_str(rest);
                block.push('\n');
            }
            None if line.is_empty() => block.push('\n'),
            None => break,
        }
    }
    block.trim_end().to_string() + "\n"
}

#[cfg(not(windows))]
#[test]
fn the_readme_check_example_is_what_check_prints() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let yaml = readme_block(&readme, "For example, this `bad.yaml`:");
    let expected = readme_block(&readme, "gives (`protector check bad.yaml`");
    assert!(yaml.contains("timout") && expected.contains("problems found"));
    let sb = Sandbox::new();
    sb.write("bad.yaml", &yaml);
    let out = protector_cmd(sb.dir.path())
        .args(["check", "bad.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
}

#[cfg(not(windows))]
#[test]
fn the_readme_status_example_is_what_status_prints() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme_block(&readme, "**Status.**");
    let expected = block.split("\n\n").nth(1).unwrap().to_string();
    // A state file as the README's protector wrote it, its times counted back from now, and
    // its lock held (by this test) so that protector counts as running.
    let sb = Sandbox::new();
    let lock = std::fs::File::create(sb.path("lock")).unwrap();
    lock.lock().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let command = |name: &str, code: i32| {
        let output = if code == 0 {
            ""
        } else {
            "Failed to stop backup-agent.service: Unit backup-agent.service not loaded."
        };
        serde_json::json!({"command": name, "exit_code": code,
            "status": format!("exit status: {code}"), "duration_ms": 100, "timed_out": false,
            "output": output})
    };
    let target = |name: &str,
                  state: &str,
                  age: f64,
                  next: f64,
                  total: u64,
                  row: u32,
                  ago: f64,
                  stop: i32| {
        // The heartbeat file, as old as the table says.
        let beat = sb.path(&format!("{name}.alive"));
        std::fs::File::create(&beat)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs_f64(age))
            .unwrap();
        serde_json::json!({
            "name": name, "heartbeat": beat.display().to_string(), "state": state,
            "last_heartbeat": now - age, "next_check": now + next, "restarts_total": total,
            "consecutive_restarts": row, "backoff_secs": 0.0, "command_failures_total": 0,
            "command_timeouts_total": 0,
            "last_restart": {"at": now - ago, "commands": [command("stop", stop), command("start", 0)]}
        })
    };
    let mut backup_agent = target(
        "backup-agent",
        "backing off",
        7_500.0,
        460.0,
        5,
        5,
        192.0,
        1,
    );
    backup_agent["last_restart"]["incident"] = serde_json::json!({
        "id": "2026-12-06T101502Z-backup-agent-3fa2",
        "summary": "2 processes: 1 S (sleeping), 1 D (disk sleep); 4312 waits in rpc_wait_bit_killable; TCP to 10.0.0.7:2049 ESTABLISHED"
    });
    let state = serde_json::json!({
        "format": "protector-state", "version": 1, "pid": 4242, "protector_version": "0",
        "started_at": now - 200_000.0, "written_at": now,
        "config": "/etc/protector/protector.yaml",
        "lock_file": sb.path("lock").display().to_string(),
        "targets": [
            target("salt-minion", "watching", 42.0, 258.0, 3, 0, 183_600.0, 0),
            backup_agent,
        ]
    });
    sb.write("state.json", &serde_json::to_string(&state).unwrap());
    let out = protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn version_names_the_target_and_the_commit() {
    let out = protector_cmd(Path::new("."))
        .arg("--version")
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let expected = format!("protector {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let inside = text
        .trim()
        .trim_start_matches(&expected)
        .trim_end_matches(')');
    let (target, commit) = inside.split_once(", commit ").expect("target, commit");
    assert!(target.split('-').count() >= 3, "a target triple: {text}");
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn help_explains_with_examples() {
    protector_cmd(Path::new("."))
        .arg("--help")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("protector check --config")
                .and(predicate::str::contains("htrd_minion_alived"))
                .and(predicate::str::contains("--log-format")),
        );
}

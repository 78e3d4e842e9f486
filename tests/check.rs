//! `protector check`: the schema, every problem with its place, the effective targets,
//! warnings about this machine, `--explain`, `-q`, and every example passing.

mod common;

use std::path::Path;

use common::*;
use predicates::prelude::*;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `protector check FILE` in the sandbox: it must exit 1; what it printed on stderr.
fn check_fails(sb: &Sandbox, file: &str) -> String {
    let out = protector_cmd(sb.dir.path())
        .args(["check", "--config", file])
        .assert()
        .code(1);
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

#[test]
fn committed_schema_matches_the_config_types() {
    let out = protector_cmd(&repo(".")).arg("schema").assert().success();
    let printed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let committed = std::fs::read_to_string(repo("schema/protector.schema.json")).unwrap();
    assert!(
        printed == committed,
        "schema/protector.schema.json is out of date: run `cargo run -- schema > schema/protector.schema.json`"
    );
}

#[test]
fn every_example_points_at_the_schema_and_passes_check() {
    // The programs the examples run, as a machine they are written for has them.
    let sb = Sandbox::new();
    for program in [
        "systemctl",
        "service",
        "pkill",
        "pgrep",
        "sh",
        "net",
        "launchctl",
    ] {
        let stub = sb.write(program, "#!/bin/sh\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        #[cfg(windows)]
        std::fs::copy(&stub, stub.with_extension("exe")).unwrap();
    }
    let stubs = sb.path("");
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/protector.schema.json\n"),
            "{} lacks the schema line",
            path.display()
        );
        for os in ["linux", "macos", "windows"] {
            protector_cmd(&repo("."))
                .env("HOME", "/home/op")
                .env("PATH", &stubs)
                .args(["check", "--config", path.to_str().unwrap(), "--os", os])
                .assert()
                .success()
                .stdout(predicate::str::contains(format!("valid for {os}")));
        }
    }
    assert!(
        seen >= 3,
        "examples/ should hold protector.yaml, multi.yaml and demo.yaml"
    );
}

/// The config the .deb and .rpm install as /etc/protector/protector.yaml: valid, and it restarts
/// nothing until an operator edits it (every target switched off), with state where the unit's
/// StateDirectory puts it.
#[test]
fn packaged_config_is_valid_and_watches_nothing() {
    let path = repo("examples/packaging/protector.yaml");
    let out = protector_cmd(&repo("."))
        .args(["check", "--config", path.to_str().unwrap(), "--os", "linux"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("valid for linux; 1 target"), "{text}");
    assert!(text.contains("target salt-minion (disabled)"), "{text}");
    assert_eq!(
        text.matches("\ntarget ").count(),
        text.matches(" (disabled)\n").count(),
        "a target of the packaged config is enabled: {text}"
    );
    assert!(
        text.contains("state_file: /var/lib/protector/state.json"),
        "{text}"
    );
}

#[test]
fn check_shows_effective_targets_with_overrides_applied() {
    let cfg = repo("examples/protector.yaml");
    let linux = protector_cmd(&repo("."))
        .args(["check", "--config", cfg.to_str().unwrap(), "--os", "linux"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&linux.get_output().stdout).to_string();
    assert!(
        text.contains("heartbeat:       /tmp/htrd_minion_alived"),
        "{text}"
    );
    assert!(
        text.contains(r#"stop:            ["/bin/sh","-c","service salt-minion stop"]"#),
        "{text}"
    );
    assert!(text.contains("timeout:         5m"), "{text}");

    let windows = protector_cmd(&repo("."))
        .args([
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--os",
            "windows",
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&windows.get_output().stdout).to_string();
    // Variables are expanded only for the OS protector runs on.
    let temp = if cfg!(windows) {
        std::env::var("TEMP").unwrap()
    } else {
        "%TEMP%".to_string()
    };
    assert!(
        text.contains(&format!(r"heartbeat:       {temp}\htrd_minion_alived")),
        "{text}"
    );
    assert!(
        text.contains(r#"start:           ["cmd","/C","net start salt-minion"]"#),
        "{text}"
    );
}

#[test]
#[cfg(unix)]
fn check_expands_home_and_environment_variables() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "c.yaml",
        "targets:
  - {name: a, heartbeat: ~/beat, timeout: 90s, start: x}
  - {name: b, heartbeat: $PROT_TEST_DIR/beat, timeout: 1500ms, start: x}
  - {name: c, heartbeat: '${PROT_TEST_DIR}/c/beat', timeout: 1h30m, start: x}
defaults: {allow_missing_programs: true}
",
    );
    let out = protector_cmd(sb.dir.path())
        .env("HOME", "/home/op")
        .env("PROT_TEST_DIR", "/srv/beats")
        .args([
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--os",
            host_os(),
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("heartbeat:       /home/op/beat"), "{text}");
    assert!(text.contains("heartbeat:       /srv/beats/beat"), "{text}");
    assert!(
        text.contains("heartbeat:       /srv/beats/c/beat"),
        "{text}"
    );
    assert!(
        text.contains("timeout:         1500ms") && text.contains("timeout:         90m"),
        "{text}"
    );

    protector_cmd(sb.dir.path())
        .env_remove("PROT_TEST_DIR")
        .args([
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--os",
            host_os(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "c.yaml:3:15: targets[1].heartbeat: environment variable PROT_TEST_DIR is not set",
        ));
}

#[cfg(unix)]
fn host_os() -> &'static str {
    if cfg!(windows) {
        "windows"
    } else if cfg!(target_os = "macos") {
        "macos"
    } else {
        "linux"
    }
}

#[test]
fn check_reports_every_problem_with_its_line() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "bad.yaml",
        "defaults:
  timout: 5m
targets:
  - name: a
    heartbeat: /tmp/a
    timeout: soon
    start: \"echo 'unbalanced\"
  - name: a
    heartbeat: /tmp/b
    timeout: 0
    start: ok
    os:
      linux: {colour: blue}
",
    );
    let err = check_fails(&sb, "bad.yaml");
    for expected in [
        "bad.yaml:2:3: defaults.timout: unknown key `timout`",
        "bad.yaml:6:5: targets[0].timeout: \"soon\" is not a duration",
        "bad.yaml:10:5: targets[1].timeout: 0 must be greater than zero",
        "bad.yaml:13:15: targets[1].os.linux.colour: unknown key `colour`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // Semantic problems are reported once the schema is satisfied.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("timout", "timeout")
            .replace("soon", "5s")
            .replace("timeout: 0", "timeout: 1")
            .replace("colour: blue", "stop: x"),
    )
    .unwrap();
    let err = check_fails(&sb, "bad.yaml");
    assert!(
        err.contains("bad.yaml:7:5: targets[0].start: cannot split command"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:8:5: targets[1].name: duplicate target name \"a\""),
        "{err}"
    );
}

#[test]
fn a_nul_character_in_a_command_is_refused_with_its_key() {
    // YAML can write one ("\0"); no program can be given it, so the config cannot run.
    // (The file is not "nul.yaml": Windows takes that name for its null device.)
    let sb = Sandbox::new();
    sb.write(
        "zero.yaml",
        r#"targets:
  - name: a
    heartbeat: /tmp/a
    start: ["echo", "a\0b"]
  - name: b
    heartbeat: /tmp/b
    start: "echo \0"
    stop: "echo \0"
    shell: true
"#,
    );
    let err = check_fails(&sb, "zero.yaml");
    for expected in [
        "zero.yaml:4:5: targets[0].start: holds a NUL character",
        "zero.yaml:7:5: targets[1].start: holds a NUL character",
        "zero.yaml:8:5: targets[1].stop: holds a NUL character",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn yaml_syntax_errors_and_missing_files_are_reported() {
    let sb = Sandbox::new();
    sb.write("broken.yaml", "targets:\n  - name: a\n   heartbeat: x\n");
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "broken.yaml"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("broken.yaml:3:")
                .and(predicate::str::contains("invalid YAML")),
        );
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "absent.yaml"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("absent.yaml")
                .and(predicate::str::contains("cannot read config file")),
        );
    sb.write("empty.yaml", "");
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "empty.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("empty.yaml: the file is empty"));
}

#[cfg(not(windows))]
#[test]
fn shell_syntax_in_a_command_without_a_shell_is_a_problem_and_unknown_programs_are_named() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 5m\n    \
         stop: kill $(cat /run/x.pid) 2>/dev/null\n    start: systemctl start a\n",
    );
    protector_cmd(sb.dir.path())
        .args(["check", "p.yaml"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("p.yaml:5:5: targets[0].stop: `$(`").and(
                predicate::str::contains("set `shell: true`, or write the command as a list"),
            ),
        );
    // With a shell, or as a list, the syntax is fine; a program this machine lacks is a
    // problem of this machine (exit 3, not 1: protector would run the config, and log an
    // error)...
    let yaml = "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 5m\n    shell: true\n    \
         stop: kill $(cat /run/x.pid) 2>/dev/null\n    start: [protector-no-such-program, go]\n";
    sb.write("p.yaml", yaml);
    let out = protector_cmd(sb.dir.path())
        .args(["check", "p.yaml"])
        .assert()
        .code(3);
    let said = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        said.contains(
            "p.yaml: target a: start: program `protector-no-such-program` is not found on PATH here\n"
        ) && said.contains("p.yaml: 1 command cannot run here: protector would run this config"),
        "{said}"
    );
    // ...unless the target says it comes later: then a warning.
    sb.write(
        "p.yaml",
        &yaml.replace(
            "shell: true",
            "shell: true\n    allow_missing_programs: true",
        ),
    );
    protector_cmd(sb.dir.path())
        .args(["check", "p.yaml"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: target a: start: program `protector-no-such-program` is not found on PATH \
             here (allow_missing_programs: true)",
        ));
}

#[test]
fn check_quiet_prints_one_line_and_trace_shows_each_look() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        // (`true` is no program on Windows: allowed to be missing, as that is not the point.)
        "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 200ms\n    start: 'true'\n\
         defaults: {allow_missing_programs: true}\n",
    );
    let out = protector_cmd(sb.dir.path())
        .args(["check", "-q", "p.yaml"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let os = if cfg!(windows) {
        "windows"
    } else if cfg!(target_os = "macos") {
        "macos"
    } else {
        "linux"
    };
    assert_eq!(text, format!("p.yaml: valid for {os}; 1 target\n"));
    // Keeping no log file at all is not a choice --log-keep offers.
    protector_cmd(sb.dir.path())
        .args([
            "--log-file",
            "p.log",
            "--log-keep",
            "0",
            "--config",
            "p.yaml",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value '0' for '--log-keep <N>'",
        ));
    // -vv is trace: every look at a heartbeat is logged.
    let p = sb.spawn(&["-vv", "--config", "p.yaml"]);
    p.wait_events("looked", Some("a"), 2);
}

#[test]
fn check_explain_says_where_each_setting_comes_from() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        "defaults:\n  timeout: 5m\n  allow_missing_programs: true\n  os:\n    linux: {stop: [a]}\n    windows: {stop: [b]}\n\
         targets:\n  - name: t\n    heartbeat: t.beat\n    start: [c]\n    os:\n      unix: {restart_grace: 1m}\n",
    );
    let out = protector_cmd(sb.dir.path())
        .args(["check", "--explain", "--os", "linux", "p.yaml"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };
    assert!(line("timeout").ends_with("[from defaults]"), "{text}");
    assert!(
        line("allow_missing_programs").ends_with("[from defaults]"),
        "{text}"
    );
    // A label longer than the column is still followed by a space.
    assert!(
        line("allow_missing_programs").starts_with("  allow_missing_programs: true ("),
        "{text}"
    );
    assert!(line("stop").contains("stop: defaults.os.linux"), "{text}");
    assert!(
        line("restart_grace").ends_with("[from targets[0].os.unix]"),
        "{text}"
    );
    assert!(
        line("command_timeout").ends_with("[from default]"),
        "{text}"
    );
    assert!(line("start").contains("start: targets[0]"), "{text}");
}

#[test]
fn a_mistyped_key_is_told_the_key_meant_where_it_is() {
    let sb = Sandbox::new();
    sb.write(
        "a.yaml",
        "max_paralel_commands: 3\ndefaults: {comand_timeout: 1m}\ntargets:\n  - name: a\n    \
         heartbeat: a.beat\n    timout: 1m\n    start: [x]\n    os: {linx: {start: [y]}}\n    \
         colour: red\n",
    );
    let said = check_fails(&sb, "a.yaml");
    for line in [
        "a.yaml:1:1: max_paralel_commands: unknown key `max_paralel_commands` (did you mean `max_parallel_commands`?)",
        "a.yaml:2:12: defaults.comand_timeout: unknown key `comand_timeout` (did you mean `command_timeout`?)",
        "a.yaml:6:5: targets[0].timout: unknown key `timout` (did you mean `timeout`?)",
        "a.yaml:8:10: targets[0].os.linx: unknown key `linx` (did you mean `linux`?)",
        // Nothing near enough: no guess.
        "a.yaml:9:5: targets[0].colour: unknown key `colour`\n",
    ] {
        assert!(said.contains(line), "{line}\nnot in:\n{said}");
    }
}

#[test]
fn yaml_1_1_habits_get_a_hint() {
    let sb = Sandbox::new();
    for (yaml, said) in [
        (
            "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 5m\n    enabled: no\n    start: 'true'\n",
            "a.yaml:5:5: targets[0].enabled: \"no\" is a string here: use true or false",
        ),
        (
            "targets:\n  - name: a\n\theartbeat: a.beat\n",
            "a.yaml:3:1: tabs are not allowed for indentation",
        ),
        (
            "targets:\n  - name: a\n    heartbeat: ~bob/a.beat\n    timeout: 5m\n    start: 'true'\n",
            "`~bob` (another user's home directory) is not supported",
        ),
        (
            "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 5m\n    start: echo a: b\n",
            "a.yaml:5:18: invalid YAML: mapping values are not allowed in this context at line 5 \
             column 18; a value that holds `: ` (a command, often) must be quoted: start: 'echo a: b'",
        ),
        // ` #` starts a YAML comment: the command is cut where a quote is still open (also
        // with `shell: true`, which would otherwise hand the shell half a command).
        (
            "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 5m\n    start: echo \"a # b\"\n",
            "a.yaml:5:5: targets[0].start: YAML ended this value where ` #` starts a comment, so \
             the command is \"echo \\\"a\"; quote the whole value: start: 'echo \"a # b\"'\n",
        ),
        (
            "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 5m\n    shell: true\n    stop: kill $(cat 'a # b.pid')\n    start: 'true'\n",
            "a.yaml:6:5: targets[0].stop: YAML ended this value where ` #` starts a comment, so \
             the command is \"kill $(cat 'a\"; quote the whole value: stop: 'kill $(cat ''a # b.pid'')'\n",
        ),
    ] {
        sb.write("a.yaml", yaml);
        protector_cmd(sb.dir.path())
            .args(["check", "a.yaml"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(said));
    }
    // A comment after a whole command is one, as in a shell.
    sb.write(
        "a.yaml",
        "targets:\n  - name: a # the agent\n    heartbeat: a.beat\n    timeout: 5m\n    start: echo \"a\"  # starts it\n    allow_missing_programs: true # echo is cmd's own on Windows\n",
    );
    protector_cmd(sb.dir.path())
        .args(["check", "a.yaml"])
        .assert()
        .success();
}

/// Each heartbeat's place is warned about for its own target, in the targets' order, though
/// `check` looks at each directory once and at the files in parallel.
#[cfg(unix)]
#[test]
fn check_warns_about_heartbeats_any_user_can_write_target_by_target() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let mut yaml = String::from("defaults: {timeout: 5m, start: 'true'}\ntargets:\n");
    for (name, beat) in [
        ("a", "open/a.beat"),
        ("b", "own/b.beat"),
        ("c", "open/c.beat"),
        ("d", "own/d.beat"),
    ] {
        yaml.push_str(&format!("  - {{name: {name}, heartbeat: {beat}}}\n"));
    }
    sb.write("p.yaml", &yaml);
    for dir in ["open", "own"] {
        std::fs::create_dir(sb.path(dir)).unwrap();
    }
    for beat in ["open/a.beat", "own/b.beat", "open/c.beat", "own/d.beat"] {
        sb.touch(beat);
    }
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(sb.path(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("open", 0o777);
    mode("own/b.beat", 0o666);
    let out = protector_cmd(sb.dir.path())
        .args(["check", "--config", "p.yaml"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let warned: Vec<(&str, &str)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("p.yaml: warning: target "))
        .filter_map(|l| l.split_once(": "))
        .collect();
    let said = |what: &str| format!("{err}\n(expected {what})");
    assert_eq!(warned.len(), 3, "{}", said("a, b, c"));
    assert_eq!(
        warned.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "{err}"
    );
    for (_, why) in [warned[0], warned[2]] {
        assert!(
            why.starts_with("the heartbeat's directory ") && why.contains("(mode 0777)"),
            "{err}"
        );
    }
    assert!(
        warned[1].1.starts_with("the heartbeat ") && warned[1].1.contains("(mode 0666)"),
        "{err}"
    );
}

#[test]
fn check_warns_when_a_heartbeat_directory_does_not_exist() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        "targets:
  - name: fine
    heartbeat: fine.beat
    timeout: 5m
    start: 'true'
  - name: nodir
    heartbeat: absent/nodir.beat
    timeout: 5m
    start: 'true'
  - name: off
    heartbeat: absent/off.beat
    timeout: 5m
    start: 'true'
    enabled: false
defaults: {allow_missing_programs: true}
",
    );
    let out = protector_cmd(sb.dir.path())
        .args(["check", "--config", "p.yaml"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    // (`true` is no program on Windows: that warning, allowed above, is not the point here.)
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("warning") && l.contains("heartbeat"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with("p.yaml: warning: target nodir: the heartbeat's directory ")
            && warnings[0].contains("absent does not exist"),
        "{err}"
    );
    // For another OS nothing of this machine is looked at.
    let other = if cfg!(windows) { "linux" } else { "windows" };
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "p.yaml", "--os", other])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not());
}

#[test]
fn check_refuses_durations_beyond_100_years_with_their_place() {
    let sb = Sandbox::new();
    sb.write(
        "p.yaml",
        "targets:
  - name: a
    heartbeat: a.beat
    timeout: 10000000000000000000
    start: 'true'
    startup_grace: 1e19
    backoff: {max: 1e19}
",
    );
    let err = check_fails(&sb, "p.yaml");
    for expected in [
        "p.yaml:4:5: targets[0].timeout: 10000000000000000000 is too long: the longest duration is 100 years",
        "p.yaml:6:5: targets[0].startup_grace: 1e+19 is too long",
        "p.yaml:7:15: targets[0].backoff.max: 1e+19 is too long",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // Written with units (only `check`'s own parser sees these), and exactly 100 years.
    sb.write(
        "p.yaml",
        "targets:
  - name: a
    heartbeat: a.beat
    timeout: 200000000000000d
    command_timeout: 36525d 1s
    start: 'true'
  - name: b
    heartbeat: b.beat
    timeout: 36525d
    start: 'true'
",
    );
    let err = check_fails(&sb, "p.yaml");
    assert!(err.starts_with("p.yaml: 2 problems found"), "{err}");
    assert!(
        err.contains("p.yaml:4:5: targets[0].timeout: \"200000000000000d\" is too long"),
        "{err}"
    );
    assert!(
        err.contains("p.yaml:5:5: targets[0].command_timeout: \"36525d 1s\" is too long"),
        "{err}"
    );
}

/// `check --format json`: every problem as a record a CI job can turn into an annotation,
/// placed in its own file (an included one too), with the exit status of the text form.
#[test]
fn check_as_json_gives_every_problem_as_a_record() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("conf.d")).unwrap();
    sb.write(
        "p.yaml",
        "include: conf.d/*.yaml\ntargets:\n  - name: a\n    heartbeat: a.beat\n    timout: 5m\n    start: x\n",
    );
    sb.write(
        "conf.d/b.yaml",
        "targets:\n  - name: b\n    heartbeat: b.beat\n    timeout: soon\n    start: x\n",
    );
    let json = |file: &str| {
        let out = protector_cmd(sb.dir.path())
            .args(["check", "--format", "json", file])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), doc)
    };
    let (code, doc) = json("p.yaml");
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(doc["valid"], false);
    let problems = doc["problems"].as_array().unwrap();
    let unknown = problems
        .iter()
        .find(|p| p["kind"] == "unknown_key")
        .unwrap();
    assert_eq!(unknown["file"], "p.yaml");
    assert_eq!(
        (unknown["line"].as_u64(), unknown["column"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(unknown["key"], "targets[0].timout");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `timeout`?")
    );
    let timeout = problems
        .iter()
        .find(|p| p["key"] == "targets[0].timeout")
        .unwrap();
    assert_eq!(timeout["file"], "conf.d/b.yaml");
    assert_eq!(timeout["line"], 4);
    assert_eq!(timeout["kind"], "invalid");

    sb.write("q.yaml", "targets: [\n");
    let (code, doc) = json("q.yaml");
    assert_eq!(code, Some(1));
    assert_eq!(doc["problems"][0]["kind"], "syntax");

    // Valid, with a program this machine lacks: 3, as the text form.
    sb.write(
        "r.yaml",
        "targets:\n  - name: r\n    heartbeat: r.beat\n    timeout: 5m\n    start: [no-such-program-here]\n",
    );
    let (code, doc) = json("r.yaml");
    assert_eq!(code, Some(3), "{doc}");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["targets"], 1);
    assert_eq!(doc["problems"][0]["kind"], "program_missing");
}

/// The pre-commit hook's entry, as pre-commit runs it: the files to check after it.
#[test]
fn the_pre_commit_hook_passes_good_files_and_stops_a_bad_one() {
    let hooks: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo(".pre-commit-hooks.yaml")).unwrap())
            .unwrap();
    let hook = &hooks[0];
    assert_eq!(hook["id"], "protector-check");
    let entry: Vec<&str> = hook["entry"].as_str().unwrap().split(' ').collect();
    assert_eq!(entry[0], "protector");
    let sb = Sandbox::new();
    // A program that exists on no machine: looked at nothing here, the file is still good.
    let good = "targets:\n  - name: svc\n    heartbeat: /nowhere/svc.beat\n    timeout: 5m\n    start: [/opt/nowhere/bin/start-svc]\n";
    sb.write("protector.yaml", good);
    sb.write("protector-web.yaml", &good.replace("svc", "web"));
    sb.write(
        "protector-bad.yaml",
        &good.replace("timeout: 5m", "timeout: soon"),
    );
    let run = |files: &[&str]| {
        protector_cmd(sb.dir.path())
            .args(&entry[1..])
            .args(files)
            .output()
            .unwrap()
    };
    let ok = run(&["protector.yaml", "protector-web.yaml"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("protector.yaml") && out.contains("protector-web.yaml"),
        "{out}"
    );
    let bad = run(&["protector.yaml", "protector-bad.yaml", "protector-web.yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("protector-bad.yaml:") && err.contains("timeout"),
        "{err}"
    );
    assert!(!err.contains("protector-web.yaml:"), "{err}");
}

//! `include:` a directory of target files (`conf.d/*.yaml`): `check` lists every file's
//! targets and places each problem in the file and line it is written at; a running protector
//! takes a file dropped into the directory at its next reload, and one started while an
//! included file is broken runs on the last config it accepted, included targets and all.

mod common;

use common::*;

// `sh` is not on Windows: a program missing there is allowed (`check` would exit 3).
const MAIN: &str = "defaults:
  timeout: 1h
  allow_missing_programs: true
include: conf.d/*.yaml
targets:
  - name: main
    heartbeat: main.beat
    start: [sh, -c, 'echo start main >> events']
";

/// A conf.d file with one target of that name.
fn one_target(name: &str) -> String {
    format!(
        "targets:\n  - name: {name}\n    heartbeat: {name}.beat\n    start: [sh, -c, 'echo start {name} >> events']\n"
    )
}

fn sandbox_with_conf_d() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("conf.d")).unwrap();
    sb.write("protector.yaml", MAIN);
    sb
}

/// `protector check ARGS protector.yaml` in the sandbox: (exit code, stdout, stderr).
fn check(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = protector_cmd(sb.dir.path())
        .arg("check")
        .args(args)
        .arg("protector.yaml")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_lists_the_targets_of_every_included_file_in_name_order() {
    let sb = sandbox_with_conf_d();
    sb.write("conf.d/web.yaml", &one_target("web"));
    sb.write("conf.d/db.yaml", &one_target("db"));
    // Left out, as a shell's `*` leaves them: an editor's swap file and a hidden file.
    sb.write("conf.d/.web.yaml.swp", "not: yaml: at all");
    sb.write("conf.d/web.yaml~", "targets: oops");
    let (code, out, err) = check(&sb, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("protector.yaml: valid for "), "{out}");
    assert!(out.contains("; 3 targets\n"), "{out}");
    assert!(
        out.contains("included: conf.d/db.yaml (1 target)\n"),
        "{out}"
    );
    assert!(
        out.contains("included: conf.d/web.yaml (1 target)\n"),
        "{out}"
    );
    let order: Vec<&str> = out.lines().filter(|l| l.starts_with("target ")).collect();
    assert_eq!(
        order,
        [
            "target main",
            "target db (from conf.d/db.yaml)",
            "target web (from conf.d/web.yaml)"
        ]
    );
    // The main file's defaults apply to included targets; --explain says which layer of
    // which file each setting comes from.
    let (code, out, _) = check(&sb, &["--explain"]);
    assert_eq!(code, 0);
    let web = out.split("target web").nth(1).unwrap();
    assert!(
        web.contains("timeout:         1h   [from defaults]"),
        "{web}"
    );
    assert!(web.contains("[from conf.d/web.yaml: targets[0]]"), "{web}");
}

#[test]
fn problems_in_included_files_are_placed_in_their_file_and_line() {
    let sb = sandbox_with_conf_d();
    sb.write(
        "conf.d/a.yaml",
        "targets:\n  - name: a\n    heartbeat: a.beat\n    start: x\n    timeout: soon\n",
    );
    // The name the main file already uses, and a setting that belongs in the main file.
    sb.write(
        "conf.d/b.yaml",
        "defaults:\n  timeout: 5m\ntargets:\n  - name: main\n    heartbeat: b.beat\n    start: x\n",
    );
    let (code, _, err) = check(&sb, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("conf.d/a.yaml:5:5: targets[0].timeout: "),
        "{err}"
    );
    assert!(
        err.contains(
            "conf.d/b.yaml:1:1: defaults: an included file holds a `targets` list and nothing else; `defaults` belongs in the main file"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "conf.d/b.yaml:4:5: targets[0].name: duplicate target name \"main\" (also used by targets[0])"
        ),
        "{err}"
    );
    assert!(
        err.starts_with("protector.yaml: 3 problems found\n"),
        "{err}"
    );

    // A YAML mistake in an included file is its file's.
    sb.write("conf.d/b.yaml", "targets:\n  - name: [\n");
    let (code, _, err) = check(&sb, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("conf.d/b.yaml:3:1: invalid YAML"), "{err}");

    // A path without wildcards must exist; a pattern may match nothing.
    sb.write(
        "protector.yaml",
        &MAIN.replace(
            "include: conf.d/*.yaml",
            "include: [conf.d/*.json, conf.d/gone.yaml]",
        ),
    );
    let (code, _, err) = check(&sb, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("protector.yaml:4:26: include[1]: cannot read conf.d/gone.yaml: "),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_file_dropped_into_conf_d_is_watched_after_a_reload() {
    let sb = sandbox_with_conf_d();
    sb.write("conf.d/web.yaml", &one_target("web"));
    let cfg = sb.path("protector.yaml");
    let p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    let started = p.wait_events("started", None, 1);
    assert_eq!(started[0]["targets"], 2);

    sb.write("conf.d/db.yaml", &one_target("db"));
    let (code, out, err) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 added"), "{out}");

    // A broken file is refused at a reload, named with its line; the rest goes on.
    sb.write(
        "conf.d/db.yaml",
        "targets:\n  - name: db\n    timeout: -1\n",
    );
    let (code, out, _) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("conf.d/db.yaml:3:5: targets[0].timeout"),
        "{out}"
    );
    // Logged before the answer; read from protector's output by a thread of the test's own.
    assert_eq!(p.wait_events("reload_failed", None, 1).len(), 1);
}

#[cfg(unix)]
#[test]
fn a_protector_started_while_an_included_file_is_broken_runs_on_what_it_accepted() {
    let sb = sandbox_with_conf_d();
    sb.write("conf.d/web.yaml", &one_target("web"));
    let cfg = sb.path("protector.yaml");
    let copy = sb.path(".protector.yaml.accepted");
    let mut p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    p.wait_events("started", None, 1);
    wait_until(PATIENCE, "the accepted copy", || copy.exists());
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));
    // The copy stands on its own: every file's targets, no `include` (which would read
    // today's files).
    let kept = std::fs::read_to_string(&copy).unwrap();
    assert!(!kept.contains("include"), "{kept}");
    assert!(kept.contains("web.beat"), "{kept}");

    sb.write(
        "conf.d/web.yaml",
        "targets:\n  - name: web\n    timeout: never\n",
    );
    let p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    let refused = p.wait_events("config_refused", None, 1);
    assert_eq!(refused[0]["running_on"], copy.to_str().unwrap());
    let problems = p.events("config_problem", None);
    assert!(
        problems.iter().any(|v| v["message"]
            .as_str()
            .unwrap()
            .contains("conf.d/web.yaml:3:5: targets[0].timeout")),
        "{problems:?}"
    );
    let started = p.wait_events("started", None, 1);
    assert_eq!(
        started[0]["targets"], 2,
        "the included target is still watched"
    );
}

//! What differs on Windows: `cmd /C` for `shell: true` and the positional form, `%VAR%`
//! expansion, Job Objects for killing hung command trees, and Windows services (restarting
//! one with `net stop`/`net start`, and protector running as one). Runs on Windows and, in
//! CI, under Wine.
#![cfg(windows)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use predicates::prelude::*;
use windows_service::service::{
    ServiceAccess, ServiceActionType, ServiceErrorControl, ServiceInfo, ServiceStartType,
    ServiceState, ServiceType,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// The dummy service example, built by `cargo test` next to the test binaries.
fn dummy() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("examples").join("dummy_service.exe");
    assert!(p.exists(), "{} not built", p.display());
    p
}

fn process_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    unsafe {
        let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if h.is_null() {
            return false;
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(h, &mut code);
        CloseHandle(h);
        ok != 0 && code == STILL_ACTIVE as u32
    }
}

/// Ends process `pid` at once (as `taskkill /F` would, without depending on it).
fn terminate(pid: u32) {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};
    unsafe {
        let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
        if !h.is_null() {
            TerminateProcess(h, 1);
            CloseHandle(h);
        }
    }
}

/// `echo x>> f && ...` writes "x " in cmd: the space before `&&` is echoed.
fn trimmed(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn shell_true_runs_through_cmd() {
    let sb = Sandbox::new();
    let _p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    shell: true
    stop: echo stopping %PROTECTOR_TARGET%>> events.txt
    start: echo starting %PROTECTOR_TARGET%>> events.txt && echo done> started.txt
",
    );
    wait_until(PATIENCE, "start through cmd", || {
        sb.path("started.txt").exists()
    });
    assert_eq!(
        trimmed(sb.lines("events.txt")),
        ["stopping svc", "starting svc"]
    );
}

#[test]
fn legacy_form_runs_through_cmd() {
    let sb = Sandbox::new();
    let beat = sb.path("htrd_minion_alived");
    std::fs::write(&beat, "x").unwrap();
    let _p = sb.spawn(&[
        beat.to_str().unwrap(),
        "echo stop>> events.txt",
        "echo start>> events.txt && echo done> started.txt",
        "1",
    ]);
    wait_until(PATIENCE, "start through cmd", || {
        sb.path("started.txt").exists()
    });
    assert_eq!(trimmed(sb.lines("events.txt")), ["stop", "start"]);
}

#[test]
fn percent_variables_are_expanded() {
    let sb = Sandbox::new();
    sb.write(
        "c.yaml",
        "targets:\n  - {name: a, heartbeat: '%PROT_TEST_DIR%\\beat', timeout: 5s, start: x}\n  - {name: b, heartbeat: '%NOT_SET_ANYWHERE%\\beat', timeout: 5s, start: x}\n",
    );
    protector_cmd(sb.dir.path())
        .env("PROT_TEST_DIR", r"D:\beats")
        .env_remove("NOT_SET_ANYWHERE")
        .args(["check", "--config", "c.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "c.yaml:3:15: targets[1].heartbeat: environment variable NOT_SET_ANYWHERE is not set",
        ));
    sb.write(
        "c.yaml",
        "targets:\n  - {name: a, heartbeat: '%PROT_TEST_DIR%\\beat', timeout: 5s, start: x, allow_missing_programs: true}\n",
    );
    protector_cmd(sb.dir.path())
        .env("PROT_TEST_DIR", r"D:\beats")
        .args(["check", "--config", "c.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r"heartbeat:       D:\beats\beat"));
}

#[test]
fn the_examples_windows_override_is_used_on_windows() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let temp = std::env::var("TEMP").unwrap();
    protector_cmd(root)
        .args(["check", "--config", "examples/protector.yaml"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!(r"heartbeat:       {temp}\htrd_minion_alived"))
                .and(predicate::str::contains(
                    r#"stop:            ["cmd","/C","net stop salt-minion"]"#,
                ))
                .and(predicate::str::contains(
                    r#"start:           ["cmd","/C","net start salt-minion"]"#,
                )),
        );
}

#[test]
fn a_hung_command_tree_is_killed_through_its_job_object() {
    let sb = Sandbox::new();
    let yaml = format!(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    command_timeout: 2s
    stop: ['{}', tree, grandchild.pid, '300']
    start: [cmd, /C, 'echo done> started.txt']
",
        dummy().display()
    );
    let p = sb.run_config(&yaml);
    let grandchild = read_pid(&sb, "grandchild.pid");
    assert!(process_alive(grandchild));
    p.wait_command_events("command_timed_out", "stop", Some("svc"), 1);
    wait_until(PATIENCE, "the grandchild killed with its job", || {
        !process_alive(grandchild)
    });
    wait_until(PATIENCE, "start after the killed stop", || {
        sb.path("started.txt").exists()
    });
}

#[test]
fn a_command_running_when_protector_dies_dies_with_it_and_one_that_ended_leaves_its_daemon() {
    let sb = Sandbox::new();
    let yaml = format!(
        "targets:
  - name: hung
    heartbeat: hung.beat
    timeout: 1s
    restart_grace: 1h
    command_timeout: 1h
    stop: ['{dummy}', tree, grandchild.pid, '300']
    start: [cmd, /C, 'echo never> started.txt']
  - name: daemon
    heartbeat: daemon.beat
    timeout: 1s
    restart_grace: 1h
    start: [cmd, /C, 'start \"\" /B \"{dummy}\" tree daemon.pid 300']
",
        dummy = dummy().display()
    );
    let mut p = sb.run_config(&yaml);
    let grandchild = read_pid(&sb, "grandchild.pid");
    let daemon = read_pid(&sb, "daemon.pid");
    p.wait_events("restart_done", Some("daemon"), 1);
    assert!(process_alive(grandchild) && process_alive(daemon));
    // protector dies (TerminateProcess: no chance to clean up).
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    wait_until(
        PATIENCE,
        "the hung command's tree to die with protector",
        || !process_alive(grandchild),
    );
    assert!(!sb.path("started.txt").exists());
    // What a finished start command left running on purpose stays.
    assert!(process_alive(daemon), "the daemon died with protector");
    // Ended now, with its parent: they hold the test's output, which the suite's log waits on.
    let parent = read_pid(&sb, "daemon.pid.parent");
    for pid in [daemon, parent] {
        terminate(pid);
        wait_until(PATIENCE, "the daemon to end", || !process_alive(pid));
    }
}

fn manager() -> ServiceManager {
    ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .unwrap()
}

/// Removes a test service, whatever state it is in.
fn remove_service(name: &str) {
    let _ = Command::new("net").args(["stop", name]).status();
    if let Ok(s) = manager().open_service(name, ServiceAccess::DELETE | ServiceAccess::QUERY_STATUS)
    {
        let _ = s.delete();
    }
}

struct ServiceGuard(String);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        remove_service(&self.0);
    }
}

#[test]
fn a_stale_windows_service_is_restarted_with_net_stop_and_net_start() {
    let sb = Sandbox::new();
    let name = format!("protector-dummy-{}", std::process::id());
    let events = sb.path("service-events.txt");
    let info = ServiceInfo {
        name: name.clone().into(),
        display_name: name.clone().into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::OnDemand,
        error_control: ServiceErrorControl::Normal,
        executable_path: dummy(),
        launch_arguments: vec!["service".into(), name.clone().into(), events.clone().into()],
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    manager()
        .create_service(&info, ServiceAccess::QUERY_STATUS)
        .unwrap();
    let _guard = ServiceGuard(name.clone());
    assert!(
        Command::new("net")
            .args(["start", &name])
            .status()
            .unwrap()
            .success()
    );
    wait_until(PATIENCE, "the dummy service running", || {
        sb.lines("service-events.txt") == ["start"]
    });

    let hung = manager()
        .open_service(&name, ServiceAccess::QUERY_STATUS)
        .unwrap()
        .query_status()
        .unwrap()
        .process_id
        .expect("the running service's process");

    let (_p, cfg) = start_with_state(
        &sb,
        &format!(
            "targets:
  - name: dummy
    heartbeat: dummy.beat
    timeout: 1s
    restart_grace: 1h
    shell: true
    stop: net stop {name}
    start: net start {name}
    service: {name}
"
        ),
    );
    wait_until(
        PATIENCE,
        "the dummy service stopped and started again",
        || sb.lines("service-events.txt") == ["start", "stop", "start"],
    );
    let state = manager()
        .open_service(&name, ServiceAccess::QUERY_STATUS)
        .unwrap()
        .query_status()
        .unwrap()
        .current_state;
    assert_eq!(state, ServiceState::Running);

    // The incident, taken before `net stop`, shows the service's process as it was.
    let (code, out, err) = ctl(&sb, &cfg, &["incidents", "--json"]);
    assert_eq!(code, 0, "{err}");
    let incidents: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &incidents[0];
    let process = &first["processes"][0];
    assert_eq!(process["pid"], hung, "{first:#}");
    assert!(
        process["command"]
            .as_str()
            .unwrap()
            .contains("dummy_service"),
        "{first:#}"
    );
    assert!(
        first["summary"]
            .as_str()
            .unwrap()
            .starts_with("1 process: "),
        "{first:#}"
    );
}

#[test]
fn protector_runs_as_a_windows_service() {
    let sb = Sandbox::new();
    let name = format!("protector-test-{}", std::process::id());
    let marker = sb.path("restarted.txt");
    let cfg = sb.write(
        "protector.yaml",
        &format!(
            "targets:
  - name: stale
    heartbeat: stale.beat
    timeout: 1s
    restart_grace: 1h
    shell: true
    start: echo restarted> \"{}\"
",
            marker.display()
        ),
    );
    protector_cmd(sb.dir.path())
        .args([
            "service",
            "install",
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            &name,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "installed service {name}"
        )));
    let _guard = ServiceGuard(name.clone());
    // Its Event Log source is registered, with a message file that shows records as written.
    let source = format!(r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\{name}");
    let registered = || {
        let out = Command::new("reg")
            .args(["query", &source])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let values = registered().expect("the Event Log source is registered");
    assert!(values.contains("EventCreate.exe"), "{values}");
    assert!(values.contains("TypesSupported"), "{values}");
    // The SCM starts a crashed protector again: after 5 s, 10 s, then 60 s. (Wine accepts the
    // setting but cannot report it back: "invalid level"; real Windows can.)
    let service = manager()
        .open_service(&name, ServiceAccess::QUERY_CONFIG)
        .unwrap();
    match service.get_failure_actions() {
        Ok(actions) => {
            let delays: Vec<(ServiceActionType, u64)> = actions
                .actions
                .unwrap_or_default()
                .iter()
                .map(|a| (a.action_type, a.delay.as_secs()))
                .collect();
            let restart = ServiceActionType::Restart;
            assert_eq!(delays, [(restart, 5), (restart, 10), (restart, 60)]);
        }
        Err(e) => eprintln!("failure actions not checked: this Windows cannot report them ({e})"),
    }
    drop(service);
    assert!(
        Command::new("net")
            .args(["start", &name])
            .status()
            .unwrap()
            .success()
    );
    wait_until(PATIENCE, "the service restarting the stale target", || {
        marker.exists()
    });
    // It logs to protector.log.<date> next to the config.
    wait_until(PATIENCE, "the service's log file", || {
        std::fs::read_dir(sb.dir.path())
            .unwrap()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("protector.log.")
                    && std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains("running as a Windows service")
            })
    });
    protector_cmd(sb.dir.path())
        .args(["service", "uninstall", "--name", &name])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("removed service {name}")));
    assert_eq!(
        registered(),
        None,
        "the Event Log source is removed with the service"
    );
}

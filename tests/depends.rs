//! Dependencies end to end, with real sockets: a stale target whose dependency (a TCP port on
//! loopback) is down is held, shown as such by `status`, `status --json` and the metrics, and
//! restarted only a whole timeout after the port answers again. The timing rules themselves
//! are tested on simulated time (src/daemon/tests/depends.rs).
#![cfg(unix)]

mod common;

use std::net::TcpListener;

use common::*;

/// A loopback port where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn held_while_the_port_is_closed_restarted_a_timeout_after_it_answers() {
    let sb = Sandbox::new();
    let (port, other) = (closed_port(), closed_port());
    // Timings scaled down from the shipped defaults (5 s check, 30 s recheck) so the test
    // takes seconds.
    let p = sb.run_config(&format!(
        r#"state_file: state.json
metrics_file: protector.prom
targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 2s
    shell: true
    stop: echo "stop $(date +%s.%N)" >> events
    start: echo "start $(date +%s.%N)" >> events
    depends_on:
      tcp: ["127.0.0.1:{port}", "localhost:{other}"]
      check_timeout: 1s
      recheck: 1s
"#
    ));
    let down = p.wait_events("dependency_down", Some("svc"), 1);
    let tried = down[0]["tried"].as_str().unwrap();
    assert!(tried.contains(&format!("127.0.0.1:{port}")), "{tried}");
    assert!(tried.contains(&format!("localhost:{other}")), "{tried}");
    let reason = down[0]["reason"].as_str().unwrap();
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert_eq!(down[0]["level"], "WARN");

    // What an operator sees while it is held.
    wait_until(PATIENCE, "the state file to say held", || {
        std::fs::read_to_string(sb.path("state.json")).is_ok_and(|t| t.contains("\"held\""))
    });
    let (code, out, _) = ctl(&sb, &sb.path("protector.yaml"), &["status"]);
    assert_eq!(code, 1, "{out}");
    let row = out.lines().find(|l| l.starts_with("svc ")).unwrap();
    assert!(row.contains("held for"), "{out}");
    assert!(row.contains("a dependency is down"), "{out}");
    assert!(row.contains(&format!("127.0.0.1:{port}")), "{out}");
    let (_, json, _) = ctl(&sb, &sb.path("protector.yaml"), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["targets"][0]["state"], "held");
    assert!(v["targets"][0]["held_since"].as_f64().is_some());
    assert!(
        v["targets"][0]["dependency"]
            .as_str()
            .unwrap()
            .contains("refused")
    );
    wait_until(PATIENCE, "the metrics to say held", || {
        std::fs::read_to_string(sb.path("protector.prom"))
            .is_ok_and(|t| t.contains(r#"protector_target_state{target="svc",state="held"} 1"#))
    });

    // The port answers again: the hold ends, nothing was restarted meanwhile, and the
    // restart comes a whole timeout after the check that found the port.
    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let up = p.wait_events("dependency_up", Some("svc"), 1);
    assert_eq!(up[0]["via"], "check");
    assert!(sb.lines("events").is_empty(), "{:?}", sb.lines("events"));
    let done = p.wait_events("restart_done", Some("svc"), 1);
    let waited = timestamp(&done[0]) - timestamp(&up[0]);
    assert!(
        waited >= 2.0,
        "restarted {waited} s after the port answered"
    );
    assert_eq!(p.events("dependency_down", Some("svc")).len(), 1);
}

#[test]
fn check_shows_the_dependencies_and_where_they_come_from() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "protector.yaml",
        r#"defaults:
  depends_on: {check_timeout: 3s}
targets:
  - name: salt-minion
    heartbeat: beat
    timeout: 5m
    start: "true"
    restart_splay: 2m
    depends_on:
      tcp: ["salt:4506", "[2001:db8::1]:4506"]
"#,
    );
    let out = protector_cmd(sb.dir.path())
        .args(["check", "--explain", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("depends_on:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("tcp salt:4506, [2001:db8::1]:4506 (any one)"),
        "{line}"
    );
    assert!(line.contains("each check at most 3s"), "{line}");
    assert!(line.contains("within 30s"), "{line}");
    assert!(
        line.contains(
            "tcp: targets[0], command: default, check_timeout: defaults, recheck: default"
        ),
        "{line}"
    );
    let splay = text
        .lines()
        .find(|l| l.trim_start().starts_with("restart_splay:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(splay.contains("up to 2m"), "{splay}");

    // An endpoint that is not one is refused, named by its place.
    let bad = sb.write(
        "bad.yaml",
        "targets:\n  - {name: a, heartbeat: b, timeout: 5m, start: x, depends_on: {tcp: ['::1:4506']}}\n",
    );
    let out = protector_cmd(sb.dir.path())
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("targets[0].depends_on.tcp[0]"), "{err}");
    assert!(
        err.contains("an IPv6 address must be written in brackets"),
        "{err}"
    );
}

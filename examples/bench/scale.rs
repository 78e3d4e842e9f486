//! `--scale N`: protector with N targets (100,000 for issue 29's goal), each figure of one
//! daemon: the load (start to `started`, peak RSS then), an idle minute (CPU, peak RSS; every
//! heartbeat touched half way), `status` and `status --json`, one target's restart among
//! them (its stop command's start against its deadline), and a reload that changes one
//! target (SIGHUP to `reload_done`; peak RSS after it).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{fire_argv, measure, mib, mtime, proc_kib, row, spawn_protector};

/// t0's timeout: longer than any load measured (100,000 targets: about 3 s), so that its
/// first deadline comes after the bench has written its file again.
const T0_TIMEOUT_SECS: u64 = 10;

pub fn run(bin: &Path, n: usize, idle_secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("bench.yaml");
    std::fs::write(&cfg, config(d, n, &format!("{T0_TIMEOUT_SECS}s"))).unwrap();
    // t0's last, just before the start: writing 100,000 files takes seconds.
    for i in (0..n).rev() {
        std::fs::write(d.join(format!("t{i}.beat")), b"x").unwrap();
    }
    let began = Instant::now();
    let p = Running::start(bin, &cfg);
    let pid = p.pid;
    let started = p.wait_for("started");
    row(
        &format!("{n} targets: load (start to `started`) / peak RSS then"),
        &format!(
            "{:.2} s / {}",
            (started - began).as_secs_f64(),
            mib(hwm(pid))
        ),
        None,
    );

    // Every heartbeat written again once protector runs: writing 100,000 files takes seconds
    // (more on a loaded machine), and the first-written would otherwise come due before the
    // idle window's touch and be restarted in it.
    for i in 1..n {
        std::fs::write(d.join(format!("t{i}.beat")), b"x").unwrap();
    }
    one_restart(d, n);
    // Idle: every other target fresh (touched half way); t0 is backing off for an hour.
    let idle = measure(pid, idle_secs, d, n);
    row(
        &format!(
            "{n} targets: idle {idle_secs} s, 60 s timeouts: CPU / peak RSS / private memory \
             at its end (Private_Dirty, after sync)"
        ),
        &format!(
            "{} / {} / {}",
            idle.cpu(),
            mib(idle.hwm_kib),
            idle.private()
        ),
        None,
    );

    status(bin, &cfg, n);

    // A reload that changes one target (t0's timeout).
    std::fs::write(&cfg, config(d, n, &format!("{}s", T0_TIMEOUT_SECS + 1))).unwrap();
    let asked = Instant::now();
    let _ = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status();
    let done = p.wait_for("reload_done");
    row(
        &format!(
            "{n} targets: reload changing one target (SIGHUP to `reload_done`) / peak RSS after"
        ),
        &format!("{:.2} s / {}", (done - asked).as_secs_f64(), mib(hwm(pid))),
        None,
    );
    p.stop();
    spread(bin, n, idle_secs);
}

/// Deadlines one after another: another protector on heartbeats whose times are spread over
/// the 15 s before it starts, so that their first deadlines come one after another late in
/// the idle window (every file touched half way, so none is stale then): CPU of protector
/// and its look helper.
fn spread(bin: &Path, n: usize, idle_secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("bench.yaml");
    std::fs::write(&cfg, config(d, n, "60s")).unwrap();
    let now = std::time::SystemTime::now();
    for i in 0..n {
        let file = std::fs::File::create(d.join(format!("t{i}.beat"))).unwrap();
        let ago = Duration::from_secs(15).mul_f64(1.0 - i as f64 / n as f64);
        file.set_modified(now - ago).unwrap();
    }
    let p = Running::start(bin, &cfg);
    p.wait_for("started");
    let pid = p.pid;
    let idle = measure(pid, idle_secs, d, n);
    row(
        &format!(
            "{n} targets: idle {idle_secs} s, first deadlines one after another over 15 s: CPU"
        ),
        &idle.cpu(),
        None,
    );
    p.stop();
}

/// A protector started on a config, and the events of its log as they come.
struct Running {
    child: std::process::Child,
    pid: u32,
    events: mpsc::Receiver<(String, Instant)>,
}

impl Running {
    fn start(bin: &Path, cfg: &Path) -> Running {
        let mut child = spawn_protector(bin, cfg);
        let (tx, events) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(event) = v["event"].as_str() {
                    let _ = tx.send((event.to_string(), Instant::now()));
                }
            }
        });
        Running {
            pid: child.id(),
            child,
            events,
        }
    }

    /// When the next `what` event was logged (within 10 minutes).
    fn wait_for(&self, what: &str) -> Instant {
        loop {
            let (event, at) = self
                .events
                .recv_timeout(Duration::from_secs(600))
                .unwrap_or_else(|_| panic!("no {what} within 10 minutes"));
            if event == what {
                return at;
            }
        }
    }

    /// SIGTERM, and its end waited for.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The config: t0 goes stale `t0_timeout` after its file is written again (its stop records
/// when it ran); every other target has a minute and is kept fresh.
fn config(d: &Path, n: usize, t0_timeout: &str) -> String {
    let mut yaml = String::from(
        "state_file: state.json\nmetrics_file: bench.prom\ndefaults:\n  timeout: 60s\n  restart_grace: 1h\ntargets:\n",
    );
    yaml.push_str(&format!(
        "  - {{name: t0, heartbeat: t0.beat, timeout: {t0_timeout}, stop: {}, start: ['true']}}\n",
        serde_json::to_string(&fire_argv(d, 0)).unwrap()
    ));
    for i in 1..n {
        yaml.push_str(&format!(
            "  - {{name: t{i}, heartbeat: t{i}.beat, start: ['true']}}\n"
        ));
    }
    yaml
}

/// t0's restart: its file written again now, so its deadline is [`T0_TIMEOUT_SECS`] from now;
/// how late its stop command ran.
fn one_restart(d: &Path, n: usize) {
    std::fs::write(d.join("t0.beat"), b"y").unwrap();
    let t0_deadline = mtime(&d.join("t0.beat")) + T0_TIMEOUT_SECS as f64;
    let fired = d.join("t0.fired");
    let end = Instant::now() + Duration::from_secs(T0_TIMEOUT_SECS + 30);
    while !fired.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let late = std::fs::read_to_string(&fired)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .map_or("did not fire".into(), |at| {
            format!("{:.1} ms", (at - t0_deadline) * 1000.0)
        });
    row(
        &format!("{n} targets: one target's restart, deadline to its stop command running"),
        &late,
        None,
    );
}

/// `status` and `status --json`, timed.
fn status(bin: &Path, cfg: &Path, n: usize) {
    for json in [false, true] {
        let took = Instant::now();
        let out = Command::new(bin)
            .args(["status", "--config"])
            .arg(cfg)
            .args(json.then_some("--json"))
            .output()
            .unwrap();
        let what = if json { "status --json" } else { "status" };
        row(
            &format!("{n} targets: `{what}` ({} bytes)", out.stdout.len()),
            &format!("{:.2} s", took.elapsed().as_secs_f64()),
            None,
        );
    }
}

/// Peak RSS of `pid` so far, in KiB.
fn hwm(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmHWM:")
}

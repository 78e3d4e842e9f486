//! Measures protector's detection latency and idle footprint and prints a table.
//!
//!     cargo build --release && cargo run --release --example bench -- [TARGETS...]
//!
//! Detection latency: TARGETS (default 1, 10 and 100) heartbeat files are created at once and left
//! alone, with a 1 s timeout; for each target the time from its deadline (the file's mtime
//! plus the timeout) to protector's "running stop command" log record. Idle: one target with a
//! fresh heartbeat and a 60 s timeout, watched for 10 s: resident memory, CPU time and
//! context switches of the protector process, read from /proc (Linux only).

#[path = "support/timestamp.rs"]
mod timestamp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

fn main() {
    let mut counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("TARGETS is a number"))
        .collect();
    if counts.is_empty() {
        counts = vec![1, 10, 100];
    }
    let bin = protector_binary();
    println!("protector: {}", bin.display());
    println!();
    println!("| measurement | value |");
    println!("|---|---|");
    for n in counts {
        latency(&bin, n);
    }
    idle(&bin, 1);
    idle(&bin, 1000);
}

/// The release binary next to this example (target/release/examples/bench -> target/release).
fn protector_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(if cfg!(windows) {
        "protector.exe"
    } else {
        "protector"
    });
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    bin
}

fn config(dir: &Path, n: usize, timeout: &str) -> PathBuf {
    let mut yaml = format!(
        "defaults:\n  timeout: {timeout}\n  restart_grace: 1h\n  stop: ['true']\n  start: ['true']\ntargets:\n"
    );
    for i in 0..n {
        std::fs::write(dir.join(format!("t{i}.beat")), b"x").unwrap();
        yaml.push_str(&format!("  - {{name: t{i}, heartbeat: t{i}.beat}}\n"));
    }
    let path = dir.join("bench.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn spawn(bin: &Path, cfg: &Path) -> Child {
    Command::new(bin)
        .args(["--log-format", "json", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn latency(bin: &Path, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), n, "1s");
    let mut child = spawn(bin, &cfg);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut late_ms = Vec::with_capacity(n);
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["message"] != "running stop command" {
            continue;
        }
        let name = v["target"].as_str().unwrap();
        let mtime = std::fs::metadata(dir.path().join(format!("{name}.beat")))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let at = timestamp::epoch_secs(v["timestamp"].as_str().unwrap());
        late_ms.push((at - (mtime + 1.0)) * 1000.0);
        if late_ms.len() == n {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    late_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| late_ms[((late_ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "| detection latency, {n} targets, 1 s timeout: p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

fn idle(bin: &Path, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), n, "60s");
    let mut child = spawn(bin, &cfg);
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("protector is running") {
        line.clear();
    }
    let window = Duration::from_secs(10);
    let before = Sample::read(pid);
    let start = Instant::now();
    std::thread::sleep(window);
    let after = Sample::read(pid);
    let secs = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let (Some(before), Some(after)) = (before, after) else {
        println!("| idle, {n} target(s) | /proc not available |");
        return;
    };
    let cpu = (after.cpu_ticks - before.cpu_ticks) as f64 / 100.0;
    println!(
        "| idle RSS, {n} target(s), 60 s timeout | {:.1} MiB (peak {:.1} MiB) |",
        after.rss_kib as f64 / 1024.0,
        after.hwm_kib as f64 / 1024.0
    );
    println!(
        "| idle CPU over {secs:.0} s, {n} target(s) | {:.3} s ({:.3}% of one core), {} context switches |",
        cpu,
        cpu / secs * 100.0,
        after.switches - before.switches
    );
}

struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    cpu_ticks: u64,
    switches: u64,
}

impl Sample {
    /// Memory and context switches from /proc/PID/status (all threads), CPU from /proc/PID/stat.
    fn read(pid: u32) -> Option<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let s = std::fs::read_to_string(task.ok()?.path().join("status")).unwrap_or_default();
            for l in s.lines().filter(|l| l.contains("ctxt_switches")) {
                switches += l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let cpu_ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        Some(Sample {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            cpu_ticks,
            switches,
        })
    }
}

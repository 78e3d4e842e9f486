//! protector beside monit on the same work, on this machine, in one run; prints a table.
//!
//!     cargo build --release && cargo run --release --example bench -- [--idle-secs N] [--no-monit] [--latency-only]
//!     cargo run --release --example bench -- --scale 100000 [--idle-secs N]
//!     cargo run --release --example bench -- --bursts 20
//!     cargo run --release --example bench -- --check-only
//!
//! `--scale N` measures one daemon of N targets instead (`scale.rs`): load, idle, status,
//! one restart among them and a reload. `--bursts N` runs only the burst of 100 targets stale
//! at once, N times, a row each (its spread from run to run), each with the floor measured
//! right after it.
//!
//! Beside the latency rows, the machine's floor: the same stop commands started by a plain
//! launcher, with no watchdog in between.
//!
//! monit (Debian package `monit`) is used when it is on the PATH; without it (or with
//! --no-monit) only protector's figures are printed. Linux only (reads /proc).
//!
//! - Detection latency: 1, then 100 heartbeat files go stale with a 2 s timeout, first with
//!   deadlines 10 ms apart (files written one after another), then all at once; for each, the
//!   time from its deadline (mtime plus the timeout) until its stop command has started (the
//!   command, this program with `--fire FILE`, records the time itself, for both tools).
//!   protector's own share (deadline to spawning the command) comes from its log. monit runs
//!   with its shortest cycle, 1 s. The files are rewritten once both tools are watching.
//! - Idle cost: CPU time, context switches (all threads) and peak RSS over --idle-secs
//!   (default 60) of watching files that stay fresh (the benchmark touches them half way)
//!   with a 60 s timeout, for 1, 1,000 and 10,000 targets (monit for 1 and 1,000), and the
//!   private memory at the end of the window (Private_Dirty; protector's look helper apart).
//! - Validation: wall time of `protector check` on a 10,000-target config (a command of
//!   their own each), the median of several runs; `--check-only` measures only that.
//! - Restart storm: 1,000 targets stale at once, each start command taking 1 s: time until
//!   every start has finished, and the latest detection among them.
//! - Observations: heartbeat stats per target per timeout while idle (protector's counter).

mod scale;
#[path = "../support/timestamp.rs"]
mod timestamp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, file] = args.as_slice()
        && flag == "--fire"
    {
        // The stop command of the latency runs: record when it started.
        let now = epoch(std::time::SystemTime::now());
        std::fs::write(file, format!("{now:.6}")).unwrap();
        return;
    }
    let idle_secs = args
        .iter()
        .position(|a| a == "--idle-secs")
        .and_then(|i| args.get(i + 1))
        .map_or(60, |v| v.parse().expect("--idle-secs takes seconds"));
    if let Some(n) = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
    {
        let bin = protector_binary();
        println!("| measurement | protector | monit |");
        println!("|---|---|---|");
        scale::run(
            &bin,
            n.parse().expect("--scale takes a number of targets"),
            idle_secs,
        );
        return;
    }
    let monit = (!args.iter().any(|a| a == "--no-monit"))
        .then(|| which("monit"))
        .flatten();
    let bin = protector_binary();
    println!("protector: {}", bin.display());
    match &monit {
        Some(m) => println!("monit: {} ({})", m.display(), monit_version(m)),
        None => println!("monit: not used (not found, or --no-monit)"),
    }
    println!();
    println!("| measurement | protector | monit |");
    println!("|---|---|---|");

    if args.iter().any(|a| a == "--check-only") {
        row("`protector check`, 10,000 targets", &check_10k(&bin), None);
        return;
    }
    if let Some(runs) = args
        .iter()
        .position(|a| a == "--bursts")
        .and_then(|i| args.get(i + 1))
    {
        let runs: usize = runs.parse().expect("--bursts takes a number of runs");
        for run in 1..=runs {
            let (p, own) = latency_protector(&bin, 100, false, false);
            let floor = launcher_floor(100, false);
            row(
                &format!(
                    "burst {run} of {runs}, 100 targets stale at once: end to end / protector's own / the machine's floor right after, p50 / p99 / max"
                ),
                &format!("{p} / {own} / {floor}"),
                None,
            );
        }
        return;
    }
    for (n, spread) in [(1, false), (100, true), (100, false)] {
        let (p, own) = latency_protector(&bin, n, spread, false);
        let m = monit.as_ref().map(|m| latency_monit(m, n, spread));
        let what = match (n, spread) {
            (1, _) => "1 target".to_string(),
            (n, true) => format!("{n} targets, deadlines 10 ms apart"),
            (n, false) => format!("{n} targets stale at once"),
        };
        latency_rows(&what, &p, &own, m.as_ref());
    }
    // As the packaged config runs: with a state file, each restart keeps its incident (what
    // the service looked like) before its stop command starts.
    let (p, own) = latency_protector(&bin, 100, false, true);
    latency_rows(
        "100 targets stale at once, with a state_file (an incident kept before each stop)",
        &p,
        &own,
        None,
    );
    for n in [1, 100] {
        row(
            &format!(
                "the machine's floor: {n} process(es) of the same command started at once by a plain launcher (one thread, std's spawn): p50 / p99 / max"
            ),
            &launcher_floor(n, false),
            None,
        );
    }
    row(
        "the machine's floor with the restarts' start commands: the same 100, each one's start (`true`) started as it ends: p50 / p99 / max",
        &launcher_floor(100, true),
        None,
    );
    if args.iter().any(|a| a == "--latency-only") {
        return;
    }

    for n in [1, 1000, 10_000] {
        let p = idle_protector(&bin, n, idle_secs);
        let m = monit
            .as_ref()
            .filter(|_| n <= 1000)
            .map(|m| idle_monit(m, n, idle_secs));
        row(
            &format!("idle {idle_secs} s, {n} target(s), 60 s timeout: CPU"),
            &p.cpu(),
            m.as_ref().map(Idle::cpu).as_ref(),
        );
        row(
            &format!("idle {idle_secs} s, {n} target(s): context switches"),
            &p.switches.to_string(),
            m.as_ref().map(|m| m.switches.to_string()).as_ref(),
        );
        row(
            &format!("idle, {n} target(s): peak RSS"),
            &mib(p.hwm_kib),
            m.as_ref().map(|m| mib(m.hwm_kib)).as_ref(),
        );
        row(
            &format!("idle, {n} target(s): private memory (Private_Dirty, after sync)"),
            &p.private(),
            m.as_ref().map(Idle::private).as_ref(),
        );
        if let Some(obs) = p.observations_per_target_per_timeout {
            row(
                &format!("idle, {n} target(s): heartbeat stats per target per timeout"),
                &format!("{obs:.2}"),
                None,
            );
        }
    }
    row("`protector check`, 10,000 targets", &check_10k(&bin), None);
    row(
        "restart storm, 1,000 targets, 1 s start: all starts done / latest detection",
        &storm(&bin, 1000),
        None,
    );
}

fn row(what: &str, protector: &str, monit: Option<&String>) {
    println!(
        "| {what} | {protector} | {} |",
        monit.map_or("-", |s| s.as_str())
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn monit_version(m: &Path) -> String {
    let out = Command::new(m)
        .arg("-V")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The release binary next to this example (target/release/examples/bench -> target/release).
fn protector_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("protector");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    bin
}

fn epoch(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

pub fn mtime(p: &Path) -> f64 {
    epoch(std::fs::metadata(p).unwrap().modified().unwrap())
}

/// Writes `n` fresh heartbeat files t0.beat ... in `dir`.
fn beats(dir: &Path, n: usize) {
    for i in 0..n {
        std::fs::write(dir.join(format!("t{i}.beat")), b"x").unwrap();
    }
}

/// A protector config: every target with `timeout`, and `stop`/`start` given per target name.
fn protector_config(
    dir: &Path,
    n: usize,
    timeout: &str,
    extra: &dyn Fn(usize) -> String,
) -> PathBuf {
    let mut yaml = format!(
        "metrics_file: bench.prom\ndefaults:\n  timeout: {timeout}\n  restart_grace: 1h\ntargets:\n"
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{name: t{i}, heartbeat: t{i}.beat{}}}\n",
            extra(i)
        ));
    }
    let path = dir.join("bench.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn spawn_protector(bin: &Path, cfg: &Path) -> Child {
    Command::new(bin)
        .args(["--log-format", "json", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `cond` holds or `limit` passes.
fn wait(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Writes `n` heartbeat files, `gap` apart.
fn beats_spread(dir: &Path, n: usize, gap: Duration) {
    for i in 0..n {
        std::fs::write(dir.join(format!("t{i}.beat")), b"x").unwrap();
        std::thread::sleep(gap);
    }
}

/// Timeout of the latency runs: long enough to rewrite every heartbeat (over 1 s when
/// spread) before protector's first look, so each deadline is its rewritten file's mtime plus
/// this.
const LATENCY_TIMEOUT_SECS: u64 = 2;

/// The deadline of target `i` in the latency runs.
fn deadline(dir: &Path, i: usize) -> f64 {
    mtime(&dir.join(format!("t{i}.beat"))) + LATENCY_TIMEOUT_SECS as f64
}

/// "p50 / p99 / max ms" of latencies in seconds.
fn percentiles(mut late: Vec<f64>) -> String {
    late.sort_by(f64::total_cmp);
    let pct = |p: f64| late[((late.len() as f64 - 1.0) * p).round() as usize] * 1000.0;
    format!("{:.1} / {:.1} / {:.1} ms", pct(0.5), pct(0.99), pct(1.0))
}

/// Each target's stop command (this program with --fire) writes the time it started to
/// tN.fired; latency is that minus the deadline.
fn fired_latencies(dir: &Path, n: usize) -> String {
    let fired = |i: usize| dir.join(format!("t{i}.fired"));
    let read = |i: usize| -> Option<f64> { std::fs::read_to_string(fired(i)).ok()?.parse().ok() };
    if !wait(Duration::from_secs(30), || {
        (0..n).all(|i| read(i).is_some())
    }) {
        return "did not fire within 30 s".into();
    }
    percentiles(
        (0..n)
            .map(|i| read(i).unwrap() - deadline(dir, i))
            .collect(),
    )
}

/// The stop command: this benchmark binary, recording when it started.
fn fire_argv(dir: &Path, i: usize) -> [String; 3] {
    let exe = std::env::current_exe().unwrap();
    [
        exe.display().to_string(),
        "--fire".into(),
        dir.join(format!("t{i}.fired")).display().to_string(),
    ]
}

/// What the stop commands of the latency runs cost to start without protector: `n` of them
/// started in a loop by this program, each one's latency from the instant they were due (the
/// loop's start) to its own record. `with_starts`: as each ends (waited for in the order
/// started), its start command (`true`) is started, as protector's restarts do.
fn launcher_floor(n: usize, with_starts: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let due = epoch(std::time::SystemTime::now());
    let children: Vec<Child> = (0..n)
        .map(|i| {
            let argv = fire_argv(dir.path(), i);
            Command::new(&argv[0]).args(&argv[1..]).spawn().unwrap()
        })
        .collect();
    let fired = |i: usize| dir.path().join(format!("t{i}.fired"));
    let read = |i: usize| -> Option<f64> { std::fs::read_to_string(fired(i)).ok()?.parse().ok() };
    let mut starts = Vec::new();
    for mut child in children {
        let _ = child.wait();
        if with_starts {
            starts.push(Command::new("true").spawn().unwrap());
        }
    }
    for mut start in starts {
        let _ = start.wait();
    }
    match (0..n).map(read).collect::<Option<Vec<f64>>>() {
        Some(at) => percentiles(at.iter().map(|t| t - due).collect()),
        None => "a command did not record its start".into(),
    }
}

fn write_beats(dir: &Path, n: usize, spread: bool) {
    if spread {
        beats_spread(dir, n, Duration::from_millis(10));
    } else {
        beats(dir, n);
    }
}

fn latency_rows(what: &str, p: &str, own: &str, monit: Option<&String>) {
    row(
        &format!("detection latency, {what}, {LATENCY_TIMEOUT_SECS} s timeout: p50 / p99 / max"),
        p,
        monit,
    );
    row(
        &format!("  of which protector's own (deadline to spawn, from its log), {what}"),
        own,
        None,
    );
}

/// Returns (latency until the stop command ran, latency until protector spawned it).
/// `state`: with a state file (and so an incident kept before each restart's stop).
fn latency_protector(bin: &Path, n: usize, spread: bool, state: bool) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let timeout = format!("{LATENCY_TIMEOUT_SECS}s");
    let cfg = protector_config(dir.path(), n, &timeout, &|i| {
        format!(
            ", stop: {}, start: ['true']",
            serde_json::to_string(&fire_argv(&d, i)).unwrap()
        )
    });
    if state {
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("state_file: state.json\n{text}")).unwrap();
    }
    beats(dir.path(), n);
    let mut child = spawn_protector(bin, &cfg);
    // Read the log as it comes (a full pipe would stall protector) and keep when each stop
    // command was spawned.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) else {
                continue;
            };
            if v["event"] == "started" {
                let _ = tx.send(None);
            }
            if v["event"] == "command_started" && v["command"] == "stop" {
                let name = v["target"].as_str().unwrap_or_default();
                let i: usize = name.trim_start_matches('t').parse().unwrap();
                let _ = tx.send(Some((
                    i,
                    timestamp::epoch_secs(v["timestamp"].as_str().unwrap()),
                )));
            }
        }
    });
    assert_eq!(rx.recv().unwrap(), None, "protector did not start");
    // File times come from a coarse clock (a few ms behind): a change that seems to predate
    // protector's first look is dated when next seen (see "How staleness ... decided").
    std::thread::sleep(Duration::from_millis(50));
    write_beats(dir.path(), n, spread);
    let result = fired_latencies(dir.path(), n);
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
    let mut spawned = std::collections::HashMap::new();
    for (i, at) in rx.iter().flatten() {
        // The first stop of each target is the one measured.
        spawned.entry(i).or_insert(at);
    }
    let own = if spawned.len() == n {
        percentiles(
            spawned
                .iter()
                .map(|(&i, &at)| at - deadline(dir.path(), i))
                .collect(),
        )
    } else {
        format!("{} of {n} stops in the log", spawned.len())
    };
    (result, own)
}

fn monit_config(
    dir: &Path,
    n: usize,
    timeout_secs: u64,
    exec: &dyn Fn(usize) -> String,
) -> PathBuf {
    let mut rc = format!(
        "set daemon 1\nset logfile {d}/monit.log\nset pidfile {d}/monit.pid\nset idfile {d}/monit.id\nset statefile {d}/monit.state\n",
        d = dir.display()
    );
    for i in 0..n {
        rc.push_str(&format!(
            "check file t{i} with path {}\n  if mtime > {timeout_secs} seconds then exec \"{}\"\n",
            dir.join(format!("t{i}.beat")).display(),
            exec(i)
        ));
    }
    let path = dir.join("monitrc");
    std::fs::write(&path, rc).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ok = Command::new(which("monit").unwrap())
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "monit rejects its config: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    path
}

fn spawn_monit(monit: &Path, rc: &Path) -> Child {
    Command::new(monit)
        .args(["-I", "-c"])
        .arg(rc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn latency_monit(monit: &Path, n: usize, spread: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    beats(dir.path(), n);
    let d = dir.path().to_path_buf();
    let rc = monit_config(dir.path(), n, LATENCY_TIMEOUT_SECS, &|i| {
        fire_argv(&d, i).join(" ")
    });
    let mut child = spawn_monit(monit, &rc);
    // Let monit take its first look at fresh files, then start the clock.
    std::thread::sleep(Duration::from_millis(500));
    write_beats(dir.path(), n, spread);
    let result = fired_latencies(dir.path(), n);
    let _ = child.kill();
    let _ = child.wait();
    result
}

struct Idle {
    cpu_secs: f64,
    window: f64,
    switches: u64,
    hwm_kib: u64,
    /// Private_Dirty of the process at the end of the window, and of its children.
    private_kib: (u64, u64),
    observations_per_target_per_timeout: Option<f64>,
}

impl Idle {
    fn private(&self) -> String {
        match self.private_kib {
            (own, 0) => format!("{own} kB"),
            (own, children) => format!("{own} kB (its look helper: {children} kB more)"),
        }
    }

    fn cpu(&self) -> String {
        format!(
            "{:.3} s ({:.3}% of a core)",
            self.cpu_secs,
            self.cpu_secs / self.window * 100.0
        )
    }
}

fn idle_protector(bin: &Path, n: usize, secs: u64) -> Idle {
    let dir = tempfile::tempdir().unwrap();
    beats(dir.path(), n);
    let cfg = protector_config(dir.path(), n, "60s", &|_| ", start: ['true']".into());
    let mut child = spawn_protector(bin, &cfg);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("protector is running") {
        line.clear();
    }
    // Keep the log pipe drained.
    std::thread::spawn(move || for _ in stderr.lines() {});
    let metrics = dir.path().join("bench.prom");
    let observations = || -> f64 {
        std::fs::read_to_string(&metrics)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("protector_heartbeat_observations_total "))
            .map_or(0.0, |v| v.parse().unwrap())
    };
    let mut idle = measure(child.id(), secs, dir.path(), n);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    // Counted from start-up (one look each) to the end of the window.
    idle.observations_per_target_per_timeout =
        Some((observations() - n as f64) / n as f64 / (idle.window / 60.0));
    idle
}

fn idle_monit(monit: &Path, n: usize, secs: u64) -> Idle {
    let dir = tempfile::tempdir().unwrap();
    beats(dir.path(), n);
    let rc = monit_config(dir.path(), n, 60, &|_| "/bin/true".into());
    let mut child = spawn_monit(monit, &rc);
    std::thread::sleep(Duration::from_secs(2));
    let idle = measure(child.id(), secs, dir.path(), n);
    let _ = child.kill();
    let _ = child.wait();
    idle
}

/// CPU seconds `pid` has used (its threads, not its children).
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

/// The children of `pid` now (protector's look helper; no command runs while idle).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// CPU (of `pid` and its children: protector's look helper is part of its cost), context
/// switches and peak RSS of `pid` over `secs`, from /proc. Half way through, every heartbeat
/// file is touched, so nothing goes stale in the window (the timeout is 60 s).
fn measure(pid: u32, secs: u64, dir: &Path, n: usize) -> Idle {
    let read = || -> (f64, u64, u64) {
        let cpu = cpu_of(pid) + children_of(pid).into_iter().map(cpu_of).sum::<f64>();
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
        {
            let s = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            for l in s.lines().filter(|l| l.contains("ctxt_switches")) {
                switches += l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
            }
        }
        let hwm = proc_kib(pid, "status", "VmHWM:");
        (cpu, switches, hwm)
    };
    let start = Instant::now();
    let (cpu0, sw0, _) = read();
    std::thread::sleep(Duration::from_secs(secs) / 2);
    for i in 0..n {
        std::fs::write(dir.join(format!("t{i}.beat")), b"xx").unwrap();
    }
    std::thread::sleep(Duration::from_secs(secs) / 2);
    let (cpu1, sw1, hwm) = read();
    let window = start.elapsed().as_secs_f64();
    // A binary just built has pages the kernel counts as dirty until they are written out.
    let _ = Command::new("sync").status();
    let children = children_of(pid).into_iter().map(private_dirty_of).sum();
    Idle {
        cpu_secs: cpu1 - cpu0,
        window,
        switches: sw1 - sw0,
        hwm_kib: hwm,
        private_kib: (private_dirty_of(pid), children),
        observations_per_target_per_timeout: None,
    }
}

/// The memory of `pid` no other process shares: its Private_Dirty, in kB.
fn private_dirty_of(pid: u32) -> u64 {
    proc_kib(pid, "smaps_rollup", "Private_Dirty:")
}

/// The figure (in kB) of the line of /proc/PID/`file` that begins with `key`; 0 if none.
pub fn proc_kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Runs of `protector check` measured: one run on a loaded 2-core machine varies by half.
const CHECK_RUNS: usize = 11;

fn check_10k(bin: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = protector_config(dir.path(), 10_000, "60s", &|i| {
        format!(", stop: 'service t{i} stop', start: 'service t{i} start'")
    });
    let mut took: Vec<f64> = (0..CHECK_RUNS)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new(bin)
                .args(["check", "--config"])
                .arg(&cfg)
                .output()
                .unwrap();
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took.as_secs_f64() * 1000.0
        })
        .collect();
    took.sort_by(f64::total_cmp);
    format!(
        "{:.0} ms (median of {CHECK_RUNS} runs; {:.0}-{:.0})",
        took[CHECK_RUNS / 2],
        took[0],
        took[CHECK_RUNS - 1]
    )
}

fn storm(bin: &Path, n: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    beats(dir.path(), n);
    let cfg = protector_config(dir.path(), n, "1s", &|_| ", start: [sleep, '1']".into());
    let mut child = spawn_protector(bin, &cfg);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (mut detect_late, mut finished, mut last_done) = (0.0f64, 0, 0.0f64);
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let at = || timestamp::epoch_secs(v["timestamp"].as_str().unwrap());
        let target = || v["target"].as_str().unwrap_or_default().to_string();
        match (
            v["event"].as_str().unwrap_or_default(),
            v["command"].as_str().unwrap_or_default(),
        ) {
            ("stale", _) => {
                let deadline = mtime(&dir.path().join(format!("{}.beat", target()))) + 1.0;
                detect_late = detect_late.max(at() - deadline);
            }
            ("command_finished", "start") => {
                finished += 1;
                last_done = last_done.max(at());
            }
            _ => {}
        }
        if finished == n {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let first_deadline = (0..n)
        .map(|i| mtime(&dir.path().join(format!("t{i}.beat"))) + 1.0)
        .fold(f64::MAX, f64::min);
    format!(
        "{:.2} s after the first deadline / {:.0} ms",
        last_done - first_deadline,
        detect_late * 1000.0
    )
}

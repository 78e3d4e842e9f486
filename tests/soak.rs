//! Soak: many targets with sub-second timeouts restarted over and over (thousands of restart
//! cycles, some commands killed at their timeout, some heartbeats kept fresh) while protector's
//! resident memory, open file descriptors, threads and child processes are sampled. After a
//! warm-up they must stay flat: no leak, no zombie. Ignored by plain `cargo test`; run it with
//!
//!     SOAK_SECS=150 cargo test --test soak -- --ignored --nocapture
//!
//! (default 150 s). It prints the samples.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RESTARTING: usize = 40;
const HANGING: usize = 5;
const FRESH: usize = 10;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    children: usize,
    zombies: usize,
    restarts: f64,
}

/// Children of `pid` (direct ones) and which of them are zombies.
fn children(pid: u32) -> (usize, Vec<u32>) {
    let (mut all, mut zombies) = (0, Vec::new());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((ppid, state)) = parent_and_state(child)
            && ppid == pid
        {
            all += 1;
            if state == 'Z' {
                zombies.push(child);
            }
        }
    }
    (all, zombies)
}

/// A process's parent and state, from /proc/PID/stat.
fn parent_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...
    let rest = stat.rsplit_once(')')?.1.trim_start();
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((fields.next()?.parse().ok()?, state))
}

/// Each open descriptor of `pid` and what it is (`pipe:[...]`, a path, `socket:[...]`).
fn descriptors(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut all: Vec<String> = dir
        .flatten()
        .map(|e| {
            let to = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{} -> {}", e.file_name().to_string_lossy(), to.display())
        })
        .collect();
    all.sort();
    all
}

fn restarts_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("protector_restarts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
#[ignore = "long: run with --ignored (CI does, for SOAK_SECS)"]
fn soak() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let sb = Sandbox::new();
    let mut yaml = String::from(
        "metrics_file: soak.prom\ndefaults:\n  timeout: 300ms\n  restart_grace: 300ms\n  command_timeout: 500ms\n  backoff: {after: 1000, max: 1s}\ntargets:\n",
    );
    for i in 0..RESTARTING {
        // Alternate exec'd and shell commands, some with output to capture.
        let cmds = if i % 2 == 0 {
            "stop: ['true'], start: ['true']"
        } else {
            "shell: true, stop: 'echo stopping; echo oops >&2', start: 'echo started'"
        };
        yaml.push_str(&format!(
            "  - {{name: r{i}, heartbeat: r{i}.beat, {cmds}}}\n"
        ));
    }
    for i in 0..HANGING {
        // Stop never returns: killed at command_timeout every cycle.
        yaml.push_str(&format!(
            "  - {{name: h{i}, heartbeat: h{i}.beat, stop: [sleep, '60'], start: ['true']}}\n"
        ));
    }
    for i in 0..FRESH {
        yaml.push_str(&format!(
            "  - {{name: f{i}, heartbeat: f{i}.beat, timeout: 1s, start: [touch, f{i}.restarted]}}\n"
        ));
    }
    let cfg = sb.write("soak.yaml", &yaml);
    // Warnings kept, to say whether the look helper was replaced.
    let warnings = std::fs::File::create(sb.path("warnings.log")).unwrap();
    let mut child = Command::new(bin())
        .args(["-q", "--config"])
        .arg(&cfg)
        .current_dir(sb.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(warnings)
        .spawn()
        .unwrap();
    let pid = child.id();

    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started + Duration::from_secs(5);
    // Descriptors come and go with every command (its pipes; on a loaded machine some spawn
    // is nearly always under way, both ends of its pipes open), so no count says much. A
    // leaked one stays: the descriptors open at every one of the last samples are compared
    // with those open at every one of the first ones.
    let mut held: Vec<std::collections::BTreeSet<String>> = Vec::new();
    // Zombies seen at a sample, and when.
    let mut suspects: Vec<(u32, Instant)> = Vec::new();
    println!("   t s   RSS KiB   fds  threads  children  zombies  restarts");
    while Instant::now() < end {
        for i in 0..FRESH {
            sb.touch(&format!("f{i}.beat"));
        }
        suspects.retain(|(zombie, seen)| {
            if seen.elapsed() < Duration::from_secs(1) {
                return true;
            }
            assert_ne!(
                parent_and_state(*zombie),
                Some((pid, 'Z')),
                "zombie {zombie} not reaped"
            );
            false
        });
        if Instant::now() >= next_sample {
            assert!(child.try_wait().unwrap().is_none(), "protector exited");
            let (kids, zombies) = children(pid);
            // A command's exit is noticed within a 20 ms poll, so a burst of exits shows a
            // few zombies at a glance; one still there a second later was never reaped.
            let seen = Instant::now();
            suspects.extend(zombies.iter().map(|z| (*z, seen)));
            let s = Sample {
                at: started.elapsed().as_secs_f64(),
                rss_kib: proc_status(pid, "VmRSS"),
                fds: {
                    let open = descriptors(pid);
                    let count = open.len();
                    held.push(open.into_iter().collect());
                    count
                },
                threads: proc_status(pid, "Threads"),
                children: kids,
                zombies: zombies.len(),
                restarts: restarts_total(
                    &std::fs::read_to_string(sb.path("soak.prom")).unwrap_or_default(),
                ),
            };
            println!(
                "{:6.0} {:9} {:5} {:8} {:9} {:8} {:9.0}",
                s.at, s.rss_kib, s.fds, s.threads, s.children, s.zombies, s.restarts
            );
            samples.push(s);
            next_sample += Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stop it and make sure nothing is left behind.
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "protector did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // Held throughout the first three samples after the warm-up, and the last three.
    let throughout = |part: &[std::collections::BTreeSet<String>]| {
        let mut all = part[0].clone();
        for set in &part[1..] {
            all.retain(|d| set.contains(d));
        }
        all
    };
    assert!(
        held.len() >= 7,
        "too short to judge: {} samples",
        held.len()
    );
    let (first_held, last_held) = (throughout(&held[1..4]), throughout(&held[held.len() - 3..]));
    println!("descriptors held at first: {first_held:?}");
    println!("descriptors held at last: {last_held:?}");
    let warnings = std::fs::read_to_string(sb.path("warnings.log")).unwrap_or_default();
    let helper: Vec<&str> = warnings
        .lines()
        .filter(|l| l.contains("look_helper"))
        .collect();
    println!("look helper replaced: {} times {helper:#?}", helper.len());
    assert!(samples.len() >= 4, "too short to judge: {samples:?}");
    let total = samples.last().unwrap().restarts;
    println!("restarts: {total:.0} in {secs} s");
    assert!(
        total >= (RESTARTING as f64) * secs as f64 / 3.0,
        "too few restart cycles: {total}"
    );
    for i in 0..FRESH {
        assert!(
            !sb.path(&format!("f{i}.restarted")).exists(),
            "fresh target f{i} was restarted"
        );
    }
    // Flat: the second half's memory never goes beyond what the first half (after warm-up)
    // reached, give or take allocator noise.
    let warm: Vec<&Sample> = samples.iter().skip(1).collect();
    let (first, second) = warm.split_at(warm.len() / 2);
    let max = |part: &[&Sample], f: &dyn Fn(&Sample) -> f64| {
        part.iter().map(|s| f(s)).fold(f64::MIN, f64::max)
    };
    let rss = |s: &Sample| s.rss_kib as f64;
    assert!(
        max(second, &rss) <= max(first, &rss) * 1.10 + 1024.0,
        "RSS grows: {samples:#?}"
    );
    assert!(
        last_held.len() <= first_held.len() + 2,
        "descriptors leak: held at first {first_held:#?}, at last {last_held:#?}"
    );
    let bound = (RESTARTING + HANGING + FRESH) as f64;
    for s in &samples {
        assert!(s.fds as f64 <= 3.0 * bound + 16.0, "fds: {s:?}");
        // Each running command: a process and at most three threads.
        assert!(s.children as f64 <= bound, "children: {s:?}");
        assert!((s.threads as f64) <= 3.0 * bound + 8.0, "threads: {s:?}");
    }
}

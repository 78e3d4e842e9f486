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

/// Children of `pid` (direct ones) and how many of them are zombies.
fn children(pid: u32) -> (usize, usize) {
    let (mut all, mut zombies) = (0, 0);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim_start()) else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid {
            all += 1;
            zombies += usize::from(state == "Z");
        }
    }
    (all, zombies)
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
    let mut child = Command::new(bin())
        .args(["-q", "--config"])
        .arg(&cfg)
        .current_dir(sb.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started + Duration::from_secs(5);
    // Descriptors come and go with every command (its pipes), so one look says little: the
    // fewest seen over each sample's period (one look every 100 ms) is what a leak would raise.
    let mut fd_floor = usize::MAX;
    let count_fds =
        || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(usize::MAX, |d| d.count());
    println!(
        "   t s   RSS KiB   fds  threads  children  zombies  restarts   (fds: fewest in the period)"
    );
    while Instant::now() < end {
        for i in 0..FRESH {
            sb.touch(&format!("f{i}.beat"));
        }
        fd_floor = fd_floor.min(count_fds());
        if Instant::now() >= next_sample {
            assert!(child.try_wait().unwrap().is_none(), "protector exited");
            let (kids, zombies) = children(pid);
            let s = Sample {
                at: started.elapsed().as_secs_f64(),
                rss_kib: proc_status(pid, "VmRSS"),
                fds: std::mem::replace(&mut fd_floor, usize::MAX).min(count_fds()),
                threads: proc_status(pid, "Threads"),
                children: kids,
                zombies,
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
    // Compare the floors: a leak raises the lowest count of the second half above the first
    // half's.
    let min = |part: &[&Sample], f: &dyn Fn(&Sample) -> f64| {
        part.iter().map(|s| f(s)).fold(f64::MAX, f64::min)
    };
    let fds = |s: &Sample| s.fds as f64;
    assert!(
        min(second, &fds) <= min(first, &fds) + 2.0,
        "fds grow: {samples:#?}"
    );
    let bound = (RESTARTING + HANGING + FRESH) as f64;
    for s in &samples {
        assert!(s.fds as f64 <= 3.0 * bound + 16.0, "fds: {s:?}");
        // Each running command: a process and at most three threads.
        assert!(s.children as f64 <= bound, "children: {s:?}");
        assert!((s.threads as f64) <= 3.0 * bound + 8.0, "threads: {s:?}");
        // A finished command is reaped within the wait's 20 ms poll; never a pile.
        assert!(s.zombies <= 5, "zombies: {s:?}");
    }
}

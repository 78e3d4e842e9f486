//! What protector can see of a service's processes itself (Linux, from /proc): for the
//! process a pid file names and its children, each one's command line, state, what it waits
//! in, threads, open descriptors, resident memory, age, its TCP connections (`tcp_linux.rs`)
//! and its kernel stack where readable (root); a systemd unit's processes from its control
//! group. Every read is bounded; a process that is gone or unreadable is left out.

use super::snapshot::{MAX_PROCESSES, Process, Processes};

/// Most bytes read of one /proc file.
const MAX_READ: u64 = 64 * 1024;

/// Linux's processes, from /proc (and a unit's control group under /sys/fs/cgroup).
pub struct Linux;

impl Processes for Linux {
    fn exists(&self, pid: u32) -> bool {
        look(pid).is_some()
    }

    fn of_service(&self, service: &str) -> Result<Vec<u32>, String> {
        let unit = unit_name(service);
        match unit_processes(std::path::Path::new(CGROUP_ROOT), &unit) {
            Some(pids) if !pids.is_empty() => Ok(pids),
            Some(_) => Err(format!("unit {unit} has no processes")),
            None => Err(format!("unit {unit} is not running (no control group)")),
        }
    }

    fn tree(&self, roots: &[u32]) -> Vec<Process> {
        tree(roots)
    }
}

fn read(path: &str) -> Option<String> {
    use std::io::Read;
    let file = crate::fsutil::open_to_read(std::path::Path::new(path)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of `key:` in /proc/PID/status.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Process `pid` as /proc shows it (its connections are added by [`tree`], which reads each
/// namespace's tables once), or `None` when it is gone.
pub fn look(pid: u32) -> Option<Process> {
    let base = format!("/proc/{pid}");
    let status = read(&format!("{base}/status"))?;
    let command = read(&format!("{base}/cmdline"))
        .map(|c| c.trim_end_matches('\0').replace('\0', " "))
        .filter(|c| !c.is_empty())
        .or_else(|| status_field(&status, "Name").map(|n| format!("[{n}]")))
        .unwrap_or_default();
    let descriptors = std::fs::read_dir(format!("{base}/fd"))
        .map(|d| d.take(100_000).count() as u32)
        .unwrap_or(0);
    Some(Process {
        pid,
        command,
        state: status_field(&status, "State").unwrap_or("?").to_string(),
        wait: read(&format!("{base}/wchan")).unwrap_or_default(),
        threads: status_field(&status, "Threads")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        descriptors,
        resident_kib: status_field(&status, "VmRSS")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0),
        kernel_stack: read(&format!("{base}/stack"))
            .map(|s| {
                s.lines()
                    .map(|l| l.split_once("] ").map_or(l, |(_, f)| f))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        age_secs: age(&base),
        connections: Vec::new(),
    })
}

/// Seconds since the process at `base` started: its start (`stat`'s 22nd field, in clock
/// ticks after boot) against the time since boot (`/proc/uptime`).
fn age(base: &str) -> Option<u64> {
    let stat = read(&format!("{base}/stat"))?;
    // The command (field 2) is in parentheses and may hold anything: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let started: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    let up: f64 = read("/proc/uptime")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let started = started.checked_div(ticks)?;
    Some((up as u64).saturating_sub(started))
}

/// The children of `pid` (every thread's).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| read(&format!("{}/children", t.path().display())))
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The processes `roots` and their descendants, each once (breadth first, at most
/// [`MAX_PROCESSES`]).
pub fn tree(roots: &[u32]) -> Vec<Process> {
    let mut out: Vec<Process> = Vec::new();
    let mut todo: std::collections::VecDeque<u32> = roots.iter().copied().collect();
    while let Some(p) = todo.pop_front() {
        if out.len() >= MAX_PROCESSES {
            break;
        }
        if out.iter().any(|seen| seen.pid == p) {
            continue;
        }
        if let Some(process) = look(p) {
            out.push(process);
            todo.extend(children(p));
        }
    }
    let pids: Vec<u32> = out.iter().map(|p| p.pid).collect();
    for (process, connections) in out.iter_mut().zip(super::tcp_linux::of_processes(&pids)) {
        process.connections = connections;
    }
    out
}

/// Where the kernel shows control groups.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `salt-minion` is `salt-minion.service`; a name with its type stays as it is.
fn unit_name(service: &str) -> String {
    if service.contains('.') {
        service.to_string()
    } else {
        format!("{service}.service")
    }
}

/// Every process in the control group of `unit` (and its sub-groups) under `root`: cgroup v2's
/// `SLICE/UNIT` (any top-level slice), else v1's `systemd/SLICE/UNIT`; `None` when there is
/// no such group.
fn unit_processes(root: &std::path::Path, unit: &str) -> Option<Vec<u32>> {
    let slices = |base: std::path::PathBuf| -> Vec<std::path::PathBuf> {
        let mut all = vec![base.join("system.slice")];
        if let Ok(entries) = std::fs::read_dir(&base) {
            all.extend(
                entries
                    .flatten()
                    .take(1000)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "slice")),
            );
        }
        all
    };
    let group = slices(root.to_path_buf())
        .into_iter()
        .chain(slices(root.join("systemd")))
        .map(|slice| slice.join(unit))
        .find(|g| g.join("cgroup.procs").is_file())?;
    // The group and its sub-groups, breadth first, bounded.
    let (mut pids, mut todo, mut groups) = (Vec::new(), vec![group], 0);
    while let Some(g) = todo.pop() {
        groups += 1;
        if groups > 256 || pids.len() >= MAX_PROCESSES {
            break;
        }
        if let Some(procs) = read(&g.join("cgroup.procs").to_string_lossy()) {
            pids.extend(
                procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        if let Ok(entries) = std::fs::read_dir(&g) {
            todo.extend(
                entries
                    .flatten()
                    .take(1000)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.truncate(MAX_PROCESSES);
    Some(pids)
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::of_service;
    use super::*;

    /// Kills the process group it leads when dropped, however the test ends.
    struct Group(std::process::Child);

    impl Drop for Group {
        fn drop(&mut self) {
            // SAFETY: kill touches no memory; the group is the test's own child's.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_stopped_child_is_seen_stopped_under_its_parent() {
        use std::os::unix::process::CommandExt;
        let child = Group(
            std::process::Command::new("sh")
                .args(["-c", "sleep 60 & wait"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let sleeper = loop {
            if let Some(p) = tree(&[pid])
                .into_iter()
                .find(|p| p.command.starts_with("sleep"))
            {
                break p;
            }
            assert!(std::time::Instant::now() < end, "no sleep under {pid}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // SAFETY: kill touches no memory; the pid is our child's child.
        unsafe { libc::kill(sleeper.pid as i32, libc::SIGSTOP) };
        let stopped = loop {
            let p = look(sleeper.pid).unwrap();
            if p.state.starts_with('T') {
                break p;
            }
            assert!(std::time::Instant::now() < end, "{p:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(stopped.state, "T (stopped)");
        let line = stopped.line();
        assert!(
            line.contains("T (stopped)") && line.ends_with("sleep 60"),
            "{line}"
        );
        assert!(stopped.threads >= 1 && stopped.descriptors >= 1);
        assert!(stopped.age_secs.is_some_and(|a| a < 3600), "{stopped:?}");
        assert!(look(u32::MAX - 1).is_none());
    }

    #[test]
    fn a_units_processes_are_read_from_its_control_group_and_sub_groups() {
        let root = tempfile::tempdir().unwrap();
        let unit = root.path().join("system.slice/salt-minion.service");
        std::fs::create_dir_all(unit.join("worker")).unwrap();
        std::fs::write(unit.join("cgroup.procs"), "812\n").unwrap();
        std::fs::write(unit.join("worker/cgroup.procs"), "845\n846\n").unwrap();
        let mut pids = unit_processes(root.path(), &unit_name("salt-minion")).unwrap();
        pids.sort();
        assert_eq!(pids, [812, 845, 846]);
        // In another slice, and on cgroup v1's systemd hierarchy.
        let other = root.path().join("systemd/machine.slice/x.scope");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("cgroup.procs"), "").unwrap();
        assert_eq!(unit_processes(root.path(), "x.scope"), Some(vec![]));
        assert_eq!(unit_processes(root.path(), "nothing.service"), None);
        assert_eq!(unit_name("a.socket"), "a.socket");
    }

    #[test]
    fn a_service_whose_processes_are_gone_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("svc.pid");
        std::fs::write(&pid_file, format!("{}\n", u32::MAX - 1)).unwrap();
        let (seen, why) = of_service(&Linux, Some(&pid_file), Some("no-such-unit-here"));
        assert!(seen.is_empty());
        assert_eq!(
            why.as_deref(),
            Some(
                "process 4294967294 (from the pid file) is not running; unit no-such-unit-here.service is not running (no control group)"
            )
        );
        let (seen, why) = of_service(&Linux, Some(&pid_file), None);
        assert!(seen.is_empty() && why.unwrap().ends_with("is not running"));
        // This test's own process, by its pid file: seen, nothing said.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        let (seen, why) = of_service(&Linux, Some(&pid_file), None);
        assert_eq!((seen[0].pid, why), (std::process::id(), None));
    }
}

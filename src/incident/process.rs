//! What protector can see of a service's processes itself (Linux, from /proc): for the
//! process a pid file names and its children, each one's command line, state, what it waits
//! in, threads, open descriptors, resident memory, its TCP connections (`tcp.rs`) and its
//! kernel stack where readable (root). Every read is bounded; a process that is gone or unreadable is said so.

use serde::{Deserialize, Serialize};

/// Most processes looked at (the service and its descendants).
const MAX_PROCESSES: usize = 64;
/// Most bytes read of one /proc file.
const MAX_READ: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub command: String,
    /// `R (running)`, `S (sleeping)`, `D (disk sleep)`, `T (stopped)`, `Z (zombie)`...
    pub state: String,
    /// The kernel function it waits in (`wchan`), when it waits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wait: String,
    pub threads: u32,
    pub descriptors: u32,
    pub resident_kib: u64,
    /// Its kernel stack (root only), a frame a line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_stack: String,
    /// Its TCP connections (those it shares with its parent too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<super::tcp::Connection>,
}

impl Process {
    /// `1234 T (stopped) salt-minion` (with what it waits in, when it does).
    pub fn line(&self) -> String {
        let wait = if self.wait.is_empty() || self.wait == "0" {
            String::new()
        } else {
            format!(" in {}", self.wait)
        };
        format!("{} {}{wait} {}", self.pid, self.state, self.command)
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

/// Process `pid` as /proc shows it, or `None` when it is gone.
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
        connections: super::tcp::connections(pid),
    })
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

/// The process `pid` and its descendants (breadth first, at most [`MAX_PROCESSES`]).
pub fn tree(pid: u32) -> Vec<Process> {
    let mut out = Vec::new();
    let mut todo = std::collections::VecDeque::from([pid]);
    while let Some(p) = todo.pop_front() {
        if out.len() >= MAX_PROCESSES {
            break;
        }
        if let Some(process) = look(p) {
            out.push(process);
            todo.extend(children(p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
            if let Some(p) = tree(pid)
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
        assert!(look(u32::MAX - 1).is_none());
    }
}

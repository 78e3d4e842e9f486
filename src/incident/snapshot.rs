//! What protector sees itself of a service's processes, the same on every system: which
//! processes (the one its pid file names, those of its systemd unit or Windows service, and
//! their descendants), each one's state and what it waits in, and its TCP connections. How
//! they are read is per system (`linux.rs` from /proc, `windows.rs` from the kernel's process
//! list, the service manager and the TCP tables); what is kept and said is here.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Most processes looked at (the service and its descendants).
pub const MAX_PROCESSES: usize = 64;
/// Most connections kept for one process.
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// Its command line (Linux; Windows where the system tells it), else its program's name.
    pub command: String,
    /// Linux: `R (running)`, `S (sleeping)`, `D (disk sleep)`, `T (stopped)`, `Z (zombie)`...
    /// Windows: `running`, `waiting`, `suspended` (every thread suspended).
    pub state: String,
    /// What it waits in, when it waits: the kernel function (Linux `wchan`), or the wait reason
    /// of its first thread (Windows: `UserRequest`, `DelayExecution`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wait: String,
    pub threads: u32,
    /// Open descriptors (Linux), handles (Windows).
    pub descriptors: u32,
    pub resident_kib: u64,
    /// Seconds since it started, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    /// Its kernel stack (Linux, root only), a frame a line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_stack: String,
    /// Its TCP connections (on Linux those it shares with its parent too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<Connection>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `ESTABLISHED`, `CLOSE_WAIT`, `LISTEN`... (Linux's names, on Windows too).
    pub state: String,
}

impl Connection {
    /// `10.0.0.5:4506 CLOSE_WAIT` (what it is connected to), `LISTEN 0.0.0.0:80`.
    pub fn line(&self) -> String {
        if self.state == "LISTEN" {
            format!("LISTEN {}", self.local)
        } else {
            format!("{} {} (from {})", self.remote, self.state, self.local)
        }
    }
}

/// How a system shows its processes.
pub trait Processes {
    /// Whether process `pid` exists.
    fn exists(&self, pid: u32) -> bool;
    /// The processes of the service `name` (a systemd unit, a Windows service), or why none.
    fn of_service(&self, name: &str) -> Result<Vec<u32>, String>;
    /// The processes `roots` and their descendants, each once, at most [`MAX_PROCESSES`], with
    /// their connections.
    fn tree(&self, roots: &[u32]) -> Vec<Process>;
}

/// The processes of a target's service: its pid file's process, its service's, and their
/// descendants; or why none was seen.
pub fn of_service(
    system: &impl Processes,
    pid_file: Option<&Path>,
    service: Option<&str>,
) -> (Vec<Process>, Option<String>) {
    let (mut roots, mut unseen) = (Vec::new(), Vec::new());
    if let Some(pid_file) = pid_file {
        match crate::fsutil::read_pid(pid_file) {
            Ok(Some(pid)) if system.exists(pid) => roots.push(pid),
            Ok(Some(pid)) => {
                unseen.push(format!("process {pid} (from the pid file) is not running"))
            }
            Ok(None) => unseen.push(format!("{} holds no pid", pid_file.display())),
            Err(e) => unseen.push(format!("cannot read {}: {e}", pid_file.display())),
        }
    }
    if let Some(service) = service {
        match system.of_service(service) {
            Ok(pids) => roots.extend(pids),
            Err(why) => unseen.push(why),
        }
    }
    let tree = system.tree(&roots);
    let unseen = (tree.is_empty() && !unseen.is_empty()).then(|| unseen.join("; "));
    (tree, unseen)
}

/// `2 processes: 1 T (stopped), 1 S (sleeping); 812 waits in do_signal_stop; TCP to
/// 10.0.0.5:4506 CLOSE_WAIT`, or `None` when no process was seen.
pub fn summary(processes: &[Process]) -> Option<String> {
    if processes.is_empty() {
        return None;
    }
    let mut states: Vec<(&str, usize)> = Vec::new();
    for p in processes {
        match states.iter_mut().find(|(s, _)| *s == p.state) {
            Some((_, n)) => *n += 1,
            None => states.push((&p.state, 1)),
        }
    }
    let list: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let waits = processes
        .iter()
        .find(|p| !p.wait.is_empty() && p.wait != "0")
        .map(|p| format!("; {} waits in {}", p.pid, p.wait))
        .unwrap_or_default();
    let n = processes.len();
    let s = if n == 1 { "" } else { "es" };
    Some(format!(
        "{n} process{s}: {}{waits}{}",
        list.join(", "),
        tcp_said(processes)
    ))
}

/// `; TCP to 10.0.0.5:4506 CLOSE_WAIT, ...`: the processes' connections (not their
/// listening sockets), each once, at most three named.
fn tcp_said(processes: &[Process]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for c in processes.iter().flat_map(|p| &p.connections) {
        let said = format!("{} {}", c.remote, c.state);
        if c.state != "LISTEN" && !seen.contains(&said) {
            seen.push(said);
        }
    }
    match seen.len() {
        0 => String::new(),
        n @ 1..=3 => format!("; TCP to {}", seen[..n].join(", ")),
        n => format!("; TCP to {} and {} more", seen[..3].join(", "), n - 3),
    }
}

/// A system whose processes protector does not look at: only the pid file is read.
#[cfg(not(any(target_os = "linux", windows)))]
pub struct Unseen;

#[cfg(not(any(target_os = "linux", windows)))]
impl Processes for Unseen {
    fn exists(&self, _pid: u32) -> bool {
        false
    }
    fn of_service(&self, name: &str) -> Result<Vec<u32>, String> {
        Err(format!(
            "service {name}: processes are looked at on Linux and Windows only"
        ))
    }
    fn tree(&self, _roots: &[u32]) -> Vec<Process> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up system: pid 10 (service `svc`) with children 11, 12; pid 20 alone.
    struct Made;

    impl Processes for Made {
        fn exists(&self, pid: u32) -> bool {
            [10, 11, 12, 20].contains(&pid)
        }
        fn of_service(&self, name: &str) -> Result<Vec<u32>, String> {
            match name {
                "svc" => Ok(vec![10]),
                _ => Err(format!("service {name} is not running")),
            }
        }
        fn tree(&self, roots: &[u32]) -> Vec<Process> {
            let mut all: Vec<u32> = Vec::new();
            for &r in roots {
                let family: &[u32] = if r == 10 { &[10, 11, 12] } else { &[20] };
                all.extend(
                    family
                        .iter()
                        .filter(|p| !all.contains(p))
                        .collect::<Vec<_>>(),
                );
            }
            all.into_iter()
                .map(|pid| Process {
                    pid,
                    state: if pid == 11 {
                        "T (stopped)"
                    } else {
                        "S (sleeping)"
                    }
                    .into(),
                    wait: if pid == 12 {
                        "futex_wait".into()
                    } else {
                        String::new()
                    },
                    connections: (pid == 10)
                        .then(|| Connection {
                            local: "10.0.0.9:40000".parse().unwrap(),
                            remote: "10.0.0.5:4506".parse().unwrap(),
                            state: "CLOSE_WAIT".into(),
                        })
                        .into_iter()
                        .collect(),
                    ..Process::default()
                })
                .collect()
        }
    }

    #[test]
    fn a_service_is_its_pid_files_process_and_its_services_with_their_descendants() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("svc.pid");
        std::fs::write(&pid_file, "20\n").unwrap();
        let (seen, why) = of_service(&Made, Some(&pid_file), Some("svc"));
        let pids: Vec<u32> = seen.iter().map(|p| p.pid).collect();
        assert_eq!((pids, why), (vec![20, 10, 11, 12], None));
        assert_eq!(
            summary(&seen).unwrap(),
            "4 processes: 3 S (sleeping), 1 T (stopped); 12 waits in futex_wait; TCP to 10.0.0.5:4506 CLOSE_WAIT"
        );
        // What is missing is said only when nothing was seen.
        let (seen, why) = of_service(&Made, Some(&pid_file), Some("other"));
        assert_eq!((seen.len(), why), (1, None));
        std::fs::write(&pid_file, "99\n").unwrap();
        let (seen, why) = of_service(&Made, Some(&pid_file), Some("other"));
        assert!(seen.is_empty());
        assert_eq!(
            why.as_deref(),
            Some("process 99 (from the pid file) is not running; service other is not running")
        );
        std::fs::write(&pid_file, "").unwrap();
        let (_, why) = of_service(&Made, Some(&pid_file), None);
        assert!(why.unwrap().ends_with("holds no pid"));
        assert_eq!(summary(&[]), None);
    }
}

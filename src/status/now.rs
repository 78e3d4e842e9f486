//! What `status` looks at itself, now, rather than reading from the state file: each
//! target's heartbeat file (its age now) and, where the target names one, its service's pid
//! file (the pid, and whether that process runs). On a thread of its own, for at most
//! `LOOK_LIMIT` in all: a dead mount must not hang `status`.

use crate::fsutil::epoch_secs;
use crate::state::TargetRecord;

/// How long `status` looks at files in all.
const LOOK_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A heartbeat file as `status` finds it now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Beat {
    /// Its age from its modification time.
    Age(f64),
    Missing,
    /// It could not be looked at (in time).
    Unknown,
}

/// The service as its pid file says, now.
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// The target names no pid file.
    NotNamed,
    Pid {
        pid: u32,
        running: bool,
    },
    /// No pid file (the service is not running, or not yet).
    NoFile,
    /// The file holds no pid, or could not be read (in time).
    Unknown,
}

/// One target, looked at now.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    pub beat: Beat,
    pub service: Service,
}

/// Target `t` when it could not be looked at (in time): nothing known of its files, and no
/// service where it names no pid file.
pub fn not_looked(t: &TargetRecord) -> Look {
    Look {
        beat: Beat::Unknown,
        service: match t.pid_file {
            Some(_) => Service::Unknown,
            None => Service::NotNamed,
        },
    }
}

/// Every target of `targets`, looked at now (what was not looked at in time is unknown).
pub fn look(targets: &[TargetRecord], now: f64) -> Vec<Look> {
    let files: Vec<(String, Option<String>)> = targets
        .iter()
        .map(|t| (t.heartbeat.clone(), t.pid_file.clone()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let looker = std::thread::Builder::new()
        .name("status-look".into())
        .spawn(move || {
            for (heartbeat, pid_file) in files {
                let beat = match std::fs::metadata(&heartbeat).and_then(|m| m.modified()) {
                    Ok(at) => Beat::Age((now - epoch_secs(at)).max(0.0)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Beat::Missing,
                    Err(_) => Beat::Unknown,
                };
                let service = pid_file.map_or(Service::NotNamed, |p| service(&p));
                if tx.send(Look { beat, service }).is_err() {
                    break;
                }
            }
        });
    let mut looks = Vec::with_capacity(targets.len());
    if looker.is_ok() {
        let until = std::time::Instant::now() + LOOK_LIMIT;
        while looks.len() < targets.len() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(look) => looks.push(look),
                Err(_) => break,
            }
        }
    }
    let looked = looks.len();
    looks.extend(targets[looked..].iter().map(not_looked));
    looks
}

/// The service as the pid file at `path` says (see [`crate::fsutil::read_pid`]).
fn service(path: &str) -> Service {
    match crate::fsutil::read_pid(std::path::Path::new(path)) {
        Ok(Some(pid)) => Service::Pid {
            pid,
            running: crate::platform::process_alive(pid),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Service::NoFile,
        Ok(None) | Err(_) => Service::Unknown,
    }
}

impl Service {
    /// The SERVICE PID cell of `status`'s table.
    pub fn cell(&self) -> String {
        match self {
            Service::NotNamed => "-".into(),
            Service::Pid { pid, running: true } => pid.to_string(),
            Service::Pid {
                pid,
                running: false,
            } => format!("{pid} (not running)"),
            Service::NoFile => "no pid file".into(),
            Service::Unknown => "unknown".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_says_the_pid_and_whether_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("me.pid"), format!("{}\n", std::process::id())).unwrap();
        let me = service(&path("me.pid"));
        assert_eq!(
            me,
            Service::Pid {
                pid: std::process::id(),
                running: true
            }
        );
        assert_eq!(me.cell(), std::process::id().to_string());
        assert_eq!(service(&path("none.pid")), Service::NoFile);
        std::fs::write(path("junk.pid"), "not a pid").unwrap();
        assert_eq!(service(&path("junk.pid")), Service::Unknown);
        // Only the first bytes are read: a huge file is not.
        std::fs::write(path("huge.pid"), "1".repeat(10_000)).unwrap();
        assert_eq!(service(&path("huge.pid")), Service::Unknown);
        assert_eq!(service(&dir.path().display().to_string()), Service::Unknown);
    }
}

//! Writing the state and metrics files on a thread of their own. At 100,000 targets one write
//! is 130 MB of text (about half a second): the loop hands a snapshot over and goes on judging
//! and restarting. It waits only where someone must find what it wrote: before it says it
//! started (the state file), before it answers a control command or a reload someone waits
//! for (the state file), and before it exits (both). A snapshot not yet begun when a newer one
//! comes is dropped: the newer one says all it said.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::Files;
use crate::metrics;
use crate::state::{self, StateFile};

/// What is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The state file (what `protector status` and the next start-up read).
    State,
    /// Both files.
    All,
}

/// The writing thread, seen from the loop.
#[derive(Default)]
pub(super) struct Writer {
    shared: Arc<Shared>,
    /// Snapshots handed over so far.
    submitted: u64,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    moved: Condvar,
}

#[derive(Default)]
struct Queue {
    /// The newest snapshot not begun yet, with its number and where it goes.
    next: Option<(u64, StateFile, Files)>,
    /// The latest snapshot whose state file was written (or failed to be), and all of it.
    state_done: u64,
    all_done: u64,
    /// Whether that state file was written.
    state_written: bool,
    /// A snapshot is being written.
    writing: bool,
    /// How long the last write of both files took.
    last_took: Duration,
    /// The last failure logged (a failure is logged once per new reason).
    last_error: Option<String>,
    /// The thread runs (started at the first snapshot).
    running: bool,
    /// The writer is dropped: the thread ends once nothing is left to write.
    closed: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Writer {
    /// Hands `snapshot` over to be written to `files`; returns its number, for [`Writer::wait`].
    pub fn submit(&mut self, snapshot: StateFile, files: &Files) -> u64 {
        self.submitted += 1;
        let number = self.submitted;
        let mut queue = self.shared.queue();
        queue.next = Some((number, snapshot, files.clone()));
        if !queue.running {
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name("protector-write".into())
                .spawn(move || while write_next(&shared) {});
            match started {
                Ok(_) => queue.running = true,
                Err(_) => {
                    // No thread to be had: written here, as before there was one.
                    drop(queue);
                    write_next(&self.shared);
                    return number;
                }
            }
        }
        self.shared.moved.notify_all();
        number
    }

    /// How long until the writer is likely free, when it is writing or has a snapshot waiting
    /// (the time its last write took); `None` when it is free.
    pub fn busy_for(&self) -> Option<Duration> {
        let queue = self.shared.queue();
        (queue.writing || queue.next.is_some()).then_some(queue.last_took)
    }

    /// Waits until snapshot `number` (or a later one) has its `part` written, at most `limit`.
    /// Returns whether its state file was written.
    pub fn wait(&self, number: u64, part: Part, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut queue = self.shared.queue();
        loop {
            let done = match part {
                Part::State => queue.state_done,
                Part::All => queue.all_done,
            };
            if done >= number {
                return queue.state_written;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    event = "write_slow",
                    waited_secs = limit.as_secs(),
                    "protector's files are not written yet; going on without waiting longer"
                );
                return false;
            }
            queue = self
                .shared
                .moved
                .wait_timeout(queue, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.moved.notify_all();
    }
}

/// Writes the next snapshot, waiting for one; false when the writer is gone and nothing is
/// left to write.
fn write_next(shared: &Shared) -> bool {
    let (number, snapshot, files) = {
        let mut queue = shared.queue();
        loop {
            if let Some(next) = queue.next.take() {
                queue.writing = true;
                break next;
            }
            if queue.closed {
                queue.running = false;
                return false;
            }
            queue = shared.moved.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
    };
    let began = Instant::now();
    let mut errors = Vec::new();
    if let Some(path) = &files.state_file
        && let Err(e) = contained(|| state::save(path, &snapshot))
    {
        errors.push(format!("cannot write state file {}: {e}", path.display()));
    }
    {
        let mut queue = shared.queue();
        queue.state_done = number;
        queue.state_written = errors.is_empty();
        shared.moved.notify_all();
    }
    if let Some(path) = &files.metrics_file
        && let Err(e) = contained(|| metrics::write(path, &snapshot))
    {
        errors.push(format!("cannot write metrics file {}: {e}", path.display()));
    }
    drop(snapshot);
    // A snapshot of 10,000 targets is megabytes, made once in a while: its pages go back to
    // the system until the next one, not kept as the daemon's for good.
    crate::platform::return_free_memory();
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    let mut queue = shared.queue();
    if error.is_some() && error != queue.last_error {
        warn!(
            event = "write_failed",
            reason = error.as_deref().unwrap_or_default(),
            "cannot write protector's files; watching continues"
        );
    }
    queue.last_error = error;
    queue.all_done = number;
    queue.writing = false;
    queue.last_took = began.elapsed();
    shared.moved.notify_all();
    true
}

/// Runs `write`; a panic in it (a bug) fails that write like any other failure, and the
/// writer goes on (a writer thread gone would leave every later write waiting for it).
fn contained(write: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(write)).unwrap_or_else(|panic| {
        Err(std::io::Error::other(format!(
            "internal error: {}",
            super::panic_message(&*panic)
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_write_is_a_failed_write() {
        let failed = contained(|| panic!("a bug")).unwrap_err();
        assert_eq!(failed.to_string(), "internal error: a bug");
        assert!(contained(|| Ok(())).is_ok());
    }

    fn snapshot(pid: u32) -> StateFile {
        let mut s: StateFile = serde_json::from_str(
            r#"{"format": "protector-state", "version": 1, "pid": 1, "protector_version": "0",
                "started_at": 0, "written_at": 0, "config": null, "lock_file": null,
                "targets": []}"#,
        )
        .unwrap();
        s.pid = pid;
        s
    }

    #[test]
    fn what_is_waited_for_is_written_and_the_latest_snapshot_wins() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            state_file: Some(dir.path().join("state.json")),
            metrics_file: Some(dir.path().join("m.prom")),
            lock_file: None,
        };
        let mut writer = Writer::default();
        let mut last = 0;
        for pid in 1..=50 {
            last = writer.submit(snapshot(pid), &files);
        }
        assert!(writer.wait(last, Part::All, Duration::from_secs(60)));
        let written = state::load(files.state_file.as_ref().unwrap(), state::MAX_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(written.pid, 50, "the last snapshot is the one on disk");
        assert!(files.metrics_file.as_ref().unwrap().exists());
    }

    #[test]
    fn a_state_file_that_cannot_be_written_is_told_to_whoever_waits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        let files = Files {
            state_file: Some(dir.path().join("blocked/state.json")),
            metrics_file: None,
            lock_file: None,
        };
        let mut writer = Writer::default();
        let n = writer.submit(snapshot(1), &files);
        assert!(!writer.wait(n, Part::State, Duration::from_secs(60)));
        writer.wait(n, Part::All, Duration::from_secs(60));
        let failed = writer.shared.queue().last_error.clone().expect("a failure");
        assert!(failed.starts_with("cannot write state file"), "{failed}");
        // Once the way is clear, it is written again and the failure forgotten.
        std::fs::remove_file(dir.path().join("blocked")).unwrap();
        let n = writer.submit(snapshot(2), &files);
        assert!(writer.wait(n, Part::All, Duration::from_secs(60)));
        assert_eq!(writer.shared.queue().last_error, None);
        let back = state::load(files.state_file.as_ref().unwrap(), state::MAX_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(back.pid, 2);
    }
}

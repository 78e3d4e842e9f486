//! The helper processes, seen from protector (Linux; `helper.rs` is the helper itself): one
//! started when looks are first asked for, each batch sent to it and its answer waited for
//! within the batch's budget and [`SLACK`]; a helper that does not answer in time or has
//! ended is killed, that batch is looked at from protector's own workers, and another helper
//! is started for the next. After [`MAX_FAILURES`] failures within [`RESTING`], protector
//! looks from its own workers until that is no longer so: looking goes on whatever happens.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use tracing::warn;

use super::helper::{Helper, kill};
use super::wire::{Request, WirePath};
use super::{Answer, Ask, FileLooker, Look, Looker, Place, looks_of, placed_of};

/// The running executable itself, whatever happened to its file since (an upgrade replaces
/// it): a daemon's helper is always of its own version.
const THIS_PROGRAM: &str = "/proc/self/exe";

/// Set by the CLI before a daemon runs (library tests have no protector to run as helper).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Looks run in a helper process from now on.
pub fn enable() {
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The looker a daemon uses: a helper process when enabled.
pub(crate) fn looker() -> Option<HelperLooker> {
    ENABLED
        .load(std::sync::atomic::Ordering::Relaxed)
        .then(|| HelperLooker::new(PathBuf::from(THIS_PROGRAM)))
}

/// How long past a batch's own budget the helper may take to answer before it counts as
/// stuck (pipes, scheduling on a loaded machine).
const SLACK: Duration = Duration::from_secs(1);

/// Helpers that fail (cannot start, get stuck, end) this many times within [`RESTING`] are
/// not started again until that is no longer so: looks are made from protector's own
/// threads meanwhile (each stuck helper may stay in the kernel for as long as its
/// filesystem does not answer, so they are not started without end).
const MAX_FAILURES: usize = 3;
const RESTING: Duration = Duration::from_secs(600);

/// The production [`Looker`] on Linux: looks in a helper process; on this process's own
/// workers for a batch its helper did not answer, and while helpers keep failing.
pub(crate) struct HelperLooker {
    program: PathBuf,
    run: Mutex<Run>,
    next_batch: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Run {
    helper: Option<Helper>,
    /// When helpers last failed (could not start, got stuck, ended), the latest last.
    failures: std::collections::VecDeque<Instant>,
    /// This process's own workers, made the first time a helper failed.
    here: Option<FileLooker>,
}

impl Run {
    /// Failed [`MAX_FAILURES`] times within [`RESTING`]: no helper is started for now.
    fn resting(&mut self) -> bool {
        while self
            .failures
            .front()
            .is_some_and(|at| at.elapsed() >= RESTING)
        {
            self.failures.pop_front();
        }
        self.failures.len() >= MAX_FAILURES
    }

    fn failed(&mut self) {
        self.failures.push_back(Instant::now());
    }

    fn here(&mut self) -> &FileLooker {
        self.here.get_or_insert_with(FileLooker::default)
    }
}

impl HelperLooker {
    /// Looks in helpers run as `program __look-helper`.
    pub fn new(program: PathBuf) -> HelperLooker {
        HelperLooker {
            program,
            run: Mutex::new(Run::default()),
            next_batch: Default::default(),
        }
    }

    fn ask(&self, paths: &[&Path], ask: Ask, within: Duration) -> Vec<Option<Answer>> {
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        if run.helper.is_none() && !run.resting() {
            match Helper::start(&self.program) {
                Ok(helper) => run.helper = Some(helper),
                Err(e) => {
                    warn!(event = "look_helper_failed", reason = %e, "cannot start the process that looks at heartbeats; looking from protector's own threads");
                    run.failed();
                }
            }
        }
        if let Some(helper) = run.helper.as_ref() {
            if let Some(answers) = self.exchange(helper, paths, ask, within) {
                return answers;
            }
            if let Some(gone) = run.helper.take() {
                kill(gone.pid);
            }
            run.failed();
        }
        run.here().ask(paths, ask, within)
    }

    /// One batch to `helper` and its answer; `None` when it did not answer in time (it is
    /// stuck) or has ended.
    fn exchange(
        &self,
        helper: &Helper,
        paths: &[&Path],
        ask: Ask,
        within: Duration,
    ) -> Option<Vec<Option<Answer>>> {
        let batch = self
            .next_batch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = Request {
            batch,
            ask,
            within_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
            paths: paths.iter().map(|p| WirePath::of(p)).collect(),
        };
        let mut frame = serde_json::to_vec(&request).ok()?;
        frame.push(b'\n');
        let deadline = Instant::now() + within + SLACK;
        let sent = helper.requests.send(frame).is_ok();
        let reason = loop {
            if !sent {
                break "has ended";
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match helper.replies.recv_timeout(left) {
                Ok(reply) if reply.batch == batch && reply.answers.len() == paths.len() => {
                    return Some(reply.answers);
                }
                // An answer to a batch given up on already.
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break "did not answer in time",
                Err(mpsc::RecvTimeoutError::Disconnected) => break "has ended",
            }
        };
        warn!(
            event = "look_helper_stuck",
            pid = helper.pid,
            "the process that looks at heartbeats {reason}; it is killed, this look made from protector's own threads, and another process started for the next"
        );
        None
    }
}

impl Looker for HelperLooker {
    fn look(&self, paths: &[&Path], within: Duration) -> Vec<Look> {
        looks_of(self.ask(paths, Ask::Look, within))
    }

    fn look_and_place(&self, paths: &[&Path], within: Duration) -> Vec<(Look, Place)> {
        placed_of(self.ask(paths, Ask::LookAndPlace, within))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Observation;

    #[test]
    fn a_helper_that_does_not_answer_is_replaced_and_its_batch_looked_at_here() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let beat = dir.path().join("beat");
        std::fs::write(&beat, "").unwrap();
        let started = dir.path().join("started");
        let script = dir.path().join("helper.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ >> {}\nexec sleep 600\n",
                started.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let looker = HelperLooker::new(script);
        let within = Duration::from_millis(100);
        let pids = || -> Vec<i32> {
            std::fs::read_to_string(&started)
                .unwrap_or_default()
                .lines()
                .map(|l| l.parse().unwrap())
                .collect()
        };
        for n in 1..=MAX_FAILURES {
            let looks = looker.look(&[&beat], within);
            assert!(matches!(looks[0].0, Observation::Present(_)), "{looks:?}");
            assert_eq!(pids().len(), n, "a new helper for each batch");
        }
        // Each killed, and reaped: gone from the process table.
        let end = Instant::now() + Duration::from_secs(20);
        for pid in pids() {
            while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                assert!(
                    Instant::now() < end,
                    "the stuck helper {pid} was not killed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Failed three times: no more helpers for now; looked at here.
        let looks = looker.look(&[&beat], within);
        assert!(matches!(looks[0].0, Observation::Present(_)), "{looks:?}");
        assert_eq!(pids().len(), MAX_FAILURES);
    }

    #[test]
    fn without_a_helper_to_run_looks_are_made_here() {
        let dir = tempfile::tempdir().unwrap();
        let beat = dir.path().join("beat");
        std::fs::write(&beat, "").unwrap();
        let looker = HelperLooker::new(dir.path().join("no-such-program"));
        let looks = looker.look(&[&beat], Duration::from_secs(5));
        assert!(matches!(looks[0].0, Observation::Present(_)), "{looks:?}");
    }
}

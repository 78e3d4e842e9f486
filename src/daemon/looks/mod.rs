//! Looking at heartbeat files so that no file can hold anything up. A `stat` on a dead NFS or
//! FUSE mount may never return; if the loop made it itself, every target, the systemd
//! watchdog and shutdown would wait with it. So each look runs on a worker thread and the
//! loop waits for it at most a short budget (a quarter of the target's timeout, 200 ms to 5 s):
//! a look past it counts as "no answer", which is no heartbeat. At most one look per file is
//! in flight: while an earlier one has not returned, the file is "no answer" at once, without
//! waiting again. A stuck worker is left behind (never joined); new workers are made while
//! others are stuck, up to a bound, and idle ones end after a minute. The same workers tell
//! what to warn about a heartbeat's place ([`Place`]).
//!
//! A thread stuck in the kernel keeps its process from ending, even on SIGKILL: on Linux the
//! workers therefore run in a helper process (`helper.rs`), and protector itself never
//! enters a heartbeat's filesystem.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::effects::{Look, Looker, Place};
use crate::heartbeat;
use crate::schedule::Observation;

#[cfg(target_os = "linux")]
pub(crate) mod helper;
#[cfg(target_os = "linux")]
pub(crate) mod remote;

/// What is asked about a heartbeat file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Ask {
    /// Its fingerprint (a look).
    Look,
    /// What to warn about its place.
    Place,
}

/// An answer to an [`Ask`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Look(Look),
    Place(Place),
}

fn answer(ask: Ask, path: &Path) -> Answer {
    match ask {
        Ask::Look => Answer::Look(heartbeat::observe(path)),
        Ask::Place => Answer::Place(Place {
            missing_dir: heartbeat::missing_dir(path).map(|d| d.display().to_string()),
            exposed: crate::perms::heartbeat_exposure(path),
        }),
    }
}

/// The looks of answers to [`Ask::Look`] (no answer in time: [`no_answer`]).
fn looks_of(answers: Vec<Option<Answer>>) -> Vec<Look> {
    answers
        .into_iter()
        .map(|a| match a {
            Some(Answer::Look(look)) => look,
            _ => no_answer(),
        })
        .collect()
}

/// The places of answers to [`Ask::Place`] (no answer in time: nothing to say).
fn places_of(answers: Vec<Option<Answer>>) -> Vec<Place> {
    answers
        .into_iter()
        .map(|a| match a {
            Some(Answer::Place(place)) => place,
            _ => Place::default(),
        })
        .collect()
}

/// Workers kept ready (more are made only while some are stuck).
const READY_WORKERS: usize = 4;
/// At most this many workers, stuck ones included.
const MAX_WORKERS: usize = 256;
/// While looks are outstanding and none comes back for this long, one more worker is made.
const NO_PROGRESS: Duration = Duration::from_millis(100);
/// An idle worker ends after this long.
const IDLE_END: Duration = Duration::from_secs(60);

struct Task {
    path: PathBuf,
    ask: Ask,
    index: usize,
    reply: mpsc::Sender<(usize, Answer)>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    workers: usize,
    idle: usize,
    /// Files with a question queued or under way.
    in_flight: HashSet<(PathBuf, Ask)>,
    /// No worker could be made at all: look on the caller's thread (said once).
    inline: bool,
}

#[derive(Default)]
struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The production [`Looker`].
#[derive(Default)]
pub(super) struct FileLooker {
    pool: Arc<Pool>,
}

impl FileLooker {
    /// Makes one more worker; false when none can be made (a tasks limit) or the bound is
    /// reached.
    fn add_worker(&self, st: &mut State) -> bool {
        if st.workers >= MAX_WORKERS {
            return false;
        }
        let pool = self.pool.clone();
        let made = std::thread::Builder::new()
            .name("protector-look".into())
            .stack_size(64 * 1024)
            .spawn(move || work(&pool));
        match made {
            Ok(_) => {
                st.workers += 1;
                true
            }
            Err(e) => {
                if st.workers == 0 && !st.inline {
                    st.inline = true;
                    tracing::warn!(
                        event = "looks_one_by_one",
                        reason = %e,
                        "cannot start threads to look at heartbeats; looking on the scheduler thread"
                    );
                }
                false
            }
        }
    }
}

/// The same words every time, so that a stuck file is logged once, not at every look.
fn no_answer() -> Look {
    (
        Observation::Unknown,
        Some("no answer in time: the filesystem does not respond".into()),
    )
}

impl Looker for FileLooker {
    fn look(&self, paths: &[&Path], within: Duration) -> Vec<Look> {
        looks_of(self.ask(paths, Ask::Look, within))
    }

    fn places(&self, paths: &[&Path], within: Duration) -> Vec<Place> {
        places_of(self.ask(paths, Ask::Place, within))
    }
}

impl FileLooker {
    /// Asks `ask` of each path, on the workers; `None` for those not answered `within`.
    pub(crate) fn ask(&self, paths: &[&Path], ask: Ask, within: Duration) -> Vec<Option<Answer>> {
        let (tx, rx) = mpsc::channel();
        let mut out: Vec<Option<Answer>> = vec![None; paths.len()];
        let mut outstanding = 0;
        // Two targets may share a file: it is looked at once.
        let mut first: std::collections::HashMap<&Path, usize> = Default::default();
        let mut copies = Vec::new();
        {
            let mut st = self.pool.lock();
            for (index, path) in paths.iter().enumerate() {
                if let Some(&f) = first.get(*path) {
                    copies.push((index, f));
                    continue;
                }
                first.insert(path, index);
                let key = (path.to_path_buf(), ask);
                if st.in_flight.contains(&key) {
                    continue;
                }
                st.in_flight.insert(key);
                st.queue.push_back(Task {
                    path: path.to_path_buf(),
                    ask,
                    index,
                    reply: tx.clone(),
                });
                outstanding += 1;
            }
            let busy = st.workers - st.idle.min(st.workers);
            let wanted = READY_WORKERS.min(busy + st.queue.len());
            while st.workers < wanted && self.add_worker(&mut st) {}
            if st.workers == 0 {
                // No thread at all: look here, as protector did before it had workers.
                while let Some(task) = st.queue.pop_front() {
                    st.in_flight.remove(&(task.path.clone(), task.ask));
                    out[task.index] = Some(answer(task.ask, &task.path));
                    outstanding -= 1;
                }
            }
            // One worker woken per look queued, not every idle one for each.
            for _ in 0..st.queue.len().min(st.idle) {
                self.pool.work.notify_one();
            }
        }
        drop(tx);
        let deadline = Instant::now() + within;
        while outstanding > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(NO_PROGRESS.min(deadline - now)) {
                Ok((index, answer)) => {
                    out[index] = Some(answer);
                    outstanding -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Every worker may be stuck on a dead mount: add one for the rest.
                    let mut st = self.pool.lock();
                    if !st.queue.is_empty() && st.idle == 0 && self.add_worker(&mut st) {
                        self.pool.work.notify_one();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        for (index, f) in copies {
            out[index] = out[f].clone();
        }
        out
    }
}

/// A worker: takes looks off the queue until it has been idle for [`IDLE_END`].
fn work(pool: &Pool) {
    loop {
        let task = {
            let mut st = pool.lock();
            loop {
                if let Some(task) = st.queue.pop_front() {
                    break task;
                }
                st.idle += 1;
                let (guard, wait) = pool
                    .work
                    .wait_timeout(st, IDLE_END)
                    .unwrap_or_else(|p| p.into_inner());
                st = guard;
                st.idle -= 1;
                if wait.timed_out() && st.queue.is_empty() {
                    st.workers -= 1;
                    return;
                }
            }
        };
        let answer = answer(task.ask, &task.path);
        pool.lock().in_flight.remove(&(task.path, task.ask));
        // The caller may have stopped waiting: then the answer is simply dropped.
        let _ = task.reply.send((task.index, answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_come_back_in_order_and_a_missing_file_is_no_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        std::fs::write(&present, "").unwrap();
        let absent = dir.path().join("absent");
        let looker = FileLooker::default();
        let paths: Vec<&Path> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    present.as_path()
                } else {
                    absent.as_path()
                }
            })
            .collect();
        let looks = looker.look(&paths, Duration::from_secs(5));
        assert_eq!(looks.len(), 40);
        for (i, (obs, err)) in looks.iter().enumerate() {
            assert_eq!(matches!(obs, Observation::Present(_)), i % 2 == 0, "{i}");
            assert!(err.is_none());
        }
        assert!(looker.pool.lock().workers <= READY_WORKERS);
    }
}

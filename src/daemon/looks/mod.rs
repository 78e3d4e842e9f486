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

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::effects::{Look, Looker, Place};

mod answer;
#[cfg(target_os = "linux")]
pub(crate) mod helper;
#[cfg(target_os = "linux")]
pub(crate) mod remote;

pub(crate) use answer::{Answer, Ask};
use answer::{Dirs, answer, looks_of, placed_of};

/// Workers kept ready (more are made only while some are stuck).
const READY_WORKERS: usize = 4;
/// At most this many workers, stuck ones included.
const MAX_WORKERS: usize = 256;
/// While looks are outstanding and none comes back for this long, one more worker is made.
const NO_PROGRESS: Duration = Duration::from_millis(100);
/// An idle worker ends after this long.
const IDLE_END: Duration = Duration::from_secs(60);

/// One [`FileLooker::ask`]: its files, and their answers as they come. The asker is woken
/// when the last one comes (or to see whether any came), not at each: 100,000 looks are not
/// 100,000 hand-offs.
struct Batch {
    ask: Ask,
    paths: Vec<PathBuf>,
    dirs: Dirs,
    answers: Mutex<Answers>,
    all_in: Condvar,
}

struct Answers {
    got: Vec<Option<Answer>>,
    count: usize,
    /// Answers to wait for.
    wanted: usize,
    /// Still waited for: an answer after the asker gave up is dropped.
    open: bool,
}

impl Batch {
    fn answers(&self) -> MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, index: usize, answer: Answer) {
        let mut answers = self.answers();
        if answers.open {
            answers.got[index] = Some(answer);
            answers.count += 1;
            if answers.count == answers.wanted {
                self.all_in.notify_one();
            }
        }
    }
}

/// A file of a batch to answer.
struct Task {
    batch: Arc<Batch>,
    index: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    workers: usize,
    idle: usize,
    /// Files with a question queued or under way, by question.
    in_flight: [HashSet<PathBuf>; 2],
    /// No worker could be made at all: look on the caller's thread (said once).
    inline: bool,
}

impl State {
    fn in_flight(&mut self, ask: Ask) -> &mut HashSet<PathBuf> {
        &mut self.in_flight[ask as usize]
    }
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

impl Looker for FileLooker {
    fn look(&self, paths: &[&Path], within: Duration) -> Vec<Look> {
        looks_of(self.ask(paths, Ask::Look, within))
    }

    fn look_and_place(&self, paths: &[&Path], within: Duration) -> Vec<(Look, Place)> {
        placed_of(self.ask(paths, Ask::LookAndPlace, within))
    }
}

impl FileLooker {
    /// Asks `ask` of each path, on the workers; `None` for those not answered `within`.
    pub(crate) fn ask(&self, paths: &[&Path], ask: Ask, within: Duration) -> Vec<Option<Answer>> {
        // Two targets may share a file: it is looked at once.
        let mut first: HashMap<&Path, usize> = HashMap::with_capacity(paths.len());
        let of: Vec<usize> = paths
            .iter()
            .map(|path| {
                let next = first.len();
                *first.entry(path).or_insert(next)
            })
            .collect();
        let mut unique: Vec<PathBuf> = vec![PathBuf::new(); first.len()];
        for (path, index) in first {
            unique[index] = path.to_path_buf();
        }
        let batch = Arc::new(Batch {
            ask,
            answers: Mutex::new(Answers {
                got: vec![None; unique.len()],
                count: 0,
                wanted: 0,
                open: true,
            }),
            paths: unique,
            dirs: Dirs::default(),
            all_in: Condvar::new(),
        });
        self.queue(&batch);
        let mut got = self.wait(&batch, within);
        // Each file's answer goes to its targets: copies to all but its last.
        let mut uses = vec![0_usize; got.len()];
        for &u in &of {
            uses[u] += 1;
        }
        of.into_iter()
            .map(|u| {
                uses[u] -= 1;
                if uses[u] == 0 {
                    got[u].take()
                } else {
                    got[u].clone()
                }
            })
            .collect()
    }

    /// Queues `batch`'s files (those with the same question under way already wait for
    /// nothing: they are not answered); looks here when there is no worker at all.
    fn queue(&self, batch: &Arc<Batch>) {
        let mut st = self.pool.lock();
        let mut wanted = 0;
        for (index, path) in batch.paths.iter().enumerate() {
            if st.in_flight(batch.ask).insert(path.clone()) {
                st.queue.push_back(Task {
                    batch: batch.clone(),
                    index,
                });
                wanted += 1;
            }
        }
        batch.answers().wanted = wanted;
        let busy = st.workers - st.idle.min(st.workers);
        let wanted_workers = READY_WORKERS.min(busy + st.queue.len());
        while st.workers < wanted_workers && self.add_worker(&mut st) {}
        if st.workers == 0 {
            // No thread at all: look here, as protector did before it had workers.
            while let Some(task) = st.queue.pop_front() {
                let path = &task.batch.paths[task.index];
                st.in_flight(task.batch.ask).remove(path);
                let answer = answer(task.batch.ask, path, &task.batch.dirs);
                task.batch.put(task.index, answer);
            }
        }
        // One worker woken per look queued, not every idle one for each.
        for _ in 0..st.queue.len().min(st.idle) {
            self.pool.work.notify_one();
        }
    }

    /// `batch`'s answers, as many as came `within`; one more worker whenever none came for
    /// [`NO_PROGRESS`] (every worker may be stuck on a dead mount).
    fn wait(&self, batch: &Batch, within: Duration) -> Vec<Option<Answer>> {
        let deadline = Instant::now() + within;
        let mut answers = batch.answers();
        let mut seen = answers.count;
        while answers.count < answers.wanted {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let (guard, wait) = batch
                .all_in
                .wait_timeout(answers, NO_PROGRESS.min(deadline - now))
                .unwrap_or_else(|p| p.into_inner());
            answers = guard;
            if wait.timed_out() && answers.count == seen {
                drop(answers);
                let mut st = self.pool.lock();
                if !st.queue.is_empty() && st.idle == 0 && self.add_worker(&mut st) {
                    self.pool.work.notify_one();
                }
                drop(st);
                answers = batch.answers();
            }
            seen = answers.count;
        }
        answers.open = false;
        std::mem::take(&mut answers.got)
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
        let Task { batch, index } = task;
        let path = &batch.paths[index];
        let answer = answer(batch.ask, path, &batch.dirs);
        pool.lock().in_flight(batch.ask).remove(path.as_path());
        // The asker may have stopped waiting: then the answer is simply dropped.
        batch.put(index, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Observation;

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

//! Looking at heartbeat files so that no file can hold anything up. A `stat` on a dead NFS or
//! FUSE mount may never return; if the loop made it itself, every target, the systemd
//! watchdog and shutdown would wait with it. So each look runs on a worker thread and the
//! loop waits for it at most a short budget (a quarter of the target's timeout, 200 ms to 5 s):
//! a look past it counts as "no answer", which is no heartbeat. At most one look per file is
//! in flight: while an earlier one has not returned, the file is "no answer" at once, without
//! waiting again. A stuck worker is left behind (never joined); new workers are made while
//! others are stuck, up to a bound, and idle ones end after a minute.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use super::effects::{Look, Looker};
use crate::heartbeat;
use crate::schedule::Observation;

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
    index: usize,
    reply: mpsc::Sender<(usize, Look)>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    workers: usize,
    idle: usize,
    /// Files with a look queued or under way.
    in_flight: HashSet<PathBuf>,
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
        let (tx, rx) = mpsc::channel();
        let mut out: Vec<Option<Look>> = vec![None; paths.len()];
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
                if st.in_flight.contains(*path) {
                    out[index] = Some(no_answer());
                    continue;
                }
                st.in_flight.insert(path.to_path_buf());
                st.queue.push_back(Task {
                    path: path.to_path_buf(),
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
                    st.in_flight.remove(&task.path);
                    out[task.index] = Some(heartbeat::observe(&task.path));
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
                Ok((index, look)) => {
                    out[index] = Some(look);
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
        out.into_iter()
            .map(|l| l.unwrap_or_else(no_answer))
            .collect()
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
        let look = heartbeat::observe(&task.path);
        pool.lock().in_flight.remove(&task.path);
        // The caller may have stopped waiting: then the answer is simply dropped.
        let _ = task.reply.send((task.index, look));
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

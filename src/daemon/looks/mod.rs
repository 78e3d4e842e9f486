//! Looking at heartbeat files so that no file can hold anything up. A `stat` on a dead NFS or
//! FUSE mount may never return; if the loop made it itself, every target, the systemd
//! watchdog and shutdown would wait with it. So each look runs on a worker thread and the
//! loop waits for it at most a short budget (a quarter of the target's timeout, 200 ms to 5 s):
//! a look past it counts as "no answer", which is no heartbeat. A file whose look had not
//! returned when its asker stopped waiting is "no answer" at once in later batches, without
//! waiting again, until that look returns. A stuck worker is left behind (never joined); new
//! workers are made while others are stuck, up to a bound, and idle ones end after a minute.
//! The same workers tell what to warn about a heartbeat's place ([`Place`]).
//!
//! Workers take a batch's files one at a time from a counter of the batch and put each
//! answer in its own place: 100,000 looks take no lock of the pool's (a batch that also asks
//! where each file is shares its directories' facts), and a stuck look holds up its own file
//! only.
//!
//! A thread stuck in the kernel keeps its process from ending, even on SIGKILL: on Linux the
//! workers therefore run in a helper process (`helper.rs`), and protector itself never
//! enters a heartbeat's filesystem.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::effects::{Look, Looker, Place};

mod answer;
#[cfg(target_os = "linux")]
pub(crate) mod helper;
#[cfg(target_os = "linux")]
pub(crate) mod remote;
#[cfg(target_os = "linux")]
mod wire;

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

/// How a file is looked at: [`answer`], but for tests of the pool itself.
type Answering = fn(Ask, &Path, &Dirs) -> Answer;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One [`FileLooker::ask`]: its files, those to look at, and their answers as they come.
/// The asker is woken when the last one comes (or to see whether any came), not at each.
struct Batch {
    id: u64,
    ask: Ask,
    paths: Vec<PathBuf>,
    dirs: Dirs,
    answering: Answering,
    /// Where in `paths` to look: every file but those still under way for an earlier batch.
    todo: Vec<usize>,
    /// The next place in `todo` a worker takes.
    next: AtomicUsize,
    got: Vec<Mutex<Option<Answer>>>,
    /// Answers in.
    count: AtomicUsize,
    /// The asker has stopped waiting.
    closed: AtomicBool,
    waiting: Mutex<()>,
    all_in: Condvar,
}

impl Batch {
    /// A file to look at (its place in `paths`), for one worker alone.
    fn take(&self) -> Option<usize> {
        let at = self.next.fetch_add(1, Ordering::Relaxed);
        self.todo.get(at).copied()
    }

    /// Every file of it is taken (or it is closed).
    fn taken(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.todo.len()
    }

    /// Looks at the file at `index` and puts its answer in; true when the asker had stopped
    /// waiting by then (the file is in the pool's `late` list, for the looker to take out).
    fn look(&self, index: usize) -> bool {
        let answer = (self.answering)(self.ask, &self.paths[index], &self.dirs);
        *lock(&self.got[index]) = Some(answer);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.todo.len() {
            let _waiting = lock(&self.waiting);
            self.all_in.notify_one();
        }
        self.closed.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct State {
    /// Batches with files no worker has taken yet.
    queue: VecDeque<Arc<Batch>>,
    workers: usize,
    idle: usize,
    next_batch: u64,
    /// By question, the files whose look had not returned when their asker stopped waiting,
    /// each with its batch: asked again, they are not answered until it returns.
    late: [HashMap<PathBuf, u64>; 2],
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
        lock(&self.state)
    }

    /// The look at `batch`'s file at `index` returned after its asker stopped waiting.
    fn returned_late(&self, batch: &Batch, index: usize) {
        let late = &mut self.lock().late[batch.ask as usize];
        if late.get(&batch.paths[index]) == Some(&batch.id) {
            late.remove(&batch.paths[index]);
        }
    }
}

/// The production [`Looker`].
pub(super) struct FileLooker {
    pool: Arc<Pool>,
    answering: Answering,
}

impl Default for FileLooker {
    fn default() -> FileLooker {
        FileLooker {
            pool: Arc::default(),
            answering: answer,
        }
    }
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
            .spawn(move || {
                // A look is part of a judgement: ahead of commands, as the scheduler thread.
                crate::platform::favour_this_thread();
                work(&pool)
            });
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
        let batch = self.queue(ask, unique);
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

    /// Queues a batch of `paths` (those still under way for an earlier batch are left out:
    /// they are not answered); looks here when there is no worker at all.
    fn queue(&self, ask: Ask, paths: Vec<PathBuf>) -> Arc<Batch> {
        let mut st = self.pool.lock();
        let late = &st.late[ask as usize];
        let todo: Vec<usize> = (0..paths.len())
            .filter(|&i| late.is_empty() || !late.contains_key(&paths[i]))
            .collect();
        let batch = Arc::new(Batch {
            id: st.next_batch,
            ask,
            got: (0..paths.len()).map(|_| Mutex::new(None)).collect(),
            paths,
            dirs: Dirs::default(),
            answering: self.answering,
            todo,
            next: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            waiting: Mutex::new(()),
            all_in: Condvar::new(),
        });
        st.next_batch += 1;
        if batch.todo.is_empty() {
            return batch;
        }
        st.queue.push_back(batch.clone());
        let busy = st.workers - st.idle.min(st.workers);
        let wanted_workers = READY_WORKERS.min(busy + batch.todo.len());
        while st.workers < wanted_workers && self.add_worker(&mut st) {}
        if st.workers == 0 {
            // No thread at all: look here, as protector did before it had workers.
            st.queue.pop_back();
            drop(st);
            while let Some(index) = batch.take() {
                batch.look(index);
            }
            return batch;
        }
        // One worker woken per file, not every idle one for each.
        for _ in 0..batch.todo.len().min(st.idle) {
            self.pool.work.notify_one();
        }
        batch
    }

    /// `batch`'s answers, as many as came `within`; one more worker whenever none came for
    /// [`NO_PROGRESS`] (every worker may be stuck on a dead mount). Files no worker took by
    /// then are not looked at; those under way go on the `late` list.
    fn wait(&self, batch: &Batch, within: Duration) -> Vec<Option<Answer>> {
        let deadline = Instant::now() + within;
        let count = || batch.count.load(Ordering::Acquire);
        let mut waiting = lock(&batch.waiting);
        let mut seen = count();
        while count() < batch.todo.len() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let (guard, wait) = batch
                .all_in
                .wait_timeout(waiting, NO_PROGRESS.min(deadline - now))
                .unwrap_or_else(|p| p.into_inner());
            waiting = guard;
            if wait.timed_out() && count() == seen {
                drop(waiting);
                let mut st = self.pool.lock();
                if !batch.taken() && st.idle == 0 && self.add_worker(&mut st) {
                    self.pool.work.notify_one();
                }
                drop(st);
                waiting = lock(&batch.waiting);
            }
            seen = count();
        }
        drop(waiting);
        // Closed under the pool's lock: a look returning now finds its file on `late` (see
        // `Pool::returned_late`), never before it is put there.
        let mut st = self.pool.lock();
        batch.closed.store(true, Ordering::SeqCst);
        let taken = batch
            .next
            .swap(usize::MAX / 2, Ordering::SeqCst)
            .min(batch.todo.len());
        let got: Vec<Option<Answer>> = batch.got.iter().map(|slot| lock(slot).take()).collect();
        for &index in &batch.todo[..taken] {
            if got[index].is_none() {
                let path = batch.paths[index].clone();
                st.late[batch.ask as usize].insert(path, batch.id);
            }
        }
        st.queue.retain(|queued| queued.id != batch.id);
        got
    }
}

/// A worker: looks at the files of queued batches until it has been idle for [`IDLE_END`].
fn work(pool: &Pool) {
    loop {
        let batch = {
            let mut st = pool.lock();
            loop {
                while st.queue.front().is_some_and(|b| b.taken()) {
                    st.queue.pop_front();
                }
                if let Some(batch) = st.queue.front() {
                    break batch.clone();
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
        while let Some(index) = batch.take() {
            if batch.look(index) {
                pool.returned_late(&batch, index);
            }
        }
    }
}

#[cfg(test)]
mod tests;

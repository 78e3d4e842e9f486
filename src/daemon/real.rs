//! The production effects ([`Effects::real`]): the system clocks, heartbeat looks on
//! workers with a deadline (`looks/`, in a helper process on Linux), commands started by a
//! launcher thread and each waited for on a thread of its own (`launcher.rs`), a thread per
//! dependency check and per config load.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::effects::{Checker, Clock, Effects, LoadResult, Loaded, Loader, Looker, Probe, Verdict};
use super::panic_message;
use crate::config::ConfigError;
use crate::schedule::Now;

impl Effects {
    /// The system clocks, `stat` on worker threads with a deadline (`looks.rs`), and
    /// commands started by a launcher thread, each waited for on a thread of its own.
    pub fn real() -> Effects {
        Effects {
            clock: Box::new(SystemClock),
            looker: real_looker(),
            runner: Box::new(super::launcher::Launcher::start()),
            checker: Box::new(ThreadChecker),
            loader: Box::new(ThreadLoader),
            seed: crate::fsutil::random(),
        }
    }
}

/// A helper process's workers look at heartbeats (Linux, when enabled), else this process's.
fn real_looker() -> Box<dyn Looker> {
    #[cfg(target_os = "linux")]
    if let Some(helper) = super::looks::remote::looker() {
        return Box::new(helper);
    }
    Box::new(super::looks::FileLooker::default())
}

/// A thread per load (reloads are rare and one at a time); if none can be made, the load
/// runs on the caller's thread, as it did before loads had threads of their own.
struct ThreadLoader;

impl Loader for ThreadLoader {
    fn load(&self, path: PathBuf, done: Loaded) {
        let work = std::sync::Arc::new(std::sync::Mutex::new(Some((path, done))));
        let theirs = work.clone();
        let take = |w: &std::sync::Mutex<Option<(PathBuf, Loaded)>>| {
            w.lock().unwrap_or_else(|e| e.into_inner()).take()
        };
        let spawned = std::thread::Builder::new()
            .name("protector-load".into())
            .spawn(move || {
                if let Some((path, done)) = take(&theirs) {
                    done(load_contained(&path));
                }
            });
        if let Err(e) = spawned {
            warn!(event = "load_thread_failed", reason = %e, "cannot start a thread to read the config; reading it on the loop's thread");
            if let Some((path, done)) = take(&work) {
                done(load_contained(&path));
            }
        }
    }
}

/// `config::load_text` for the host, with a panic (a bug) turned into a problem.
pub(crate) fn load_contained(path: &Path) -> LoadResult {
    std::panic::catch_unwind(|| crate::config::load_text(path, crate::config::Os::host()))
        .unwrap_or_else(|p| {
            Err(ConfigError::one(
                &path.display().to_string(),
                format!("internal error: {}", panic_message(&*p)),
                None,
            ))
        })
}

/// A thread per check, running `depends::check` (itself bounded by `check_timeout`).
struct ThreadChecker;

impl Checker for ThreadChecker {
    fn check(&self, probe: Probe, verdict: Verdict) {
        let target = probe.target.clone();
        let made = std::thread::Builder::new()
            .name("protector-check".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::depends::check(&probe.depends, &probe.env)
                }))
                .unwrap_or_else(|p| crate::depends::Verdict {
                    up: false,
                    detail: format!("internal error: {}", panic_message(&*p)),
                });
                verdict(v);
            });
        if let Err(e) = made {
            warn!(target = %target, event = "dependency_check_failed", reason = %e, "cannot start a thread to check the dependencies; counted as no answer");
        }
    }
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now::read()
    }
}

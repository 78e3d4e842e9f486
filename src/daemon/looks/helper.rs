//! Looks from a helper process (Linux). A thread stuck in the kernel on a filesystem that
//! never answers (a dead NFS server, a hung FUSE daemon) cannot be ended, and no process that
//! has one can be reaped, SIGKILL included: with its looks on its own threads, protector
//! stopped judging nothing, but could never exit, so `systemctl stop` and `restart` hung and
//! no new protector could start. So the workers run in `protector __look-helper`, a child
//! that dies with protector (`PR_SET_PDEATHSIG`) and ends when its input does; protector
//! itself never enters a heartbeat's filesystem and exits on SIGTERM at once, whatever the
//! helper is stuck in.
//!
//! One JSON line per batch each way: `{batch, ask, within_ms, paths}` in, `{batch, answers}`
//! out, on pipes; a writer thread and a reader thread stand between them and the loop, so
//! the loop never blocks on a pipe either. The helper answers every batch within its budget
//! (its own workers leave stuck looks behind, as in-process ones did); one that does not
//! answer within the budget and a second is stuck itself: it is killed (left to the kernel
//! if it cannot die), that batch is looked at from protector's own workers, and a new helper
//! is started for the next one. After three failures within ten minutes, protector looks
//! from its own workers until the ten minutes are over: looking goes on whatever happens.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{Answer, Ask, FileLooker, Look, Looker, Place, looks_of, places_of};

/// The word `protector` understands as "answer looks on stdin and stdout".
pub const HELPER_WORD: &str = "__look-helper";

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

/// Most bytes of one answer line read (10,000 looks take about 2 MB).
const MAX_LINE: u64 = 64 * 1024 * 1024;

/// A path as sent: text when it is UTF-8 (every path of a config is), its bytes otherwise.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum WirePath {
    Text(String),
    Bytes(Vec<u8>),
}

impl WirePath {
    fn of(path: &Path) -> WirePath {
        use std::os::unix::ffi::OsStrExt;
        match path.to_str() {
            Some(text) => WirePath::Text(text.to_string()),
            None => WirePath::Bytes(path.as_os_str().as_bytes().to_vec()),
        }
    }

    fn into_path(self) -> PathBuf {
        use std::os::unix::ffi::OsStringExt;
        match self {
            WirePath::Text(text) => PathBuf::from(text),
            WirePath::Bytes(bytes) => PathBuf::from(std::ffi::OsString::from_vec(bytes)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    batch: u64,
    ask: Ask,
    within_ms: u64,
    paths: Vec<WirePath>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    batch: u64,
    answers: Vec<Option<Answer>>,
}

/// `protector __look-helper`: answers each request line of `input` on `output`, until
/// `input` ends.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let workers = FileLooker::default();
    for line in input.lines() {
        let request: Request = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        let paths: Vec<PathBuf> = request.paths.into_iter().map(WirePath::into_path).collect();
        let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let within = Duration::from_millis(request.within_ms);
        let reply = Reply {
            batch: request.batch,
            answers: workers.ask(&paths, request.ask, within),
        };
        serde_json::to_writer(&mut output, &reply).map_err(std::io::Error::other)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// The main of `protector __look-helper`; its exit status.
pub fn helper_main() -> u8 {
    // Its name in `ps` and `top` (run as /proc/self/exe, it would be "exe").
    // SAFETY: a NUL-terminated name of at most 16 bytes; prctl reads nothing else.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"protector-look".as_ptr()) };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match serve(stdin, std::io::BufWriter::new(stdout)) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// A running helper, and the threads between it and the loop.
struct Helper {
    pid: u32,
    requests: mpsc::Sender<Vec<u8>>,
    replies: mpsc::Receiver<Reply>,
}

impl Helper {
    fn start(program: &Path) -> std::io::Result<Helper> {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        let mut command = Command::new(program);
        command
            .arg0("protector")
            .arg(HELPER_WORD)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let (Some(mut input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("no pipes to the look helper"));
        };
        let pid = child.id();
        let (requests, to_write) = mpsc::channel::<Vec<u8>>();
        let (to_read, replies) = mpsc::channel();
        let thread = |name: &str| {
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(64 * 1024)
        };
        let spawned = thread("protector-look-in")
            .spawn(move || {
                for frame in to_write {
                    if input.write_all(&frame).is_err() {
                        break;
                    }
                }
            })
            .and_then(|_| {
                thread("protector-look-out").spawn(move || {
                    let mut output = BufReader::new(output);
                    loop {
                        let mut line = String::new();
                        match Read::by_ref(&mut output)
                            .take(MAX_LINE)
                            .read_line(&mut line)
                        {
                            Ok(n) if n > 0 && line.ends_with('\n') => {}
                            _ => break,
                        }
                        let Ok(reply) = serde_json::from_str(&line) else {
                            break;
                        };
                        if to_read.send(reply).is_err() {
                            break;
                        }
                    }
                })
            })
            .and_then(|_| thread("protector-look-reap").spawn(move || reap(child)));
        match spawned {
            Ok(_) => Ok(Helper {
                pid,
                requests,
                replies,
            }),
            Err(e) => {
                kill(pid);
                Err(e)
            }
        }
    }
}

/// Waits for an ended helper, so it never lingers as a zombie (a helper stuck in the kernel
/// keeps this thread waiting, which holds nothing up: waiting is not being stuck).
fn reap(mut child: Child) {
    let _ = child.wait();
}

fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill touches no memory; the pid is our child's (reaped only by `reap`).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

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

    fn places(&self, paths: &[&Path], within: Duration) -> Vec<Place> {
        places_of(self.ask(paths, Ask::Place, within))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Observation;

    #[test]
    fn a_helper_answers_each_batch_with_its_looks_and_places() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        std::fs::write(&present, "").unwrap();
        let odd = std::path::PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                b"/nowhere/\xff".to_vec(),
            ),
        );
        let ask = |batch, ask, paths: &[&Path]| {
            let request = Request {
                batch,
                ask,
                within_ms: 5000,
                paths: paths.iter().map(|p| WirePath::of(p)).collect(),
            };
            let mut line = serde_json::to_string(&request).unwrap();
            line.push('\n');
            line
        };
        let input = ask(7, Ask::Look, &[&present, &odd]) + &ask(8, Ask::Place, &[&odd]);
        let mut output = Vec::new();
        serve(input.as_bytes(), &mut output).unwrap();
        let replies: Vec<Reply> = output
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].batch, 7);
        let looks = looks_of(replies[0].answers.clone());
        assert!(matches!(looks[0].0, Observation::Present(_)), "{looks:?}");
        assert_eq!(
            looks[1].0,
            Observation::Absent,
            "a path not in UTF-8 goes through"
        );
        let places = places_of(replies[1].answers.clone());
        assert_eq!(places[0].missing_dir.as_deref(), Some("/nowhere"));
    }

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

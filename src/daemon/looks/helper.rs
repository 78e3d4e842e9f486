//! Looks from a helper process (Linux). A thread stuck in the kernel on a filesystem that
//! never answers (a dead NFS server, a hung FUSE daemon) cannot be ended, and no process that
//! has one can be reaped, SIGKILL included: with its looks on its own threads, protector
//! stopped judging nothing, but could never exit, so `systemctl stop` and `restart` hung and
//! no new protector could start. So the workers run in `protector __look-helper`, a child
//! that dies with protector (`PR_SET_PDEATHSIG`) and ends when its input does; protector
//! itself never enters a heartbeat's filesystem and exits on SIGTERM at once, whatever the
//! helper is stuck in.
//!
//! One JSON line per batch each way (`wire.rs`), on pipes; a writer thread and a reader thread stand between them and the loop, so
//! the loop never blocks on a pipe either. The helper answers every batch within its budget
//! (its own workers leave stuck looks behind, as in-process ones did); what protector does
//! with a helper that does not is in `remote.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::FileLooker;
use super::wire::{Reply, Request, WirePath};

/// The word `protector` understands as "answer looks on stdin and stdout".
pub const HELPER_WORD: &str = "__look-helper";

/// Most bytes of one answer line read (100,000 looks take about 7 MB).
const MAX_LINE: u64 = 64 * 1024 * 1024;

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
        output.write_all(&reply.into_line().map_err(std::io::Error::other)?)?;
        output.flush()?;
    }
    Ok(())
}

/// The main of `protector __look-helper`; its exit status.
pub fn helper_main() -> u8 {
    // Its name in `ps` and `top` (run as /proc/self/exe, it would be "exe").
    // SAFETY: a NUL-terminated name of at most 16 bytes; prctl reads nothing else.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"protector-look".as_ptr()) };
    // Each look is part of a judgement: the helper runs ahead of commands as the scheduler
    // thread does (its workers favour themselves: `FileLooker::add_worker`).
    crate::platform::favour_this_thread();
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match serve(stdin, std::io::BufWriter::new(stdout)) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// A running helper, and the threads between it and the loop.
pub(super) struct Helper {
    pub pid: u32,
    pub requests: mpsc::Sender<Vec<u8>>,
    pub replies: mpsc::Receiver<Reply>,
}

impl Helper {
    pub(super) fn start(program: &Path) -> std::io::Result<Helper> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        command
            .arg0("protector")
            .arg(HELPER_WORD)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        crate::platform::die_with_protector(&mut command);
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
                // Both ends of the pipes carry judgements: ahead of commands.
                crate::platform::favour_this_thread();
                for frame in to_write {
                    if input.write_all(&frame).is_err() {
                        break;
                    }
                }
            })
            .and_then(|_| {
                thread("protector-look-out").spawn(move || {
                    crate::platform::favour_this_thread();
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
                        let Some(reply) = Reply::from_line(&line) else {
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

pub(super) fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill touches no memory; the pid is our child's (reaped only by `reap`).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Ask, looks_of, placed_of};
    use super::*;
    use crate::schedule::Observation;

    /// Request lines for `batches` (each its number, question and paths).
    fn requests(batches: &[(u64, Ask, &[&Path])]) -> String {
        let mut lines = String::new();
        for (batch, ask, paths) in batches {
            let request = Request {
                batch: *batch,
                ask: *ask,
                within_ms: 5000,
                paths: paths.iter().map(|p| WirePath::of(p)).collect(),
            };
            lines += &serde_json::to_string(&request).unwrap();
            lines.push('\n');
        }
        lines
    }

    /// The replies `serve` writes to `input`.
    fn served(input: &str) -> Vec<Reply> {
        let mut output = Vec::new();
        serve(input.as_bytes(), &mut output).unwrap();
        String::from_utf8(output)
            .unwrap()
            .lines()
            .map(|l| Reply::from_line(l).unwrap())
            .collect()
    }

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
        let replies = served(&requests(&[
            (7, Ask::Look, &[&present, &odd]),
            (8, Ask::LookAndPlace, &[&odd]),
        ]));
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].batch, 7);
        let looks = looks_of(replies[0].answers.clone());
        assert!(matches!(looks[0].0, Observation::Present(_)), "{looks:?}");
        assert_eq!(
            looks[1].0,
            Observation::Absent,
            "a path not in UTF-8 goes through"
        );
        let placed = placed_of(replies[1].answers.clone());
        assert_eq!(placed[0].0.0, Observation::Absent);
        assert_eq!(placed[0].1.missing_dir.as_deref(), Some("/nowhere"));
    }

    #[test]
    fn a_heartbeat_dated_before_1970_is_answered_like_any_other() {
        // Whoever may write a heartbeat may set its time (`touch -d 1960-01-01`); a reply
        // that could not say such a time ended the helper at every look.
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let file = std::fs::File::create(&old).unwrap();
        let then = std::time::UNIX_EPOCH - Duration::from_secs(315_619_200);
        file.set_modified(then).unwrap();
        let replies = served(&requests(&[
            (1, Ask::Look, &[&old]),
            (2, Ask::Look, &[&old]),
        ]));
        assert_eq!(replies.len(), 2, "the helper went on");
        let looks = looks_of(replies[1].answers.clone());
        match &looks[0].0 {
            Observation::Present(print) => assert_eq!(print.mtime, Some(then)),
            other => panic!("{other:?}"),
        }
    }
}

//! Commands started through process-wrap where protector does not start them itself
//! (Windows; Unix other than Linux, `spawn_linux.rs`): each in the Job Object or process group
//! [`contain`](super::contain) puts it in, tied to protector's life where the OS can.

use std::io;
use std::process::{Command, ExitStatus, Stdio};

use process_wrap::std::ChildWrapper;

use super::{Tie, contain, tie};

/// The read end of a command's stdout or stderr.
#[cfg(unix)]
pub type Pipe = std::fs::File;
#[cfg(windows)]
pub type Pipe = Box<dyn io::Read + Send>;

/// A command started by [`start`]. Dropped before it ended (nobody will wait for it), its
/// tree is killed and it is waited for.
pub struct Running {
    child: Box<dyn ChildWrapper>,
    tie: Option<Tie>,
}

/// Starts `cmd` with stdin on the null device and stdout and stderr on pipes, contained,
/// and tied to protector's life where the OS can.
pub fn start(cmd: Command) -> io::Result<Running> {
    let mut contained = contain(cmd);
    contained
        .command_mut()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = contained.spawn()?;
    let tie = tie(&*child);
    Ok(Running { child, tie })
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The read ends of its stdout and stderr (once).
    pub fn take_output(&mut self) -> (Option<Pipe>, Option<Pipe>) {
        let out = self.child.stdout().take().map(pipe);
        let err = self.child.stderr().take().map(pipe);
        (out, err)
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Kills its whole tree.
    pub fn kill_tree(&mut self) -> io::Result<()> {
        self.child.start_kill()
    }

    /// Once it has ended: what it left running on purpose no longer dies with protector.
    pub fn untie(&mut self) {
        if let Some(tie) = self.tie.take() {
            tie.release();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(unix)]
fn pipe(end: impl Into<std::os::fd::OwnedFd>) -> Pipe {
    std::fs::File::from(end.into())
}

#[cfg(windows)]
fn pipe(end: impl io::Read + Send + 'static) -> Pipe {
    Box::new(end)
}

//! Commands started without copying protector (Linux). A command must die with protector
//! (`PR_SET_PDEATHSIG`), which only the new process can ask for, between its creation and its
//! exec. The standard library does that only by forking the whole daemon (its page tables
//! copied; forks of one process are taken one at a time), and an exec of protector itself as
//! a first step, which an earlier version used, cost 1.1 ms of CPU a command. So a command
//! starts here the way `posix_spawn` starts one, with the one step `posix_spawn` lacks: a
//! clone that shares protector's memory and holds the calling thread until the new process
//! has executed its program or given up (`CLONE_VM | CLONE_VFORK`). The new process runs a
//! few system calls on a stack of its own: signal handlers back to their defaults, a process
//! group of its own, the parent-death signal (and a check that its parent is still
//! protector), its stdio, an empty signal mask, then `execve` of each place the program may
//! be, as `execvp` tries them. Everything it reads (paths, arguments, environment) is made
//! beforehand; it allocates nothing and takes no lock. Why it could not execute comes back
//! on a pipe closed by a successful exec, which works as well where the clone turns into a
//! plain fork (qemu-user runs the aarch64 build so in `.ci/dist`).
//!
//! No crate starts a process this way: `std` and process-wrap fork whenever a step must run
//! in the child, and `nix` and `rustix` offer the clone, not the steps around it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString, c_char, c_int, c_void};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

/// The read end of a command's stdout or stderr.
pub type Pipe = File;

/// Bytes of stack the new process runs on until its exec (a few system calls need far less).
const CHILD_STACK: usize = 32 * 1024;

/// Where programs are looked for when the command's environment has no PATH (as the C
/// library's `execvp` does).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// A command started by [`start`]: the leader of a process group of its own, which dies
/// with the thread that started it. Dropped before it was reaped (nobody will wait for it),
/// its tree is killed and it is reaped.
#[derive(Debug)]
pub struct Running {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
}

/// Starts `cmd` (its program, arguments, environment and directory) with stdin on
/// `/dev/null` and stdout and stderr on pipes, in a process group of its own, tied to
/// protector's life. An error says why it could not be executed (not found, not
/// executable, no memory).
pub fn start(cmd: Command) -> io::Result<Running> {
    let plan = Plan::of(&cmd)?;
    let null = OwnedFd::from(File::open("/dev/null")?);
    let (out_read, out_write) = io::pipe()?;
    let (err_read, err_write) = io::pipe()?;
    let stdio = [
        above_stdio(null)?,
        above_stdio(out_write.into())?,
        above_stdio(err_write.into())?,
    ];
    let pid = plan.launch(&stdio)?;
    Ok(Running {
        pid,
        status: None,
        stdout: Some(File::from(OwnedFd::from(out_read))),
        stderr: Some(File::from(OwnedFd::from(err_read))),
    })
}

impl Running {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// The read ends of its stdout and stderr (once).
    pub fn take_output(&mut self) -> (Option<Pipe>, Option<Pipe>) {
        (self.stdout.take(), self.stderr.take())
    }

    /// Its exit status, once it has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.reap(0)? {
                return Ok(status);
            }
        }
    }

    /// SIGKILL to its whole process group, while its leader is not yet reaped (so the
    /// group's number cannot be another's).
    pub fn kill_tree(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: kill has no memory effects; -pid names the group this process leads.
        if unsafe { libc::kill(-self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Nothing to let go on Linux: the parent-death signal ends with the leader.
    pub fn untie(&mut self) {}

    fn reap(&mut self, flags: c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw: c_int = 0;
        // SAFETY: waitpid writes the status into `raw`, which outlives the call.
        match unsafe { libc::waitpid(self.pid, &mut raw, flags) } {
            0 => Ok(None),
            -1 => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(e),
                }
            }
            _ => {
                self.status = Some(ExitStatus::from_raw(raw));
                Ok(self.status)
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill_tree();
            let _ = self.wait();
        }
    }
}

/// Moves `fd` to a number above 2 when it is one of 0, 1 and 2, so that putting the
/// command's stdio in place never overwrites another of them.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, which the OwnedFd then owns alone.
    match unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) } {
        -1 => Err(io::Error::last_os_error()),
        moved => Ok(unsafe { OwnedFd::from_raw_fd(moved) }),
    }
}

/// What the new process needs, made before it exists.
struct Plan {
    /// Where the program may be: its own path when it names one, else each directory of
    /// the command's PATH joined with it, in order.
    places: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    dir: Option<CString>,
}

impl Plan {
    fn of(cmd: &Command) -> io::Result<Plan> {
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => env.insert(key.to_owned(), value.to_owned()),
                None => env.remove(key),
            };
        }
        let program = cmd.get_program().as_bytes();
        let places = if program.contains(&b'/') {
            vec![c_string(program)?]
        } else {
            let path = env.get(OsStr::new("PATH"));
            let path = path.map_or(DEFAULT_PATH, |p| p.as_bytes());
            path.split(|b| *b == b':')
                .map(|dir| match dir {
                    // An empty entry is the current directory.
                    b"" => c_string(program),
                    _ => c_string(&[dir, b"/", program].concat()),
                })
                .collect::<io::Result<_>>()?
        };
        let argv = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| c_string(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| c_string(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<io::Result<_>>()?;
        let dir = cmd
            .get_current_dir()
            .map(|d| c_string(d.as_os_str().as_bytes()))
            .transpose()?;
        Ok(Plan {
            places,
            argv,
            envp,
            dir,
        })
    }

    /// Starts the new process with `stdio` as its 0, 1 and 2; its pid once it has executed
    /// its program, or why it could not.
    fn launch(&self, stdio: &[OwnedFd; 3]) -> io::Result<libc::pid_t> {
        let list = |strings: &[CString]| -> Vec<*const c_char> {
            let ends = std::iter::once(std::ptr::null());
            strings.iter().map(|s| s.as_ptr()).chain(ends).collect()
        };
        let (places, argv, envp) = (list(&self.places), list(&self.argv), list(&self.envp));
        let (said_read, said_write) = io::pipe()?;
        let said_write = above_stdio(said_write.into())?;
        let job = Job {
            places: places.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            dir: self.dir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
            stdio: [0, 1, 2].map(|i| stdio[i].as_raw_fd()),
            said: said_write.as_raw_fd(),
            parent: std::process::id() as libc::pid_t,
        };
        let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
        // The top of the stack (it grows down), aligned as every ABI asks.
        let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
        let everything = !0u64;
        let mut mask = 0u64;
        // Every signal is blocked while the new process shares this memory: a handler of
        // protector's must not run in it (it resets them before unblocking).
        set_signal_mask(&everything, Some(&mut mask));
        // SAFETY: `child` runs on `stack`, which outlives it (CLONE_VFORK holds this thread
        // until the new process has executed its program or exited), and reads only `job`
        // and what it points to, all alive here. SIGCHLD makes it an ordinary child.
        let pid = unsafe {
            libc::clone(
                child,
                top as *mut c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&job as *const Job).cast_mut().cast(),
            )
        };
        let cloned = io::Error::last_os_error();
        set_signal_mask(&mask, None);
        drop(said_write);
        drop(stack);
        if pid == -1 {
            return Err(cloned);
        }
        // A successful exec closed the other end: nothing to read. Else the errno.
        let mut said = [0u8; 4];
        let mut from = File::from(OwnedFd::from(said_read));
        let failed = match from.read_exact(&mut said) {
            Ok(()) => Some(c_int::from_ne_bytes(said)),
            Err(_) => None,
        };
        match failed {
            None => Ok(pid),
            Some(errno) => {
                let mut raw = 0;
                // SAFETY: reaps the process that just failed (and exited), writing `raw`.
                while unsafe { libc::waitpid(pid, &mut raw, 0) } == -1
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in a command's program, arguments, environment or directory",
        )
    })
}

/// What [`child`] reads: raw pointers into a [`Plan`] and the lists made from it.
struct Job {
    /// NULL-terminated lists of NUL-terminated strings.
    places: *const *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    /// Where to change to; null: stay.
    dir: *const c_char,
    stdio: [RawFd; 3],
    /// The write end of the pipe that says why the exec failed.
    said: RawFd,
    parent: libc::pid_t,
}

/// The new process, until it becomes the command: only system calls, no allocation, no
/// lock, nothing that could panic. On failure it writes the errno on `said` and exits 127.
extern "C" fn child(job: *mut c_void) -> c_int {
    // SAFETY: `job` is the Job that `launch` passed, alive while this runs (CLONE_VFORK).
    unsafe {
        let job = &*job.cast::<Job>();
        let errno = become_the_command(job);
        let said = errno.to_ne_bytes();
        libc::write(job.said, said.as_ptr().cast(), said.len());
        libc::_exit(127)
    }
}

/// # Safety
/// Only in the new process [`launch`](Plan::launch) cloned, with every signal blocked.
unsafe fn become_the_command(job: &Job) -> c_int {
    // SAFETY: each call is a system call on values of `job`, whose pointers `launch` made.
    unsafe {
        default_signal_handlers();
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return errno();
        }
        // protector died before the line above: nothing would kill this one.
        if libc::getppid() != job.parent {
            return libc::ESRCH;
        }
        for (to, &fd) in (0..).zip(job.stdio.iter()) {
            if libc::dup2(fd, to) == -1 {
                return errno();
            }
        }
        if !job.dir.is_null() && libc::chdir(job.dir) != 0 {
            return errno();
        }
        set_signal_mask(&0, None);
        // As execvp: a place where the program is not, or may not be run, is passed over;
        // having found it somewhere but not allowed to run it is what is said.
        let (mut place, mut why, mut denied) = (job.places, libc::ENOENT, false);
        while !(*place).is_null() {
            libc::execve(*place, job.argv, job.envp);
            why = errno();
            match why {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return why,
            }
            place = place.add(1);
        }
        if denied { libc::EACCES } else { why }
    }
}

/// The kernel's `struct sigaction` (not the C library's): the handler first, room for the
/// flags, a restorer and the mask after it. Only "default" is written, only the handler read.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Every signal protector handles goes back to its default, as does SIGPIPE, which
/// protector ignores (the standard library's commands get it so too); other ignored
/// signals stay ignored, as an exec keeps them.
///
/// # Safety
/// Only in the new process, before its signal mask is emptied.
unsafe fn default_signal_handlers() {
    let default = KernelSigaction::default();
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut was = KernelSigaction::default();
        // SAFETY: rt_sigaction reads and writes the structures passed, sized for the kernel.
        unsafe {
            let asked = libc::syscall(
                libc::SYS_rt_sigaction,
                libc::c_long::from(signal),
                std::ptr::null::<KernelSigaction>(),
                &mut was as *mut KernelSigaction,
                8usize,
            );
            let ignored = was.handler == libc::SIG_IGN;
            let handled = was.handler != libc::SIG_DFL && !ignored;
            if asked == 0 && (handled || (ignored && signal == libc::SIGPIPE)) {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    libc::c_long::from(signal),
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
    }
}

/// This thread's signal mask (every signal the kernel has, the C library's own included),
/// the one before into `was`.
fn set_signal_mask(to: &u64, was: Option<&mut u64>) {
    let was = was.map_or(std::ptr::null_mut(), |w| w as *mut u64);
    // SAFETY: rt_sigprocmask reads `to` and writes `was`, both alive, 8 bytes each.
    unsafe {
        let how = libc::c_long::from(libc::SIG_SETMASK);
        libc::syscall(libc::SYS_rt_sigprocmask, how, to as *const u64, was, 8usize);
    }
}

fn errno() -> c_int {
    // SAFETY: the calling thread's errno (the new process shares its parent thread's, which
    // is held until it is done).
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests;

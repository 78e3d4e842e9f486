//! The threads that notice a lapse and decide what to do run ahead of what protector starts
//! (Unix; `priority_windows.rs` is the twin). In a burst of restarts the commands' new
//! processes (each an exec and a dynamic loader) filled both cores of a small machine, and
//! the scheduler thread waited its turn among them: with 100 targets stale at once, the last
//! was judged 40-120 ms after its deadline (docs/performance.md, "Sixth round").
//!
//! A favoured thread gets nice [`FAVOURED_NICE`], and what it starts afterwards (threads,
//! processes: commands, the look helper) starts at the default priority again
//! (`SCHED_RESET_ON_FORK`), so no command or restarted service ever runs with protector's
//! favour. Only a thread at the default priority is favoured: an operator who set protector's
//! nice or scheduling policy (systemd's `Nice=`, `CPUSchedulingPolicy=`, `nice(1)`) keeps
//! what they set, and without the right to raise a priority (not root) nothing changes.

/// The favoured threads' nice: a share of a core about nine times a default thread's
/// (measured on that burst: -5 left the scheduler thread 65-87 ms late; docs/performance.md).
#[cfg(target_os = "linux")]
pub const FAVOURED_NICE: i32 = -10;

/// Favours the calling thread (see the module's header); true when it now runs ahead.
pub fn favour_this_thread() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: these calls read and set the calling thread's scheduling, nothing else; the
    // parameter (a plain C struct, valid all zero) outlives the call that reads it.
    unsafe {
        // On Linux a nice and a policy are the calling thread's own (`who` 0). The policy is
        // asked of the kernel itself: musl's sched_getscheduler and sched_setscheduler only
        // say ENOSYS (POSIX means them for a whole process), and the packages are musl builds.
        let policy = libc::syscall(libc::SYS_sched_getscheduler, 0);
        if policy != libc::c_long::from(libc::SCHED_OTHER)
            || libc::getpriority(libc::PRIO_PROCESS, 0) != 0
        {
            return false;
        }
        // First what it starts, so that nothing it starts could inherit the favour. Priority
        // 0, the only one SCHED_OTHER takes (musl's struct has more fields, all 0).
        let param: libc::sched_param = std::mem::zeroed();
        let reset = libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK;
        if libc::syscall(libc::SYS_sched_setscheduler, 0, reset, &param) != 0 {
            return false;
        }
        libc::setpriority(libc::PRIO_PROCESS, 0, FAVOURED_NICE) == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice in a `/proc/.../stat` text (its 19th field).
    fn nice_in(stat: &str) -> i32 {
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    fn own_nice() -> i32 {
        // SAFETY: gettid reads nothing of ours.
        let tid = unsafe { libc::gettid() };
        nice_in(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap())
    }

    #[test]
    fn a_favoured_thread_runs_ahead_and_what_it_starts_at_the_default_priority() {
        std::thread::spawn(|| {
            let before = own_nice();
            // SAFETY: geteuid reads nothing of ours.
            let root = unsafe { libc::geteuid() } == 0;
            let favoured = favour_this_thread();
            assert_eq!(favoured, root && before == 0, "root: {root}, nice {before}");
            let now = own_nice();
            assert_eq!(now, if favoured { FAVOURED_NICE } else { before });
            // Favoured once: a second call leaves it so (it no longer runs at the default).
            assert!(!favour_this_thread());
            assert_eq!(own_nice(), now);

            let thread = std::thread::spawn(own_nice).join().unwrap();
            let out = std::process::Command::new("cat")
                .arg("/proc/self/stat")
                .output()
                .unwrap();
            let process = nice_in(&String::from_utf8_lossy(&out.stdout));
            assert_eq!((thread, process), (before, before), "favoured: {favoured}");
        })
        .join()
        .unwrap();
    }
}

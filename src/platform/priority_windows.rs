//! The threads that notice a lapse and decide what to do run ahead of what protector starts
//! (Windows; see `priority_unix.rs` for why). A thread's priority is its own: neither the
//! threads it makes nor the processes it starts inherit it, so a command runs at the
//! priority Windows gives any new process. Only a thread at the normal priority of a
//! process of the normal class is favoured: a priority an operator chose is kept.

use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, GetPriorityClass, GetThreadPriority,
    NORMAL_PRIORITY_CLASS, SetThreadPriority, THREAD_PRIORITY_ABOVE_NORMAL, THREAD_PRIORITY_NORMAL,
};

/// Favours the calling thread (above normal); true when it now runs ahead.
pub fn favour_this_thread() -> bool {
    // SAFETY: pseudo-handles of this process and thread, which need no closing; the calls
    // read and set their priorities only.
    unsafe {
        if GetPriorityClass(GetCurrentProcess()) != NORMAL_PRIORITY_CLASS
            || GetThreadPriority(GetCurrentThread()) != THREAD_PRIORITY_NORMAL
        {
            return false;
        }
        SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_ABOVE_NORMAL) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_priority() -> i32 {
        // SAFETY: as above.
        unsafe { GetThreadPriority(GetCurrentThread()) }
    }

    #[test]
    fn a_favoured_thread_runs_ahead_and_the_threads_it_makes_do_not() {
        std::thread::spawn(|| {
            assert!(favour_this_thread());
            assert_eq!(own_priority(), THREAD_PRIORITY_ABOVE_NORMAL);
            assert!(!favour_this_thread(), "favoured once");
            let theirs = std::thread::spawn(own_priority).join().unwrap();
            assert_eq!(theirs, THREAD_PRIORITY_NORMAL);
        })
        .join()
        .unwrap();
    }
}

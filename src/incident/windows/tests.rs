//! The process list read from the kernel's own layout (made-up lists), a child seen under its
//! parent, and a service that does not exist.

use super::*;

/// A made-up process: pid, parent, program, each thread's state and wait reason.
type MadeProcess<'a> = (u32, u32, &'a str, &'a [(u32, u32)]);

/// The kernel's list as it would write it of `processes` (pid, parent, program, each
/// thread's state and wait reason), each entry followed by its threads, then its name.
fn made_list(processes: &[MadeProcess]) -> Buffer {
    let mut buf = Buffer::new(64 * 1024);
    let base = buf.as_mut_ptr().cast::<u8>();
    let mut at = 0usize;
    for (n, &(pid, parent, name, threads)) in processes.iter().enumerate() {
        let threads_at = at + size_of::<SYSTEM_PROCESS_INFORMATION>();
        let name_at = threads_at + threads.len() * size_of::<SYSTEM_THREAD_INFORMATION>();
        let name: Vec<u16> = name.encode_utf16().collect();
        let next = (name_at + name.len() * 2).next_multiple_of(8);
        let mut p = SYSTEM_PROCESS_INFORMATION {
            NextEntryOffset: if n + 1 == processes.len() {
                0
            } else {
                (next - at) as u32
            },
            NumberOfThreads: threads.len() as u32,
            UniqueProcessId: pid as usize as _,
            Reserved2: parent as usize as _,
            HandleCount: 40 + pid,
            WorkingSetSize: 8 * 1024 * 1024,
            ..Default::default()
        };
        p.Reserved1[24..32].copy_from_slice(&filetime(std::time::SystemTime::now()).to_ne_bytes());
        // SAFETY: every write lies inside `buf` (64 KiB, far more than these need).
        unsafe {
            p.ImageName = UNICODE_STRING {
                Length: (name.len() * 2) as u16,
                MaximumLength: (name.len() * 2) as u16,
                Buffer: base.add(name_at).cast(),
            };
            std::ptr::write_unaligned(base.add(at).cast(), p);
            for (k, &(state, why)) in threads.iter().enumerate() {
                let t = SYSTEM_THREAD_INFORMATION {
                    ThreadState: state,
                    WaitReason: why,
                    ..Default::default()
                };
                let to = threads_at + k * size_of::<SYSTEM_THREAD_INFORMATION>();
                std::ptr::write_unaligned(base.add(to).cast(), t);
            }
            std::ptr::copy_nonoverlapping(
                name.as_ptr().cast::<u8>(),
                base.add(name_at),
                name.len() * 2,
            );
        }
        at = next;
    }
    buf
}

#[test]
fn the_kernels_list_is_read_with_each_processs_threads_states() {
    // A suspended salt-minion under its service host, one of its children waiting in a
    // read, one running; a truncated list ends the reading, never more.
    let buf = made_list(&[
        (4, 0, "System", &[(2, 0)]),
        (812, 600, "salt-minion.exe", &[(5, 5), (5, 12)]),
        (845, 812, "python.exe", &[(5, 6), (2, 0)]),
        (846, 812, "python.exe", &[(5, 15)]),
        (900, 1, "wine.exe", &[(0, 0)]),
    ]);
    let bytes = buf.bytes(usize::MAX);
    let all = entries(bytes);
    let seen: Vec<(u32, u32, String, String, String)> = all
        .iter()
        .map(|e| {
            let p = e.process();
            (e.pid, e.parent, e.name.clone(), p.state, p.wait)
        })
        .collect();
    let row = |pid, parent, name: &str, state: &str, wait: &str| {
        (
            pid,
            parent,
            name.to_string(),
            state.to_string(),
            wait.to_string(),
        )
    };
    assert_eq!(
        seen,
        [
            row(4, 0, "System", "running", ""),
            row(812, 600, "salt-minion.exe", "suspended", "Suspended"),
            row(845, 812, "python.exe", "running", "UserRequest"),
            row(846, 812, "python.exe", "waiting", "WrQueue"),
            row(900, 1, "wine.exe", "unknown", ""),
        ]
    );
    let minion = all[1].process();
    assert_eq!(
        (minion.threads, minion.descriptors, minion.resident_kib),
        (2, 852, 8192)
    );
    assert!(minion.age_secs.is_some_and(|a| a < 60), "{minion:?}");
    // Cut anywhere, the list gives the entries wholly inside and nothing else.
    for cut in [0, 100, 300, 700] {
        assert!(entries(&bytes[..cut]).len() < all.len());
    }
}

/// Guards a child process: killed and reaped however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_child_is_seen_under_its_parent_with_what_the_system_tells_of_it() {
    use std::net::{TcpListener, TcpStream};
    use std::os::windows::process::CommandExt;
    const CREATE_SUSPENDED: u32 = 0x4;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let _client = TcpStream::connect(to).unwrap();
    let child = Killed(
        std::process::Command::new("cmd")
            .args(["/c", "exit"])
            .creation_flags(CREATE_SUSPENDED)
            .spawn()
            .unwrap(),
    );
    let me = std::process::id();
    assert!(Windows.exists(me) && Windows.exists(child.0.id()));
    assert!(!Windows.exists(u32::MAX - 3));
    let seen = Windows.tree(&[me]);
    assert_eq!(seen[0].pid, me);
    let mine = &seen[0];
    assert!(
        mine.command.to_lowercase().contains("protector"),
        "{mine:?}"
    );
    assert!(mine.threads >= 1 && mine.descriptors >= 1, "{mine:?}");
    assert!(mine.age_secs.is_some_and(|a| a < 3600), "{mine:?}");
    let under = seen.iter().find(|p| p.pid == child.0.id());
    let under = under.unwrap_or_else(|| panic!("no {} under {me}: {seen:?}", child.0.id()));
    assert!(under.command.to_lowercase().contains("cmd"), "{under:?}");
    // The system's TCP table holds the listener (which process owns it, Wine does not say;
    // Windows does, read as `tcp_rows_are_read_as_windows_writes_them` shows).
    assert!(
        connections()
            .iter()
            .any(|(_, c)| c.state == "LISTEN" && c.local == to),
        "{:?}",
        connections()
    );
}

#[test]
fn a_service_that_does_not_exist_says_so() {
    let why = Windows.of_service("protector-no-such-service").unwrap_err();
    assert!(
        why.starts_with("service protector-no-such-service: "),
        "{why}"
    );
}

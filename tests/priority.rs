//! Priority: protector's scheduler thread, its launcher of commands and its look helper run
//! ahead of what they start, and every command runs at the priority protector was given
//! (Linux; the Windows twin is a unit test in `src/platform/priority_windows.rs`).
#![cfg(target_os = "linux")]

mod common;

use common::*;

/// The nice in a `/proc/.../stat` file (its 19th field).
fn nice_in(stat: &str) -> i32 {
    let text = std::fs::read_to_string(stat).unwrap();
    let after_name = &text[text.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(16).unwrap().parse().unwrap()
}

/// The ids of the threads of `pid` whose name begins with `name`.
fn threads_named(pid: u32, name: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.starts_with(name))
        })
        .collect()
}

/// What a protector started through `wrapper` (none: directly) runs at: its stop
/// command's nice, its scheduler thread's, its launcher thread's and each thread of its look
/// helper's; and the nice it was started with.
fn priorities_through(wrapper: &[&str]) -> (i32, i32, Vec<i32>, Vec<i32>) {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "protector.yaml",
        &format!(
            "targets:\n{}",
            target(
                "svc",
                "    timeout: 500ms\n    restart_grace: 1h\n    stop: [sh, -c, 'nice > stop-nice']\n"
            )
        ),
    );
    let p = sb.spawn_through(wrapper, &["--config", cfg.to_str().unwrap()], &[]);
    p.wait_command_events("command_finished", "stop", Some("svc"), 1);
    let stop: i32 = sb.lines("stop-nice")[0].parse().unwrap();
    let pid = p.pid();
    let scheduler = nice_in(&format!("/proc/{pid}/stat"));
    let launcher = threads_named(pid, "protector-launc")
        .iter()
        .map(|tid| nice_in(&format!("/proc/{pid}/task/{tid}/stat")))
        .collect();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let helper: u32 = children
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|n| n == "protector-look\n")
        })
        .expect("a look helper");
    let helper_threads = threads_named(helper, "")
        .iter()
        .map(|tid| nice_in(&format!("/proc/{helper}/task/{tid}/stat")))
        .collect();
    (stop, scheduler, launcher, helper_threads)
}

#[test]
fn commands_run_at_the_priority_protector_was_given_while_its_scheduler_runs_ahead() {
    let own = nice_in("/proc/self/stat");
    // SAFETY: geteuid reads nothing of ours.
    let root = unsafe { libc::geteuid() } == 0;
    // As the service manager starts it, and under `nice -n 5` (an operator's Nice=).
    for (wrapper, given) in [
        (&[][..], own),
        (&["nice", "-n", "5"][..], (own + 5).min(19)),
    ] {
        // Raised only from the default priority, and only where a priority may be raised.
        let ahead = if root && given == 0 { -10 } else { given };
        let (stop, scheduler, launcher, helper) = priorities_through(wrapper);
        assert_eq!(stop, given, "the stop command's nice, started with {given}");
        assert_eq!(scheduler, ahead, "the scheduler's, started with {given}");
        // The thread that starts commands runs ahead of them too (what it starts does not).
        assert_eq!(launcher, [ahead], "the launcher's, started with {given}");
        // The look helper answers for the scheduler: every thread of it runs ahead too.
        assert!(!helper.is_empty());
        assert!(
            helper.iter().all(|&n| n == ahead),
            "the look helper's: {helper:?}"
        );
    }
}

//! Commands that could not run for lack of resources (a process, thread or file descriptor
//! limit), each tried again at its time: a wait that doubles with each try (1 s up to 16 s)
//! plus up to a second of jitter, so a storm does not come back at once.

use std::time::{Duration, Instant};

use crate::schedule::Cmd;

#[derive(Default)]
pub(super) struct Retries(Vec<(Instant, u64, Cmd)>);

impl Retries {
    /// The wait before a command's try number `tries` (1 or more) comes again, with jitter
    /// taken from `seed` (milliseconds below a second).
    pub fn wait(tries: u32, seed: u64) -> Duration {
        let base = Duration::from_secs(1 << tries.clamp(1, 5).saturating_sub(1));
        base + Duration::from_millis(seed % 1000)
    }

    /// Command `cmd` of slot `id` comes again at `at`.
    pub fn push(&mut self, at: Instant, id: u64, cmd: Cmd) {
        self.0.push((at, id, cmd));
    }

    /// When the next one comes again.
    pub fn next(&self) -> Option<Instant> {
        self.0.iter().map(|r| r.0).min()
    }

    /// Those whose time has come by `now`, in the order they were put off.
    pub fn due(&mut self, now: Instant) -> Vec<(u64, Cmd)> {
        let (due, later) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|r| r.0 <= now);
        self.0 = later;
        due.into_iter()
            .map(|(_, id, cmd)| (id, cmd))
            .collect::<Vec<_>>()
    }

    /// Every one, their times aside (shutting down).
    pub fn take_all(&mut self) -> Vec<(u64, Cmd)> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(_, id, cmd)| (id, cmd))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_sixteen_seconds_with_under_a_second_of_jitter() {
        let waits: Vec<u64> = (1..=7).map(|t| Retries::wait(t, 0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(Retries::wait(1, 1999), Duration::from_millis(1999));
        assert_eq!(Retries::wait(0, 0), Duration::from_secs(1));
    }

    #[test]
    fn due_ones_come_out_in_order_and_the_rest_wait() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut r = Retries::default();
        r.push(at(5), 1, Cmd::Stop);
        r.push(at(2), 2, Cmd::Start);
        r.push(at(3), 3, Cmd::SkipIf);
        assert_eq!(r.next(), Some(at(2)));
        assert_eq!(r.due(at(3)), [(2, Cmd::Start), (3, Cmd::SkipIf)]);
        assert_eq!(r.next(), Some(at(5)));
        assert!(r.due(at(4)).is_empty());
        assert_eq!(r.take_all(), [(1, Cmd::Stop)]);
        assert_eq!(r.next(), None);
    }
}

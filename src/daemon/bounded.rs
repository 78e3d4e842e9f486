//! A queue of jobs that take one of `max` places while they run (`max_parallel_commands`);
//! the rest wait in order.

use std::collections::VecDeque;

/// Jobs that take one of `max` places while they run; the rest wait in order.
pub(super) struct Bounded<J> {
    running: usize,
    max: usize,
    waiting: VecDeque<J>,
}

impl<J> Bounded<J> {
    pub fn new(max: usize) -> Bounded<J> {
        Bounded {
            running: 0,
            max: max.max(1),
            waiting: VecDeque::new(),
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }

    pub fn running(&self) -> usize {
        self.running
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// `job` with a place taken for it, if there is a free one; otherwise it waits.
    pub fn offer(&mut self, job: J) -> Option<J> {
        if self.running < self.max {
            self.running += 1;
            Some(job)
        } else {
            self.waiting.push_back(job);
            None
        }
    }

    /// The next waiting job, with a place taken for it, if a place is free.
    pub fn next(&mut self) -> Option<J> {
        if self.running >= self.max {
            return None;
        }
        let job = self.waiting.pop_front()?;
        self.running += 1;
        Some(job)
    }

    /// A job that had a place is done with it.
    pub fn release(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    pub fn retain(&mut self, keep: impl FnMut(&J) -> bool) {
        self.waiting.retain(keep);
    }

    /// Every waiting job, taken out.
    pub fn drain_waiting(&mut self) -> Vec<J> {
        self.waiting.drain(..).collect()
    }
}

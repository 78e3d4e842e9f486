//! The daemon's deadline queue.

use std::time::Instant;

/// The deadlines of many targets, nearest first: what the daemon sleeps on. A target's entry
/// is superseded by a later `push` for it (its deadline moved); entries left behind are
/// skipped, so each target is delivered once per deadline, and no target can hold up another.
#[derive(Debug, Default)]
pub struct Agenda {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
}

impl Agenda {
    /// Target `i` is next due at `at`.
    pub fn push(&mut self, at: Instant, i: usize) {
        self.heap.push(std::cmp::Reverse((at, i)));
    }

    /// The nearest entry (possibly a superseded one: waking for it costs one look).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.0)
    }

    /// Moves every target due at `now` into `out`. `current(i, at)` says whether `at` is still
    /// target `i`'s deadline.
    pub fn take_due(
        &mut self,
        now: Instant,
        current: impl Fn(usize, Instant) -> bool,
        out: &mut Vec<usize>,
    ) {
        self.take_until(now, usize::MAX, current, out);
    }

    /// [`Agenda::take_due`] of the targets due by `until`, nearest first, until `out` holds
    /// `max` of them.
    pub fn take_until(
        &mut self,
        until: Instant,
        max: usize,
        current: impl Fn(usize, Instant) -> bool,
        out: &mut Vec<usize>,
    ) {
        let mut last = None;
        while let Some(&std::cmp::Reverse((at, i))) = self.heap.peek() {
            if at > until || out.len() >= max {
                break;
            }
            self.heap.pop();
            // The same deadline pushed twice (set, moved, set back) is delivered once; equal
            // entries come out of the heap one after the other.
            if last != Some((at, i)) && current(i, at) {
                out.push(i);
            }
            last = Some((at, i));
        }
    }
}

impl FromIterator<(Instant, usize)> for Agenda {
    fn from_iter<I: IntoIterator<Item = (Instant, usize)>>(iter: I) -> Self {
        Agenda {
            heap: iter.into_iter().map(std::cmp::Reverse).collect(),
        }
    }
}

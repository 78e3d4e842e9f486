//! A list rebuilt in a new order within its own memory: how a reload turns the slots it runs
//! on into the new config's. A second list beside the first, or a map of the items
//! themselves, was a reload's heap peak (4 to 7 MB at 10,000 targets, each slot a few hundred
//! bytes), above the load's own.
//!
//! The new list is made position by position, from the first: position `k` takes the old
//! item the plan names for it (by its old index), swapped in from wherever it is now (always
//! at `k` or after: the positions before are made); what was in its way goes to the place
//! the taken one leaves, or to the end when the position's item is new. What no position
//! took is left over at the end.

/// A list being rebuilt: see the module's header. Old items are known by their index in the
/// old list (`was`).
pub(super) struct Relist<T> {
    /// The positions made so far, then the old items not taken yet (a gap once taken).
    items: Vec<Option<T>>,
    /// Where each old item is now, by its old index.
    at: Vec<usize>,
    /// The old index of what is at each place (`None`: a gap, or a position made).
    of: Vec<Option<usize>>,
}

impl<T> Relist<T> {
    /// The old list, to be made into a list with `added` items it does not have: the most
    /// items it holds at once is its own and those.
    pub fn new(items: Vec<T>, added: usize) -> Relist<T> {
        let at: Vec<usize> = (0..items.len()).collect();
        let mut of: Vec<Option<usize>> = (0..items.len()).map(Some).collect();
        of.reserve_exact(added);
        // In their own memory when an optional item is the same size as an item.
        let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
        items.reserve_exact(added);
        Relist { items, at, of }
    }

    /// The old item `was`, if it is not taken yet.
    pub fn get(&self, was: usize) -> Option<&T> {
        let place = self.at[was];
        (self.of[place] == Some(was)).then(|| self.items[place].as_ref())?
    }

    /// The old item `was` (`None`: a new item) for position `k` of the new list, which
    /// [`Relist::put`] fills next. Positions are made in order: `k` is the number made.
    pub fn take_for(&mut self, k: usize, was: Option<usize>) -> Option<T> {
        if k == self.items.len() {
            // Every old item is taken: room for a new one.
            self.items.push(None);
            self.of.push(None);
        }
        // What is in the way goes where the old item was, or to the end.
        let to = match was {
            Some(was) => Some(self.at[was]),
            None if self.items[k].is_some() => {
                self.items.push(None);
                self.of.push(None);
                Some(self.items.len() - 1)
            }
            None => None,
        };
        if let Some(to) = to {
            self.items.swap(k, to);
            self.of.swap(k, to);
            if let Some(moved) = self.of[to] {
                self.at[moved] = to;
            }
        }
        self.of[k] = None;
        self.items[k].take()
    }

    /// Fills position `k` (after [`Relist::take_for`]).
    pub fn put(&mut self, k: usize, item: T) {
        self.items[k] = Some(item);
    }

    /// The new list of the `made` positions, and the old items none took.
    pub fn finish(mut self, made: usize) -> (Vec<T>, Vec<T>) {
        let left: Vec<T> = self.items.drain(made..).flatten().collect();
        let list = (self.items.into_iter())
            .map(|item| item.expect("every position made is filled"))
            .collect();
        (list, left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_config(256))]

        /// Any old list and any new order of names: each position gets its name's old item
        /// (or none), and what no position took is left over, nothing lost or copied.
        #[test]
        fn the_new_order_takes_each_old_item_once_and_leaves_the_rest(
            old in proptest::collection::btree_set(0u8..40, 0..30),
            drawn in proptest::collection::vec(0u8..40, 0..40),
        ) {
            let old: Vec<(String, u32)> = old.iter().map(|n| (n.to_string(), u32::from(*n))).collect();
            // Names in any order, each once.
            let mut new: Vec<String> = Vec::new();
            for n in drawn.iter().map(u8::to_string) {
                if !new.contains(&n) {
                    new.push(n);
                }
            }
            let added = new.iter().filter(|n| !old.iter().any(|o| &o.0 == *n)).count();
            let mut relist = Relist::new(old.clone(), added);
            for (k, n) in new.iter().enumerate() {
                // As the plan says it: the old index of the name, if it had one.
                let index = old.iter().position(|o| &o.0 == n);
                let seen = index.and_then(|i| relist.get(i).cloned());
                let was = relist.take_for(k, index);
                prop_assert_eq!(&was, &seen);
                prop_assert_eq!(was.is_some(), old.iter().any(|o| &o.0 == n));
                // The new item: its old value kept, or a new one.
                relist.put(k, (n.clone(), was.map_or(1000, |w| w.1)));
            }
            let room = old.len() + added;
            let (list, mut left) = relist.finish(new.len());
            // No room made beyond what was said.
            prop_assert!(list.capacity() <= room.max(1), "{} > {room}", list.capacity());
            let names: Vec<&str> = list.iter().map(|i| i.0.as_str()).collect();
            prop_assert_eq!(names, new.iter().map(String::as_str).collect::<Vec<_>>());
            for item in &list {
                let kept = old.iter().find(|o| o.0 == item.0).map_or(1000, |o| o.1);
                prop_assert_eq!(item.1, kept);
            }
            left.sort();
            let expected: Vec<(String, u32)> = {
                let mut e: Vec<_> = old.iter().filter(|o| !new.contains(&o.0)).cloned().collect();
                e.sort();
                e
            };
            prop_assert_eq!(left, expected);
        }
    }
}

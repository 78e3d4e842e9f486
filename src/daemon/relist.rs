//! A list of named items rebuilt in a new order within its own memory: how a reload turns the
//! slots it runs on into the new config's. A second list beside the first, or a map of the
//! items themselves, was a reload's heap peak (4 to 7 MB at 10,000 targets, each slot a few
//! hundred bytes), above the load's own.
//!
//! The new list is made position by position, from the first: position `k` takes its name's
//! old item, swapped in from wherever it is (always at `k` or after: the positions before are
//! done); an item in its way goes to the place the taken one leaves, or to the end when the
//! name is new. What no position took is left over at the end.

use std::collections::HashMap;

pub(super) struct Relist<T> {
    /// The positions made so far, then the old items not taken yet (a gap once taken).
    items: Vec<Option<T>>,
    /// Where each old item not taken yet is.
    at: HashMap<String, usize>,
    name: fn(&T) -> &str,
}

impl<T> Relist<T> {
    /// The old list, its items named by `name` (each name once), to be made into a list with
    /// `added` names it does not have: the most items it holds at once is its own and those.
    pub fn new(items: Vec<T>, name: fn(&T) -> &str, added: usize) -> Relist<T> {
        let at = (items.iter().enumerate())
            .map(|(i, item)| (name(item).to_string(), i))
            .collect();
        // In their own memory when an optional item is the same size as an item.
        let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
        items.reserve_exact(added);
        Relist { items, at, name }
    }

    /// The old item of `name`, if it has one and it is not taken yet.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.items[*self.at.get(name)?].as_ref()
    }

    /// The old item of `name` (`None`: a new name) for position `k` of the new list, which
    /// [`Relist::put`] fills next. Positions are made in order: `k` is the number made.
    pub fn take_for(&mut self, k: usize, name: &str) -> Option<T> {
        if k == self.items.len() {
            // Every old item is taken or after `k`: room for a new name.
            self.items.push(None);
        }
        match self.at.remove(name) {
            Some(from) if from != k => {
                self.items.swap(k, from);
                if let Some(moved) = &self.items[from] {
                    self.at.insert((self.name)(moved).to_string(), from);
                }
            }
            Some(_) => {}
            None => {
                if let Some(in_way) = self.items[k].take() {
                    self.at
                        .insert((self.name)(&in_way).to_string(), self.items.len());
                    self.items.push(Some(in_way));
                }
            }
        }
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

    fn name(item: &(String, u32)) -> &str {
        &item.0
    }

    proptest! {
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
            let mut relist = Relist::new(old.clone(), name, added);
            for (k, n) in new.iter().enumerate() {
                let seen = relist.get(n).cloned();
                let was = relist.take_for(k, n);
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

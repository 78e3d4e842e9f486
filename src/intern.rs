//! One shared copy of values that many parts hold alike: the policies of a fleet's targets
//! (which mostly differ in name and heartbeat only), the schedule's rules made from them.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

/// The values seen so far, each once. Shared by the threads that resolve a config's targets:
/// a value is hashed before the lock is taken (a policy is a few hundred bytes, and hashing
/// it under the lock kept one of two threads waiting), with foldhash, not the standard
/// library's SipHash, which was 40% of resolving 10,000 targets (the values come from the
/// config, which only root writes: nothing to flood the table with).
pub(crate) struct Interner<T> {
    hasher: foldhash::fast::RandomState,
    seen: Mutex<HashSet<Seen<T>, foldhash::fast::RandomState>>,
}

/// A value and its hash, which the table uses as it is.
struct Seen<T> {
    hash: u64,
    value: Arc<T>,
}

impl<T: Eq> PartialEq for Seen<T> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.value == other.value
    }
}

impl<T: Eq> Eq for Seen<T> {}

impl<T> Hash for Seen<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<T: Eq + Hash> Interner<T> {
    pub fn new() -> Self {
        Interner {
            hasher: foldhash::fast::RandomState::default(),
            seen: Mutex::default(),
        }
    }

    /// The copy of `value` seen first: `value` itself if none equal to it was.
    pub fn intern(&self, value: Arc<T>) -> Arc<T> {
        let key = Seen {
            hash: self.hasher.hash_one(&*value),
            value,
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = seen.get(&key) {
            return Arc::clone(&first.value);
        }
        let value = Arc::clone(&key.value);
        seen.insert(key);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::Interner;
    use std::sync::Arc;

    #[test]
    fn equal_values_share_the_first_copy_and_others_keep_their_own() {
        let seen = Interner::new();
        let first = seen.intern(Arc::new(String::from("stop")));
        let again = seen.intern(Arc::new(String::from("stop")));
        let other = seen.intern(Arc::new(String::from("start")));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!((again.as_str(), other.as_str()), ("stop", "start"));
    }

    #[test]
    fn values_interned_from_many_threads_at_once_share_one_copy_each() {
        let seen = Interner::new();
        let per_thread: Vec<Vec<Arc<String>>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|i| seen.intern(Arc::new(format!("policy {}", i % 50))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let first = &per_thread[0];
        for got in &per_thread {
            for (i, value) in got.iter().enumerate() {
                assert_eq!(**value, format!("policy {}", i % 50));
                assert!(
                    Arc::ptr_eq(value, &first[i % 50]),
                    "value {i}: a copy of its own"
                );
            }
        }
    }
}

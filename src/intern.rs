//! One shared copy of values that many parts hold alike: the policies of a fleet's targets
//! (which mostly differ in name and heartbeat only), the schedule's rules made from them.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// The values seen so far, each once.
pub(crate) struct Interner<T>(HashSet<Arc<T>>);

impl<T: Eq + Hash> Interner<T> {
    pub fn new() -> Self {
        Interner(HashSet::new())
    }

    /// The copy of `value` seen first: `value` itself if none equal to it was.
    pub fn intern(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(seen) = self.0.get(&value) {
            return Arc::clone(seen);
        }
        self.0.insert(Arc::clone(&value));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::Interner;
    use std::sync::Arc;

    #[test]
    fn equal_values_share_the_first_copy_and_others_keep_their_own() {
        let mut seen = Interner::new();
        let first = seen.intern(Arc::new(String::from("stop")));
        let again = seen.intern(Arc::new(String::from("stop")));
        let other = seen.intern(Arc::new(String::from("start")));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!((again.as_str(), other.as_str()), ("stop", "start"));
    }
}

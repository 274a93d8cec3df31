//! Plans kept between queries: bounded LRUs shared by every query of the process, keyed by
//! digests of everything a plan is made from.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use hashlink::LruCache;
use sha2::{Digest, Sha256};

/// The SHA-256 of everything a kept plan is made from. A digest rather than the parts
/// themselves: a directory source's file list can be megabytes, and keys are compared whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanKey([u8; 32]);

impl PlanKey {
    /// The digest of `parts`, fed through their `Hash` impls. Those write strings with a
    /// terminator and sequences with their length first, so different parts give different
    /// byte streams.
    pub fn of(parts: &impl Hash) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        parts.hash(&mut hasher);
        Self(hasher.0.finalize().into())
    }
}

/// Feeds every byte a `Hash` impl writes into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // only the full digest is used, through `PlanKey::of`
        0
    }
}

/// A bounded LRU behind a mutex; a poisoned lock is taken over (entries are immutable).
pub struct Kept<V>(Mutex<LruCache<PlanKey, V>>);

impl<V: Clone> Kept<V> {
    /// An LRU of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self(Mutex::new(LruCache::new(capacity)))
    }

    /// The entry under `key`, now the most recently used.
    pub fn get(&self, key: &PlanKey) -> Option<V> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The entry under `key` if there is one, else `value`, now kept under `key`. Of queries
    /// that missed at once and each made a value, all then use the first one kept.
    pub fn first_kept(&self, key: PlanKey, value: V) -> V {
        let mut lru = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = lru.get(&key) {
            return kept.clone();
        }
        lru.insert(key, value.clone());
        value
    }

    /// Keeps `value` under `key`, dropping the least recently used entry when full.
    pub fn put(&self, key: PlanKey, value: V) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_whenever_the_parts_do() {
        // the same bytes split differently must not collide
        assert_ne!(PlanKey::of(&("ab", "c")), PlanKey::of(&("a", "bc")));
        assert_ne!(
            PlanKey::of(&vec!["a", "b"]),
            PlanKey::of(&(vec!["a"], vec!["b"]))
        );
        assert_ne!(PlanKey::of(&Some(0u64)), PlanKey::of(&None::<u64>));
        assert_eq!(PlanKey::of(&("ab", 1u8)), PlanKey::of(&("ab", 1u8)));
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let kept = Kept::new(2);
        let [a, b, c] = [1u8, 2, 3].map(|n| PlanKey::of(&n));
        kept.put(a, "a");
        kept.put(b, "b");
        assert_eq!(kept.get(&a), Some("a"));
        kept.put(c, "c");
        assert_eq!(kept.get(&b), None);
        assert_eq!((kept.get(&a), kept.get(&c)), (Some("a"), Some("c")));
    }

    #[test]
    fn the_first_value_kept_stays() {
        let kept = Kept::new(2);
        let [a, b] = [1u8, 2].map(|n| PlanKey::of(&n));
        assert_eq!(kept.first_kept(a, "first"), "first");
        assert_eq!(kept.first_kept(a, "second"), "first");
        assert_eq!(kept.get(&a), Some("first"));
        assert_eq!(kept.first_kept(b, "b"), "b");
    }
}

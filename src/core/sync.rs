//! Sharing between threads: a poison-tolerant lock, read-only sharing of tensors, and the
//! process-wide cache that keeps one copy of each loaded model.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Locks a mutex even if a panicking thread poisoned it. Every panic in this crate is
/// turned into an error where it happens, and the state behind these locks stays
/// consistent (each critical section is a few assignments).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-only sharing between threads of something made of tensors, such as a loaded
/// network. `Tensor` is `Send` but not `Sync`, because most of its methods could be
/// used to change it in place; what is wrapped here is built once and after that only
/// read: every forward pass takes `&self` and makes new tensors (the networks of this
/// crate never call an in-place operation on a weight), and libtorch allows any number
/// of threads to read one tensor at once (its reference count is atomic). This is how
/// two elements share one copy of the weights.
pub struct Frozen<T>(T);

// SAFETY: see the type's documentation: the value is never mutated after `Frozen::new`,
// and concurrent reads of libtorch tensors are thread-safe.
unsafe impl<T: Send> Sync for Frozen<T> {}

impl<T> Frozen<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
}

impl<T> std::ops::Deref for Frozen<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// One cache entry: the model while anything holds it, and how often it was loaded.
struct Slot<T> {
    model: Weak<Frozen<T>>,
    loads: usize,
}

/// Models loaded from disk, one copy per key (a bundle on a device in a precision) in
/// the process while anything uses it. Two users of one key wait for one load; a load
/// of another key goes on at the same time (the list is locked only to find the key's
/// slot, the slot for the load).
pub struct ModelCache<K, T> {
    slots: Mutex<Vec<(K, SharedSlot<T>)>>,
}

type SharedSlot<T> = Arc<Mutex<Slot<T>>>;

impl<K: PartialEq + Clone, T> ModelCache<K, T> {
    pub const fn new() -> Self {
        Self {
            slots: Mutex::new(Vec::new()),
        }
    }

    fn slot(&self, key: &K) -> SharedSlot<T> {
        let mut slots = lock(&self.slots);
        if let Some((_, slot)) = slots.iter().find(|(k, _)| k == key) {
            return slot.clone();
        }
        let slot = Arc::new(Mutex::new(Slot {
            model: Weak::new(),
            loads: 0,
        }));
        slots.push((key.clone(), slot.clone()));
        slot
    }

    /// The model of `key`, loaded by `load` unless a live copy exists.
    pub fn get_or_load<E>(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<Frozen<T>>, E> {
        let slot = self.slot(key);
        let mut slot = lock(&slot);
        if let Some(model) = slot.model.upgrade() {
            return Ok(model);
        }
        let model = Arc::new(Frozen::new(load()?));
        slot.model = Arc::downgrade(&model);
        slot.loads += 1;
        Ok(model)
    }

    /// How many times the model of `key` was loaded in this process.
    pub fn times_loaded(&self, key: &K) -> usize {
        let slot = lock(&self.slots)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, slot)| slot.clone());
        slot.map_or(0, |slot| lock(&slot).loads)
    }
}

impl<K: PartialEq + Clone, T> Default for ModelCache<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_copy_per_key_while_held_and_a_reload_after() {
        let cache: ModelCache<&str, u32> = ModelCache::new();
        let a = cache.get_or_load(&"a", || Ok::<_, ()>(1)).unwrap();
        let again = cache.get_or_load(&"a", || Ok::<_, ()>(2)).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(cache.times_loaded(&"a"), 1);
        drop((a, again));
        assert_eq!(**cache.get_or_load(&"a", || Ok::<_, ()>(3)).unwrap(), 3);
        assert_eq!(cache.times_loaded(&"a"), 2);
        assert_eq!(cache.times_loaded(&"b"), 0);
        assert!(cache.get_or_load(&"c", || Err::<u32, _>("bad")).is_err());
        assert_eq!(cache.times_loaded(&"c"), 0);
    }

    #[test]
    fn a_load_in_progress_does_not_block_another_key() {
        static CACHE: ModelCache<u32, u32> = ModelCache::new();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (other_done_tx, other_done_rx) = std::sync::mpsc::channel::<()>();
        // Key 1's load finishes only once key 2 has loaded: if loading key 2 waited for
        // key 1, key 1's loader would give up and the test fail.
        let first = std::thread::spawn(move || {
            CACHE.get_or_load(&1, || {
                started_tx.send(()).unwrap();
                other_done_rx
                    .recv_timeout(Duration::from_secs(60))
                    .map(|()| 1)
                    .map_err(|_| "key 2 waited for key 1")
            })
        });
        started_rx.recv().unwrap();
        let other = CACHE.get_or_load(&2, || Ok::<_, &str>(2)).unwrap();
        assert_eq!(**other, 2);
        other_done_tx.send(()).unwrap();
        let first = first.join().unwrap().unwrap();
        // A second user of key 1 gets the same copy.
        assert!(Arc::ptr_eq(
            &first,
            &CACHE.get_or_load(&1, || Ok::<_, &str>(9)).unwrap()
        ));
        assert_eq!(CACHE.times_loaded(&1), 1);
    }
}

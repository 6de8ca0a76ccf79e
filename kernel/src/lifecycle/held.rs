//! Instances another part of the kernel has taken out of the reconciler's hands for a moment: a
//! restore in place stops an instance, swaps its volume and starts it again, and the reconciler,
//! woken by the instance's exit, must neither restart nor replace it meanwhile. Held instances
//! are left alone by its passes (as retiring ones are) until the [`HeldGuard`] drops. The set is
//! this kernel's: it holds against this kernel's reconciler.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;

/// The instance names held now.
#[derive(Clone, Default)]
pub struct Held(Arc<Mutex<HashSet<String>>>);

impl Held {
    /// Holds `name` until the guard drops.
    pub fn hold(&self, name: &str) -> HeldGuard {
        self.0.lock().insert(name.to_string());
        HeldGuard {
            held: self.clone(),
            name: name.to_string(),
        }
    }

    /// Whether `name` is held.
    pub fn contains(&self, name: &str) -> bool {
        self.0.lock().contains(name)
    }

    /// The names held now.
    pub fn snapshot(&self) -> HashSet<String> {
        self.0.lock().clone()
    }
}

/// Lets its instance go when dropped.
pub struct HeldGuard {
    held: Held,
    name: String,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.held.0.lock().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_held_until_its_guard_drops() {
        let held = Held::default();
        let guard = held.hold("a");
        assert!(held.contains("a") && !held.contains("b"));
        assert_eq!(held.snapshot().len(), 1);
        drop(guard);
        assert!(!held.contains("a"));
    }
}

//! A bound on the distinct values a metrics label may take, so clients cannot mint series.
//!
//! Values a client influences (model names, identities) go through a `LabelCap`: the first
//! `max` distinct values are kept as they are, every later one is counted as `other`. Callers
//! resolve a label once per request (one hash under a read lock), never per body frame.

use std::collections::HashSet;
use std::sync::RwLock;

/// Longer values are counted as `other` too: a label is a name, not a payload.
const MAX_VALUE_LEN: usize = 200;

pub struct LabelCap {
    max: usize,
    seen: RwLock<HashSet<Box<str>>>,
}

impl LabelCap {
    /// The value every label past the cap is counted under.
    pub const OTHER: &'static str = "other";

    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// `value` if it is one of the admitted values or there is still room for it, else `other`.
    pub fn admit<'a>(&self, value: &'a str) -> &'a str {
        if value.len() > MAX_VALUE_LEN {
            return Self::OTHER;
        }
        // A poisoned lock only means another thread panicked mid-insert; the set is still sound.
        if self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
        {
            return value;
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            value
        } else if seen.len() < self.max {
            seen.insert(value.into());
            value
        } else {
            Self::OTHER
        }
    }

    /// How many distinct values have been admitted.
    pub fn len(&self) -> usize {
        self.seen.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_values_kept_then_other() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.admit("a"), "a");
        assert_eq!(cap.admit("b"), "b");
        assert_eq!(cap.admit("c"), "other");
        assert_eq!(cap.admit("a"), "a", "admitted values stay admitted");
        assert_eq!(cap.admit(&"x".repeat(201)), "other");
        assert_eq!(cap.len(), 2);
    }

    #[test]
    fn ten_thousand_values_stay_capped() {
        let cap = LabelCap::new(200);
        let other = (0..10_000)
            .filter(|i| cap.admit(&format!("model-{i}")) == LabelCap::OTHER)
            .count();
        assert_eq!(other, 9_800);
        assert_eq!(cap.len(), 200);
    }
}

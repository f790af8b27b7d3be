//! Per-second rates of cumulative counters between two samples.

use std::collections::HashMap;
use std::hash::Hash;

use tokio::time::Instant;

/// The last value of each counter, to turn the next one into a rate.
#[derive(Debug)]
pub struct RateTracker<K> {
    last: HashMap<K, (u64, Instant)>,
}

impl<K> Default for RateTracker<K> {
    fn default() -> Self {
        Self {
            last: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> RateTracker<K> {
    /// Records `value` of counter `key` at `at`; returns the rate per
    /// second since the previous value, or `None` for the first one (or
    /// when no time passed). A counter that went backwards (a restarted
    /// container) restarts from zero.
    pub fn observe(&mut self, key: K, value: u64, at: Instant) -> Option<f64> {
        let previous = self.last.insert(key, (value, at));
        let (before, then) = previous?;
        let elapsed = at.checked_duration_since(then)?.as_secs_f64();
        if elapsed <= 0.0 {
            return None;
        }
        let delta = value.checked_sub(before).unwrap_or(value);
        Some(delta as f64 / elapsed)
    }

    /// Forgets counters for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.last.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_sample_has_no_rate_and_the_next_one_does() {
        let mut rates = RateTracker::default();
        let t0 = Instant::now();
        assert_eq!(rates.observe("c", 100, t0), None);
        assert_eq!(
            rates.observe("c", 400, t0 + Duration::from_millis(500)),
            Some(600.0)
        );
    }

    #[test]
    fn a_counter_that_went_backwards_counts_from_zero() {
        let mut rates = RateTracker::default();
        let t0 = Instant::now();
        rates.observe("c", 1000, t0);
        assert_eq!(
            rates.observe("c", 50, t0 + Duration::from_secs(1)),
            Some(50.0)
        );
    }

    #[test]
    fn no_elapsed_time_gives_no_rate() {
        let mut rates = RateTracker::default();
        let t0 = Instant::now();
        rates.observe("c", 1, t0);
        assert_eq!(rates.observe("c", 2, t0), None);
    }
}

//! CrashLoopBackOff: how long a pod worker waits before restarting a
//! container that exited, per container, as the kubelet's
//! `flowcontrol.Backoff` does.
//!
//! - The first exit restarts at once and arms a 10 s back-off.
//! - Each later exit within the back-off waits out the rest of it; the
//!   restart after the wait doubles it, up to 300 s.
//! - An exit more than twice the maximum (10 minutes) after the last
//!   restart starts over at 10 s: a container that ran for 10 minutes is
//!   healthy again.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Back-off timing (Kubernetes: 10 s initial, 300 s maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay; an exit `2 × max` after the last restart resets.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// One pod's back-off per container name.
#[derive(Debug, Default)]
pub struct CrashBackoff {
    config: BackoffConfig,
    entries: HashMap<String, Entry>,
}

impl CrashBackoff {
    /// Back-off with `config` timing.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
        }
    }

    /// How much longer container `name`, which exited at `exited_at`, must
    /// wait before its restart; `None` when it may restart now.
    pub fn remaining(&self, name: &str, exited_at: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(name)?;
        let since = now.saturating_duration_since(exited_at);
        (since < entry.backoff).then(|| entry.backoff - since)
    }

    /// The current delay of `name` (for the `back-off 10s` message).
    pub fn current(&self, name: &str) -> Duration {
        self.entries
            .get(name)
            .map_or(self.config.initial, |e| e.backoff)
    }

    /// Records a restart of `name` after its exit at `exited_at`: arms the
    /// initial delay, doubles it, or resets it after a long healthy run.
    pub fn restarted(&mut self, name: &str, exited_at: Instant) {
        let config = self.config;
        let entry = self.entries.entry(name.to_string()).or_insert(Entry {
            backoff: Duration::ZERO,
            last_update: exited_at,
        });
        let expired =
            exited_at.saturating_duration_since(entry.last_update) > config.max.saturating_mul(2);
        entry.backoff = if entry.backoff.is_zero() || expired {
            config.initial
        } else {
            entry.backoff.saturating_mul(2).min(config.max)
        };
        entry.last_update = exited_at;
    }
}

/// A duration as Go prints one (`10s`, `1m20s`, `5m0s`), as in the
/// kubelet's `back-off 1m20s restarting failed container=...` message.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{secs}s");
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_exit_restarts_at_once_then_waits_10s_doubling_to_300s() {
        let mut backoff = CrashBackoff::new(BackoffConfig::default());
        let exited = Instant::now();
        assert_eq!(backoff.remaining("c", exited, Instant::now()), None);
        backoff.restarted("c", exited);
        let mut waits = Vec::new();
        for _ in 0..7 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let exited = Instant::now();
            let wait = backoff
                .remaining("c", exited, Instant::now())
                .expect("in back-off");
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
            assert_eq!(backoff.remaining("c", exited, Instant::now()), None);
            backoff.restarted("c", exited);
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_that_ran_for_ten_minutes_starts_over_at_10s() {
        let mut backoff = CrashBackoff::new(BackoffConfig::default());
        for _ in 0..4 {
            backoff.restarted("c", Instant::now());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(backoff.current("c"), Duration::from_secs(80));
        tokio::time::advance(Duration::from_secs(601)).await;
        backoff.restarted("c", Instant::now());
        assert_eq!(backoff.current("c"), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn containers_of_one_pod_back_off_independently() {
        let mut backoff = CrashBackoff::new(BackoffConfig::default());
        let now = Instant::now();
        backoff.restarted("a", now);
        assert!(backoff.remaining("a", now, now).is_some());
        assert_eq!(backoff.remaining("b", now, now), None);
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}

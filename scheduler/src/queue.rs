//! The scheduling queue, after kube-scheduler's `PriorityQueue`.
//!
//! Every pending pod is in exactly one of:
//!
//! - **active**: a heap ordered by priority (highest first), then by the
//!   time the pod entered the queue (oldest first). [`SchedulingQueue::pop`]
//!   takes from here.
//! - **backoff**: pods that failed recently wait `initial * 2^(attempts-1)`
//!   (1s, 2s, 4s... capped at 10s by default) before moving to active.
//! - **unschedulable**: pods that fit no node. They stay here until a
//!   cluster event that could help them (a node added or changed, a bound
//!   pod deleted, or — for pods rejected by pod (anti-)affinity or topology
//!   spreading — a pod bound) moves them to backoff or active, or until
//!   they have waited `max_in_unschedulable` (5 min), so no pod is forgotten.
//! - **in flight**: popped and being scheduled or bound.
//!
//! A pod that fails while an event arrived during its attempt goes to
//! backoff, not unschedulable, so an event that raced with the attempt is
//! not lost (the `move_request_cycle` rule). A pod is never retried in a
//! hot loop: every retry waits out its backoff.
//!
//! The queue is unbounded by design: it holds every pending pod of the
//! cluster, as kube-scheduler's does; the API server bounds their number.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::framework::{FailedPlugins, PodInfo};

/// A cluster change that may make unschedulable pods fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    AssignedPodDelete,
    AssignedPodAdd,
}

impl ClusterEvent {
    /// Whether the event could undo a rejection by these plugins.
    fn may_help(self, failed: &FailedPlugins) -> bool {
        match self {
            ClusterEvent::NodeAdd | ClusterEvent::NodeUpdate | ClusterEvent::AssignedPodDelete => {
                true
            }
            ClusterEvent::AssignedPodAdd => failed.iter().any(|p| {
                *p == crate::plugins::inter_pod_affinity::NAME
                    || *p == crate::plugins::pod_topology_spread::NAME
            }),
        }
    }
}

/// Queue timings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_in_unschedulable: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct Entry {
    info: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// Order among equal priorities: when it last entered the queue.
    seq: u64,
    /// Bumped on every move, so stale heap entries are skipped.
    generation: u64,
    last_failure: Option<Instant>,
    failed_plugins: FailedPlugins,
    popped_in_cycle: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    seq: u64,
    generation: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, String, u64)>>,
    /// Uids of the pods parked as unschedulable (events scan only these).
    unschedulable: HashSet<String>,
    /// When long-waiting unschedulable pods were last looked for.
    last_stale_check: Option<Instant>,
    next_seq: u64,
    next_generation: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    closed: bool,
}

/// What [`SchedulingQueue::pop`] hands out.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub cycle: u64,
}

/// Counts per sub-queue, for the `scheduler_pending_pods` gauge.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    config: QueueConfig,
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            config,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(20);
        (self.config.initial_backoff * 2u32.pow(exp)).min(self.config.max_backoff)
    }

    /// A new or changed pending pod. A changed pod waiting as unschedulable
    /// is given another chance (after its backoff).
    pub fn add_or_update(&self, info: Arc<PodInfo>) {
        let mut q = self.lock();
        let uid = info.uid.clone();
        let Some(e) = q.pods.get_mut(&uid) else {
            let entry = Entry {
                info,
                place: Place::InFlight,
                attempts: 0,
                seq: 0,
                generation: 0,
                last_failure: None,
                failed_plugins: FailedPlugins::new(),
                popped_in_cycle: 0,
            };
            q.pods.insert(uid.clone(), entry);
            self.to_active(&mut q, &uid);
            drop(q);
            self.notify.notify_one();
            return;
        };
        let place = e.place;
        let spec_changed = e.info.pod.spec != info.pod.spec
            || e.info.pod.metadata.labels != info.pod.metadata.labels;
        e.info = info;
        if place == Place::Unschedulable && spec_changed {
            self.to_backoff_or_active(&mut q, &uid, Instant::now());
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&self, uid: &str) {
        let mut q = self.lock();
        q.pods.remove(uid);
        q.unschedulable.remove(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.lock().pods.contains_key(uid)
    }

    fn to_active(&self, q: &mut Inner, uid: &str) {
        q.unschedulable.remove(uid);
        q.next_seq += 1;
        q.next_generation += 1;
        let (seq, generation) = (q.next_seq, q.next_generation);
        if let Some(e) = q.pods.get_mut(uid) {
            e.place = Place::Active;
            e.seq = seq;
            e.generation = generation;
            let key = ActiveKey {
                priority: e.info.priority,
                seq,
                generation,
                uid: uid.to_string(),
            };
            q.active.push(key);
        }
    }

    fn to_backoff_or_active(&self, q: &mut Inner, uid: &str, now: Instant) {
        q.unschedulable.remove(uid);
        let Some(e) = q.pods.get(uid) else {
            return;
        };
        let until = e
            .last_failure
            .map(|t| t + self.backoff_for(e.attempts))
            .unwrap_or(now);
        if until <= now {
            self.to_active(q, uid);
        } else {
            q.next_generation += 1;
            let generation = q.next_generation;
            if let Some(e) = q.pods.get_mut(uid) {
                e.place = Place::Backoff;
                e.generation = generation;
            }
            q.backoff
                .push(Reverse((until, uid.to_string(), generation)));
        }
    }

    /// Moves due backoff pods to active and flushes long-unschedulable
    /// ones; returns when the next backoff ends.
    fn flush(&self, q: &mut Inner, now: Instant) -> Option<Instant> {
        while let Some(Reverse((until, uid, generation))) = q.backoff.peek().cloned() {
            if until > now {
                break;
            }
            q.backoff.pop();
            let live = q
                .pods
                .get(&uid)
                .is_some_and(|e| e.place == Place::Backoff && e.generation == generation);
            if live {
                self.to_active(q, &uid);
            }
        }
        // Long-waiting unschedulable pods are looked for at most once a second.
        if q.last_stale_check
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            q.last_stale_check = Some(now);
            let stale: Vec<String> = q
                .unschedulable
                .iter()
                .filter(|uid| {
                    q.pods.get(*uid).is_some_and(|e| {
                        e.last_failure.is_some_and(|t| {
                            now.duration_since(t) >= self.config.max_in_unschedulable
                        })
                    })
                })
                .cloned()
                .collect();
            for uid in stale {
                self.to_backoff_or_active(q, &uid, now);
            }
        }
        q.backoff.peek().map(|Reverse((until, _, _))| *until)
    }

    /// The next pod to schedule: waits until one is active. Returns `None`
    /// once the queue is closed.
    pub async fn pop(&self) -> Option<QueuedPod> {
        loop {
            let notified = self.notify.notified();
            let wake = {
                let mut q = self.lock();
                if q.closed {
                    return None;
                }
                let now = Instant::now();
                let next_backoff = self.flush(&mut q, now);
                while let Some(key) = q.active.pop() {
                    q.scheduling_cycle += 1;
                    let cycle = q.scheduling_cycle;
                    let Some(e) = q.pods.get_mut(&key.uid) else {
                        continue;
                    };
                    if e.place != Place::Active || e.generation != key.generation {
                        continue;
                    }
                    e.place = Place::InFlight;
                    e.attempts += 1;
                    e.popped_in_cycle = cycle;
                    return Some(QueuedPod {
                        info: e.info.clone(),
                        attempts: e.attempts,
                        cycle,
                    });
                }
                // Unschedulable pods are flushed at least this often.
                let flush_every = self
                    .config
                    .max_in_unschedulable
                    .min(Duration::from_secs(30));
                next_backoff
                    .unwrap_or(now + flush_every)
                    .min(now + flush_every)
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The pod fit no node: it waits for a helpful event (or, if an event
    /// came during its attempt, just for its backoff).
    pub fn unschedulable(&self, uid: &str, failed: FailedPlugins) {
        let mut guard = self.lock();
        let q = &mut *guard;
        let move_request_cycle = q.move_request_cycle;
        let now = Instant::now();
        let Some(e) = q.pods.get_mut(uid) else {
            return;
        };
        e.last_failure = Some(now);
        e.failed_plugins = failed;
        if move_request_cycle >= e.popped_in_cycle {
            self.to_backoff_or_active(q, uid, now);
        } else {
            e.place = Place::Unschedulable;
            q.unschedulable.insert(uid.to_string());
        }
        drop(guard);
        self.notify.notify_one();
    }

    /// The attempt failed for a transient reason (API error, lost bind):
    /// retry after the backoff.
    pub fn retry_after_backoff(&self, uid: &str) {
        let mut q = self.lock();
        let now = Instant::now();
        let Some(e) = q.pods.get_mut(uid) else {
            return;
        };
        e.last_failure = Some(now);
        self.to_backoff_or_active(&mut q, uid, now);
        drop(q);
        self.notify.notify_one();
    }

    /// The pod is bound: it leaves the queue.
    pub fn done(&self, uid: &str) {
        self.delete(uid);
    }

    /// Moves the unschedulable pods the event may help to backoff/active.
    pub fn on_event(&self, event: ClusterEvent) {
        let mut q = self.lock();
        q.move_request_cycle = q.scheduling_cycle;
        let now = Instant::now();
        let helped: Vec<String> = q
            .unschedulable
            .iter()
            .filter(|uid| {
                q.pods
                    .get(*uid)
                    .is_some_and(|e| event.may_help(&e.failed_plugins))
            })
            .cloned()
            .collect();
        if helped.is_empty() {
            return;
        }
        for uid in &helped {
            self.to_backoff_or_active(&mut q, uid, now);
        }
        drop(q);
        self.notify.notify_one();
    }

    pub fn depth(&self) -> Depth {
        let q = self.lock();
        let mut d = Depth::default();
        for e in q.pods.values() {
            match e.place {
                Place::Active => d.active += 1,
                Place::Backoff => d.backoff += 1,
                Place::Unschedulable => d.unschedulable += 1,
                Place::InFlight => {}
            }
        }
        d
    }

    /// Wakes `pop` with `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MakePod;

    fn queue() -> Arc<SchedulingQueue> {
        SchedulingQueue::new(QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(300),
        })
    }

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(MakePod::new(name).priority(priority).info())
    }

    async fn pop_name(q: &SchedulingQueue) -> String {
        q.pop()
            .await
            .map(|p| p.info.name.clone())
            .unwrap_or_default()
    }

    fn failed(plugin: &'static str) -> FailedPlugins {
        FailedPlugins::from([plugin])
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priority_pods_pop_first_then_the_oldest() {
        let q = queue();
        q.add_or_update(pod("low", 0));
        q.add_or_update(pod("high", 100));
        q.add_or_update(pod("low2", 0));
        assert_eq!(pop_name(&q).await, "high");
        assert_eq!(pop_name(&q).await, "low");
        assert_eq!(pop_name(&q).await, "low2");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unschedulable_pod_waits_for_an_event_and_then_its_backoff() {
        let q = queue();
        q.add_or_update(pod("p", 0));
        let first = q.pop().await.expect("pod");
        // Another pod's attempt starts a new cycle, so no event raced with p's.
        q.add_or_update(pod("other", 0));
        let _ = q.pop().await;
        q.unschedulable(&first.info.uid, failed("NodeResourcesFit"));
        assert_eq!(q.depth().unschedulable, 1);
        let started = Instant::now();
        q.on_event(ClusterEvent::NodeAdd);
        assert_eq!(q.depth().backoff, 1, "still backing off after 1 attempt");
        assert_eq!(pop_name(&q).await, "p");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_maximum() {
        let q = queue();
        q.add_or_update(pod("p", 0));
        let mut waits = Vec::new();
        for _ in 0..6 {
            let p = q.pop().await.expect("pod");
            let started = Instant::now();
            q.retry_after_backoff(&p.info.uid);
            let _ = q.pop().await.expect("pod again");
            waits.push(started.elapsed().as_secs());
            q.retry_after_backoff(&p.info.uid);
        }
        assert_eq!(waits[..4], [1, 4, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_during_the_attempt_sends_the_pod_to_backoff_not_unschedulable() {
        let q = queue();
        q.add_or_update(pod("p", 0));
        let p = q.pop().await.expect("pod");
        q.on_event(ClusterEvent::NodeAdd);
        q.unschedulable(&p.info.uid, failed("NodeResourcesFit"));
        assert_eq!(q.depth().unschedulable, 0);
        assert_eq!(q.depth().backoff, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bound_pod_only_wakes_pods_rejected_by_affinity_or_spreading() {
        let q = queue();
        q.add_or_update(pod("fit", 0));
        q.add_or_update(pod("affinity", 0));
        let a = q.pop().await.expect("pod");
        let b = q.pop().await.expect("pod");
        q.add_or_update(pod("other", 0));
        let _ = q.pop().await;
        q.unschedulable(&a.info.uid, failed("NodeResourcesFit"));
        q.unschedulable(
            &b.info.uid,
            failed(crate::plugins::inter_pod_affinity::NAME),
        );
        q.on_event(ClusterEvent::AssignedPodAdd);
        assert_eq!(q.depth().unschedulable, 1);
        assert_eq!(q.depth().backoff, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_retried_after_the_maximum_wait_without_events() {
        let q = queue();
        q.add_or_update(pod("p", 0));
        let p = q.pop().await.expect("pod");
        q.add_or_update(pod("other", 0));
        let _ = q.pop().await;
        q.unschedulable(&p.info.uid, failed("NodeResourcesFit"));
        let started = Instant::now();
        assert_eq!(pop_name(&q).await, "p");
        assert!(started.elapsed() >= Duration::from_secs(300));
        assert!(started.elapsed() <= Duration::from_secs(330));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_pod_is_never_popped() {
        let q = queue();
        q.add_or_update(pod("gone", 10));
        q.add_or_update(pod("kept", 0));
        q.delete("uid-gone");
        assert_eq!(pop_name(&q).await, "kept");
        assert_eq!(q.depth(), Depth::default());
    }
}

//! Which pods a ReplicaSet deletes first on scale-down, and the status it
//! reports: pure functions over pods, as Kubernetes' `ActivePods` ordering
//! and `calculateStatus`.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::podutil::{is_available, is_ready, ready_since};

/// The annotation lowering a pod's value: lower cost is deleted first.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Orders `a` before `b` when `a` is less valuable, i.e. should be deleted
/// first: unscheduled before scheduled, pending before unknown before
/// running, not ready before ready, lower deletion cost first, ready for a
/// shorter time first, more restarts first, newer first.
pub fn less_valuable_first(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| {
            // Both ready: the one ready more recently goes first.
            match (ready_since(a).flatten(), ready_since(b).flatten()) {
                (Some(ta), Some(tb)) => tb.cmp(&ta),
                _ => Ordering::Equal,
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// The `count` pods to delete first out of `pods`.
pub fn pods_to_delete(mut pods: Vec<&Pod>, count: usize) -> Vec<&Pod> {
    pods.sort_by(|a, b| less_valuable_first(a, b));
    pods.truncate(count);
    pods
}

/// A ReplicaSet's status from its active pods (`template_labels` decide
/// `fullyLabeledReplicas`), keeping its conditions.
pub fn calculate_status(
    previous: Option<&ReplicaSetStatus>,
    active: &[&Pod],
    template_labels: &std::collections::BTreeMap<String, String>,
    min_ready_seconds: i32,
    generation: Option<i64>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    let fully_labeled = count(&|p: &Pod| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&is_ready)),
        available_replicas: Some(count(&|p: &Pod| is_available(p, min_ready_seconds, now))),
        observed_generation: generation,
        conditions: previous.and_then(|s| s.conditions.clone()),
        terminating_replicas: previous.and_then(|s| s.terminating_replicas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::testing::*;

    fn names(pods: Vec<&Pod>) -> Vec<String> {
        pods.into_iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn unscheduled_pods_are_deleted_before_scheduled_ones() {
        let a = pod("scheduled").node("n1").phase("Running").ready_at(1);
        let b = pod("unscheduled");
        assert_eq!(names(pods_to_delete(vec![&a, &b], 1)), ["unscheduled"]);
    }

    #[test]
    fn pending_pods_go_before_running_ones_and_not_ready_before_ready() {
        let running_ready = pod("rr").node("n").phase("Running").ready_at(1);
        let running = pod("r").node("n").phase("Running");
        let pending = pod("p").node("n");
        assert_eq!(
            names(pods_to_delete(vec![&running_ready, &running, &pending], 3)),
            ["p", "r", "rr"]
        );
    }

    #[test]
    fn among_equals_the_newest_pod_goes_first() {
        let old = pod("old").created_at(10);
        let new = pod("new").created_at(20);
        assert_eq!(names(pods_to_delete(vec![&old, &new], 1)), ["new"]);
    }

    #[test]
    fn the_pod_ready_most_recently_goes_first() {
        let long = pod("long").node("n").phase("Running").ready_at(10);
        let short = pod("short").node("n").phase("Running").ready_at(50);
        assert_eq!(names(pods_to_delete(vec![&long, &short], 1)), ["short"]);
    }

    #[test]
    fn status_counts_ready_and_available_pods_separately() {
        let a = pod("a").ready_at(0);
        let b = pod("b").ready_at(95);
        let c = pod("c");
        let status = calculate_status(
            None,
            &[&a, &b, &c],
            &Default::default(),
            10,
            Some(3),
            ts(100),
        );
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(3));
    }
}

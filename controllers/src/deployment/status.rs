//! Deployment status and conditions, as `kubectl rollout status` and
//! `kubectl wait --for=condition=Available` read them (Kubernetes'
//! `calculateStatus`, `syncRolloutStatus` and the progress helpers).

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

fn rs_status<T>(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> T,
) -> Option<T> {
    rs.status.as_ref().map(f)
}

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
        last_update_time: Some(Time(now)),
    }
}

pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Sets a condition; an unchanged status keeps its lastTransitionTime, and
/// an unchanged status and reason keeps the condition as it is.
pub fn set(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|c| c.type_ == cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != cond.type_);
    conds.push(cond);
}

pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// Counts from the ReplicaSets, plus the Available condition.
pub fn calculate(
    previous: Option<&DeploymentStatus>,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    desired: i32,
    max_unavailable: i32,
    generation: Option<i64>,
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let available = sum(&|rs| rs_status(rs, |s| s.available_replicas.unwrap_or(0)).unwrap_or(0));
    let spec_total = sum(&|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    let mut status = DeploymentStatus {
        observed_generation: generation,
        replicas: Some(sum(&|rs| rs_status(rs, |s| s.replicas).unwrap_or(0))),
        updated_replicas: Some(
            new.and_then(|rs| rs_status(rs, |s| s.replicas))
                .unwrap_or(0),
        ),
        ready_replicas: Some(sum(&|rs| {
            rs_status(rs, |s| s.ready_replicas.unwrap_or(0)).unwrap_or(0)
        })),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        collision_count: previous.and_then(|p| p.collision_count),
        conditions: previous.and_then(|p| p.conditions.clone()),
        terminating_replicas: None,
    };
    let cond = if available >= desired - max_unavailable {
        condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set(&mut status, cond);
    status
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// All replicas updated and available, and the latest spec observed.
pub fn complete(desired: i32, generation: Option<i64>, s: &DeploymentStatus) -> bool {
    n(s.updated_replicas) == desired
        && n(s.replicas) == desired
        && n(s.available_replicas) == desired
        && s.observed_generation >= generation
}

/// Whether the rollout moved forward between `old` and `new`.
pub fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// When the Progressing condition was last updated, if the rollout is
/// still running and a deadline applies.
pub fn progress_deadline_at(s: &DeploymentStatus, deadline_seconds: i32) -> Option<Timestamp> {
    let c = get(s, PROGRESSING)?;
    if c.reason.as_deref() == Some(NEW_RS_AVAILABLE) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let at = c.last_update_time.as_ref()?.0.as_second() + i64::from(deadline_seconds);
    Timestamp::from_second(at).ok()
}

/// Whether the rollout has not progressed within the deadline.
pub fn timed_out(s: &DeploymentStatus, deadline_seconds: i32, now: Timestamp) -> bool {
    match get(s, PROGRESSING) {
        Some(c) if c.reason.as_deref() == Some(TIMED_OUT) => true,
        _ => progress_deadline_at(s, deadline_seconds).is_some_and(|at| at < now),
    }
}

/// Sets Progressing after a sync of a rollout (`syncRolloutStatus`).
pub fn update_progress(
    old: &DeploymentStatus,
    new: &mut DeploymentStatus,
    desired: i32,
    generation: Option<i64>,
    deadline_seconds: Option<i32>,
    new_rs_name: Option<&str>,
    now: Timestamp,
) {
    let Some(deadline) = deadline_seconds else {
        remove(new, PROGRESSING);
        return;
    };
    let cur = get(old, PROGRESSING).cloned();
    let is_complete = n(new.replicas) == n(new.updated_replicas)
        && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if is_complete {
        return;
    }
    let rs = new_rs_name.unwrap_or_default();
    if complete(desired, generation, new) {
        set(
            new,
            condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                format!("ReplicaSet \"{rs}\" has successfully progressed."),
                now,
            ),
        );
    } else if progressing(old, new) {
        let mut c = condition(
            PROGRESSING,
            "True",
            RS_UPDATED,
            format!("ReplicaSet \"{rs}\" is progressing."),
            now,
        );
        if let Some(cur) = cur.filter(|c| c.status == "True") {
            c.last_transition_time = cur.last_transition_time;
        }
        remove(new, PROGRESSING);
        set(new, c);
    } else if timed_out(new, deadline, now) {
        set(
            new,
            condition(
                PROGRESSING,
                "False",
                TIMED_OUT,
                format!("ReplicaSet \"{rs}\" has timed out progressing."),
                now,
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn status(replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ready_replicas: Some(available),
            observed_generation: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn a_condition_with_the_same_status_keeps_its_transition_time() {
        let mut s = DeploymentStatus::default();
        set(
            &mut s,
            condition(PROGRESSING, "True", NEW_RS_CREATED, "a".into(), ts(1)),
        );
        set(
            &mut s,
            condition(PROGRESSING, "True", RS_UPDATED, "b".into(), ts(5)),
        );
        let c = get(&s, PROGRESSING).expect("condition");
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(c.last_transition_time, Some(Time(ts(1))));
        assert_eq!(c.last_update_time, Some(Time(ts(5))));
    }

    #[test]
    fn a_finished_rollout_reports_new_replicaset_available() {
        let old = status(3, 2, 2);
        let mut new = status(3, 3, 3);
        update_progress(&old, &mut new, 3, Some(1), Some(600), Some("web-1"), ts(10));
        assert_eq!(
            get(&new, PROGRESSING).and_then(|c| c.reason.as_deref()),
            Some(NEW_RS_AVAILABLE)
        );
    }

    #[test]
    fn a_stuck_rollout_times_out_after_the_progress_deadline() {
        let mut old = status(3, 1, 2);
        set(
            &mut old,
            condition(PROGRESSING, "True", RS_UPDATED, "x".into(), ts(0)),
        );
        let mut new = old.clone();
        update_progress(&old, &mut new, 3, Some(1), Some(60), Some("web-1"), ts(30));
        assert_eq!(
            get(&new, PROGRESSING).map(|c| c.status.as_str()),
            Some("True")
        );
        let mut new = old.clone();
        update_progress(&old, &mut new, 3, Some(1), Some(60), Some("web-1"), ts(61));
        let c = get(&new, PROGRESSING).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some(TIMED_OUT))
        );
    }

    #[test]
    fn availability_honours_max_unavailable() {
        let rs = ReplicaSet {
            status: Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                replicas: 3,
                available_replicas: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = calculate(None, &[&rs], Some(&rs), 3, 1, Some(1), ts(0));
        assert_eq!(get(&s, AVAILABLE).map(|c| c.status.as_str()), Some("True"));
        let s = calculate(None, &[&rs], Some(&rs), 3, 0, Some(1), ts(0));
        assert_eq!(get(&s, AVAILABLE).map(|c| c.status.as_str()), Some("False"));
    }
}

//! The pure part of a Job sync, as Kubernetes 1.33's job controller: the
//! counts of its pods, whether it met its success criteria (completions)
//! or its failure target (backoffLimit, activeDeadlineSeconds), how many
//! pods to create or delete, and its conditions: `SuccessCriteriaMet` /
//! `FailureTarget` first, then `Complete` / `Failed` once no pod is left
//! running.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::podutil::is_ready;

pub const REASON_COMPLETIONS: &str = "CompletionsReached";
pub const MESSAGE_COMPLETIONS: &str = "Reached expected number of succeeded pods";
pub const REASON_BACKOFF: &str = "BackoffLimitExceeded";
pub const MESSAGE_BACKOFF: &str = "Job has reached the specified backoff limit";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const MESSAGE_DEADLINE: &str = "Job was active longer than specified deadline";

/// Kubernetes' pod failure backoff: 10 s, doubling, at most 6 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// What one sync decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: JobStatus,
    /// Pods to create now.
    pub create: usize,
    /// Names of active pods to delete.
    pub delete: Vec<String>,
    /// Come back after this long (pod failure backoff).
    pub wait: Option<Duration>,
    /// `(type, reason, message)` of a condition added in this sync.
    pub added: Option<(String, String, String)>,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

pub fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job reached a terminal condition, and when.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    ["Complete", "Failed"].iter().find_map(|t| {
        condition(job, t).map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(Timestamp::now)
        })
    })
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// When a failed pod finished: its containers' finish time, else when it
/// stopped being ready.
fn failed_at(p: &Pod) -> Option<Timestamp> {
    let status = p.status.as_ref()?;
    let finished = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished.or_else(|| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    })
}

/// How long to wait before replacing failed pods: 10 s after the last
/// failure, doubling per failure.
pub fn backoff_remaining(pods: &[&Pod], failed: i32, now: Timestamp) -> Option<Duration> {
    if failed <= 0 {
        return None;
    }
    let last = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| failed_at(p))
        .max()?;
    let delay = BACKOFF_BASE
        .saturating_mul(1 << (failed - 1).min(10))
        .min(BACKOFF_MAX);
    let since = now.duration_since(last);
    let since = Duration::try_from(since).unwrap_or_default();
    delay.checked_sub(since).filter(|d| !d.is_zero())
}

/// Decides one sync of `job` over its pods (any phase, not yet deleted).
pub fn decide(job: &Job, pods: &[&Pod], now: Timestamp) -> Decision {
    let spec = job.spec.clone().unwrap_or_default();
    let prev = job.status.clone().unwrap_or_default();
    let terminal = |p: &&&Pod| matches!(phase(p), "Succeeded" | "Failed");
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| !terminal(p) && p.metadata.deletion_timestamp.is_none())
        .copied()
        .collect();
    let count = |ph: &str| pods.iter().filter(|p| phase(p) == ph).count() as i32;
    let succeeded = prev.succeeded.unwrap_or(0).max(count("Succeeded"));
    let failed = prev.failed.unwrap_or(0).max(count("Failed"));
    let terminating = pods
        .iter()
        .filter(|p| !terminal(p) && p.metadata.deletion_timestamp.is_some())
        .count() as i32;
    let mut status = JobStatus {
        active: Some(active.len() as i32),
        ready: Some(active.iter().filter(|p| is_ready(p)).count() as i32),
        succeeded: Some(succeeded),
        failed: Some(failed),
        terminating: Some(terminating),
        start_time: prev.start_time.clone(),
        completion_time: prev.completion_time.clone(),
        conditions: prev.conditions.clone(),
        ..Default::default()
    };
    let mut decision = Decision {
        status: JobStatus::default(),
        create: 0,
        delete: Vec::new(),
        wait: None,
        added: None,
    };
    let suspended = spec.suspend == Some(true);
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }
    let mut add = |status: &mut JobStatus, type_: &str, reason: &str, message: &str| {
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(new_condition(type_, reason, message, now));
        decision.added = Some((type_.into(), reason.into(), message.into()));
    };

    // Failure target: too many failures or past the deadline.
    if !has_condition(&status, "FailureTarget") && !has_condition(&status, "SuccessCriteriaMet") {
        let restarts: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active
                .iter()
                .flat_map(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.container_statuses.iter().flatten())
                })
                .map(|c| c.restart_count)
                .sum()
        } else {
            0
        };
        let limit = spec.backoff_limit.unwrap_or(6);
        let past_deadline = spec.active_deadline_seconds.is_some_and(|d| {
            status.start_time.as_ref().is_some_and(|s| {
                s.0.saturating_add(SignedDuration::from_secs(d))
                    .is_ok_and(|end| end <= now)
            })
        });
        if failed + restarts > limit {
            add(
                &mut status,
                "FailureTarget",
                REASON_BACKOFF,
                MESSAGE_BACKOFF,
            );
        } else if past_deadline {
            add(
                &mut status,
                "FailureTarget",
                REASON_DEADLINE,
                MESSAGE_DEADLINE,
            );
        }
    }
    // Success criteria: enough completions (or, without completions, any
    // success with nothing left running).
    let succeeded_enough = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    if succeeded_enough
        && !has_condition(&status, "SuccessCriteriaMet")
        && !has_condition(&status, "FailureTarget")
    {
        add(
            &mut status,
            "SuccessCriteriaMet",
            REASON_COMPLETIONS,
            MESSAGE_COMPLETIONS,
        );
    }

    let finishing = ["FailureTarget", "SuccessCriteriaMet"]
        .into_iter()
        .find(|t| has_condition(&status, t));
    if let Some(target) = finishing {
        decision.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let settled = active.is_empty() && terminating == 0;
        let (final_type, source) = if target == "FailureTarget" {
            ("Failed", target)
        } else {
            ("Complete", target)
        };
        if settled && !has_condition(&status, final_type) {
            let src = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == source)
                .cloned()
                .unwrap_or_default();
            add(
                &mut status,
                final_type,
                src.reason.as_deref().unwrap_or_default(),
                src.message.as_deref().unwrap_or_default(),
            );
            if final_type == "Complete" {
                status.completion_time = Some(Time(now));
            }
        }
    } else if suspended {
        decision.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
    } else {
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let want = match spec.completions {
            Some(c) => parallelism.min((c - succeeded).max(0)),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        if want > active.len() {
            match backoff_remaining(pods, failed, now) {
                Some(wait) => decision.wait = Some(wait),
                None => decision.create = want - active.len(),
            }
        } else if want < active.len() {
            // The newest pods go first.
            let mut newest: Vec<&Pod> = active.clone();
            newest.sort_by(|a, b| {
                b.metadata
                    .creation_timestamp
                    .cmp(&a.metadata.creation_timestamp)
            });
            decision.delete = newest
                .iter()
                .take(active.len() - want)
                .filter_map(|p| p.metadata.name.clone())
                .collect();
        }
    }
    decision.status = status;
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::testing::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::PodCondition;

    fn job(completions: Option<i32>, parallelism: i32, backoff: i32) -> Job {
        Job {
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(backoff),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn failed(name: &str, at: i64) -> Pod {
        let mut p = pod(name).phase("Failed");
        if let Some(s) = p.status.as_mut() {
            s.conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(Time(ts(at))),
                ..Default::default()
            }]);
        }
        p
    }

    fn types(d: &Decision) -> Vec<String> {
        d.status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect()
    }

    #[test]
    fn a_new_job_starts_parallelism_pods_bounded_by_remaining_completions() {
        let d = decide(&job(Some(3), 2, 6), &[], ts(10));
        assert_eq!(d.create, 2);
        assert_eq!(d.status.start_time, Some(Time(ts(10))));
        let done = [pod("a").phase("Succeeded"), pod("b").phase("Succeeded")];
        let refs: Vec<&Pod> = done.iter().collect();
        assert_eq!(decide(&job(Some(3), 2, 6), &refs, ts(10)).create, 1);
    }

    #[test]
    fn reaching_completions_adds_success_criteria_met_then_complete() {
        let done: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("p{i}")).phase("Succeeded"))
            .collect();
        let refs: Vec<&Pod> = done.iter().collect();
        let d = decide(&job(Some(3), 2, 6), &refs, ts(20));
        assert_eq!(types(&d), ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(d.status.succeeded, Some(3));
        assert_eq!(d.status.completion_time, Some(Time(ts(20))));
        let c = &d.status.conditions.as_ref().expect("conditions")[1];
        assert_eq!(c.reason.as_deref(), Some(REASON_COMPLETIONS));
    }

    #[test]
    fn complete_waits_until_no_pod_is_left_running() {
        let pods = [pod("a").phase("Succeeded"), pod("b").phase("Running")];
        let refs: Vec<&Pod> = pods.iter().collect();
        let d = decide(&job(Some(1), 2, 6), &refs, ts(20));
        assert_eq!(types(&d), ["SuccessCriteriaMet"]);
        assert_eq!(d.delete, ["b"]);
    }

    #[test]
    fn more_failures_than_the_backoff_limit_fail_the_job() {
        let pods = [failed("a", 1), failed("b", 12)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let d = decide(&job(Some(1), 1, 1), &refs, ts(30));
        assert_eq!(types(&d), ["FailureTarget", "Failed"]);
        let c = &d.status.conditions.as_ref().expect("conditions")[1];
        assert_eq!(c.reason.as_deref(), Some(REASON_BACKOFF));
        assert_eq!(d.status.failed, Some(2));
        assert_eq!(d.status.completion_time, None);
        assert_eq!(d.create, 0);
    }

    #[test]
    fn failed_pods_are_replaced_after_an_exponential_backoff() {
        let pods = [failed("a", 100)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let d = decide(&job(Some(1), 1, 6), &refs, ts(104));
        assert_eq!((d.create, d.wait), (0, Some(Duration::from_secs(6))));
        assert_eq!(decide(&job(Some(1), 1, 6), &refs, ts(110)).create, 1);
        let two = [failed("a", 90), failed("b", 100)];
        let refs: Vec<&Pod> = two.iter().collect();
        assert_eq!(
            backoff_remaining(&refs, 2, ts(110)),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn counts_never_go_down_when_finished_pods_disappear() {
        let mut j = job(Some(5), 1, 6);
        j.status = Some(JobStatus {
            succeeded: Some(2),
            ..Default::default()
        });
        let d = decide(&j, &[], ts(1));
        assert_eq!(d.status.succeeded, Some(2));
    }

    #[test]
    fn a_job_past_its_active_deadline_fails() {
        let mut j = job(Some(1), 1, 6);
        if let Some(s) = j.spec.as_mut() {
            s.active_deadline_seconds = Some(5);
        }
        j.status = Some(JobStatus {
            start_time: Some(Time(ts(0))),
            ..Default::default()
        });
        let running = [pod("a").phase("Running")];
        let refs: Vec<&Pod> = running.iter().collect();
        let d = decide(&j, &refs, ts(6));
        assert_eq!(types(&d), ["FailureTarget"]);
        assert_eq!(d.delete, ["a"]);
    }
}

//! One autoscaling decision, as Kubernetes' `reconcileAutoscaler` between
//! reading the Scale and writing it: bounds, every metric's proposal (the
//! largest wins), behavior, and the conditions explaining the result. No
//! writes happen here; [`Plan::finish`] takes the outcome of the Scale
//! update.

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::behavior::{self, History};
use super::metric::{self, Failure};
use super::metrics::MetricsSource;
use super::replicas::Calculator;
use super::status::{set_condition, set_status, ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED};
use crate::events::EventType;

/// The pods of the target, as the reconcile could list them.
#[derive(Clone, Copy, Debug)]
pub enum Pods<'a> {
    Listed(&'a [Pod]),
    /// The Scale has no `status.selector`.
    MissingSelector,
    /// The selector does not parse (the parser's message).
    InvalidSelector(&'a str),
    /// Other HPAs select some of the same pods (the message names them).
    Ambiguous(&'a str),
}

/// An event to record on the HPA.
#[derive(Clone, Debug)]
pub struct Event {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What to do: the new status, maybe a rescale, events, and an error to
/// report (the status is written either way).
#[derive(Clone, Debug)]
pub struct Plan {
    pub status: HorizontalPodAutoscalerStatus,
    pub current: i32,
    /// `Some(desired)` when the Scale must change.
    pub rescale: Option<i32>,
    pub reason: String,
    pub metrics: Option<Vec<MetricStatus>>,
    pub events: Vec<Event>,
    pub error: Option<String>,
}

impl Plan {
    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.events.push(Event {
            type_,
            reason,
            message,
        });
    }

    /// Applies the Scale update's outcome: `SucceededRescale` and a
    /// `SuccessfulRescale` event, or `FailedUpdateScale`.
    pub fn finish(
        mut self,
        result: Result<(), String>,
        history: &mut History,
        rules: (&behavior::Rules, &behavior::Rules),
        now: Timestamp,
        instant: Instant,
    ) -> Self {
        let Some(desired) = self.rescale else {
            return self;
        };
        match result {
            Ok(()) => {
                set_condition(
                    &mut self.status,
                    ABLE_TO_SCALE,
                    true,
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                    now,
                );
                let message = format!("New size: {desired}; reason: {}", self.reason);
                self.event(EventType::Normal, "SuccessfulRescale", message);
                history.record_scale(rules.0, rules.1, self.current, desired, instant);
                let metrics = self.metrics.take();
                set_status(&mut self.status, self.current, desired, metrics, true, now);
            }
            Err(e) => {
                let message = format!("New size: {desired}; reason: {}; error: {e}", self.reason);
                self.event(EventType::Warning, "FailedRescale", message);
                set_condition(
                    &mut self.status,
                    ABLE_TO_SCALE,
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                    now,
                );
                let desired = self.status.desired_replicas;
                let metrics = self.metrics.take();
                set_status(&mut self.status, self.current, desired, metrics, false, now);
                self.error = Some(format!("failed to rescale: {e}"));
            }
        }
        self
    }
}

/// The inputs of one decision.
pub struct Inputs<'a> {
    pub hpa: &'a HorizontalPodAutoscaler,
    pub scale: &'a Scale,
    pub pods: Pods<'a>,
    pub metrics: &'a dyn MetricsSource,
    pub calculator: Calculator,
    pub rules: (&'a behavior::Rules, &'a behavior::Rules),
    pub now: Timestamp,
    pub instant: Instant,
}

/// Decides the new size and status of `inputs.hpa`.
pub async fn decide(inputs: Inputs<'_>, history: &mut History) -> Plan {
    let Inputs {
        hpa,
        scale,
        now,
        instant,
        ..
    } = inputs;
    let spec = hpa.spec.as_ref();
    let mut status = hpa.status.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    set_condition(
        &mut status,
        ABLE_TO_SCALE,
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    history.record_initial(current, instant);
    let min = spec.and_then(|s| s.min_replicas).unwrap_or(1);
    let max = spec.map_or(0, |s| s.max_replicas);
    let mut plan = Plan {
        status,
        current,
        rescale: None,
        reason: String::new(),
        metrics: None,
        events: Vec::new(),
        error: None,
    };
    let desired;
    if current == 0 && min != 0 {
        desired = 0;
        set_condition(
            &mut plan.status,
            SCALING_ACTIVE,
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
    } else if current > max {
        plan.reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        plan.reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let specs = spec.and_then(|s| s.metrics.as_deref()).unwrap_or_default();
        let Some((proposal, metric)) = for_metrics(&inputs, specs, &mut plan).await else {
            let desired = plan.status.desired_replicas;
            let metrics = plan.metrics.take();
            set_status(&mut plan.status, current, desired, metrics, false, now);
            return plan;
        };
        if proposal > current {
            plan.reason = format!("{metric} above target");
        } else if proposal < current {
            plan.reason = "All metrics below target".into();
        }
        let n = history.normalize(
            inputs.rules.0,
            inputs.rules.1,
            min,
            max,
            current,
            proposal,
            instant,
        );
        set_condition(
            &mut plan.status,
            ABLE_TO_SCALE,
            true,
            n.able_reason,
            n.able_message,
            now,
        );
        set_condition(
            &mut plan.status,
            SCALING_LIMITED,
            n.limited,
            n.limited_reason,
            n.limited_message,
            now,
        );
        desired = n.desired;
    }
    if desired != current {
        plan.rescale = Some(desired);
        // The status is completed by `Plan::finish`.
        return plan;
    }
    let metrics = plan.metrics.take();
    set_status(&mut plan.status, current, current, metrics, false, now);
    plan
}

/// `computeReplicasForMetrics`: the largest proposal and its metric, or
/// `None` when no proposal can be trusted (all metrics failed, or some
/// failed and the others would scale down).
async fn for_metrics(
    inputs: &Inputs<'_>,
    specs: &[MetricSpec],
    plan: &mut Plan,
) -> Option<(i32, String)> {
    let now = inputs.now;
    let pods = match inputs.pods {
        Pods::Listed(p) => p,
        Pods::MissingSelector => {
            plan.event(
                EventType::Warning,
                "SelectorRequired",
                "selector is required".into(),
            );
            set_condition(
                &mut plan.status,
                SCALING_ACTIVE,
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
                now,
            );
            plan.error = Some("selector is required".into());
            return None;
        }
        Pods::Ambiguous(message) => {
            plan.event(EventType::Warning, "AmbiguousSelector", message.to_string());
            set_condition(
                &mut plan.status,
                SCALING_ACTIVE,
                false,
                "AmbiguousSelector",
                message,
                now,
            );
            plan.error = Some(message.to_string());
            return None;
        }
        Pods::InvalidSelector(e) => {
            let message = format!(
                "couldn't convert selector into a corresponding internal selector object: {e}"
            );
            plan.event(EventType::Warning, "InvalidSelector", message.clone());
            set_condition(
                &mut plan.status,
                SCALING_ACTIVE,
                false,
                "InvalidSelector",
                message.clone(),
                now,
            );
            plan.error = Some(message);
            return None;
        }
    };
    let spec_replicas = plan.current;
    let mut statuses = Vec::with_capacity(specs.len());
    let mut best: Option<(i32, String)> = None;
    let mut first_failure: Option<Failure> = None;
    let mut failures = 0usize;
    for spec in specs {
        match metric::for_metric(inputs, spec, spec_replicas, pods).await {
            Ok(p) => {
                statuses.push(p.status);
                if best
                    .as_ref()
                    .is_none_or(|(r, _)| *r == 0 || p.replicas > *r)
                {
                    best = Some((p.replicas, p.metric));
                }
            }
            Err(f) => {
                statuses.push(MetricStatus::default());
                plan.event(EventType::Warning, f.reason, f.error.clone());
                failures += 1;
                first_failure.get_or_insert(f);
            }
        }
    }
    plan.metrics = Some(statuses);
    let replicas = best.as_ref().map_or(0, |(r, _)| *r);
    if let Some(f) = first_failure {
        let error = format!(
            "invalid metrics ({failures} invalid out of {}), first error is: {}",
            specs.len(),
            f.error
        );
        if failures >= specs.len() || replicas < spec_replicas {
            set_condition(
                &mut plan.status,
                SCALING_ACTIVE,
                false,
                f.reason,
                format!(
                    "the HPA was unable to compute the replica count: {}",
                    f.error
                ),
                now,
            );
            plan.event(
                EventType::Warning,
                "FailedComputeMetricsReplicas",
                error.clone(),
            );
            plan.error = Some(error);
            return None;
        }
        plan.error = Some(error);
    }
    let (replicas, metric) = best?;
    set_condition(
        &mut plan.status,
        SCALING_ACTIVE,
        true,
        "ValidMetricFound",
        format!("the HPA was able to successfully calculate a replica count from {metric}"),
        now,
    );
    Some((replicas, metric))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

//! HPA conditions and status, as Kubernetes' `setCondition` / `setStatus`:
//! a condition's `lastTransitionTime` moves only when its status changes.

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const ABLE_TO_SCALE: &str = "AbleToScale";
pub const SCALING_ACTIVE: &str = "ScalingActive";
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Sets condition `type_` (appended if absent).
pub fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let index = match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.to_string(),
                ..Default::default()
            });
            conditions.len() - 1
        }
    };
    let c = &mut conditions[index];
    if c.status != value {
        c.last_transition_time = Some(Time(now));
    }
    c.status = value.to_string();
    c.reason = Some(reason.to_string());
    c.message = Some(message.into());
}

/// The condition `type_`, if set.
#[cfg(test)]
pub fn condition<'a>(
    status: &'a HorizontalPodAutoscalerStatus,
    type_: &str,
) -> Option<&'a HorizontalPodAutoscalerCondition> {
    status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == type_)
}

/// `setStatus`: replicas and metrics; `lastScaleTime` moves on a rescale.
pub fn set_status(
    status: &mut HorizontalPodAutoscalerStatus,
    current: i32,
    desired: i32,
    metrics: Option<Vec<MetricStatus>>,
    rescaled: bool,
    now: Timestamp,
) {
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.current_metrics = metrics.filter(|m| !m.is_empty());
    if rescaled {
        status.last_scale_time = Some(Time(now));
    }
}

/// The status as a merge patch body that also clears absent fields, so
/// the patch replaces the status as an update would.
pub fn patch_body(status: &HorizontalPodAutoscalerStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        for key in [
            "conditions",
            "currentMetrics",
            "currentReplicas",
            "lastScaleTime",
            "observedGeneration",
        ] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::testing::ts;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut s = HorizontalPodAutoscalerStatus::default();
        set_condition(&mut s, ABLE_TO_SCALE, true, "A", "a", ts(10));
        set_condition(&mut s, ABLE_TO_SCALE, true, "B", "b", ts(20));
        let c = condition(&s, ABLE_TO_SCALE).expect("set");
        assert_eq!(c.last_transition_time, Some(Time(ts(10))));
        assert_eq!(c.reason.as_deref(), Some("B"));
        set_condition(&mut s, ABLE_TO_SCALE, false, "C", "c", ts(30));
        let c = condition(&s, ABLE_TO_SCALE).expect("set");
        assert_eq!(c.last_transition_time, Some(Time(ts(30))));
        assert_eq!(s.conditions.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn the_status_patch_clears_fields_that_are_gone() {
        let s = HorizontalPodAutoscalerStatus {
            desired_replicas: 3,
            ..Default::default()
        };
        let body = patch_body(&s);
        assert_eq!(body["status"]["desiredReplicas"], 3);
        assert!(body["status"]["currentMetrics"].is_null());
        assert!(body["status"]
            .as_object()
            .is_some_and(|m| m.contains_key("currentMetrics")));
    }
}

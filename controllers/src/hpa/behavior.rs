//! `spec.behavior`: stabilization windows over recent recommendations and
//! scale-rate policies over recent scale events, as Kubernetes'
//! `normalizeDesiredReplicasWithBehaviors`.
//!
//! An HPA without `behavior` gets Kubernetes' documented defaults: scale up
//! with no stabilization by at most max(100%, 4 pods) per 15 s; scale down
//! with the controller's downscale stabilization window (300 s) by at most
//! 100% per 15 s. (Upstream's nil-behavior path instead caps a scale-up at
//! max(2 × current, 4) per sync without remembering events; with a 1 s sync
//! that would allow doubling every second.)

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use tokio::time::Instant;

/// How the policies' limits combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// A limit on the change over `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Pods { value: i32, period: Duration },
    Percent { value: i32, period: Duration },
}

impl Policy {
    fn period(&self) -> Duration {
        match self {
            Policy::Pods { period, .. } | Policy::Percent { period, .. } => *period,
        }
    }
}

/// The rules of one direction, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

const DEFAULT_PERIOD: Duration = Duration::from_secs(15);

fn rules(given: Option<&HPAScalingRules>, default: Rules) -> Rules {
    let Some(given) = given else {
        return default;
    };
    let policies: Vec<Policy> = match given.policies.as_deref() {
        Some(ps) if !ps.is_empty() => ps
            .iter()
            .filter_map(|p| {
                let period = Duration::from_secs(u64::try_from(p.period_seconds).ok()?);
                match p.type_.as_str() {
                    "Pods" => Some(Policy::Pods {
                        value: p.value,
                        period,
                    }),
                    "Percent" => Some(Policy::Percent {
                        value: p.value,
                        period,
                    }),
                    _ => None,
                }
            })
            .collect(),
        _ => default.policies,
    };
    Rules {
        stabilization: given
            .stabilization_window_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(default.stabilization, Duration::from_secs),
        select: match given.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some("Max") => Select::Max,
            _ => default.select,
        },
        policies,
    }
}

/// Scale-up rules: stabilization 0, max(4 pods, 100%) per 15 s by default.
pub fn scale_up_rules(behavior: Option<&HorizontalPodAutoscalerBehavior>) -> Rules {
    rules(
        behavior.and_then(|b| b.scale_up.as_ref()),
        Rules {
            stabilization: Duration::ZERO,
            select: Select::Max,
            policies: vec![
                Policy::Pods {
                    value: 4,
                    period: DEFAULT_PERIOD,
                },
                Policy::Percent {
                    value: 100,
                    period: DEFAULT_PERIOD,
                },
            ],
        },
    )
}

/// Scale-down rules: `downscale_stabilization` (300 s), 100% per 15 s.
pub fn scale_down_rules(
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    downscale_stabilization: Duration,
) -> Rules {
    rules(
        behavior.and_then(|b| b.scale_down.as_ref()),
        Rules {
            stabilization: downscale_stabilization,
            select: Select::Max,
            policies: vec![Policy::Percent {
                value: 100,
                period: DEFAULT_PERIOD,
            }],
        },
    )
}

/// What normalization decided, with the reasons for the `AbleToScale` and
/// `ScalingLimited` conditions.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    pub desired: i32,
    /// `ReadyForNewScale`, `ScaleUpStabilized` or `ScaleDownStabilized`.
    pub able_reason: &'static str,
    pub able_message: &'static str,
    /// Whether the rate or the bounds changed the stabilized recommendation.
    pub limited: bool,
    /// `DesiredWithinRange`, `ScaleUpLimit`, `ScaleDownLimit`,
    /// `TooManyReplicas` or `TooFewReplicas`.
    pub limited_reason: &'static str,
    pub limited_message: &'static str,
}

#[derive(Clone, Copy, Debug)]
struct ScaleEvent {
    change: i32,
    at: Instant,
}

/// One HPA's memory: recent unstabilized recommendations and scale events.
#[derive(Clone, Debug, Default)]
pub struct History {
    recommendations: Vec<(Instant, i32)>,
    up: Vec<ScaleEvent>,
    down: Vec<ScaleEvent>,
}

fn after(at: Instant, now: Instant, window: Duration) -> bool {
    match now.checked_sub(window) {
        Some(cutoff) => at > cutoff,
        None => true,
    }
}

fn changed_within(events: &[ScaleEvent], period: Duration, now: Instant) -> i32 {
    events
        .iter()
        .filter(|e| after(e.at, now, period))
        .map(|e| e.change)
        .sum()
}

fn longest(rules: &Rules) -> Duration {
    rules
        .policies
        .iter()
        .map(Policy::period)
        .max()
        .unwrap_or_default()
}

impl History {
    /// Records the current size as the first recommendation.
    pub fn record_initial(&mut self, current: i32, now: Instant) {
        if self.recommendations.is_empty() {
            self.recommendations.push((now, current));
        }
    }

    /// Stabilizes `desired`, then limits it by the policies and the bounds.
    #[allow(clippy::too_many_arguments)]
    pub fn normalize(
        &mut self,
        up: &Rules,
        down: &Rules,
        min: i32,
        max: i32,
        current: i32,
        desired: i32,
        now: Instant,
    ) -> Normalized {
        let stabilized = self.stabilize(up, down, current, desired, now);
        let (able_reason, able_message) = if stabilized == desired {
            ("ReadyForNewScale", "recommended size matches current size")
        } else if desired >= current {
            (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        };
        let (limited_to, limited_reason, limited_message) =
            self.limit_rate(up, down, min, max, current, stabilized, now);
        Normalized {
            desired: limited_to,
            able_reason,
            able_message,
            limited: limited_to != stabilized,
            limited_reason,
            limited_message,
        }
    }

    fn stabilize(
        &mut self,
        up: &Rules,
        down: &Rules,
        current: i32,
        desired: i32,
        now: Instant,
    ) -> i32 {
        let mut up_rec = desired;
        let mut down_rec = desired;
        for (at, rec) in &self.recommendations {
            if after(*at, now, up.stabilization) {
                up_rec = up_rec.min(*rec);
            }
            if after(*at, now, down.stabilization) {
                down_rec = down_rec.max(*rec);
            }
        }
        let keep = up.stabilization.max(down.stabilization);
        self.recommendations.retain(|(at, _)| after(*at, now, keep));
        self.recommendations.push((now, desired));
        current.max(up_rec).min(down_rec)
    }

    #[allow(clippy::too_many_arguments)]
    fn limit_rate(
        &self,
        up: &Rules,
        down: &Rules,
        min: i32,
        max: i32,
        current: i32,
        desired: i32,
        now: Instant,
    ) -> (i32, &'static str, &'static str) {
        if desired > current {
            let limit = self.scale_up_limit(up, current, now).max(current);
            let (allowed, reason, message) = if max > limit {
                (
                    limit,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )
            } else {
                (
                    max,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            };
            if desired > allowed {
                return (allowed, reason, message);
            }
        } else if desired < current {
            let limit = self.scale_down_limit(down, current, now).min(current);
            let (allowed, reason, message) = if min < limit {
                (
                    limit,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )
            } else {
                (
                    min,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            };
            if desired < allowed {
                return (allowed, reason, message);
            }
        }
        (
            desired,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    }

    fn period_start(&self, current: i32, period: Duration, now: Instant) -> i32 {
        current - changed_within(&self.up, period, now) + changed_within(&self.down, period, now)
    }

    /// `calculateScaleUpLimitWithScalingRules`.
    fn scale_up_limit(&self, rules: &Rules, current: i32, now: Instant) -> i32 {
        let pick: fn(i32, i32) -> i32 = match rules.select {
            Select::Disabled => return current,
            Select::Min => i32::min,
            Select::Max => i32::max,
        };
        let mut result = if rules.select == Select::Min {
            i32::MAX
        } else {
            i32::MIN
        };
        for p in &rules.policies {
            let start = self.period_start(current, p.period(), now);
            let proposed = match *p {
                Policy::Pods { value, .. } => start.saturating_add(value),
                Policy::Percent { value, .. } => {
                    (f64::from(start) * (1.0 + f64::from(value) / 100.0)).ceil() as i32
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    /// `calculateScaleDownLimitWithBehaviors`.
    fn scale_down_limit(&self, rules: &Rules, current: i32, now: Instant) -> i32 {
        let pick: fn(i32, i32) -> i32 = match rules.select {
            Select::Disabled => return current,
            Select::Min => i32::max,
            Select::Max => i32::min,
        };
        let mut result = if rules.select == Select::Min {
            i32::MIN
        } else {
            i32::MAX
        };
        for p in &rules.policies {
            let start = self.period_start(current, p.period(), now);
            let proposed = match *p {
                Policy::Pods { value, .. } => start.saturating_sub(value),
                Policy::Percent { value, .. } => {
                    (f64::from(start) * (1.0 - f64::from(value) / 100.0)) as i32
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    /// Records a rescale from `previous` to `new` for the rate policies.
    pub fn record_scale(
        &mut self,
        up: &Rules,
        down: &Rules,
        previous: i32,
        new: i32,
        now: Instant,
    ) {
        let (events, change) = if new > previous {
            (&mut self.up, new - previous)
        } else {
            (&mut self.down, previous - new)
        };
        // Scale-up limits look at scale-down events too (and back): keep
        // what the longest policy of either direction may still count.
        let keep = longest(up).max(longest(down));
        events.retain(|e| after(e.at, now, keep));
        events.push(ScaleEvent { change, at: now });
    }
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;

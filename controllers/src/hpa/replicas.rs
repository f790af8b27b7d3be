//! The replica calculator: Kubernetes' `replica_calculator.go` over pods and
//! metric samples already fetched. Pure: the caller passes the wall clock.
//!
//! usageRatio = current / target; no change while |1 - ratio| <= tolerance;
//! otherwise ceil(ratio × ready pods). Pods being deleted and failed pods
//! are ignored; pending pods (and, for cpu, pods still initializing) are
//! "unready": left out, then counted as using 0 when scaling up. Pods
//! without a sample count as using 100% of the target on a scale-down and
//! 0 on a scale-up; a correction that flips the direction means no change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::quantity::milli_value;

/// One pod's sample of a metric, in milli-units.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

/// Samples by pod name.
pub type PodMetricsInfo = BTreeMap<String, PodMetric>;

/// Why no replica count could be computed from the samples.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetricsForPods,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("no metrics returned matched known pods")]
    NoMatchingPods,
    #[error("the target value is zero")]
    ZeroTarget,
}

/// A utilization proposal: replicas, utilization (percent of request) and
/// the raw average value (milli-units).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Utilization {
    pub replicas: i32,
    pub utilization: i32,
    pub raw_average: i64,
}

/// The calculator's settings (see [`super::Config`]).
#[derive(Clone, Copy, Debug)]
pub struct Calculator {
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.saturating_add(d).unwrap_or(t)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Running with a True Ready condition.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && crate::podutil::is_ready(pod)
}

struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

impl Calculator {
    fn group_pods(
        &self,
        pods: &[Pod],
        metrics: &PodMetricsInfo,
        resource: Option<&str>,
        now: Timestamp,
    ) -> Groups {
        let mut g = Groups {
            ready: 0,
            unready: BTreeSet::new(),
            missing: BTreeSet::new(),
            ignored: BTreeSet::new(),
        };
        for pod in pods {
            let n = name(pod);
            if pod.metadata.deletion_timestamp.is_some() || phase(pod) == "Failed" {
                g.ignored.insert(n);
                continue;
            }
            if phase(pod) == "Pending" {
                g.unready.insert(n);
                continue;
            }
            let Some(metric) = metrics.get(&n) else {
                g.missing.insert(n);
                continue;
            };
            if resource == Some("cpu") && self.cpu_sample_unready(pod, metric, now) {
                g.unready.insert(n);
                continue;
            }
            g.ready += 1;
        }
        g
    }

    /// Whether a cpu sample is left out: the pod is unready, or still in its
    /// initialization period and the sample may predate readiness.
    fn cpu_sample_unready(&self, pod: &Pod, metric: &PodMetric, now: Timestamp) -> bool {
        let status = pod.status.as_ref();
        let condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        let (Some(condition), Some(start)) = (condition, start) else {
            return true;
        };
        let transition = condition
            .last_transition_time
            .as_ref()
            .map_or(start, |t| t.0);
        if plus(start, self.cpu_initialization_period) > now {
            condition.status == "False" || metric.timestamp < plus(transition, metric.window)
        } else {
            condition.status == "False" && plus(start, self.initial_readiness_delay) > transition
        }
    }

    /// `GetResourceReplicas`: a target utilization (percent of the pods'
    /// requests of `resource`, in `container` only if given).
    #[allow(clippy::too_many_arguments)]
    pub fn resource_replicas(
        &self,
        current: i32,
        target_utilization: i32,
        resource: &str,
        container: Option<&str>,
        pods: &[Pod],
        mut metrics: PodMetricsInfo,
        now: Timestamp,
    ) -> Result<Utilization, CalcError> {
        if pods.is_empty() {
            return Err(CalcError::NoPods);
        }
        if target_utilization == 0 {
            return Err(CalcError::ZeroTarget);
        }
        let g = self.group_pods(pods, &metrics, Some(resource), now);
        for n in g.ignored.iter().chain(&g.unready) {
            metrics.remove(n);
        }
        let requests = pod_requests(pods, container, resource)?;
        if metrics.is_empty() {
            return Err(CalcError::NoMetricsForPods);
        }
        let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target_utilization)?;
        let done = |replicas| Utilization {
            replicas,
            utilization,
            raw_average: raw,
        };
        let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && g.missing.is_empty() {
            if (1.0 - ratio).abs() <= self.tolerance {
                return Ok(done(current));
            }
            return Ok(done(ceil(ratio * g.ready as f64)));
        }
        if !g.missing.is_empty() {
            for n in &g.missing {
                let value = if ratio < 1.0 {
                    requests.get(n).copied().unwrap_or(0)
                } else if ratio > 1.0 {
                    0
                } else {
                    continue;
                };
                metrics.insert(n.clone(), sample(value));
            }
        }
        if scale_up_with_unready {
            for n in &g.unready {
                metrics.insert(n.clone(), sample(0));
            }
        }
        let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target_utilization)?;
        Ok(done(self.corrected(
            current,
            ratio,
            new_ratio,
            metrics.len(),
        )))
    }

    /// `calcPlainMetricReplicas`: a target average value per pod (Pods
    /// metrics, or a Resource/ContainerResource `AverageValue`).
    pub fn plain_replicas(
        &self,
        current: i32,
        target: i64,
        resource: Option<&str>,
        pods: &[Pod],
        mut metrics: PodMetricsInfo,
        now: Timestamp,
    ) -> Result<(i32, i64), CalcError> {
        if pods.is_empty() {
            return Err(CalcError::NoPods);
        }
        if target == 0 {
            return Err(CalcError::ZeroTarget);
        }
        let g = self.group_pods(pods, &metrics, resource, now);
        for n in g.ignored.iter().chain(&g.unready) {
            metrics.remove(n);
        }
        if metrics.is_empty() {
            return Err(CalcError::NoMetricsForPods);
        }
        let (ratio, usage) = usage_ratio(&metrics, target);
        let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && g.missing.is_empty() {
            if (1.0 - ratio).abs() <= self.tolerance {
                return Ok((current, usage));
            }
            return Ok((ceil(ratio * g.ready as f64), usage));
        }
        for n in &g.missing {
            let value = if ratio < 1.0 { target } else { 0 };
            metrics.insert(n.clone(), sample(value));
        }
        if scale_up_with_unready {
            for n in &g.unready {
                metrics.insert(n.clone(), sample(0));
            }
        }
        let (new_ratio, _) = usage_ratio(&metrics, target);
        Ok((
            self.corrected(current, ratio, new_ratio, metrics.len()),
            usage,
        ))
    }

    /// The second pass once missing and unready pods got assumed values:
    /// no change within the tolerance or when the direction flips.
    fn corrected(&self, current: i32, ratio: f64, new_ratio: f64, samples: usize) -> i32 {
        if (1.0 - new_ratio).abs() <= self.tolerance
            || (ratio < 1.0 && new_ratio > 1.0)
            || (ratio > 1.0 && new_ratio < 1.0)
        {
            return current;
        }
        let replicas = ceil(new_ratio * samples as f64);
        if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
            return current;
        }
        replicas
    }

    /// `GetObjectMetricReplicas` (Object metric, `Value` target): the
    /// object's value against the target, times the ready pods. With zero
    /// current replicas the ratio alone decides.
    pub fn object_replicas(
        &self,
        current: i32,
        usage: i64,
        target: i64,
        pods: &[Pod],
    ) -> Result<i32, CalcError> {
        if target == 0 {
            return Err(CalcError::ZeroTarget);
        }
        let ratio = usage as f64 / target as f64;
        if current == 0 {
            return Ok(ceil(ratio));
        }
        if (1.0 - ratio).abs() <= self.tolerance {
            return Ok(current);
        }
        if pods.is_empty() {
            return Err(CalcError::NoPods);
        }
        let ready = pods.iter().filter(|p| is_running_and_ready(p)).count();
        Ok(ceil(ratio * ready as f64))
    }

    /// `GetObjectPerPodMetricReplicas` (Object metric, `AverageValue`
    /// target): the object's total over the target per pod. Returns the
    /// replicas and the per-pod average reported in the status.
    pub fn object_per_pod_replicas(
        &self,
        status_replicas: i32,
        usage: i64,
        target_average: i64,
    ) -> Result<(i32, i64), CalcError> {
        if target_average == 0 {
            return Err(CalcError::ZeroTarget);
        }
        let mut replicas = status_replicas;
        let ratio = usage as f64 / (target_average as f64 * f64::from(status_replicas));
        if (1.0 - ratio).abs() > self.tolerance {
            replicas = ceil(usage as f64 / target_average as f64);
        }
        let average = if status_replicas == 0 {
            usage
        } else {
            (usage as f64 / f64::from(status_replicas)).ceil() as i64
        };
        Ok((replicas, average))
    }
}

fn ceil(v: f64) -> i32 {
    let c = v.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

fn sample(value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp: Timestamp::UNIX_EPOCH,
        window: Duration::ZERO,
    }
}

/// Each pod's summed request of `resource` over its containers (and
/// restartable init containers), in milli-units.
fn pod_requests(
    pods: &[Pod],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<String, i64>, CalcError> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(milli_value);
            match request {
                Some(v) => sum += v,
                None => {
                    return Err(CalcError::MissingRequest {
                        resource: resource.to_string(),
                        container: c.name.clone(),
                        pod: name(pod),
                    })
                }
            }
        }
        out.insert(name(pod), sum);
    }
    Ok(out)
}

/// `GetResourceUtilizationRatio`: (ratio, utilization percent, raw average).
fn utilization_ratio(
    metrics: &PodMetricsInfo,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let (mut total, mut requested, mut entries) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        let Some(r) = requests.get(pod) else {
            continue;
        };
        total += m.value;
        requested += r;
        entries += 1;
    }
    if requested == 0 {
        return Err(CalcError::NoMatchingPods);
    }
    let utilization = i32::try_from(total.saturating_mul(100) / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        total / entries,
    ))
}

/// `GetMetricUsageRatio`: (ratio, average usage).
fn usage_ratio(metrics: &PodMetricsInfo, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let average = total / metrics.len().max(1) as i64;
    (average as f64 / target as f64, average)
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;

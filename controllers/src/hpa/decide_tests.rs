use super::*;
use crate::hpa::behavior::{scale_down_rules, scale_up_rules};
use crate::hpa::status::condition;
use crate::hpa::testing::*;
use std::time::Duration;

fn calculator() -> Calculator {
    Calculator {
        tolerance: 0.1,
        cpu_initialization_period: Duration::from_secs(300),
        initial_readiness_delay: Duration::from_secs(30),
    }
}

fn web_pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| pod(&format!("web-{i}"), "500m", "64Mi"))
        .collect()
}

/// One sync of `hpa` against a target at `current` replicas; a rescale
/// succeeds.
async fn run(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    pods: Pods<'_>,
    metrics: &FakeMetrics,
    history: &mut History,
) -> Plan {
    let behavior = hpa.spec.as_ref().and_then(|s| s.behavior.as_ref());
    let up = scale_up_rules(behavior);
    let down = scale_down_rules(behavior, Duration::from_secs(300));
    let scale = scale(current);
    let inputs = Inputs {
        hpa,
        scale: &scale,
        pods,
        metrics,
        calculator: calculator(),
        rules: (&up, &down),
        now: ts(1000),
        instant: Instant::now(),
    };
    let plan = decide(inputs, history).await;
    plan.finish(Ok(()), history, (&up, &down), ts(1000), Instant::now())
}

fn reason_of(plan: &Plan, type_: &str) -> (String, String) {
    let c = condition(&plan.status, type_).expect("condition set");
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

#[tokio::test(start_paused = true)]
async fn cpu_above_target_rescales_with_the_kubernetes_event_message() {
    let pods = web_pods(2);
    let metrics = FakeMetrics::default().cpu(&[("web-0", "450m"), ("web-1", "450m")]);
    let plan = run(
        &hpa(1, 10, vec![cpu_utilization(50)]),
        2,
        Pods::Listed(&pods),
        &metrics,
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, Some(4)); // 90% of request against 50% → ceil(1.8 × 2)
    assert_eq!(plan.events.len(), 1);
    assert_eq!(plan.events[0].reason, "SuccessfulRescale");
    assert_eq!(
        plan.events[0].message,
        "New size: 4; reason: cpu resource utilization (percentage of request) above target"
    );
    assert_eq!(
        reason_of(&plan, "AbleToScale"),
        ("True".into(), "SucceededRescale".into())
    );
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("True".into(), "ValidMetricFound".into())
    );
    assert_eq!(
        reason_of(&plan, "ScalingLimited"),
        ("False".into(), "DesiredWithinRange".into())
    );
    assert_eq!(plan.status.desired_replicas, 4);
    assert_eq!(plan.status.current_replicas, Some(2));
    assert!(plan.status.last_scale_time.is_some());
    let current = &plan.status.current_metrics.as_ref().expect("metrics")[0];
    let resource = current.resource.as_ref().expect("resource status");
    assert_eq!(current.type_, "Resource");
    assert_eq!(resource.current.average_utilization, Some(90));
    assert_eq!(
        resource
            .current
            .average_value
            .as_ref()
            .map(|q| q.0.as_str()),
        Some("450m")
    );
}

#[tokio::test(start_paused = true)]
async fn the_largest_proposal_of_several_metrics_wins() {
    let pods = web_pods(2);
    // cpu proposes 4; requests_per_second (avg 30 against 10) proposes 6.
    let metrics = FakeMetrics::default()
        .cpu(&[("web-0", "450m"), ("web-1", "450m")])
        .pods_metric("requests_per_second", &[("web-0", "30"), ("web-1", "30")]);
    let h = hpa(
        1,
        10,
        vec![
            cpu_utilization(50),
            pods_average("requests_per_second", "10"),
        ],
    );
    let plan = run(
        &h,
        2,
        Pods::Listed(&pods),
        &metrics,
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, Some(6));
    assert_eq!(
        plan.events[0].message,
        "New size: 6; reason: pods metric requests_per_second above target"
    );
    let statuses = plan.status.current_metrics.as_ref().expect("metrics");
    assert_eq!(statuses.len(), 2);
    let pods_status = statuses[1].pods.as_ref().expect("pods status");
    assert_eq!(
        pods_status
            .current
            .average_value
            .as_ref()
            .map(|q| q.0.as_str()),
        Some("30")
    );
}

#[tokio::test(start_paused = true)]
async fn a_usage_within_tolerance_keeps_the_size_and_says_why() {
    let pods = web_pods(2);
    let metrics = FakeMetrics::default().cpu(&[("web-0", "260m"), ("web-1", "260m")]);
    let plan = run(
        &hpa(1, 10, vec![cpu_utilization(50)]),
        2,
        Pods::Listed(&pods),
        &metrics,
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, None);
    assert!(plan.events.is_empty());
    assert_eq!(plan.status.desired_replicas, 2);
    assert_eq!(
        reason_of(&plan, "AbleToScale"),
        ("True".into(), "ReadyForNewScale".into())
    );
    assert!(plan.status.last_scale_time.is_none());
}

#[tokio::test(start_paused = true)]
async fn unavailable_resource_metrics_set_scaling_active_false() {
    let pods = web_pods(2);
    let plan = run(
        &hpa(1, 10, vec![cpu_utilization(50)]),
        2,
        Pods::Listed(&pods),
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, None);
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("False".into(), "FailedGetResourceMetric".into())
    );
    assert_eq!(
        reasons(&plan),
        vec!["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
    );
    let message = condition(&plan.status, "ScalingActive")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu"),
        "{message}"
    );
    assert!(plan.error.is_some());
    assert_eq!(plan.status.current_replicas, Some(2));
}

#[tokio::test(start_paused = true)]
async fn unavailable_pods_metrics_set_failed_get_pods_metric() {
    let pods = web_pods(2);
    let h = hpa(1, 10, vec![pods_average("requests_per_second", "10")]);
    let plan = run(
        &h,
        2,
        Pods::Listed(&pods),
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("False".into(), "FailedGetPodsMetric".into())
    );
    assert_eq!(plan.rescale, None);
}

#[tokio::test(start_paused = true)]
async fn a_failed_metric_does_not_stop_a_scale_up_but_blocks_a_scale_down() {
    let pods = web_pods(2);
    let h = hpa(
        1,
        10,
        vec![
            cpu_utilization(50),
            pods_average("requests_per_second", "10"),
        ],
    );
    let up = FakeMetrics::default().cpu(&[("web-0", "450m"), ("web-1", "450m")]);
    let plan = run(&h, 2, Pods::Listed(&pods), &up, &mut History::default()).await;
    assert_eq!(plan.rescale, Some(4));
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("True".into(), "ValidMetricFound".into())
    );
    assert!(plan.error.is_some(), "the failed metric is still reported");
    let down = FakeMetrics::default().cpu(&[("web-0", "50m"), ("web-1", "50m")]);
    let plan = run(&h, 2, Pods::Listed(&pods), &down, &mut History::default()).await;
    assert_eq!(plan.rescale, None);
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("False".into(), "FailedGetPodsMetric".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_target_at_zero_replicas_disables_scaling() {
    let plan = run(
        &hpa(1, 10, vec![cpu_utilization(50)]),
        0,
        Pods::Listed(&[]),
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, None);
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("False".into(), "ScalingDisabled".into())
    );
    assert_eq!(plan.status.desired_replicas, 0);
}

#[tokio::test(start_paused = true)]
async fn sizes_outside_min_and_max_are_corrected_without_metrics() {
    let plan = run(
        &hpa(3, 10, vec![cpu_utilization(50)]),
        1,
        Pods::Listed(&[]),
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, Some(3));
    assert_eq!(
        plan.events[0].message,
        "New size: 3; reason: Current number of replicas below Spec.MinReplicas"
    );
    let plan = run(
        &hpa(1, 4, vec![cpu_utilization(50)]),
        7,
        Pods::Listed(&[]),
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, Some(4));
    assert_eq!(
        plan.events[0].message,
        "New size: 4; reason: Current number of replicas above Spec.MaxReplicas"
    );
}

#[tokio::test(start_paused = true)]
async fn a_proposal_above_max_replicas_is_clamped_as_too_many_replicas() {
    let pods = web_pods(4);
    let metrics = FakeMetrics::default().cpu(&[
        ("web-0", "500m"),
        ("web-1", "500m"),
        ("web-2", "500m"),
        ("web-3", "500m"),
    ]);
    let plan = run(
        &hpa(1, 5, vec![cpu_utilization(50)]),
        4,
        Pods::Listed(&pods),
        &metrics,
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, Some(5)); // proposal 8
    assert_eq!(
        reason_of(&plan, "ScalingLimited"),
        ("True".into(), "TooManyReplicas".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_scale_without_a_selector_is_an_invalid_selector() {
    let plan = run(
        &hpa(1, 10, vec![cpu_utilization(50)]),
        2,
        Pods::MissingSelector,
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("False".into(), "InvalidSelector".into())
    );
    assert_eq!(reasons(&plan), vec!["SelectorRequired"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_scale_update_reports_failed_update_scale() {
    let pods = web_pods(2);
    let metrics = FakeMetrics::default().cpu(&[("web-0", "450m"), ("web-1", "450m")]);
    let h = hpa(1, 10, vec![cpu_utilization(50)]);
    let (up, down) = (
        scale_up_rules(None),
        scale_down_rules(None, Duration::from_secs(300)),
    );
    let mut history = History::default();
    let scale = scale(2);
    let plan = decide(
        Inputs {
            hpa: &h,
            scale: &scale,
            pods: Pods::Listed(&pods),
            metrics: &metrics,
            calculator: calculator(),
            rules: (&up, &down),
            now: ts(1000),
            instant: Instant::now(),
        },
        &mut history,
    )
    .await
    .finish(
        Err("conflict".into()),
        &mut history,
        (&up, &down),
        ts(1000),
        Instant::now(),
    );
    assert_eq!(
        reason_of(&plan, "AbleToScale"),
        ("False".into(), "FailedUpdateScale".into())
    );
    assert_eq!(reasons(&plan), vec!["FailedRescale"]);
    assert_eq!(
        plan.status.desired_replicas, 0,
        "the previous desired count stays"
    );
    assert!(plan.status.last_scale_time.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_object_metric_value_target_scales_by_ready_pods() {
    use k8s_openapi::api::autoscaling::v2::{
        CrossVersionObjectReference, MetricIdentifier, MetricTarget, ObjectMetricSource,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let pods = web_pods(2);
    let metrics = FakeMetrics::default();
    metrics.objects.lock().expect("lock").insert(
        ("Service/web".into(), "requests_per_second".into()),
        "100".into(),
    );
    let spec = MetricSpec {
        type_: "Object".into(),
        object: Some(ObjectMetricSource {
            described_object: CrossVersionObjectReference {
                api_version: Some("v1".into()),
                kind: "Service".into(),
                name: "web".into(),
            },
            metric: MetricIdentifier {
                name: "requests_per_second".into(),
                selector: None,
            },
            target: MetricTarget {
                type_: "Value".into(),
                value: Some(Quantity("50".into())),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let plan = run(
        &hpa(1, 10, vec![spec]),
        2,
        Pods::Listed(&pods),
        &metrics,
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, Some(4));
    assert_eq!(
        plan.events[0].message,
        "New size: 4; reason: Service metric requests_per_second above target"
    );
    let status = plan.status.current_metrics.as_ref().expect("metrics")[0]
        .object
        .clone()
        .expect("object status");
    assert_eq!(status.current.value.map(|q| q.0), Some("100".into()));
}

#[tokio::test(start_paused = true)]
async fn a_scale_down_is_held_by_the_stabilization_window_across_syncs() {
    let pods = web_pods(4);
    let low = FakeMetrics::default().cpu(&[
        ("web-0", "50m"),
        ("web-1", "50m"),
        ("web-2", "50m"),
        ("web-3", "50m"),
    ]);
    let h = hpa(1, 10, vec![cpu_utilization(50)]);
    let mut history = History::default();
    let plan = run(&h, 4, Pods::Listed(&pods), &low, &mut history).await;
    assert_eq!(plan.rescale, None);
    assert_eq!(
        reason_of(&plan, "AbleToScale"),
        ("True".into(), "ScaleDownStabilized".into())
    );
    tokio::time::advance(Duration::from_secs(301)).await;
    let plan = run(&h, 4, Pods::Listed(&pods), &low, &mut history).await;
    assert_eq!(plan.rescale, Some(1));
    assert_eq!(
        plan.events[0].message,
        "New size: 1; reason: All metrics below target"
    );
}

#[tokio::test(start_paused = true)]
async fn pods_selected_by_several_hpas_make_the_selector_ambiguous() {
    let message =
        "pods by selector app=web are controlled by multiple HPAs: [default/other default/web]";
    let plan = run(
        &hpa(1, 10, vec![cpu_utilization(50)]),
        2,
        Pods::Ambiguous(message),
        &FakeMetrics::default(),
        &mut History::default(),
    )
    .await;
    assert_eq!(plan.rescale, None);
    assert_eq!(
        reason_of(&plan, "ScalingActive"),
        ("False".into(), "AmbiguousSelector".into())
    );
    assert_eq!(reasons(&plan), vec!["AmbiguousSelector"]);
}

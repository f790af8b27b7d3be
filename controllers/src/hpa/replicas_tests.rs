use super::*;
use crate::hpa::testing::{pod, samples, ts, PodBuild};

fn calc() -> Calculator {
    Calculator {
        tolerance: 0.1,
        cpu_initialization_period: Duration::from_secs(300),
        initial_readiness_delay: Duration::from_secs(30),
    }
}

fn pods(n: usize) -> Vec<Pod> {
    (0..n).map(|i| pod(&format!("p{i}"), "1", "1Gi")).collect()
}

/// Replicas for a cpu utilization target, at a time long after the pods started.
fn cpu(current: i32, target: i32, pods: &[Pod], values: &[(&str, i64)]) -> Utilization {
    calc()
        .resource_replicas(
            current,
            target,
            "cpu",
            None,
            pods,
            samples(values),
            ts(1000),
        )
        .expect("a proposal")
}

#[test]
fn a_usage_within_the_ten_percent_tolerance_changes_nothing() {
    let u = cpu(3, 50, &pods(3), &[("p0", 540), ("p1", 540), ("p2", 540)]);
    assert_eq!(u.utilization, 54);
    assert_eq!(u.replicas, 3);
    let u = cpu(3, 50, &pods(3), &[("p0", 460), ("p1", 460), ("p2", 460)]);
    assert_eq!(u.replicas, 3);
}

#[test]
fn utilization_above_target_scales_up_to_ceil_ratio_times_ready_pods() {
    let u = cpu(3, 50, &pods(3), &[("p0", 900), ("p1", 900), ("p2", 900)]);
    assert_eq!(u.utilization, 90);
    assert_eq!(u.raw_average, 900);
    assert_eq!(u.replicas, 6); // ceil(1.8 * 3) = ceil(5.4)
}

#[test]
fn utilization_below_target_scales_down() {
    let values = [("p0", 200), ("p1", 200), ("p2", 200), ("p3", 200)];
    assert_eq!(cpu(4, 50, &pods(4), &values).replicas, 2); // ceil(0.4 * 4)
}

#[test]
fn an_average_value_target_scales_on_the_mean_per_pod() {
    let (replicas, usage) = calc()
        .plain_replicas(
            2,
            500,
            None,
            &pods(2),
            samples(&[("p0", 1000), ("p1", 1000)]),
            ts(1000),
        )
        .expect("a proposal");
    assert_eq!((replicas, usage), (4, 1000));
    let (replicas, _) = calc()
        .plain_replicas(
            4,
            500,
            None,
            &pods(4),
            samples(&[("p0", 520), ("p1", 520), ("p2", 520), ("p3", 520)]),
            ts(1000),
        )
        .expect("a proposal");
    assert_eq!(replicas, 4, "within the tolerance");
}

#[test]
fn pods_without_metrics_count_as_using_their_full_request_on_a_scale_down() {
    // Three pods at 10% of their request, one without a sample: counted at
    // 100%, the usage is 32% (ratio 0.64), so 3 pods rather than 1.
    let u = cpu(4, 50, &pods(4), &[("p0", 100), ("p1", 100), ("p2", 100)]);
    assert_eq!(u.replicas, 3);
}

#[test]
fn pods_without_metrics_count_as_zero_on_a_scale_up() {
    let u = cpu(4, 50, &pods(4), &[("p0", 1000), ("p1", 1000), ("p2", 1000)]);
    assert_eq!(u.replicas, 6); // (3000 + 0) / 4000 = 75% → ceil(1.5 * 4)
                               // Two hot pods and three silent ones: counting the silent ones as idle
                               // flips the direction (40% < 50%), so nothing changes rather than
                               // scaling down to ceil(2 * 2) = 4.
    let u = cpu(5, 50, &pods(5), &[("p0", 1000), ("p1", 1000)]);
    assert_eq!(u.replicas, 5);
}

#[test]
fn unready_pods_count_as_zero_when_scaling_up() {
    let mut ps = pods(4);
    for p in ps.iter_mut().skip(1) {
        *p = p.clone().phase("Pending");
    }
    // One ready pod at 100% (ratio 2) would say 2; the pending ones counted
    // as idle give 25%, a flip, so the size stays 4.
    assert_eq!(cpu(4, 50, &ps, &[("p0", 1000)]).replicas, 4);
    let mut ps = pods(3);
    ps[2] = ps[2].clone().phase("Pending");
    // Two pods at 150%: (3000 + 0) / 3000 = 100% → ceil(2 * 3) = 6.
    assert_eq!(cpu(3, 50, &ps, &[("p0", 1500), ("p1", 1500)]).replicas, 6);
}

#[test]
fn cpu_samples_of_pods_still_initializing_are_left_out() {
    let mut ps = pods(2);
    // Started 10 s before the sample, not ready yet.
    ps[1] = ps[1].clone().started(990, false, 990);
    let values = [("p0", 1000), ("p1", 1000)];
    assert_eq!(cpu(2, 50, &ps, &values).replicas, 2);
    // Memory has no such rule: both pods at 100% of 50% → 4.
    let u = calc()
        .resource_replicas(
            2,
            50,
            "memory",
            None,
            &ps,
            samples(&[("p0", 1_073_741_824_000), ("p1", 1_073_741_824_000)]),
            ts(1000),
        )
        .expect("a proposal");
    assert_eq!(u.replicas, 4);
}

#[test]
fn a_cpu_sample_taken_before_a_window_passed_since_readiness_is_left_out() {
    let mut ps = pods(2);
    // Within the initialization period, a sample counts once one window
    // (1 s) passed since the pod became ready: ready at 999, sampled at 1000.
    ps[1] = ps[1].clone().started(900, true, 999);
    let values = [("p0", 1000), ("p1", 1000)];
    assert_eq!(cpu(2, 50, &ps, &values).replicas, 4);
    // Ready at 1000: the sample may predate readiness, so it is left out.
    ps[1] = ps[1].clone().started(900, true, 1000);
    assert_eq!(cpu(2, 50, &ps, &values).replicas, 2);
}

#[test]
fn deleted_and_failed_pods_are_ignored() {
    let mut ps = pods(4);
    ps[2] = ps[2].clone().phase("Failed");
    ps[3] = ps[3].clone().deleting();
    let values = [("p0", 1000), ("p1", 1000), ("p2", 0), ("p3", 0)];
    assert_eq!(cpu(2, 50, &ps, &values).replicas, 4);
}

#[test]
fn a_container_without_a_request_is_an_error_for_utilization() {
    let mut ps = pods(1);
    if let Some(spec) = ps[0].spec.as_mut() {
        spec.containers[0].resources = None;
    }
    let err = calc()
        .resource_replicas(1, 50, "cpu", None, &ps, samples(&[("p0", 100)]), ts(1000))
        .expect_err("no request");
    assert!(matches!(err, CalcError::MissingRequest { .. }), "{err}");
}

#[test]
fn no_pods_or_no_samples_are_errors() {
    let err = calc()
        .resource_replicas(1, 50, "cpu", None, &[], samples(&[]), ts(1000))
        .expect_err("no pods");
    assert_eq!(err, CalcError::NoPods);
    let ps = vec![pods(1).remove(0).phase("Pending")];
    let err = calc()
        .resource_replicas(1, 50, "cpu", None, &ps, samples(&[("p0", 1)]), ts(1000))
        .expect_err("no ready samples");
    assert_eq!(err, CalcError::NoMetricsForPods);
}

#[test]
fn an_object_value_scales_the_ready_pods_by_the_ratio() {
    let c = calc();
    assert_eq!(c.object_replicas(3, 3000, 1000, &pods(3)), Ok(9));
    assert_eq!(
        c.object_replicas(3, 1050, 1000, &pods(3)),
        Ok(3),
        "tolerance"
    );
    assert_eq!(c.object_replicas(0, 2500, 1000, &[]), Ok(3), "from zero");
}

#[test]
fn an_object_average_value_divides_the_total_by_the_target_per_pod() {
    let c = calc();
    assert_eq!(c.object_per_pod_replicas(2, 10_000, 1000), Ok((10, 5000)));
    assert_eq!(c.object_per_pod_replicas(10, 10_500, 1000), Ok((10, 1050)));
}

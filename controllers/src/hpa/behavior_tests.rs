use super::*;
use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;

const DOWN_WINDOW: Duration = Duration::from_secs(300);

fn defaults() -> (Rules, Rules) {
    (scale_up_rules(None), scale_down_rules(None, DOWN_WINDOW))
}

fn policy(type_: &str, value: i32, period: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: period,
    }
}

fn behavior(
    up: Option<HPAScalingRules>,
    down: Option<HPAScalingRules>,
) -> HorizontalPodAutoscalerBehavior {
    HorizontalPodAutoscalerBehavior {
        scale_up: up,
        scale_down: down,
    }
}

async fn pass(secs: u64) {
    tokio::time::advance(Duration::from_secs(secs)).await;
}

/// Normalizes like one sync; a change is recorded as a rescale.
fn sync(
    h: &mut History,
    rules: &(Rules, Rules),
    bounds: (i32, i32),
    current: i32,
    desired: i32,
) -> Normalized {
    let now = Instant::now();
    h.record_initial(current, now);
    let n = h.normalize(
        &rules.0, &rules.1, bounds.0, bounds.1, current, desired, now,
    );
    if n.desired != current {
        h.record_scale(&rules.0, &rules.1, current, n.desired, now);
    }
    n
}

#[test]
fn missing_behavior_gets_the_kubernetes_defaults() {
    let (up, down) = defaults();
    assert_eq!(up.stabilization, Duration::ZERO);
    assert_eq!(up.select, Select::Max);
    assert_eq!(
        up.policies,
        vec![
            Policy::Pods {
                value: 4,
                period: Duration::from_secs(15)
            },
            Policy::Percent {
                value: 100,
                period: Duration::from_secs(15)
            },
        ]
    );
    assert_eq!(down.stabilization, DOWN_WINDOW);
    assert_eq!(
        down.policies,
        vec![Policy::Percent {
            value: 100,
            period: Duration::from_secs(15)
        }]
    );
    // A scale-down rule without a window takes the controller's default.
    let b = behavior(
        None,
        Some(HPAScalingRules {
            select_policy: Some("Min".into()),
            ..Default::default()
        }),
    );
    let down = scale_down_rules(Some(&b), Duration::from_secs(60));
    assert_eq!(down.stabilization, Duration::from_secs(60));
    assert_eq!(down.select, Select::Min);
}

#[tokio::test(start_paused = true)]
async fn scale_up_is_limited_to_four_pods_or_double_per_fifteen_seconds() {
    let rules = defaults();
    let mut h = History::default();
    let n = sync(&mut h, &rules, (1, 100), 2, 20);
    assert_eq!(n.desired, 6, "max(2 + 4, 2 × 2)");
    assert!(n.limited);
    assert_eq!(n.limited_reason, "ScaleUpLimit");
    pass(5).await;
    // The period began at 2 replicas: no further room yet.
    assert_eq!(sync(&mut h, &rules, (1, 100), 6, 20).desired, 6);
    pass(11).await;
    // 16 s later the period starts at 6: max(6 + 4, 12).
    assert_eq!(sync(&mut h, &rules, (1, 100), 6, 20).desired, 12);
}

#[tokio::test(start_paused = true)]
async fn a_large_scale_up_happens_in_one_step_when_the_policies_allow_it() {
    let rules = defaults();
    let mut h = History::default();
    let n = sync(&mut h, &rules, (1, 100), 10, 20);
    assert_eq!(n.desired, 20);
    assert!(!n.limited);
    assert_eq!(n.limited_reason, "DesiredWithinRange");
    assert_eq!(n.able_reason, "ReadyForNewScale");
}

#[tokio::test(start_paused = true)]
async fn select_policy_min_takes_the_smallest_allowed_change() {
    let up = HPAScalingRules {
        select_policy: Some("Min".into()),
        policies: Some(vec![policy("Pods", 4, 15), policy("Percent", 100, 15)]),
        ..Default::default()
    };
    let b = behavior(Some(up), None);
    let rules = (
        scale_up_rules(Some(&b)),
        scale_down_rules(Some(&b), DOWN_WINDOW),
    );
    let mut h = History::default();
    assert_eq!(
        sync(&mut h, &rules, (1, 100), 10, 40).desired,
        14,
        "min(10 + 4, 20)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_direction_never_scales() {
    let b = behavior(
        Some(HPAScalingRules {
            select_policy: Some("Disabled".into()),
            ..Default::default()
        }),
        Some(HPAScalingRules {
            select_policy: Some("Disabled".into()),
            stabilization_window_seconds: Some(0),
            ..Default::default()
        }),
    );
    let rules = (
        scale_up_rules(Some(&b)),
        scale_down_rules(Some(&b), DOWN_WINDOW),
    );
    let mut h = History::default();
    let n = sync(&mut h, &rules, (1, 100), 5, 50);
    assert_eq!((n.desired, n.limited_reason), (5, "ScaleUpLimit"));
    let n = sync(&mut h, &rules, (1, 100), 5, 1);
    assert_eq!((n.desired, n.limited_reason), (5, "ScaleDownLimit"));
}

#[tokio::test(start_paused = true)]
async fn scale_down_waits_for_the_stabilization_window_and_does_not_flap() {
    let rules = defaults();
    let mut h = History::default();
    assert_eq!(sync(&mut h, &rules, (1, 100), 10, 10).desired, 10);
    // The load drops and comes back every 30 s: recommendations 2, 10, 2, ...
    for i in 0..8 {
        pass(30).await;
        let desired = if i % 2 == 0 { 2 } else { 10 };
        let n = sync(&mut h, &rules, (1, 100), 10, desired);
        assert_eq!(n.desired, 10, "held at the highest recent recommendation");
        if desired == 2 {
            assert_eq!(n.able_reason, "ScaleDownStabilized");
        }
    }
    // 240 s so far; the last 10 was recommended at 210 s. Low from now on:
    // the size holds until that recommendation leaves the 300 s window.
    pass(30).await;
    assert_eq!(sync(&mut h, &rules, (1, 100), 10, 2).desired, 10);
    pass(270).await; // 540 s: 330 s after the last 10
    assert_eq!(sync(&mut h, &rules, (1, 100), 10, 2).desired, 2);
}

#[tokio::test(start_paused = true)]
async fn scale_down_rate_counts_the_replicas_removed_in_the_period() {
    let down = HPAScalingRules {
        stabilization_window_seconds: Some(0),
        policies: Some(vec![policy("Pods", 1, 60)]),
        ..Default::default()
    };
    let b = behavior(None, Some(down));
    let rules = (
        scale_up_rules(Some(&b)),
        scale_down_rules(Some(&b), DOWN_WINDOW),
    );
    let mut h = History::default();
    let n = sync(&mut h, &rules, (1, 100), 5, 1);
    assert_eq!((n.desired, n.limited_reason), (4, "ScaleDownLimit"));
    pass(30).await;
    assert_eq!(sync(&mut h, &rules, (1, 100), 4, 1).desired, 4);
    pass(31).await;
    assert_eq!(sync(&mut h, &rules, (1, 100), 4, 1).desired, 3);
}

#[tokio::test(start_paused = true)]
async fn min_and_max_replicas_clamp_with_their_reasons() {
    let rules = defaults();
    let mut h = History::default();
    let n = sync(&mut h, &rules, (1, 10), 8, 50);
    assert_eq!((n.desired, n.limited_reason), (10, "TooManyReplicas"));
    assert!(n.limited);
    let b = behavior(
        None,
        Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            ..Default::default()
        }),
    );
    let rules = (
        scale_up_rules(Some(&b)),
        scale_down_rules(Some(&b), DOWN_WINDOW),
    );
    let mut h = History::default();
    let n = sync(&mut h, &rules, (2, 10), 3, 0);
    assert_eq!((n.desired, n.limited_reason), (2, "TooFewReplicas"));
}

#[tokio::test(start_paused = true)]
async fn scale_up_stabilization_takes_the_lowest_recent_recommendation() {
    let b = behavior(
        Some(HPAScalingRules {
            stabilization_window_seconds: Some(60),
            ..Default::default()
        }),
        None,
    );
    let rules = (
        scale_up_rules(Some(&b)),
        scale_down_rules(Some(&b), DOWN_WINDOW),
    );
    let mut h = History::default();
    let n = sync(&mut h, &rules, (1, 100), 2, 6);
    assert_eq!((n.desired, n.able_reason), (2, "ScaleUpStabilized"));
    pass(61).await;
    assert_eq!(sync(&mut h, &rules, (1, 100), 2, 6).desired, 6);
}

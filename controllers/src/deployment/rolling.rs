//! Rolling-update arithmetic of the Deployment controller, as pure
//! functions over a small view of each ReplicaSet (Kubernetes'
//! `rolling.go`, `sync.go` scaling and `deployment_util.go` fenceposts).
//!
//! Sizes are ReplicaSets' `spec.replicas`; availability is their
//! `status.availableReplicas` capped by `spec.replicas`, because a
//! ReplicaSet that was just scaled down will not keep more pods than that
//! even if its status has not caught up yet.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// One ReplicaSet as the rollout arithmetic sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RsView {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Active pods seen (not terminating nor finished).
    pub pods: i32,
    /// Available pods, capped by `replicas`.
    pub available: i32,
    pub created: Option<Timestamp>,
    /// The `deployment.kubernetes.io/max-replicas` annotation.
    pub max_replicas: Option<i32>,
}

/// A `maxSurge`/`maxUnavailable` value that is neither a count nor a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {0:?}: must be an integer or a percentage")]
pub struct InvalidIntOrPercent(pub String);

/// Resolves a count or percentage of `total`, rounding percentages up or down.
pub fn scaled_value(
    v: Option<&IntOrString>,
    total: i32,
    round_up: bool,
) -> Result<i32, InvalidIntOrPercent> {
    match v {
        None => Ok(0),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| InvalidIntOrPercent(s.clone()))?;
            let product = pct * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` replicas: surge rounds up,
/// unavailable rounds down, and both zero means one may be unavailable so a
/// rollout can progress.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), InvalidIntOrPercent> {
    let surge = scaled_value(max_surge, desired, true)?.max(0);
    let unavailable = scaled_value(max_unavailable, desired, false)?.max(0);
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// `maxUnavailable` as the status and scale-down use it: never more than `desired`.
pub fn max_unavailable(resolved_unavailable: i32, desired: i32) -> i32 {
    resolved_unavailable.min(desired)
}

fn total(rss: &[RsView]) -> i32 {
    rss.iter().map(|r| r.replicas).sum()
}

/// Pods that exist or will: a ReplicaSet scaled down keeps its pods until
/// its controller deleted them, so the surge counts the larger of both.
fn total_pods(rss: &[RsView]) -> i32 {
    rss.iter().map(|r| r.replicas.max(r.pods)).sum()
}

/// The size of the new ReplicaSet for a rolling update: grow it as far as
/// `desired + max_surge` pods in all ReplicaSets allow, but not past `desired`.
pub fn new_rs_replicas(desired: i32, max_surge: i32, all: &[RsView], new_replicas: i32) -> i32 {
    let max_total = desired + max_surge;
    let current = total_pods(all);
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(desired - new_replicas).max(0);
    new_replicas + up
}

/// Scales old ReplicaSets down as far as availability allows, in place:
/// first unhealthy replicas (never available, so removing them costs no
/// availability), then available ones down to `desired - max_unavailable`
/// available pods. Old ReplicaSets are taken oldest first. Returns whether
/// anything changed.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new: Option<&RsView>,
    old: &mut [RsView],
) -> bool {
    if total(old) == 0 {
        return false;
    }
    old.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    let new_replicas = new.map_or(0, |n| n.replicas);
    let new_unavailable = new.map_or(0, |n| n.replicas - n.available);
    let new_available = new.map_or(0, |n| n.available);
    let min_available = desired - max_unavailable;
    let all_pods = total(old) + new_replicas;
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut changed = false;
    // Unhealthy replicas first.
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = rs.replicas - rs.available;
        if rs.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        rs.replicas -= down;
        cleaned += down;
        changed = true;
    }
    // Then available ones, keeping min_available.
    let available: i32 =
        old.iter().map(|r| r.available.min(r.replicas)).sum::<i32>() + new_available;
    if available <= min_available {
        return changed;
    }
    let mut budget = available - min_available;
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        if rs.replicas == 0 {
            continue;
        }
        let down = rs.replicas.min(budget);
        rs.replicas -= down;
        budget -= down;
        changed = true;
    }
    changed
}

fn round_half_away(x: f64) -> i32 {
    x.round() as i32
}

/// New sizes of the active ReplicaSets when a Deployment is scaled during a
/// rollout: the difference is spread in proportion to each ReplicaSet's
/// share of the `max-replicas` the sizes were last set for, with the
/// rounding leftover going to the largest (Kubernetes' proportional
/// scaling). `active` must be the ReplicaSets with `replicas > 0`;
/// `status_replicas` is the Deployment's `status.replicas`.
pub fn proportional_sizes(
    desired: i32,
    max_surge: i32,
    status_replicas: i32,
    active: &[RsView],
) -> Vec<(String, i32)> {
    let allowed = if desired > 0 { desired + max_surge } else { 0 };
    let to_add = allowed - total(active);
    let mut order: Vec<&RsView> = active.iter().collect();
    // Largest first; ties: newer first when growing, older first when shrinking.
    order.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then_with(|| {
            if to_add > 0 {
                b.created.cmp(&a.created)
            } else {
                a.created.cmp(&b.created)
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &order {
        let mut size = rs.replicas;
        if to_add != 0 && rs.replicas != 0 && to_add != added {
            let fraction = if desired == 0 {
                -rs.replicas
            } else {
                let annotated = rs.max_replicas.unwrap_or(status_replicas);
                if annotated > 0 {
                    round_half_away(
                        f64::from(rs.replicas) * f64::from(allowed) / f64::from(annotated),
                    ) - rs.replicas
                } else {
                    0
                }
            };
            let allowed_now = to_add - added;
            let proportion = if to_add > 0 {
                fraction.min(allowed_now)
            } else {
                fraction.max(allowed_now)
            };
            size += proportion;
            added += proportion;
        }
        sizes.push((rs.name.clone(), size));
    }
    if added != to_add {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsView {
        RsView {
            name: name.into(),
            replicas,
            pods: replicas,
            available,
            created: Timestamp::from_second(created).ok(),
            max_replicas: None,
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("10%")), Some(&pct("10%")), 5),
            Ok((1, 0))
        );
    }

    #[test]
    fn zero_surge_and_zero_unavailable_allow_one_unavailable() {
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("0%")), 3),
            Ok((0, 1))
        );
    }

    #[test]
    fn a_malformed_percentage_is_an_error() {
        assert!(resolve_fenceposts(Some(&pct("x%")), None, 3).is_err());
    }

    #[test]
    fn the_new_replicaset_grows_only_within_the_surge() {
        let all = [rs("old", 4, 4, 0), rs("new", 0, 0, 1)];
        assert_eq!(new_rs_replicas(4, 1, &all, 0), 1);
        let all = [rs("old", 3, 3, 0), rs("new", 2, 1, 1)];
        assert_eq!(new_rs_replicas(4, 1, &all, 2), 2);
        let all = [rs("old", 0, 0, 0), rs("new", 3, 3, 1)];
        assert_eq!(new_rs_replicas(4, 2, &all, 3), 4);
    }

    #[test]
    fn pods_of_a_replicaset_still_scaling_down_count_toward_the_surge() {
        let mut old = rs("old", 3, 3, 0);
        old.pods = 4;
        let all = [old, rs("new", 1, 1, 1)];
        assert_eq!(new_rs_replicas(4, 1, &all, 1), 1);
    }

    #[test]
    fn old_replicasets_shrink_only_as_far_as_availability_allows() {
        let new = rs("new", 1, 0, 1);
        let mut old = [rs("old", 4, 4, 0)];
        assert!(scale_down_old(4, 1, Some(&new), &mut old));
        assert_eq!(old[0].replicas, 3);
        // Nothing more until the new pod is available.
        let mut old = [rs("old", 3, 3, 0)];
        assert!(!scale_down_old(4, 1, Some(&new), &mut old));
    }

    #[test]
    fn unhealthy_old_replicas_are_removed_first() {
        let new = rs("new", 2, 2, 2);
        let mut old = [rs("older", 2, 2, 0), rs("old", 2, 0, 1)];
        assert!(scale_down_old(4, 0, Some(&new), &mut old));
        let sizes: Vec<i32> = old.iter().map(|r| r.replicas).collect();
        assert_eq!(sizes, [2, 0]);
    }

    #[test]
    fn with_no_unavailability_allowed_old_pods_go_only_after_new_ones_are_available() {
        let new = rs("new", 1, 1, 1);
        let mut old = [rs("old", 3, 3, 0)];
        assert!(scale_down_old(3, 0, Some(&new), &mut old));
        assert_eq!(old[0].replicas, 2);
    }

    #[test]
    fn scaling_during_a_rollout_is_proportional() {
        // 10 replicas, surge 3: old 8 and new 5 (13 = 10 + 3), scaled to 20 (surge 5).
        let mut old = rs("old", 8, 8, 0);
        let mut new = rs("new", 5, 0, 1);
        old.max_replicas = Some(13);
        new.max_replicas = Some(13);
        let sizes = proportional_sizes(20, 5, 13, &[old, new]);
        let total: i32 = sizes.iter().map(|s| s.1).sum();
        assert_eq!(total, 25);
        assert!(sizes.contains(&("old".to_string(), 15)));
        assert!(sizes.contains(&("new".to_string(), 10)));
    }

    #[test]
    fn scaling_to_zero_empties_every_replicaset() {
        let sizes = proportional_sizes(0, 0, 5, &[rs("a", 3, 3, 0), rs("b", 2, 2, 1)]);
        assert!(sizes.iter().all(|s| s.1 == 0));
    }
}

//! Taints and tolerations, as Kubernetes' `v1helper`: whether a toleration
//! tolerates a taint, and the taint keys the node lifecycle controller
//! manages.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// `node.kubernetes.io/not-ready`: the node reports Ready=False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`: the node stopped heartbeating (Ready=Unknown).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Whether `toleration` tolerates `taint`: same effect (or any), same key
/// (or any, with `Exists`), and for `Equal` the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // An empty key with `Exists` matches every taint.
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The first toleration that tolerates `taint`, as Kubernetes picks it.
pub fn matching_toleration<'a>(
    tolerations: &'a [Toleration],
    taint: &Taint,
) -> Option<&'a Toleration> {
    tolerations.iter().find(|t| tolerates(t, taint))
}

/// Whether every taint with one of `effects` is tolerated.
pub fn tolerates_all(tolerations: &[Toleration], taints: &[Taint], effects: &[&str]) -> bool {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .all(|t| matching_toleration(tolerations, t).is_some())
}

/// A taint with `key` and `effect` and no value.
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        value: None,
        time_added: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn exists_with_an_empty_key_tolerates_every_taint() {
        let t = toleration("", "Exists", "", "");
        assert!(tolerates(&t, &taint(UNREACHABLE, NO_EXECUTE)));
        assert!(tolerates(&t, &taint("anything", NO_SCHEDULE)));
    }

    #[test]
    fn a_toleration_for_another_effect_does_not_tolerate() {
        let t = toleration(UNREACHABLE, "Exists", "", NO_SCHEDULE);
        assert!(!tolerates(&t, &taint(UNREACHABLE, NO_EXECUTE)));
        assert!(tolerates(&t, &taint(UNREACHABLE, NO_SCHEDULE)));
    }

    #[test]
    fn equal_compares_values_and_defaults_to_equal() {
        let mut tainted = taint("dedicated", NO_SCHEDULE);
        tainted.value = Some("gpu".into());
        assert!(tolerates(&toleration("dedicated", "", "gpu", ""), &tainted));
        assert!(!tolerates(
            &toleration("dedicated", "Equal", "cpu", ""),
            &tainted
        ));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &tainted));
    }

    #[test]
    fn only_taints_of_the_given_effects_must_be_tolerated() {
        let taints = [taint("a", NO_SCHEDULE), taint("b", "PreferNoSchedule")];
        let tols = [toleration("a", "Exists", "", "")];
        assert!(tolerates_all(&tols, &taints, &[NO_SCHEDULE, NO_EXECUTE]));
        assert!(!tolerates_all(&[], &taints, &[NO_SCHEDULE]));
    }
}

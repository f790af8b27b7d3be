//! The pure part of node health: which conditions turn Unknown when a node
//! stops heartbeating, and which taints a node's conditions call for.

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::taints::{self, NO_EXECUTE, NO_SCHEDULE};

/// The conditions a kubelet posts and the controller turns Unknown.
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
pub const REASON_NEVER: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER: &str = "Kubelet never posted node status.";

/// The node's conditions.
pub fn conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// The status (`True`, `False`, `Unknown`) of condition `type_`, if posted.
pub fn condition_status<'a>(conds: &'a [NodeCondition], type_: &str) -> Option<&'a str> {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// The conditions to write for a node whose heartbeat is older than the
/// grace period: every kubelet condition that is not Unknown yet becomes
/// Unknown (keeping its last heartbeat), and missing ones are added as
/// never updated (heartbeat: the node's `created`). Empty when there is
/// nothing to change.
pub fn unknown_conditions(
    conds: &[NodeCondition],
    created: Option<&Time>,
    now: &Time,
) -> Vec<NodeCondition> {
    CONDITIONS
        .iter()
        .filter_map(|type_| match conds.iter().find(|c| c.type_ == *type_) {
            Some(c) if c.status == "Unknown" => None,
            Some(c) => Some(NodeCondition {
                status: "Unknown".into(),
                reason: Some(REASON_UNKNOWN.into()),
                message: Some(MESSAGE_UNKNOWN.into()),
                last_transition_time: Some(now.clone()),
                ..c.clone()
            }),
            None => Some(NodeCondition {
                type_: (*type_).to_string(),
                status: "Unknown".into(),
                reason: Some(REASON_NEVER.into()),
                message: Some(MESSAGE_NEVER.into()),
                last_heartbeat_time: Some(created.unwrap_or(now).clone()),
                last_transition_time: Some(now.clone()),
            }),
        })
        .collect()
}

/// `conds` with `updates` applied (matched by type).
pub fn merged(conds: &[NodeCondition], updates: &[NodeCondition]) -> Vec<NodeCondition> {
    let mut out: Vec<NodeCondition> = conds.to_vec();
    for u in updates {
        match out.iter_mut().find(|c| c.type_ == u.type_) {
            Some(c) => *c = u.clone(),
            None => out.push(u.clone()),
        }
    }
    out
}

/// The taints the node lifecycle controller manages.
const MANAGED: [(&str, &str); 9] = [
    (taints::NOT_READY, NO_EXECUTE),
    (taints::UNREACHABLE, NO_EXECUTE),
    (taints::NOT_READY, NO_SCHEDULE),
    (taints::UNREACHABLE, NO_SCHEDULE),
    (taints::MEMORY_PRESSURE, NO_SCHEDULE),
    (taints::DISK_PRESSURE, NO_SCHEDULE),
    (taints::PID_PRESSURE, NO_SCHEDULE),
    (taints::NETWORK_UNAVAILABLE, NO_SCHEDULE),
    (taints::UNSCHEDULABLE, NO_SCHEDULE),
];

/// The managed taints `conds` and `unschedulable` call for. NoExecute
/// taints are left out when `evict` is false (every node is down: the
/// problem is more likely the control plane's network than the nodes, and
/// Kubernetes stops evicting then too). A node that never posted a Ready
/// condition gets none until its grace period turns it Unknown.
pub fn wanted_taints(
    conds: &[NodeCondition],
    unschedulable: bool,
    evict: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match condition_status(conds, "Ready") {
        Some("False") => {
            out.push((taints::NOT_READY, NO_SCHEDULE));
            if evict {
                out.push((taints::NOT_READY, NO_EXECUTE));
            }
        }
        Some("Unknown") => {
            out.push((taints::UNREACHABLE, NO_SCHEDULE));
            if evict {
                out.push((taints::UNREACHABLE, NO_EXECUTE));
            }
        }
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", taints::MEMORY_PRESSURE),
        ("DiskPressure", taints::DISK_PRESSURE),
        ("PIDPressure", taints::PID_PRESSURE),
        ("NetworkUnavailable", taints::NETWORK_UNAVAILABLE),
    ] {
        if condition_status(conds, cond) == Some("True") {
            out.push((key, NO_SCHEDULE));
        }
    }
    if unschedulable {
        out.push((taints::UNSCHEDULABLE, NO_SCHEDULE));
    }
    out
}

/// The node's taints with the managed ones replaced by `wanted`; taints
/// that stay keep their `timeAdded`, new NoExecute taints get `now`.
/// `None` when nothing changes.
pub fn reconcile_taints(
    current: &[Taint],
    wanted: &[(&str, &str)],
    now: &Time,
) -> Option<Vec<Taint>> {
    let managed = |t: &Taint| MANAGED.contains(&(t.key.as_str(), t.effect.as_str()));
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == *effect) {
            let mut t = taints::taint(key, effect);
            if *effect == NO_EXECUTE {
                t.time_added = Some(now.clone());
            }
            out.push(t);
        }
    }
    (out.as_slice() != current).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::testing::ts;

    fn cond(type_: &str, status: &str) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            last_heartbeat_time: Some(Time(ts(5))),
            last_transition_time: Some(Time(ts(1))),
            ..Default::default()
        }
    }

    #[test]
    fn a_stale_node_gets_every_kubelet_condition_unknown_keeping_its_heartbeat() {
        let now = Time(ts(100));
        let conds = [cond("Ready", "True"), cond("MemoryPressure", "False")];
        let updates = unknown_conditions(&conds, None, &now);
        assert_eq!(updates.len(), 4);
        let ready = &updates[0];
        assert_eq!(ready.type_, "Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
        assert_eq!(ready.message.as_deref(), Some(MESSAGE_UNKNOWN));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(5))));
        assert_eq!(ready.last_transition_time, Some(now.clone()));
        let disk = updates
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .expect("added");
        assert_eq!(disk.reason.as_deref(), Some(REASON_NEVER));
    }

    #[test]
    fn conditions_already_unknown_are_not_rewritten() {
        let conds = CONDITIONS.map(|t| cond(t, "Unknown"));
        assert!(unknown_conditions(&conds, None, &Time(ts(100))).is_empty());
    }

    #[test]
    fn an_unknown_node_is_unreachable_and_a_not_ready_one_not_ready() {
        assert_eq!(
            wanted_taints(&[cond("Ready", "Unknown")], false, true),
            vec![
                (taints::UNREACHABLE, NO_SCHEDULE),
                (taints::UNREACHABLE, NO_EXECUTE)
            ]
        );
        assert_eq!(
            wanted_taints(&[cond("Ready", "False")], false, true),
            vec![
                (taints::NOT_READY, NO_SCHEDULE),
                (taints::NOT_READY, NO_EXECUTE)
            ]
        );
        assert!(wanted_taints(&[cond("Ready", "True")], false, true).is_empty());
    }

    #[test]
    fn no_execute_taints_are_withheld_when_eviction_is_off() {
        assert_eq!(
            wanted_taints(&[cond("Ready", "Unknown")], true, false),
            vec![
                (taints::UNREACHABLE, NO_SCHEDULE),
                (taints::UNSCHEDULABLE, NO_SCHEDULE)
            ]
        );
    }

    #[test]
    fn a_recovered_node_loses_managed_taints_but_keeps_the_users() {
        let mut unreachable = taints::taint(taints::UNREACHABLE, NO_EXECUTE);
        unreachable.time_added = Some(Time(ts(3)));
        let user = taints::taint("dedicated", NO_SCHEDULE);
        let current = vec![unreachable, user.clone()];
        let out = reconcile_taints(&current, &[], &Time(ts(9))).expect("changed");
        assert_eq!(out, vec![user]);
    }

    #[test]
    fn taints_that_stay_keep_their_time_added() {
        let mut unreachable = taints::taint(taints::UNREACHABLE, NO_EXECUTE);
        unreachable.time_added = Some(Time(ts(3)));
        let current = vec![unreachable];
        let wanted = [(taints::UNREACHABLE, NO_EXECUTE)];
        assert_eq!(reconcile_taints(&current, &wanted, &Time(ts(9))), None);
        let wanted = [
            (taints::UNREACHABLE, NO_EXECUTE),
            (taints::UNREACHABLE, NO_SCHEDULE),
        ];
        let out = reconcile_taints(&current, &wanted, &Time(ts(9))).expect("changed");
        assert_eq!(out[0].time_added, Some(Time(ts(3))));
        assert_eq!(out[1].time_added, None);
    }
}

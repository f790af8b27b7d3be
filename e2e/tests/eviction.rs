//! Node-pressure eviction on a real node: `skiff up --eviction-hard
//! memory.available<1000Ti` puts the node under memory pressure for good,
//! so its eviction manager evicts one pod per monitoring interval (8 s
//! here) and rejects new BestEffort pods, as the kubelet does.
//!
//! Runs as root with containerd, runc and the CNI plugins; only the
//! node's own bridge is used.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::containerd::{condition, phase, NodeCluster, IMAGE, NODE};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Pod;

const INTERVAL: Duration = Duration::from_secs(8);

/// A pod sleeping forever (restartPolicy Always); `resources` is the
/// container's `resources` block, `tolerate` adds the memory-pressure
/// toleration the node lifecycle controller's taint asks for, and
/// `node_name` binds it directly (no scheduler).
fn pod(name: &str, resources: &str, tolerate: bool, node_name: bool) -> String {
    let tolerations = if tolerate {
        "  tolerations:\n  - {key: node.kubernetes.io/memory-pressure, operator: Exists, effect: NoSchedule}\n"
    } else {
        ""
    };
    let node = if node_name {
        format!("  nodeName: {NODE}\n")
    } else {
        String::new()
    };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{node}{tolerations}  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 3600"]
    resources: {resources}
"#
    )
}

const BURSTABLE: &str = "{requests: {memory: 16Mi}}";
const GUARANTEED: &str = "{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 100m, memory: 64Mi}}";
const BEST_EFFORT: &str = "{}";

fn reason(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .unwrap_or("")
}

fn message(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.message.as_deref())
        .unwrap_or("")
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn wait_failed(env: &NodeCluster, name: &str, timeout: Duration) -> Result<Pod> {
    wait_for(&format!("pod {name} Failed"), timeout, || {
        let pod = env.pod(name)?;
        Ok((phase(&pod) == "Failed").then_some(pod))
    })
}

/// Asserts what an evicted pod looks like: Failed/Evicted with the
/// kubelet's memory message, a DisruptionTarget condition, an Evicted
/// event, and no container left in containerd.
fn assert_evicted(env: &NodeCluster, pod: &Pod) -> Result<()> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    ensure!(reason(pod) == "Evicted", "{name}: reason {:?}", reason(pod));
    ensure!(
        message(pod).starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Ti, available: "
        ),
        "{name}: message {:?}",
        message(pod)
    );
    ensure!(
        condition(pod, "DisruptionTarget").as_deref() == Some("True"),
        "{name}: conditions {:?}",
        pod.status.as_ref().map(|s| &s.conditions)
    );
    let events = wait_for("the Evicted event", Duration::from_secs(10), || {
        let events = env.events(name)?;
        Ok(events.iter().any(|(r, _)| r == "Evicted").then_some(events))
    })?;
    ensure!(
        events
            .iter()
            .any(|(r, m)| r == "Evicted" && m.starts_with("The node was low on resource: memory.")),
        "{name}: events {events:?}"
    );
    let containers = env.containers_of(&uid(pod))?;
    ensure!(containers == 0, "{name}: {containers} containers left");
    Ok(())
}

#[test]
fn a_node_low_on_memory_evicts_best_effort_pods_first_and_rejects_new_ones() -> Result<()> {
    let env = NodeCluster::start_with(
        1,
        &[
            "--eviction-hard",
            "memory.available<1000Ti",
            "--eviction-monitoring-interval",
            "8s",
        ],
    )?;
    wait_for(
        "MemoryPressure on the node",
        Duration::from_secs(60),
        || {
            let status = env.kubectl(&[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status}",
            ])?;
            Ok((status == "True").then_some(()))
        },
    )?;

    // A new BestEffort pod is not admitted while the node has MemoryPressure.
    env.apply(&pod("rejected", BEST_EFFORT, false, true))?;
    let rejected = wait_failed(&env, "rejected", Duration::from_secs(30))?;
    ensure!(
        reason(&rejected) == "Evicted",
        "reason {:?}",
        reason(&rejected)
    );
    ensure!(
        message(&rejected) == "Pod was rejected: The node had condition: [MemoryPressure]. ",
        "message {:?}",
        message(&rejected)
    );
    ensure!(env.containers_of(&uid(&rejected))? == 0);
    let events = env.events("rejected")?;
    ensure!(
        events
            .iter()
            .any(|(r, m)| r == "Evicted" && m == "The node had condition: [MemoryPressure]. "),
        "events {events:?}"
    );

    // A Burstable pod (admitted, scheduled thanks to its toleration) is
    // evicted within an interval.
    env.apply(&pod("burstable", BURSTABLE, true, false))?;
    let burstable = wait_failed(&env, "burstable", INTERVAL * 3)?;
    // The eviction just happened: the next one comes an interval later.
    let evicted_at = Instant::now();
    assert_evicted(&env, &burstable)?;

    // Both run before the next round; the BestEffort one (using more than
    // its zero request) goes first, the Guaranteed one a round later.
    env.apply(&pod("besteffort", BEST_EFFORT, true, false))?;
    env.apply(&pod("guaranteed", GUARANTEED, true, false))?;
    for name in ["besteffort", "guaranteed"] {
        env.wait_running(name, INTERVAL)?;
    }
    let running_after = evicted_at.elapsed();
    let besteffort = wait_failed(&env, "besteffort", INTERVAL * 2)?;
    let guaranteed = env.pod("guaranteed")?;
    ensure!(
        phase(&guaranteed) == "Running",
        "the Guaranteed pod went first or with it: {:?} {:?} (both ran {running_after:?} after the previous eviction)",
        phase(&guaranteed),
        message(&guaranteed)
    );
    assert_evicted(&env, &besteffort)?;
    ensure!(
        message(&besteffort).contains("Container main was using ")
            && message(&besteffort).ends_with("request is 0, has larger consumption of memory. "),
        "message {:?}",
        message(&besteffort)
    );
    let guaranteed = wait_failed(&env, "guaranteed", INTERVAL * 2)?;
    assert_evicted(&env, &guaranteed)?;

    // Evicted pods stay Failed (restartPolicy Always notwithstanding).
    let besteffort = env.pod("besteffort")?;
    ensure!(phase(&besteffort) == "Failed" && reason(&besteffort) == "Evicted");
    ensure!(env.containers_of(&uid(&besteffort))? == 0);

    let node_events = env.events(NODE)?;
    ensure!(
        node_events
            .iter()
            .any(|(r, m)| r == "EvictionThresholdMet" && m == "Attempting to reclaim memory"),
        "node events {node_events:?}"
    );
    Ok(())
}

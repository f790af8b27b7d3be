//! The scheduler through the real API with simulated nodes: pods land where
//! they fit and their rules allow, and every refusal is explained.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::{wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

fn cluster(nodes: u32) -> Result<Cluster> {
    let c = Cluster::start(ClusterOptions {
        nodes,
        runtime: "sim",
        ..ClusterOptions::default()
    })?;
    wait_for("the nodes to be Ready", TIMEOUT, || {
        let out = c.kubectl(&["get", "nodes", "-o", "json"])?;
        let v: Value = serde_json::from_str(&out)?;
        let ready = v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|n| {
                        n["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                    .count()
            })
            .unwrap_or(0);
        Ok((ready == nodes as usize).then_some(()))
    })?;
    Ok(c)
}

fn apply(c: &Cluster, obj: &Value) -> Result<()> {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string())?;
    if !out.status.success() {
        bail!(
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A pod with one container requesting `cpu`, plus `extra` merged into its spec.
fn pod(name: &str, cpu: &str, labels: Value, extra: Value) -> Value {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu}}}],
        "terminationGracePeriodSeconds": 1,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec})
}

fn get_pod(c: &Cluster, name: &str) -> Result<Value> {
    Ok(serde_json::from_str(
        &c.kubectl(&["get", "pod", name, "-o", "json"])?,
    )?)
}

fn pods(c: &Cluster, selector: &str) -> Result<Vec<Value>> {
    let out = c.kubectl(&["get", "pods", "-l", selector, "-o", "json"])?;
    let v: Value = serde_json::from_str(&out)?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

/// Waits until the pod runs; returns its node.
fn wait_running(c: &Cluster, name: &str) -> Result<String> {
    wait_for(&format!("pod {name} to run"), TIMEOUT, || {
        let p = get_pod(c, name)?;
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        Ok((p["status"]["phase"] == "Running" && !node.is_empty()).then(|| node.to_string()))
    })
}

/// Waits until the pod says why it is unschedulable; returns the message.
fn wait_unschedulable(c: &Cluster, name: &str) -> Result<String> {
    wait_for(&format!("pod {name} to be unschedulable"), TIMEOUT, || {
        let p = get_pod(c, name)?;
        let cond = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled")
            .cloned();
        Ok(cond
            .filter(|c| c["status"] == "False" && c["reason"] == "Unschedulable")
            .and_then(|c| c["message"].as_str().map(str::to_string)))
    })
}

/// Pods per node among pods matching `selector`, once `want` of them run.
fn running_per_node(c: &Cluster, selector: &str, want: usize) -> Result<BTreeMap<String, usize>> {
    wait_for(&format!("{want} pods {selector} to run"), TIMEOUT, || {
        let running: Vec<Value> = pods(c, selector)?
            .into_iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .collect();
        if running.len() < want {
            return Ok(None);
        }
        let mut per_node = BTreeMap::new();
        for p in running {
            *per_node
                .entry(
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
                .or_default() += 1;
        }
        Ok(Some(per_node))
    })
}

#[test]
fn a_pod_too_big_for_every_node_stays_pending_with_the_kubernetes_message_and_an_event(
) -> Result<()> {
    let c = cluster(3)?;
    c.kubectl(&["taint", "node", "skiff-node-0", "dedicated=gold:NoSchedule"])?;
    apply(&c, &pod("big", "5", json!({}), json!({})))?;
    let msg = wait_unschedulable(&c, "big")?;
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gold}, 2 Insufficient cpu."
        ),
        "{msg}"
    );
    let events = wait_for("a FailedScheduling event", TIMEOUT, || {
        let out = c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=big,reason=FailedScheduling",
            "-o",
            "json",
        ])?;
        let v: Value = serde_json::from_str(&out)?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        Ok((!items.is_empty()).then_some(items))
    })?;
    assert_eq!(events[0]["type"], "Warning");
    assert!(events[0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("2 Insufficient cpu"));
    let p = get_pod(&c, "big")?;
    assert!(p["spec"]["nodeName"].is_null(), "{p}");
    Ok(())
}

#[test]
fn pods_fill_nodes_by_requests_and_a_waiting_pod_runs_when_room_is_freed() -> Result<()> {
    let c = cluster(2)?;
    for i in 0..8 {
        apply(
            &c,
            &pod(&format!("p{i}"), "1", json!({"app": "fill"}), json!({})),
        )?;
    }
    let per_node = running_per_node(&c, "app=fill", 8)?;
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![4, 4]);
    apply(&c, &pod("late", "1", json!({}), json!({})))?;
    let msg = wait_unschedulable(&c, "late")?;
    assert!(
        msg.starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{msg}"
    );
    c.kubectl(&["delete", "pod", "p0", "--wait=false"])?;
    wait_running(&c, "late")?;
    Ok(())
}

#[test]
fn node_selector_and_toleration_place_a_pod_on_the_tainted_node() -> Result<()> {
    let c = cluster(3)?;
    c.kubectl(&["label", "node", "skiff-node-2", "pool=gold"])?;
    c.kubectl(&["taint", "node", "skiff-node-2", "dedicated=gold:NoSchedule"])?;
    let selector = json!({"nodeSelector": {"pool": "gold"}});
    let mut tolerating = selector.clone();
    tolerating["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gold", "effect": "NoSchedule"}]);
    apply(&c, &pod("gold", "100m", json!({}), tolerating))?;
    assert_eq!(wait_running(&c, "gold")?, "skiff-node-2");
    apply(&c, &pod("intolerant", "100m", json!({}), selector))?;
    let msg = wait_unschedulable(&c, "intolerant")?;
    assert!(
        msg.starts_with("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gold}, 2 node(s) didn't match Pod's node affinity/selector."),
        "{msg}"
    );
    // Plain pods never land on the tainted node.
    for i in 0..6 {
        apply(
            &c,
            &pod(
                &format!("plain{i}"),
                "100m",
                json!({"app": "plain"}),
                json!({}),
            ),
        )?;
    }
    let per_node = running_per_node(&c, "app=plain", 6)?;
    assert!(!per_node.contains_key("skiff-node-2"), "{per_node:?}");
    Ok(())
}

#[test]
fn cordoned_and_not_ready_nodes_get_no_new_pods() -> Result<()> {
    let c = cluster(3)?;
    c.kubectl(&["cordon", "skiff-node-0"])?;
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
        "reason": "KubeletNotReady", "message": "test"}]}});
    c.kubectl(&[
        "patch",
        "node",
        "skiff-node-1",
        "--subresource",
        "status",
        "--type",
        "strategic",
        "-p",
        &not_ready.to_string(),
    ])?;
    for i in 0..6 {
        apply(
            &c,
            &pod(&format!("p{i}"), "100m", json!({"app": "avoid"}), json!({})),
        )?;
    }
    let per_node = running_per_node(&c, "app=avoid", 6)?;
    assert_eq!(
        per_node.keys().collect::<Vec<_>>(),
        vec!["skiff-node-2"],
        "{per_node:?}"
    );
    Ok(())
}

#[test]
fn required_anti_affinity_puts_at_most_one_pod_per_node() -> Result<()> {
    let c = cluster(3)?;
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..4 {
        apply(
            &c,
            &pod(
                &format!("s{i}"),
                "100m",
                json!({"app": "solo"}),
                anti.clone(),
            ),
        )?;
    }
    let per_node = running_per_node(&c, "app=solo", 3)?;
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == 1), "{per_node:?}");
    let pending: Vec<String> = pods(&c, "app=solo")?
        .iter()
        .filter(|p| p["spec"]["nodeName"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let msg = wait_unschedulable(&c, &pending[0])?;
    assert!(
        msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."),
        "{msg}"
    );
    Ok(())
}

#[test]
fn pods_with_the_same_labels_spread_evenly_over_equal_nodes() -> Result<()> {
    let c = cluster(4)?;
    for i in 0..22 {
        apply(
            &c,
            &pod(&format!("w{i}"), "10m", json!({"app": "web"}), json!({})),
        )?;
    }
    let per_node = running_per_node(&c, "app=web", 22)?;
    assert_eq!(per_node.len(), 4, "{per_node:?}");
    let max = per_node.values().max().copied().unwrap_or(0);
    let min = per_node.values().min().copied().unwrap_or(0);
    assert!(max - min <= 1, "{per_node:?}");
    Ok(())
}

#[test]
fn a_deployments_replicas_spread_evenly_over_equal_nodes() -> Result<()> {
    let c = cluster(3)?;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "deploy"}},
            "template": {"metadata": {"labels": {"app": "deploy"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m"}}}]}}}});
    apply(&c, &deployment)?;
    let per_node = running_per_node(&c, "app=deploy", 10)?;
    let max = per_node.values().max().copied().unwrap_or(0);
    let min = per_node.values().min().copied().unwrap_or(0);
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(max - min <= 1, "{per_node:?}");
    Ok(())
}

#[test]
fn a_high_priority_pod_preempts_lower_priority_pods_to_fit() -> Result<()> {
    let c = cluster(1)?;
    apply(
        &c,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"}, "value": 1000}),
    )?;
    for i in 0..4 {
        apply(
            &c,
            &pod(&format!("low{i}"), "1", json!({"tier": "low"}), json!({})),
        )?;
    }
    running_per_node(&c, "tier=low", 4)?;
    apply(
        &c,
        &pod("vip", "2", json!({}), json!({"priorityClassName": "high"})),
    )?;
    let node = wait_running(&c, "vip")?;
    assert_eq!(node, "skiff-node");
    let low = pods(&c, "tier=low")?;
    assert_eq!(low.len(), 2, "exactly two victims: {low:?}");
    let out = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=Preempted",
        "-o",
        "name",
    ])?;
    assert_eq!(out.lines().count(), 2, "{out}");
    Ok(())
}

#[test]
fn a_pod_of_equal_priority_never_preempts() -> Result<()> {
    let c = cluster(1)?;
    for i in 0..4 {
        apply(
            &c,
            &pod(&format!("low{i}"), "1", json!({"tier": "low"}), json!({})),
        )?;
    }
    running_per_node(&c, "tier=low", 4)?;
    apply(&c, &pod("peer", "1", json!({}), json!({})))?;
    let msg = wait_unschedulable(&c, "peer")?;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    assert_eq!(pods(&c, "tier=low")?.len(), 4);
    Ok(())
}

#[test]
fn simulated_nodes_run_bound_pods_and_heartbeat_their_leases() -> Result<()> {
    let c = cluster(2)?;
    apply(&c, &pod("p", "100m", json!({}), json!({})))?;
    wait_running(&c, "p")?;
    let p = get_pod(&c, "p")?;
    let ip = p["status"]["podIP"].as_str().context("a pod IP")?;
    assert!(ip.starts_with("10.128."), "{ip}");
    for cond in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let ok = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == cond && c["status"] == "True");
        assert!(ok, "{cond} in {p}");
    }
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert!(cs["containerID"]
        .as_str()
        .unwrap_or_default()
        .starts_with("sim://"));
    let lease: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "skiff-node-0",
        "-o",
        "json",
    ])?)?;
    assert_eq!(lease["spec"]["holderIdentity"], "skiff-node-0");
    c.kubectl(&["delete", "pod", "p", "--timeout=20s"])?;
    let out = c.kubectl(&["get", "pods", "-o", "name"])?;
    assert!(out.trim().is_empty(), "{out}");
    Ok(())
}

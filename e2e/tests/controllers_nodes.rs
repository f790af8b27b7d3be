//! The node-facing controllers through the real API: node lifecycle and
//! taint eviction (a node whose Lease stops is marked Unknown, tainted, and
//! its pods replaced elsewhere), Endpoints and EndpointSlices, DaemonSets
//! and Jobs.
//!
//! Simulated nodes all live in the `skiff up` process, so a "dead" node is
//! a Node and Lease the test creates itself and stops renewing.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use e2e::eventually;
use e2e::{Cluster, ClusterOptions};
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The node monitor grace period of the test clusters. Simulated nodes
/// renew their Leases every 10 s (as a kubelet does), so a shorter grace
/// period would mark them Unknown between renewals.
const GRACE: Duration = Duration::from_secs(15);
const TOLERATION: Duration = Duration::from_secs(5);
const SIM_NODES: u32 = 3;

fn cluster() -> Result<Cluster> {
    Cluster::start(ClusterOptions {
        nodes: SIM_NODES,
        runtime: "sim",
        extra_args: vec![
            "--node-monitor-grace-period".into(),
            format!("{}s", GRACE.as_secs()),
            "--default-unreachable-toleration-seconds".into(),
            "5".into(),
            "--default-not-ready-toleration-seconds".into(),
            "5".into(),
        ],
    })
}

/// Polls `f` every `every` until it returns `Some`, failing after `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!(": last error: {e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}{last}");
        }
        tokio::time::sleep(every).await;
    }
}

fn pod_condition<'a>(p: &'a Pod, type_: &str) -> Option<&'a str> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn node_condition(n: &Node, type_: &str) -> Option<(String, String, String)> {
    let c = n
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn has_taint(n: &Node, key: &str, effect: &str) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key && t.effect == effect))
}

async fn events_with_reason(client: &Client, reason: &str) -> Result<Vec<Event>> {
    Ok(Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect())
}

/// Marks a pod Running and Ready (or not) through pods/status, as a kubelet would.
async fn set_pod_ready(
    client: &Client,
    ns: &str,
    name: &str,
    ready: bool,
    ip: Option<&str>,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = if ready { "True" } else { "False" };
    let now = Timestamp::now().to_string();
    let mut patch = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
        ]
    }});
    if let Some(ip) = ip {
        patch["status"]["podIP"] = json!(ip);
        patch["status"]["podIPs"] = json!([{"ip": ip}]);
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// A Node and its Lease that only the test heartbeats.
struct FakeNode {
    name: String,
    nodes: Api<Node>,
    leases: Api<Lease>,
}

impl FakeNode {
    async fn register(client: &Client, name: &str) -> Result<Self> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
        let f = Self {
            name: name.to_string(),
            nodes,
            leases: Api::namespaced(client.clone(), "kube-node-lease"),
        };
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": MicroTime(Timestamp::now())},
        }))?;
        f.leases.create(&PostParams::default(), &lease).await?;
        f.post_ready_status().await?;
        Ok(f)
    }

    /// Posts a Ready node status with a fresh heartbeat, as a kubelet does.
    async fn post_ready_status(&self) -> Result<()> {
        let now = Timestamp::now().to_string();
        let cond = |t: &str, s: &str, r: &str| {
            json!({"type": t, "status": s, "reason": r,
            "message": r, "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        let patch = json!({"status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ],
        }});
        self.nodes
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await?;
        Ok(())
    }

    async fn renew(&self) -> Result<()> {
        let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
        self.leases
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn get(&self) -> Result<Node> {
        Ok(self.nodes.get(&self.name).await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_stops_is_tainted_unreachable_and_its_pods_are_replaced_elsewhere(
) -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let dead = FakeNode::register(&client, "dead-node").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Two pods bound to the doomed node, then a ReplicaSet that adopts them.
    for (i, name) in ["doomed-a", "doomed-b"].iter().enumerate() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "evict"}},
            "spec": {"nodeName": "dead-node", "containers": [{"name": "main", "image": "nginx"}]},
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        set_pod_ready(
            &client,
            "default",
            name,
            true,
            Some(&format!("10.99.0.{}", i + 2)),
        )
        .await?;
    }
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "evict"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "evict"}},
            "template": {"metadata": {"labels": {"app": "evict"}},
                "spec": {"containers": [{"name": "main", "image": "nginx"}]}}},
    }))?;
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await?;
    eventually(
        "the ReplicaSet to adopt the doomed pods",
        TIMEOUT,
        || async {
            let a = pods.get("doomed-a").await?;
            let b = pods.get("doomed-b").await?;
            Ok(
                (!a.owner_references().is_empty() && !b.owner_references().is_empty())
                    .then_some(()),
            )
        },
    )
    .await?;
    let doomed = pods.get("doomed-a").await?;
    let tolerations = doomed
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    assert!(
        tolerations.iter().any(
            |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                && t.toleration_seconds == Some(5)
        ),
        "the API server adds the default unreachable toleration: {tolerations:?}"
    );

    // Heartbeat a little, to show a live node stays Ready, then stop.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        dead.renew().await?;
    }
    let node = dead.get().await?;
    assert_eq!(
        node_condition(&node, "Ready").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert!(!has_taint(
        &node,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));
    let stopped = Instant::now();

    let node = eventually(
        "the node to turn Unknown and unreachable",
        TIMEOUT,
        || async {
            let n = dead.get().await?;
            let unknown = node_condition(&n, "Ready").is_some_and(|c| c.0 == "Unknown");
            Ok(
                (unknown && has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute"))
                    .then_some(n),
            )
        },
    )
    .await?;
    let went_unknown = stopped.elapsed();
    assert!(
        went_unknown >= GRACE,
        "not before the grace period: {went_unknown:?}"
    );
    assert!(
        went_unknown < GRACE + Duration::from_secs(3),
        "soon after it: {went_unknown:?}"
    );
    let (_, reason, message) = node_condition(&node, "Ready").context("Ready")?;
    assert_eq!(reason, "NodeStatusUnknown");
    assert_eq!(message, "Kubelet stopped posting node status.");
    assert!(node_condition(&node, "MemoryPressure").is_some_and(|c| c.0 == "Unknown"));
    assert!(has_taint(
        &node,
        "node.kubernetes.io/unreachable",
        "NoSchedule"
    ));

    // Its pods are marked not ready at once, and evicted after their toleration.
    eventually(
        "the node's pods to be marked not ready",
        Duration::from_secs(2),
        || async {
            let a = pods.get("doomed-a").await?;
            let marked = pod_condition(&a, "Ready") == Some("False");
            Ok((marked || a.metadata.deletion_timestamp.is_some()).then_some(()))
        },
    )
    .await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let replacements = eventually(
        "replacement pods running on live nodes",
        TIMEOUT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=evict"))
                .await?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| !node_of(p).is_empty() && node_of(p) != "dead-node")
                .filter(|p| pod_condition(p, "Ready") == Some("True"))
                .collect();
            Ok((running.len() == 2).then_some(running))
        },
    )
    .await?;
    let replaced = stopped.elapsed();
    assert!(
        replaced <= GRACE + TOLERATION + Duration::from_secs(5),
        "replaced within grace + toleration + 5s, took {replaced:?}"
    );
    assert!(replacements.iter().all(|p| node_of(p) != "dead-node"));
    for name in ["doomed-a", "doomed-b"] {
        if let Some(p) = pods.get_opt(name).await? {
            assert!(
                p.metadata.deletion_timestamp.is_some(),
                "{name} is being deleted"
            );
            assert_eq!(pod_condition(&p, "DisruptionTarget"), Some("True"));
        }
    }
    let rs = rs_api.get("evict").await?;
    assert_eq!(rs.status.as_ref().map(|s| s.replicas), Some(2));
    let evictions = events_with_reason(&client, "TaintManagerEviction").await?;
    assert!(evictions.len() >= 2, "eviction events: {evictions:?}");
    let not_ready = events_with_reason(&client, "NodeNotReady").await?;
    assert!(
        not_ready
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("dead-node")),
        "a NodeNotReady event for the node"
    );

    // The node comes back: the taints go away.
    dead.renew().await?;
    dead.post_ready_status().await?;
    eventually("the taints to be removed", TIMEOUT, || async {
        let n = dead.get().await?;
        let clean = !has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
            && !has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule");
        Ok(clean.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reporting_not_ready_gets_the_not_ready_taint() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let sick = FakeNode::register(&client, "sick-node").await?;
    let now = Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
        "reason": "KubeletNotReady", "message": "container runtime is down",
        "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    sick.nodes
        .patch_status(
            "sick-node",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
    eventually("the not-ready taints", TIMEOUT, || async {
        let n = sick.get().await?;
        Ok((has_taint(&n, "node.kubernetes.io/not-ready", "NoExecute")
            && has_taint(&n, "node.kubernetes.io/not-ready", "NoSchedule"))
        .then_some(()))
    })
    .await?;
    let n = sick.get().await?;
    assert!(!has_taint(
        &n,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));
    sick.renew().await?;
    sick.post_ready_status().await?;
    eventually("the not-ready taints to go", TIMEOUT, || async {
        let n = sick.get().await?;
        Ok((!has_taint(&n, "node.kubernetes.io/not-ready", "NoExecute")).then_some(()))
    })
    .await?;
    Ok(())
}

fn web_deployment(replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "nginx",
                    "ports": [{"name": "http", "containerPort": 8080}]}]}}},
    })
}

fn endpoint_ips(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

/// `(ready, serving, terminating)` of each endpoint, by pod name.
async fn slice_conditions(
    slices: &Api<EndpointSlice>,
    svc: &str,
) -> Result<BTreeMap<String, (bool, bool, bool)>> {
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await?;
    let mut out = BTreeMap::new();
    for s in list.items {
        for e in s.endpoints {
            let c = e.conditions.clone().unwrap_or_default();
            let name = e.target_ref.and_then(|t| t.name).unwrap_or_default();
            out.insert(
                name,
                (
                    c.ready.unwrap_or(false),
                    c.serving.unwrap_or(false),
                    c.terminating.unwrap_or(false),
                ),
            );
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pod_readiness_within_a_second() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    c.kubectl_stdin(&["apply", "-f", "-"], &web_deployment(3).to_string())?;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))?;
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    let running = eventually("3 ready pods", TIMEOUT, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| pod_condition(p, "Ready") == Some("True"))
            .collect();
        Ok((ready.len() == 3).then_some(ready))
    })
    .await?;
    let mut ips: Vec<String> = running
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    let ep = eventually("Endpoints with the 3 ready pods", TIMEOUT, || async {
        let Some(ep) = endpoints.get_opt("web").await? else {
            return Ok(None);
        };
        Ok((endpoint_ips(&ep).0 == ips).then_some(ep))
    })
    .await?;
    let subset = &ep.subsets.as_ref().context("subsets")?[0];
    let port = &subset.ports.as_ref().context("ports")?[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), 8080),
        "targetPort resolved by name"
    );
    let addr = &subset.addresses.as_ref().context("addresses")?[0];
    assert!(addr.node_name.as_deref().is_some_and(|n| !n.is_empty()));
    assert_eq!(
        addr.target_ref.as_ref().and_then(|t| t.kind.as_deref()),
        Some("Pod")
    );
    assert_eq!(ep.labels().get("tier").map(String::as_str), Some("front"));

    let conds = eventually("slices with the 3 ready pods", TIMEOUT, || async {
        let c = slice_conditions(&slices, "web").await?;
        Ok((c.len() == 3 && c.values().all(|c| *c == (true, true, false))).then_some(c))
    })
    .await?;
    assert_eq!(conds.len(), 3);
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await?;
    let slice = &list.items[0];
    assert_eq!(
        slice
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid)),
        ("Service", svc.metadata.uid.as_ref())
    );
    assert_eq!(slice.ports.as_ref().and_then(|p| p[0].port), Some(8080));
    assert!(slice
        .endpoints
        .iter()
        .all(|e| e.node_name.is_some() && e.target_ref.is_some()));

    // One pod turns unready: out of the ready addresses within a second.
    let victim = &running[0];
    let victim_ip = victim
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("ip")?;
    let flipped = Instant::now();
    set_pod_ready(&client, "default", &victim.name_any(), false, None).await?;
    poll(
        "Endpoints to drop the unready pod",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let ep = endpoints.get("web").await?;
            let (ready, not_ready) = endpoint_ips(&ep);
            Ok((!ready.contains(&victim_ip) && not_ready.contains(&victim_ip)).then_some(()))
        },
    )
    .await?;
    let endpoints_took = flipped.elapsed();
    poll(
        "the slice to mark it not ready",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let c = slice_conditions(&slices, "web").await?;
            Ok((c.get(&victim.name_any()) == Some(&(false, false, false))).then_some(()))
        },
    )
    .await?;
    let slices_took = flipped.elapsed();
    assert!(
        endpoints_took < Duration::from_secs(1),
        "Endpoints took {endpoints_took:?}"
    );
    assert!(
        slices_took < Duration::from_secs(1),
        "EndpointSlices took {slices_took:?}"
    );

    // A terminating pod leaves the Endpoints but stays in the slices as
    // serving and terminating (a finalizer keeps it terminating).
    let other = &running[1];
    let other_ip = other
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("ip")?;
    let fin = json!({"metadata": {"finalizers": ["e2e.skiff.dev/hold"]}});
    pods.patch(
        &other.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&fin),
    )
    .await?;
    pods.delete(&other.name_any(), &DeleteParams::default())
        .await?;
    eventually(
        "the terminating pod to leave Endpoints",
        TIMEOUT,
        || async {
            let ep = endpoints.get("web").await?;
            let (ready, not_ready) = endpoint_ips(&ep);
            Ok((!ready.contains(&other_ip) && !not_ready.contains(&other_ip)).then_some(()))
        },
    )
    .await?;
    eventually("the slice to show it terminating", TIMEOUT, || async {
        let c = slice_conditions(&slices, "web").await?;
        Ok((c.get(&other.name_any()) == Some(&(false, true, true))).then_some(()))
    })
    .await?;
    let unfin = json!({"metadata": {"finalizers": null}});
    pods.patch(
        &other.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&unfin),
    )
    .await?;

    // A Service without a selector keeps the Endpoints its owner wrote.
    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &manual)
        .await?;
    let mine: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}],
    }))?;
    endpoints.create(&PostParams::default(), &mine).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kept = endpoints.get("manual").await?;
    assert_eq!(endpoint_ips(&kept).0, ["192.0.2.10"]);
    let manual_slices = slice_conditions(&slices, "manual").await?;
    assert!(
        manual_slices.is_empty(),
        "no slices for a selector-less Service"
    );

    // Deleting the Service deletes its Endpoints.
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("web", &DeleteParams::default())
        .await?;
    eventually("the Endpoints to go with the Service", TIMEOUT, || async {
        Ok(endpoints.get_opt("web").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

fn pods_by_node(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in pods {
        *out.entry(node_of(p).to_string()).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_exactly_one_pod_on_each_eligible_node_and_rolls_them() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(nodes.len(), SIM_NODES as usize);
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "main", "image": "agent:1"}]}}},
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &ds.to_string())?;
    c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"])?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items;
    let per_node = pods_by_node(&running);
    assert_eq!(
        per_node.len(),
        nodes.len(),
        "one pod per node: {per_node:?}"
    );
    assert!(
        per_node.values().all(|n| *n == 1),
        "exactly one each: {per_node:?}"
    );
    let tolerations = running[0]
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
            "tolerates {key}"
        );
    }
    let status = Api::<DaemonSet>::namespaced(client.clone(), "default")
        .get("agent")
        .await?
        .status
        .context("status")?;
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.current_number_scheduled, 3);
    assert_eq!(status.number_ready, 3);
    assert_eq!(status.updated_number_scheduled, Some(3));
    assert_eq!(status.number_available, Some(3));
    assert_eq!(status.observed_generation, Some(1));

    // A rolling update replaces every pod, still one per node.
    c.kubectl(&["set", "image", "ds/agent", "main=agent:2"])?;
    c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"])?;
    let rolled = eventually("every pod on the new image", TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        let live: Vec<Pod> = list
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let new = live.iter().all(|p| {
            p.spec.as_ref().map(|s| s.containers[0].image.as_deref()) == Some(Some("agent:2"))
        });
        Ok((new && live.len() == 3).then_some(live))
    })
    .await?;
    assert!(pods_by_node(&rolled).values().all(|n| *n == 1));

    // The history kubectl reads: one ControllerRevision per template.
    let history = c.kubectl(&["rollout", "history", "ds/agent"])?;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let rev1 = c.kubectl(&["rollout", "history", "ds/agent", "--revision=1"])?;
    assert!(rev1.contains("agent:1"), "{rev1}");

    // Undo restores the previous template, as a new revision.
    c.kubectl(&["rollout", "undo", "ds/agent"])?;
    c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"])?;
    eventually("every pod back on the old image", TIMEOUT, || async {
        let live: Vec<Pod> = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let old = live.iter().all(|p| {
            p.spec.as_ref().map(|s| s.containers[0].image.as_deref()) == Some(Some("agent:1"))
        });
        Ok((old && live.len() == 3).then_some(()))
    })
    .await?;
    let history = c.kubectl(&["rollout", "history", "ds/agent"])?;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "revision 1 became 3: {history}");

    // A new node gets its pod; a DaemonSet with a nodeSelector only its match.
    let _extra = FakeNode::register(&client, "extra-node").await?;
    let pinned = eventually("a daemon pod for the new node", TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        Ok(list
            .into_iter()
            .find(|p| serde_json::to_string(&p.spec).is_ok_and(|s| s.contains("\"extra-node\""))))
    })
    .await?;
    let affinity = serde_json::to_value(&pinned.spec.as_ref().context("spec")?.affinity)?;
    assert_eq!(
        affinity.pointer("/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0"),
        Some(&json!("extra-node")),
        "pinned by node affinity: {affinity}"
    );
    let picky = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "picky"},
        "spec": {"selector": {"matchLabels": {"app": "picky"}},
            "template": {"metadata": {"labels": {"app": "picky"}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": "extra-node"},
                    "containers": [{"name": "main", "image": "agent:1"}]}}},
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &picky.to_string())?;
    eventually("the picky DaemonSet to want one node", TIMEOUT, || async {
        let ds = Api::<DaemonSet>::namespaced(client.clone(), "default")
            .get("picky")
            .await?;
        let s = ds.status.unwrap_or_default();
        Ok((s.desired_number_scheduled == 1 && s.current_number_scheduled == 1).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods.list(&ListParams::default().labels("app=picky"))
            .await?
            .items
            .len(),
        1
    );
    Ok(())
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_with_max_surge_starts_each_new_pod_before_its_old_one_goes() -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::watcher::{self, watcher, Event};
    use kube::runtime::WatchStreamExt;

    let c = cluster()?;
    let client = c.client().await?;
    let nodes = SIM_NODES as usize;
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "surge"},
        "spec": {"selector": {"matchLabels": {"app": "surge"}},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": {"app": "surge"}},
                "spec": {"containers": [{"name": "main", "image": "agent:1"}]}}},
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &ds.to_string())?;
    c.kubectl(&["rollout", "status", "ds/surge", "--timeout=60s"])?;

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(api, watcher::Config::default().labels("app=surge"))
        .default_backoff()
        .boxed();
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    loop {
        match events.try_next().await?.context("watch ended")? {
            Event::InitApply(p) => {
                pods.insert(p.name_any(), p);
            }
            Event::InitDone => break,
            _ => {}
        }
    }
    c.kubectl(&["set", "image", "ds/surge", "main=agent:2"])?;
    let deadline = Instant::now() + TIMEOUT;
    let mut most = 0;
    let mut history = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
            Ok(Ok(Some(Event::Apply(p)))) => {
                pods.insert(p.name_any(), p);
            }
            Ok(Ok(Some(Event::Delete(p)))) => {
                pods.remove(&p.name_any());
            }
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) => bail!("watch ended"),
            Ok(Err(e)) => return Err(e.into()),
        }
        let live: Vec<&Pod> = pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = live.iter().filter(|p| pod_ready(p)).count();
        let updated = live
            .iter()
            .filter(|p| {
                pod_ready(p)
                    && p.spec
                        .as_ref()
                        .is_some_and(|s| s.containers[0].image.as_deref() == Some("agent:2"))
            })
            .count();
        history.push((live.len(), ready, updated));
        most = most.max(live.len());
        // maxSurge 1: at most one extra pod; maxUnavailable 0: never fewer
        // Ready pods than nodes, at any watch event.
        assert!(live.len() <= nodes + 1, "surge exceeded: {history:?}");
        assert!(ready >= nodes, "availability dropped: {history:?}");
        if updated == nodes && live.len() == nodes {
            break;
        }
        if Instant::now() > deadline {
            bail!("the rollout did not finish: (live, ready, updated) {history:?}");
        }
    }
    assert_eq!(
        most,
        nodes + 1,
        "new pods started beside old ones: {history:?}"
    );
    c.kubectl(&["rollout", "status", "ds/surge", "--timeout=30s"])?;
    Ok(())
}

fn job_json(
    name: &str,
    completions: i32,
    parallelism: i32,
    backoff: i32,
    ttl: Option<i32>,
) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
            "ttlSecondsAfterFinished": ttl,
            "manualSelector": true,
            "selector": {"matchLabels": {"job": name}},
            "template": {"metadata": {"labels": {"job": name}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}]}}},
    })
}

/// Finishes a pod with `phase` through pods/status, as its kubelet would
/// when its container exits (simulated containers run forever).
async fn finish_pod(pods: &Api<Pod>, name: &str, phase: &str) -> Result<()> {
    let now = Timestamp::now().to_string();
    let (code, reason) = if phase == "Succeeded" {
        (0, "Completed")
    } else {
        (1, "Error")
    };
    let patch = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason,
            "startedAt": now, "finishedAt": now}}}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn job_condition(job: &Job, type_: &str) -> Option<(String, String)> {
    let c = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?;
    Some((
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_three_completions_two_at_a_time_and_is_deleted_after_its_ttl() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &job_json("work", 3, 2, 6, Some(3)).to_string(),
    )?;
    let finished = Arc::new(Mutex::new(HashSet::new()));
    let max_active = Arc::new(Mutex::new(0));
    let done = eventually("the Job to complete", TIMEOUT, || {
        let (pods, jobs) = (pods.clone(), jobs.clone());
        let (finished, max_active) = (finished.clone(), max_active.clone());
        async move {
            let list = pods
                .list(&ListParams::default().labels("job=work"))
                .await?
                .items;
            let running: Vec<&Pod> = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                    !matches!(phase, Some("Succeeded" | "Failed"))
                })
                .collect();
            {
                let mut m = max_active.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                *m = (*m).max(running.len());
            }
            // Finish one running pod per round.
            if let Some(p) = running
                .iter()
                .find(|p| pod_condition(p, "Ready") == Some("True"))
            {
                let new = finished
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(p.name_any());
                if new {
                    finish_pod(&pods, &p.name_any(), "Succeeded").await?;
                }
            }
            let job = jobs.get("work").await?;
            Ok(job_condition(&job, "Complete").is_some().then_some(job))
        }
    })
    .await?;
    let max_active = *max_active.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    assert!(max_active <= 2, "parallelism 2 honoured, saw {max_active}");
    let status = done.status.clone().context("status")?;
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let (reason, message) =
        job_condition(&done, "SuccessCriteriaMet").context("SuccessCriteriaMet")?;
    assert_eq!(reason, "CompletionsReached");
    assert_eq!(message, "Reached expected number of succeeded pods");
    assert_eq!(
        job_condition(&done, "Complete").map(|c| c.0).as_deref(),
        Some("CompletionsReached")
    );
    let all = pods
        .list(&ListParams::default().labels("job=work"))
        .await?
        .items;
    assert_eq!(all.len(), 3, "no extra pods were created");
    c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=1s",
    ])
    .or_else(|e| {
        if jobs_gone(&c) {
            Ok(String::new())
        } else {
            Err(e)
        }
    })?;

    eventually(
        "the finished Job to be deleted after its TTL",
        TIMEOUT,
        || async { Ok(jobs.get_opt("work").await?.is_none().then_some(())) },
    )
    .await?;
    Ok(())
}

fn jobs_gone(c: &Cluster) -> bool {
    c.kubectl(&["get", "job", "work", "-o", "name"]).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_pods_keep_failing_fails_with_backoff_limit_exceeded() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &job_json("flaky", 1, 1, 1, None).to_string(),
    )?;
    let failed = Arc::new(Mutex::new(HashSet::new()));
    let job = eventually("the Job to fail", TIMEOUT, || {
        let (pods, jobs) = (pods.clone(), jobs.clone());
        let failed = failed.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("job=flaky"))
                .await?
                .items;
            for p in &list {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let new = running
                    && failed
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .insert(p.name_any());
                if new {
                    finish_pod(&pods, &p.name_any(), "Failed").await?;
                }
            }
            let job = jobs.get("flaky").await?;
            Ok(job_condition(&job, "Failed").is_some().then_some(job))
        }
    })
    .await?;
    let status = job.status.clone().context("status")?;
    assert_eq!(status.failed, Some(2), "backoffLimit 1 allows one retry");
    assert_eq!(status.succeeded.unwrap_or(0), 0);
    assert!(status.completion_time.is_none());
    let (reason, message) = job_condition(&job, "Failed").context("Failed")?;
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(message, "Job has reached the specified backoff limit");
    assert_eq!(
        job_condition(&job, "FailureTarget").map(|c| c.0).as_deref(),
        Some("BackoffLimitExceeded")
    );
    let all = pods
        .list(&ListParams::default().labels("job=flaky"))
        .await?
        .items;
    assert_eq!(all.len(), 2, "no pod after the limit");
    let events = events_with_reason(&client, "BackoffLimitExceeded").await?;
    assert!(!events.is_empty(), "a BackoffLimitExceeded event");
    Ok(())
}

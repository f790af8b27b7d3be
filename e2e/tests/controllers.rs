//! The controller manager through the real API: ReplicaSets, Deployments
//! (rolling updates, rollback), garbage collection with every propagation
//! policy, namespace deletion, and restarts that create nothing extra.
//!
//! The clusters run simulated nodes; a small "readiness simulator" also
//! marks pods Running and Ready through the pods/status subresource when no
//! node agent did it first (e.g. pods no node can take), so these tests
//! depend on the controllers only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use e2e::eventually;
use e2e::{Cluster, ClusterOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn cluster() -> Result<Cluster> {
    Cluster::start(ClusterOptions {
        nodes: 3,
        runtime: "sim",
        ..Default::default()
    })
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Marks every new pod of `ns` Running and Ready after `delay`, as a
/// kubelet would once its containers started.
/// Aborts the task when dropped, so a test's helper task never outlives it
/// (a task still running would keep the test's runtime from shutting down).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn simulate_readiness(client: Client, ns: &str, delay: Duration) -> AbortOnDrop {
    let api: Api<Pod> = Api::namespaced(client, ns);
    AbortOnDrop(tokio::spawn(async move {
        let mut done = HashSet::new();
        // Backoff between failed watches: without it a watch against a
        // stopped cluster fails in a tight loop that never yields.
        let mut events = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            let pods = match ev {
                Ok(Event::Apply(p) | Event::InitApply(p)) => vec![p],
                _ => continue,
            };
            for p in pods {
                let uid = p.uid().unwrap_or_default();
                if is_ready(&p) || p.metadata.deletion_timestamp.is_some() || !done.insert(uid) {
                    continue;
                }
                let api = api.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // A node agent may have done it already.
                    match api.get_opt(&p.name_any()).await {
                        Ok(Some(cur))
                            if !is_ready(&cur) && cur.metadata.deletion_timestamp.is_none() => {}
                        _ => return,
                    }
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let patch = json!({"status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                        ]
                    }});
                    let _ = api
                        .patch_status(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await;
                });
            }
        }
    }))
}

fn deployment_yaml(name: &str, ns: &str, replicas: i32, image: &str, strategy: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  strategy:
{strategy}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: {image}
"#
    )
}

const ROLLING_1_1: &str =
    "    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 1";

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

async fn active_pods(client: &Client, ns: &str, selector: &str) -> Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

async fn wait_for_pods(client: &Client, ns: &str, selector: &str, n: usize) -> Result<Vec<Pod>> {
    eventually(&format!("{n} pods {selector}"), TIMEOUT, || async {
        let pods = active_pods(client, ns, selector).await?;
        Ok((pods.len() == n).then_some(pods))
    })
    .await
}

async fn replicasets(client: &Client, ns: &str, selector: &str) -> Result<Vec<ReplicaSet>> {
    Ok(Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

/// Waits until the Deployment's rollout finished as `kubectl rollout status` sees it.
fn rollout_status(c: &Cluster, ns: &str, name: &str) -> Result<String> {
    c.kubectl(&[
        "rollout",
        "status",
        "-n",
        ns,
        &format!("deployment/{name}"),
        "--timeout=60s",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_creates_a_hashed_replicaset_and_scales_its_pods() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let _ready = simulate_readiness(client.clone(), "default", Duration::from_millis(50));
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment_yaml("web", "default", 3, "nginx:1.25", ROLLING_1_1),
    )?;
    let pods = wait_for_pods(&client, "default", "app=web", 3).await?;
    let rss = replicasets(&client, "default", "app=web").await?;
    assert_eq!(rss.len(), 1, "one ReplicaSet");
    let rs = &rss[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .context("hash label")?;
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    for p in &pods {
        assert_eq!(p.labels().get("pod-template-hash"), Some(&hash));
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", rs.name_any().as_str())
        );
        assert!(p.name_any().starts_with(&format!("web-{hash}-")));
    }
    c.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ])?;
    let out = rollout_status(&c, "default", "web")?;
    assert!(out.contains("successfully rolled out"), "{out}");

    c.kubectl(&["scale", "deployment/web", "--replicas=5"])?;
    wait_for_pods(&client, "default", "app=web", 5).await?;
    c.kubectl(&["scale", "deployment/web", "--replicas=1"])?;
    wait_for_pods(&client, "default", "app=web", 1).await?;
    let d: Deployment = Api::namespaced(client.clone(), "default")
        .get("web")
        .await?;
    let d = eventually("deployment status to settle", TIMEOUT, || {
        let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
        async move {
            let d = api.get("web").await?;
            let s = d.status.clone().unwrap_or_default();
            Ok((s.replicas == Some(1) && s.available_replicas == Some(1)).then_some(d))
        }
    })
    .await
    .unwrap_or(d);
    let s = d.status.context("status")?;
    assert_eq!(s.updated_replicas, Some(1));
    assert_eq!(s.observed_generation, d.metadata.generation);
    // Still a single ReplicaSet: scaling is not a rollout.
    assert_eq!(replicasets(&client, "default", "app=web").await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_adopts_matching_orphans_and_replaces_deleted_pods() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "main", "image": "redis"}]}
    }))?;
    pods.create(&PostParams::default(), &orphan).await?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: db
spec:
  replicas: 3
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: main
        image: redis
"#,
    )?;
    let list = wait_for_pods(&client, "default", "app=db", 3).await?;
    let orphan = eventually("the orphan to be adopted", TIMEOUT, || async {
        let p = pods.get("orphan").await?;
        Ok(p.owner_references()
            .iter()
            .any(|r| r.name == "db" && r.controller == Some(true))
            .then_some(p))
    })
    .await?;
    assert!(list.iter().any(|p| p.name_any() == "orphan"));
    assert_eq!(
        orphan.owner_references()[0].block_owner_deletion,
        Some(true)
    );

    // A pod that stops matching is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await?;
    eventually("the relabelled pod to be released", TIMEOUT, || async {
        Ok(pods
            .get("orphan")
            .await?
            .owner_references()
            .is_empty()
            .then_some(()))
    })
    .await?;
    let list = wait_for_pods(&client, "default", "app=db", 3).await?;
    // A deleted pod is replaced.
    pods.delete(&list[0].name_any(), &Default::default())
        .await?;
    let after = wait_for_pods(&client, "default", "app=db", 3).await?;
    assert!(!after.iter().any(|p| p.uid() == list[0].uid()));
    let events = c.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"])?;
    assert!(events.contains("SuccessfulCreate"), "{events}");
    // The status follows the pods (it is written after the controller
    // sees the replacement, so it may trail the pod list briefly).
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    eventually("status.replicas of 3", TIMEOUT, || async {
        let rs = rs_api.get("db").await?;
        Ok((rs.status.map(|s| s.replicas) == Some(3)).then_some(()))
    })
    .await?;
    // Settled: no further pods appear.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(active_pods(&client, "default", "app=db").await?.len(), 3);
    Ok(())
}

/// Counts at one moment of a rollout.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pods: usize,
    ready: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_never_exceeds_the_surge_nor_drops_below_availability() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let _ready = simulate_readiness(client.clone(), "default", Duration::from_millis(200));
    let replicas = 4;
    let (surge, unavailable) = (1, 1);
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment_yaml("roll", "default", replicas, "nginx:1", ROLLING_1_1),
    )?;
    rollout_status(&c, "default", "roll")?;

    // Watch every pod event during the rollout.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(api, watcher::Config::default().labels("app=roll"))
        .default_backoff()
        .boxed();
    let mut pods: HashMap<String, Pod> = HashMap::new();
    let counts = |pods: &HashMap<String, Pod>| {
        let active: Vec<&Pod> = pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        Counts {
            pods: active.len(),
            ready: active.iter().filter(|p| is_ready(p)).count(),
        }
    };
    // Initial state first.
    loop {
        match events.try_next().await?.context("watch ended")? {
            Event::InitApply(p) => {
                pods.insert(p.name_any(), p);
            }
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(counts(&pods).ready, replicas as usize);
    c.kubectl(&["set", "image", "deployment/roll", "main=nginx:2"])?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await;
        match ev {
            Ok(Ok(Some(Event::Apply(p)))) => {
                pods.insert(p.name_any(), p);
            }
            Ok(Ok(Some(Event::Delete(p)))) => {
                pods.remove(&p.name_any());
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => bail!("watch ended"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {}
        }
        let now = counts(&pods);
        seen.push(now);
        assert!(
            now.pods <= (replicas + surge) as usize,
            "surge exceeded: {now:?}; history {seen:?}"
        );
        assert!(
            now.ready >= (replicas - unavailable) as usize,
            "availability dropped: {now:?}; history {seen:?}"
        );
        let updated = pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| is_ready(p))
            .filter(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| s.containers[0].image.as_deref() == Some("nginx:2"))
            })
            .count();
        if updated == replicas as usize && now.pods == replicas as usize {
            break;
        }
        if Instant::now() > deadline {
            bail!("rollout did not finish: {now:?}; history {seen:?}");
        }
    }
    let out = rollout_status(&c, "default", "roll")?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replicasets(&client, "default", "app=roll").await?;
    assert_eq!(rss.len(), 2);
    let d: Deployment = Api::namespaced(client.clone(), "default")
        .get("roll")
        .await?;
    let s = d.status.context("status")?;
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas),
        (Some(4), Some(4), Some(4))
    );
    let progressing = s
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .context("Progressing")?;
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    Ok(())
}

fn template_image(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .image
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_undo_returns_to_the_previous_revision() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let _ready = simulate_readiness(client.clone(), "default", Duration::from_millis(20));
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment_yaml("app", "default", 2, "nginx:1", ROLLING_1_1),
    )?;
    rollout_status(&c, "default", "app")?;
    c.kubectl(&["set", "image", "deployment/app", "main=nginx:2"])?;
    rollout_status(&c, "default", "app")?;
    let history = c.kubectl(&["rollout", "history", "deployment/app"])?;
    assert!(history.contains('1') && history.contains('2'), "{history}");

    c.kubectl(&["rollout", "undo", "deployment/app"])?;
    rollout_status(&c, "default", "app")?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = api.get("app").await?;
    assert_eq!(template_image(&d).as_deref(), Some("nginx:1"));
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    // The old ReplicaSet came back as revision 3; no third ReplicaSet.
    let rss = replicasets(&client, "default", "app=app").await?;
    assert_eq!(rss.len(), 2);
    let pods = wait_for_pods(&client, "default", "app=app", 2).await?;
    assert!(pods.iter().all(|p| {
        p.spec
            .as_ref()
            .is_some_and(|s| s.containers[0].image.as_deref() == Some("nginx:1"))
    }));
    let history = c.kubectl(&["rollout", "history", "deployment/app"])?;
    assert!(history.contains('3'), "{history}");

    // `rollout restart` starts a new rollout of the same image.
    c.kubectl(&["rollout", "restart", "deployment/app"])?;
    rollout_status(&c, "default", "app")?;
    assert_eq!(replicasets(&client, "default", "app=app").await?.len(), 3);
    let d = api.get("app").await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("4")
    );
    Ok(())
}

async fn gone<K>(api: &Api<K>, name: &str) -> Result<Option<()>>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.is_none().then_some(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascade_orphan_foreground_and_background_behave_as_in_kubernetes(
) -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for name in ["orphaned", "fg", "bg"] {
        c.kubectl_stdin(
            &["apply", "-f", "-"],
            &deployment_yaml(name, "default", 2, "nginx", ROLLING_1_1),
        )?;
        wait_for_pods(&client, "default", &format!("app={name}"), 2).await?;
    }

    // Orphan: the ReplicaSet and pods stay, without an owner.
    c.kubectl(&["delete", "deployment/orphaned", "--cascade=orphan"])?;
    eventually("the orphaned deployment to go", TIMEOUT, || {
        gone(&d_api, "orphaned")
    })
    .await?;
    let rss = replicasets(&client, "default", "app=orphaned").await?;
    assert_eq!(rss.len(), 1);
    assert!(
        rss[0].owner_references().is_empty(),
        "{:?}",
        rss[0].metadata
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        active_pods(&client, "default", "app=orphaned").await?.len(),
        2
    );

    // Foreground: dependents go first, then the owner.
    let fg_rs = replicasets(&client, "default", "app=fg").await?[0].name_any();
    c.kubectl(&[
        "delete",
        "deployment/fg",
        "--cascade=foreground",
        "--wait=false",
    ])?;
    eventually("the fg deployment to go", TIMEOUT, || async {
        match d_api.get_opt("fg").await? {
            Some(d) => {
                assert!(d.metadata.deletion_timestamp.is_some());
                Ok(None)
            }
            None => Ok(Some(())),
        }
    })
    .await?;
    assert!(
        rs_api.get_opt(&fg_rs).await?.is_none(),
        "the ReplicaSet went before its owner"
    );
    assert!(active_pods(&client, "default", "app=fg").await?.is_empty());

    // Background: the owner goes at once, dependents after.
    c.kubectl(&["delete", "deployment/bg", "--cascade=background"])?;
    assert!(d_api.get_opt("bg").await?.is_none());
    eventually(
        "bg's ReplicaSet and pods to be collected",
        TIMEOUT,
        || async {
            let rss = replicasets(&client, "default", "app=bg").await?;
            let pods = Api::<Pod>::namespaced(client.clone(), "default")
                .list(&ListParams::default().labels("app=bg"))
                .await?;
            Ok((rss.is_empty() && pods.items.is_empty()).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_with_two_owners_survives_until_both_are_gone() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut uids = BTreeMap::new();
    for name in ["owner-a", "owner-b"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        uids.insert(
            name,
            cms.create(&PostParams::default(), &cm)
                .await?
                .uid()
                .context("uid")?,
        );
    }
    let refs: Vec<_> = uids
        .iter()
        .map(|(name, uid)| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}))
        .collect();
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "dependent", "ownerReferences": refs}
    }))?;
    cms.create(&PostParams::default(), &dependent).await?;
    // A cycle: x owns y and y owns x, both blocking.
    let plain: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cycle-x"}}))?;
    let x = cms.create(&PostParams::default(), &plain).await?;
    let y: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "cycle-y", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cycle-x", "uid": x.uid(), "blockOwnerDeletion": true}
        ]}}),
    )?;
    let y = cms.create(&PostParams::default(), &y).await?;
    cms.patch(
        "cycle-x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cycle-y", "uid": y.uid(), "blockOwnerDeletion": true}
        ]}})),
    )
    .await?;

    cms.delete("owner-a", &Default::default()).await?;
    eventually("the dangling reference to be dropped", TIMEOUT, || async {
        let d = cms.get("dependent").await?;
        Ok((d.owner_references().len() == 1).then_some(()))
    })
    .await?;
    cms.delete("owner-b", &Default::default()).await?;
    eventually("the dependent to be collected", TIMEOUT, || {
        gone(&cms, "dependent")
    })
    .await?;

    c.kubectl(&[
        "delete",
        "configmap/cycle-x",
        "--cascade=foreground",
        "--wait=false",
    ])?;
    eventually("the foreground cycle to be collected", TIMEOUT, || async {
        Ok(
            (gone(&cms, "cycle-x").await?.is_some() && gone(&cms, "cycle-y").await?.is_some())
                .then_some(()),
        )
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_contents_then_the_namespace() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    create_namespace(&client, "doomed").await?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment_yaml("web", "doomed", 2, "nginx", ROLLING_1_1),
    )?;
    c.kubectl(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ])?;
    wait_for_pods(&client, "doomed", "app=web", 2).await?;
    c.kubectl(&["delete", "namespace", "doomed", "--wait=false"])?;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    eventually("the namespace to go", TIMEOUT, || gone(&ns_api, "doomed")).await?;
    for (kind, items) in [
        (
            "pods",
            Api::<Pod>::namespaced(client.clone(), "doomed")
                .list(&Default::default())
                .await?
                .items
                .len(),
        ),
        (
            "configmaps",
            Api::<ConfigMap>::namespaced(client.clone(), "doomed")
                .list(&Default::default())
                .await?
                .items
                .len(),
        ),
        (
            "deployments",
            Api::<Deployment>::namespaced(client.clone(), "doomed")
                .list(&Default::default())
                .await?
                .items
                .len(),
        ),
    ] {
        assert_eq!(items, 0, "{kind} left in a deleted namespace");
    }
    // The system namespaces are still there.
    for ns in ["default", "kube-system"] {
        assert!(ns_api.get_opt(ns).await?.is_some(), "{ns} is missing");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_control_plane_creates_no_extra_pods() -> Result<()> {
    let mut c = cluster()?;
    let client = c.client().await?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment_yaml("stable", "default", 5, "nginx", ROLLING_1_1),
    )?;
    let before: BTreeMap<String, String> = wait_for_pods(&client, "default", "app=stable", 5)
        .await?
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    c.restart()?;
    let client = c.client().await?;
    // Prove the controllers run again: a new Deployment gets its pods.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment_yaml("canary", "default", 1, "nginx", ROLLING_1_1),
    )?;
    wait_for_pods(&client, "default", "app=canary", 1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: BTreeMap<String, String> = active_pods(&client, "default", "app=stable")
        .await?
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        replicasets(&client, "default", "app=stable").await?.len(),
        1
    );
    Ok(())
}

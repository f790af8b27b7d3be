//! The shared pod loop of all simulated nodes of a process: one watch of
//! bound pods, dispatched by `spec.nodeName`. A bound pod moves to Running
//! with an IP from its node's pod CIDR; a pod being deleted is removed
//! (`gracePeriodSeconds=0`, as the kubelet does once its containers stopped).
//!
//! Writes run as tasks, at most [`SimConfig::status_concurrency`] at once;
//! when all are busy the watch is not read until one finishes.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::Semaphore;

use super::ipam::{PodCidr, PodIps};
use super::{SimConfig, SimError};
use crate::runtime::Runtime;

const HOST_IP: &str = "127.0.0.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Start,
    Delete,
}

/// What the loop does with a pod it sees.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Start,
    Delete,
    Nothing,
}

/// Decides from the pod alone, so a restarted process picks up where it left.
fn action_for(pod: &Pod) -> Action {
    if pod.metadata.deletion_timestamp.is_some() {
        return Action::Delete;
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if matches!(phase, "Succeeded" | "Failed") {
        return Action::Nothing;
    }
    let containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let ready = status
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| cs.len() == containers && cs.iter().all(|c| c.ready));
    let has_ip = status.and_then(|s| s.pod_ip.as_ref()).is_some();
    if phase == "Running" && ready && has_ip {
        Action::Nothing
    } else {
        Action::Start
    }
}

struct Shared {
    pods: Api<Pod>,
    runtime: Arc<dyn Runtime>,
    ips: HashMap<String, Mutex<PodIps>>,
    in_flight: Mutex<HashSet<(String, Op)>>,
}

pub(crate) struct PodLoop {
    shared: Arc<Shared>,
    selector: String,
    writes: Arc<Semaphore>,
}

impl PodLoop {
    pub(crate) fn new(client: Client, config: &SimConfig, runtime: Arc<dyn Runtime>) -> Self {
        let selector = match config.nodes.as_slice() {
            [one] => format!("spec.nodeName={}", one.name),
            _ => "spec.nodeName!=".to_string(),
        };
        let ips = config
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    Mutex::new(PodIps::new(PodCidr::for_index(n.index))),
                )
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                pods: Api::all(client),
                runtime,
                ips,
                in_flight: Mutex::new(HashSet::new()),
            }),
            selector,
            writes: Arc::new(Semaphore::new(config.status_concurrency.max(1))),
        }
    }

    pub(crate) async fn run(self) -> Result<(), SimError> {
        let config = watcher::Config::default().fields(&self.selector);
        let mut events = watcher(self.shared.pods.clone(), config)
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    self.on_pod(pod).await;
                }
                Ok(watcher::Event::Delete(pod)) => self.on_gone(&pod),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the simulated nodes' pod watch failed; retrying")
                }
            }
        }
        Ok(())
    }

    fn node_of<'a>(&self, pod: &'a Pod) -> Option<&'a str> {
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        self.shared.ips.contains_key(node).then_some(node)
    }

    fn on_gone(&self, pod: &Pod) {
        if let (Some(node), Some(uid)) = (self.node_of(pod), pod.metadata.uid.as_deref()) {
            if let Some(ips) = self.shared.ips.get(node) {
                ips.lock().unwrap_or_else(|e| e.into_inner()).release(uid);
            }
        }
    }

    async fn on_pod(&self, pod: Pod) {
        let Some(node) = self.node_of(&pod).map(str::to_string) else {
            return;
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let op = match action_for(&pod) {
            Action::Start => Op::Start,
            Action::Delete => Op::Delete,
            Action::Nothing => {
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
                if let (Some(ip), Some(ips)) = (
                    ip.and_then(|i| i.parse::<Ipv4Addr>().ok()),
                    self.shared.ips.get(&node),
                ) {
                    ips.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .adopt(&uid, ip);
                }
                return;
            }
        };
        let key = (uid.clone(), op);
        if !self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let Ok(permit) = self.writes.clone().acquire_owned().await else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let result = match op {
                Op::Start => shared.start(&pod, &node, &uid).await,
                Op::Delete => shared.delete(&pod, &node, &uid).await,
            };
            if let Err(e) = result {
                tracing::warn!(
                    pod = pod.metadata.name.as_deref().unwrap_or_default(),
                    namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
                    node = %node,
                    error = %e,
                    "simulated pod update failed"
                );
            }
            shared
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            drop(permit);
        });
    }
}

/// A failure of one pod write.
#[derive(Debug, thiserror::Error)]
enum PodError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("the pod CIDR of the node is full")]
    NoAddress,
}

impl Shared {
    fn api_for(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(
            self.pods.clone().into_client(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    async fn start(&self, pod: &Pod, node: &str, uid: &str) -> Result<(), PodError> {
        let ip = {
            let mut ips = self
                .ips
                .get(node)
                .ok_or(PodError::NoAddress)?
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            ips.assign(uid).ok_or(PodError::NoAddress)?
        }
        .to_string();
        let started = self.runtime.start_pod(pod, &ip).await?;
        let now = crate::time::now();
        let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(|| now.clone());
        let mut status = json!({
            "phase": "Running",
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": start_time,
            "conditions": [
                condition("PodReadyToStartContainers"),
                condition("Initialized"),
                condition("ContainersReady"),
                condition("Ready"),
            ],
            "containerStatuses": started.containers,
        });
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "PodScheduled"));
        if !scheduled {
            if let Some(conds) = status["conditions"].as_array_mut() {
                conds.push(condition("PodScheduled"));
            }
        }
        if !started.init_containers.is_empty() {
            status["initContainerStatuses"] = json!(started.init_containers);
        }
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.api_for(pod)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        Ok(())
    }

    async fn delete(&self, pod: &Pod, node: &str, uid: &str) -> Result<(), PodError> {
        self.runtime.stop_pod(pod).await?;
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api_for(pod).delete(name, &params).await {
            Ok(_) => {}
            // Already gone, or replaced by a new pod of the same name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(ips) = self.ips.get(node) {
            ips.lock().unwrap_or_else(|e| e.into_inner()).release(uid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("valid pod")
    }

    #[test]
    fn a_bound_pending_pod_is_started() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"}}));
        assert_eq!(action_for(&p), Action::Start);
    }

    #[test]
    fn a_running_ready_pod_is_left_alone() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIP": "10.128.0.2",
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0}]}}));
        assert_eq!(action_for(&p), Action::Nothing);
    }

    #[test]
    fn a_pod_with_a_deletion_timestamp_is_deleted_even_when_running() {
        let p = pod(
            json!({"metadata": {"name": "p", "uid": "u", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}}),
        );
        assert_eq!(action_for(&p), Action::Delete);
    }

    #[test]
    fn a_finished_pod_is_not_restarted() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Succeeded"}}));
        assert_eq!(action_for(&p), Action::Nothing);
    }

    #[tokio::test]
    async fn the_sim_runtime_reports_running_ready_containers_with_sim_ids() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}],
                     "initContainers": [{"name": "i", "image": "busybox"}]}}));
        let started = super::super::SimRuntime
            .start_pod(&p, "10.128.0.2")
            .await
            .expect("starts");
        let c = &started.containers[0];
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.restart_count, 0);
        assert_eq!(c.container_id.as_deref(), Some("sim://u/c"));
        assert!(c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        let i = &started.init_containers[0];
        assert_eq!(
            i.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(0)
        );
    }
}

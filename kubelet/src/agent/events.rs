//! core/v1 Events about a pod's containers (and the node), as the kubelet
//! records them (`Unhealthy`, `Killing`, `Evicted`), so `kubectl describe pod` shows why a
//! container was restarted or is not ready. Best effort: a failed write is
//! logged and dropped.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

/// Records events about one pod on behalf of the node's kubelet.
#[derive(Clone)]
pub(crate) struct PodEvents {
    client: Client,
    node: String,
    pod: ObjectReference,
}

impl PodEvents {
    pub(crate) fn new(client: Client, node: &str, pod: &Pod) -> Self {
        Self {
            client,
            node: node.to_string(),
            pod: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
        }
    }

    /// Records events about the Node itself (in `default`, as the
    /// kubelet does).
    pub(crate) fn for_node(client: Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_string(),
            pod: ObjectReference {
                kind: Some("Node".to_string()),
                name: Some(node.to_string()),
                uid: Some(node.to_string()),
                ..Default::default()
            },
        }
    }

    /// Records `reason`/`message` about `container` in the background.
    pub(crate) fn publish(&self, container: &str, type_: EventType, reason: &str, message: String) {
        let namespace = self
            .pod
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = Timestamp::now();
        let name = format!(
            "{}.{:x}{:04x}",
            self.pod.name.as_deref().unwrap_or("object"),
            now.as_nanosecond(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xffff
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                field_path: (!container.is_empty())
                    .then(|| format!("spec.containers{{{container}}}")),
                ..self.pod.clone()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(format!("{type_:?}")),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some("kubelet".to_string()),
            reporting_instance: Some(self.node.clone()),
            source: Some(EventSource {
                component: Some("kubelet".to_string()),
                host: Some(self.node.clone()),
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, namespace = %namespace, "cannot record an event");
            }
        });
    }
}

//! The scheduler's writes to the API: bindings, the `PodScheduled`
//! condition and `nominatedNodeName`, and `FailedScheduling` events.

use k8s_openapi::api::core::v1::{Binding, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use crate::framework::PodInfo;

pub const COMPONENT: &str = "default-scheduler";

fn now_timestamp() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn now_seconds() -> Time {
    let t = now_timestamp();
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn pods(client: &Client, pod: &PodInfo) -> Api<Pod> {
    Api::namespaced(client.clone(), &pod.namespace)
}

/// `POST pods/{name}/binding` to `node`.
pub async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    pods(client, pod)
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &binding,
        )
        .await
        .map(|_| ())
}

/// The pod's current `PodScheduled` condition as `(status, reason, message)`.
fn scheduled_condition(pod: &Pod) -> Option<(&str, Option<&str>, Option<&str>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()))
}

/// Sets `PodScheduled=False` (reason `Unschedulable`) with `message`, and
/// `nominatedNodeName` when preemption chose a node; skips the write when
/// the pod already says exactly that. Then records a `FailedScheduling`
/// event.
pub async fn record_unschedulable(
    client: &Client,
    pod: &PodInfo,
    message: &str,
    nominated_node: Option<&str>,
) -> Result<(), kube::Error> {
    let current = scheduled_condition(&pod.pod);
    let same_condition = current == Some(("False", Some("Unschedulable"), Some(message)));
    let current_nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    let nomination_changes = nominated_node.is_some() && nominated_node != current_nominated;
    if !same_condition || nomination_changes {
        let mut condition = json!({
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
        });
        if !matches!(current, Some(("False", ..))) {
            condition["lastTransitionTime"] = json!(now_seconds());
        }
        let mut status = json!({ "conditions": [condition] });
        if let Some(node) = nominated_node {
            status["nominatedNodeName"] = json!(node);
        }
        let patch = json!({"metadata": {"uid": pod.uid}, "status": status});
        pods(client, pod)
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await?;
    }
    event(client, pod, "Warning", "FailedScheduling", message).await
}

/// Records a core/v1 Event about the pod.
pub async fn event(
    client: &Client,
    pod: &PodInfo,
    kind: &str,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let now = now_timestamp();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            resource_version: pod.pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(kind.to_string()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        first_timestamp: Some(now_seconds()),
        last_timestamp: Some(now_seconds()),
        event_time: Some(MicroTime(now)),
        action: Some("Scheduling".into()),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(format!("{COMPONENT}-skiff")),
        count: Some(1),
        ..Default::default()
    };
    Api::<Event>::namespaced(client.clone(), &pod.namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

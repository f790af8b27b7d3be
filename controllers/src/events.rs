//! Publishing core/v1 Events so `kubectl describe` tells what a controller
//! did. Failing to record an event is logged and otherwise ignored: events
//! are best effort, as in Kubernetes.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Records events on behalf of one controller (`component`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

/// `Normal` or `Warning`, as Kubernetes' event types.
#[derive(Clone, Copy, Debug)]
pub enum EventType {
    Normal,
    Warning,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Self { client, component }
    }

    /// Records `reason`/`message` about `obj` in the background.
    pub fn publish<K>(&self, obj: &K, type_: EventType, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ns = obj.namespace().unwrap_or_else(|| "default".to_string());
        let now = Timestamp::now();
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: obj.meta().name.clone(),
            namespace: obj.namespace(),
            uid: obj.meta().uid.clone(),
            resource_version: obj.meta().resource_version.clone(),
            ..Default::default()
        };
        let event = Event {
            metadata: ObjectMeta {
                // Named as client-go's recorder does: `<object>.<unique hex>`.
                name: Some(format!(
                    "{}.{:x}{:04x}",
                    obj.name_any(),
                    now.as_nanosecond(),
                    SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xffff
                )),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(format!("{type_:?}")),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            action: Some(reason.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, "cannot record an event");
            }
        });
    }
}

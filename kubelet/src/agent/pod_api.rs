//! [`PodApi`] over the API client: the ConfigMaps and Secrets a pod's
//! volumes and env read (GET in the pod's namespace, as the kubelet does
//! with its `Get` change-detection strategy), and Warning events about it.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use kube::Client;

use super::events::{EventType, PodEvents};
use crate::containerd::volumes::{LookupError, PodApi};

/// Reads pod-referenced objects through the API on behalf of a node.
#[derive(Clone)]
pub(crate) struct ClientPodApi {
    client: Client,
    node: String,
}

impl std::fmt::Debug for ClientPodApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPodApi")
            .field("node", &self.node)
            .finish()
    }
}

impl ClientPodApi {
    pub(crate) fn new(client: Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_string(),
        }
    }
}

#[async_trait]
impl PodApi for ClientPodApi {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, LookupError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    fn warn(&self, pod: &Pod, reason: &str, message: String) {
        PodEvents::new(self.client.clone(), &self.node, pod).publish(
            "",
            EventType::Warning,
            reason,
            message,
        );
    }
}

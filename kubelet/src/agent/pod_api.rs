//! [`PodApi`] over the API client: the ConfigMaps and Secrets a pod's
//! volumes and env read (GET in the pod's namespace, as the kubelet does
//! with its `Get` change-detection strategy), service-account tokens (through
//! [`super::tokens`]'s cache), and Warning events about it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::Client;

use super::events::{EventType, PodEvents};
use super::tokens::{self, TokenCache};
use crate::containerd::volumes::{LookupError, PodApi};

/// Reads pod-referenced objects through the API on behalf of a node.
#[derive(Clone)]
pub(crate) struct ClientPodApi {
    client: Client,
    node: String,
    tokens: Arc<Mutex<TokenCache>>,
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
            tokens: Arc::default(),
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

    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, LookupError> {
        let key = tokens::key(namespace, service_account, request);
        let now = k8s_openapi::jiff::Timestamp::now();
        let cache = |f: &dyn Fn(&mut TokenCache) -> Option<TokenRequest>| {
            self.tokens
                .lock()
                .map(|mut c| f(&mut c))
                .unwrap_or_else(|p| f(&mut p.into_inner()))
        };
        if let Some(token) = cache(&|c| c.fresh(&key, now)) {
            return Ok(token);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match api
            .create_token_request(service_account, &PostParams::default(), request)
            .await
        {
            Ok(token) => {
                cache(&|c| {
                    c.insert(key.clone(), token.clone(), now);
                    None
                });
                tracing::debug!(
                    namespace,
                    service_account,
                    "service-account token refreshed"
                );
                Ok(token)
            }
            Err(error) => {
                if let Some(token) = cache(&|c| c.unexpired(&key, now)) {
                    tracing::warn!(namespace, service_account, %error, "token refresh failed; keeping the current token");
                    return Ok(token);
                }
                Err(match error {
                    kube::Error::Api(status) => status.message.into(),
                    other => other.into(),
                })
            }
        }
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

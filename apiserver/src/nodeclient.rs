//! Calling the node agents' HTTPS API (`/containerLogs`, `/stats/summary`,
//! `/stats/requests`, and the upgraded `/exec` and `/attach` streams) with
//! the API server's kubelet client certificate.
//!
//! A node is reached at its `InternalIP` and
//! `status.daemonEndpoints.kubeletEndpoint.Port`; nodes without a port
//! (simulated nodes) have no agent API.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::tls::{self, Pki};

/// How long connecting and receiving response headers may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors calling an agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    /// The API server has no kubelet client certificate.
    #[error("the API server has no kubelet client certificate")]
    NoClientCertificate,
    /// The node has no reachable agent API.
    #[error("node {0} has no kubelet endpoint (address and daemonEndpoints port)")]
    NoEndpoint(String),
    /// Connecting, TLS or HTTP failed.
    #[error("cannot reach the agent of node {node} at {address}: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// `ip:port`.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The agent did not answer in time.
    #[error("the agent of node {0} did not answer in time")]
    Timeout(String),
    /// The agent answered with an error.
    #[error("{message}")]
    Status {
        /// The HTTP status.
        code: u16,
        /// The agent's message.
        message: String,
    },
    /// The agent's answer is not the expected JSON.
    #[error("the agent of node {node} sent invalid JSON: {reason}")]
    Decode {
        /// The node.
        node: String,
        /// The parse error.
        reason: String,
    },
}

/// Where a node's agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// The Node's name.
    pub node: String,
    /// Its `InternalIP`.
    pub address: String,
    /// Its kubelet endpoint port.
    pub port: u16,
}

impl NodeEndpoint {
    /// The endpoint of a Node object, if it reports one.
    pub fn of(node: &Value) -> Option<Self> {
        let name = node["metadata"]["name"].as_str()?.to_string();
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)?;
        let addresses = node["status"]["addresses"].as_array()?;
        let address = addresses
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .or_else(|| addresses.iter().find(|a| a["type"] == "ExternalIP"))?["address"]
            .as_str()?
            .to_string();
        Some(Self {
            node: name,
            address,
            port,
        })
    }

    fn unreachable(&self, reason: String) -> NodeClientError {
        NodeClientError::Unreachable {
            node: self.node.clone(),
            address: self.socket_address(),
            reason,
        }
    }

    fn socket_address(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// The agent's error answer: its status code and (text) body.
async fn error_of(response: http::Response<Incoming>) -> NodeClientError {
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    NodeClientError::Status {
        code,
        message: String::from_utf8_lossy(&body).trim().to_string(),
    }
}

/// Whether a Node object has condition Ready=True.
pub fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// An HTTPS client for the agents, holding the kubelet client certificate.
#[derive(Clone)]
pub struct NodeClient {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("has_certificate", &self.tls.is_some())
            .finish()
    }
}

impl NodeClient {
    /// A client with the PKI's kubelet client certificate; without one
    /// (e.g. tests without a PKI) every call fails with
    /// [`NodeClientError::NoClientCertificate`].
    pub fn from_pki(pki: &Pki) -> Self {
        match tls::kubelet_client_config(pki) {
            Ok(tls) => Self { tls: Some(tls) },
            Err(error) => {
                tracing::debug!(%error, "no kubelet client certificate: agent calls are off");
                Self { tls: None }
            }
        }
    }

    /// `GET path_and_query` on a node's agent. The response body streams
    /// (for `follow`); only connecting and the headers are time-limited.
    pub async fn get(
        &self,
        endpoint: &NodeEndpoint,
        path_and_query: &str,
    ) -> Result<http::Response<Incoming>, NodeClientError> {
        let tls = self
            .tls
            .clone()
            .ok_or(NodeClientError::NoClientCertificate)?;
        tokio::time::timeout(CONNECT_TIMEOUT, self.request(tls, endpoint, path_and_query))
            .await
            .map_err(|_| NodeClientError::Timeout(endpoint.node.clone()))?
    }

    async fn request(
        &self,
        tls: Arc<rustls::ClientConfig>,
        endpoint: &NodeEndpoint,
        path_and_query: &str,
    ) -> Result<http::Response<Incoming>, NodeClientError> {
        let request = http::Request::get(path_and_query)
            .body(Empty::<Bytes>::new())
            .map_err(|e| endpoint.unreachable(e.to_string()))?;
        let response = self.send(tls, endpoint, request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_of(response).await)
    }

    /// Sends `request` on a new connection (which serves upgrades).
    async fn send(
        &self,
        tls: Arc<rustls::ClientConfig>,
        endpoint: &NodeEndpoint,
        mut request: http::Request<Empty<Bytes>>,
    ) -> Result<http::Response<Incoming>, NodeClientError> {
        let address = endpoint.socket_address();
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| endpoint.unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let server_name = rustls::pki_types::ServerName::try_from(endpoint.address.clone())
            .map_err(|e| endpoint.unreachable(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| endpoint.unreachable(format!("TLS: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| endpoint.unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "agent connection ended");
            }
        });
        let headers = request.headers_mut();
        if let Ok(host) = http::HeaderValue::from_str(&address) {
            headers.insert(http::header::HOST, host);
        }
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("skiff-apiserver"),
        );
        sender
            .send_request(request)
            .await
            .map_err(|e| endpoint.unreachable(e.to_string()))
    }

    /// Sends an upgrade request (`method path_and_query` with `headers`,
    /// e.g. a WebSocket handshake) to a node's agent. On `101 Switching
    /// Protocols` returns the agent's response headers and the upgraded
    /// connection; otherwise the agent's error. Only connecting and the
    /// handshake are time-limited.
    pub async fn upgrade(
        &self,
        endpoint: &NodeEndpoint,
        method: http::Method,
        path_and_query: &str,
        headers: http::HeaderMap,
    ) -> Result<(http::HeaderMap, hyper::upgrade::Upgraded), NodeClientError> {
        let tls = self
            .tls
            .clone()
            .ok_or(NodeClientError::NoClientCertificate)?;
        let exchange = async {
            let mut request = http::Request::builder()
                .method(method)
                .uri(path_and_query)
                .body(Empty::<Bytes>::new())
                .map_err(|e| endpoint.unreachable(e.to_string()))?;
            *request.headers_mut() = headers;
            let mut response = self.send(tls, endpoint, request).await?;
            if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(error_of(response).await);
            }
            let headers = std::mem::take(response.headers_mut());
            let upgraded = hyper::upgrade::on(response)
                .await
                .map_err(|e| endpoint.unreachable(format!("upgrade: {e}")))?;
            Ok((headers, upgraded))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, exchange)
            .await
            .map_err(|_| NodeClientError::Timeout(endpoint.node.clone()))?
    }

    /// `GET path` as JSON, the whole exchange within `timeout`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &NodeEndpoint,
        path: &str,
        timeout: Duration,
    ) -> Result<T, NodeClientError> {
        let exchange = async {
            let response = self.get(endpoint, path).await?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| NodeClientError::Unreachable {
                    node: endpoint.node.clone(),
                    address: endpoint.socket_address(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| NodeClientError::Decode {
                node: endpoint.node.clone(),
                reason: e.to_string(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NodeClientError::Timeout(endpoint.node.clone()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(port: u64) -> Value {
        json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        })
    }

    #[test]
    fn a_node_is_reached_at_its_internal_ip_and_kubelet_port() {
        assert_eq!(
            NodeEndpoint::of(&node(10250)),
            Some(NodeEndpoint {
                node: "n1".into(),
                address: "10.0.0.5".into(),
                port: 10250
            })
        );
        assert!(is_ready(&node(1)));
    }

    #[test]
    fn a_node_reporting_port_zero_has_no_agent_api() {
        assert_eq!(NodeEndpoint::of(&node(0)), None);
        assert_eq!(
            NodeEndpoint::of(&json!({"metadata": {"name": "sim"}})),
            None
        );
    }
}

//! `pods/exec`, `pods/attach` and `pods/portforward`
//! (`GET|POST /api/v1/namespaces/{ns}/pods/{name}/exec?command=..`): the
//! request is checked here (pod, container, command), then the upgrade is
//! proxied to the agent of the pod's node (`/exec/{ns}/{pod}/{container}`
//! or `/attach/...`, `/portForward/{ns}/{pod}`) over the kubelet client
//! certificate, and the two
//! upgraded connections are spliced byte for byte, as Kubernetes' upgrade-
//! aware proxy does. The agent speaks the WebSocket channel protocols
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`) and, for port-forward,
//! SPDY/3.1 tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`, what
//! kubectl 1.31+ sends first); the client's handshake
//! headers go to it unchanged so the accept key and subprotocol it
//! answers are the client's.
//!
//! Only WebSocket upgrades are served: kubectl 1.30+ tries WebSocket first
//! and falls back to SPDY only when the upgrade fails, so a SPDY request
//! gets a 400 `Status` saying so.

use axum::body::Body;
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::pod_log::pick_container;
use super::read::read_object;
use super::Ctx;
use crate::error::{ApiError, ApiResult, Target};
use crate::nodeclient::{NodeClientError, NodeEndpoint};
use crate::watchcache::decode_object;

/// The parts of an upgrade request the resource handlers do not keep.
#[derive(Debug, Default)]
pub(crate) struct StreamRequest {
    /// The client connection's upgrade, when the request asked for one.
    pub upgrade: Option<OnUpgrade>,
    /// The full URI (the query has repeated `command` parameters).
    pub uri: Option<Uri>,
}

/// Handshake headers passed to the agent.
const FORWARDED: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];

/// Whether `sub` of pods is served here.
pub(crate) fn is_stream(sub: &str) -> bool {
    matches!(sub, "exec" | "attach" | "portforward")
}

/// What the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamQuery {
    command: Vec<String>,
    container: Option<String>,
    raw: String,
}

fn parse_query(uri: Option<&Uri>) -> ApiResult<StreamQuery> {
    let Some(uri) = uri else {
        return Ok(StreamQuery {
            command: Vec::new(),
            container: None,
            raw: String::new(),
        });
    };
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| {
        ApiError::BadRequest(format!("invalid query parameters: {}", e.body_text()))
    })?;
    Ok(StreamQuery {
        command: pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        container: pairs
            .iter()
            .find(|(k, v)| k == "container" && !v.is_empty())
            .map(|(_, v)| v.clone()),
        raw: uri.query().unwrap_or_default().to_string(),
    })
}

/// Whether the client asked for a WebSocket upgrade (and not SPDY).
fn upgrade_kind(headers: &HeaderMap) -> ApiResult<()> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if upgrade.contains("websocket") {
        Ok(())
    } else if upgrade.contains("spdy") {
        Err(ApiError::BadRequest(
            "SPDY streaming is not supported by this server; use a WebSocket client \
             (v5.channel.k8s.io or v4.channel.k8s.io, e.g. kubectl 1.30 or newer)"
                .to_string(),
        ))
    } else {
        Err(ApiError::BadRequest("Upgrade request required".to_string()))
    }
}

async fn node_endpoint(ctx: &Ctx, pod: &Value, name: &str) -> ApiResult<NodeEndpoint> {
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let node_target = Target::new("", "nodes", node_name);
    let kv = ctx
        .state
        .store
        .get(&format!("/registry/core/nodes/{node_name}"))
        .await
        .map_err(|e| ApiError::from_store(e, &node_target))?
        .ok_or_else(|| ApiError::NotFound(node_target.clone()))?;
    let node = decode_object(&kv.value, kv.mod_revision)
        .map_err(|e| ApiError::from_store(e, &node_target))?;
    NodeEndpoint::of(&node).ok_or_else(|| {
        ApiError::BadRequest(NodeClientError::NoEndpoint(node_name.to_string()).to_string())
    })
}

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    sub: &str,
    request: StreamRequest,
) -> ApiResult<Response> {
    if !matches!(*method, Method::GET | Method::POST) {
        return Err(ApiError::MethodNotAllowed);
    }
    let (_, pod) = read_object(ctx, name).await?;
    let query = parse_query(request.uri.as_ref())?;
    if sub == "exec" && query.command.is_empty() {
        return Err(ApiError::BadRequest(
            "you must specify at least one command for the container".to_string(),
        ));
    }
    let namespace = ctx.info.namespace.as_deref().unwrap_or("default");
    let (path, container) = if sub == "portforward" {
        // The agent dials the pod's IP; ports travel in the SPDY streams.
        let ip = pod["status"]["podIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have an IP yet")))?;
        (
            format!("/portForward/{namespace}/{name}?podIP={ip}"),
            String::new(),
        )
    } else {
        let container = pick_container(&pod, query.container.as_deref())?;
        let mut path = format!("/{sub}/{namespace}/{name}/{container}");
        if !query.raw.is_empty() {
            path.push('?');
            path.push_str(&query.raw);
        }
        (path, container)
    };
    let endpoint = node_endpoint(ctx, &pod, name).await?;
    upgrade_kind(&ctx.headers)?;
    let client_upgrade = request
        .upgrade
        .ok_or_else(|| ApiError::BadRequest("Upgrade request required".to_string()))?;
    let mut headers = HeaderMap::new();
    for key in FORWARDED {
        for value in ctx.headers.get_all(&key) {
            headers.append(key.clone(), value.clone());
        }
    }
    tracing::info!(pod = %name, %namespace, node = %endpoint.node, %container, subresource = sub, "proxying a stream");
    let (agent_headers, agent) = ctx
        .state
        .agents
        .client()
        .upgrade(&endpoint, method.clone(), &path, headers)
        .await
        .map_err(|e| match e {
            NodeClientError::Status { code, message } if (400..500).contains(&code) => {
                ApiError::BadRequest(message)
            }
            other => ApiError::Unavailable(other.to_string()),
        })?;
    tokio::spawn(async move {
        let client = match client_upgrade.await {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, "the client's upgrade failed");
                return;
            }
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        match tokio::io::copy_bidirectional(&mut client, &mut agent).await {
            Ok((up, down)) => tracing::debug!(up, down, "stream ended"),
            Err(error) => tracing::debug!(%error, "stream ended with an error"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (key, value) in agent_headers.iter() {
        if FORWARDED.contains(key) || key == header::SEC_WEBSOCKET_ACCEPT {
            response.headers_mut().append(key.clone(), value.clone());
        }
    }
    if !response.headers().contains_key(header::CONNECTION) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_every_command_argument_in_order() {
        let uri: Uri = "/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&command=echo+a%3B+exit+3&container=app&stdout=true"
            .parse()
            .expect("uri");
        let query = parse_query(Some(&uri)).expect("query");
        assert_eq!(query.command, vec!["sh", "-c", "echo a; exit 3"]);
        assert_eq!(query.container.as_deref(), Some("app"));
        assert!(query.raw.starts_with("command=sh&"));
    }

    #[test]
    fn only_websocket_upgrades_are_proxied() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            upgrade_kind(&headers).expect_err("no upgrade").to_string(),
            "Upgrade request required"
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(upgrade_kind(&headers)
            .expect_err("spdy")
            .to_string()
            .contains("WebSocket"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(upgrade_kind(&headers).is_ok());
    }
}

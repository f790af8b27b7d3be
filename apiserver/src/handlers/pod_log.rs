//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: proxied to the agent of
//! the pod's node (`/containerLogs/{ns}/{pod}/{container}`), streaming its
//! answer back so `follow` works.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::read::read_object;
use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::nodeclient::{NodeClientError, NodeEndpoint};
use crate::watchcache::decode_object;

/// The container a log request is about: the `container` parameter, or the
/// pod's only container; a 400 naming the choices otherwise, as Kubernetes.
pub(crate) fn pick_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (containers, init) = (names("containers"), names("initContainers"));
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::BadRequest(message))
        }
    }
}

/// A container that never started has no log: Kubernetes answers 400.
fn waiting_to_start(pod: &Value, container: &str) -> Option<String> {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(pod["status"]["initContainerStatuses"].as_array())
        .flatten();
    let status = statuses
        .into_iter()
        .find(|s| s["name"].as_str() == Some(container));
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    match status {
        None => Some(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
        )),
        Some(s)
            if s["state"]["waiting"].is_object()
                && s["restartCount"].as_i64().unwrap_or(0) == 0 =>
        {
            let reason = s["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("ContainerCreating");
            Some(format!(
                "container {container:?} in pod {pod_name:?} is waiting to start: {reason}"
            ))
        }
        Some(_) => None,
    }
}

/// The agent's query string for the request's log options.
fn agent_query(ctx: &Ctx) -> String {
    let q = &ctx.query;
    let mut parts = Vec::new();
    for (key, on) in [
        ("follow", q.follow),
        ("previous", q.previous),
        ("timestamps", q.timestamps),
    ] {
        if on == Some(true) {
            parts.push(format!("{key}=true"));
        }
    }
    for (key, value) in [
        ("tailLines", q.tail_lines),
        ("sinceSeconds", q.since_seconds),
        ("limitBytes", q.limit_bytes),
    ] {
        if let Some(v) = value {
            parts.push(format!("{key}={v}"));
        }
    }
    // RFC 3339 needs only '+' escaped in a query.
    if let Some(since) = q.since_time.as_deref().filter(|s| !s.is_empty()) {
        parts.push(format!("sinceTime={}", since.replace('+', "%2B")));
    }
    parts.join("&")
}

pub(crate) async fn pod_log(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    let (_, pod) = read_object(ctx, name).await?;
    let container = pick_container(&pod, ctx.query.container.as_deref())?;
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    if ctx.query.previous != Some(true) {
        if let Some(message) = waiting_to_start(&pod, &container) {
            return Err(ApiError::BadRequest(message));
        }
    }
    let node_key = format!("/registry/core/nodes/{node_name}");
    let node_target = crate::error::Target::new("", "nodes", node_name);
    let kv = ctx
        .state
        .store
        .get(&node_key)
        .await
        .map_err(|e| ApiError::from_store(e, &node_target))?
        .ok_or_else(|| ApiError::NotFound(node_target.clone()))?;
    let node = decode_object(&kv.value, kv.mod_revision)
        .map_err(|e| ApiError::from_store(e, &node_target))?;
    let endpoint = NodeEndpoint::of(&node).ok_or_else(|| {
        ApiError::BadRequest(NodeClientError::NoEndpoint(node_name.to_string()).to_string())
    })?;
    let namespace = ctx.info.namespace.as_deref().unwrap_or("default");
    let mut path = format!("/containerLogs/{namespace}/{name}/{container}");
    let query = agent_query(ctx);
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    tracing::debug!(pod = %name, %namespace, node = %node_name, %container, "proxying pod log");
    let response = ctx
        .state
        .agents
        .client()
        .get(&endpoint, &path)
        .await
        .map_err(|e| match e {
            NodeClientError::Status { code, message } if (400..500).contains(&code) => {
                ApiError::BadRequest(message)
            }
            other => ApiError::Unavailable(other.to_string()),
        })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        Body::new(response.into_body()),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str]) -> Value {
        let cs: Vec<Value> = containers.iter().map(|n| json!({"name": n})).collect();
        json!({"metadata": {"name": "web"}, "spec": {"containers": cs}})
    }

    #[test]
    fn the_only_container_is_the_default() {
        assert_eq!(pick_container(&pod(&["app"]), None), Ok("app".to_string()));
    }

    #[test]
    fn several_containers_need_a_name_and_the_error_lists_them() {
        let err = pick_container(&pod(&["app", "sidecar"]), None).expect_err("ambiguous");
        assert_eq!(err.code(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            err.to_string(),
            "a container name must be specified for pod web, choose one of: [app sidecar]"
        );
        assert_eq!(
            pick_container(&pod(&["app", "sidecar"]), Some("sidecar")),
            Ok("sidecar".to_string())
        );
    }

    #[test]
    fn an_unknown_container_is_a_bad_request() {
        let err = pick_container(&pod(&["app"]), Some("db")).expect_err("unknown");
        assert_eq!(err.to_string(), "container db is not valid for pod web");
    }

    #[test]
    fn a_container_still_creating_has_no_log_yet() {
        let mut p = pod(&["app"]);
        p["status"] = json!({"containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
        assert!(waiting_to_start(&p, "app").is_some());
        p["status"]["containerStatuses"][0]["state"] = json!({"running": {}});
        assert_eq!(waiting_to_start(&p, "app"), None);
    }
}

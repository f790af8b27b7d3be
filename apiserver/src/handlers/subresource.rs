//! Subresources: `status`, `scale`, `binding`, `eviction`, a pod's `log`
//! (see [`super::pod_log`]), a service account's `token` (see
//! [`super::token_request`]) and a namespace's `finalize`.

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::read::{read_object, render_one};
use super::write::{self, guaranteed_update, merge_update, patched, Part};
use super::{ok, Ctx, JsonResponse};
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, decode_body};
use crate::patch::PatchType;
use crate::selector::LabelSelector;

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    sub: &str,
    body: &Bytes,
) -> ApiResult<Response> {
    let s = ctx.def.subresources;
    match (sub, method) {
        ("status", &Method::GET) if s.status => super::read::get(ctx, name)
            .await
            .map(IntoResponse::into_response),
        ("status", &Method::PUT) if s.status => write::update(ctx, name, body, Some(Part::Status))
            .await
            .map(IntoResponse::into_response),
        ("status", &Method::PATCH) if s.status => write::patch(ctx, name, body, Some(Part::Status))
            .await
            .map(IntoResponse::into_response),
        ("scale", &Method::GET) if s.scale => {
            let (_, obj) = read_object(ctx, name).await?;
            Ok(ok(scale_of(&obj)?).into_response())
        }
        ("scale", &Method::PUT) | ("scale", &Method::PATCH) if s.scale => {
            scale_write(ctx, method, name, body)
                .await
                .map(IntoResponse::into_response)
        }
        ("binding", &Method::POST) if s.binding => {
            bind(ctx, name, body).await.map(IntoResponse::into_response)
        }
        ("eviction", &Method::POST) if s.eviction => evict(ctx, name, body)
            .await
            .map(IntoResponse::into_response),
        ("log", &Method::GET) if ctx.def.kind == "Pod" && ctx.def.group.is_empty() => {
            super::pod_log::pod_log(ctx, name).await
        }
        ("token", &Method::POST)
            if ctx.def.kind == "ServiceAccount" && ctx.def.group.is_empty() =>
        {
            super::token_request::create(ctx, name, body)
                .await
                .map(IntoResponse::into_response)
        }
        ("finalize", &Method::PUT) if ctx.def.kind == "Namespace" => {
            finalize_namespace(ctx, name, body)
                .await
                .map(IntoResponse::into_response)
        }
        _ => Err(ApiError::UnknownResource),
    }
}

/// The `autoscaling/v1` `Scale` view of an object with `spec.replicas`.
fn scale_of(obj: &Value) -> ApiResult<Value> {
    let m = objects::meta(obj).cloned().unwrap_or_default();
    let selector = match obj["spec"].get("selector") {
        Some(sel) => LabelSelector::from_label_selector_value(sel)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    }))
}

async fn scale_write(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    body: &Bytes,
) -> ApiResult<JsonResponse> {
    let is_patch = method == Method::PATCH;
    let pt = if is_patch {
        let ct = ctx.content_type().unwrap_or("");
        Some(PatchType::from_content_type(ct).ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!("unsupported patch type {ct:?}"))
        })?)
    } else {
        None
    };
    let put_body = if is_patch {
        None
    } else {
        Some(decode_body(ctx.content_type(), body)?)
    };
    let stored = guaranteed_update(ctx, name, |current| {
        let scale = scale_of(current)?;
        let new_scale = match (&pt, &put_body) {
            (Some(pt), _) => patched(ctx, *pt, &scale, body, "autoscaling", "Scale")?,
            (None, Some(b)) => b.clone(),
            _ => return Err(ApiError::BadRequest("missing body".into())),
        };
        if let Some(rv) = new_scale["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
            if Some(rv) != objects::meta_str(current, "resourceVersion") {
                return Err(ApiError::Conflict {
                    target: ctx.target(name),
                    message: "the object has been modified; please apply your changes to the latest version and try again"
                        .into(),
                });
            }
        }
        // Go clients omit `replicas: 0` (omitempty): absent means zero.
        let replicas = match &new_scale["spec"]["replicas"] {
            Value::Null => 0,
            v => v.as_i64().ok_or_else(|| {
                ApiError::invalid_field("autoscaling", "Scale", name, "spec.replicas", "Invalid value: must be an integer")
            })?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid_field(
                "autoscaling",
                "Scale",
                name,
                "spec.replicas",
                &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            ));
        }
        let mut next = current.clone();
        next["spec"]["replicas"] = json!(replicas);
        merge_update(ctx, current, next, Part::Main)
    })
    .await?;
    Ok(ok(scale_of(&stored.into_value())?))
}

async fn bind(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<JsonResponse> {
    let binding = decode_body(ctx.content_type(), body)?;
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_field("", "Binding", name, "target.name", "Required value")
        })?
        .to_string();
    if let Some(n) = objects::name(&binding) {
        if n != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    guaranteed_update(ctx, name, |current| {
        if objects::is_deleting(current) {
            return Err(ApiError::Conflict {
                target: ctx.target(name),
                message: "pod is being deleted, cannot be assigned to a host".into(),
            });
        }
        if let Some(existing) = current["spec"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::Conflict {
                target: ctx.target(name),
                message: format!("pod {name} is already assigned to node {existing:?}"),
            });
        }
        let mut next = current.clone();
        next["spec"]["nodeName"] = json!(node);
        set_condition(&mut next, "PodScheduled", "True", None, None);
        Ok(next)
    })
    .await?;
    Ok(JsonResponse {
        code: StatusCode::CREATED,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    })
}

/// Sets a pod condition, keeping `lastTransitionTime` when the status is unchanged.
pub(crate) fn set_condition(
    obj: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = objects::now_rfc3339();
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let Some(conds) = obj["status"]["conditions"].as_array_mut() else {
        return;
    };
    let mut cond =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    match conds.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] == status {
                cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = cond;
        }
        None => conds.push(cond),
    }
}

async fn evict(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<JsonResponse> {
    let eviction = if body.is_empty() {
        json!({})
    } else {
        decode_body(ctx.content_type(), body)?
    };
    let opts = super::delete::delete_options_from(ctx, eviction.get("deleteOptions"))?;
    super::delete::delete_one(ctx, name, &opts).await?;
    Ok(JsonResponse {
        code: StatusCode::CREATED,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    })
}

async fn finalize_namespace(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<JsonResponse> {
    let new = decode_body(ctx.content_type(), body)?;
    let stored = guaranteed_update(ctx, name, |current| {
        let mut next = current.clone();
        next["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
        if next["spec"]["finalizers"].is_null() {
            next["spec"]["finalizers"] = json!([]);
        }
        Ok(next)
    })
    .await?;
    Ok(ok(render_one(ctx, stored.into_value())))
}

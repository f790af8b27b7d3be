//! delete and deletecollection: graceful deletion of bound pods, deletion
//! through finalizers (including the `foregroundDeletion` and `orphan`
//! finalizers of propagation policies), and immediate deletion otherwise.

use axum::body::Bytes;
use serde_json::{json, Value};

use super::read::{list_objects, read_object, Selectors};
use super::write::{encode, namespace_finalizers_pending, with_revision, MAX_RETRIES};
use super::{ok, Ctx, JsonResponse};
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, meta_mut};
use crate::store::StoreError;

/// `metav1.DeleteOptions`, from the body or the query.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub(crate) fn delete_options(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOptions> {
    let v = if body.iter().any(|b| !b.is_ascii_whitespace()) {
        Some(objects::decode_body(ctx.content_type(), body)?)
    } else {
        None
    };
    delete_options_from(ctx, v.as_ref())
}

/// `DeleteOptions` from an already decoded body (or none) plus the query.
pub(crate) fn delete_options_from(ctx: &Ctx, body: Option<&Value>) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions {
        grace_period_seconds: ctx.query.grace_period_seconds,
        propagation_policy: ctx.query.propagation_policy.clone(),
        dry_run: ctx.query.is_dry_run(),
        ..Default::default()
    };
    if ctx.query.orphan_dependents == Some(true) && o.propagation_policy.is_none() {
        o.propagation_policy = Some("Orphan".into());
    }
    if let Some(v) = body {
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period_seconds = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation_policy = Some(p.to_string());
        }
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true)
            && o.propagation_policy.is_none()
        {
            o.propagation_policy = Some("Orphan".into());
        }
        o.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_string);
        o.precondition_rv = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        if v["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"))
        {
            o.dry_run = true;
        }
    }
    match o.propagation_policy.as_deref() {
        None | Some("Background") | Some("Foreground") | Some("Orphan") => Ok(o),
        Some(p) => Err(ApiError::BadRequest(format!(
            "propagationPolicy {p:?} is not supported: use Background, Foreground or Orphan"
        ))),
    }
}

fn success_status(ctx: &Ctx, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": objects::name(obj).unwrap_or_default(),
            "group": ctx.def.group,
            "kind": ctx.def.plural,
            "uid": objects::meta_str(obj, "uid").unwrap_or_default(),
        }
    })
}

pub(crate) async fn delete(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<JsonResponse> {
    let opts = delete_options(ctx, body)?;
    let obj = delete_one(ctx, name, &opts).await?;
    // Pods (and objects still finalizing) come back whole; others as a Status.
    let body = if ctx.def.kind == "Pod" || objects::is_deleting(&obj) && !opts.dry_run {
        obj
    } else {
        success_status(ctx, &obj)
    };
    Ok(ok(body))
}

/// Deletes one object: gracefully (pods), through finalizers, or at once.
/// Returns the object as it is afterwards (or as it was, if gone).
pub(crate) async fn delete_one(ctx: &Ctx, name: &str, opts: &DeleteOptions) -> ApiResult<Value> {
    let target = ctx.target(name);
    for _ in 0..MAX_RETRIES {
        let (kv, current) = read_object(ctx, name).await?;
        if let Some(uid) = &opts.precondition_uid {
            if objects::meta_str(&current, "uid") != Some(uid.as_str()) {
                return Err(ApiError::Conflict {
                    target,
                    message: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        objects::meta_str(&current, "uid").unwrap_or_default()
                    ),
                });
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            if rv != &kv.mod_revision.to_string() {
                return Err(ApiError::Conflict {
                    target,
                    message: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                });
            }
        }
        let mut next = current.clone();
        let mut fins = objects::finalizers(&current);
        match opts.propagation_policy.as_deref() {
            Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.push("foregroundDeletion".into())
            }
            Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
            _ => {}
        }
        let grace = grace_period(ctx, &current, opts);
        let ns_pending = ctx.def.kind == "Namespace" && namespace_finalizers_pending(&current);
        if fins.is_empty() && grace == 0 && !ns_pending {
            if opts.dry_run {
                return Ok(current);
            }
            match ctx
                .state
                .store
                .delete(&ctx.key(name), Some(kv.mod_revision))
                .await
            {
                Ok(gone) => {
                    super::services::release_deleted(ctx, &current).await;
                    return Ok(with_revision(current, &gone));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, &target)),
            }
        }
        // Deletion in progress: mark it and let finalizers or the kubelet finish.
        if objects::is_deleting(&current) {
            let prev = current["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if grace >= prev && objects::finalizers(&current) == fins {
                return Ok(current);
            }
        }
        let deadline = chrono::Utc::now() + chrono::Duration::seconds(grace);
        if let Some(m) = meta_mut(&mut next) {
            m.insert(
                "deletionTimestamp".into(),
                Value::String(deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if fins.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), json!(fins));
            }
        }
        if ctx.def.kind == "Namespace" {
            next["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(next);
        }
        match ctx
            .state
            .store
            .update(&ctx.key(name), encode(&next)?, kv.mod_revision)
            .await
        {
            Ok(kv) => return Ok(with_revision(next, &kv)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, &target)),
        }
    }
    Err(ApiError::Conflict {
        target,
        message: "too many concurrent writes; please retry".into(),
    })
}

/// Pods bound to a node are deleted gracefully; everything else at once.
fn grace_period(ctx: &Ctx, obj: &Value, opts: &DeleteOptions) -> i64 {
    if ctx.def.kind != "Pod" {
        return 0;
    }
    let unbound = obj["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let terminal = matches!(
        obj["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    );
    if unbound || terminal {
        return 0;
    }
    opts.grace_period_seconds
        .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

pub(crate) async fn delete_collection(ctx: &Ctx, body: &Bytes) -> ApiResult<JsonResponse> {
    let opts = delete_options(ctx, body)?;
    let selectors = Selectors::from_ctx(ctx)?;
    let (items, revision, _) = list_objects(ctx, &selectors).await?;
    let mut deleted = Vec::new();
    for item in items {
        let name = objects::name(&item).unwrap_or_default().to_string();
        let ns = objects::namespace(&item).map(str::to_string);
        let sub = Ctx {
            state: ctx.state.clone(),
            def: ctx.def.clone(),
            info: crate::request::RequestInfo {
                namespace: ns,
                name: Some(name.clone()),
                ..ctx.info.clone()
            },
            query: ctx.query.clone(),
            headers: ctx.headers.clone(),
        };
        match delete_one(&sub, &name, &opts).await {
            Ok(o) => deleted.push(o),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ok(json!({
        "kind": format!("{}List", ctx.def.kind),
        "apiVersion": ctx.def.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": deleted,
    })))
}

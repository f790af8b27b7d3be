//! create, update, patch, delete and deletecollection.
//!
//! Every write follows one path: decode → admit (fields, types, defaults,
//! validation) → a conditional store write on the revision that was read.
//! Patches and subresource writes retry on a conflicting concurrent write, as
//! Kubernetes' GuaranteedUpdate does; a PUT carrying a stale
//! `resourceVersion` gets 409.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::read::{read_object, render_one};
use super::{render_of, services, Ctx, JsonResponse, Render};
use crate::admission::{self, FieldValidation};
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, decode_body, meta_mut};
use crate::patch::{self, PatchKind, PatchType};
use crate::store::{KeyValue, StoreError};

/// How many times a patch or subresource write is retried on conflict.
pub(crate) const MAX_RETRIES: usize = 16;

/// A JSON response plus `Warning` headers.
pub(crate) struct Written {
    pub resp: Reply,
    pub warnings: Vec<String>,
}

/// The body of a write's response.
pub(crate) enum Reply {
    Json(JsonResponse),
    /// A stored object, served as JSON straight from the copy the watch
    /// cache shares.
    Object {
        code: StatusCode,
        stored: Stored,
    },
}

impl axum::response::IntoResponse for Reply {
    fn into_response(self) -> axum::response::Response {
        match self {
            Reply::Json(r) => r.into_response(),
            Reply::Object { code, stored } => {
                let bytes = match stored.revision {
                    Some(revision) => serde_json::to_vec(&objects::WithRevision {
                        object: &stored.object,
                        revision: Some(revision),
                    }),
                    None => serde_json::to_vec(&*stored.object),
                };
                let mut r = (code, bytes.unwrap_or_default()).into_response();
                r.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                );
                r
            }
        }
    }
}

/// An object as a write left it.
pub(crate) struct Stored {
    pub object: Arc<Value>,
    /// Its resourceVersion, when not (or not correctly) set in `object`.
    pub revision: Option<i64>,
    /// The write changed nothing (and was not made).
    pub unchanged: bool,
}

impl Stored {
    fn plain(object: Value) -> Self {
        Self {
            object: Arc::new(object),
            revision: None,
            unchanged: false,
        }
    }

    /// The object with its resourceVersion (a copy when it is shared).
    pub fn into_value(self) -> Value {
        let mut obj = Arc::try_unwrap(self.object).unwrap_or_else(|shared| (*shared).clone());
        if let Some(rv) = self.revision {
            crate::watchcache::set_resource_version(&mut obj, rv);
        }
        obj
    }

    /// The response to a write, rendered as the client asked.
    pub fn reply(self, ctx: &Ctx, code: StatusCode) -> Reply {
        match render_of(&ctx.headers) {
            Render::Json => Reply::Object { code, stored: self },
            Render::Table | Render::Metadata => Reply::Json(JsonResponse {
                code,
                body: render_one(ctx, self.into_value()),
            }),
        }
    }
}

impl axum::response::IntoResponse for Written {
    fn into_response(self) -> axum::response::Response {
        let mut r = self.resp.into_response();
        for w in self.warnings {
            let text = format!("299 - {:?}", w);
            if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
                r.headers_mut().append("Warning", v);
            }
        }
        r
    }
}

fn check_namespace_of(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if !ctx.def.namespaced {
        objects::remove_meta(obj, "namespace");
        return Ok(());
    }
    let url_ns = ctx.info.namespace.clone().ok_or_else(|| {
        ApiError::BadRequest("a namespaced object must be created in a namespace".into())
    })?;
    match objects::namespace(obj) {
        Some(ns) if ns != url_ns => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => {
            objects::set_meta(obj, "namespace", Value::String(url_ns));
            Ok(())
        }
    }
}

/// The namespace must exist and not be terminating.
async fn check_namespace_open(ctx: &Ctx, name: &str) -> ApiResult<()> {
    let Some(ns) = ctx.info.namespace.as_deref().filter(|_| ctx.def.namespaced) else {
        return Ok(());
    };
    let phase = match ctx.state.namespaces.get(ns) {
        Some(p) => p,
        None => {
            // Not seen yet (created a moment ago?): ask the store.
            let key = format!("/registry/core/namespaces/{ns}");
            let target = crate::error::Target::new("", "namespaces", ns);
            let kv = ctx
                .state
                .store
                .get(&key)
                .await
                .map_err(|e| ApiError::from_store(e, &target))?
                .ok_or(ApiError::NotFound(target))?;
            let obj: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            ctx.state.namespaces.note(ns, Some(&obj));
            ctx.state
                .namespaces
                .get(ns)
                .unwrap_or(crate::namespaces::Phase::Active)
        }
    };
    if phase == crate::namespaces::Phase::Terminating {
        return Err(ApiError::Forbidden(format!(
            "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.def.plural
        )));
    }
    Ok(())
}

pub(crate) fn encode(obj: &Value) -> ApiResult<Bytes> {
    // The revision lives in the store, not in the stored bytes.
    serde_json::to_vec(&objects::WithRevision {
        object: obj,
        revision: None,
    })
    .map(Bytes::from)
    .map_err(|e| ApiError::Internal(format!("cannot encode object: {e}")))
}

pub(crate) fn with_revision(mut obj: Value, kv: &KeyValue) -> Value {
    crate::watchcache::set_resource_version(&mut obj, kv.mod_revision);
    obj
}

pub(crate) async fn create(ctx: &Ctx, body: &Bytes) -> ApiResult<Written> {
    let mut obj = decode_body(ctx.content_type(), body)?;
    let mode = FieldValidation::parse(ctx.query.field_validation.as_deref())?;
    let warnings = admission::check_body(&ctx.def, body, &mut obj, mode)?;
    check_namespace_of(ctx, &mut obj)?;
    if objects::name(&obj).is_none() {
        match objects::meta_str(&obj, "generateName").filter(|g| !g.is_empty()) {
            Some(prefix) => {
                let n = objects::generate_name(prefix);
                objects::set_meta(&mut obj, "name", Value::String(n));
            }
            None => {
                return Err(ApiError::invalid_field(
                    ctx.def.group,
                    ctx.def.kind,
                    "",
                    "metadata.name",
                    "name or generateName is required",
                ))
            }
        }
    }
    let manager = ctx.field_manager();
    admit_and_store_new(ctx, obj, warnings, Some(&manager)).await
}

/// The shared end of every create: the namespace must be open, then
/// defaulting, system fields, validation, field ownership and the store.
/// `manager` records an Update entry in managedFields (apply already did).
async fn admit_and_store_new(
    ctx: &Ctx,
    mut obj: Value,
    warnings: Vec<String>,
    manager: Option<&str>,
) -> ApiResult<Written> {
    let name = objects::name(&obj).unwrap_or_default().to_string();
    check_namespace_open(ctx, &name).await?;
    let tolerations = (
        ctx.state.config.default_not_ready_toleration_seconds,
        ctx.state.config.default_unreachable_toleration_seconds,
    );
    admission::default(&ctx.def, &mut obj);
    admission::prepare_create(&ctx.def, &mut obj, tolerations);
    if (ctx.def.group, ctx.def.kind) == ("", "Pod")
        && ctx
            .state
            .config
            .admission_plugin_enabled(admission::service_account::PLUGIN_NAME)
    {
        let namespace = ctx.info.namespace.clone().unwrap_or_default();
        admission::service_account::admit(ctx.state.store.as_ref(), &namespace, &mut obj).await?;
    }
    admission::validate(&ctx.def, &obj, None)?;
    if let Some(manager) = manager {
        patch::record_update(
            None,
            &mut obj,
            manager,
            &ctx.def.api_version(),
            &objects::now_rfc3339(),
        );
    }
    if ctx.query.is_dry_run() {
        return Ok(Written {
            resp: Reply::Json(JsonResponse {
                code: StatusCode::CREATED,
                body: obj,
            }),
            warnings,
        });
    }
    let requested = services::reserve_requested(ctx, &obj).await?;
    let allocated = match services::allocate(ctx, &mut obj).await {
        Ok(a) => a,
        Err(e) => {
            requested.release(ctx).await;
            return Err(e);
        }
    };
    let obj = Arc::new(obj);
    let key = ctx.key(&name);
    let bytes = encode(&obj)?;
    let pending = ctx.state.cache.expect_write(&key, &bytes, &obj);
    let kv = match ctx.state.store.create(&key, bytes).await {
        Ok(kv) => {
            pending.written();
            kv
        }
        Err(e) => {
            drop(pending);
            requested.release(ctx).await;
            allocated.release(ctx).await;
            return Err(ApiError::from_store(e, &ctx.target(&name)));
        }
    };
    tracing::debug!(resource = ctx.def.plural, name = %name, rv = kv.mod_revision, "created");
    let stored = Stored {
        object: obj,
        revision: Some(kv.mod_revision),
        unchanged: false,
    };
    Ok(Written {
        resp: stored.reply(ctx, StatusCode::CREATED),
        warnings,
    })
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The main resource: everything but `.status` (when a status subresource exists).
    Main,
    /// The status subresource: only `.status`.
    Status,
}

/// Merges what a write may change into the current object and stamps the
/// system fields. Returns the object to store.
pub(crate) fn merge_update(
    ctx: &Ctx,
    current: &Value,
    mut new: Value,
    part: Part,
) -> ApiResult<Value> {
    check_namespace_of(ctx, &mut new)?;
    let target_name = objects::name(current).unwrap_or_default().to_string();
    if objects::name(&new).is_some_and(|n| n != target_name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({target_name})",
            objects::name(&new).unwrap_or_default()
        )));
    }
    objects::set_meta(&mut new, "name", Value::String(target_name));
    let mut out = match part {
        Part::Status => {
            let mut o = current.clone();
            o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if o["status"].is_null() {
                if let Some(m) = o.as_object_mut() {
                    m.remove("status");
                }
            }
            o
        }
        Part::Main => {
            if ctx.def.subresources.status {
                match current.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new
        }
    };
    // System-owned metadata always comes from the stored object.
    let cur_meta = objects::meta(current).cloned().unwrap_or_default();
    if let Some(m) = meta_mut(&mut out) {
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match cur_meta.get(f) {
                Some(v) => {
                    m.insert(f.to_string(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
        // Finalizers can be removed but not added once deletion started.
        m.remove("selfLink");
    }
    if ctx.def.has_generation
        && part == Part::Main
        && objects::spec_part(current) != objects::spec_part(&out)
    {
        let g = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        objects::set_meta(&mut out, "generation", json!(g));
    }
    services::carry_over(ctx, current, &mut out);
    admission::default(&ctx.def, &mut out);
    if ctx.def.group.is_empty() && ctx.def.kind == "Pod" {
        // Admission re-adds the default tolerations on update, as Kubernetes does.
        crate::defaults::default_tolerations_for_pod(
            &mut out,
            ctx.state.config.default_not_ready_toleration_seconds,
            ctx.state.config.default_unreachable_toleration_seconds,
        );
    }
    admission::validate(&ctx.def, &out, Some(current))?;
    Ok(out)
}

/// Stores an updated object conditionally on `current`'s revision, then
/// finishes a deletion whose finalizers are all gone.
pub(crate) async fn store_update(
    ctx: &Ctx,
    current: &KeyValue,
    current_obj: &Value,
    mut new: Value,
) -> ApiResult<Stored> {
    let name = objects::name(&new).unwrap_or_default().to_string();
    let target = ctx.target(&name);
    objects::remove_meta(&mut new, "resourceVersion");
    if objects::same_but_bookkeeping(current_obj, &new) {
        // A no-op write changes nothing, not even the revision.
        return Ok(Stored {
            unchanged: true,
            ..Stored::plain(current_obj.clone())
        });
    }
    // Server-side apply already recorded its ownership; every other write is
    // an Update. A binding is not: Kubernetes assigns the node in storage,
    // below the field manager, so a bound pod has no scheduler entry.
    let is_apply =
        ctx.content_type().and_then(PatchType::from_content_type) == Some(PatchType::Apply);
    let is_binding = ctx.info.subresource.as_deref() == Some("binding");
    if !is_apply && !is_binding {
        patch::record_update(
            Some(current_obj),
            &mut new,
            &ctx.field_manager(),
            &ctx.def.api_version(),
            &objects::now_rfc3339(),
        );
    }
    if ctx.query.is_dry_run() {
        return Ok(Stored::plain(new));
    }
    let finished = objects::is_deleting(&new)
        && objects::finalizers(&new).is_empty()
        && new["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
        && !(ctx.def.kind == "Namespace" && namespace_finalizers_pending(&new));
    if finished {
        let kv = ctx
            .state
            .store
            .delete(&ctx.key(&name), Some(current.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, &target))?;
        services::release_deleted(ctx, current_obj).await;
        return Ok(Stored::plain(with_revision(new, &kv)));
    }
    let reserved = services::reserve_changed(ctx, current_obj, &mut new).await?;
    let new = Arc::new(new);
    let key = ctx.key(&name);
    let bytes = encode(&new)?;
    let pending = ctx.state.cache.expect_write(&key, &bytes, &new);
    match ctx
        .state
        .store
        .update(&key, bytes, current.mod_revision)
        .await
    {
        Ok(kv) => {
            pending.written();
            services::no_longer_used(current_obj, Some(&*new))
                .release(ctx)
                .await;
            Ok(Stored {
                object: new,
                revision: Some(kv.mod_revision),
                unchanged: false,
            })
        }
        Err(e) => {
            drop(pending);
            reserved.release(ctx).await;
            Err(ApiError::from_store(e, &target))
        }
    }
}

pub(crate) fn namespace_finalizers_pending(ns: &Value) -> bool {
    ns["spec"]["finalizers"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

pub(crate) async fn update(
    ctx: &Ctx,
    name: &str,
    body: &Bytes,
    part: Option<Part>,
) -> ApiResult<Written> {
    let mut new = decode_body(ctx.content_type(), body)?;
    let mode = FieldValidation::parse(ctx.query.field_validation.as_deref())?;
    let warnings = admission::check_body(&ctx.def, body, &mut new, mode)?;
    let precondition = objects::resource_version(&new)?;
    let (kv, current) = read_object(ctx, name).await?;
    if precondition.is_some_and(|rv| rv != kv.mod_revision) {
        return Err(ApiError::from_store(
            StoreError::Conflict {
                key: kv.key.clone(),
                expected: precondition.unwrap_or_default(),
                actual: kv.mod_revision,
            },
            &ctx.target(name),
        ));
    }
    let merged = merge_update(ctx, &current, new, part.unwrap_or(Part::Main))?;
    let stored = store_update(ctx, &kv, &current, merged).await?;
    Ok(Written {
        resp: stored.reply(ctx, StatusCode::OK),
        warnings,
    })
}

/// Read-modify-write with retries on conflict: `f` computes the new object
/// from the current one.
pub(crate) async fn guaranteed_update<F>(ctx: &Ctx, name: &str, mut f: F) -> ApiResult<Stored>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    // The first try starts from the watch cache's object, as Kubernetes'
    // GuaranteedUpdate does: a stale one fails the conditional write, and
    // whatever else a stale object could cause (an error, a no-op, a dry
    // run never checked against the store) is tried again from the store.
    let mut cached = if ctx.query.is_dry_run() {
        None
    } else {
        ctx.state.cache.latest(&ctx.key(name))
    };
    for _ in 0..MAX_RETRIES {
        let from_cache = cached.is_some();
        let (kv, current) = match cached.take() {
            Some((revision, obj)) => {
                let mut current = (*obj).clone();
                crate::watchcache::set_resource_version(&mut current, revision);
                let kv = KeyValue {
                    key: ctx.key(name),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: revision,
                };
                (kv, current)
            }
            None => read_object(ctx, name).await?,
        };
        let new = match f(&current) {
            Ok(new) => new,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };
        match store_update(ctx, &kv, &current, new).await {
            Err(ApiError::Conflict { .. }) => continue,
            Err(_) if from_cache => continue,
            Ok(s) if from_cache && s.unchanged => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict {
        target: ctx.target(name),
        message: "too many concurrent writes; please retry".into(),
    })
}

fn patch_type(ctx: &Ctx) -> ApiResult<PatchType> {
    let ct = ctx.content_type().unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
        ))
    })
}

/// Applies a patch body to `current` (an object, or a Scale view).
pub(crate) fn patched(
    ctx: &Ctx,
    pt: PatchType,
    current: &Value,
    body: &[u8],
    group: &str,
    kind: &str,
) -> ApiResult<Value> {
    let patch_kind = PatchKind::builtin(group, kind);
    let name = ctx.info.name.clone().unwrap_or_default();
    match pt {
        PatchType::Apply => {
            let applied = decode_body(Some("application/yaml"), body)?;
            let force = ctx.query.force.unwrap_or(false);
            let manager = ctx.query.field_manager.clone().unwrap_or_default();
            patch::server_side_apply(
                Some(current),
                &applied,
                &manager,
                force,
                &patch_kind,
                &objects::now_rfc3339(),
            )
            .map_err(|e| apply_error(ctx, &name, e))
        }
        _ => patch::apply_patch(pt, current, body, &patch_kind)
            .map_err(|e| patch_error(ctx, &name, e)),
    }
}

fn patch_error(ctx: &Ctx, name: &str, e: patch::PatchError) -> ApiError {
    match e.status_code() {
        409 => ApiError::Conflict {
            target: ctx.target(name),
            message: e.to_string(),
        },
        413 => ApiError::TooLarge(objects::MAX_BODY_BYTES),
        415 => ApiError::UnsupportedMediaType(e.to_string()),
        422 => ApiError::Invalid {
            group: ctx.def.group.to_string(),
            kind: ctx.def.kind.to_string(),
            name: name.to_string(),
            causes: vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: e.to_string(),
                field: String::new(),
            }],
        },
        500 => ApiError::Internal(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    }
}

fn apply_error(ctx: &Ctx, name: &str, e: patch::ApplyError) -> ApiError {
    match e {
        patch::ApplyError::Conflicts(ref conflicts) => ApiError::ApplyConflict {
            target: ctx.target(name),
            message: e.to_string(),
            causes: conflicts
                .iter()
                .map(|c| crate::error::Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.cause_message(),
                    field: c.field.clone(),
                })
                .collect(),
        },
        patch::ApplyError::MissingFieldManager => ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            name: String::new(),
            causes: vec![crate::error::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: is required for apply requests".into(),
                field: "fieldManager".into(),
            }],
        },
        patch::ApplyError::LiveNotObject => ApiError::Internal(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    }
}

pub(crate) async fn patch(
    ctx: &Ctx,
    name: &str,
    body: &Bytes,
    part: Option<Part>,
) -> ApiResult<Written> {
    if body.len() > objects::MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(objects::MAX_BODY_BYTES));
    }
    let pt = patch_type(ctx)?;
    let mode = FieldValidation::parse(ctx.query.field_validation.as_deref())?;
    let part = part.unwrap_or(Part::Main);
    // Server-side apply to an absent object creates it.
    if pt == PatchType::Apply {
        let exists = ctx
            .state
            .store
            .get(&ctx.key(name))
            .await
            .map_err(|e| ApiError::from_store(e, &ctx.target(name)))?
            .is_some();
        if !exists && part == Part::Main {
            return apply_create(ctx, name, body, mode).await;
        }
    }
    let mut warnings = Vec::new();
    let stored = guaranteed_update(ctx, name, |current| {
        let mut new = patched(ctx, pt, current, body, ctx.def.group, ctx.def.kind)?;
        warnings = admission::check_body(&ctx.def, b"", &mut new, mode)?;
        if let Some(rv) = objects::resource_version(&new)? {
            if rv.to_string() != objects::meta_str(current, "resourceVersion").unwrap_or_default() {
                return Err(ApiError::Conflict {
                    target: ctx.target(name),
                    message: "the object has been modified; please apply your changes to the latest version and try again"
                        .into(),
                });
            }
        }
        merge_update(ctx, current, new, part)
    })
    .await?;
    Ok(Written {
        resp: stored.reply(ctx, StatusCode::OK),
        warnings,
    })
}

async fn apply_create(
    ctx: &Ctx,
    name: &str,
    body: &Bytes,
    mode: FieldValidation,
) -> ApiResult<Written> {
    let applied = decode_body(Some("application/yaml"), body)?;
    let manager = ctx.query.field_manager.clone().unwrap_or_default();
    let now = objects::now_rfc3339();
    let kind = PatchKind::builtin(ctx.def.group, ctx.def.kind);
    let mut obj = patch::server_side_apply(None, &applied, &manager, true, &kind, &now)
        .map_err(|e| apply_error(ctx, name, e))?;
    let warnings = admission::check_body(&ctx.def, b"", &mut obj, mode)?;
    check_namespace_of(ctx, &mut obj)?;
    if objects::name(&obj).is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            objects::name(&obj).unwrap_or_default()
        )));
    }
    objects::set_meta(&mut obj, "name", Value::String(name.to_string()));
    admit_and_store_new(ctx, obj, warnings, None).await
}

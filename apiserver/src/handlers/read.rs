//! get and list, with selectors, paging and Table rendering.

use base64::Engine;
use serde_json::{json, Value};

use super::{ok, render_of, Ctx, JsonResponse, Render};
use crate::error::{ApiError, ApiResult};
use crate::selector::{FieldSelector, LabelSelector};
use crate::table;
use crate::watchcache::decode_object;

/// Reads one object as stored, with its resourceVersion.
pub(crate) async fn read_object(
    ctx: &Ctx,
    name: &str,
) -> ApiResult<(crate::store::KeyValue, Value)> {
    let target = ctx.target(name);
    let kv = ctx
        .state
        .store
        .get(&ctx.key(name))
        .await
        .map_err(|e| ApiError::from_store(e, &target))?
        .ok_or_else(|| ApiError::NotFound(target.clone()))?;
    let obj =
        decode_object(&kv.value, kv.mod_revision).map_err(|e| ApiError::from_store(e, &target))?;
    Ok((kv, obj))
}

pub(crate) async fn get(ctx: &Ctx, name: &str) -> ApiResult<JsonResponse> {
    include_object(ctx)?;
    let (_, obj) = read_object(ctx, name).await?;
    Ok(ok(render_one(ctx, obj)))
}

/// Renders one object as JSON or as a one-row Table, as the client asked.
pub(crate) fn render_one(ctx: &Ctx, obj: Value) -> Value {
    match render_of(&ctx.headers) {
        Render::Json => obj,
        Render::Metadata => crate::objects::into_partial_metadata(obj),
        Render::Table => {
            let rv = obj["metadata"]["resourceVersion"].clone();
            // A bad includeObject was already refused by the read path; writes use the default.
            let include = include_object(ctx).unwrap_or_default();
            let mut t = table::to_table(
                ctx.def.group,
                ctx.def.kind,
                &[&obj],
                include,
                chrono::Utc::now(),
            );
            t["metadata"] = json!({"resourceVersion": rv});
            t
        }
    }
}

pub(crate) fn include_object(ctx: &Ctx) -> ApiResult<table::IncludeObject> {
    table::IncludeObject::from_query(ctx.query.include_object.as_deref())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The label and field selectors of a request, validated.
pub(crate) struct Selectors {
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
}

impl Selectors {
    pub fn from_ctx(ctx: &Ctx) -> ApiResult<Self> {
        let label = match ctx
            .query
            .label_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?)
            }
            None => None,
        };
        let field = match ctx
            .query
            .field_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => {
                let f = FieldSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                f.validate_for(ctx.def.group, ctx.def.kind)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                Some(f)
            }
            None => None,
        };
        Ok(Self { label, field })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.label.as_ref().is_none_or(|l| l.matches_object(obj))
            && self.field.as_ref().is_none_or(|f| f.matches(obj))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

/// Lists objects of the collection that match the selectors, honouring
/// `limit` and `continue`. Returns the items, the list revision and the
/// continue token for the next page.
pub(crate) async fn list_objects(
    ctx: &Ctx,
    selectors: &Selectors,
) -> ApiResult<(Vec<Value>, i64, Option<String>)> {
    let prefix = ctx.collection_prefix();
    let limit = ctx.query.limit.filter(|l| *l > 0).map(|l| l as usize);
    // A continued list reads at the revision of its first page.
    let (mut start_after, mut at) = match ctx
        .query
        .continue_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        Some(t) => {
            let tok = decode_continue(t)?;
            if !tok.start.starts_with(&prefix) {
                return Err(ApiError::BadRequest(
                    "the continue token does not belong to this list".into(),
                ));
            }
            (Some(tok.start), Some(tok.rv))
        }
        None => (None, None),
    };
    let target = ctx.target("");
    let mut items = Vec::new();
    let page = limit.map(|l| l.max(64)).unwrap_or(0);
    loop {
        let res = match at {
            Some(rv) => ctx.state.store.list_at(&prefix, start_after.as_deref(), page, rv).await,
            None => ctx.state.store.list(&prefix, start_after.as_deref(), page).await,
        }
        .map_err(|e| match e {
            crate::store::StoreError::Compacted { .. } => ApiError::Gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            ),
            other => ApiError::from_store(other, &target),
        })?;
        let revision = res.revision;
        at = Some(revision);
        let mut last_key = None;
        for kv in &res.items {
            last_key = Some(kv.key.clone());
            let obj = decode_object(&kv.value, kv.mod_revision)
                .map_err(|e| ApiError::from_store(e, &target))?;
            if selectors.matches(&obj) {
                items.push(obj);
                if limit.is_some_and(|l| items.len() == l) {
                    // More may follow: either later in this page or in the store.
                    let has_more = res.more || res.items.last().map(|k| &k.key) != Some(&kv.key);
                    let token = has_more.then(|| encode_continue(revision, &kv.key));
                    return Ok((items, revision, token));
                }
            }
        }
        if !res.more {
            return Ok((items, revision, None));
        }
        start_after = last_key;
    }
}

pub(crate) async fn list(ctx: &Ctx) -> ApiResult<JsonResponse> {
    let selectors = Selectors::from_ctx(ctx)?;
    let (items, revision, token) = list_objects(ctx, &selectors).await?;
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(t) = token {
        metadata["continue"] = Value::String(t);
    }
    let body = match render_of(&ctx.headers) {
        Render::Table => {
            let refs: Vec<&Value> = items.iter().collect();
            let mut t = table::to_table(
                ctx.def.group,
                ctx.def.kind,
                &refs,
                include_object(ctx)?,
                chrono::Utc::now(),
            );
            t["metadata"] = metadata;
            t
        }
        Render::Json => json!({
            "kind": format!("{}List", ctx.def.kind),
            "apiVersion": ctx.def.api_version(),
            "metadata": metadata,
            "items": items,
        }),
        Render::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": items
                .into_iter()
                .map(crate::objects::into_partial_metadata)
                .collect::<Vec<_>>(),
        }),
    };
    Ok(ok(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/registry/core/pods/default/b");
        let d = decode_continue(&t).expect("decodes");
        assert_eq!(d.rv, 42);
        assert_eq!(d.start, "/registry/core/pods/default/b");
        assert!(decode_continue("not-a-token!").is_err());
    }
}

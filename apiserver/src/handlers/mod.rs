//! HTTP handling: the router, and dispatch from a parsed resource path and
//! method to the read, write and subresource handlers.

mod delete;
mod pod_log;
mod read;
mod services;
mod stream;
mod subresource;
mod token_request;
mod watch;
mod write;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as AxQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Target};
use crate::metrics::{Metrics, RequestLabels};
use crate::registry::{Registry, ResourceDef};
use crate::request::{parse_path, ApiPath, Query, RequestInfo};
use crate::store::Store;
use crate::watchcache::WatchCache;
use crate::{discovery, openapi};

/// Server-wide settings the handlers need.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    /// Added to pods at admission as the `node.kubernetes.io/not-ready` toleration.
    pub default_not_ready_toleration_seconds: i64,
    /// Added to pods at admission as the `node.kubernetes.io/unreachable` toleration.
    pub default_unreachable_toleration_seconds: i64,
    /// The address clients reach the server on, for `/api`'s serverAddressByClientCIDRs.
    pub advertise_address: String,
    /// Where Service ClusterIPs come from.
    pub service_cidr: crate::allocator::ServiceCidr,
    /// Admission plugins turned off (`--disable-admission-plugins`).
    pub disabled_admission_plugins: Vec<String>,
}

impl HandlerConfig {
    /// Whether the admission plugin `name` runs.
    pub fn admission_plugin_enabled(&self, name: &str) -> bool {
        !self.disabled_admission_plugins.iter().any(|p| p == name)
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub cache: WatchCache,
    pub metrics: Arc<Metrics>,
    pub config: Arc<HandlerConfig>,
    pub openapi: Arc<openapi::OpenApiCache>,
    pub namespaces: crate::namespaces::NamespaceCache,
    /// The node agents (pods/log, metrics APIs).
    pub agents: Arc<crate::metrics_api::Agents>,
    /// Signs TokenRequests (`serviceaccounts/token`).
    pub service_account_tokens: Arc<crate::serviceaccount::ServiceAccountTokens>,
}

/// The whole API as an axum router (authentication and metrics layers are
/// added by [`crate::server`]).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api", get(legacy_root))
        .route("/api/{*rest}", any(legacy))
        .route("/apis", get(named_root))
        .route("/apis/{*rest}", any(named))
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version_info()) }),
        )
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*rest}", get(openapi_doc))
        .with_state(state)
}

/// What a handler returns: a JSON value with a status code.
pub(crate) struct JsonResponse {
    pub code: StatusCode,
    pub body: Value,
}

impl IntoResponse for JsonResponse {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut r = (self.code, bytes).into_response();
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

pub(crate) fn ok(body: Value) -> JsonResponse {
    JsonResponse {
        code: StatusCode::OK,
        body,
    }
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Render {
    Json,
    Table,
    /// `PartialObjectMetadata` (and `PartialObjectMetadataList` for lists):
    /// the objects' metadata only, as metadata-only informers ask for.
    Metadata,
}

pub(crate) fn render_of(headers: &HeaderMap) -> Render {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("as=Table") && accept.contains("g=meta.k8s.io") {
        Render::Table
    } else if accept.contains("as=PartialObjectMetadata") && accept.contains("g=meta.k8s.io") {
        Render::Metadata
    } else {
        Render::Json
    }
}

async fn legacy_root(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    discovery_root(&state, &headers, true)
}

async fn named_root(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    discovery_root(&state, &headers, false)
}

fn discovery_root(state: &ApiState, headers: &HeaderMap, legacy: bool) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = discovery::negotiate_discovery(accept) else {
        return ApiError::NotAcceptable(format!(
            "only the following media types are accepted: {}",
            discovery::CONTENT_TYPE_JSON
        ))
        .into_response();
    };
    let body = discovery::root_discovery(
        &state.registry,
        legacy,
        format,
        &state.config.advertise_address,
    );
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (StatusCode::OK, bytes).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(format.content_type()) {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        axum::http::header::VARY,
        axum::http::HeaderValue::from_static("Accept"),
    );
    r
}

async fn openapi_index(State(state): State<ApiState>) -> Response {
    ok(openapi::openapi_v3_index(&state.registry)).into_response()
}

async fn openapi_doc(State(state): State<ApiState>, Path(rest): Path<String>) -> Response {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let gv = match segs.as_slice() {
        ["api", v] => Some(("", *v)),
        ["apis", g, v] => Some((*g, *v)),
        _ => None,
    };
    match gv.and_then(|(g, v)| state.openapi.get(g, v)) {
        Some(bytes) => {
            let mut r = (StatusCode::OK, bytes.as_ref().clone()).into_response();
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            r
        }
        None => ApiError::UnknownResource.into_response(),
    }
}

async fn legacy(
    State(state): State<ApiState>,
    method: Method,
    Path(rest): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    upgrade: Option<axum::Extension<hyper::upgrade::OnUpgrade>>,
    body: Body,
) -> Response {
    let stream = stream::StreamRequest {
        upgrade: upgrade.map(|axum::Extension(u)| u),
        uri: Some(uri.clone()),
    };
    dispatch(state, true, method, rest, uri, headers, body, stream).await
}

async fn named(
    State(state): State<ApiState>,
    method: Method,
    Path(rest): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(response) = crate::metrics_api::route(&state, &method, &rest, uri.query()).await {
        return response;
    }
    let stream = stream::StreamRequest::default();
    dispatch(state, false, method, rest, uri, headers, body, stream).await
}

/// Reads a request body, refusing more than [`crate::objects::MAX_BODY_BYTES`]
/// with a 413 Status. An oversized body is still drained (up to a hard cap)
/// so the connection stays usable for the client's next request.
async fn read_body(body: Body) -> ApiResult<Bytes> {
    use http_body_util::BodyExt;
    const DRAIN_CAP: usize = 64 * 1024 * 1024;
    let limit = crate::objects::MAX_BODY_BYTES;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_CAP {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::TooLarge(limit));
    }
    Ok(buf.freeze())
}

/// One resource request, resolved against the registry.
pub(crate) struct Ctx {
    pub state: ApiState,
    pub def: ResourceDef,
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
}

impl Ctx {
    pub fn target(&self, name: &str) -> Target {
        Target::new(self.def.group, self.def.plural, name)
    }

    pub fn key(&self, name: &str) -> String {
        self.def.storage_key(self.info.namespace.as_deref(), name)
    }

    /// The storage prefix this request's collection covers.
    pub fn collection_prefix(&self) -> String {
        match (&self.info.namespace, self.def.namespaced) {
            (Some(ns), true) => format!("{}{}/", self.def.storage_prefix(), ns),
            _ => self.def.storage_prefix(),
        }
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The field manager of a write: `?fieldManager=`, else the user agent's
    /// program name, as Kubernetes derives it.
    pub fn field_manager(&self) -> String {
        if let Some(m) = self
            .query
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            return m.to_string();
        }
        self.headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }
}

fn verb_of(method: &Method, info: &RequestInfo, query: &Query) -> &'static str {
    match *method {
        Method::GET if query.is_watch() => "WATCH",
        Method::GET if info.name.is_none() => "LIST",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if info.name.is_none() => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: ApiState,
    legacy: bool,
    method: Method,
    rest: String,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
    stream: stream::StreamRequest,
) -> Response {
    let query = match AxQuery::<Query>::try_from_uri(&uri) {
        Ok(AxQuery(q)) => q,
        Err(e) => {
            return ApiError::BadRequest(format!("invalid query parameters: {}", e.body_text()))
                .into_response()
        }
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let registry = state.registry.clone();
    let parsed = parse_path(legacy, &rest, |g, v, plural| {
        registry.find(g, v, plural).is_some_and(|d| d.namespaced)
    });
    let info = match parsed {
        Some(ApiPath::Root) => return discovery_root(&state, &headers, legacy),
        Some(ApiPath::Group(g)) => {
            return match discovery::api_group(&state.registry, &g) {
                Some(v) => ok(v).into_response(),
                None => ApiError::UnknownResource.into_response(),
            }
        }
        Some(ApiPath::GroupVersion { group, version }) => {
            return match discovery::api_resource_list(&state.registry, &group, &version) {
                Some(v) => ok(v).into_response(),
                None => ApiError::UnknownResource.into_response(),
            }
        }
        Some(ApiPath::Resource(info)) => info,
        None => return ApiError::UnknownResource.into_response(),
    };
    let Some(def) = state
        .registry
        .find(&info.group, &info.version, &info.resource)
        .cloned()
    else {
        return ApiError::UnknownResource.into_response();
    };
    let labels = RequestLabels {
        verb: verb_of(&method, &info, &query),
        group: def.group,
        resource: def.plural,
        subresource: info.subresource.clone().unwrap_or_default(),
    };
    if def.namespaced && info.namespace.is_none() && info.name.is_some() {
        let mut r = ApiError::UnknownResource.into_response();
        r.extensions_mut().insert(labels);
        return r;
    }
    let ctx = Ctx {
        state,
        def,
        info,
        query,
        headers,
    };
    let mut response = match route(&ctx, &method, &body, stream).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(labels);
    response
}

async fn route(
    ctx: &Ctx,
    method: &Method,
    body: &Bytes,
    stream: stream::StreamRequest,
) -> ApiResult<Response> {
    let name = ctx.info.name.clone();
    let sub = ctx.info.subresource.clone();
    match (method, name.as_deref(), sub.as_deref()) {
        (_, Some(n), Some(s))
            if stream::is_stream(s) && ctx.def.kind == "Pod" && ctx.def.group.is_empty() =>
        {
            stream::handle(ctx, method, n, s, stream).await
        }
        (&Method::GET, None, None) if ctx.query.is_watch() => watch::watch(ctx, None).await,
        (&Method::GET, None, None) => read::list(ctx).await.map(IntoResponse::into_response),
        (&Method::GET, Some(n), None) if ctx.query.is_watch() => watch::watch(ctx, Some(n)).await,
        (&Method::GET, Some(n), None) => read::get(ctx, n).await.map(IntoResponse::into_response),
        (&Method::POST, None, None) => write::create(ctx, body)
            .await
            .map(IntoResponse::into_response),
        (&Method::PUT, Some(n), None) => write::update(ctx, n, body, None)
            .await
            .map(IntoResponse::into_response),
        (&Method::PATCH, Some(n), None) => write::patch(ctx, n, body, None)
            .await
            .map(IntoResponse::into_response),
        (&Method::DELETE, Some(n), None) => delete::delete(ctx, n, body)
            .await
            .map(IntoResponse::into_response),
        (&Method::DELETE, None, None) => delete::delete_collection(ctx, body)
            .await
            .map(IntoResponse::into_response),
        (_, Some(n), Some(s)) => subresource::handle(ctx, method, n, s, body).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

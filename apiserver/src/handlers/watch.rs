//! watch: a chunked stream of JSON events, one per line, in revision order.
//!
//! Semantics follow Kubernetes: no `resourceVersion` (or `"0"`) first sends
//! the current objects as ADDED; `sendInitialEvents=true` does the same and
//! then a BOOKMARK annotated `k8s.io/initial-events-end`; a revision that is
//! no longer available yields one ERROR event carrying a 410 `Status` inside
//! a 200 response (the form kube-rs relists on). Objects that move in or out
//! of a selector are sent as ADDED or DELETED.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{json, Value};

use super::read::{include_object, list_objects, Selectors};
use super::{render_of, Ctx, Render};
use crate::error::{ApiError, ApiResult};
use crate::selector::FieldSelector;
use crate::store::StoreError;
use crate::table;
use crate::watchcache::{CachedEvent, EventType, Subscription};

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Filter {
    prefix: String,
    after: i64,
    selectors: Selectors,
}

impl Filter {
    /// Maps a change to what this watcher sees, or nothing.
    fn apply(&self, ev: &CachedEvent) -> Option<EventType> {
        if ev.revision <= self.after || !ev.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.selectors.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.selectors.matches(p));
        match ev.kind {
            EventType::Deleted => now.then_some(EventType::Deleted),
            EventType::Added => now.then_some(EventType::Added),
            EventType::Modified => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        }
    }
}

/// An object to send: from the initial list, or a cached change whose JSON
/// is shared between watchers.
enum Payload {
    Plain(Value),
    Cached(Arc<CachedEvent>),
}

impl Payload {
    /// The object with its resourceVersion.
    fn into_object(self) -> Value {
        match self {
            Payload::Plain(v) => v,
            Payload::Cached(ev) => ev.object_with_revision(),
        }
    }
}

enum Item {
    Event(EventType, Payload),
    Bookmark(i64, bool),
    Error(ApiError),
}

fn line(ctx_render: &Renderer, item: Item) -> Vec<u8> {
    let v = match item {
        Item::Event(t, Payload::Cached(ev))
            if matches!(ctx_render.render, Render::Json | Render::Metadata) =>
        {
            let object = match ctx_render.render {
                Render::Metadata => ev.metadata_json(),
                _ => ev.object_json(),
            };
            let mut out = Vec::with_capacity(object.len() + 32);
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(t.as_str().as_bytes());
            out.extend_from_slice(b"\",\"object\":");
            out.extend_from_slice(object);
            out.extend_from_slice(b"}\n");
            return out;
        }
        Item::Event(t, p) => {
            json!({"type": t.as_str(), "object": ctx_render.render(p.into_object())})
        }
        Item::Bookmark(rv, initial_end) => {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"type": "BOOKMARK", "object": {"kind": ctx_render.bookmark_kind, "apiVersion": ctx_render.api_version, "metadata": meta}})
        }
        Item::Error(e) => json!({"type": "ERROR", "object": e.status()}),
    };
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    out
}

struct Renderer {
    render: Render,
    group: &'static str,
    kind: &'static str,
    /// The kind (and `api_version` the apiVersion) bookmarks carry.
    bookmark_kind: &'static str,
    api_version: String,
    include: table::IncludeObject,
}

impl Renderer {
    fn render(&self, obj: Value) -> Value {
        match self.render {
            Render::Json => obj,
            Render::Metadata => crate::objects::into_partial_metadata(obj),
            Render::Table => {
                let mut t = table::to_table(
                    self.group,
                    self.kind,
                    &[&obj],
                    self.include,
                    chrono::Utc::now(),
                );
                t["metadata"] =
                    json!({"resourceVersion": obj["metadata"]["resourceVersion"].clone()});
                t
            }
        }
    }
}

fn parse_rv(s: Option<&str>) -> ApiResult<Option<i64>> {
    match s {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {s:?}"))),
    }
}

pub(crate) async fn watch(ctx: &Ctx, name: Option<&str>) -> ApiResult<Response> {
    let mut selectors = Selectors::from_ctx(ctx)?;
    if let Some(n) = name {
        // A watch on one object is a watch on the collection by name.
        let text = match ctx
            .query
            .field_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => format!("{s},metadata.name={n}"),
            None => format!("metadata.name={n}"),
        };
        selectors.field =
            Some(FieldSelector::parse(&text).map_err(|e| ApiError::BadRequest(e.to_string()))?);
    }
    let requested = parse_rv(ctx.query.resource_version.as_deref())?;
    let send_initial = ctx.query.send_initial_events.unwrap_or(requested.is_none());
    let bookmarks = ctx.query.allow_watch_bookmarks.unwrap_or(false);
    let render = render_of(&ctx.headers);
    let (bookmark_kind, api_version) = match render {
        // Bookmarks are PartialObjectMetadata too, as in Kubernetes.
        Render::Metadata => ("PartialObjectMetadata", "meta.k8s.io/v1".to_string()),
        _ => (ctx.def.kind, ctx.def.api_version()),
    };
    let renderer = Renderer {
        render,
        group: ctx.def.group,
        kind: ctx.def.kind,
        bookmark_kind,
        api_version,
        include: include_object(ctx)?,
    };

    let (initial, after) = if send_initial {
        let (items, revision, _) = list_objects(ctx, &selectors).await?;
        (items, revision)
    } else {
        match requested {
            Some(rv) => (Vec::new(), rv),
            None => (Vec::new(), ctx.state.cache.newest()),
        }
    };
    let prefix = ctx.collection_prefix();
    let filter = Filter {
        prefix: prefix.clone(),
        after,
        selectors,
    };

    let timeout = Duration::from_secs(ctx.query.timeout_seconds.unwrap_or(1800).min(3600));
    let subscription = ctx.state.cache.subscribe(&prefix, after).await;
    let head: Vec<Item> = initial
        .into_iter()
        .map(|o| Item::Event(EventType::Added, Payload::Plain(o)))
        .chain((ctx.query.send_initial_events == Some(true)).then_some(Item::Bookmark(after, true)))
        .collect();

    let events: BoxStream<'static, Item> = match subscription {
        Err(StoreError::Compacted { requested, oldest }) => stream::iter(vec![Item::Error(
            ApiError::Gone(format!("too old resource version: {requested} ({oldest})")),
        )])
        .boxed(),
        Err(e) => return Err(ApiError::from_store(e, &ctx.target(""))),
        Ok(sub) => live_events(sub, filter, bookmarks),
    };
    let body = stream::iter(head)
        .chain(events)
        .map(move |item| Ok::<_, std::convert::Infallible>(line(&renderer, item)));
    let body = tokio_stream::StreamExt::timeout(body, timeout)
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok()));
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Turns a subscription into filtered events, with periodic bookmarks.
fn live_events(sub: Subscription, filter: Filter, bookmarks: bool) -> BoxStream<'static, Item> {
    let filter = Arc::new(filter);
    let source: BoxStream<'static, Result<Arc<CachedEvent>, ApiError>> = match sub {
        Subscription::Cached { backlog, live } => {
            // A watcher too slow for the live window is closed (Lagged); the
            // client resumes from its last revision.
            let live = stream::unfold(live, |mut rx| async move {
                rx.recv().await.ok().map(|ev| (Ok(ev), rx))
            });
            stream::iter(backlog.into_iter().map(Ok))
                .chain(live)
                .boxed()
        }
        Subscription::Store(ws) => ws
            .map(
                |item| match item.and_then(|ev| CachedEvent::from_store(&ev)) {
                    Ok(ev) => Ok(Arc::new(ev)),
                    Err(StoreError::Compacted { requested, oldest }) => Err(ApiError::Gone(
                        format!("too old resource version: {requested} ({oldest})"),
                    )),
                    Err(e) => Err(ApiError::Internal(e.to_string())),
                },
            )
            .boxed(),
    };
    let last_rv = Arc::new(std::sync::atomic::AtomicI64::new(filter.after));
    let rv_for_events = last_rv.clone();
    let f = filter.clone();
    let events = source
        .scan(false, |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            if item.is_err() {
                *ended = true;
            }
            futures::future::ready(Some(item))
        })
        .filter_map(move |item| {
            let out = match item {
                Ok(ev) => {
                    rv_for_events.store(ev.revision, std::sync::atomic::Ordering::Relaxed);
                    f.apply(&ev).map(|t| Item::Event(t, Payload::Cached(ev)))
                }
                Err(e) => Some(Item::Error(e)),
            };
            futures::future::ready(out)
        });
    if !bookmarks {
        return events.boxed();
    }
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_EVERY,
        BOOKMARK_EVERY,
    ))
    .map(move |_| Item::Bookmark(last_rv.load(std::sync::atomic::Ordering::Relaxed), false));
    // End when the events end, not when the ticker does.
    let events = events.map(Some).chain(stream::once(async { None }));
    stream::select(events, ticks.map(Some))
        .take_while(|i| futures::future::ready(i.is_some()))
        .filter_map(futures::future::ready)
        .boxed()
}

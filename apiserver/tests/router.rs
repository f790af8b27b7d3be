//! The API router in process (no socket, no TLS), over a real embedded
//! store: the request paths every client relies on.

use std::sync::Arc;

use apiserver::auth::TokenAuthenticator;
use apiserver::store::embedded::{EmbeddedConfig, EmbeddedStore};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "test-token";

async fn app() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("db")))
        .await
        .expect("store");
    let config = apiserver::Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        store: apiserver::StoreConfig::Embedded {
            path: dir.path().join("unused"),
        },
        pki_dir: dir.path().join("pki"),
        tls_sans: vec![],
        tokens: TokenAuthenticator::parse(&format!("{TOKEN},admin,system:masters")),
        watch_cache_events: 1024,
        default_not_ready_toleration_seconds: 300,
        default_unreachable_toleration_seconds: 300,
        service_cidr: apiserver::allocator::ServiceCidr::parse("10.96.0.0/16").expect("cidr"),
        service_account_issuer: apiserver::serviceaccount::DEFAULT_ISSUER.to_string(),
        // No controller manager here to create the `default` ServiceAccount.
        disable_admission_plugins: vec!["ServiceAccount".to_string()],
    };
    let (full, _) = apiserver::server::app(&config, Arc::new(store))
        .await
        .expect("app");
    (full, dir)
}

fn req(method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json");
    b.body(
        body.map(|v| Body::from(v.to_string()))
            .unwrap_or_else(Body::empty),
    )
    .expect("request")
}

async fn call(app: &Router, r: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(r).await.expect("response");
    let code = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn ensure_namespace(app: &Router, ns: &str) {
    let (code, _) = call(
        app,
        req(
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": ns}})),
        ),
    )
    .await;
    assert!(
        code == StatusCode::CREATED || code == StatusCode::CONFLICT,
        "{code}"
    );
}

#[tokio::test]
async fn requests_without_a_token_are_refused_with_a_status() {
    let (app, _d) = app().await;
    let r = Request::get("/api/v1/namespaces")
        .body(Body::empty())
        .expect("req");
    let (code, body) = call(&app, r).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 401);
}

#[tokio::test]
async fn a_created_configmap_can_be_read_listed_and_updated_with_its_revision() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
    let (code, created) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/configmaps", Some(cm)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let (code, got) = call(
        &app,
        req("GET", "/api/v1/namespaces/default/configmaps/a", None),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got["data"]["k"], "v");
    let (_, list) = call(
        &app,
        req("GET", "/api/v1/namespaces/default/configmaps", None),
    )
    .await;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    // A stale revision is a conflict; the current one succeeds.
    let mut stale = got.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["data"]["k"] = json!("w");
    let (code, body) = call(
        &app,
        req(
            "PUT",
            "/api/v1/namespaces/default/configmaps/a",
            Some(stale),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let mut fresh = got;
    fresh["metadata"]["resourceVersion"] = json!(rv);
    fresh["data"]["k"] = json!("w");
    let (code, body) = call(
        &app,
        req(
            "PUT",
            "/api/v1/namespaces/default/configmaps/a",
            Some(fresh),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["k"], "w");
}

#[tokio::test]
async fn a_watch_from_a_list_revision_streams_later_changes_as_json_lines() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let (_, list) = call(
        &app,
        req("GET", "/api/v1/namespaces/default/configmaps", None),
    )
    .await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let resp = app
        .clone()
        .oneshot(req(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
            None,
        ))
        .await
        .expect("watch");
    assert_eq!(resp.status(), StatusCode::OK);
    for name in ["w1", "w2"] {
        let cm = json!({"metadata": {"name": name}});
        let (code, _) = call(
            &app,
            req("POST", "/api/v1/namespaces/default/configmaps", Some(cm)),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    let (code, _) = call(
        &app,
        req("DELETE", "/api/v1/namespaces/default/configmaps/w1", None),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while events.len() < 3 {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events in time")
            .expect("stream open")
            .expect("chunk");
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value = serde_json::from_slice(&line).expect("json line");
            events.push((
                v["type"].as_str().unwrap_or("").to_string(),
                v["object"]["metadata"]["name"].clone(),
            ));
        }
    }
    assert_eq!(
        events,
        vec![
            ("ADDED".to_string(), json!("w1")),
            ("ADDED".to_string(), json!("w2")),
            ("DELETED".to_string(), json!("w1")),
        ]
    );
}

#[tokio::test]
async fn a_pod_without_containers_is_invalid_with_a_cause_for_the_field() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let (code, body) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/pods", Some(pod)),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["reason"], "Invalid");
    let causes = body["details"]["causes"].as_array().expect("causes");
    assert!(
        causes.iter().any(|c| c["field"] == "spec.containers"),
        "{body}"
    );
    // Nothing was stored.
    let (code, _) = call(&app, req("GET", "/api/v1/namespaces/default/pods/p", None)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn binding_a_pod_sets_its_node_once() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let (code, _) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/pods", Some(pod)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = call(
        &app,
        req(
            "POST",
            "/api/v1/namespaces/default/pods/p/binding",
            Some(binding.clone()),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (_, got) = call(&app, req("GET", "/api/v1/namespaces/default/pods/p", None)).await;
    assert_eq!(got["spec"]["nodeName"], "n1");
    // As in Kubernetes, the binding is not a field-manager write: the pod's
    // managedFields still hold only the creator's entry.
    let managers = got["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(managers, 1, "{}", got["metadata"]["managedFields"]);
    let (code, _) = call(
        &app,
        req(
            "POST",
            "/api/v1/namespaces/default/pods/p/binding",
            Some(binding),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
}

fn req_accept(method: &str, uri: &str, accept: &str) -> Request<Body> {
    let mut r = req(method, uri, None);
    r.headers_mut()
        .insert("accept", accept.parse().expect("accept header"));
    r
}

/// Reads `n` JSON lines from a watch response.
async fn watch_lines(resp: axum::response::Response, n: usize) -> Vec<Value> {
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events in time")
            .expect("stream open")
            .expect("chunk");
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            events.push(serde_json::from_slice(&line).expect("json line"));
        }
    }
    events
}

const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

#[tokio::test]
async fn a_metadata_list_holds_partial_object_metadata_without_the_objects_content() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let cm = json!({"metadata": {"name": "m1", "labels": {"a": "b"}}, "data": {"k": "v"}});
    let (code, created) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/configmaps", Some(cm)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, list) = call(
        &app,
        req_accept(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            METADATA_LIST,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert!(list["metadata"]["resourceVersion"].is_string());
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    let item = items[0].as_object().expect("item");
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
    assert_eq!(item["kind"], "PartialObjectMetadata");
    assert_eq!(item["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(item["metadata"], created["metadata"]);

    let (code, one) = call(
        &app,
        req_accept("GET", "/api/v1/namespaces/default/configmaps/m1", METADATA),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert_eq!(one["metadata"], created["metadata"]);
    assert!(one.get("data").is_none());
}

#[tokio::test]
async fn a_metadata_watch_streams_partial_object_metadata_with_each_revision() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let (_, list) = call(
        &app,
        req_accept(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            METADATA_LIST,
        ),
    )
    .await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let resp = app
        .clone()
        .oneshot(req_accept(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
            METADATA,
        ))
        .await
        .expect("watch");
    assert_eq!(resp.status(), StatusCode::OK);
    let cm = json!({"metadata": {"name": "w"}, "data": {"k": "v"}});
    let (_, created) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/configmaps", Some(cm)),
    )
    .await;
    let (code, _) = call(
        &app,
        req("DELETE", "/api/v1/namespaces/default/configmaps/w", None),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let events = watch_lines(resp, 2).await;
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "DELETED");
    for ev in &events {
        let obj = ev["object"].as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
        assert_eq!(obj["kind"], "PartialObjectMetadata");
        assert_eq!(obj["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(obj["metadata"]["name"], "w");
    }
    assert_eq!(events[0]["object"]["metadata"], created["metadata"]);
    let rv = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_default()
    };
    // The deletion's own revision, after the creation's.
    assert!(
        rv(&events[1]["object"]["metadata"]["resourceVersion"])
            > rv(&created["metadata"]["resourceVersion"])
    );
}

#[tokio::test]
async fn watch_events_carry_the_written_objects_with_their_revisions() {
    let (app, _d) = app().await;
    ensure_namespace(&app, "default").await;
    let (_, list) = call(
        &app,
        req("GET", "/api/v1/namespaces/default/configmaps", None),
    )
    .await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let resp = app
        .clone()
        .oneshot(req(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
            None,
        ))
        .await
        .expect("watch");
    let cm = json!({"metadata": {"name": "c"}, "data": {"k": "1"}});
    let (code, created) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/configmaps", Some(cm)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let mut patch = req(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        Some(json!({"data": {"k": "2"}})),
    );
    patch.headers_mut().insert(
        "content-type",
        "application/merge-patch+json".parse().expect("header"),
    );
    let (code, patched) = call(&app, patch).await;
    assert_eq!(code, StatusCode::OK);
    assert_ne!(
        created["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );
    let events = watch_lines(resp, 2).await;
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"], created);
    assert_eq!(events[1]["type"], "MODIFIED");
    assert_eq!(events[1]["object"], patched);
    // What a GET returns is what the writes and the watch said.
    let (_, got) = call(
        &app,
        req("GET", "/api/v1/namespaces/default/configmaps/c", None),
    )
    .await;
    assert_eq!(got, patched);
}

//! `pods/exec` and `pods/attach` in process: the checks made before the
//! upgrade is proxied to the node's agent, each answered with a `Status`.

use std::sync::Arc;

use apiserver::auth::TokenAuthenticator;
use apiserver::store::embedded::{EmbeddedConfig, EmbeddedStore};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
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

async fn create_pod(app: &Router, name: &str, containers: &[&str], node: Option<&str>) {
    let (code, _) = call(
        app,
        req(
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "default"}})),
        ),
    )
    .await;
    assert!(
        code == StatusCode::CREATED || code == StatusCode::CONFLICT,
        "{code}"
    );
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let mut spec = json!({"containers": containers});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let (code, body) = call(
        app,
        req(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(json!({"metadata": {"name": name}, "spec": spec})),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn exec_into_a_missing_pod_is_not_found() {
    let (app, _d) = app().await;
    let (code, body) = call(
        &app,
        req(
            "GET",
            "/api/v1/namespaces/default/pods/ghost/exec?command=true",
            None,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "pods \"ghost\" not found");
    assert_eq!(body["reason"], "NotFound");
}

#[tokio::test]
async fn exec_checks_the_command_the_container_and_the_node_before_upgrading() {
    let (app, _d) = app().await;
    create_pod(&app, "duo", &["first", "second"], None).await;
    let cases = [
        (
            "/api/v1/namespaces/default/pods/duo/exec?container=first",
            "you must specify at least one command for the container",
        ),
        (
            "/api/v1/namespaces/default/pods/duo/exec?command=true",
            "a container name must be specified for pod duo, choose one of: [first second]",
        ),
        (
            "/api/v1/namespaces/default/pods/duo/exec?command=true&container=third",
            "container third is not valid for pod duo",
        ),
        (
            "/api/v1/namespaces/default/pods/duo/exec?command=true&container=first",
            "pod duo does not have a host assigned",
        ),
        (
            "/api/v1/namespaces/default/pods/duo/attach?container=second",
            "pod duo does not have a host assigned",
        ),
    ];
    for (uri, message) in cases {
        for method in ["GET", "POST"] {
            let (code, body) = call(&app, req(method, uri, None)).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
            assert_eq!(body["message"], message, "{method} {uri}");
        }
    }
}

#[tokio::test]
async fn discovery_lists_the_exec_and_attach_subresources() {
    let (app, _d) = app().await;
    let (code, body) = call(&app, req("GET", "/api/v1", None)).await;
    assert_eq!(code, StatusCode::OK);
    let names: Vec<&str> = body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for sub in ["pods/exec", "pods/attach", "pods/portforward", "pods/log"] {
        assert!(names.contains(&sub), "{sub} missing from {names:?}");
    }
}

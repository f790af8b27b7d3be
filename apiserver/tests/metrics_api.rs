//! The metrics APIs and `pods/log` against a fake node agent speaking
//! HTTPS with client-certificate verification, over the real router and
//! embedded store: fan-out, skipping of unreachable and agent-less nodes,
//! label selectors, sums over nodes and services, and log proxying.

use std::net::SocketAddr;
use std::sync::Arc;

use apiserver::auth::TokenAuthenticator;
use apiserver::store::embedded::{EmbeddedConfig, EmbeddedStore};
use apiserver::tls::{self, Pki};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "test-token";

async fn app(dir: &std::path::Path) -> Router {
    let pki = Pki::in_dir(&dir.join("pki"));
    tls::ensure(&pki, &["localhost".to_string()]).expect("pki");
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.join("db")))
        .await
        .expect("store");
    let config = apiserver::Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        store: apiserver::StoreConfig::Embedded {
            path: dir.join("unused"),
        },
        pki_dir: dir.join("pki"),
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
    let (full, api) = apiserver::server::app(&config, Arc::new(store))
        .await
        .expect("app");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    let _ = api
        .oneshot(req("POST", "/api/v1/namespaces", Some(ns)))
        .await;
    full
}

fn req(method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(
            body.map(|v| Body::from(v.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .expect("request")
}

async fn call(app: &Router, r: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(r).await.expect("response");
    let code = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, String::from_utf8_lossy(&bytes).to_string())
}

async fn call_json(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (code, body) = call(app, req("GET", uri, None)).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A node agent on 127.0.0.1 that requires client certificates of the
/// cluster CA and serves fixed stats.
async fn fake_agent(pki: &Pki, summary: Value, requests: Value) -> SocketAddr {
    let ca_pem = pki.ca_pem().expect("ca");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let router = Router::new()
        .route(
            "/stats/summary",
            get(move || async move { axum::Json(summary) }),
        )
        .route(
            "/stats/requests",
            get(move || async move { axum::Json(requests) }),
        )
        .route(
            "/containerLogs/{*rest}",
            get(|uri: axum::http::Uri| async move { format!("log of {uri}\n") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

async fn create_node(app: &Router, name: &str, port: u16) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"role": name}}});
    let (code, body) = call(app, req("POST", "/api/v1/nodes", Some(node))).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    let (code, body) = call(
        app,
        req(
            "PATCH",
            &format!("/api/v1/nodes/{name}/status"),
            Some(status),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

async fn create_pod(app: &Router, name: &str, app_label: &str, node: &str, containers: &[&str]) {
    let cs: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app_label}},
        "spec": {"nodeName": node, "containers": cs}});
    let (code, body) = call(
        app,
        req("POST", "/api/v1/namespaces/default/pods", Some(pod)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}))
        .collect();
    let status = json!({"status": {"phase": "Running", "containerStatuses": statuses}});
    let (code, body) = call(
        app,
        req(
            "PATCH",
            &format!("/api/v1/namespaces/default/pods/{name}/status"),
            Some(status),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

fn pod_stats(name: &str, nano_cores: u64) -> Value {
    json!({"podRef": {"name": name, "namespace": "default", "uid": name},
        "containers": [{"name": "app",
            "cpu": {"time": "2026-11-22T00:00:00Z", "usageNanoCores": nano_cores, "usageCoreNanoSeconds": 1},
            "memory": {"time": "2026-11-22T00:00:00Z", "workingSetBytes": 8192, "usageBytes": 8192}}]})
}

#[tokio::test]
async fn metrics_apis_fan_out_to_agents_and_skip_nodes_that_cannot_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path()).await;
    let pki = Pki::in_dir(&dir.path().join("pki"));
    let summary = json!({
        "node": {"nodeName": "real", "cpu": {"time": "2026-11-22T00:00:00Z", "usageNanoCores": 1_500_000_000u64, "usageCoreNanoSeconds": 1},
                 "memory": {"time": "2026-11-22T00:00:00Z", "workingSetBytes": 1_048_576, "usageBytes": 1}},
        "pods": [pod_stats("web-1", 250_000_000), pod_stats("web-2", 12_345), pod_stats("db", 1_000_000)],
    });
    let requests = json!({"time": "2026-11-22T00:00:00Z", "window": "1s", "pods": [
        {"namespace": "default", "name": "web-1", "requestsPerSecond": 1.5, "errorsPerSecond": 0.0, "requestsTotal": 3, "errorsTotal": 0},
        {"namespace": "default", "name": "web-2", "requestsPerSecond": 2.0, "errorsPerSecond": 0.5, "requestsTotal": 4, "errorsTotal": 1},
    ]});
    let agent = fake_agent(&pki, summary, requests).await;
    create_node(&app, "real", agent.port()).await;
    // Ready but nothing listens: skipped. A simulated node (port 0): skipped.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    create_node(&app, "gone", closed_port).await;
    create_node(&app, "sim", 0).await;
    create_pod(&app, "web-1", "web", "real", &["app"]).await;
    create_pod(&app, "web-2", "web", "real", &["app"]).await;
    create_pod(&app, "db", "db", "real", &["app", "sidecar"]).await;

    let (code, list) = call_json(
        &app,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(list["kind"], "PodMetricsList");
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["web-1", "web-2"]);
    let (code, one) = call_json(
        &app,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        one["containers"][0]["usage"],
        json!({"cpu": "250m", "memory": "8Ki"})
    );
    let (code, missing) = call_json(
        &app,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(missing["kind"], "Status");

    let (code, nodes) = call_json(&app, "/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(code, StatusCode::OK);
    let items = nodes["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{nodes}");
    assert_eq!(
        items[0]["usage"],
        json!({"cpu": "1500m", "memory": "1024Ki"})
    );

    let (code, rps) = call_json(&app, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/requests_per_second?labelSelector=app%3Dweb").await;
    assert_eq!(code, StatusCode::OK, "{rps}");
    let values: Vec<(&str, &str)> = rps["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| Some((i["describedObject"]["name"].as_str()?, i["value"].as_str()?)))
        .collect();
    assert_eq!(values.len(), 2);
    assert!(
        values.contains(&("web-1", "1500m")) && values.contains(&("web-2", "2")),
        "{rps}"
    );

    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let (code, body) = call(
        &app,
        req("POST", "/api/v1/namespaces/default/services", Some(service)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, svc) = call_json(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/web/requests_per_second",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{svc}");
    assert_eq!(svc["items"][0]["value"], "3500m");
    assert_eq!(svc["items"][0]["describedObject"]["kind"], "Service");

    // pods/log goes to the pod's node with the log options.
    let (code, log) = call(
        &app,
        req(
            "GET",
            "/api/v1/namespaces/default/pods/web-1/log?tailLines=3&follow=true",
            None,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{log}");
    assert_eq!(
        log,
        "log of /containerLogs/default/web-1/app?follow=true&tailLines=3\n"
    );
    let (code, status) = call_json(&app, "/api/v1/namespaces/default/pods/db/log").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        status["message"],
        "a container name must be specified for pod db, choose one of: [app sidecar]"
    );
}

#[tokio::test]
async fn discovery_lists_the_metrics_groups_and_pods_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path()).await;
    let (_, groups) = call_json(&app, "/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        names.contains(&"metrics.k8s.io") && names.contains(&"custom.metrics.k8s.io"),
        "{names:?}"
    );
    let (code, resources) = call_json(&app, "/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(resources["resources"][0]["kind"], "NodeMetrics");
    let (_, core) = call_json(&app, "/api/v1").await;
    assert!(core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .any(|r| r["name"] == "pods/log"));
}

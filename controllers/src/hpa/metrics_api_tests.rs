//! [`ApiMetrics`] against an in-memory API server: the paths and queries it
//! asks for, and how it reads answers and failures.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::json;

use super::*;

/// A client whose server answers every request with `status` and `body`
/// and remembers the request URIs.
fn client(status: StatusCode, body: serde_json::Value) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        log.lock().expect("lock").push(req.uri().to_string());
        let body = body.clone();
        async move {
            let mut response = Response::new(Body::from(body.to_string().into_bytes()));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    (kube::Client::new(service, "default"), seen)
}

fn uris(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    seen.lock().expect("lock").clone()
}

#[tokio::test]
async fn pod_metrics_are_listed_with_the_scale_selector() {
    let (c, seen) = client(
        StatusCode::OK,
        json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": [
            {"metadata": {"name": "web-1", "namespace": "default"}, "timestamp": "2026-01-01T00:00:00Z",
             "window": "1s", "containers": [{"name": "app", "usage": {"cpu": "250m", "memory": "10Mi"}}]}
        ]}),
    );
    let items = ApiMetrics::new(c)
        .pod_metrics("default", "app=web")
        .await
        .expect("pod metrics");
    assert_eq!(items.len(), 1);
    assert_eq!(resource_samples(&items, "cpu", None)["web-1"].value, 250);
    assert_eq!(
        uris(&seen),
        ["/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb"]
    );
}

#[tokio::test]
async fn an_empty_pod_metrics_list_is_an_error() {
    let (c, _) = client(StatusCode::OK, json!({"items": []}));
    let err = ApiMetrics::new(c)
        .pod_metrics("default", "app=web")
        .await
        .expect_err("empty");
    assert!(matches!(err, MetricsError::NoResourceMetrics), "{err}");
}

#[tokio::test]
async fn pods_metrics_use_the_custom_metrics_wildcard_path() {
    let (c, seen) = client(
        StatusCode::OK,
        json!({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "items": [
            {"describedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "apiVersion": "/v1"},
             "metric": {"name": "requests_per_second"}, "timestamp": "2026-01-01T00:00:00Z",
             "windowSeconds": 1, "value": "12"}
        ]}),
    );
    let list = ApiMetrics::new(c)
        .pods_metric("default", "requests_per_second", "app=web", "")
        .await
        .expect("pods metric");
    assert_eq!(
        custom_samples(&list).expect("samples")["web-1"].value,
        12_000
    );
    assert_eq!(
        uris(&seen),
        ["/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/requests_per_second?labelSelector=app%3Dweb"]
    );
}

#[tokio::test]
async fn object_metrics_name_the_object_by_its_resource() {
    let (c, seen) = client(
        StatusCode::OK,
        json!({"items": [{"describedObject": {"kind": "Service", "name": "web"},
                          "metric": {"name": "requests_per_second"}, "value": "40"}]}),
    );
    let object = CrossVersionObjectReference {
        api_version: Some("v1".into()),
        kind: "Service".into(),
        name: "web".into(),
    };
    let list = ApiMetrics::new(c)
        .object_metric("default", &object, "requests_per_second", "tier=edge")
        .await
        .expect("object metric");
    assert_eq!(object_value(&list).expect("value"), 40_000);
    assert_eq!(
        uris(&seen),
        ["/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/web/requests_per_second?metricLabelSelector=tier%3Dedge"]
    );
}

#[tokio::test]
async fn an_unserved_metrics_api_reads_as_kubernetes_says_it() {
    let (c, _) = client(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404}),
    );
    let err = ApiMetrics::new(c)
        .pod_metrics("default", "app=web")
        .await
        .expect_err("not served");
    assert_eq!(
        err.to_string(),
        "unable to fetch metrics from resource metrics API: the server could not find the requested resource"
    );
}

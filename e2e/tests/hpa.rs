//! The HorizontalPodAutoscaler controller through the real API, on
//! simulated nodes: the min/max bounds rescale a Deployment through its
//! `scale` subresource with a `SuccessfulRescale` event, and metrics that
//! cannot be read show as `ScalingActive=False` with Kubernetes' reasons.
//! (These tests do not depend on the metrics APIs being served; when they
//! are not, reading them fails, which is what the condition tests check.)

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::eventually;
use e2e::{Cluster, ClusterOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn cluster() -> Result<Cluster> {
    cluster_syncing_every("1s")
}

fn cluster_syncing_every(period: &str) -> Result<Cluster> {
    Cluster::start(ClusterOptions {
        nodes: 1,
        runtime: "sim",
        extra_args: vec![
            "--horizontal-pod-autoscaler-sync-period".into(),
            period.into(),
        ],
    })
}

async fn create_deployment(client: &Client, name: &str, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "nginx:1.25",
                    "resources": {"requests": {"cpu": "100m"}}
                }]}
            }
        }
    }))?;
    api.create(&PostParams::default(), &d).await?;
    Ok(())
}

async fn create_hpa(
    client: &Client,
    name: &str,
    min: i32,
    max: i32,
    metric: serde_json::Value,
) -> Result<()> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [metric]
        }
    }))?;
    api.create(&PostParams::default(), &hpa).await?;
    Ok(())
}

fn pods_metric() -> serde_json::Value {
    json!({"type": "Pods", "pods": {
        "metric": {"name": "requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "10"}
    }})
}

fn cpu_metric() -> serde_json::Value {
    json!({"type": "Resource", "resource": {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 50}
    }})
}

async fn wait_for_replicas(client: &Client, name: &str, want: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("deployment {name} at {want} replicas"),
        TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let d = api.get(name).await?;
                Ok((d.spec.and_then(|s| s.replicas) == Some(want)).then_some(()))
            }
        },
    )
    .await
}

/// Waits for an event about HPA `name` with `reason`; returns its message.
async fn wait_for_event(client: &Client, name: &str, reason: &str) -> Result<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(&format!("a {reason} event on {name}"), TIMEOUT, || {
        let api = api.clone();
        async move {
            let events = api.list(&ListParams::default()).await?;
            Ok(events.items.into_iter().find_map(|e| {
                (e.involved_object.kind.as_deref() == Some("HorizontalPodAutoscaler")
                    && e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason))
                .then(|| e.message.unwrap_or_default())
            }))
        }
    })
    .await
}

/// Waits for condition `type_` of HPA `name` to be `status` with `reason`.
async fn wait_for_condition(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Result<HorizontalPodAutoscaler> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("{type_}={status} ({reason}) on {name}"),
        TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let hpa = api.get(name).await?;
                let found = hpa
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == type_
                                && c.status == status
                                && c.reason.as_deref() == Some(reason)
                        })
                    });
                Ok(found.then_some(hpa))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_raises_a_deployment_to_min_replicas_and_reports_missing_pods_metrics() -> Result<()>
{
    let c = cluster()?;
    let client = c.client().await?;
    create_deployment(&client, "web", 1).await?;
    create_hpa(&client, "web", 3, 5, pods_metric()).await?;
    wait_for_replicas(&client, "web", 3).await?;
    let message = wait_for_event(&client, "web", "SuccessfulRescale").await?;
    assert_eq!(
        message,
        "New size: 3; reason: Current number of replicas below Spec.MinReplicas"
    );
    // Within bounds now, the controller needs the metric, which it cannot read.
    let hpa = wait_for_condition(
        &client,
        "web",
        "ScalingActive",
        "False",
        "FailedGetPodsMetric",
    )
    .await?;
    let status = hpa.status.clone().unwrap_or_default();
    assert_eq!(status.current_replicas, Some(3));
    assert!(status.last_scale_time.is_some(), "the rescale is recorded");
    let able = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "AbleToScale")
        .map(|c| c.status.clone());
    assert_eq!(able.as_deref(), Some("True"));
    wait_for_event(&client, "web", "FailedGetPodsMetric").await?;
    // The size is left alone without a metric.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_replicas(&client, "web", 3).await?;
    let table = c.kubectl(&["get", "hpa", "web"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    assert!(table.contains("Deployment/web"), "{table}");
    let described = c.kubectl(&["describe", "hpa", "web"])?;
    for expected in [
        "Min replicas:",
        "AbleToScale",
        "ScalingActive",
        "FailedGetPodsMetric",
        "SuccessfulRescale",
    ] {
        assert!(
            described.contains(expected),
            "no {expected:?} in:\n{described}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_clamps_a_deployment_to_max_replicas_and_reports_missing_resource_metrics(
) -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    create_deployment(&client, "api", 4).await?;
    create_hpa(&client, "api", 1, 2, cpu_metric()).await?;
    wait_for_replicas(&client, "api", 2).await?;
    let message = wait_for_event(&client, "api", "SuccessfulRescale").await?;
    assert_eq!(
        message,
        "New size: 2; reason: Current number of replicas above Spec.MaxReplicas"
    );
    let hpa = wait_for_condition(
        &client,
        "api",
        "ScalingActive",
        "False",
        "FailedGetResourceMetric",
    )
    .await?;
    let message = hpa
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.type_ == "ScalingActive")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "the HPA was unable to compute the replica count: failed to get cpu utilization"
        ),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_on_a_missing_target_reports_failed_get_scale() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    create_hpa(&client, "ghost", 1, 3, cpu_metric()).await?;
    wait_for_condition(&client, "ghost", "AbleToScale", "False", "FailedGetScale").await?;
    wait_for_event(&client, "ghost", "FailedGetScale").await?;
    // Once the target exists the HPA picks it up on its own.
    create_deployment(&client, "ghost", 5).await?;
    wait_for_replicas(&client, "ghost", 3).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_spec_change_is_acted_on_at_once_not_at_the_next_sync() -> Result<()> {
    // A sync period far longer than the wait below: only the watch on the
    // HPA's spec can make the controller act in time.
    let c = cluster_syncing_every("60s")?;
    let client = c.client().await?;
    create_deployment(&client, "quick", 1).await?;
    create_hpa(&client, "quick", 2, 5, cpu_metric()).await?;
    wait_for_replicas(&client, "quick", 2).await?;
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    api.patch(
        "quick",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minReplicas": 4}})),
    )
    .await?;
    if let Err(e) = wait_for_replicas(&client, "quick", 4).await {
        let logs = c.logs();
        let hpa_lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("hpa") || l.contains("autoscal") || l.contains("quick"))
            .collect();
        eprintln!("{}", hpa_lines.join("\n"));
        return Err(e);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hpas_on_the_same_pods_report_an_ambiguous_selector() -> Result<()> {
    let c = cluster()?;
    let client = c.client().await?;
    create_deployment(&client, "shared", 2).await?;
    create_hpa(&client, "shared", 1, 5, cpu_metric()).await?;
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let second: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "shared-too"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shared"},
            "minReplicas": 1, "maxReplicas": 5, "metrics": [cpu_metric()]
        }
    }))?;
    api.create(&PostParams::default(), &second).await?;
    for name in ["shared", "shared-too"] {
        wait_for_condition(&client, name, "ScalingActive", "False", "AmbiguousSelector").await?;
    }
    // Once one is gone the other computes again (and fails on metrics).
    api.delete("shared-too", &Default::default()).await?;
    wait_for_condition(
        &client,
        "shared",
        "ScalingActive",
        "False",
        "FailedGetResourceMetric",
    )
    .await?;
    Ok(())
}

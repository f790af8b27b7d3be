//! The HorizontalPodAutoscaler on real containers, end to end: cgroup CPU
//! stats sampled every second by the node agent → `metrics.k8s.io` on the
//! API server → the HPA controller → the Deployment's `scale` subresource
//! → new pods scheduled and started by containerd; and back down when the
//! load stops.
//!
//! Real containerd nodes (root; FAIL, not skip, when a component is
//! missing). Network use: only pod IPs on the bridge skiff creates.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::containerd::{NodeCluster, IMAGE};
use e2e::wait_for;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Ready replicas and `spec.replicas` of a Deployment.
fn replicas(env: &NodeCluster, name: &str) -> Result<(i64, i64)> {
    let out = env.kubectl(&[
        "get",
        "deployment",
        name,
        "-o",
        "jsonpath={.status.readyReplicas} {.spec.replicas}",
    ])?;
    let mut it = out
        .split_whitespace()
        .map(|v| v.parse::<i64>().unwrap_or(0));
    let first = it.next().unwrap_or(0);
    match it.next() {
        Some(spec) => Ok((first, spec)),
        // readyReplicas absent (0): only spec.replicas was printed.
        None => Ok((0, first)),
    }
}

#[test]
fn a_cpu_spike_scales_a_deployment_from_1_to_at_least_4_ready_replicas_and_back() -> Result<()> {
    let env = NodeCluster::start()?;
    // Every replica burns CPU until LOAD_UNTIL (a sudden load for 50 s
    // from now, new replicas included), then idles.
    let load_until = unix_now() + 50;
    let yaml = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {{app: burn}}
  template:
    metadata:
      labels: {{app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: {IMAGE}
        imagePullPolicy: Never
        env:
        - {{name: LOAD_UNTIL, value: "{load_until}"}}
        command: ["sh", "-c", "while [ $(date +%s) -lt $LOAD_UNTIL ]; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; done; exec sleep 3600"]
        resources:
          requests: {{cpu: 100m}}
          limits: {{cpu: 300m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burn
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burn}}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {{type: Utilization, averageUtilization: 50}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{{type: Percent, value: 400, periodSeconds: 1}}]
    scaleDown:
      stabilizationWindowSeconds: 5
      policies: [{{type: Percent, value: 100, periodSeconds: 1}}]
"#
    );
    let applied = Instant::now();
    env.apply(&yaml)?;
    let scaled = wait_for("at least 4 Ready replicas", Duration::from_secs(45), || {
        let (ready, _) = replicas(&env, "burn")?;
        Ok((ready >= 4).then_some(ready))
    })
    .context(
        env.kubectl(&["describe", "hpa", "burn"])
            .unwrap_or_default(),
    )?;
    eprintln!(
        "{scaled} Ready replicas {:?} after the load started",
        applied.elapsed()
    );

    // What the autoscaler saw and did is in its status and events.
    let status = env.kubectl(&["get", "hpa", "burn", "-o", "json"])?;
    let hpa: serde_json::Value = serde_json::from_str(&status)?;
    let utilization = hpa["status"]["currentMetrics"][0]["resource"]["current"]
        ["averageUtilization"]
        .as_i64()
        .context("currentMetrics with cpu utilization")?;
    assert!(utilization > 0, "{status}");
    let conditions = hpa["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let active = conditions
        .iter()
        .find(|c| c["type"] == "ScalingActive")
        .context("ScalingActive condition")?;
    assert_eq!(active["status"], "True", "{active}");
    assert_eq!(active["reason"], "ValidMetricFound", "{active}");
    assert!(hpa["status"]["lastScaleTime"].is_string(), "{status}");
    let events = env.events("burn")?;
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "SuccessfulRescale"
                && message
                    .contains("cpu resource utilization (percentage of request) above target")),
        "{events:?}"
    );

    // The load ends at LOAD_UNTIL: back to minReplicas.
    wait_for("back to 1 replica", Duration::from_secs(90), || {
        let (_, spec) = replicas(&env, "burn")?;
        Ok((spec == 1).then_some(()))
    })
    .context(
        env.kubectl(&["describe", "hpa", "burn"])
            .unwrap_or_default(),
    )?;
    let events = env.events("burn")?;
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "SuccessfulRescale"
                && message.contains("below target")),
        "{events:?}"
    );
    Ok(())
}

#[test]
fn a_request_rate_spike_through_a_service_scales_on_requests_per_second_and_back() -> Result<()> {
    let env = NodeCluster::start()?;
    let yaml = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: rps
spec:
  replicas: 1
  selector:
    matchLabels: {{app: rps}}
  template:
    metadata:
      labels: {{app: rps}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
        resources:
          requests: {{cpu: 50m}}
---
apiVersion: v1
kind: Service
metadata:
  name: rps
  # Metered by the userspace proxy: the HPA scales on its request counts.
  annotations: {{proxy.skiff.io/mode: userspace}}
spec:
  selector: {{app: rps}}
  ports:
  - {{port: 80, targetPort: 8080}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: rps
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: rps}}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Pods
    pods:
      metric: {{name: requests_per_second}}
      target: {{type: AverageValue, averageValue: "10"}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{{type: Percent, value: 400, periodSeconds: 1}}]
    scaleDown:
      stabilizationWindowSeconds: 5
      policies: [{{type: Percent, value: 100, periodSeconds: 1}}]
"#
    );
    env.apply(&yaml)?;
    wait_for("the first replica Ready", Duration::from_secs(60), || {
        let (ready, _) = replicas(&env, "rps")?;
        Ok((ready >= 1).then_some(()))
    })?;
    let ip = env.kubectl(&["get", "service", "rps", "-o", "jsonpath={.spec.clusterIP}"])?;
    // 60 requests/s for 40 s through the ClusterIP: 6 pods' worth at 10/s.
    let config = e2e::load::LoadConfig {
        url: format!("http://{ip}/index.html"),
        profile: e2e::load::Profile {
            phases: vec![e2e::load::Phase::parse("40s@60")?],
        },
        timeout: Duration::from_secs(2),
        max_in_flight: 200,
    };
    let load = std::thread::spawn(move || {
        e2e::containerd::block_on(e2e::load::run(&config, || async { (None, None) }))
    });
    let started = Instant::now();
    let scaled = wait_for("at least 4 Ready replicas", Duration::from_secs(35), || {
        let (ready, _) = replicas(&env, "rps")?;
        Ok((ready >= 4).then_some(ready))
    })
    .context(env.kubectl(&["describe", "hpa", "rps"]).unwrap_or_default())?;
    eprintln!(
        "{scaled} Ready replicas {:?} after the load started",
        started.elapsed()
    );
    let hpa: serde_json::Value =
        serde_json::from_str(&env.kubectl(&["get", "hpa", "rps", "-o", "json"])?)?;
    let current = &hpa["status"]["currentMetrics"][0]["pods"];
    assert_eq!(current["metric"]["name"], "requests_per_second", "{hpa}");
    assert!(current["current"]["averageValue"].is_string(), "{hpa}");
    let seconds = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    let sent: u64 = seconds.iter().map(|s| s.sent).sum();
    let ok: u64 = seconds.iter().map(|s| s.ok).sum();
    eprintln!("load: {ok} of {sent} requests answered");
    assert!(ok * 100 >= sent * 95, "{ok} of {sent} answered");
    wait_for("back to 1 replica", Duration::from_secs(60), || {
        let (_, spec) = replicas(&env, "rps")?;
        Ok((spec == 1).then_some(()))
    })
    .context(env.kubectl(&["describe", "hpa", "rps"]).unwrap_or_default())?;
    let events = env.events("rps")?;
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "SuccessfulRescale"
                && message.contains("pods metric requests_per_second above target")),
        "{events:?}"
    );
    Ok(())
}

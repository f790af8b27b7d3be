//! Container probes on real nodes: `skiff up --runtime containerd` runs
//! busybox pods whose readiness, liveness and startup probes (httpGet,
//! tcpSocket, exec through containerd's Tasks Exec API, and grpc against
//! this workspace's `grpc_health_server` packed by `skiff image build`) decide `ready`,
//! restarts and the pod's Ready condition, as in Kubernetes; and whose
//! init containers run in order to completion before the app containers.
//!
//! These tests run as root and FAIL (not skip) when a component is
//! missing. Network use: only pod IPs on the bridge skiff creates. A guard
//! kills `skiff up` and removes every container, netns, the bridge and the
//! node's containerd, even when an assertion fails. Containerd tests of
//! every worktree share bridge names: run them under
//! `flock /tmp/skiff-containerd-e2e.lock ... -- --test-threads=1`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::containerd::{condition, pack_binary_image, phase, pod_ip, status, NodeCluster, IMAGE};
use e2e::wait_for;
use k8s_openapi::api::core::v1::{ContainerStatus, Endpoints, Pod};

type Env = NodeCluster;

fn is_running(pod: &Pod) -> bool {
    status(pod)
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn restarts(pod: &Pod) -> i32 {
    status(pod).map_or(0, |s| s.restart_count)
}

fn endpoint_ips(endpoints: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| a.ip.clone()),
        );
    }
    (ready, not_ready)
}

#[test]
fn a_failing_http_readiness_probe_turns_the_pod_unready_and_drops_it_from_endpoints() -> Result<()>
{
    let env = Env::start()?;
    // httpd serves /srv/ready for 15 s, then the file is removed (404); the
    // tcpSocket liveness probe keeps passing, so nothing restarts.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /srv && echo ok > /srv/ready && httpd -f -p 8080 -h /srv & sleep 15; rm /srv/ready; exec sleep 3600"]
    ports:
    - {{name: http, containerPort: 8080}}
    readinessProbe:
      httpGet: {{path: /ready, port: http, httpHeaders: [{{name: X-Probe, value: skiff}}]}}
      periodSeconds: 1
      failureThreshold: 2
    livenessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - {{port: 80, targetPort: 8080}}
"#
    ))?;
    let ready = wait_for("web Ready=True", Duration::from_secs(60), || {
        let pod = env.pod("web")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod))
    })?;
    let became_ready = Instant::now();
    let ip = pod_ip(&ready).context("pod IP")?;
    assert!(status(&ready).is_some_and(|s| s.ready && s.started == Some(true)));
    assert_eq!(
        condition(&ready, "ContainersReady").as_deref(),
        Some("True")
    );
    wait_for(
        "the pod IP in the endpoints",
        Duration::from_secs(30),
        || {
            let (addresses, _) = endpoint_ips(&env.endpoints("web")?);
            Ok(addresses.contains(&ip).then_some(()))
        },
    )?;

    let unready = wait_for("web Ready=False", Duration::from_secs(40), || {
        let pod = env.pod("web")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("False")).then_some(pod))
    })?;
    eprintln!("Ready=False {:?} after Ready=True", became_ready.elapsed());
    // The file goes 15 s after the container started; 2 failed periods of
    // 1 s later the kubelet must have written Ready=False (seconds
    // resolution and a loaded machine: allow 4 s more).
    let started_at = status(&unready)
        .and_then(|s| s.state.as_ref()?.running.as_ref()?.started_at.clone())
        .context("startedAt")?;
    let flipped_at = unready
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.clone())
        .context("Ready lastTransitionTime")?;
    let lag = flipped_at.0.as_second() - started_at.0.as_second();
    assert!(
        (15..=21).contains(&lag),
        "Ready=False written {lag}s after the container started (file removed at 15s)"
    );
    assert_eq!(
        condition(&unready, "ContainersReady").as_deref(),
        Some("False")
    );
    assert!(is_running(&unready), "{:?}", unready.status);
    assert!(status(&unready).is_some_and(|s| !s.ready));
    assert_eq!(
        restarts(&unready),
        0,
        "a passing liveness probe restarted it"
    );
    assert_eq!(phase(&unready), "Running");
    wait_for(
        "the pod IP moved to notReadyAddresses",
        Duration::from_secs(30),
        || {
            let (addresses, not_ready) = endpoint_ips(&env.endpoints("web")?);
            Ok((!addresses.contains(&ip) && not_ready.contains(&ip)).then_some(()))
        },
    )?;
    let events = env.events("web")?;
    assert!(
        events.iter().any(|(reason, message)| reason == "Unhealthy"
            && message
                .starts_with("Readiness probe failed: HTTP probe failed with statuscode: 404")),
        "{events:?}"
    );
    // Still unready, never restarted, a few periods later.
    std::thread::sleep(Duration::from_secs(3));
    let later = env.pod("web")?;
    assert_eq!(condition(&later, "Ready").as_deref(), Some("False"));
    assert_eq!(restarts(&later), 0);
    Ok(())
}

#[test]
fn a_failing_exec_liveness_probe_kills_and_restarts_the_container() -> Result<()> {
    let env = Env::start()?;
    // Healthy for 8 s (the probe file exists), then the exec probe fails.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sick
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo ok > /tmp/healthy; sleep 8; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/healthy"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ))?;
    let first = wait_for("sick running and ready", Duration::from_secs(60), || {
        let pod = env.pod("sick")?;
        Ok(
            (is_running(&pod) && condition(&pod, "Ready").as_deref() == Some("True"))
                .then_some(pod),
        )
    })?;
    let first_id = status(&first).and_then(|s| s.container_id.clone());
    assert_eq!(restarts(&first), 0);
    // While the file exists the probe passes: a failing probe would have
    // killed it (2 periods + 2 s grace) before this check.
    std::thread::sleep(Duration::from_secs(5));
    let healthy = env.pod("sick")?;
    assert_eq!(restarts(&healthy), 0, "killed while healthy");
    assert_eq!(
        status(&healthy).and_then(|s| s.container_id.clone()),
        first_id
    );

    let restarted = wait_for(
        "sick restarted by its liveness probe",
        Duration::from_secs(40),
        || {
            let pod = env.pod("sick")?;
            Ok((restarts(&pod) >= 1 && is_running(&pod)).then_some(pod))
        },
    )?;
    let s = status(&restarted).context("status")?;
    assert_ne!(s.container_id, first_id);
    let last = s
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .context("lastState.terminated")?;
    assert_eq!(last.exit_code, 137, "{last:?}");
    assert_eq!(phase(&restarted), "Running");
    let events = wait_for("the probe events", Duration::from_secs(10), || {
        let events = env.events("sick")?;
        let killing = events.iter().any(|(r, m)| {
            r == "Killing" && m == "Container main failed liveness probe, will be restarted"
        });
        // The exec's output is the message, as in Kubernetes.
        let unhealthy = events.iter().any(|(r, m)| {
            r == "Unhealthy"
                && m.starts_with("Liveness probe failed: cat: can't open '/tmp/healthy'")
        });
        Ok((killing && unhealthy).then_some(events))
    })?;
    eprintln!("events: {events:?}");
    Ok(())
}

#[test]
fn an_exec_readiness_probe_follows_a_file_the_container_creates_and_removes() -> Result<()> {
    let env = Env::start()?;
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 4; echo ok > /tmp/ready; sleep 8; rm /tmp/ready; exec sleep 3600"]
    readinessProbe:
      exec: {{command: ["test", "-e", "/tmp/ready"]}}
      periodSeconds: 1
      failureThreshold: 1
"#
    ))?;
    let running = wait_for("flip running", Duration::from_secs(60), || {
        let pod = env.pod("flip")?;
        Ok(is_running(&pod).then_some(pod))
    })?;
    assert_eq!(
        condition(&running, "Ready").as_deref(),
        Some("False"),
        "ready before the probe passed"
    );
    wait_for("flip Ready=True", Duration::from_secs(30), || {
        let pod = env.pod("flip")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("True")).then_some(()))
    })?;
    let pod = wait_for("flip Ready=False again", Duration::from_secs(30), || {
        let pod = env.pod("flip")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("False")).then_some(pod))
    })?;
    assert!(is_running(&pod));
    assert_eq!(restarts(&pod), 0);
    Ok(())
}

#[test]
fn a_startup_probe_holds_readiness_until_it_passes() -> Result<()> {
    let env = Env::start()?;
    // The app "starts" after 8 s; until then liveness (which would fail)
    // and readiness (which would pass) are held back.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: slow
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 8; echo ok > /tmp/started; exec sleep 3600"]
    startupProbe:
      exec: {{command: ["cat", "/tmp/started"]}}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {{command: ["cat", "/tmp/started"]}}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {{command: ["true"]}}
      periodSeconds: 1
"#
    ))?;
    let running = wait_for("slow running", Duration::from_secs(60), || {
        let pod = env.pod("slow")?;
        Ok(is_running(&pod).then_some(pod))
    })?;
    let since_running = Instant::now();
    let s = status(&running).context("status")?;
    assert_eq!(s.started, Some(false), "{s:?}");
    assert!(!s.ready);
    // Still held a few seconds later: readiness would pass, but has not run.
    std::thread::sleep(Duration::from_secs(3));
    let held = env.pod("slow")?;
    assert_eq!(condition(&held, "Ready").as_deref(), Some("False"));
    assert_eq!(status(&held).and_then(|s| s.started), Some(false));
    let ready = wait_for("slow Ready=True", Duration::from_secs(30), || {
        let pod = env.pod("slow")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod))
    })
    .inspect_err(|_| {
        let status = env.pod("slow").ok().and_then(|p| p.status);
        eprintln!("status: {status:?}\nevents: {:?}", env.events("slow"));
    })?;
    eprintln!("ready {:?} after running", since_running.elapsed());
    assert_eq!(status(&ready).and_then(|s| s.started), Some(true));
    assert_eq!(restarts(&ready), 0, "liveness ran before startup passed");
    Ok(())
}

fn init_statuses(pod: &Pod) -> Vec<ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default()
}

fn terminated(
    status: &ContainerStatus,
) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    status.state.as_ref()?.terminated.as_ref()
}

fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

#[test]
fn init_containers_run_in_order_to_completion_before_the_app_starts() -> Result<()> {
    let env = Env::start()?;
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: staged
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: first
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 3"]
  - name: second
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 1"]
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
"#
    ))?;
    let initializing = wait_for(
        "staged initializing with its first init container running",
        Duration::from_secs(60),
        || {
            let pod = env.pod("staged")?;
            let inits = init_statuses(&pod);
            let first_running = inits
                .first()
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some());
            Ok(first_running.then_some(pod))
        },
    )?;
    assert_eq!(phase(&initializing), "Pending");
    assert_eq!(
        condition(&initializing, "Initialized").as_deref(),
        Some("False")
    );
    let inits = init_statuses(&initializing);
    assert_eq!(inits.len(), 2);
    assert_eq!(waiting_reason(&inits[1]), Some("PodInitializing"));
    let app = status(&initializing).context("app status")?;
    assert_eq!(waiting_reason(app), Some("PodInitializing"));

    let running = wait_for("staged Running and Ready", Duration::from_secs(60), || {
        let pod = env.pod("staged")?;
        Ok(
            (phase(&pod) == "Running" && condition(&pod, "Ready").as_deref() == Some("True"))
                .then_some(pod),
        )
    })?;
    assert_eq!(condition(&running, "Initialized").as_deref(), Some("True"));
    let inits = init_statuses(&running);
    let first = terminated(&inits[0]).context("first terminated")?;
    let second = terminated(&inits[1]).context("second terminated")?;
    for (status, t) in [(&inits[0], first), (&inits[1], second)] {
        assert_eq!(t.exit_code, 0, "{status:?}");
        assert_eq!(t.reason.as_deref(), Some("Completed"));
        assert!(status.ready, "a completed init container is ready");
        assert_eq!(status.restart_count, 0);
    }
    // Strictly one after the other: second started after first finished.
    assert!(
        second.started_at >= first.finished_at,
        "{first:?} / {second:?}"
    );
    let main_started = status(&running)
        .and_then(|s| s.state.as_ref()?.running.as_ref()?.started_at.clone())
        .context("main running")?;
    assert!(second
        .finished_at
        .as_ref()
        .is_some_and(|f| *f <= main_started));
    Ok(())
}

#[test]
fn a_failing_init_container_fails_a_never_pod_and_is_retried_under_on_failure() -> Result<()> {
    let env = Env::start()?;
    for (name, policy, code) in [("never", "Never", 2), ("retry", "OnFailure", 1)] {
        env.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: setup
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "exit {code}"]
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
"#
        ))?;
    }
    let failed = wait_for("the Never pod Failed", Duration::from_secs(60), || {
        let pod = env.pod("never")?;
        Ok((phase(&pod) == "Failed").then_some(pod))
    })?;
    let setup = init_statuses(&failed);
    assert_eq!(
        setup.first().and_then(terminated).map(|t| t.exit_code),
        Some(2)
    );
    assert_eq!(
        status(&failed).and_then(waiting_reason),
        Some("PodInitializing"),
        "the app container ran"
    );
    assert_eq!(condition(&failed, "Initialized").as_deref(), Some("False"));

    let retried = wait_for(
        "the OnFailure pod's init container restarted",
        Duration::from_secs(60),
        || {
            let pod = env.pod("retry")?;
            let restarts = init_statuses(&pod).first().map_or(0, |s| s.restart_count);
            Ok((restarts >= 1).then_some(pod))
        },
    )?;
    assert_eq!(phase(&retried), "Pending");
    assert_eq!(condition(&retried, "Initialized").as_deref(), Some("False"));
    assert_eq!(
        status(&retried).and_then(waiting_reason),
        Some("PodInitializing")
    );
    Ok(())
}

/// Packs this workspace's `grpc_health_server` into an image the node
/// imports (`skiff image build`), as a developer's own service would be.
fn grpc_health_image(env: &Env) -> Result<&'static str> {
    const NAME: &str = "skiff.local/grpc-health:e2e";
    pack_binary_image(
        &env.data_dir(),
        env!("CARGO_BIN_EXE_grpc_health_server"),
        NAME,
    )?;
    Ok(NAME)
}

#[test]
fn grpc_probes_call_the_health_service_and_act_on_not_serving_and_connect_timeouts() -> Result<()> {
    let env = Env::start()?;
    let image = grpc_health_image(&env)?;
    // `health`: service `app` turns NOT_SERVING after 12 s (readiness), the
    // overall health stays SERVING (liveness). `dead`: its liveness probe
    // calls a port nothing listens on.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: health
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: ["grpc_health_server", "9000", "12"]
    readinessProbe:
      grpc: {{port: 9000, service: app}}
      periodSeconds: 1
      failureThreshold: 1
    livenessProbe:
      grpc: {{port: 9000}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: dead
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: ["grpc_health_server", "9000"]
    livenessProbe:
      grpc: {{port: 9001}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ))?;
    let ready = wait_for("health Ready=True", Duration::from_secs(60), || {
        let pod = env.pod("health")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod))
    })?;
    assert!(status(&ready).is_some_and(|s| s.ready));

    let unready = wait_for("health Ready=False", Duration::from_secs(40), || {
        let pod = env.pod("health")?;
        Ok((condition(&pod, "Ready").as_deref() == Some("False")).then_some(pod))
    })?;
    assert!(is_running(&unready), "{:?}", unready.status);
    assert_eq!(
        restarts(&unready),
        0,
        "a SERVING liveness probe restarted it"
    );
    wait_for("the NOT_SERVING event", Duration::from_secs(10), || {
        let events = env.events("health")?;
        Ok(events
            .iter()
            .any(|(r, m)| {
                r == "Unhealthy"
                    && m == r#"Readiness probe failed: service unhealthy (responded with "NOT_SERVING")"#
            })
            .then_some(()))
    })?;

    let restarted = wait_for(
        "dead restarted by its liveness probe",
        Duration::from_secs(60),
        || {
            let pod = env.pod("dead")?;
            Ok((restarts(&pod) >= 1).then_some(pod))
        },
    )?;
    let ip = pod_ip(&restarted).context("pod IP")?;
    let events = wait_for("the connect timeout event", Duration::from_secs(10), || {
        let events = env.events("dead")?;
        let want = format!(
            "Liveness probe failed: timeout: failed to connect service \"{ip}:9001\" within 1s: context deadline exceeded"
        );
        Ok(events
            .iter()
            .any(|(r, m)| r == "Unhealthy" && *m == want)
            .then_some(events))
    })?;
    eprintln!("events: {events:?}");
    Ok(())
}

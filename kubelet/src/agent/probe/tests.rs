use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ContainerPort, ContainerState, ContainerStateRunning, ExecAction, GRPCAction, HTTPGetAction,
    PodSpec, TCPSocketAction,
};

use super::*;
use crate::containerd::pod_runtime::ExecOutcome;

/// An exec runner whose exit code a test flips; counts runs per command.
#[derive(Default)]
struct Switch {
    healthy: AtomicBool,
    ready: AtomicBool,
    started: AtomicBool,
    runs: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Exec for Switch {
    async fn exec(&self, command: &[String], _: Duration) -> Result<ExecOutcome, String> {
        let key = command.join(" ");
        if let Ok(mut runs) = self.runs.lock() {
            *runs.entry(key.clone()).or_default() += 1;
        }
        let ok = match key.as_str() {
            "live" => self.healthy.load(Ordering::SeqCst),
            "start" => self.started.load(Ordering::SeqCst),
            _ => self.ready.load(Ordering::SeqCst),
        };
        Ok(ExecOutcome::Exited {
            code: if ok { 0 } else { 1 },
            output: String::new(),
        })
    }
}

impl Switch {
    fn runs(&self, command: &str) -> u32 {
        self.runs
            .lock()
            .map(|r| r.get(command).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

fn exec_probe(command: &str, period: i32, failure: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![command.to_string()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

fn pod_with(container: Container) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".to_string());
    pod.spec = Some(PodSpec {
        containers: vec![container],
        ..Default::default()
    });
    pod
}

fn running(name: &str, id: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.to_string(),
        container_id: Some(id.to_string()),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning { started_at: None }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Harness {
    manager: ProbeManager,
    switch: Arc<Switch>,
    events: Arc<Mutex<Vec<ProbeEvent>>>,
    wakes: Arc<AtomicU32>,
    pod: Pod,
}

impl Harness {
    fn new(container: Container) -> Self {
        let switch = Arc::new(Switch::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let wake = Arc::new(Notify::new());
        let wakes = Arc::new(AtomicU32::new(0));
        {
            let (wake, wakes) = (wake.clone(), wakes.clone());
            tokio::spawn(async move {
                loop {
                    wake.notified().await;
                    wakes.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let exec: ExecFactory = {
            let switch = switch.clone();
            Arc::new(move |_: &Pod, _: &str| switch.clone() as Arc<dyn Exec>)
        };
        let sink: EventSink = {
            let events = events.clone();
            Arc::new(move |e| {
                if let Ok(mut events) = events.lock() {
                    events.push(e);
                }
            })
        };
        Self {
            manager: ProbeManager::new(exec, wake, sink),
            switch,
            events,
            wakes,
            pod: pod_with(container),
        }
    }

    fn status(&mut self, id: &str) -> ContainerStatus {
        let mut statuses = vec![running("c", id)];
        self.manager.sync(&self.pod, &statuses, Some("10.0.0.1"));
        self.manager.apply(&mut statuses);
        statuses.remove(0)
    }
}

fn container() -> Container {
    Container {
        name: "c".to_string(),
        ..Default::default()
    }
}

async fn after(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

async fn after_ms(millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

#[tokio::test(start_paused = true)]
async fn a_container_is_not_ready_until_its_readiness_probe_passes_then_unready_after_the_failure_threshold(
) {
    let mut c = container();
    c.readiness_probe = Some(Probe {
        initial_delay_seconds: Some(5),
        ..exec_probe("ready", 2, 3)
    });
    let mut h = Harness::new(c);
    h.switch.ready.store(true, Ordering::SeqCst);
    assert!(!h.status("id1").ready, "ready before any probe ran");
    after(4).await;
    assert!(!h.status("id1").ready, "probed before initialDelaySeconds");
    assert_eq!(h.switch.runs("ready"), 0);
    after(2).await;
    assert!(h.status("id1").ready);
    assert!(
        h.wakes.load(Ordering::SeqCst) >= 1,
        "the pod worker was not woken"
    );
    h.switch.ready.store(false, Ordering::SeqCst);
    after(4).await;
    assert!(h.status("id1").ready, "unready before 3 failures");
    after(2).await;
    assert!(!h.status("id1").ready, "still ready after 3 failures");
    let events = h.events.lock().map(|e| e.clone()).unwrap_or_default();
    assert!(events
        .iter()
        .all(|e| e.kind == ProbeKind::Readiness && e.message.contains("exited with 1")));
    assert!(!events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_readiness_success_threshold_needs_that_many_passes_in_a_row() {
    let mut c = container();
    c.readiness_probe = Some(Probe {
        success_threshold: Some(3),
        ..exec_probe("ready", 1, 1)
    });
    let mut h = Harness::new(c);
    h.switch.ready.store(true, Ordering::SeqCst);
    h.status("id1");
    after_ms(1500).await;
    assert!(!h.status("id1").ready, "ready after 2 passes");
    after(1).await;
    assert!(h.status("id1").ready);
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_reports_the_container_unhealthy_after_the_threshold() {
    let mut c = container();
    c.liveness_probe = Some(exec_probe("live", 1, 3));
    let mut h = Harness::new(c);
    h.switch.healthy.store(true, Ordering::SeqCst);
    let status = h.status("id1");
    assert!(status.ready, "no readiness probe: ready while running");
    after(5).await;
    assert!(h.manager.unhealthy().is_empty());
    h.switch.healthy.store(false, Ordering::SeqCst);
    after(2).await;
    assert!(h.manager.unhealthy().is_empty(), "killed before 3 failures");
    after(1).await;
    let unhealthy = h.manager.unhealthy();
    assert_eq!(unhealthy.len(), 1);
    assert_eq!(unhealthy[0].kind, ProbeKind::Liveness);
    assert_eq!(unhealthy[0].container, "c");
    // The next instance (a restart) starts healthy with fresh counters.
    h.switch.healthy.store(true, Ordering::SeqCst);
    h.status("id2");
    assert!(h.manager.unhealthy().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_startup_probe_holds_readiness_and_liveness_until_it_passes() {
    let mut c = container();
    c.startup_probe = Some(exec_probe("start", 1, 30));
    c.liveness_probe = Some(exec_probe("live", 1, 1));
    c.readiness_probe = Some(exec_probe("ready", 1, 1));
    let mut h = Harness::new(c);
    h.switch.ready.store(true, Ordering::SeqCst);
    let status = h.status("id1");
    assert_eq!(status.started, Some(false));
    after_ms(10_500).await;
    let status = h.status("id1");
    assert!(!status.ready && status.started == Some(false), "{status:?}");
    assert_eq!(
        h.switch.runs("live"),
        0,
        "liveness ran before startup passed"
    );
    assert_eq!(
        h.switch.runs("ready"),
        0,
        "readiness ran before startup passed"
    );
    assert!(h.manager.unhealthy().is_empty(), "killed while starting");
    assert_eq!(h.switch.runs("start"), 11);
    h.switch.started.store(true, Ordering::SeqCst);
    after(1).await;
    assert_eq!(h.status("id1").started, Some(true));
    after(2).await;
    assert!(h.status("id1").ready);
    assert_eq!(h.switch.runs("start"), 12, "startup probed after it passed");
    // Liveness (failing, threshold 1) runs now.
    let unhealthy = h.manager.unhealthy();
    assert_eq!(unhealthy.len(), 1, "{unhealthy:?}");
    assert_eq!(unhealthy[0].kind, ProbeKind::Liveness);
}

#[tokio::test(start_paused = true)]
async fn a_startup_probe_that_passes_lets_readiness_run_and_a_failing_one_kills() {
    let mut c = container();
    c.startup_probe = Some(exec_probe("start", 1, 3));
    c.readiness_probe = Some(exec_probe("ready", 1, 1));
    let mut h = Harness::new(c);
    // Startup fails 3 times: the container is reported unhealthy.
    h.status("id1");
    after(3).await;
    let unhealthy = h.manager.unhealthy();
    assert_eq!(unhealthy.len(), 1, "{unhealthy:?}");
    assert_eq!(unhealthy[0].kind, ProbeKind::Startup);
    // A new instance whose startup probe passes becomes ready.
    h.switch.started.store(true, Ordering::SeqCst);
    h.switch.ready.store(true, Ordering::SeqCst);
    h.status("id2");
    after(2).await;
    let status = h.status("id2");
    assert_eq!(status.started, Some(true));
    assert!(status.ready);
}

#[test]
fn probe_timing_defaults_match_kubernetes() {
    let t = ProbeTiming::of(ProbeKind::Readiness, &Probe::default());
    assert_eq!(t.initial_delay, Duration::ZERO);
    assert_eq!(t.period, Duration::from_secs(10));
    assert_eq!(t.timeout, Duration::from_secs(1));
    assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    let probe = Probe {
        success_threshold: Some(4),
        period_seconds: Some(0),
        ..Default::default()
    };
    assert_eq!(
        ProbeTiming::of(ProbeKind::Liveness, &probe).success_threshold,
        1
    );
    assert_eq!(
        ProbeTiming::of(ProbeKind::Readiness, &probe).success_threshold,
        4
    );
    assert_eq!(
        ProbeTiming::of(ProbeKind::Startup, &probe).period,
        Duration::from_secs(10)
    );
}

#[test]
fn http_probes_target_the_pod_ip_and_resolve_named_ports() {
    let mut c = container();
    c.ports = Some(vec![ContainerPort {
        name: Some("web".to_string()),
        container_port: 8080,
        ..Default::default()
    }]);
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("web".to_string()),
            path: Some("healthz".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let Ok(ProbeAction::Http(get)) = action(&probe, &c, Some("10.244.0.7")) else {
        panic!("not an http probe");
    };
    assert_eq!(get.url(), "http://10.244.0.7:8080/healthz");
    let missing = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("nope".to_string()),
            host: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        action(&missing, &c, Some("10.244.0.7")),
        Err(ProbeSpecError::UnknownPort("nope".to_string()))
    );
    let numeric = IntOrString::String("81".to_string());
    assert_eq!(resolve_port(&numeric, &c), Ok(81));
    assert_eq!(
        resolve_port(&IntOrString::Int(70000), &c),
        Err(ProbeSpecError::InvalidPort(70000))
    );
    assert_eq!(
        action(&Probe::default(), &c, None),
        Err(ProbeSpecError::NoHandler)
    );
}

#[test]
fn grpc_probes_target_the_pod_ip_with_the_service_or_the_empty_one() {
    let c = container();
    let probe = |port: i32, service: Option<&str>| Probe {
        grpc: Some(GRPCAction {
            port,
            service: service.map(str::to_string),
        }),
        ..Default::default()
    };
    assert_eq!(
        action(&probe(9000, Some("app.Api")), &c, Some("10.244.0.7")),
        Ok(ProbeAction::Grpc(GrpcCheck {
            host: "10.244.0.7".to_string(),
            port: 9000,
            service: "app.Api".to_string(),
        }))
    );
    assert_eq!(
        action(&probe(9000, None), &c, Some("10.244.0.7")),
        Ok(ProbeAction::Grpc(GrpcCheck {
            host: "10.244.0.7".to_string(),
            port: 9000,
            service: String::new(),
        }))
    );
    assert_eq!(
        action(&probe(9000, None), &c, None),
        Err(ProbeSpecError::NoPodIp)
    );
    assert_eq!(
        action(&probe(0, None), &c, Some("10.244.0.7")),
        Err(ProbeSpecError::InvalidPort(0))
    );
}

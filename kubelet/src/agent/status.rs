//! A pod's status from its containers' statuses, with Kubernetes'
//! semantics: the phase (kubelet `getPhase`, init containers included), the conditions
//! (PodReadyToStartContainers, Initialized, Ready, ContainersReady,
//! PodScheduled) with stable transition times, IPs, start time and QoS
//! class. Pure functions: the worker feeds them and writes the result.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart every exit (the default).
    Always,
    /// Restart non-zero exits.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The pod's policy (`Always` when unset).
    pub fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `exit_code` is restarted.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// The exit code of a terminated container.
pub fn terminated_code(status: &ContainerStatus) -> Option<i32> {
    Some(status.state.as_ref()?.terminated.as_ref()?.exit_code)
}

/// The waiting reason of a container not running yet.
pub fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

/// The status shown while a container waits out its back-off: waiting
/// `CrashLoopBackOff`, with the exit it is recovering from as `lastState`.
pub fn crash_loop_back_off(status: &ContainerStatus, backoff: &str, pod: &Pod) -> ContainerStatus {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let message = format!(
        "back-off {backoff} restarting failed container={} pod={name}_{namespace}({uid})",
        status.name
    );
    let last_state = status
        .state
        .clone()
        .filter(|s| s.terminated.is_some())
        .or_else(|| status.last_state.clone());
    ContainerStatus {
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".to_string()),
                message: Some(message),
            }),
            ..Default::default()
        }),
        last_state,
        ready: false,
        started: Some(false),
        ..status.clone()
    }
}

/// The pod phase from its containers (the kubelet's `getPhase`, without
/// init containers): a container waiting for its first run keeps the pod
/// Pending; one running makes it Running; when all have stopped, the
/// restart policy decides between Running, Succeeded and Failed.
pub fn phase(policy: RestartPolicy, statuses: &[ContainerStatus]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in statuses {
        let state = status.state.as_ref();
        if state.is_some_and(|s| s.running.is_some()) {
            running += 1;
        } else if let Some(code) = terminated_code(status) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if status
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if statuses.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match policy {
        RestartPolicy::Always => "Running",
        RestartPolicy::OnFailure if stopped == succeeded => "Succeeded",
        RestartPolicy::OnFailure => "Running",
        RestartPolicy::Never if stopped == succeeded => "Succeeded",
        RestartPolicy::Never => "Failed",
    }
}

/// Whether an init container completed (exited with 0).
pub fn init_completed(status: &ContainerStatus) -> bool {
    terminated_code(status) == Some(0)
}

/// Whether an init container failed for good or for now: it exited
/// non-zero, or waits for a restart after a non-zero exit.
fn init_failed(status: &ContainerStatus) -> bool {
    if let Some(code) = terminated_code(status) {
        return code != 0;
    }
    let waiting = status.state.as_ref().is_some_and(|s| s.waiting.is_some());
    waiting
        && status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
}

/// The phase of a pod whose init containers have not all completed:
/// Failed when one failed and the policy is Never, else Pending.
pub fn init_phase(policy: RestartPolicy, inits: &[ContainerStatus]) -> Option<&'static str> {
    if inits.iter().all(init_completed) {
        return None;
    }
    if policy == RestartPolicy::Never && inits.iter().any(init_failed) {
        return Some("Failed");
    }
    Some("Pending")
}

/// Whether a phase is final: the pod's containers never run again.
pub fn is_terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// The QoS class: Guaranteed when every container (init containers
/// included, as Kubernetes counts them) limits cpu and memory with requests
/// equal to limits, BestEffort when none requests or limits anything, else
/// Burstable. Quantities compare by value (`1` equals `1000m`).
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let (mut any, mut guaranteed) = (false, true);
    let value = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| quantity::as_f64(&q.0))
    };
    for container in containers {
        let resources = container.resources.as_ref();
        let limits = resources.and_then(|r| r.limits.as_ref());
        let requests = resources.and_then(|r| r.requests.as_ref());
        for key in ["cpu", "memory"] {
            let limit = value(limits.and_then(|l| l.get(key)));
            // A limit without a request defaults the request to it.
            let request = value(requests.and_then(|r| r.get(key))).or(limit);
            any |= limit.is_some() || request.is_some();
            let equal = match (request, limit) {
                // Parsed decimals: equal up to rounding.
                (Some(r), Some(l)) => (r - l).abs() <= 1e-9 * r.abs().max(l.abs()).max(1.0),
                _ => false,
            };
            if !equal {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// What the worker knows of a pod, to compute its status.
#[derive(Debug)]
pub struct StatusInput<'a> {
    /// The pod as last seen (its spec and current status).
    pub pod: &'a Pod,
    /// The containers' statuses, in spec order.
    pub containers: Vec<ContainerStatus>,
    /// The init containers' statuses, in spec order.
    pub init_containers: Vec<ContainerStatus>,
    /// The pod IP, once the sandbox is up.
    pub pod_ip: Option<&'a str>,
    /// The node's IP.
    pub host_ip: &'a str,
    /// Now.
    pub now: Time,
}

/// The pod's status to write.
pub fn pod_status(input: StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let policy = RestartPolicy::of(pod);
    let init_phase = init_phase(policy, &input.init_containers);
    let initialized = init_phase.is_none();
    let phase = init_phase.unwrap_or_else(|| phase(policy, &input.containers));
    let terminal = is_terminal(phase);
    let uninitialized: Vec<&str> = input
        .init_containers
        .iter()
        .filter(|c| !init_completed(c))
        .map(|c| c.name.as_str())
        .collect();
    let not_ready: Vec<&str> = input
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let ready = !terminal && not_ready.is_empty() && !input.containers.is_empty();
    let (reason, message) = if ready {
        (None, None)
    } else if terminal {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                not_ready.join(" ")
            )),
        )
    };
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let condition = |kind: &str, status: bool, reason: Option<&str>, message: Option<String>| {
        let status = if status { "True" } else { "False" };
        let previous = old_conditions.iter().find(|c| c.type_ == kind);
        let last_transition_time = previous
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| Some(input.now.clone()));
        PodCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            message,
            last_transition_time,
            last_probe_time: None,
            observed_generation: None,
        }
    };
    let sandbox_ready = input.pod_ip.is_some() && !terminal;
    let mut conditions = vec![
        condition("PodReadyToStartContainers", sandbox_ready, None, None),
        if initialized {
            condition(
                "Initialized",
                true,
                terminal.then_some("PodCompleted"),
                None,
            )
        } else {
            condition(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    uninitialized.join(" ")
                )),
            )
        },
        condition("Ready", ready, reason, message.clone()),
        condition("ContainersReady", ready, reason, message),
    ];
    match old_conditions.iter().find(|c| c.type_ == "PodScheduled") {
        Some(scheduled) => conditions.push(scheduled.clone()),
        None => conditions.push(condition("PodScheduled", true, None, None)),
    }
    let pod_ip = input
        .pod_ip
        .map(str::to_string)
        .or_else(|| old.pod_ip.clone());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(input.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.to_string(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: old.start_time.clone().or(Some(input.now)),
        qos_class: old
            .qos_class
            .clone()
            .or_else(|| Some(qos_class(pod).to_string())),
        container_statuses: Some(input.containers),
        init_container_statuses: (!input.init_containers.is_empty())
            .then_some(input.init_containers),
        ..Default::default()
    }
}

/// The status of a pod the kubelet killed itself (node-pressure
/// eviction): `status` made `Failed` with `reason` and `message`, not
/// ready, with a `DisruptionTarget` condition (reason
/// `TerminationByKubelet`) as Kubernetes 1.33 adds it.
pub fn evicted_status(mut status: PodStatus, reason: &str, message: &str, now: Time) -> PodStatus {
    status.phase = Some("Failed".to_string());
    status.reason = Some(reason.to_string());
    status.message = Some(message.to_string());
    let mut conditions = status.conditions.take().unwrap_or_default();
    for condition in conditions.iter_mut() {
        let not_ready = matches!(
            condition.type_.as_str(),
            "Ready" | "ContainersReady" | "PodReadyToStartContainers"
        );
        if not_ready && condition.status != "False" {
            condition.status = "False".to_string();
            condition.last_transition_time = Some(now.clone());
            if condition.type_ != "PodReadyToStartContainers" {
                condition.reason = Some("PodFailed".to_string());
                condition.message = None;
            }
        }
    }
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".to_string(),
        status: "True".to_string(),
        reason: Some("TerminationByKubelet".to_string()),
        message: Some(message.to_string()),
        last_transition_time: Some(now),
        last_probe_time: None,
        observed_generation: None,
    });
    status.conditions = Some(conditions);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerStateRunning, ContainerStateTerminated, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::jiff::Timestamp;

    fn running(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            ready,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: None }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exited(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn creating(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ErrImageNeverPull".to_string()),
                    message: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(policy: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".to_string());
        pod.metadata.namespace = Some("ns".to_string());
        pod.metadata.uid = Some("u1".to_string());
        pod.spec = Some(PodSpec {
            restart_policy: Some(policy.to_string()),
            ..Default::default()
        });
        pod
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid time"))
    }

    fn cond<'a>(status: &'a PodStatus, kind: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    }

    #[test]
    fn a_pod_waiting_for_its_image_is_pending() {
        let statuses = [running("a", true), creating("b")];
        assert_eq!(phase(RestartPolicy::Always, &statuses), "Pending");
    }

    #[test]
    fn a_pod_with_a_running_container_is_running() {
        let statuses = [running("a", true), exited("b", 1)];
        assert_eq!(phase(RestartPolicy::Never, &statuses), "Running");
    }

    #[test]
    fn stopped_containers_end_the_pod_as_the_restart_policy_says() {
        let ok = [exited("a", 0), exited("b", 0)];
        let failed = [exited("a", 0), exited("b", 2)];
        assert_eq!(phase(RestartPolicy::Always, &ok), "Running");
        assert_eq!(phase(RestartPolicy::OnFailure, &ok), "Succeeded");
        assert_eq!(phase(RestartPolicy::OnFailure, &failed), "Running");
        assert_eq!(phase(RestartPolicy::Never, &ok), "Succeeded");
        assert_eq!(phase(RestartPolicy::Never, &failed), "Failed");
    }

    #[test]
    fn a_container_in_crash_loop_back_off_keeps_the_pod_running() {
        let p = pod("Always");
        let looping = crash_loop_back_off(&exited("a", 1), "10s", &p);
        assert_eq!(waiting_reason(&looping), Some("CrashLoopBackOff"));
        assert_eq!(
            looping
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.message.as_deref()),
            Some("back-off 10s restarting failed container=a pod=p_ns(u1)")
        );
        assert_eq!(
            looping
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(1)
        );
        assert_eq!(phase(RestartPolicy::Always, &[looping]), "Running");
    }

    #[test]
    fn restart_policies_decide_which_exits_restart() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(1));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(!RestartPolicy::Never.restarts(1));
        assert_eq!(RestartPolicy::of(&Pod::default()), RestartPolicy::Always);
    }

    #[test]
    fn a_running_ready_pod_is_ready_with_its_ips_and_keeps_scheduled_and_start_time() {
        let mut p = pod("Always");
        p.status = Some(PodStatus {
            start_time: Some(at(100)),
            qos_class: Some("Burstable".to_string()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".to_string(),
                status: "True".to_string(),
                last_transition_time: Some(at(50)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let status = pod_status(StatusInput {
            pod: &p,
            containers: vec![running("a", true)],
            init_containers: Vec::new(),
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(200),
        });
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(
            status.pod_ips.as_ref().map(|v| v[0].ip.as_str()),
            Some("10.244.0.5")
        );
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.start_time, Some(at(100)));
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
        for kind in [
            "Ready",
            "ContainersReady",
            "Initialized",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(cond(&status, kind).status, "True", "{kind}");
        }
        assert_eq!(
            cond(&status, "PodScheduled").last_transition_time,
            Some(at(50))
        );
    }

    #[test]
    fn an_unready_container_makes_the_pod_unready_and_names_it() {
        let status = pod_status(StatusInput {
            pod: &pod("Always"),
            containers: vec![running("a", true), running("b", false)],
            init_containers: Vec::new(),
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(200),
        });
        let ready = cond(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
    }

    #[test]
    fn transition_times_change_only_when_a_condition_flips() {
        let mut p = pod("Always");
        let first = pod_status(StatusInput {
            pod: &p,
            containers: vec![running("a", true)],
            init_containers: Vec::new(),
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(100),
        });
        p.status = Some(first);
        let same = pod_status(StatusInput {
            pod: &p,
            containers: vec![running("a", true)],
            init_containers: Vec::new(),
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(300),
        });
        assert_eq!(cond(&same, "Ready").last_transition_time, Some(at(100)));
        p.status = Some(same);
        let flipped = pod_status(StatusInput {
            pod: &p,
            containers: vec![running("a", false)],
            init_containers: Vec::new(),
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(400),
        });
        assert_eq!(cond(&flipped, "Ready").last_transition_time, Some(at(400)));
    }

    #[test]
    fn a_finished_pod_is_not_ready_with_reason_pod_completed() {
        let status = pod_status(StatusInput {
            pod: &pod("Never"),
            containers: vec![exited("a", 0)],
            init_containers: Vec::new(),
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(100),
        });
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            cond(&status, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn a_pod_with_init_containers_is_pending_and_not_initialized_until_they_all_complete() {
        let p = pod("Always");
        let status = pod_status(StatusInput {
            pod: &p,
            containers: vec![creating("app")],
            init_containers: vec![exited("one", 0), running("two", false)],
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(100),
        });
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let initialized = cond(&status, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [two]")
        );
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(status.init_container_statuses.map(|s| s.len()), Some(2));
        let done = pod_status(StatusInput {
            pod: &p,
            containers: vec![running("app", true)],
            init_containers: vec![exited("one", 0), exited("two", 0)],
            pod_ip: Some("10.244.0.5"),
            host_ip: "127.0.0.1",
            now: at(200),
        });
        assert_eq!(done.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&done, "Initialized").status, "True");
        assert_eq!(cond(&done, "Ready").status, "True");
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_only_with_restart_policy_never() {
        let inits = [exited("one", 1)];
        assert_eq!(init_phase(RestartPolicy::Never, &inits), Some("Failed"));
        assert_eq!(
            init_phase(RestartPolicy::OnFailure, &inits),
            Some("Pending")
        );
        assert_eq!(init_phase(RestartPolicy::Always, &[exited("one", 0)]), None);
        assert_eq!(init_phase(RestartPolicy::Never, &[]), None);
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let mut p = pod("Always");
        let with = |limits: &[(&str, &str)], requests: &[(&str, &str)]| {
            let map = |kv: &[(&str, &str)]| {
                (!kv.is_empty()).then(|| {
                    kv.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect()
                })
            };
            k8s_openapi::api::core::v1::Container {
                name: "c".to_string(),
                resources: Some(ResourceRequirements {
                    limits: map(limits),
                    requests: map(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let spec = p.spec.as_mut().expect("spec");
        spec.containers = vec![with(&[], &[])];
        assert_eq!(qos_class(&p), "BestEffort");
        let spec = p.spec.as_mut().expect("spec");
        spec.containers = vec![with(&[("cpu", "1"), ("memory", "1Gi")], &[])];
        assert_eq!(qos_class(&p), "Guaranteed");
        let spec = p.spec.as_mut().expect("spec");
        spec.containers = vec![with(&[], &[("cpu", "100m")])];
        assert_eq!(qos_class(&p), "Burstable");
        // Requests equal to limits by value, not by spelling.
        let spec = p.spec.as_mut().expect("spec");
        spec.containers = vec![with(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1000m"), ("memory", "1073741824")],
        )];
        assert_eq!(qos_class(&p), "Guaranteed");
        // An init container without limits makes the pod Burstable; one
        // with requests makes a BestEffort pod Burstable.
        let spec = p.spec.as_mut().expect("spec");
        spec.init_containers = Some(vec![with(&[], &[("memory", "10Mi")])]);
        assert_eq!(qos_class(&p), "Burstable");
        let spec = p.spec.as_mut().expect("spec");
        spec.containers = vec![with(&[], &[])];
        assert_eq!(qos_class(&p), "Burstable");
    }

    #[test]
    fn an_evicted_pod_is_failed_not_ready_and_a_disruption_target() {
        let pod = Pod {
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let now = Time(Timestamp::now());
        let running = pod_status(StatusInput {
            pod: &pod,
            containers: vec![running("app", true)],
            init_containers: vec![],
            pod_ip: Some("10.244.0.5"),
            host_ip: "10.0.0.1",
            now: now.clone(),
        });
        let status = evicted_status(
            running,
            "Evicted",
            "The node was low on resource: memory. ",
            now,
        );
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        let conditions = status.conditions.unwrap_or_default();
        let find = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
        assert_eq!(find("Ready").map(|c| c.status.as_str()), Some("False"));
        assert_eq!(
            find("ContainersReady").map(|c| c.status.as_str()),
            Some("False")
        );
        let target = find("DisruptionTarget").expect("a DisruptionTarget condition");
        assert_eq!(target.status, "True");
        assert_eq!(target.reason.as_deref(), Some("TerminationByKubelet"));
        assert_eq!(
            target.message.as_deref(),
            Some("The node was low on resource: memory. ")
        );
    }
}

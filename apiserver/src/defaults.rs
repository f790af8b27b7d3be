//! Kubernetes defaulting (`SetDefaults_*` upstream), as pure functions over
//! `serde_json::Value`.
//!
//! Owns the values Kubernetes fills in when a client leaves a field unset,
//! including inside pod templates, plus the few values upstream sets in
//! admission (`priority`, `DefaultTolerationSeconds`). Like Go, an empty
//! string counts as unset for string fields, and `0` for the non-pointer
//! integers of probes. It must not depend on storage or HTTP.

use serde_json::{json, Map, Value};

/// Fills Kubernetes' defaults into `obj` of `group`/`kind` in place. Kinds
/// without defaults, and fields of the wrong JSON type, are left alone.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("" | "core", "Pod") => default_pod(obj),
        ("" | "core", "Service") => default_service(obj),
        ("" | "core", "Namespace") => default_namespace(obj),
        ("" | "core", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                set_str(m, "type", "Opaque");
            }
        }
        ("" | "core", "Node") => default_node(obj),
        ("" | "core", "Endpoints") => {
            for subset in items_mut(obj, "subsets") {
                default_protocols(subset);
            }
        }
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = child_obj(obj, "spec") {
                set(spec, "replicas", json!(1));
            }
            default_template(obj);
        }
        ("apps", "DaemonSet") => default_daemon_set(obj),
        ("batch", "Job") => default_job(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(obj),
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in items_mut(obj, "ports") {
                if let Some(p) = port.as_object_mut() {
                    set(p, "name", json!(""));
                    set_str(p, "protocol", "TCP");
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(m) = obj.as_object_mut() {
                set_str(m, "preemptionPolicy", "PreemptLowerPriority");
            }
        }
        _ => {}
    }
}

/// Adds `NoExecute` tolerations for `node.kubernetes.io/not-ready` and
/// `node.kubernetes.io/unreachable` to a Pod that does not already tolerate
/// them, as the `DefaultTolerationSeconds` admission plugin does.
pub fn default_tolerations_for_pod(
    obj: &mut Value,
    not_ready_seconds: i64,
    unreachable_seconds: i64,
) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for (key, seconds) in [
        ("node.kubernetes.io/not-ready", not_ready_seconds),
        ("node.kubernetes.io/unreachable", unreachable_seconds),
    ] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// True when `v` is what Go would decode as unset for a string or pointer.
fn unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
}

/// Sets `m[key]` when it is absent or null.
fn set(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Sets a string field when it is absent, null or empty.
fn set_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if unset(m.get(key)) {
        m.insert(key.to_string(), json!(value));
    }
}

/// Sets a non-pointer integer field when it is absent, null or 0.
fn set_nonzero(m: &mut Map<String, Value>, key: &str, value: i64) {
    if m.get(key)
        .is_none_or(|v| v.is_null() || v.as_i64() == Some(0))
    {
        m.insert(key.to_string(), json!(value));
    }
}

/// The object at `v[key]`, created empty when absent or null; `None` when `v`
/// is not an object or `v[key]` has another type.
fn child_obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    let entry = m.entry(key).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry.as_object_mut()
}

/// The items of the list at `v[key]`, or nothing.
fn items_mut<'a>(v: &'a mut Value, key: &str) -> std::slice::IterMut<'a, Value> {
    match v.get_mut(key).and_then(Value::as_array_mut) {
        Some(a) => a.iter_mut(),
        None => [].iter_mut(),
    }
}

/// Ports' `protocol` defaults to TCP.
fn default_protocols(owner: &mut Value) {
    for port in items_mut(owner, "ports") {
        if let Some(p) = port.as_object_mut() {
            set_str(p, "protocol", "TCP");
        }
    }
}

fn default_pod(pod: &mut Value) {
    if let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) {
        for list in ["containers", "initContainers"] {
            for c in items_mut(spec, list) {
                requests_from_limits(c);
            }
        }
        let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
        if let Some(s) = spec.as_object_mut() {
            set(s, "enableServiceLinks", json!(true));
            // Upstream's Priority admission: pods without a class get the
            // global default of 0.
            if unset(s.get("priorityClassName")) {
                set(s, "priority", json!(0));
                set_str(s, "preemptionPolicy", "PreemptLowerPriority");
            }
        }
        if host_network {
            for list in ["containers", "initContainers"] {
                for c in items_mut(spec, list) {
                    for port in items_mut(c, "ports") {
                        let container_port = port.get("containerPort").cloned();
                        if let (Some(p), Some(cp)) = (port.as_object_mut(), container_port) {
                            if p.get("hostPort")
                                .is_none_or(|v| v.is_null() || v.as_i64() == Some(0))
                            {
                                p.insert("hostPort".to_string(), cp);
                            }
                        }
                    }
                }
            }
        }
        default_pod_spec(spec);
    }
}

/// Pods (not templates) request what they limit when requests are unset.
fn requests_from_limits(container: &mut Value) {
    let Some(res) = container
        .get_mut("resources")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = res.entry("requests").or_insert_with(|| json!({}));
    if requests.is_null() {
        *requests = json!({});
    }
    if let Some(req) = requests.as_object_mut() {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

/// `SetDefaults_PodSpec` and everything beneath it; shared by pods and
/// templates.
fn default_pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    set_str(s, "dnsPolicy", "ClusterFirst");
    set_str(s, "restartPolicy", "Always");
    set(s, "securityContext", json!({}));
    set(s, "terminationGracePeriodSeconds", json!(30));
    set_str(s, "schedulerName", "default-scheduler");
    // The v1 conversion: the deprecated `serviceAccount` fills an empty
    // `serviceAccountName`, and always mirrors it.
    if unset(s.get("serviceAccountName")) || s.get("serviceAccountName") == Some(&json!("")) {
        if let Some(old) = s
            .get("serviceAccount")
            .filter(|v| v.as_str().is_some_and(|v| !v.is_empty()))
        {
            let old = old.clone();
            s.insert("serviceAccountName".to_string(), old);
        }
    }
    if let Some(name) = s
        .get("serviceAccountName")
        .filter(|v| v.as_str().is_some_and(|v| !v.is_empty()))
    {
        let name = name.clone();
        s.insert("serviceAccount".to_string(), name);
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items_mut(spec, list) {
            default_container(c);
        }
    }
    for v in items_mut(spec, "volumes") {
        default_volume(v);
    }
}

fn default_container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(m) = c.as_object_mut() else {
        return;
    };
    let policy = if image_tag(&image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_str(m, "imagePullPolicy", policy);
    set_str(m, "terminationMessagePath", "/dev/termination-log");
    set_str(m, "terminationMessagePolicy", "File");
    default_protocols(c);
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_nonzero(p, "timeoutSeconds", 1);
            set_nonzero(p, "periodSeconds", 10);
            set_nonzero(p, "successThreshold", 1);
            set_nonzero(p, "failureThreshold", 3);
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_str(h, "path", "/");
                set_str(h, "scheme", "HTTP");
            }
        }
    }
    for env in items_mut(c, "env") {
        if let Some(f) = env
            .pointer_mut("/valueFrom/fieldRef")
            .and_then(Value::as_object_mut)
        {
            set_str(f, "apiVersion", "v1");
        }
    }
}

/// The tag of an image reference: `latest` when there is neither tag nor
/// digest, `None` when only a digest pins it.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_some() => None,
        None => Some("latest"),
    }
}

fn default_volume(v: &mut Value) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    let has_source = m.iter().any(|(k, v)| k != "name" && !v.is_null());
    if !has_source {
        m.insert("emptyDir".to_string(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = m.get_mut(source).and_then(Value::as_object_mut) {
            set(s, "defaultMode", json!(420));
        }
    }
    if let Some(h) = m.get_mut("hostPath").and_then(Value::as_object_mut) {
        set(h, "type", json!(""));
    }
    if let Some(sources) = m
        .get_mut("projected")
        .and_then(|p| p.get_mut("sources"))
        .and_then(Value::as_array_mut)
    {
        for s in sources {
            if let Some(t) = s
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                set(t, "expirationSeconds", json!(3600));
            }
        }
    }
}

/// Defaults the pod template at `spec.template.spec`.
fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}

fn default_deployment(obj: &mut Value) {
    if let Some(spec) = child_obj(obj, "spec") {
        set(spec, "replicas", json!(1));
        set(spec, "revisionHistoryLimit", json!(10));
        set(spec, "progressDeadlineSeconds", json!(600));
        let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
        if let Some(st) = strategy.as_object_mut() {
            set_str(st, "type", "RollingUpdate");
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = child_obj(strategy, "rollingUpdate") {
                    set(ru, "maxUnavailable", json!("25%"));
                    set(ru, "maxSurge", json!("25%"));
                }
            }
        }
    }
    default_template(obj);
}

fn default_daemon_set(obj: &mut Value) {
    if let Some(spec) = child_obj(obj, "spec") {
        set(spec, "revisionHistoryLimit", json!(10));
        let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
        if let Some(st) = strategy.as_object_mut() {
            set_str(st, "type", "RollingUpdate");
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = child_obj(strategy, "rollingUpdate") {
                    set(ru, "maxUnavailable", json!(1));
                    set(ru, "maxSurge", json!(0));
                }
            }
        }
    }
    default_template(obj);
}

/// `SetDefaults_Job`. Selector and `controller-uid` labels are generated by
/// the Job registry, not here.
fn default_job(obj: &mut Value) {
    let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(spec) = child_obj(obj, "spec") {
        if spec.get("completions").is_none_or(Value::is_null)
            && spec.get("parallelism").is_none_or(Value::is_null)
        {
            spec.insert("completions".to_string(), json!(1));
        }
        set(spec, "parallelism", json!(1));
        let per_index = spec
            .get("backoffLimitPerIndex")
            .is_some_and(|v| !v.is_null());
        set(
            spec,
            "backoffLimit",
            json!(if per_index { i64::from(i32::MAX) } else { 6 }),
        );
        set_str(spec, "completionMode", "NonIndexed");
        set(spec, "suspend", json!(false));
        let failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
        set_str(
            spec,
            "podReplacementPolicy",
            if failure_policy {
                "Failed"
            } else {
                "TerminatingOrFailed"
            },
        );
    }
    if let (Some(labels), Some(meta)) = (
        template_labels.filter(Value::is_object),
        child_obj(obj, "metadata"),
    ) {
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".to_string(), labels);
        }
    }
    default_template(obj);
}

fn default_service(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_str(spec, "type", "ClusterIP");
    set_str(spec, "sessionAffinity", "None");
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                spec.insert(
                    "sessionAffinityConfig".to_string(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_str(port, "protocol", "TCP");
            let target_unset = port
                .get("targetPort")
                .is_none_or(|t| t.is_null() || t.as_i64() == Some(0) || t.as_str() == Some(""));
            if let (true, Some(p)) = (target_unset, port.get("port").cloned()) {
                port.insert("targetPort".to_string(), p);
            }
        }
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if kind == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if kind != "ExternalName" {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
        let cluster_ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !cluster_ip.is_empty() {
            set(spec, "clusterIPs", json!([cluster_ip]));
        }
        let family = if cluster_ip.contains(':') {
            "IPv6"
        } else {
            "IPv4"
        };
        set(spec, "ipFamilies", json!([family]));
        set_str(spec, "ipFamilyPolicy", "SingleStack");
    }
}

fn default_namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        if let Some(labels) = child_obj(obj, "metadata").and_then(|m| {
            let l = m.entry("labels").or_insert_with(|| json!({}));
            if l.is_null() {
                *l = json!({});
            }
            l.as_object_mut()
        }) {
            labels.insert("kubernetes.io/metadata.name".to_string(), json!(name));
        }
    }
    if let Some(spec) = child_obj(obj, "spec") {
        set(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child_obj(obj, "status") {
        set_str(status, "phase", "Active");
    }
}

fn default_node(obj: &mut Value) {
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
        set(status, "allocatable", capacity);
    }
}

fn default_hpa(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".to_string(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    // Behavior is filled only when the client set it, as upstream does.
    if let Some(b) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let up = b.entry("scaleUp").or_insert_with(|| json!({}));
        if let Some(r) = up.as_object_mut() {
            set(r, "stabilizationWindowSeconds", json!(0));
            set_str(r, "selectPolicy", "Max");
            set(
                r,
                "policies",
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
        let down = b.entry("scaleDown").or_insert_with(|| json!({}));
        if let Some(r) = down.as_object_mut() {
            set_str(r, "selectPolicy", "Max");
            set(
                r,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        apply_defaults(group, kind, &mut obj);
        obj
    }

    #[test]
    fn pods_get_kubernetes_spec_and_container_defaults() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{
                "name": "web", "image": "nginx:1.25",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "500m"}},
                "livenessProbe": {"httpGet": {"port": 80}, "periodSeconds": 5}
            }]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["resources"]["requests"]["cpu"], "500m");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "periodSeconds": 5,
                   "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3})
        );
    }

    #[test]
    fn the_deprecated_service_account_field_fills_and_mirrors_service_account_name() {
        let old = defaulted(
            "",
            "Pod",
            json!({"spec": {"serviceAccount": "robot", "containers": []}}),
        );
        assert_eq!(old["spec"]["serviceAccountName"], "robot");
        let new = defaulted(
            "",
            "Pod",
            json!({"spec": {"serviceAccountName": "robot", "serviceAccount": "other", "containers": []}}),
        );
        assert_eq!(new["spec"]["serviceAccount"], "robot");
        let none = defaulted("", "Pod", json!({"spec": {"containers": []}}));
        assert!(none["spec"].get("serviceAccount").is_none());
    }

    #[test]
    fn set_fields_are_never_overwritten() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "priority": 7,
            "priorityClassName": "high", "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never"}]}}),
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["priority"], 7);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert!(pod["spec"].get("preemptionPolicy").is_none());
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let table = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v2", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
        ];
        for (image, want) in table {
            let pod = defaulted(
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "image": image}]}}),
            );
            assert_eq!(
                pod["spec"]["containers"][0]["imagePullPolicy"], want,
                "{image}"
            );
        }
    }

    #[test]
    fn volumes_without_a_source_become_empty_dirs_and_modes_default() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [], "volumes": [
                {"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}, {"name": "h", "hostPath": {"path": "/x"}}
            ]}}),
        );
        let v = &pod["spec"]["volumes"];
        assert_eq!(v[0]["emptyDir"], json!({}));
        assert_eq!(v[1]["configMap"]["defaultMode"], 420);
        assert_eq!(v[2]["hostPath"]["type"], "");
    }

    #[test]
    fn host_network_pods_expose_container_ports_on_the_host() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 9100}]}]}}),
        );
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 9100);
    }

    #[test]
    fn deployments_get_replicas_strategy_and_template_defaults() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        // Pod-only defaults stay out of templates.
        assert!(spec["template"]["spec"].get("enableServiceLinks").is_none());
        let recreate = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["replicas"], 0);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replica_sets_and_daemon_sets_get_their_defaults() {
        let rs = defaulted("apps", "ReplicaSet", json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
        let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn jobs_get_parallelism_completions_and_backoff() {
        let job = defaulted(
            "batch",
            "Job",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {}}}}),
        );
        let spec = &job["spec"];
        assert_eq!(
            (spec["parallelism"].clone(), spec["completions"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(job["metadata"]["labels"], json!({"app": "pi"}));
        let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert!(parallel["spec"].get("completions").is_none());
    }

    #[test]
    fn services_get_type_affinity_protocol_target_port_and_families() {
        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        let ext = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
        );
        assert!(ext["spec"].get("ipFamilies").is_none());
        let sticky = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "NodePort", "sessionAffinity": "ClientIP"}}),
        );
        assert_eq!(
            sticky["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(sticky["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn namespaces_get_finalizer_phase_and_name_label() {
        let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
    }

    #[test]
    fn other_kinds_get_their_small_defaults() {
        assert_eq!(defaulted("", "Secret", json!({}))["type"], "Opaque");
        let node = defaulted("", "Node", json!({"status": {"capacity": {"cpu": "4"}}}));
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "4"}));
        let pc = defaulted("scheduling.k8s.io", "PriorityClass", json!({"value": 1}));
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        let eps = defaulted(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"ports": [{"port": 80}]}),
        );
        assert_eq!(
            eps["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        let ep = defaulted(
            "",
            "Endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            defaulted("", "ConfigMap", json!({"data": {}})),
            json!({"data": {}})
        );
    }

    #[test]
    fn hpas_default_min_replicas_and_cpu_target_but_not_behavior() {
        let hpa = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 5}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(hpa["spec"].get("behavior").is_none());
        let hpa = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        );
        let b = &hpa["spec"]["behavior"];
        assert_eq!(
            b["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(b["scaleDown"]["selectPolicy"], "Max");
    }

    #[test]
    fn default_tolerations_are_added_once() {
        let mut pod = json!({"spec": {"containers": []}});
        default_tolerations_for_pod(&mut pod, 300, 300);
        default_tolerations_for_pod(&mut pod, 300, 300);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        let mut tolerates_all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_tolerations_for_pod(&mut tolerates_all, 300, 300);
        assert_eq!(
            tolerates_all["spec"]["tolerations"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let mut own = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_tolerations_for_pod(&mut own, 300, 300);
        assert_eq!(own["spec"]["tolerations"][0]["tolerationSeconds"], 5);
        assert_eq!(
            own["spec"]["tolerations"][1]["key"],
            "node.kubernetes.io/not-ready"
        );
    }
}

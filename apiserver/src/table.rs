//! Server-side `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! so `kubectl get` and `kubectl get -o wide` print the same columns against
//! skiff as against Kubernetes.
//!
//! Pure: builds `meta.k8s.io/v1` `Table` JSON from stored objects. Columns and
//! cell rules follow Kubernetes' printers (`pkg/printers/internalversion`).
//! As the Kubernetes API server does, every row carries the priority-1
//! ("wide") cells too; kubectl hides them unless `-o wide`.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::selector::LabelSelector;

/// Why table options could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// `?includeObject=` was not `None`, `Metadata` or `Object` (400 BadRequest).
    #[error("unrecognized includeObject value: {0:?}")]
    UnrecognizedIncludeObject(String),
}

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object (`"object": null`).
    None,
    /// A `PartialObjectMetadata` with the object's metadata. The default, and
    /// what `kubectl get` receives unless it sorts (`--sort-by` sends `Object`).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Reads `?includeObject=`; absent or empty means `Metadata`.
    pub fn from_query(value: Option<&str>) -> Result<Self, TableError> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(TableError::UnrecognizedIncludeObject(other.to_string())),
        }
    }
}

/// Renders objects of one kind as a `meta.k8s.io/v1` `Table`, one row per
/// object. `metadata` is left empty for the caller to fill (`resourceVersion`,
/// `continue`). For a watch event pass the single object; use
/// [`omit_headers`] on every event after the first, as Kubernetes does.
pub fn to_table(
    group: &str,
    kind: &str,
    objects: &[&Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let printer = printer_for(group, kind);
    let columns: Vec<Value> = printer
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let row = (printer.row)(obj, now);
            let mut out = Map::new();
            out.insert("cells".into(), Value::Array(row.cells));
            if let Some(conditions) = row.conditions {
                out.insert("conditions".into(), conditions);
            }
            out.insert("object".into(), embedded_object(obj, include_object));
            Value::Object(out)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Drops the column definitions, as Kubernetes does for every watch event
/// after the first; kubectl reuses the columns it already has.
pub fn omit_headers(table: &mut Value) {
    if let Some(obj) = table.as_object_mut() {
        obj.insert("columnDefinitions".into(), Value::Array(Vec::new()));
    }
}

fn embedded_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// Kubernetes' `duration.HumanDuration`: about two significant figures
/// (`5s`, `3m2s`, `15m`, `5h3m`, `2d3h`, `1y30d`). Up to one second in the
/// future counts as `0s`; further is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------
// Printers
// ---------------------------------------------------------------------------

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

struct Row {
    cells: Vec<Value>,
    conditions: Option<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Self {
        Row {
            cells,
            conditions: None,
        }
    }
}

type RowFn = fn(&Value, DateTime<Utc>) -> Row;

struct Printer {
    columns: &'static [Column],
    row: RowFn,
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);
const CONTAINERS: Column = wide("Containers", "string", CONTAINERS_DESC);
const IMAGES: Column = wide("Images", "string", IMAGES_DESC);
const SELECTOR: Column = wide(
    "Selector",
    "string",
    "A label query over pods that should match the replica count.",
);

fn printer_for(group: &str, kind: &str) -> Printer {
    let (columns, row): (&'static [Column], RowFn) = match (group, kind) {
        ("", "Pod") => (POD_COLUMNS, pod_row),
        ("apps", "Deployment") => (DEPLOYMENT_COLUMNS, deployment_row),
        ("apps", "ReplicaSet") => (REPLICASET_COLUMNS, replicaset_row),
        ("apps", "DaemonSet") => (DAEMONSET_COLUMNS, daemonset_row),
        ("", "Service") => (SERVICE_COLUMNS, service_row),
        ("", "Node") => (NODE_COLUMNS, node_row),
        ("", "Namespace") => (NAMESPACE_COLUMNS, namespace_row),
        ("", "ConfigMap") => (CONFIGMAP_COLUMNS, configmap_row),
        ("", "Secret") => (SECRET_COLUMNS, secret_row),
        ("", "ServiceAccount") => (SERVICEACCOUNT_COLUMNS, serviceaccount_row),
        ("", "Endpoints") => (ENDPOINTS_COLUMNS, endpoints_row),
        ("", "Event") => (EVENT_COLUMNS, event_row),
        ("autoscaling", "HorizontalPodAutoscaler") => (HPA_COLUMNS, hpa_row),
        ("batch", "Job") => (JOB_COLUMNS, job_row),
        ("coordination.k8s.io", "Lease") => (LEASE_COLUMNS, lease_row),
        ("discovery.k8s.io", "EndpointSlice") => (ENDPOINTSLICE_COLUMNS, endpointslice_row),
        ("scheduling.k8s.io", "PriorityClass") => (PRIORITYCLASS_COLUMNS, priorityclass_row),
        _ => (DEFAULT_COLUMNS, default_row),
    };
    Printer { columns, row }
}

// --- JSON helpers -----------------------------------------------------------

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value, ptr: &str) -> usize {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, "/metadata/name"))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: the age of an RFC 3339 timestamp, or `<unknown>`.
fn since(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::from(since(str_at(obj, "/metadata/creationTimestamp"), now))
}

/// A quantity or other scalar as Kubernetes prints it.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `layoutContainerCells`: names and images, comma-joined.
fn container_cells(obj: &Value, ptr: &str) -> (Value, Value) {
    let containers = arr_at(obj, ptr);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(",").into(), images.join(",").into())
}

/// `labels.FormatLabels`: `k=v` sorted by key, or `<none>`.
fn format_labels(v: Option<&Value>) -> String {
    let mut pairs: Vec<(&String, &str)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` or `<error>`.
fn format_label_selector(v: Option<&Value>) -> String {
    match LabelSelector::from_label_selector_value(v.unwrap_or(&Value::Null)) {
        Ok(s) => {
            let s = s.to_string();
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s
            }
        }
        Err(_) => "<error>".to_string(),
    }
}

fn has_condition(obj: &Value, ptr: &str, kind: &str) -> bool {
    arr_at(obj, ptr)
        .iter()
        .find(|c| str_at(c, "/type") == kind)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

// --- Pod --------------------------------------------------------------------

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(str_at(status, "/lastState/terminated/finishedAt"))
}

/// The reason of a terminated state: its reason, else `Signal:n` / `ExitCode:n`.
fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = str_at(t, "/reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int_at(t, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int_at(t, "/exitCode"))
    }
}

fn pod_row(pod: &Value, now: DateTime<Utc>) -> Row {
    let init_specs = arr_at(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
    };
    let total = arr_at(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| str_at(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart = None;
    let mut last_restartable_restart = None;

    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };

    let mut initializing = false;
    for (i, c) in arr_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = int_at(c, "/restartCount");
        restarts += count;
        last_restart = later(last_restart, last_termination(c));
        let is_restartable = restartable(str_at(c, "/name"));
        if is_restartable {
            restartable_restarts += count;
            last_restartable_restart = later(last_restartable_restart, last_termination(c));
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if is_restartable && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = match terminated {
            Some(t) => terminated_reason(t, "Init:"),
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                format!("Init:{waiting_reason}")
            }
            None => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "/status/conditions", "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(c, "/restartCount");
            last_restart = later(last_restart, last_termination(c));
            let waiting_reason = str_at(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "/status/conditions", "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && str_at(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let pod_ip = match str_at(pod, "/status/podIPs/0/ip") {
        "" => str_at(pod, "/status/podIP"),
        ip => ip,
    };
    let gates = arr_at(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr_at(pod, "/status/conditions");
        let true_gates = gates
            .iter()
            .filter(|g| {
                let wanted = str_at(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| str_at(c, "/type") == wanted)
                    .is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    Row {
        cells: vec![
            name(pod),
            format!("{ready}/{total}").into(),
            reason.into(),
            restarts_cell.into(),
            age(pod, now),
            or_none(pod_ip).into(),
            or_none(str_at(pod, "/spec/nodeName")).into(),
            or_none(str_at(pod, "/status/nominatedNodeName")).into(),
            readiness_gates.into(),
        ],
        conditions,
    }
}

// --- workloads --------------------------------------------------------------

fn replicas_or_one(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
];

fn deployment_row(d: &Value, now: DateTime<Utc>) -> Row {
    let (names, images) = container_cells(d, "/spec/template/spec/containers");
    // Deployments print the bare selector string (empty for none).
    let selector = match LabelSelector::from_label_selector_value(
        d.pointer("/spec/selector").unwrap_or(&Value::Null),
    ) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".to_string(),
    };
    vec![
        name(d),
        format!(
            "{}/{}",
            int_at(d, "/status/readyReplicas"),
            replicas_or_one(d)
        )
        .into(),
        int_at(d, "/status/updatedReplicas").into(),
        int_at(d, "/status/availableReplicas").into(),
        age(d, now),
        names,
        images,
        selector.into(),
    ]
    .into()
}

const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replicaset_row(rs: &Value, now: DateTime<Utc>) -> Row {
    let (names, images) = container_cells(rs, "/spec/template/spec/containers");
    vec![
        name(rs),
        replicas_or_one(rs).into(),
        int_at(rs, "/status/replicas").into(),
        int_at(rs, "/status/readyReplicas").into(),
        age(rs, now),
        names,
        images,
        format_label_selector(rs.pointer("/spec/selector")).into(),
    ]
    .into()
}

const DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemonset_row(ds: &Value, now: DateTime<Utc>) -> Row {
    let (names, images) = container_cells(ds, "/spec/template/spec/containers");
    vec![
        name(ds),
        int_at(ds, "/status/desiredNumberScheduled").into(),
        int_at(ds, "/status/currentNumberScheduled").into(),
        int_at(ds, "/status/numberReady").into(),
        int_at(ds, "/status/updatedNumberScheduled").into(),
        int_at(ds, "/status/numberAvailable").into(),
        format_labels(ds.pointer("/spec/template/spec/nodeSelector")).into(),
        age(ds, now),
        names,
        images,
        format_label_selector(ds.pointer("/spec/selector")).into(),
    ]
    .into()
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn job_row(job: &Value, now: DateTime<Utc>) -> Row {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = job
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let duration = match (
        parse_time(str_at(job, "/status/startTime")),
        parse_time(str_at(job, "/status/completionTime")),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(done)) => human_duration(done - start),
    };
    let conds = "/status/conditions";
    let status = if has_condition(job, conds, "Complete") {
        "Complete"
    } else if has_condition(job, conds, "Failed") {
        "Failed"
    } else if job
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if has_condition(job, conds, "Suspended") {
        "Suspended"
    } else if has_condition(job, conds, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(job, "/spec/template/spec/containers");
    vec![
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        names,
        images,
        format_label_selector(job.pointer("/spec/selector")).into(),
    ]
    .into()
}

// --- networking -------------------------------------------------------------

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

fn service_row(svc: &Value, now: DateTime<Utc>) -> Row {
    let svc_type = match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = match (
        str_at(svc, "/spec/clusterIPs/0"),
        str_at(svc, "/spec/clusterIP"),
    ) {
        ("", "") => "<none>",
        ("", ip) | (ip, _) => ip,
    };
    let external_ips: Vec<&str> = arr_at(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let mut lb: Vec<&str> = arr_at(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match str_at(i, "/ip") {
                    "" => str_at(i, "/hostname"),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            lb.sort();
            lb.dedup();
            lb.extend(external_ips.iter());
            if lb.is_empty() {
                "<pending>".to_string()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match str_at(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            let port = int_at(p, "/port");
            match int_at(p, "/nodePort") {
                np if np > 0 => format!("{port}:{np}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(svc),
        svc_type.into(),
        cluster_ip.into(),
        external.into(),
        or_none(&ports.join(",")).into(),
        age(svc, now),
        format_labels(svc.pointer("/spec/selector")).into(),
    ]
    .into()
}

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// `host:port`, bracketing IPv6 hosts.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to `max` entries, then `+ N more...`; `<unset>` when empty.
fn list_with_more(list: Vec<String>, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if count > max {
        format!("{joined} + {} more...", count - max)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

fn endpoints_row(ep: &Value, now: DateTime<Utc>) -> Row {
    const MAX: usize = 3;
    let subsets = arr_at(ep, "/subsets");
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut list = Vec::new();
        let mut count = 0;
        for ss in subsets {
            let addresses: Vec<&str> = arr_at(ss, "/addresses")
                .iter()
                .map(|a| str_at(a, "/ip"))
                .collect();
            let ports = arr_at(ss, "/ports");
            if ports.is_empty() {
                count += addresses.len();
                list.extend(
                    addresses
                        .iter()
                        .take(MAX.saturating_sub(list.len()))
                        .map(|a| a.to_string()),
                );
                continue;
            }
            for port in ports {
                count += addresses.len();
                let p = int_at(port, "/port");
                list.extend(
                    addresses
                        .iter()
                        .take(MAX.saturating_sub(list.len()))
                        .map(|a| join_host_port(a, p)),
                );
            }
        }
        let joined = list.join(",");
        if count > MAX {
            format!("{joined} + {} more...", count - MAX)
        } else {
            joined
        }
    };
    vec![name(ep), cell.into(), age(ep, now)].into()
}

const ENDPOINTSLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpointslice_row(es: &Value, now: DateTime<Utc>) -> Row {
    const MAX: usize = 3;
    let ports = arr_at(es, "/ports");
    let port_list: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => match p.get("name").and_then(Value::as_str) {
                Some(n) => n.to_string(),
                None => "*".to_string(),
            },
        })
        .collect();
    let addresses: Vec<&str> = arr_at(es, "/endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "/addresses").iter().filter_map(Value::as_str))
        .collect();
    let address_list = addresses.iter().take(MAX).map(|a| a.to_string()).collect();
    vec![
        name(es),
        str_at(es, "/addressType").into(),
        list_with_more(port_list, ports.len(), MAX).into(),
        list_with_more(address_list, addresses.len(), MAX).into(),
        age(es, now),
    ]
    .into()
}

// --- cluster ----------------------------------------------------------------

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

fn node_row(node: &Value, now: DateTime<Utc>) -> Row {
    let mut status = Vec::new();
    if let Some(ready) = arr_at(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| str_at(c, "/type") == "Ready")
    {
        status.push(if str_at(ready, "/status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) if !role.is_empty() => Some(role),
                    Some(_) => None,
                    None if k == "kubernetes.io/role" => v.as_str().filter(|r| !r.is_empty()),
                    None => None,
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        arr_at(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == kind)
            .map_or("<none>", |a| str_at(a, "/address"))
            .to_string()
    };
    let info = |field: &str| match str_at(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(node),
        status.join(",").into(),
        or_none(&roles.join(",")).into(),
        age(node, now),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
    .into()
}

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace_row(ns: &Value, now: DateTime<Utc>) -> Row {
    vec![name(ns), str_at(ns, "/status/phase").into(), age(ns, now)].into()
}

const PRIORITYCLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

fn priorityclass_row(pc: &Value, now: DateTime<Utc>) -> Row {
    vec![
        name(pc),
        int_at(pc, "/value").into(),
        pc.get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .into(),
        age(pc, now),
        str_at(pc, "/preemptionPolicy").into(),
    ]
    .into()
}

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease_row(lease: &Value, now: DateTime<Utc>) -> Row {
    vec![
        name(lease),
        str_at(lease, "/spec/holderIdentity").into(),
        age(lease, now),
    ]
    .into()
}

// --- configuration ----------------------------------------------------------

const CONFIGMAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

fn configmap_row(cm: &Value, now: DateTime<Utc>) -> Row {
    let data = map_len(cm, "/data") + map_len(cm, "/binaryData");
    vec![name(cm), (data as i64).into(), age(cm, now)].into()
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

fn secret_row(secret: &Value, now: DateTime<Utc>) -> Row {
    // stringData is merged into data on write; count the union like Kubernetes.
    let mut keys: Vec<&String> = Vec::new();
    for ptr in ["/data", "/stringData"] {
        if let Some(m) = secret.pointer(ptr).and_then(Value::as_object) {
            keys.extend(m.keys());
        }
    }
    keys.sort();
    keys.dedup();
    vec![
        name(secret),
        str_at(secret, "/type").into(),
        (keys.len() as i64).into(),
        age(secret, now),
    ]
    .into()
}

const SERVICEACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];

fn serviceaccount_row(sa: &Value, now: DateTime<Utc>) -> Row {
    vec![
        name(sa),
        (arr_at(sa, "/secrets").len() as i64).into(),
        age(sa, now),
    ]
    .into()
}

// --- events -----------------------------------------------------------------

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

fn event_row(ev: &Value, now: DateTime<Utc>) -> Row {
    let first = match str_at(ev, "/firstTimestamp") {
        "" => since(str_at(ev, "/eventTime"), now),
        t => since(t, now),
    };
    let mut last = match str_at(ev, "/lastTimestamp") {
        "" => first.clone(),
        t => since(t, now),
    };
    let mut count = int_at(ev, "/count");
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last = since(str_at(series, "/lastObservedTime"), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = str_at(ev, "/involvedObject/kind").to_lowercase();
    let target = match str_at(ev, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        str_at(ev, "/source/component"),
        str_at(ev, "/reportingComponent"),
    );
    let instance = first_non_empty(str_at(ev, "/source/host"), str_at(ev, "/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last.into(),
        str_at(ev, "/type").into(),
        str_at(ev, "/reason").into(),
        target.into(),
        str_at(ev, "/involvedObject/fieldPath").into(),
        source.into(),
        str_at(ev, "/message").trim().into(),
        first.into(),
        count.into(),
        name(ev),
    ]
    .into()
}

// --- autoscaling ------------------------------------------------------------

const HPA_COLUMNS: &[Column] = &[
    NAME,
    col("Reference", "string", "scaleTargetRef points to the target resource to scale."),
    col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count."),
    col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
    col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
    col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
    AGE,
];

/// One `Targets` entry for a metric spec and its status (matched by index).
fn format_hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    const UNKNOWN: &str = "<unknown>";
    let current = |source: &str, field: &str| {
        scalar(status.and_then(|s| s.pointer(&format!("/{source}/current/{field}"))))
            .unwrap_or_else(|| UNKNOWN.to_string())
    };
    let target =
        |source: &str, field: &str| scalar(spec.pointer(&format!("/{source}/target/{field}")));
    match str_at(spec, "/type") {
        source_type @ ("External" | "Object") => {
            let source = if source_type == "External" {
                "external"
            } else {
                "object"
            };
            match target(source, "averageValue") {
                Some(t) => format!("{}/{t} (avg)", current(source, "averageValue")),
                None => format!(
                    "{}/{}",
                    current(source, "value"),
                    target(source, "value").unwrap_or_else(|| UNKNOWN.to_string())
                ),
            }
        }
        "Pods" => format!(
            "{}/{}",
            current("pods", "averageValue"),
            target("pods", "averageValue").unwrap_or_else(|| UNKNOWN.to_string())
        ),
        source_type @ ("Resource" | "ContainerResource") => {
            let source = if source_type == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let resource = str_at(spec, &format!("/{source}/name"));
            match target(source, "averageValue") {
                Some(t) => format!("{resource}: {}/{t}", current(source, "averageValue")),
                None => {
                    let cur = status
                        .and_then(|s| s.pointer(&format!("/{source}/current/averageUtilization")))
                        .and_then(Value::as_i64)
                        .map_or_else(|| UNKNOWN.to_string(), |u| format!("{u}%"));
                    let tgt = spec
                        .pointer(&format!("/{source}/target/averageUtilization"))
                        .and_then(Value::as_i64)
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{resource}: {cur}/{tgt}")
                }
            }
        }
        _ => "<unknown type>".to_string(),
    }
}

/// `formatHPAMetrics`: at most two entries, then `+ N more...`.
fn format_hpa_metrics(hpa: &Value) -> String {
    let mut specs = arr_at(hpa, "/spec/metrics").to_vec();
    let mut statuses = arr_at(hpa, "/status/currentMetrics").to_vec();
    // autoscaling/v1 shape: a single CPU utilization target.
    if specs.is_empty() {
        if let Some(t) = hpa
            .pointer("/spec/targetCPUUtilizationPercentage")
            .and_then(Value::as_i64)
        {
            specs.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
            if let Some(c) = hpa
                .pointer("/status/currentCPUUtilizationPercentage")
                .and_then(Value::as_i64)
            {
                statuses.push(json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}));
            }
        }
    }
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let list: Vec<String> = specs
        .iter()
        .take(MAX)
        .enumerate()
        .map(|(i, spec)| format_hpa_metric(spec, statuses.get(i)))
        .collect();
    let joined = list.join(", ");
    if specs.len() > MAX {
        format!("{joined} + {} more...", specs.len() - MAX)
    } else {
        joined
    }
}

fn hpa_row(hpa: &Value, now: DateTime<Utc>) -> Row {
    let reference = format!(
        "{}/{}",
        str_at(hpa, "/spec/scaleTargetRef/kind"),
        str_at(hpa, "/spec/scaleTargetRef/name")
    );
    let min_pods = hpa
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        name(hpa),
        reference.into(),
        format_hpa_metrics(hpa).into(),
        min_pods.into(),
        int_at(hpa, "/spec/maxReplicas").into(),
        int_at(hpa, "/status/currentReplicas").into(),
        age(hpa, now),
    ]
    .into()
}

// --- any other kind ---------------------------------------------------------

/// Name and Age, like a custom resource without printer columns.
const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Age", "date", AGE_DESC)];

fn default_row(obj: &Value, now: DateTime<Utc>) -> Row {
    vec![name(obj), age(obj, now)].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        match parse_time("2024-01-01T12:00:00Z") {
            Some(t) => t,
            None => panic!("fixed test time parses"),
        }
    }

    /// An RFC 3339 timestamp `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        (now() - TimeDelta::seconds(secs)).to_rfc3339()
    }

    fn table(group: &str, kind: &str, obj: &Value) -> Value {
        to_table(group, kind, &[obj], IncludeObject::Metadata, now())
    }

    fn cells(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        match table(group, kind, obj).pointer("/rows/0/cells") {
            Some(Value::Array(c)) => c.clone(),
            other => panic!("no cells: {other:?}"),
        }
    }

    fn column_names(group: &str, kind: &str) -> Vec<(String, i64)> {
        let t = to_table(group, kind, &[], IncludeObject::None, now());
        arr_at(&t, "/columnDefinitions")
            .iter()
            .map(|c| (str_at(c, "/name").to_string(), int_at(c, "/priority")))
            .collect()
    }

    fn names(cols: &[(String, i64)], priority: i64) -> Vec<&str> {
        cols.iter()
            .filter(|(_, p)| *p == priority)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    // --- human duration ---

    #[test]
    fn human_duration_matches_kubernetes() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 3 * 60, "5h3m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400 + 5 * 3600, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (760 * 86400, "2y30d"),
            (8 * 365 * 86400, "8y"),
            (-1, "0s"),
            (-2, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}s");
        }
        assert_eq!(human_duration(TimeDelta::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(TimeDelta::milliseconds(59_999)), "59s");
    }

    #[test]
    fn missing_or_bad_timestamps_print_unknown_age() {
        let cm = json!({"metadata": {"name": "c"}});
        assert_eq!(cells("", "ConfigMap", &cm)[2], "<unknown>");
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": "yesterday"}});
        assert_eq!(cells("", "ConfigMap", &cm)[2], "<unknown>");
    }

    // --- table shape ---

    #[test]
    fn include_object_defaults_to_metadata_and_rejects_unknown_values() {
        assert_eq!(IncludeObject::from_query(None), Ok(IncludeObject::Metadata));
        assert_eq!(
            IncludeObject::from_query(Some("")),
            Ok(IncludeObject::Metadata)
        );
        assert_eq!(
            IncludeObject::from_query(Some("None")),
            Ok(IncludeObject::None)
        );
        assert_eq!(
            IncludeObject::from_query(Some("Object")),
            Ok(IncludeObject::Object)
        );
        let e = IncludeObject::from_query(Some("All"));
        assert_eq!(e, Err(TableError::UnrecognizedIncludeObject("All".into())));
        assert_eq!(
            TableError::UnrecognizedIncludeObject("All".into()).to_string(),
            "unrecognized includeObject value: \"All\""
        );
    }

    #[test]
    fn table_is_a_meta_v1_table_with_one_row_per_object() {
        let a = json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}}, "data": {"k": "v"}});
        let b = json!({"kind": "ConfigMap", "metadata": {"name": "b"}});
        let t = to_table("", "ConfigMap", &[&a, &b], IncludeObject::Metadata, now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][0]["type"], "string");
        assert_eq!(t["columnDefinitions"][0]["priority"], 0);
        assert_eq!(arr_at(&t, "/rows").len(), 2);
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}}})
        );
        assert_eq!(t["rows"][1]["cells"][0], "b");
    }

    #[test]
    fn include_object_none_and_object_control_the_row_object() {
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}});
        let none = to_table("", "ConfigMap", &[&cm], IncludeObject::None, now());
        assert_eq!(none["rows"][0]["object"], Value::Null);
        let full = to_table("", "ConfigMap", &[&cm], IncludeObject::Object, now());
        assert_eq!(full["rows"][0]["object"], cm);
    }

    #[test]
    fn watch_event_tables_can_omit_headers() {
        let cm = json!({"metadata": {"name": "a"}});
        let mut t = table("", "ConfigMap", &cm);
        omit_headers(&mut t);
        assert_eq!(t["columnDefinitions"], json!([]));
        assert_eq!(t["rows"][0]["cells"][0], "a");
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        let kinds = [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("", "Service"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Endpoints"),
            ("", "Event"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("batch", "Job"),
            ("coordination.k8s.io", "Lease"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("example.com", "Widget"),
        ];
        let empty = json!({"metadata": {"name": "x"}});
        for (g, k) in kinds {
            let t = table(g, k, &empty);
            assert_eq!(
                arr_at(&t, "/columnDefinitions").len(),
                arr_at(&t, "/rows/0/cells").len(),
                "{g}/{k}"
            );
        }
    }

    #[test]
    fn unknown_kinds_print_name_and_age() {
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(90)}});
        assert_eq!(
            column_names("example.com", "Widget"),
            vec![("Name".into(), 0), ("Age".into(), 0)]
        );
        assert_eq!(
            cells("example.com", "Widget", &obj),
            vec![json!("w"), json!("90s")]
        );
    }

    // --- Pod ---

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
            "status": status,
        })
    }

    fn pod_status(p: &Value) -> (String, String, String) {
        let c = cells("", "Pod", p);
        (
            c[1].as_str().unwrap_or("").to_string(),
            c[2].as_str().unwrap_or("").to_string(),
            c[3].as_str().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn pod_columns_match_kubectl_get_pods() {
        let cols = column_names("", "Pod");
        assert_eq!(
            names(&cols, 0),
            ["Name", "Ready", "Status", "Restarts", "Age"]
        );
        assert_eq!(
            names(&cols, 1),
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
    }

    #[test]
    fn running_ready_pod_shows_running_and_ready_count() {
        let p = pod(
            json!({"phase": "Running", "podIP": "10.1.0.4", "podIPs": [{"ip": "10.1.0.4"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}}]}),
        );
        let c = cells("", "Pod", &p);
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("5m"),
                json!("10.1.0.4"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn waiting_container_reason_becomes_the_status() {
        let p = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(
            pod_status(&p),
            ("0/1".into(), "ContainerCreating".into(), "0".into())
        );
        let p = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
        );
        assert_eq!(pod_status(&p).1, "ErrImagePull");
    }

    #[test]
    fn crash_looping_pod_shows_restarts_with_time_of_last_restart() {
        let p = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}}]}),
        );
        assert_eq!(
            pod_status(&p),
            ("0/1".into(), "CrashLoopBackOff".into(), "5 (5m ago)".into())
        );
    }

    #[test]
    fn terminated_container_shows_reason_or_exit_code_or_signal() {
        let p = pod(
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(pod_status(&p).1, "Completed");
        let p = pod(
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "restartCount": 0,
            "state": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(pod_status(&p).1, "ExitCode:3");
        let p = pod(
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        );
        assert_eq!(pod_status(&p).1, "Signal:9");
    }

    #[test]
    fn finished_pods_carry_a_completed_row_condition() {
        let p = pod(json!({"phase": "Succeeded"}));
        let t = table("", "Pod", &p);
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
        let running = table("", "Pod", &pod(json!({"phase": "Running"})));
        assert!(running["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn pod_reason_such_as_evicted_wins_over_phase() {
        let p = pod(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(pod_status(&p).1, "Evicted");
        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(pod_status(&p).1, "SchedulingGated");
    }

    #[test]
    fn deleted_pod_shows_terminating_unless_finished() {
        let mut p = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_status(&p).1, "Terminating");
        let mut done = pod(json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_status(&done).1, "Succeeded");
        let mut lost = pod(json!({"phase": "Running", "reason": "NodeLost"}));
        lost["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_status(&lost).1, "Unknown");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let mut p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "init", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            "containerStatuses": [{"name": "c", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        assert_eq!(pod_status(&p).1, "Init:0/1");

        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        p["status"]["initContainerStatuses"][0]["restartCount"] = json!(2);
        assert_eq!(
            pod_status(&p),
            ("0/1".into(), "Init:CrashLoopBackOff".into(), "2".into())
        );

        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(pod_status(&p).1, "Init:Error");

        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        p["status"]["containerStatuses"][0]["state"] = json!({"running": {}});
        p["status"]["containerStatuses"][0]["ready"] = json!(true);
        p["status"]["phase"] = json!("Running");
        assert_eq!(pod_status(&p), ("1/1".into(), "Running".into(), "0".into()));
    }

    #[test]
    fn sidecar_init_containers_count_towards_ready() {
        let mut p = pod(json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "restartCount": 1, "started": true, "ready": true, "state": {"running": {}}}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
        p["spec"]["initContainers"] =
            json!([{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]);
        assert_eq!(pod_status(&p), ("2/2".into(), "Running".into(), "1".into()));
    }

    #[test]
    fn completed_container_next_to_running_one_shows_running_or_not_ready() {
        let status = json!({"phase": "Running",
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        let mut p = pod(status);
        assert_eq!(pod_status(&p).1, "NotReady");
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(pod_status(&p).1, "Running");
    }

    #[test]
    fn pod_wide_cells_show_nominated_node_and_readiness_gates() {
        let mut p = pod(json!({"phase": "Pending", "nominatedNodeName": "n2",
            "conditions": [{"type": "example.com/a", "status": "True"}, {"type": "example.com/b", "status": "False"}]}));
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/a"}, {"conditionType": "example.com/b"}]);
        p["spec"]["nodeName"] = Value::Null;
        let c = cells("", "Pod", &p);
        assert_eq!(
            &c[5..],
            &[json!("<none>"), json!("<none>"), json!("n2"), json!("1/2")]
        );
    }

    // --- workloads ---

    fn template(containers: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
    }

    #[test]
    fn deployment_shows_ready_of_desired_and_wide_template_columns() {
        assert_eq!(
            names(&column_names("apps", "Deployment"), 0),
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(
            names(&column_names("apps", "Deployment"), 1),
            ["Containers", "Images", "Selector"]
        );
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(7200)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(json!([{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]))},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "Deployment", &d),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("nginx,log"),
                json!("nginx:1.25,busybox"),
                json!("app=web")
            ]
        );
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 0}});
        assert_eq!(cells("apps", "Deployment", &fresh)[1], "0/0");
    }

    #[test]
    fn replicaset_and_daemonset_print_counts_and_selectors() {
        let rs = json!({"metadata": {"name": "web-abc"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}}, "template": template(json!([{"name": "c", "image": "i"}]))},
            "status": {"replicas": 2, "readyReplicas": 1}});
        let c = cells("apps", "ReplicaSet", &rs);
        assert_eq!(&c[..4], &[json!("web-abc"), json!(2), json!(2), json!(1)]);
        assert_eq!(c[7], "app=web,pod-template-hash=abc");

        let ds = json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "agent:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        let c = cells("apps", "DaemonSet", &ds);
        assert_eq!(
            &c[..7],
            &[
                json!("agent"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux")
            ]
        );
        assert_eq!(c[10], "app in (agent)");
        let no_selector = json!({"metadata": {"name": "x"}});
        assert_eq!(cells("apps", "DaemonSet", &no_selector)[6], "<none>");
        assert_eq!(cells("apps", "DaemonSet", &no_selector)[10], "<none>");
    }

    #[test]
    fn job_shows_status_completions_and_duration() {
        assert_eq!(
            names(&column_names("batch", "Job"), 0),
            ["Name", "Status", "Completions", "Duration", "Age"]
        );
        let done = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            &cells("batch", "Job", &done)[..4],
            &[json!("pi"), json!("Complete"), json!("1/1"), json!("60s")]
        );
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(30)}});
        assert_eq!(
            &cells("batch", "Job", &running)[1..4],
            &[json!("Running"), json!("0/1 of 3"), json!("30s")]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"completions": 5, "suspend": true},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            &cells("batch", "Job", &pending)[1..4],
            &[json!("Suspended"), json!("0/5"), json!("")]
        );
        let failed = json!({"metadata": {"name": "f"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(cells("batch", "Job", &failed)[1], "Failed");
    }

    // --- Service, Endpoints, EndpointSlice ---

    #[test]
    fn service_ports_show_node_ports_and_protocols() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web", "tier": "fe"}}});
        let c = cells("", "Service", &svc);
        assert_eq!(
            &c[1..5],
            &[
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(c[6], "app=web,tier=fe");
    }

    #[test]
    fn service_external_ip_depends_on_type() {
        let cluster = json!({"metadata": {"name": "a"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        let c = cells("", "Service", &cluster);
        assert_eq!(
            &c[1..5],
            &[
                json!("ClusterIP"),
                json!("None"),
                json!("<none>"),
                json!("80/TCP")
            ]
        );
        assert_eq!(c[6], "<none>");
        let lb = json!({"metadata": {"name": "b"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.2"}});
        assert_eq!(cells("", "Service", &lb)[3], "<pending>");
        assert_eq!(cells("", "Service", &lb)[4], "<none>");
        let lb_ready = json!({"metadata": {"name": "b"}, "spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            cells("", "Service", &lb_ready)[3],
            "5.6.7.8,lb.example.com,1.2.3.4"
        );
        let ext = json!({"metadata": {"name": "c"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(cells("", "Service", &ext)[3], "db.example.com");
        let with_ips =
            json!({"metadata": {"name": "d"}, "spec": {"externalIPs": ["1.1.1.1", "2.2.2.2"]}});
        assert_eq!(cells("", "Service", &with_ips)[3], "1.1.1.1,2.2.2.2");
    }

    #[test]
    fn endpoints_list_up_to_three_addresses() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("", "Endpoints", &ep)[1], "10.0.0.1:80,10.0.0.2:80");
        let many = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}, {"ip": "10.0.0.5"}], "ports": [{"port": 8080}]}]});
        assert_eq!(
            cells("", "Endpoints", &many)[1],
            "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 2 more..."
        );
        let headless =
            json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
        assert_eq!(cells("", "Endpoints", &headless)[1], "10.0.0.9");
        assert_eq!(
            cells("", "Endpoints", &json!({"metadata": {"name": "e"}}))[1],
            "<none>"
        );
    }

    #[test]
    fn endpoint_slices_list_ports_and_addresses() {
        let es = json!({"metadata": {"name": "web-x"}, "addressType": "IPv4", "ports": [{"port": 80, "name": "http"}, {"name": "dns"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        assert_eq!(
            &cells("discovery.k8s.io", "EndpointSlice", &es)[1..4],
            &[json!("IPv4"), json!("80,dns,*"), json!("10.0.0.1,10.0.0.2")]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4"});
        assert_eq!(
            &cells("discovery.k8s.io", "EndpointSlice", &empty)[2..4],
            &[json!("<unset>"), json!("<unset>")]
        );
    }

    // --- Node ---

    fn node(conditions: Value) -> Value {
        json!({"metadata": {"name": "n1", "creationTimestamp": ago(86400 * 3),
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/hostname": "n1"}},
            "status": {"conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-skiff", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"}}})
    }

    #[test]
    fn node_status_roles_and_wide_columns() {
        let n = node(
            json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]),
        );
        assert_eq!(
            cells("", "Node", &n),
            vec![
                json!("n1"),
                json!("Ready"),
                json!("control-plane,worker"),
                json!("3d"),
                json!("v1.33.0-skiff"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0"),
                json!("containerd://1.7.0")
            ]
        );
        assert_eq!(
            names(&column_names("", "Node"), 1),
            [
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
    }

    #[test]
    fn cordoned_not_ready_and_unknown_nodes() {
        let mut n = node(json!([{"type": "Ready", "status": "False"}]));
        n["spec"] = json!({"unschedulable": true});
        assert_eq!(cells("", "Node", &n)[1], "NotReady,SchedulingDisabled");
        let unknown = node(json!([{"type": "Ready", "status": "Unknown"}]));
        assert_eq!(cells("", "Node", &unknown)[1], "NotReady");
        let bare = json!({"metadata": {"name": "n2"}});
        let c = cells("", "Node", &bare);
        assert_eq!(&c[1..3], &[json!("Unknown"), json!("<none>")]);
        assert_eq!(c[7], "<unknown>");
        let legacy =
            json!({"metadata": {"name": "n3", "labels": {"kubernetes.io/role": "master"}}});
        assert_eq!(cells("", "Node", &legacy)[2], "master");
    }

    // --- Event ---

    #[test]
    fn event_columns_match_kubectl_get_events() {
        let cols = column_names("", "Event");
        assert_eq!(
            names(&cols, 0),
            ["Last Seen", "Type", "Reason", "Object", "Message"]
        );
        assert_eq!(
            names(&cols, 1),
            ["Subobject", "Source", "First Seen", "Count", "Name"]
        );
    }

    #[test]
    fn event_row_shows_last_seen_object_and_message() {
        let ev = json!({"metadata": {"name": "web.17a"}, "type": "Normal", "reason": "Scheduled",
            "message": " Successfully assigned default/web to n1\n", "firstTimestamp": ago(600), "lastTimestamp": ago(65),
            "count": 2, "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "source": {"component": "default-scheduler"}});
        assert_eq!(
            cells("", "Event", &ev),
            vec![
                json!("65s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!("spec.containers{c}"),
                json!("default-scheduler"),
                json!("Successfully assigned default/web to n1"),
                json!("10m"),
                json!(2),
                json!("web.17a")
            ]
        );
    }

    #[test]
    fn new_style_events_use_event_time_series_and_reporting_fields() {
        let ev = json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "BackOff", "eventTime": "2024-01-01T11:59:30.000000Z",
            "reportingComponent": "kubelet", "reportingInstance": "n1", "involvedObject": {"kind": "Node"}});
        let c = cells("", "Event", &ev);
        assert_eq!(
            &c[..4],
            &[
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("node")
            ]
        );
        assert_eq!(c[5], "kubelet, n1");
        assert_eq!(c[8], 1);
        let series = json!({"metadata": {"name": "e"}, "eventTime": ago(600), "series": {"count": 7, "lastObservedTime": ago(5)},
            "involvedObject": {"kind": "Pod", "name": "p"}});
        let c = cells("", "Event", &series);
        assert_eq!((c[0].clone(), c[8].clone()), (json!("5s"), json!(7)));
    }

    // --- HPA ---

    fn hpa(metrics: Value, current: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 1, "maxReplicas": 10, "metrics": metrics}, "status": {"currentReplicas": 2, "currentMetrics": current}})
    }

    fn cpu(target: i64) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}})
    }

    #[test]
    fn hpa_shows_reference_targets_and_bounds() {
        let h = hpa(
            json!([cpu(50)]),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 20, "averageValue": "100m"}}}]),
        );
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &h)[..6],
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 20%/50%"),
                json!("1"),
                json!(10),
                json!(2)
            ]
        );
    }

    #[test]
    fn hpa_targets_are_unknown_until_metrics_are_reported() {
        let h = hpa(json!([cpu(50)]), Value::Null);
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &h)[2],
            "cpu: <unknown>/50%"
        );
        let none = json!({"metadata": {"name": "x"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3}});
        let c = cells("autoscaling", "HorizontalPodAutoscaler", &none);
        assert_eq!(&c[2..4], &[json!("<none>"), json!("<unset>")]);
    }

    #[test]
    fn hpa_targets_format_values_pods_and_more() {
        let metrics = json!([
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            cpu(80)]);
        let current = json!([
            {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "200Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "3"}}}]);
        assert_eq!(
            cells(
                "autoscaling",
                "HorizontalPodAutoscaler",
                &hpa(metrics, current)
            )[2],
            "memory: 200Mi/500Mi, 3/10 + 1 more..."
        );
        let external = json!([{"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}}]);
        assert_eq!(
            cells(
                "autoscaling",
                "HorizontalPodAutoscaler",
                &hpa(external, json!([]))
            )[2],
            "<unknown>/30"
        );
    }

    #[test]
    fn hpa_v1_cpu_target_is_shown() {
        let h = json!({"metadata": {"name": "v1"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
            "targetCPUUtilizationPercentage": 60}, "status": {"currentCPUUtilizationPercentage": 12}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &h)[2],
            "cpu: 12%/60%"
        );
    }

    // --- small kinds ---

    #[test]
    fn config_and_identity_kinds_count_their_entries() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("", "ConfigMap", &cm)[1], 3);
        let s = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}, "stringData": {"a": "1", "b": "2"}});
        assert_eq!(&cells("", "Secret", &s)[1..3], &[json!("Opaque"), json!(2)]);
        let sa = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        assert_eq!(cells("", "ServiceAccount", &sa)[1], 1);
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(3600)}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("", "Namespace", &ns),
            vec![json!("default"), json!("Active"), json!("60m")]
        );
    }

    #[test]
    fn lease_and_priority_class_columns() {
        let l = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "skiff-1_abc"}});
        assert_eq!(cells("coordination.k8s.io", "Lease", &l)[1], "skiff-1_abc");
        assert_eq!(
            cells(
                "coordination.k8s.io",
                "Lease",
                &json!({"metadata": {"name": "x"}})
            )[1],
            ""
        );
        let pc = json!({"metadata": {"name": "system-node-critical", "creationTimestamp": ago(10)}, "value": 2000001000,
            "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells("scheduling.k8s.io", "PriorityClass", &pc),
            vec![
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("10s"),
                json!("PreemptLowerPriority")
            ]
        );
        assert_eq!(
            column_names("scheduling.k8s.io", "PriorityClass")
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
    }
}

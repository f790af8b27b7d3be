//! Server-side apply (`kubectl apply --server-side`, kube-rs `Patch::Apply`)
//! and the field ownership every other write records in
//! `metadata.managedFields`.
//!
//! Each managedFields entry is one manager's set of owned fields
//! (`fieldsType: FieldsV1`). An apply:
//! 1. merges the applied configuration into the live object (maps merge,
//!    keyed lists merge with the same merge-key table as strategic merge
//!    patch, atomic lists are replaced);
//! 2. prunes fields the manager applied last time but left out now, unless
//!    another manager also owns them;
//! 3. reports a conflict for every field whose value it changes while
//!    another manager owns it, unless `force`, which moves ownership;
//! 4. records the configuration's fields as the manager's `Apply` entry.
//!
//! Other writes call [`record_update`]: the fields they add or change become
//! the writer's (`operation: Update`) and leave every other manager's set.
//!
//! Simplifications, compared to upstream structured-merge-diff:
//! - Objects are schema-less JSON: every object is granular except a few
//!   atomic ones (label selectors, `nodeSelector`); for custom resources all
//!   lists are atomic (upstream reads `x-kubernetes-list-type` from the CRD).
//! - Keyed lists use a single key (container `ports` by `containerPort`;
//!   upstream also keys by `protocol`).
//! - `null` in an applied configuration removes the field and is not owned.
//! - Applies to the main resource ignore `status` for built-in kinds (the
//!   status subresource resets it upstream); subresources are not tracked in
//!   entries written here, and there is no version conversion of field sets.
//! - Server-set metadata (`uid`, `resourceVersion`, `generation`,
//!   `creationTimestamp`, `deletionTimestamp`, `managedFields`, …) is dropped
//!   from applied configurations and never owned; a `resourceVersion`
//!   precondition is the caller's to check before calling.
//! - Objects emptied by pruning are removed; lists emptied by pruning stay.

use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{path_string, FieldPath, FieldSet, Walker};
use super::schema::PatchKind;

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// Metadata set by the server: dropped from applied configurations and
/// never part of anyone's field set.
const SERVER_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// One field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// Its operation, `Apply` or `Update`.
    pub operation: String,
    /// The API version it wrote with.
    pub api_version: String,
    /// The field, printed as Kubernetes does (`.spec.replicas`).
    pub field: String,
}

impl Conflict {
    /// The manager as Kubernetes names it in messages:
    /// `"kubectl-client-side-apply" using apps/v1` for an updater, just
    /// `"kubectl"` for an applier.
    pub fn manager_display(&self) -> String {
        if self.operation == UPDATE {
            format!("{:?} using {}", self.manager, self.api_version)
        } else {
            format!("{:?}", self.manager)
        }
    }

    /// The message of this conflict's `StatusCause` (type
    /// `FieldManagerConflict`, field [`Conflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_display())
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause_message(), self.field)
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 Conflict, one
    /// `FieldManagerConflict` cause per entry). Retry with `force` to take
    /// them over.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The request named no field manager (422 Invalid).
    #[error("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply requests")]
    MissingFieldManager,
    /// The applied configuration is not an object (400 BadRequest).
    #[error("the applied configuration must be an object")]
    ConfigNotObject,
    /// The applied configuration lacks `apiVersion` or `kind` (400).
    #[error("the applied configuration must set {0}")]
    MissingTypeMeta(&'static str),
    /// The stored object is not an object (500; a storage bug).
    #[error("the live object is not an object")]
    LiveNotObject,
}

impl ApplyError {
    /// The HTTP status Kubernetes answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::MissingFieldManager => 422,
            ApplyError::ConfigNotObject | ApplyError::MissingTypeMeta(_) => 400,
            ApplyError::LiveNotObject => 500,
        }
    }

    /// The Kubernetes `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "Conflict",
            ApplyError::MissingFieldManager => "Invalid",
            ApplyError::ConfigNotObject | ApplyError::MissingTypeMeta(_) => "BadRequest",
            ApplyError::LiveNotObject => "InternalError",
        }
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: {only}");
    }
    let mut managers: Vec<String> = conflicts.iter().map(Conflict::manager_display).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| c.manager_display() == manager) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Applies `applied` as `manager` to `live` (`None` creates), returning the
/// object to store with its `metadata.managedFields` updated.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &PatchKind,
    now: &str,
) -> Result<Value, ApplyError> {
    if manager.is_empty() {
        return Err(ApplyError::MissingFieldManager);
    }
    let Value::Object(config) = applied else {
        return Err(ApplyError::ConfigNotObject);
    };
    let type_meta = |field: &'static str| {
        config
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ApplyError::MissingTypeMeta(field))
    };
    let api_version = type_meta("apiVersion")?.to_string();
    type_meta("kind")?;

    let mut config = config.clone();
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        for field in SERVER_METADATA {
            meta.shift_remove(field);
        }
    }
    let mut ignored = ignored_paths();
    if !kind.is_custom_resource() {
        config.shift_remove("status");
        ignored.push(vec!["f:status".to_string()]);
    }
    let config = Value::Object(config);

    let (live, mut entries) = match live {
        Some(object @ Value::Object(_)) => (without_managed_fields(object), read_entries(object)),
        Some(_) => return Err(ApplyError::LiveNotObject),
        None => (Value::Object(Map::new()), Vec::new()),
    };

    let walker = Walker { kind };
    let mut merged = walker
        .merge(Some(&live), &config)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let applied_set = walker.members(&config).without_prefixes(&ignored);
    let mine = entries
        .iter()
        .position(|e| e.operation == APPLY && e.manager == manager && e.subresource.is_none());
    let last_set = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .fold(FieldSet::default(), |acc, (_, e)| acc.union(&e.fields));

    // Prune what this manager applied last time and no longer applies,
    // unless someone (including the new configuration) still owns it.
    for path in last_set.difference(&applied_set).iter() {
        if !others.covers(path) && !applied_set.covers(path) {
            walker.remove(&mut merged, path);
        }
    }

    let comparison = walker.compare(&live, &merged);
    let changed = comparison.changed().without_prefixes(&ignored);
    let mut conflicts: Vec<Conflict> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if Some(i) == mine {
            continue;
        }
        for path in entry.fields.intersection(&changed).iter() {
            conflicts.push(Conflict {
                manager: entry.manager.clone(),
                operation: entry.operation.clone(),
                api_version: entry.api_version.clone(),
                field: path_string(path),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        return Err(ApplyError::Conflicts(conflicts));
    }

    // Forced (or uncontested) changes and removals leave the other sets.
    let taken = changed.union(&comparison.removed);
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            entry.fields = entry.fields.difference(&taken);
        }
    }
    let entry = Entry {
        manager: manager.to_string(),
        operation: APPLY.to_string(),
        api_version,
        time: Some(now.to_string()),
        subresource: None,
        fields: applied_set,
    };
    match mine {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Records field ownership for a non-apply write (create, update, any
/// patch) by `manager`: fields that `new` adds or changes relative to `old`
/// (`None` for a create) become owned by the manager's `Update` entry for
/// `api_version` and are removed from every other manager's set.
///
/// The kind is read from `new`'s `apiVersion` and `kind`. As upstream, a
/// client may replace `metadata.managedFields` wholesale, and a list holding
/// one empty entry (`[{}]`) strips managedFields from the object.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    if !new.is_object() {
        return;
    }
    let old_entries = old.map(read_entries).unwrap_or_default();
    let old_raw = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let mut entries = match new.pointer("/metadata/managedFields") {
        None => old_entries,
        Some(Value::Array(list)) if list.is_empty() => old_entries,
        Some(sent) if Some(sent) == old_raw => old_entries,
        Some(_) => {
            let sent = read_entries(new);
            if sent.is_empty() {
                if let Some(Value::Object(meta)) = new.get_mut("metadata") {
                    meta.shift_remove("managedFields");
                }
                return;
            }
            sent
        }
    };

    let kind = PatchKind::of_object(new);
    let walker = Walker { kind: &kind };
    let empty = Value::Object(Map::new());
    let comparison = walker.compare_without_managed_fields(old.unwrap_or(&empty), new);
    let ignored = ignored_paths();
    let changed = comparison.changed().without_prefixes(&ignored);
    let removed = comparison.removed.without_prefixes(&ignored);
    let touched = changed.union(&removed);

    let mine = entries.iter().position(|e| {
        e.operation == UPDATE
            && e.manager == manager
            && e.api_version == api_version
            && e.subresource.is_none()
    });
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            entry.fields = entry.fields.difference(&touched);
        }
    }
    match mine {
        Some(i) if !touched.is_empty() => {
            let entry = &mut entries[i];
            entry.fields = entry.fields.difference(&removed).union(&changed);
            entry.time = Some(now.to_string());
        }
        Some(_) => {}
        None if !changed.is_empty() => entries.push(Entry {
            manager: manager.to_string(),
            operation: UPDATE.to_string(),
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: None,
            fields: changed,
        }),
        None => {}
    }
    write_entries(new, entries);
}

/// Paths nobody owns: type meta and server-set metadata.
fn ignored_paths() -> Vec<FieldPath> {
    let mut paths = vec![vec!["f:apiVersion".to_string()], vec!["f:kind".to_string()]];
    for field in ["name", "namespace"].iter().chain(SERVER_METADATA.iter()) {
        paths.push(vec!["f:metadata".to_string(), format!("f:{field}")]);
    }
    paths
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.shift_remove("managedFields");
        if meta.is_empty() {
            if let Value::Object(root) = &mut object {
                root.shift_remove("metadata");
            }
        }
    }
    object
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(Value::Array(list)) = object.pointer("/metadata/managedFields") else {
        return Vec::new();
    };
    let text = |entry: &Map<String, Value>, field: &str| {
        entry.get(field).and_then(Value::as_str).map(str::to_string)
    };
    list.iter()
        .filter_map(Value::as_object)
        .filter_map(|entry| {
            Some(Entry {
                manager: text(entry, "manager")?,
                operation: text(entry, "operation")?,
                api_version: text(entry, "apiVersion").unwrap_or_default(),
                time: text(entry, "time"),
                subresource: text(entry, "subresource").filter(|s| !s.is_empty()),
                fields: FieldSet::from_fields_v1(entry.get("fieldsV1")?),
            })
        })
        .collect()
}

/// Writes entries in upstream's order (operation, time, manager, version),
/// dropping empty ones and the whole field when none is left.
fn write_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Value::Object(root) = object else { return };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.shift_remove("managedFields");
        }
        return;
    }
    let list = entries
        .into_iter()
        .map(|e| {
            let mut out = Map::new();
            out.insert("manager".into(), Value::String(e.manager));
            out.insert("operation".into(), Value::String(e.operation));
            out.insert("apiVersion".into(), Value::String(e.api_version));
            if let Some(time) = e.time {
                out.insert("time".into(), Value::String(time));
            }
            out.insert("fieldsType".into(), Value::String("FieldsV1".into()));
            out.insert("fieldsV1".into(), e.fields.to_fields_v1());
            if let Some(sub) = e.subresource {
                out.insert("subresource".into(), Value::String(sub));
            }
            Value::Object(out)
        })
        .collect();
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

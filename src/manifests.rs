//! The manifests folder, as k3s does it: every YAML or JSON file in a folder
//! is applied (server-side apply) at start and whenever it changes, and the
//! objects of a file that disappears — or that disappear from a file — are
//! pruned. A file that does not parse or is refused by the API produces a
//! log line and an Event naming the file and the problem, and never stops
//! the other files.
//!
//! Changes are found by hashing the files on a short interval: cheap for the
//! handful of files such a folder holds, and immune to the editor rename and
//! atomic-replace patterns that trip up file-notification APIs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Label on every object applied from the folder.
pub const MANAGED_LABEL: &str = "skiff.io/managed-by";
const MANAGED_VALUE: &str = "manifests";
/// Annotation naming the file an object came from.
pub const FILE_ANNOTATION: &str = "skiff.io/manifest-file";
const FIELD_MANAGER: &str = "skiff-manifests";

/// Settings of the manifests folder watcher.
#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    /// How often the folder is checked for changes.
    pub interval: Duration,
}

/// One object's identity, for pruning.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectRef {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

/// Runs until the task is aborted.
pub async fn run(client: kube::Client, config: Config) {
    let mut hashes: BTreeMap<PathBuf, String> = BTreeMap::new();
    // Objects of each file's last successful apply, by file (relative path).
    let mut owned: BTreeMap<String, BTreeSet<ObjectRef>> = BTreeMap::new();
    let mut discovery: Option<Discovery> = None;
    loop {
        let files = scan(&config.dir);
        let changed: Vec<PathBuf> = files
            .iter()
            .filter(|(p, h)| hashes.get(*p) != Some(*h))
            .map(|(p, _)| p.clone())
            .collect();
        let removed: Vec<PathBuf> = hashes
            .keys()
            .filter(|p| !files.contains_key(*p))
            .cloned()
            .collect();
        if discovery.is_none() || !changed.is_empty() || !removed.is_empty() {
            if discovery.is_none() || !changed.is_empty() {
                match Discovery::new(client.clone()).run().await {
                    Ok(d) => discovery = Some(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "manifests: API discovery failed; retrying")
                    }
                }
            }
            if let Some(d) = &discovery {
                for path in &changed {
                    let span = tracing::info_span!("manifest", file = %path.display());
                    let _g = span.enter();
                    match apply_file(&client, d, &config.dir, path).await {
                        Ok(objs) => {
                            tracing::info!(objects = objs.len(), "manifest applied");
                            owned.insert(relative(&config.dir, path), objs);
                            if let Some(h) = files.get(path) {
                                hashes.insert(path.clone(), h.clone());
                            }
                        }
                        Err(e) => {
                            let msg = format!("{}: {e:#}", relative(&config.dir, path));
                            tracing::warn!(error = %msg, "manifest not applied");
                            report(&client, path, &config.dir, &msg).await;
                            // Remember the content so a bad file is reported once, not every tick.
                            if let Some(h) = files.get(path) {
                                hashes.insert(path.clone(), h.clone());
                            }
                        }
                    }
                }
                for path in &removed {
                    hashes.remove(path);
                    owned.remove(&relative(&config.dir, path));
                }
                let known_files: BTreeSet<String> =
                    files.keys().map(|p| relative(&config.dir, p)).collect();
                if let Err(e) = prune(&client, d, &owned, &known_files).await {
                    tracing::warn!(error = %e, "manifests: pruning failed; will retry");
                }
            }
        }
        tokio::time::sleep(config.interval).await;
    }
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// Manifest files (`.yaml`, `.yml`, `.json`) under `dir`, with their content hashes.
fn scan(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                if let Ok(bytes) = std::fs::read(&path) {
                    out.insert(path, format!("{:x}", Sha256::digest(&bytes)));
                }
            }
        }
    }
    out
}

/// Parses a file into objects (multi-document YAML; JSON is YAML too).
fn parse(text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        // The parser's first line names the line and column; the rest is a source excerpt.
        let text = e.to_string();
        anyhow!(
            "does not parse: {}",
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
        )
    })?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        match doc {
            Value::Null => {}
            Value::Object(_) => {
                for field in ["apiVersion", "kind"] {
                    if doc
                        .get(field)
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        return Err(anyhow!("document {}: field {field} is required", i + 1));
                    }
                }
                if doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(anyhow!(
                        "document {}: field metadata.name is required",
                        i + 1
                    ));
                }
                out.push(doc);
            }
            other => {
                return Err(anyhow!(
                    "document {} is a {}, not an object",
                    i + 1,
                    kind_of(&other)
                ))
            }
        }
    }
    Ok(out)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        _ => "value",
    }
}

fn gvk_of(obj: &Value) -> Result<GroupVersionKind> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    Ok(GroupVersionKind::gvk(group, version, kind))
}

fn api_for(
    client: &kube::Client,
    d: &Discovery,
    obj: &Value,
) -> Result<(Api<DynamicObject>, ObjectRef)> {
    let gvk = gvk_of(obj)?;
    let (ar, caps) = d.resolve_gvk(&gvk).ok_or_else(|| {
        anyhow!(
            "kind {} {} is not served by this cluster",
            obj["apiVersion"],
            obj["kind"]
        )
    })?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (api, namespace) = match caps.scope {
        Scope::Namespaced => {
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            (Api::namespaced_with(client.clone(), &ns, &ar), Some(ns))
        }
        Scope::Cluster => (Api::all_with(client.clone(), &ar), None),
    };
    Ok((
        api,
        ObjectRef {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
            namespace,
            name,
        },
    ))
}

async fn apply_file(
    client: &kube::Client,
    d: &Discovery,
    dir: &Path,
    path: &Path,
) -> Result<BTreeSet<ObjectRef>> {
    let text = std::fs::read_to_string(path).context("cannot read the file")?;
    let objects = parse(&text)?;
    let file = relative(dir, path);
    let mut applied = BTreeSet::new();
    let mut errors = Vec::new();
    for mut obj in objects {
        let (api, r) = match api_for(client, d, &obj) {
            Ok(x) => x,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        obj["metadata"]["labels"][MANAGED_LABEL] = json!(MANAGED_VALUE);
        obj["metadata"]["annotations"][FILE_ANNOTATION] = json!(file);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            force: true,
            field_validation: Some(kube::api::ValidationDirective::Strict),
            ..Default::default()
        };
        match api.patch(&r.name, &params, &Patch::Apply(&obj)).await {
            Ok(_) => {
                applied.insert(r);
            }
            Err(e) => errors.push(format!("{} {}: {}", r.kind, r.name, api_message(&e))),
        }
    }
    if errors.is_empty() {
        Ok(applied)
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Deletes objects labelled as applied from the folder that no file holds any more.
async fn prune(
    client: &kube::Client,
    d: &Discovery,
    owned: &BTreeMap<String, BTreeSet<ObjectRef>>,
    known_files: &BTreeSet<String>,
) -> Result<()> {
    let selector = format!("{MANAGED_LABEL}={MANAGED_VALUE}");
    for group in d.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(kube::discovery::verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let list = api.list(&ListParams::default().labels(&selector)).await?;
            for obj in list {
                let r = ObjectRef {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                    namespace: obj.metadata.namespace.clone(),
                    name: obj.metadata.name.clone().unwrap_or_default(),
                };
                let file = obj
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(FILE_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                if is_stale(&r, &file, owned, known_files) {
                    let ns_api: Api<DynamicObject> = match &r.namespace {
                        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                        None => Api::all_with(client.clone(), &ar),
                    };
                    tracing::info!(kind = %r.kind, name = %r.name, file = %file, "pruning object no manifest holds");
                    match ns_api.delete(&r.name, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Ok(())
}

/// An object is stale when its file is gone, or when its file last applied
/// without it. A file whose apply failed keeps its objects.
fn is_stale(
    r: &ObjectRef,
    file: &str,
    owned: &BTreeMap<String, BTreeSet<ObjectRef>>,
    known_files: &BTreeSet<String>,
) -> bool {
    !known_files.contains(file) || owned.get(file).is_some_and(|objs| !objs.contains(r))
}

/// An Event in kube-system naming the file and the problem.
async fn report(client: &kube::Client, path: &Path, dir: &Path, message: &str) {
    let file = relative(dir, path);
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), "kube-system");
    let now = chrono_now();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "manifest-"},
        "involvedObject": {"kind": "Manifest", "name": file, "namespace": "kube-system"},
        "reason": "ApplyFailed",
        "message": message,
        "type": "Warning",
        "source": {"component": "skiff-manifests"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    match serde_json::from_value(event) {
        Ok(ev) => {
            if let Err(e) = events.create(&PostParams::default(), &ev).await {
                tracing::warn!(error = %e, "cannot record the manifest event");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot build the manifest event"),
    }
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_files_parse_and_skip_empty_documents() {
        let docs = parse("---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n")
            .expect("parses");
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn a_document_without_kind_or_name_is_refused_with_the_field() {
        let e = parse("apiVersion: v1\nmetadata:\n  name: a\n").expect_err("no kind");
        assert!(e.to_string().contains("field kind is required"), "{e}");
        let e = parse("apiVersion: v1\nkind: ConfigMap\n").expect_err("no name");
        assert!(e.to_string().contains("metadata.name"), "{e}");
    }

    #[test]
    fn objects_are_pruned_when_their_file_is_gone_or_no_longer_holds_them() {
        let r = |name: &str| ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: name.into(),
        };
        let owned = BTreeMap::from([("a.yaml".to_string(), BTreeSet::from([r("kept")]))]);
        let files = BTreeSet::from(["a.yaml".to_string(), "broken.yaml".to_string()]);
        assert!(!is_stale(&r("kept"), "a.yaml", &owned, &files));
        assert!(is_stale(&r("dropped"), "a.yaml", &owned, &files));
        assert!(is_stale(&r("x"), "deleted.yaml", &owned, &files));
        // A file that failed to apply keeps what it had.
        assert!(!is_stale(&r("y"), "broken.yaml", &owned, &files));
    }

    #[test]
    fn broken_yaml_is_reported_not_panicked() {
        assert!(parse("kind: [unclosed\n").is_err());
    }

    #[test]
    fn group_and_version_split_from_api_version() {
        let g = gvk_of(&json!({"apiVersion": "apps/v1", "kind": "Deployment"})).expect("gvk");
        assert_eq!(
            (g.group.as_str(), g.version.as_str(), g.kind.as_str()),
            ("apps", "v1", "Deployment")
        );
        let g = gvk_of(&json!({"apiVersion": "v1", "kind": "Pod"})).expect("gvk");
        assert_eq!(g.group, "");
    }
}

//! A DaemonSet's revision history as ControllerRevisions, as Kubernetes
//! keeps it: one per pod template (`<name>-<hash>`, labelled with the
//! DaemonSet's selector and `controller-revision-hash`, controlled by the
//! DaemonSet), numbered in the order the templates became current, with
//! `data` the strategic merge patch that restores the template. That is
//! what `kubectl rollout history ds` lists and `kubectl rollout undo ds`
//! applies. Old revisions beyond `revisionHistoryLimit` (default 10) that
//! no live pod still runs are deleted.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;

use super::rollout::REVISION_HASH;
use super::Error;
use crate::podutil::new_controller_ref;

/// The revision `data` restoring `ds`'s template: `{"spec": {"template":
/// {..., "$patch": "replace"}}}`.
pub fn patch_data(ds: &DaemonSet) -> serde_json::Value {
    let mut template = ds
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// What to do with the history, given the DaemonSet's revisions.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No revision for the current template: create it with this number.
    Create(i64),
    /// The current template's revision is older than another (a rollback):
    /// renumber it.
    Renumber(String, i64),
    /// The current template has the newest revision.
    Current,
}

/// Decides the step for the current template's revision `name`.
pub fn step(revisions: &[ControllerRevision], name: &str) -> Step {
    let newest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    match revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
    {
        None => Step::Create(newest + 1),
        Some(r) if r.revision < newest => Step::Renumber(name.to_string(), newest + 1),
        Some(_) => Step::Current,
    }
}

/// Revisions to delete: the oldest beyond `limit`, never the current one
/// nor one a live pod runs.
pub fn to_prune(
    revisions: &[ControllerRevision],
    current: &str,
    in_use: &HashSet<String>,
    limit: usize,
) -> Vec<String> {
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(current))
        .filter(|r| {
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH));
            !hash.is_some_and(|h| in_use.contains(h))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(limit);
    old.into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

/// Brings `ds`'s history up to date for template `hash`; `in_use` holds
/// the hashes live pods carry.
pub async fn sync(
    client: &kube::Client,
    ds: &DaemonSet,
    hash: &str,
    in_use: &HashSet<String>,
) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let match_labels: BTreeMap<String, String> = ds
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let selector = match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();
    let name = format!("{}-{hash}", ds.name_any());
    match step(&revisions, &name) {
        Step::Create(revision) => {
            let Some(owner) = new_controller_ref("apps/v1", "DaemonSet", &ds.metadata) else {
                return Ok(());
            };
            let mut labels = match_labels.clone();
            labels.insert(REVISION_HASH.to_string(), hash.to_string());
            let object = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: ds.metadata.annotations.as_ref().and_then(|a| {
                        a.get("kubernetes.io/change-cause").map(|cause| {
                            BTreeMap::from([(
                                "kubernetes.io/change-cause".to_string(),
                                cause.clone(),
                            )])
                        })
                    }),
                    owner_references: Some(vec![owner]),
                    ..Default::default()
                },
                data: Some(RawExtension(patch_data(ds))),
                revision,
            };
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {}
                // A lagging list: the next sync sees it.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Step::Renumber(name, revision) => {
            let patch = serde_json::json!({ "revision": revision });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Step::Current => {}
    }
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    for old in to_prune(&revisions, &name, in_use, limit) {
        match api.delete(&old, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, hash: &str, revision: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(REVISION_HASH.into(), hash.into())])),
                ..Default::default()
            },
            data: None,
            revision,
        }
    }

    #[test]
    fn a_new_template_gets_the_next_revision_number() {
        assert_eq!(step(&[], "ds-a"), Step::Create(1));
        let history = [rev("ds-a", "a", 1), rev("ds-b", "b", 2)];
        assert_eq!(step(&history, "ds-c"), Step::Create(3));
        assert_eq!(step(&history, "ds-b"), Step::Current);
    }

    #[test]
    fn rolling_back_to_an_old_template_renumbers_its_revision_as_the_newest() {
        let history = [rev("ds-a", "a", 1), rev("ds-b", "b", 2)];
        assert_eq!(step(&history, "ds-a"), Step::Renumber("ds-a".into(), 3));
    }

    #[test]
    fn pruning_keeps_the_limit_the_current_revision_and_revisions_pods_still_run() {
        let history: Vec<ControllerRevision> = (1..=5)
            .map(|i| rev(&format!("ds-{i}"), &format!("h{i}"), i))
            .collect();
        let in_use = HashSet::from(["h1".to_string()]);
        // Old ones: 1 (in use), 2, 3, 4; current 5; limit 1 keeps the newest old one.
        assert_eq!(to_prune(&history, "ds-5", &in_use, 1), ["ds-2", "ds-3"]);
        assert!(to_prune(&history, "ds-5", &in_use, 10).is_empty());
    }

    #[test]
    fn the_revision_data_replaces_the_whole_template() {
        let ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "main", "image": "agent:1"}]}}}
        }))
        .expect("daemonset");
        let data = patch_data(&ds);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "agent:1"
        );
        assert!(data["spec"].get("selector").is_none());
    }
}

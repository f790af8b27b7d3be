//! Adoption and release of dependents by a controller, as Kubernetes'
//! `ControllerRefManager`: a controller owns the objects whose controller
//! ownerReference names it and which its selector matches; it adopts
//! matching orphans and releases owned objects that stopped matching.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::podutil::{controller_ref, selector_matches};

/// What a controller does about one candidate dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and still matching.
    Owned,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let it go.
    Release,
    /// Someone else's, or not ours and not matching.
    Ignore,
}

/// Decides what the controller with `owner_uid` and `selector` does with an
/// object of `meta`. A controller being deleted neither adopts nor releases,
/// and nobody adopts an object that is being deleted.
pub fn decide(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    meta: &ObjectMeta,
) -> Claim {
    let labels = meta.labels.clone().unwrap_or_default();
    let matches = selector_matches(selector, &labels);
    match controller_ref(meta) {
        Some(r) if r.uid == owner_uid => {
            if matches {
                Claim::Owned
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_deleting && meta.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Adds `owner` as controller of the object (guarded by its uid and
/// resourceVersion, so a concurrent change makes this fail and retry).
pub async fn adopt<K>(api: &Api<K>, meta: &ObjectMeta, owner: OwnerReference) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    patch_owner_refs(api, meta, refs).await
}

/// Removes the controller ownerReference with `owner_uid` from the object.
pub async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner_uid: &str) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    patch_owner_refs(api, meta, refs).await
}

async fn patch_owner_refs<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    refs: Vec<OwnerReference>,
) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let patch = json!({
        "metadata": {
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
            "ownerReferences": refs,
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::new_controller_ref;
    use std::collections::BTreeMap;

    fn selector() -> LabelSelector {
        LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        }
    }

    fn meta(app: &str, owner: Option<&str>) -> ObjectMeta {
        let owner_meta = ObjectMeta {
            name: Some("rs".into()),
            uid: owner.map(str::to_string),
            ..Default::default()
        };
        ObjectMeta {
            name: Some("p".into()),
            labels: Some(BTreeMap::from([("app".into(), app.into())])),
            owner_references: owner
                .and_then(|_| new_controller_ref("apps/v1", "ReplicaSet", &owner_meta))
                .map(|r| vec![r]),
            ..Default::default()
        }
    }

    #[test]
    fn a_matching_orphan_is_adopted() {
        assert_eq!(
            decide("u1", false, &selector(), &meta("web", None)),
            Claim::Adopt
        );
    }

    #[test]
    fn an_owned_object_that_stopped_matching_is_released() {
        assert_eq!(
            decide("u1", false, &selector(), &meta("db", Some("u1"))),
            Claim::Release
        );
    }

    #[test]
    fn objects_of_another_controller_are_ignored_even_if_they_match() {
        assert_eq!(
            decide("u1", false, &selector(), &meta("web", Some("u2"))),
            Claim::Ignore
        );
    }

    #[test]
    fn a_controller_being_deleted_neither_adopts_nor_releases() {
        assert_eq!(
            decide("u1", true, &selector(), &meta("web", None)),
            Claim::Ignore
        );
        assert_eq!(
            decide("u1", true, &selector(), &meta("db", Some("u1"))),
            Claim::Ignore
        );
    }
}

//! Small pure helpers over pods, label selectors and ownerReferences shared
//! by the workload controllers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// The workloads of kind `K` that care about a pod: its controller when
/// that is a `K`, or, for an orphan, every `K` of its namespace whose
/// selector matches (candidates for adoption). `selector` reads a
/// workload's label selector.
pub fn pod_owners<K>(
    store: &kube::runtime::reflector::Store<K>,
    pod: &Pod,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    use kube::runtime::reflector::ObjectRef;
    use kube::ResourceExt;
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_ref(&pod.metadata) {
        return if r.kind == K::kind(&()) {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    let labels = pod.labels();
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| selector(o).is_some_and(|s| selector_matches(s, labels)))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Whether an API error says the object is gone (404), which a controller
/// whose object was deleted meanwhile treats as nothing left to do.
pub fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Writes `status` through the status subresource with a merge patch; an
/// object deleted meanwhile is not an error.
pub async fn write_status<K>(
    api: &kube::Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "status": status });
    match api
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_gone(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `labels` satisfy `selector`. An empty selector selects nothing:
/// a workload with an empty selector would otherwise claim every pod.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.match_labels.as_ref();
    let exprs = selector.match_expressions.as_deref().unwrap_or_default();
    if match_labels.is_none_or(BTreeMap::is_empty) && exprs.is_empty() {
        return false;
    }
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && exprs.iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// An ownerReference naming `owner` as the controller of a dependent.
pub fn new_controller_ref(
    api_version: &str,
    kind: &str,
    owner: &ObjectMeta,
) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone()?,
        uid: owner.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Not finished and not being deleted: a pod that counts toward `replicas`.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's Ready condition last turned True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// How long until a ready pod becomes available, if it is not yet.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let since = ready_since(pod)??;
    let at = since.as_second() + i64::from(min_ready_seconds);
    let left = at - now.as_second();
    (left > 0).then(|| std::time::Duration::from_secs(left as u64))
}

/// Whether two API values are equal once nulls, empty lists and empty
/// objects are dropped, as the API server may drop them on a round trip.
pub fn semantic_eq<T: serde::Serialize>(a: &T, b: &T) -> bool {
    let norm = |v: &T| {
        serde_json::to_value(v)
            .ok()
            .and_then(crate::deployment::hash::normalized)
    };
    norm(a) == norm(b)
}

/// `namespace/name` of an object's metadata.
pub fn key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
pub mod testing {
    //! Builders for test pods: `pod("a").ready_at(10).node("n1")`.
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    pub fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(ts(0))),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    pub trait PodExt {
        fn node(self, n: &str) -> Self;
        fn phase(self, p: &str) -> Self;
        fn ready_at(self, secs: i64) -> Self;
        fn created_at(self, secs: i64) -> Self;
    }

    impl PodExt for Pod {
        fn node(mut self, n: &str) -> Self {
            if let Some(s) = self.spec.as_mut() {
                s.node_name = Some(n.into());
            }
            self
        }
        fn phase(mut self, p: &str) -> Self {
            if let Some(s) = self.status.as_mut() {
                s.phase = Some(p.into());
            }
            self
        }
        fn ready_at(mut self, secs: i64) -> Self {
            if let Some(s) = self.status.as_mut() {
                s.conditions = Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(ts(secs))),
                    ..Default::default()
                }]);
            }
            self
        }
        fn created_at(mut self, secs: i64) -> Self {
            self.metadata.creation_timestamp = Some(Time(ts(secs)));
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_selector_selects_nothing() {
        assert!(!selector_matches(
            &LabelSelector::default(),
            &labels(&[("a", "b")])
        ));
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "db")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("app", "api")])));
    }

    #[test]
    fn a_pod_is_available_only_after_min_ready_seconds() {
        let p = pod("a").ready_at(100);
        assert!(is_available(&p, 0, ts(100)));
        assert!(!is_available(&p, 10, ts(105)));
        assert!(is_available(&p, 10, ts(110)));
        assert_eq!(
            until_available(&p, 10, ts(105)),
            Some(std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn terminating_and_finished_pods_are_not_active() {
        assert!(is_active(&pod("a")));
        assert!(!is_active(&pod("a").phase("Succeeded")));
        let mut p = pod("a");
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(1)));
        assert!(!is_active(&p));
    }
}

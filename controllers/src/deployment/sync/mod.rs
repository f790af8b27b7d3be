//! One sync of one Deployment: claim its ReplicaSets, find or create the
//! new one, then scale (paused or scaling event), roll (RollingUpdate or
//! Recreate), prune history and write status.

mod rollout;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::hash::{equal_ignoring_hash, template_hash, POD_TEMPLATE_HASH};
use super::rolling::{self, RsView};
use super::status;
use super::{Context, Error, DESIRED_REPLICAS, MAX_REPLICAS, REVISION};
use crate::claim::{self, Claim};
use crate::events::EventType;
use crate::podutil::{controller_ref, is_active, is_available, new_controller_ref};

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Active and available pods per ReplicaSet uid, from the pod store.
type PodCounts = HashMap<String, (i32, i32)>;

fn count_pods(ctx: &Context, ns: &str, rss: &[ReplicaSet], now: Timestamp) -> PodCounts {
    let min_ready: HashMap<String, i32> = rss
        .iter()
        .filter_map(|rs| {
            let m = rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0);
            rs.uid().map(|u| (u, m))
        })
        .collect();
    let mut counts = PodCounts::new();
    for pod in ctx.pods.state() {
        if pod.namespace().as_deref() != Some(ns) || !is_active(&pod) {
            continue;
        }
        let Some(owner) = controller_ref(&pod.metadata) else {
            continue;
        };
        let Some(min_ready) = min_ready.get(&owner.uid) else {
            continue;
        };
        let entry = counts.entry(owner.uid.clone()).or_default();
        entry.0 += 1;
        if is_available(&pod, *min_ready, now) {
            entry.1 += 1;
        }
    }
    counts
}

fn view(rs: &ReplicaSet, counts: &PodCounts) -> RsView {
    let (pods, available) = rs
        .uid()
        .and_then(|u| counts.get(&u).copied())
        .unwrap_or((0, 0));
    RsView {
        name: rs.name_any(),
        replicas: replicas(rs),
        pods,
        available: available.min(replicas(rs)),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        max_replicas: rs
            .annotations()
            .get(MAX_REPLICAS)
            .and_then(|v| v.parse().ok()),
    }
}

pub(super) struct Sync<'a> {
    ctx: &'a Context,
    d: &'a Deployment,
    rs_api: Api<ReplicaSet>,
    /// The Deployment's ReplicaSets, updated in place as they are changed.
    rss: Vec<ReplicaSet>,
    desired: i32,
    surge: i32,
    /// Resolved maxUnavailable, capped by `desired` (0 for Recreate).
    unavailable: i32,
    recreate: bool,
    /// The status being built (conditions set along the way).
    pending: DeploymentStatus,
    counts: PodCounts,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    pub(super) async fn new(ctx: &'a Context, d: &'a Deployment) -> Result<Sync<'a>, Error> {
        let ns = d.namespace().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        let desired = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let recreate = strategy.type_.as_deref() == Some("Recreate");
        let (surge, unavailable) = if recreate {
            (0, 0)
        } else {
            let ru = strategy.rolling_update.unwrap_or_default();
            let (s, u) = rolling::resolve_fenceposts(
                ru.max_surge.as_ref(),
                ru.max_unavailable.as_ref(),
                desired,
            )?;
            (s, rolling::max_unavailable(u, desired))
        };
        let mut sync = Sync {
            ctx,
            d,
            rs_api: Api::namespaced(ctx.client.clone(), &ns),
            rss: Vec::new(),
            desired,
            surge,
            unavailable,
            recreate,
            pending: d.status.clone().unwrap_or_default(),
            counts: PodCounts::new(),
            now: Timestamp::now(),
        };
        sync.claim_replicasets(&ns, &spec.selector).await?;
        sync.counts = count_pods(ctx, &ns, &sync.rss, sync.now);
        Ok(sync)
    }

    async fn claim_replicasets(
        &mut self,
        ns: &str,
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<(), Error> {
        let uid = self.d.uid().unwrap_or_default();
        let candidates: Vec<_> = self
            .ctx
            .replicasets
            .state()
            .into_iter()
            .filter(|rs| rs.namespace().as_deref() == Some(ns))
            .collect();
        for rs in candidates {
            match claim::decide(&uid, false, selector, &rs.metadata) {
                Claim::Owned => self.rss.push(rs.as_ref().clone()),
                Claim::Adopt => {
                    let Some(owner) = new_controller_ref("apps/v1", "Deployment", &self.d.metadata)
                    else {
                        continue;
                    };
                    self.rss
                        .push(claim::adopt(&self.rs_api, &rs.metadata, owner).await?);
                }
                Claim::Release => {
                    claim::release(&self.rs_api, &rs.metadata, &uid).await?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(())
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused) == Some(true)
    }

    fn template(&self) -> PodTemplateSpec {
        self.d.spec.clone().unwrap_or_default().template
    }

    pub(super) async fn run(mut self) -> Result<Action, Error> {
        if self.rss.iter().any(|rs| self.ctx.is_stale(rs)) {
            // Our own write will arrive on the watch and trigger us again.
            return Ok(Action::requeue(std::time::Duration::from_millis(200)));
        }
        self.check_paused_condition();
        if self.paused() || self.is_scaling_event() {
            self.scale().await?;
            if self.paused() {
                self.cleanup().await?;
            }
            return self.write_status(false).await;
        }
        if self.recreate {
            self.rollout_recreate().await
        } else {
            self.rollout_rolling().await
        }
    }

    fn deadline(&self) -> Option<i32> {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
    }

    fn check_paused_condition(&mut self) {
        if self.deadline().is_none() {
            return;
        }
        let cond = status::get(&self.pending, status::PROGRESSING);
        let paused_cond = cond.and_then(|c| c.reason.as_deref()) == Some(status::PAUSED);
        if self.paused() && !paused_cond {
            let c = status::condition(
                status::PROGRESSING,
                "Unknown",
                status::PAUSED,
                "Deployment is paused".into(),
                self.now,
            );
            status::set(&mut self.pending, c);
        } else if !self.paused() && paused_cond {
            let c = status::condition(
                status::PROGRESSING,
                "Unknown",
                status::RESUMED,
                "Deployment is resumed".into(),
                self.now,
            );
            status::set(&mut self.pending, c);
        }
    }

    /// Some active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&self) -> bool {
        self.rss.iter().filter(|rs| replicas(rs) > 0).any(|rs| {
            rs.annotations()
                .get(DESIRED_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|v| v != self.desired)
        })
    }

    fn new_index(&self) -> Option<usize> {
        let template = self.template();
        self.rss
            .iter()
            .enumerate()
            .filter(|(_, rs)| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignoring_hash(t, &template))
            })
            .min_by_key(|(_, rs)| rs.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map(|(i, _)| i)
    }

    fn copied_annotations(&self) -> BTreeMap<String, String> {
        self.d
            .annotations()
            .iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Finds the ReplicaSet matching the template (bumping its revision
    /// past every old one), or creates it when `create`.
    async fn new_replicaset(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let existing = self.new_index();
        let max_old = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != existing)
            .map(|(_, rs)| revision(rs))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = existing {
            let rs = &self.rss[i];
            let mut annotations = json!({});
            for (k, v) in self.copied_annotations() {
                if rs.annotations().get(&k) != Some(&v) {
                    annotations[k] = json!(v);
                }
            }
            if revision(rs) < new_revision {
                annotations[REVISION] = json!(new_revision.to_string());
            }
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let min_ready_changed = rs_min_ready.unwrap_or(0) != min_ready.unwrap_or(0);
            if annotations.as_object().is_some_and(|a| !a.is_empty()) || min_ready_changed {
                let patch = json!({
                    "metadata": { "annotations": annotations },
                    "spec": { "minReadySeconds": min_ready.unwrap_or(0) },
                });
                let name = rs.name_any();
                self.rss[i] = self
                    .rs_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                self.ctx.record_write(&self.rss[i]);
            }
            if status::get(&self.pending, status::PROGRESSING).is_none()
                && self.deadline().is_some()
            {
                let c = status::condition(
                    status::PROGRESSING,
                    "True",
                    status::FOUND_NEW_RS,
                    format!("Found new replica set \"{}\"", self.rss[i].name_any()),
                    self.now,
                );
                status::set(&mut self.pending, c);
            }
            self.set_deployment_revision(revision(&self.rss[i])).await?;
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collision = self.pending.collision_count;
        let template = self.template();
        let hash = template_hash(&template, collision);
        let name = format!("{}-{}", self.d.name_any(), hash);
        let mut rs_template = template.clone();
        rs_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let spec = self.d.spec.clone().unwrap_or_default();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let size = if self.recreate {
            0
        } else {
            let views: Vec<RsView> = self.rss.iter().map(|rs| view(rs, &self.counts)).collect();
            rolling::new_rs_replicas(self.desired, self.surge, &views, 0)
        };
        let mut annotations = self.copied_annotations();
        annotations.insert(REVISION.into(), new_revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), self.desired.to_string());
        annotations.insert(MAX_REPLICAS.into(), (self.desired + self.surge).to_string());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: rs_template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: new_controller_ref("apps/v1", "Deployment", &self.d.metadata)
                    .map(|r| vec![r]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: min_ready,
                selector,
                template: Some(rs_template),
            }),
            status: None,
        };
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let current = self.rs_api.get(&name).await?;
                let ours = controller_ref(&current.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignoring_hash(t, &template));
                if ours && same {
                    // Our store lagged behind our own create.
                    self.rss.push(current);
                    return Ok(Some(self.rss.len() - 1));
                }
                self.pending.collision_count = Some(collision.unwrap_or(0) + 1);
                let patch = json!({ "status": { "collisionCount": self.pending.collision_count } });
                Api::<Deployment>::namespaced(
                    self.ctx.client.clone(),
                    &self.d.namespace().unwrap_or_default(),
                )
                .patch_status(
                    &self.d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                return Err(Error::HashCollision(name));
            }
            Err(e) => return Err(e.into()),
        };
        if size > 0 {
            self.event(format!("Scaled up replica set {name} to {size}"));
        }
        if self.deadline().is_some() {
            let c = status::condition(
                status::PROGRESSING,
                "True",
                status::NEW_RS_CREATED,
                format!("Created new replica set \"{name}\""),
                self.now,
            );
            status::set(&mut self.pending, c);
        }
        self.rss.push(created);
        self.set_deployment_revision(new_revision).await?;
        Ok(Some(self.rss.len() - 1))
    }

    async fn set_deployment_revision(&self, revision: i64) -> Result<(), Error> {
        let rev = revision.to_string();
        if self.d.annotations().get(REVISION) == Some(&rev) {
            return Ok(());
        }
        let patch = json!({ "metadata": { "annotations": { REVISION: rev } } });
        Api::<Deployment>::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        )
        .patch(
            &self.d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    fn event(&self, message: String) {
        self.ctx
            .recorder
            .publish(self.d, EventType::Normal, "ScalingReplicaSet", message);
    }

    /// Sets a ReplicaSet's size and its desired/max annotations.
    async fn scale_rs(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        let rs = &self.rss[i];
        let from = replicas(rs);
        let desired = self.desired.to_string();
        let max = (self.desired + self.surge).to_string();
        let annotations_ok = rs.annotations().get(DESIRED_REPLICAS) == Some(&desired)
            && rs.annotations().get(MAX_REPLICAS) == Some(&max);
        if from == size && annotations_ok {
            return Ok(false);
        }
        let patch = json!({
            "metadata": { "annotations": { DESIRED_REPLICAS: desired, MAX_REPLICAS: max } },
            "spec": { "replicas": size },
        });
        let name = rs.name_any();
        self.rss[i] = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.ctx.record_write(&self.rss[i]);
        if from != size {
            let verb = if size > from { "up" } else { "down" };
            self.event(format!(
                "Scaled {verb} replica set {name} to {size} from {from}"
            ));
        }
        Ok(from != size)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.rss.iter().position(|rs| rs.name_any() == name)
    }
}

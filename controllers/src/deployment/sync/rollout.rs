//! The rollout steps of a sync: scaling (paused or scaling event),
//! RollingUpdate, Recreate, history cleanup and status.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::{replicas, revision, view, Sync};
use crate::deployment::rolling::{self, RsView};
use crate::deployment::status;
use crate::deployment::{Error, DESIRED_REPLICAS};
use crate::podutil::controller_ref;

impl Sync<'_> {
    /// Scaling without rolling (`sync` upstream): paused Deployments and
    /// replica count changes.
    pub(super) async fn scale(&mut self) -> Result<(), Error> {
        let new = self.new_replicaset(false).await?;
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|i| replicas(&self.rss[*i]) > 0)
            .collect();
        let only = match active.as_slice() {
            [i] => Some(*i),
            [] => new.or_else(|| {
                (0..self.rss.len()).max_by_key(|i| {
                    self.rss[*i]
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0)
                })
            }),
            _ => None,
        };
        if let Some(i) = only {
            self.scale_rs(i, self.desired).await?;
            return Ok(());
        }
        let saturated = new.is_some_and(|i| {
            let rs = &self.rss[i];
            let v = view(rs, &self.counts);
            v.replicas == self.desired
                && rs.annotations().get(DESIRED_REPLICAS) == Some(&self.desired.to_string())
                && rs.status.as_ref().and_then(|s| s.available_replicas) == Some(self.desired)
        });
        if saturated {
            for i in active.into_iter().filter(|i| Some(*i) != new) {
                self.scale_rs(i, 0).await?;
            }
            return Ok(());
        }
        if !self.recreate {
            let views: Vec<RsView> = active
                .iter()
                .map(|i| view(&self.rss[*i], &self.counts))
                .collect();
            let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            for (name, size) in
                rolling::proportional_sizes(self.desired, self.surge, status_replicas, &views)
            {
                if let Some(i) = self.index_of(&name) {
                    self.scale_rs(i, size).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn rollout_rolling(mut self) -> Result<Action, Error> {
        let Some(new) = self.new_replicaset(true).await? else {
            return self.write_status(true).await;
        };
        let new_size = replicas(&self.rss[new]);
        if new_size > self.desired {
            self.scale_rs(new, self.desired).await?;
            return self.write_status(true).await;
        }
        if new_size < self.desired {
            let views: Vec<RsView> = self.rss.iter().map(|rs| view(rs, &self.counts)).collect();
            let target = rolling::new_rs_replicas(self.desired, self.surge, &views, new_size);
            if target != new_size {
                self.scale_rs(new, target).await?;
                return self.write_status(true).await;
            }
        }
        let new_view = view(&self.rss[new], &self.counts);
        let mut old: Vec<RsView> = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, rs)| *i != new && replicas(rs) > 0)
            .map(|(_, rs)| view(rs, &self.counts))
            .collect();
        if rolling::scale_down_old(self.desired, self.unavailable, Some(&new_view), &mut old) {
            for v in old {
                if let Some(i) = self.index_of(&v.name) {
                    self.scale_rs(i, v.replicas).await?;
                }
            }
            return self.write_status(true).await;
        }
        self.write_status(true).await
    }

    pub(super) async fn rollout_recreate(mut self) -> Result<Action, Error> {
        let new = self.new_replicaset(false).await?;
        let old_active: Vec<usize> = (0..self.rss.len())
            .filter(|i| Some(*i) != new && replicas(&self.rss[*i]) > 0)
            .collect();
        let mut scaled = false;
        for i in old_active {
            scaled |= self.scale_rs(i, 0).await?;
        }
        if scaled || self.old_pods_running(new) {
            return self.write_status(true).await;
        }
        let new = match new {
            Some(i) => i,
            None => match self.new_replicaset(true).await? {
                Some(i) => i,
                None => return self.write_status(true).await,
            },
        };
        self.scale_rs(new, self.desired).await?;
        self.write_status(true).await
    }

    /// Whether pods of old ReplicaSets still exist (terminating included).
    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let old_uids: Vec<String> = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new)
            .filter_map(|(_, rs)| rs.uid())
            .collect();
        self.ctx.pods.state().iter().any(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
                && controller_ref(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
        })
    }

    /// Deletes the oldest empty ReplicaSets beyond `revisionHistoryLimit`.
    pub(super) async fn cleanup(&mut self) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let new = self.new_index();
        let mut old: Vec<&ReplicaSet> = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, rs)| Some(*i) != new && rs.metadata.deletion_timestamp.is_none())
            .map(|(_, rs)| rs)
            .collect();
        let excess = old.len() as i64 - i64::from(limit.max(0));
        if excess <= 0 {
            return Ok(());
        }
        old.sort_by_key(|rs| {
            (
                revision(rs),
                rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        let mut deleted = 0;
        for rs in old {
            if deleted >= excess {
                break;
            }
            let st = rs.status.clone().unwrap_or_default();
            if replicas(rs) != 0
                || st.replicas != 0
                || st.observed_generation < rs.metadata.generation
            {
                continue;
            }
            match self
                .rs_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            deleted += 1;
        }
        Ok(())
    }

    pub(super) async fn write_status(mut self, rollout: bool) -> Result<Action, Error> {
        let new = self.new_index();
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new_rs = new.map(|i| &self.rss[i]);
        let mut st = status::calculate(
            Some(&self.pending),
            &all,
            new_rs,
            self.desired,
            self.unavailable,
            self.d.metadata.generation,
            self.now,
        );
        if rollout {
            status::update_progress(
                &self.pending,
                &mut st,
                self.desired,
                self.d.metadata.generation,
                self.deadline(),
                new_rs.map(|rs| rs.name_any()).as_deref(),
                self.now,
            );
            if status::complete(self.desired, self.d.metadata.generation, &st) {
                self.cleanup().await?;
            }
        }
        if self.d.status.as_ref() != Some(&st) {
            let patch = json!({ "status": st });
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
        }
        // Come back when the progress deadline would pass.
        let requeue = self
            .deadline()
            .filter(|_| rollout && !status::complete(self.desired, self.d.metadata.generation, &st))
            .and_then(|secs| status::progress_deadline_at(&st, secs))
            .map(|at| {
                let left = (at.as_second() - self.now.as_second()).max(0) as u64;
                Duration::from_secs(left + 1)
            });
        Ok(match requeue {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        })
    }
}

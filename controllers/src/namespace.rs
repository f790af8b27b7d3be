//! Namespace lifecycle: a namespace being deleted (phase Terminating, with
//! the `kubernetes` finalizer in `spec.finalizers`) has every namespaced
//! object in it deleted; once none remain, the finalizer is removed through
//! `PUT namespaces/{name}/finalize` and the API server deletes it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::OnceCell;
use tracing::{info_span, Instrument};

use crate::resources::Kinds;

/// The finalizer of `spec.finalizers` this controller is responsible for.
pub const FINALIZER: &str = "kubernetes";

/// What can go wrong emptying one namespace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the namespace is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// `finalize` could not be encoded.
    #[error("cannot encode the namespace: {0}")]
    Encode(#[from] serde_json::Error),
}

struct Context {
    client: Client,
    kinds: OnceCell<Kinds>,
}

/// Runs the namespace controller until its watch ends.
pub async fn run(client: Client, _config: &crate::Config) {
    let ctx = Arc::new(Context {
        client: client.clone(),
        kinds: OnceCell::new(),
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(ns: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = ns.name_any(), %error, "namespace cleanup failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = ns.name_any());
    async move {
        let pending = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
        if ns.metadata.deletion_timestamp.is_none() || !pending {
            return Ok(Action::await_change());
        }
        let name = ns.name_any();
        let kinds = ctx
            .kinds
            .get_or_try_init(|| Kinds::discover(ctx.client.clone()))
            .await?;
        let remaining = delete_contents(&ctx.client, kinds, &name).await?;
        if remaining > 0 {
            tracing::debug!(remaining, "waiting for the namespace's objects to go");
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        let mut finalized = (*ns).clone();
        if let Some(spec) = finalized.spec.as_mut() {
            spec.finalizers = Some(
                spec.finalizers
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != FINALIZER)
                    .collect(),
            );
        }
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!("namespace emptied and finalized");
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

/// Deletes every namespaced object of `ns`; returns how many still exist.
async fn delete_contents(client: &Client, kinds: &Kinds, ns: &str) -> Result<usize, Error> {
    let mut remaining = 0;
    for kind in kinds.all.iter().filter(|k| k.namespaced) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind.resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
            Err(e) => return Err(e.into()),
        };
        remaining += list.items.len();
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        for obj in list
            .items
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
        {
            match api.delete(&obj.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(remaining)
}

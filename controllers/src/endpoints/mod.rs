//! The Endpoints and EndpointSlice controllers, in one loop: for each
//! Service with a selector, the Endpoints object of the same name (ready
//! pods in `addresses`, unready ones in `notReadyAddresses`, terminating
//! ones left out) and its EndpointSlices (every pod, with `ready`,
//! `serving` and `terminating` conditions), rewritten whenever a selected
//! pod changes. Services without a selector are left alone.
//!
//! Watch-driven: a pod's readiness change reaches the Endpoints in one
//! reconcile, with no polling. Deleting a Service deletes its Endpoints;
//! its slices go with it through their ownerReferences.

mod slices;
mod subsets;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info_span, Instrument};

use crate::podutil::semantic_eq;
use crate::podwatch::watch_pods;
pub use slices::{CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use subsets::{is_headless, selects, service_selector};

/// How long a created slice may stay unseen by the watch before the
/// controller stops waiting for it.
const CREATED_SLICE_TTL: Duration = Duration::from_secs(5);

/// What can go wrong reconciling one Service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the Service is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A store's writer went away (its watch task ended).
    #[error("a watch store is gone")]
    StoreGone,
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    /// Slices created but not yet seen by the watch, by Service key: a
    /// reconcile waits for them rather than create duplicates.
    created: Mutex<HashMap<String, (HashSet<String>, Instant)>>,
}

fn store<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, config).default_backoff())
        .touched_objects();
    (reader, stream)
}

/// Runs the Endpoints and EndpointSlice controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let (pods, pod_events) = watch_pods(&config.shared_pods, client.clone(), None);
    let (endpoints, endpoint_events) = store(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default(),
    );
    let (slices, slice_events) = store(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}")),
    );
    let (services, writer) = reflector::store();
    let cleanup = client.clone();
    let service_events = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .inspect_ok(move |event| {
        if let Event::Delete(svc) = event {
            delete_endpoints(cleanup.clone(), svc);
        }
    })
    .touched_objects();
    let ctx = Arc::new(Context {
        client,
        pods,
        endpoints: endpoints.clone(),
        slices,
        created: Mutex::new(HashMap::new()),
    });
    let for_pods = services.clone();
    Controller::for_stream(service_events, services)
        .watches_stream(pod_events, move |pod| {
            services_of_pod(&for_pods, &endpoints, &pod)
        })
        .watches_stream(endpoint_events, |ep: Endpoints| {
            Some(ObjectRef::<Service>::new(&ep.name_any()).within(&ep.namespace()?))
        })
        .watches_stream(slice_events, |slice: EndpointSlice| {
            let svc = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::<Service>::new(svc).within(&slice.namespace()?))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Deletes the Endpoints of a deleted Service, in the background.
fn delete_endpoints(client: Client, svc: &Service) {
    let (Some(ns), name) = (svc.namespace(), svc.name_any()) else {
        return;
    };
    tokio::spawn(async move {
        let api: Api<Endpoints> = Api::namespaced(client, &ns);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(error) => tracing::warn!(%error, service = %name, "cannot delete Endpoints"),
        }
    });
}

/// The Services a pod event concerns: those selecting it now, and those
/// whose Endpoints still list it (its labels may have changed).
fn services_of_pod(
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    services
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            selects(s, pod) || {
                let key = ObjectRef::new(&s.name_any()).within(&ns);
                endpoints.get(&key).is_some_and(|e| lists_pod(&e, &name))
            }
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn lists_pod(ep: &Endpoints, pod: &str) -> bool {
    ep.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .any(|a| a.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(pod))
    })
}

fn error_policy(svc: Arc<Service>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(service = svc.name_any(), namespace = svc.namespace(), %error, "endpoints sync failed");
    Action::requeue(Duration::from_millis(500))
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        service = svc.name_any(),
        namespace = svc.namespace().unwrap_or_default()
    );
    sync(svc, ctx).instrument(span).await
}

async fn sync(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if service_selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    for ready in [
        ctx.pods.wait_until_ready().await,
        ctx.endpoints.wait_until_ready().await,
        ctx.slices.wait_until_ready().await,
    ] {
        ready.map_err(|_| Error::StoreGone)?;
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let all_pods = ctx.pods.state();
    let pods: Vec<&Pod> = all_pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selects(&svc, p))
        .collect();
    sync_endpoints(&ctx, &svc, &ns, &name, &pods).await?;
    sync_slices(&ctx, &svc, &ns, &name, &pods).await
}

async fn sync_endpoints(
    ctx: &Context,
    svc: &Service,
    ns: &str,
    name: &str,
    pods: &[&Pod],
) -> Result<(), Error> {
    let subsets = subsets::subsets(svc, pods);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(slices::HEADLESS_LABEL.into(), String::new());
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let existing = ctx.endpoints.get(&ObjectRef::new(name).within(ns));
    if let Some(e) = &existing {
        let have = e.labels();
        let labels_ok = labels.iter().all(|(k, v)| have.get(k) == Some(v));
        if labels_ok && semantic_eq(&e.subsets.clone().unwrap_or_default(), &subsets) {
            return Ok(());
        }
    }
    tracing::debug!(subsets = subsets.len(), "writing Endpoints");
    if existing.is_some() {
        let patch = json!({ "metadata": { "labels": labels }, "subsets": subsets });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ep = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        subsets: Some(subsets),
    };
    api.create(&PostParams::default(), &ep).await?;
    Ok(())
}

async fn sync_slices(
    ctx: &Context,
    svc: &Service,
    ns: &str,
    name: &str,
    pods: &[&Pod],
) -> Result<Action, Error> {
    let key = format!("{ns}/{name}");
    let all = ctx.slices.state();
    let existing: Vec<&EndpointSlice> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| {
            s.namespace().as_deref() == Some(ns)
                && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
        })
        .collect();
    {
        let mut created = match ctx.created.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((names, at)) = created.get_mut(&key) {
            names.retain(|n| !existing.iter().any(|s| s.metadata.name.as_ref() == Some(n)));
            if names.is_empty() || at.elapsed() > CREATED_SLICE_TTL {
                created.remove(&key);
            } else {
                // Our last creates are not in the store yet: wait for them.
                return Ok(Action::requeue(Duration::from_millis(50)));
            }
        }
    }
    let plan = slices::plan(svc, slices::desired(svc, pods), &existing);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    for slice in &plan.update {
        let slice_name = slice.name_any();
        let patch = json!({
            "metadata": {
                "labels": slice.metadata.labels,
                "ownerReferences": slice.metadata.owner_references,
            },
            "endpoints": slice.endpoints,
            "ports": slice.ports,
        });
        match api
            .patch(&slice_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut new_names = HashSet::new();
    for slice in &plan.create {
        let created = api.create(&PostParams::default(), slice).await?;
        new_names.insert(created.name_any());
    }
    if !new_names.is_empty() {
        let mut created = match ctx.created.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        created.insert(key, (new_names, Instant::now()));
    }
    for slice_name in &plan.delete {
        match api.delete(slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

//! Kubernetes API semantics against a real `skiff up`, on both stores:
//! authentication, optimistic concurrency, error `Status`es, metadata
//! bookkeeping, list selectors and paging, watch resume and expiry, graceful
//! deletion and finalizers, subresources, durability across `kill -9`, and
//! request metrics. Each check is what a Kubernetes client relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::Client;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Harness: one cluster per test, on the embedded store or on a real etcd.
// ---------------------------------------------------------------------------

use e2e::{on_both_stores, start_on as start, Cluster, Store};

on_both_stores!(
    a_stale_resource_version_on_update_is_a_409_conflict,
    concurrent_read_modify_write_with_retry_on_conflict_loses_no_update,
    create_of_an_existing_name_and_get_of_a_missing_one_return_kubernetes_statuses,
    an_invalid_object_gets_a_422_with_one_cause_per_bad_field,
    bad_requests_get_the_right_status_codes_and_leave_the_server_healthy,
    the_server_fills_in_metadata_and_tracks_generation_like_kubernetes,
    status_and_main_resource_writes_each_ignore_the_other_half,
    list_filters_by_every_label_selector_operator_and_by_field_selectors,
    list_pages_with_limit_and_continue_return_every_object_exactly_once,
    a_watch_delivers_changes_in_order_and_resumes_without_gaps_or_repeats,
    a_watch_with_send_initial_events_ends_its_initial_list_with_an_annotated_bookmark,
    a_pod_bound_to_a_node_is_deleted_gracefully_and_finalizers_hold_objects,
    scale_eviction_and_binding_subresources_behave_like_kubernetes,
    acknowledged_writes_survive_kill_9_of_skiff_up,
);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A raw HTTP answer.
struct Raw {
    code: u16,
    body: String,
    /// The answer said `Connection: close`.
    close: bool,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts the answer is a Kubernetes `Status` with `code` and `reason`.
    fn expect_status(&self, code: u16, reason: &str, what: &str) -> Result<Value> {
        let v = self.json();
        ensure!(
            self.code == code,
            "{what}: expected HTTP {code}, got {}: {}",
            self.code,
            self.body
        );
        ensure!(
            v["kind"] == "Status" && v["code"] == code && v["reason"] == reason,
            "{what}: expected a Status {code} {reason}, got {}",
            self.body
        );
        Ok(v)
    }
}

/// Sends `method uri` with `body` through `client` (which adds the server
/// URL and credentials) and returns the code and body whatever they are.
async fn raw(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Raw> {
    let mut req = kube::core::Request::new("/").create(&PostParams::default(), body)?;
    *req.method_mut() = method.parse()?;
    *req.uri_mut() = uri.parse()?;
    req.headers_mut()
        .insert("content-type", content_type.parse()?);
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let code = resp.status().as_u16();
    let close = resp
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let bytes = resp.into_body().collect_bytes().await?;
    Ok(Raw {
        code,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        close,
    })
}

async fn get_raw(client: &Client, uri: &str) -> Result<Raw> {
    raw(client, "GET", uri, "application/json", Vec::new()).await
}

async fn assert_ready(client: &Client) -> Result<()> {
    let r = get_raw(client, "/readyz").await?;
    ensure!(r.code == 200, "/readyz answered {}: {}", r.code, r.body);
    Ok(())
}

/// The `Status` of a failed kube-rs call.
fn api_error<T: std::fmt::Debug>(r: kube::Result<T>, what: &str) -> Result<kube::core::Status> {
    match r {
        Ok(v) => bail!("{what}: expected an API error, got success: {v:?}"),
        Err(kube::Error::Api(s)) => Ok(*s),
        Err(e) => bail!("{what}: expected an API error, got {e:#}"),
    }
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> Result<ConfigMap> {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))?)
}

fn deployment(name: &str, replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    }))?)
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"suite": "pods"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
    }))?)
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

fn names<K: kube::Resource>(items: &[K]) -> BTreeSet<String> {
    items.iter().filter_map(|o| o.meta().name.clone()).collect()
}

fn rv_of<K: kube::Resource>(o: &K) -> Result<i64> {
    o.meta()
        .resource_version
        .as_deref()
        .context("no resourceVersion")?
        .parse()
        .context("resourceVersion is not a number")
}

/// Waits until `get` says `name` is gone (404).
async fn wait_gone<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if api.get_opt(name).await?.is_none() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} still exists after 20s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

/// A client for the cluster with `token` instead of the admin token.
async fn client_with_token(c: &Cluster, token: Option<&str>) -> Result<Client> {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(c.kubeconfig())?;
    for named in &mut kubeconfig.auth_infos {
        if let Some(info) = named.auth_info.as_mut() {
            info.token = token.map(|t| t.to_string().into());
        }
    }
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_token_are_refused_with_a_401_status() -> Result<()> {
    let c = start(Store::Embedded)?;
    for (what, token) in [("no token", None), ("a wrong token", Some("not-the-token"))] {
        let client = client_with_token(&c, token).await?;
        let r = get_raw(&client, "/api/v1/namespaces/default/configmaps").await?;
        r.expect_status(401, "Unauthorized", what)?;
        let r = get_raw(&client, "/api/v1/namespaces").await?;
        r.expect_status(401, "Unauthorized", what)?;
        let err = api_error(
            Api::<ConfigMap>::default_namespaced(client.clone())
                .list(&ListParams::default())
                .await,
            what,
        )?;
        ensure!(err.code == 401, "{what}: kube-rs saw {err:?}");
    }
    // And the admin token still works.
    let admin = c.client().await?;
    Api::<ConfigMap>::default_namespaced(admin)
        .list(&ListParams::default())
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Optimistic concurrency
// ---------------------------------------------------------------------------

async fn a_stale_resource_version_on_update_is_a_409_conflict(store: Store) -> Result<()> {
    let c = start(store)?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    let created = api
        .create(&PostParams::default(), &config_map("cas", &[])?)
        .await?;
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = api.replace("cas", &PostParams::default(), &fresh).await?;
    ensure!(rv_of(&updated)? > rv_of(&created)?, "rv did not grow");

    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let err = api_error(
        api.replace("cas", &PostParams::default(), &stale).await,
        "PUT with a stale resourceVersion",
    )?;
    ensure!(
        err.code == 409 && err.reason == "Conflict",
        "expected 409 Conflict, got {err:?}"
    );
    let details = err.details.context("a Conflict Status has details")?;
    ensure!(
        details.name == "cas" && details.kind == "configmaps",
        "{details:?}"
    );
    // The stale write changed nothing.
    let now = api.get("cas").await?;
    ensure!(now.data == updated.data, "the stale write landed: {now:?}");
    Ok(())
}

async fn concurrent_read_modify_write_with_retry_on_conflict_loses_no_update(
    store: Store,
) -> Result<()> {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 20;
    let c = start(store)?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    api.create(&PostParams::default(), &config_map("counter", &[])?)
        .await?;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS {
                loop {
                    let mut cm = api.get("counter").await?;
                    let n: u64 = cm
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("count"))
                        .map(|s| s.parse())
                        .transpose()?
                        .unwrap_or(0);
                    cm.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert("count".to_string(), (n + 1).to_string());
                    match api.replace("counter", &PostParams::default(), &cm).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                        Err(e) => return Err(anyhow::Error::from(e)),
                    }
                }
            }
            Ok::<usize, anyhow::Error>(conflicts)
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await??;
    }
    let cm = api.get("counter").await?;
    let count = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("count"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        count == (TASKS * INCREMENTS).to_string(),
        "lost updates: counter is {count}, expected {} ({conflicts} conflicts retried)",
        TASKS * INCREMENTS
    );
    eprintln!("{store:?}: {conflicts} conflicts retried");
    Ok(())
}

// ---------------------------------------------------------------------------
// Error statuses
// ---------------------------------------------------------------------------

async fn create_of_an_existing_name_and_get_of_a_missing_one_return_kubernetes_statuses(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    api.create(&PostParams::default(), &config_map("twice", &[])?)
        .await?;
    let err = api_error(
        api.create(&PostParams::default(), &config_map("twice", &[])?)
            .await,
        "create of an existing name",
    )?;
    ensure!(
        err.code == 409 && err.reason == "AlreadyExists",
        "expected 409 AlreadyExists, got {err:?}"
    );
    let d = err.details.context("AlreadyExists has details")?;
    ensure!(d.name == "twice" && d.kind == "configmaps", "{d:?}");

    let err = api_error(api.get("missing").await, "get of a missing name")?;
    ensure!(
        err.code == 404 && err.reason == "NotFound",
        "expected 404 NotFound, got {err:?}"
    );
    let d = err.details.context("NotFound has details")?;
    ensure!(d.name == "missing" && d.kind == "configmaps", "{d:?}");
    ensure!(
        err.message == "configmaps \"missing\" not found",
        "message: {}",
        err.message
    );

    let deployments = Api::<Deployment>::default_namespaced(client.clone());
    let err = api_error(
        deployments.get("missing").await,
        "get of a missing deployment",
    )?;
    let d = err.details.context("NotFound has details")?;
    ensure!(
        d.name == "missing" && d.kind == "deployments" && d.group == "apps",
        "{d:?}"
    );

    for path in [
        "/api/v1/namespaces/default/widgets",
        "/api/v1/widgets",
        "/apis/example.com/v1/widgets",
        "/apis/apps/v9/deployments",
    ] {
        let r = get_raw(&client, path).await?;
        ensure!(
            r.code == 404,
            "GET {path}: expected 404, got {}: {}",
            r.code,
            r.body
        );
    }
    Ok(())
}

async fn an_invalid_object_gets_a_422_with_one_cause_per_bad_field(store: Store) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let mut bad = deployment("Bad_Name", -1)?;
    if let Some(t) = bad.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        t.containers[0].image = None;
    }
    let err = api_error(
        Api::<Deployment>::default_namespaced(client.clone())
            .create(&PostParams::default(), &bad)
            .await,
        "an invalid deployment",
    )?;
    ensure!(
        err.code == 422 && err.reason == "Invalid",
        "expected 422 Invalid, got {err:?}"
    );
    let causes = err.details.context("Invalid has details")?.causes;
    let fields: BTreeSet<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    let want: BTreeSet<&str> = [
        "metadata.name",
        "spec.replicas",
        "spec.template.spec.containers[0].image",
    ]
    .into();
    ensure!(
        fields == want && causes.len() == 3,
        "expected one cause for each of {want:?}, got {causes:?}"
    );
    assert_ready(&client).await?;

    Ok(())
}

async fn bad_requests_get_the_right_status_codes_and_leave_the_server_healthy(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let cms = "/api/v1/namespaces/default/configmaps";

    // Malformed JSON.
    let r = raw(
        &client,
        "POST",
        cms,
        "application/json",
        br#"{"apiVersion": "v1", "kind""#.to_vec(),
    )
    .await?;
    r.expect_status(400, "BadRequest", "malformed JSON")?;
    assert_ready(&client).await?;

    // Namespace in the body differs from the URL's.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "mismatch", "namespace": "kube-system"}});
    let r = raw(
        &client,
        "POST",
        cms,
        "application/json",
        serde_json::to_vec(&other)?,
    )
    .await?;
    r.expect_status(400, "BadRequest", "namespace mismatch")?;
    assert_ready(&client).await?;

    // fieldValidation=Strict: unknown and duplicate fields.
    let strict = format!("{cms}?fieldValidation=Strict");
    let unknown =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"unknown"},"bogus":1}"#;
    let r = raw(
        &client,
        "POST",
        &strict,
        "application/json",
        unknown.to_vec(),
    )
    .await?;
    let s = r.expect_status(400, "BadRequest", "an unknown field under Strict")?;
    ensure!(
        s["message"].as_str().unwrap_or("").contains("bogus"),
        "the message should name the unknown field: {s}"
    );
    let dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let r = raw(&client, "POST", &strict, "application/json", dup.to_vec()).await?;
    let s = r.expect_status(400, "BadRequest", "a duplicate field under Strict")?;
    ensure!(
        s["message"].as_str().unwrap_or("").contains("duplicate"),
        "the message should say duplicate: {s}"
    );
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    for name in ["mismatch", "unknown", "dup"] {
        ensure!(
            api.get_opt(name).await?.is_none(),
            "the refused object {name} was stored"
        );
    }
    // Without Strict, an unknown field is dropped, not refused.
    let lenient =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"lenient"},"bogus":1}"#;
    let r = raw(&client, "POST", cms, "application/json", lenient.to_vec()).await?;
    ensure!(
        r.code == 201,
        "unknown field without Strict: {} {}",
        r.code,
        r.body
    );
    assert_ready(&client).await?;

    // A namespace that does not exist.
    let err = api_error(
        Api::<ConfigMap>::namespaced(client.clone(), "no-such-namespace")
            .create(&PostParams::default(), &config_map("orphan", &[])?)
            .await,
        "create in a missing namespace",
    )?;
    ensure!(
        err.code == 404 && err.reason == "NotFound" && err.message.contains("no-such-namespace"),
        "expected 404 NotFound naming the namespace, got {err:?}"
    );
    assert_ready(&client).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_3_mib_is_refused_with_a_413_status_and_the_client_keeps_working() -> Result<()>
{
    let c = start(Store::Embedded)?;
    let client = c.client().await?;
    let big = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big"},
        "data": {"blob": "x".repeat(3 * 1024 * 1024 + 512 * 1024)},
    });
    let big = serde_json::to_vec(&big)?;
    let cms = "/api/v1/namespaces/default/configmaps";
    // A server that answers before reading a body must either drain it or
    // say `Connection: close`; otherwise the client's next request on that
    // pooled connection fails. The failure is a race, hence a few rounds.
    for round in 1..=5 {
        let r = raw(&client, "POST", cms, "application/json", big.clone()).await?;
        ensure!(
            r.code == 413,
            "a 3.5 MiB body: expected 413, got {}: {}",
            r.code,
            &r.body[..r.body.len().min(300)]
        );
        let next = get_raw(&client, "/readyz").await;
        ensure!(
            next.as_ref().is_ok_and(|n| n.code == 200),
            "round {round}: the request right after a 413 (Connection: close sent: {}) failed: {:?}",
            r.close,
            next.map(|n| (n.code, n.body))
        );
        r.expect_status(413, "RequestEntityTooLarge", "a 3.5 MiB body")?;
    }
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    ensure!(
        api.get_opt("big").await?.is_none(),
        "the 3.5 MiB object was stored"
    );
    // Just under the limit is fine.
    let fits = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "fits"},
        "data": {"blob": "x".repeat(1024 * 1024)},
    });
    let r = raw(
        &client,
        "POST",
        cms,
        "application/json",
        serde_json::to_vec(&fits)?,
    )
    .await?;
    ensure!(
        r.code == 201,
        "a 1 MiB object: {} {}",
        r.code,
        &r.body[..r.body.len().min(300)]
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Metadata, generation, status
// ---------------------------------------------------------------------------

async fn the_server_fills_in_metadata_and_tracks_generation_like_kubernetes(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let cms = Api::<ConfigMap>::default_namespaced(client.clone());
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}}))?;
        let cm = cms.create(&PostParams::default(), &cm).await?;
        let name = cm.metadata.name.clone().unwrap_or_default();
        ensure!(
            name.starts_with("gen-") && name.len() > 4,
            "generated name {name:?}"
        );
        ensure!(
            cm.metadata.uid.as_deref().is_some_and(|u| !u.is_empty()),
            "no uid"
        );
        ensure!(
            cm.metadata.creation_timestamp.is_some(),
            "no creationTimestamp"
        );
        ensure!(seen.insert(name.clone()), "generated {name} twice");
        cms.get(&name).await?;
    }

    let api = Api::<Deployment>::default_namespaced(client.clone());
    let d = api
        .create(&PostParams::default(), &deployment("gen", 1)?)
        .await?;
    let generation = |d: &Deployment| d.metadata.generation.unwrap_or(-1);
    ensure!(
        generation(&d) == 1,
        "new deployment generation {}",
        generation(&d)
    );
    let pp = PatchParams::default();
    let d = api
        .patch(
            "gen",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}, "annotations": {"a": "b"}}})),
        )
        .await?;
    ensure!(
        generation(&d) == 1,
        "a label change bumped generation to {}",
        generation(&d)
    );
    let d = api
        .patch("gen", &pp, &Patch::Merge(json!({"spec": {"replicas": 2}})))
        .await?;
    ensure!(
        generation(&d) == 2,
        "a spec change left generation at {}",
        generation(&d)
    );
    let d = api
        .patch_status(
            "gen",
            &pp,
            &Patch::Merge(json!({"status": {"collisionCount": 3}})),
        )
        .await?;
    ensure!(
        generation(&d) == 2,
        "a status change bumped generation to {}",
        generation(&d)
    );
    let d = api.get("gen").await?;
    ensure!(
        generation(&d) == 2,
        "generation drifted to {}",
        generation(&d)
    );
    Ok(())
}

async fn status_and_main_resource_writes_each_ignore_the_other_half(store: Store) -> Result<()> {
    let c = start(store)?;
    let api = Api::<Deployment>::default_namespaced(c.client().await?);
    api.create(&PostParams::default(), &deployment("halves", 1)?)
        .await?;
    let pp = PatchParams::default();
    // A status write that also tries to change spec: spec is ignored.
    let d = api
        .patch_status(
            "halves",
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": 7}, "status": {"collisionCount": 42}})),
        )
        .await?;
    let spec_replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    let collisions = |d: &Deployment| d.status.as_ref().and_then(|s| s.collision_count);
    ensure!(
        spec_replicas(&d) == Some(1),
        "status write changed spec: {:?}",
        d.spec
    );
    ensure!(
        collisions(&d) == Some(42),
        "status write lost status: {:?}",
        d.status
    );

    // A main write that also tries to change status: status is ignored.
    let d = api
        .patch(
            "halves",
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": 2}, "status": {"collisionCount": 99}})),
        )
        .await?;
    ensure!(
        spec_replicas(&d) == Some(2),
        "main write lost spec: {:?}",
        d.spec
    );
    ensure!(
        collisions(&d) != Some(99),
        "main write changed status: {:?}",
        d.status
    );

    // The same through PUT.
    let mut d = api.get("halves").await?;
    if let Some(s) = d.status.as_mut() {
        s.collision_count = Some(77);
    }
    if let Some(s) = d.spec.as_mut() {
        s.replicas = Some(3);
    }
    let put = loop {
        match api.replace("halves", &PostParams::default(), &d).await {
            Ok(put) => break put,
            // The deployment controller writes status concurrently.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                d = api.get("halves").await?;
                if let Some(s) = d.status.as_mut() {
                    s.collision_count = Some(77);
                }
                if let Some(s) = d.spec.as_mut() {
                    s.replicas = Some(3);
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    ensure!(
        spec_replicas(&put) == Some(3),
        "PUT lost spec: {:?}",
        put.spec
    );
    ensure!(
        collisions(&put) != Some(77),
        "PUT changed status: {:?}",
        put.status
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------

async fn list_filters_by_every_label_selector_operator_and_by_field_selectors(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    create_namespace(&client, "sel").await?;
    let api = Api::<ConfigMap>::namespaced(client.clone(), "sel");
    let objects: [(&str, &[(&str, &str)]); 4] = [
        ("a", &[("suite", "sel"), ("app", "web"), ("tier", "1")]),
        (
            "b",
            &[
                ("suite", "sel"),
                ("app", "web"),
                ("tier", "2"),
                ("canary", ""),
            ],
        ),
        ("c", &[("suite", "sel"), ("app", "db"), ("tier", "3")]),
        ("d", &[("suite", "sel"), ("app", "cache")]),
    ];
    for (name, labels) in objects {
        api.create(&PostParams::default(), &config_map(name, labels)?)
            .await?;
    }
    let cases: &[(&str, &[&str])] = &[
        ("suite=sel", &["a", "b", "c", "d"]),
        ("app=web", &["a", "b"]),
        ("app==web", &["a", "b"]),
        ("suite=sel,app!=web", &["c", "d"]),
        ("app in (web,db)", &["a", "b", "c"]),
        ("suite=sel,app notin (web,cache)", &["c"]),
        ("tier", &["a", "b", "c"]),
        ("suite=sel,!tier", &["d"]),
        ("canary", &["b"]),
        ("tier>1", &["b", "c"]),
        ("tier<2", &["a"]),
        ("app=web,tier=2", &["b"]),
        ("app=nothing", &[]),
    ];
    for (selector, want) in cases {
        let list = api.list(&ListParams::default().labels(selector)).await?;
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        ensure!(
            names(&list.items) == want,
            "labelSelector {selector:?}: got {:?}, want {want:?}",
            names(&list.items)
        );
        ensure!(
            list.metadata.resource_version.is_some(),
            "list {selector:?} has no metadata.resourceVersion"
        );
    }
    // A malformed selector is a 400.
    let err = api_error(
        api.list(&ListParams::default().labels("app in (web")).await,
        "malformed selector",
    )?;
    ensure!(err.code == 400, "malformed selector: {err:?}");

    // Field selectors.
    let list = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await?;
    ensure!(
        names(&list.items) == ["b".to_string()].into(),
        "{:?}",
        names(&list.items)
    );
    let list = api
        .list(
            &ListParams::default()
                .labels("suite=sel")
                .fields("metadata.name!=b"),
        )
        .await?;
    ensure!(
        names(&list.items) == ["a", "c", "d"].iter().map(|s| s.to_string()).collect(),
        "{:?}",
        names(&list.items)
    );
    let all_ns = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().fields("metadata.namespace=sel,metadata.name=a"))
        .await?;
    ensure!(
        names(&all_ns.items) == ["a".to_string()].into(),
        "{:?}",
        names(&all_ns.items)
    );

    let pods = Api::<Pod>::namespaced(client.clone(), "sel");
    for name in ["p1", "p2"] {
        pods.create(&PostParams::default(), &pod(name)?).await?;
    }
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending"))
        .await?;
    ensure!(
        names(&pending.items) == ["p1", "p2"].iter().map(|s| s.to_string()).collect(),
        "status.phase=Pending: {:?}",
        names(&pending.items)
    );
    let running = pods
        .list(&ListParams::default().fields("status.phase=Running"))
        .await?;
    ensure!(
        running.items.is_empty(),
        "status.phase=Running: {:?}",
        names(&running.items)
    );
    let unscheduled = pods
        .list(&ListParams::default().fields("spec.nodeName=,metadata.name=p2"))
        .await?;
    ensure!(
        names(&unscheduled.items) == ["p2".to_string()].into(),
        "{:?}",
        names(&unscheduled.items)
    );

    let events = Api::<Event>::namespaced(client.clone(), "sel");
    for (name, target) in [("e1", "target-x"), ("e2", "target-y"), ("e3", "target-x")] {
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": name},
            "involvedObject": {"kind": "ConfigMap", "name": target, "namespace": "sel"},
            "reason": "Testing",
            "message": "hello",
            "type": "Normal",
        }))?;
        events.create(&PostParams::default(), &ev).await?;
    }
    let about_x = events
        .list(&ListParams::default().fields("involvedObject.name=target-x"))
        .await?;
    ensure!(
        names(&about_x.items) == ["e1", "e3"].iter().map(|s| s.to_string()).collect(),
        "involvedObject.name=target-x: {:?}",
        names(&about_x.items)
    );
    // An unsupported field is a 400, as in Kubernetes.
    let err = api_error(
        api.list(&ListParams::default().fields("data.k=v")).await,
        "unsupported field selector",
    )?;
    ensure!(err.code == 400, "unsupported field selector: {err:?}");
    Ok(())
}

async fn list_pages_with_limit_and_continue_return_every_object_exactly_once(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    create_namespace(&client, "paging").await?;
    let api = Api::<ConfigMap>::namespaced(client.clone(), "paging");
    let mut want = BTreeSet::new();
    for i in 0..25 {
        let name = format!("cm-{i:02}");
        api.create(
            &PostParams::default(),
            &config_map(&name, &[("suite", "page")])?,
        )
        .await?;
        want.insert(name);
    }
    let mut got = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    let mut first_rv: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels("suite=page").limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        ensure!(
            page.metadata.resource_version.is_some(),
            "a page has no metadata.resourceVersion"
        );
        // Every page is part of the first page's snapshot.
        let rv = page.metadata.resource_version.clone();
        if let Some(first) = &first_rv {
            ensure!(
                rv.as_ref() == Some(first),
                "page {} is at resourceVersion {rv:?}, the first at {first}",
                pages.len() + 1
            );
        }
        first_rv = first_rv.or(rv);
        pages.push(page.items.len());
        got.extend(page.items.iter().filter_map(|o| o.metadata.name.clone()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
        // Writes between pages must not disturb the snapshot.
        if pages.len() == 1 {
            api.create(
                &PostParams::default(),
                &config_map("late", &[("suite", "page")])?,
            )
            .await?;
        }
        ensure!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    ensure!(pages == [10, 10, 5], "page sizes {pages:?}");
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    ensure!(unique.len() == got.len(), "an object came twice: {got:?}");
    ensure!(unique == want, "pages returned {unique:?}, want {want:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------

/// Collects watch events until the server ends the stream (its timeout).
async fn collect_watch(
    api: &Api<ConfigMap>,
    wp: &WatchParams,
    rv: &str,
) -> Result<Vec<WatchEvent<ConfigMap>>> {
    let stream = api.watch(wp, rv).await?;
    let timeout = Duration::from_secs(u64::from(wp.timeout.unwrap_or(5)) + 10);
    tokio::time::timeout(timeout, stream.try_collect::<Vec<_>>())
        .await
        .context("the watch did not end at its timeoutSeconds")?
        .context("the watch stream failed")
}

fn counter_of(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get("n"))
        .cloned()
        .unwrap_or_default()
}

fn describe(ev: &WatchEvent<ConfigMap>) -> String {
    match ev {
        WatchEvent::Added(o) => format!(
            "ADDED {} n={}",
            o.metadata.name.clone().unwrap_or_default(),
            counter_of(o)
        ),
        WatchEvent::Modified(o) => format!(
            "MODIFIED {} n={}",
            o.metadata.name.clone().unwrap_or_default(),
            counter_of(o)
        ),
        WatchEvent::Deleted(o) => {
            format!("DELETED {}", o.metadata.name.clone().unwrap_or_default())
        }
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.message),
    }
}

async fn a_watch_delivers_changes_in_order_and_resumes_without_gaps_or_repeats(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    let created = api
        .create(
            &PostParams::default(),
            &config_map("w", &[("suite", "watch")])?,
        )
        .await?;
    let start_rv = created.metadata.resource_version.clone().context("no rv")?;

    // A live watch from the create's revision, running while we write.
    let wp = WatchParams::default().labels("suite=watch").timeout(4);
    let live = {
        let api = api.clone();
        let wp = wp.clone();
        let rv = start_rv.clone();
        tokio::spawn(async move { collect_watch(&api, &wp, &rv).await })
    };
    let mut rvs = vec![start_rv.clone()];
    for n in 1..=10 {
        let cm = api
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"n": n.to_string()}})),
            )
            .await?;
        rvs.push(cm.metadata.resource_version.clone().context("no rv")?);
    }
    api.delete("w", &DeleteParams::default()).await?;

    let mut want: Vec<String> = (1..=10).map(|n| format!("MODIFIED w n={n}")).collect();
    want.push("DELETED w".to_string());
    let events = live.await??;
    let got: Vec<String> = events
        .iter()
        .filter(|e| !matches!(e, WatchEvent::Bookmark(_)))
        .map(describe)
        .collect();
    ensure!(
        got == want,
        "live watch from {start_rv}: got {got:?}, want {want:?}"
    );
    // The resourceVersions are the ones the writes returned, in order.
    let event_rvs: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Modified(o) => o.metadata.resource_version.clone(),
            _ => None,
        })
        .collect();
    ensure!(
        event_rvs == rvs[1..],
        "event rvs {event_rvs:?} vs writes {:?}",
        &rvs[1..]
    );

    // Resume from the 5th write: exactly the 6th..10th and the delete.
    let resumed = collect_watch(&api, &wp.clone().timeout(2), &rvs[5]).await?;
    let got: Vec<String> = resumed
        .iter()
        .filter(|e| !matches!(e, WatchEvent::Bookmark(_)))
        .map(describe)
        .collect();
    ensure!(
        got == want[5..],
        "resumed from {}: got {got:?}, want {:?}",
        rvs[5],
        &want[5..]
    );

    // With bookmarks allowed, every event is still delivered, and any
    // BOOKMARK carries only a resourceVersion that never goes backwards.
    let bm = collect_watch(
        &api,
        &WatchParams::default().labels("suite=watch").timeout(2),
        &start_rv,
    )
    .await?;
    let mut last = 0i64;
    for ev in &bm {
        if let WatchEvent::Bookmark(b) = ev {
            let rv: i64 = b.metadata.resource_version.parse()?;
            ensure!(rv >= last, "bookmark rv went backwards: {rv} < {last}");
            last = rv;
        }
    }
    let got: Vec<String> = bm
        .iter()
        .filter(|e| !matches!(e, WatchEvent::Bookmark(_)))
        .map(describe)
        .collect();
    ensure!(got == want, "watch with allowWatchBookmarks: {got:?}");

    // A watch from "0" (or no rv) starts with the current state as ADDED.
    api.create(
        &PostParams::default(),
        &config_map("w2", &[("suite", "watch")])?,
    )
    .await?;
    let from_zero = collect_watch(&api, &wp.clone().timeout(1), "0").await?;
    let got: Vec<String> = from_zero
        .iter()
        .map(describe)
        .filter(|d| !d.starts_with("BOOKMARK"))
        .collect();
    ensure!(got == ["ADDED w2 n="], "watch from rv 0: {got:?}");
    Ok(())
}

async fn a_watch_with_send_initial_events_ends_its_initial_list_with_an_annotated_bookmark(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("init-{i}"), &[("suite", "init")])?,
        )
        .await?;
    }
    let list = api
        .list(&ListParams::default().labels("suite=init"))
        .await?;
    let list_rv: i64 = list
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("0")
        .parse()?;
    let wp = WatchParams::streaming_lists()
        .labels("suite=init")
        .timeout(3);
    ensure!(wp.send_initial_events && wp.bookmarks, "{wp:?}");
    let stream = api.watch(&wp, "").await?;
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            api.create(
                &PostParams::default(),
                &config_map("init-late", &[("suite", "init")])?,
            )
            .await?;
            Ok::<(), anyhow::Error>(())
        })
    };
    let events: Vec<WatchEvent<ConfigMap>> =
        tokio::time::timeout(Duration::from_secs(15), stream.try_collect())
            .await
            .context("the watch did not end")??;
    writer.await??;
    let described: Vec<String> = events.iter().map(describe).collect();
    let end = events
        .iter()
        .position(|e| {
            matches!(e, WatchEvent::Bookmark(b)
                if b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str) == Some("true"))
        })
        .with_context(|| format!("no initial-events-end bookmark in {described:?}"))?;
    let initial: BTreeSet<String> = events[..end]
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => Ok(o.metadata.name.clone().unwrap_or_default()),
            _ => bail!("a non-ADDED event before the bookmark: {described:?}"),
        })
        .collect::<Result<_>>()?;
    let want: BTreeSet<String> = (0..5).map(|i| format!("init-{i}")).collect();
    ensure!(initial == want, "initial events {initial:?}");
    if let WatchEvent::Bookmark(b) = &events[end] {
        let rv: i64 = b.metadata.resource_version.parse()?;
        ensure!(
            rv >= list_rv,
            "bookmark rv {rv} is older than the list's {list_rv}"
        );
    }
    let after: Vec<String> = events[end + 1..]
        .iter()
        .map(describe)
        .filter(|d| !d.starts_with("BOOKMARK"))
        .collect();
    ensure!(
        after == ["ADDED init-late n="],
        "events after the bookmark: {after:?}"
    );
    Ok(())
}

/// POSTs `body` to etcd's v3 JSON gateway (plain HTTP on loopback).
fn etcd_gateway(client_url: &str, path: &str, body: &Value) -> Result<Value> {
    use std::io::{Read, Write};
    let addr = client_url
        .strip_prefix("http://")
        .context("etcd URL is not http://")?;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = serde_json::to_string(body)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP body")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "etcd {path}: {resp}");
    // The gateway may answer chunked; the JSON object is one chunk.
    let json_text = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .context("no JSON in etcd's answer")?;
    Ok(serde_json::from_str(json_text)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_from_a_compacted_revision_gets_an_error_event_with_410_inside_a_200_response(
) -> Result<()> {
    let mut c = start(Store::Etcd)?;
    let url = c.etcd.as_ref().context("etcd")?.client_url.clone();
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    let first = api
        .create(&PostParams::default(), &config_map("old", &[])?)
        .await?;
    let old_rv = first.metadata.resource_version.clone().context("no rv")?;
    for n in 0..5 {
        api.patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": n.to_string()}})),
        )
        .await?;
    }
    // Compact etcd to its current revision: history before it is gone.
    let range = etcd_gateway(&url, "/v3/kv/range", &json!({"key": "AA=="}))?;
    let revision = range["header"]["revision"]
        .as_str()
        .context("no revision in etcd's header")?
        .to_string();
    etcd_gateway(
        &url,
        "/v3/kv/compaction",
        &json!({"revision": revision, "physical": true}),
    )?;
    // A fresh skiff has nothing of that history in its watch cache either.
    tokio::task::block_in_place(|| c.restart())?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);

    // kube-rs' `watch` fails on a non-2xx answer, so an Error event proves
    // the 410 came inside a 200 response.
    let events = collect_watch(&api, &WatchParams::default().timeout(5), &old_rv).await?;
    let described: Vec<String> = events.iter().map(describe).collect();
    match events.first() {
        Some(WatchEvent::Error(e)) => ensure!(
            e.code == 410 && (e.reason == "Expired" || e.reason == "Gone"),
            "expected a 410 Expired Status, got {e:?}"
        ),
        _ => bail!("a watch from compacted rv {old_rv} got {described:?}"),
    }
    ensure!(
        events.len() == 1,
        "the stream should end after the error: {described:?}"
    );
    // A list still works and a watch from its revision is fine.
    let list = api.list(&ListParams::default()).await?;
    let rv = list.metadata.resource_version.context("no list rv")?;
    let events = collect_watch(&api, &WatchParams::default().timeout(1), &rv).await?;
    ensure!(
        events.iter().all(|e| !matches!(e, WatchEvent::Error(_))),
        "a watch from the list's rv failed: {:?}",
        events.iter().map(describe).collect::<Vec<_>>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Deletion
// ---------------------------------------------------------------------------

async fn bind(pods: &Api<Pod>, name: &str, node: &str) -> kube::Result<Value> {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding)
        .await
}

async fn a_pod_bound_to_a_node_is_deleted_gracefully_and_finalizers_hold_objects(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let pods = Api::<Pod>::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("graceful")?)
        .await?;
    bind(&pods, "graceful", "fake-node").await?;
    let bound = pods.get("graceful").await?;
    ensure!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("fake-node"),
        "binding did not set nodeName: {:?}",
        bound.spec
    );
    pods.delete("graceful", &DeleteParams::default()).await?;
    let terminating = pods
        .get_opt("graceful")
        .await?
        .context("a bound pod was deleted at once instead of gracefully")?;
    ensure!(
        terminating.metadata.deletion_timestamp.is_some(),
        "no deletionTimestamp: {:?}",
        terminating.metadata
    );
    ensure!(
        terminating.metadata.deletion_grace_period_seconds == Some(30),
        "deletionGracePeriodSeconds {:?}",
        terminating.metadata.deletion_grace_period_seconds
    );
    pods.delete("graceful", &DeleteParams::default().grace_period(0))
        .await?;
    wait_gone(&pods, "graceful").await?;

    // Finalizers hold an object until they are removed.
    let cms = Api::<ConfigMap>::default_namespaced(client.clone());
    let mut cm = config_map("held", &[])?;
    cm.metadata.finalizers = Some(vec!["example.com/hold".to_string()]);
    cms.create(&PostParams::default(), &cm).await?;
    cms.delete("held", &DeleteParams::default()).await?;
    let held = cms
        .get_opt("held")
        .await?
        .context("an object with a finalizer was deleted")?;
    ensure!(
        held.metadata.deletion_timestamp.is_some(),
        "no deletionTimestamp"
    );
    // Still there a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        cms.get_opt("held").await?.is_some(),
        "the finalizer did not hold"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    wait_gone(&cms, "held").await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Subresources
// ---------------------------------------------------------------------------

async fn scale_eviction_and_binding_subresources_behave_like_kubernetes(
    store: Store,
) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let deployments = Api::<Deployment>::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment("scaled", 2)?)
        .await?;
    let scale = deployments.get_scale("scaled").await?;
    ensure!(
        scale.spec.as_ref().and_then(|s| s.replicas) == Some(2),
        "scale GET: {scale:?}"
    );
    ensure!(
        scale.metadata.name.as_deref() == Some("scaled"),
        "{scale:?}"
    );
    // The Deployment controller writes status concurrently, so a PUT carrying
    // the read revision may conflict; clients retry on 409, as client-go's
    // RetryOnConflict does.
    let mut attempt = 0;
    let put = loop {
        let mut new_scale = deployments.get_scale("scaled").await?;
        if let Some(s) = new_scale.spec.as_mut() {
            s.replicas = Some(5);
        }
        match deployments
            .replace_scale("scaled", &PostParams::default(), &new_scale)
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => attempt += 1,
            other => break other?,
        }
    };
    ensure!(
        put.spec.as_ref().and_then(|s| s.replicas) == Some(5),
        "{put:?}"
    );
    let d = deployments.get("scaled").await?;
    ensure!(
        d.spec.as_ref().and_then(|s| s.replicas) == Some(5),
        "PUT scale did not change spec.replicas: {:?}",
        d.spec
    );
    ensure!(
        d.metadata.generation == Some(2),
        "generation {:?}",
        d.metadata.generation
    );

    let pods = Api::<Pod>::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("evicted")?)
        .await?;
    pods.evict("evicted", &EvictParams::default()).await?;
    wait_gone(&pods, "evicted").await?;

    pods.create(&PostParams::default(), &pod("bound")?).await?;
    bind(&pods, "bound", "node-a").await?;
    let err = api_error(bind(&pods, "bound", "node-b").await, "a second binding")?;
    ensure!(
        err.code == 409 && err.reason == "Conflict",
        "binding twice: {err:?}"
    );
    let p = pods.get("bound").await?;
    ensure!(
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-a"),
        "the second binding moved the pod: {:?}",
        p.spec
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------

async fn acknowledged_writes_survive_kill_9_of_skiff_up(store: Store) -> Result<()> {
    const N: usize = 200;
    let mut c = start(store)?;
    let client = c.client().await?;
    create_namespace(&client, "durable").await?;
    let api = Api::<ConfigMap>::namespaced(client.clone(), "durable");
    let acked: Vec<String> = futures::stream::iter(0..N)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("d-{i:03}");
                api.create(
                    &PostParams::default(),
                    &config_map(&name, &[("suite", "durable")])?,
                )
                .await?;
                Ok::<String, anyhow::Error>(name)
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    ensure!(acked.len() == N, "{} acknowledged", acked.len());
    tokio::task::block_in_place(|| -> Result<()> {
        c.kill9()?;
        c.restart()
    })?;
    let api = Api::<ConfigMap>::namespaced(c.client().await?, "durable");
    let list = api
        .list(&ListParams::default().labels("suite=durable"))
        .await?;
    let have = names(&list.items);
    let lost: Vec<&String> = acked.iter().filter(|n| !have.contains(*n)).collect();
    ensure!(
        lost.is_empty(),
        "{} of {N} acknowledged writes were lost after kill -9: {:?}",
        lost.len(),
        lost
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_verb_resource_and_code() -> Result<()> {
    let c = start(Store::Embedded)?;
    let client = c.client().await?;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    api.create(&PostParams::default(), &config_map("m", &[])?)
        .await?;
    api.list(&ListParams::default()).await?;
    api.get("m").await?;
    let _ = api.get("absent").await;
    let r = get_raw(&client, "/metrics").await?;
    ensure!(r.code == 200, "/metrics: {} {}", r.code, r.body);
    let lines: Vec<&str> = r.body.lines().filter(|l| !l.starts_with('#')).collect();
    let has = |metric: &str, labels: &[&str]| {
        lines
            .iter()
            .any(|l| l.starts_with(metric) && labels.iter().all(|want| l.contains(want)))
    };
    for (verb, code) in [
        ("POST", "201"),
        ("LIST", "200"),
        ("GET", "200"),
        ("GET", "404"),
    ] {
        let labels = [
            &format!("verb=\"{verb}\"") as &str,
            "resource=\"configmaps\"",
            &format!("code=\"{code}\""),
        ];
        ensure!(
            has("apiserver_request_total{", &labels),
            "no apiserver_request_total with {labels:?} in:\n{}",
            r.body
        );
    }
    for verb in ["POST", "LIST", "GET"] {
        let labels = [
            &format!("verb=\"{verb}\"") as &str,
            "resource=\"configmaps\"",
        ];
        ensure!(
            has("apiserver_request_duration_seconds_bucket{", &labels)
                && has("apiserver_request_duration_seconds_count{", &labels),
            "no apiserver_request_duration_seconds histogram with {labels:?} in:\n{}",
            r.body
        );
    }
    Ok(())
}

//! kube-rs against a real `skiff up`, on both stores: the runtime's
//! `watcher` (plain and streaming lists) and `reflector`, every `Patch`
//! flavour including server-side apply, and label-selected lists. These are
//! the calls every Rust controller makes.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::eventually;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Expression, PartialObjectMeta, Selector};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;
use serde_json::{json, Value};

use e2e::{on_both_stores, start_on as start, Store};

on_both_stores!(
    the_watcher_sees_create_modify_and_delete,
    the_watcher_with_streaming_lists_sees_create_modify_and_delete,
    a_reflector_store_converges_to_the_servers_list,
    merge_and_json_patches_edit_an_object,
    a_strategic_merge_patch_merges_containers_by_name,
    server_side_apply_tracks_field_managers_and_conflicts,
    list_params_select_by_label,
    a_metadata_watcher_sees_create_modify_and_delete,
    a_metadata_watcher_with_streaming_lists_sees_create_modify_and_delete,
);

fn config_map(name: &str, labels: &[(&str, &str)]) -> Result<ConfigMap> {
    let labels: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))?)
}

fn names(items: &[ConfigMap]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect()
}

// ---------------------------------------------------------------------------
// watcher
// ---------------------------------------------------------------------------

/// A watcher event, reduced to what the tests compare.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Init,
    InitApply(String),
    InitDone,
    Apply(String, String),
    Delete(String),
}

fn seen(ev: watcher::Event<ConfigMap>) -> Seen {
    let name = |o: &ConfigMap| o.metadata.name.clone().unwrap_or_default();
    let n = |o: &ConfigMap| {
        o.data
            .as_ref()
            .and_then(|d| d.get("n"))
            .cloned()
            .unwrap_or_default()
    };
    match ev {
        watcher::Event::Init => Seen::Init,
        watcher::Event::InitApply(o) => Seen::InitApply(name(&o)),
        watcher::Event::InitDone => Seen::InitDone,
        watcher::Event::Apply(o) => Seen::Apply(name(&o), n(&o)),
        watcher::Event::Delete(o) => Seen::Delete(name(&o)),
    }
}

/// Receives watcher events until `want` arrives, failing on an error or
/// after 20 s. Returns everything received on the way.
async fn until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<Seen, String>>,
    want: &Seen,
) -> Result<Vec<Seen>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .with_context(|| format!("timed out waiting for {want:?}; saw {got:?}"))?
            .context("the watcher ended")?;
        let ev = ev.map_err(|e| anyhow::anyhow!("watcher error after {got:?}: {e}"))?;
        got.push(ev.clone());
        if &ev == want {
            return Ok(got);
        }
    }
}

async fn watcher_sees_changes(store: Store, config: watcher::Config) -> Result<()> {
    let c = start(store)?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    api.create(
        &PostParams::default(),
        &config_map("before", &[("suite", "watcher")])?,
    )
    .await?;
    // Not selected: must never show up.
    api.create(&PostParams::default(), &config_map("other", &[])?)
        .await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), config.labels("suite=watcher"));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if tx.send(ev.map(seen).map_err(|e| e.to_string())).is_err() {
                break;
            }
        }
    });

    let init = until(&mut rx, &Seen::InitDone).await?;
    ensure!(
        init == [Seen::Init, Seen::InitApply("before".into()), Seen::InitDone],
        "initial list: {init:?}"
    );
    api.create(
        &PostParams::default(),
        &config_map("w", &[("suite", "watcher")])?,
    )
    .await?;
    let got = until(&mut rx, &Seen::Apply("w".into(), String::new())).await?;
    ensure!(got.len() == 1, "before the create: {got:?}");
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "1"}})),
    )
    .await?;
    let got = until(&mut rx, &Seen::Apply("w".into(), "1".into())).await?;
    ensure!(got.len() == 1, "before the modify: {got:?}");
    api.delete("w", &DeleteParams::default()).await?;
    let got = until(&mut rx, &Seen::Delete("w".into())).await?;
    ensure!(got.len() == 1, "before the delete: {got:?}");
    // A label change that moves an object out of the selector is a delete.
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"suite": "gone"}}})),
    )
    .await?;
    let got = until(&mut rx, &Seen::Delete("before".into())).await?;
    ensure!(got.len() == 1, "before leaving the selector: {got:?}");
    task.abort();
    Ok(())
}

async fn the_watcher_sees_create_modify_and_delete(store: Store) -> Result<()> {
    watcher_sees_changes(store, watcher::Config::default()).await
}

async fn the_watcher_with_streaming_lists_sees_create_modify_and_delete(
    store: Store,
) -> Result<()> {
    watcher_sees_changes(store, watcher::Config::default().streaming_lists()).await
}

/// A metadata-only watcher (`PartialObjectMetadata`, as kube-rs sends for
/// `Api<PartialObjectMeta<K>>`) sees the same changes, as metadata: the
/// label `n` stands for the content.
async fn metadata_watcher_sees_changes(store: Store, config: watcher::Config) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    let meta = Api::<PartialObjectMeta<ConfigMap>>::default_namespaced(client);
    api.create(
        &PostParams::default(),
        &config_map("before", &[("suite", "meta")])?,
    )
    .await?;
    api.create(&PostParams::default(), &config_map("other", &[])?)
        .await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(meta, config.labels("suite=meta"));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let ev = ev.map_err(|e| e.to_string()).and_then(|ev| {
                let check = |o: &PartialObjectMeta<ConfigMap>| match &o.types {
                    Some(t)
                        if t.kind == "PartialObjectMetadata"
                            && t.api_version == "meta.k8s.io/v1" =>
                    {
                        Ok(())
                    }
                    other => Err(format!("not PartialObjectMetadata: {other:?}")),
                };
                let name =
                    |o: &PartialObjectMeta<ConfigMap>| o.metadata.name.clone().unwrap_or_default();
                let n = |o: &PartialObjectMeta<ConfigMap>| {
                    o.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("n"))
                        .cloned()
                        .unwrap_or_default()
                };
                Ok(match ev {
                    watcher::Event::Init => Seen::Init,
                    watcher::Event::InitApply(o) => {
                        check(&o)?;
                        Seen::InitApply(name(&o))
                    }
                    watcher::Event::InitDone => Seen::InitDone,
                    watcher::Event::Apply(o) => {
                        check(&o)?;
                        if o.metadata.resource_version.is_none() {
                            return Err("no resourceVersion".to_string());
                        }
                        Seen::Apply(name(&o), n(&o))
                    }
                    watcher::Event::Delete(o) => {
                        check(&o)?;
                        Seen::Delete(name(&o))
                    }
                })
            });
            if tx.send(ev).is_err() {
                break;
            }
        }
    });

    let init = until(&mut rx, &Seen::InitDone).await?;
    ensure!(
        init == [Seen::Init, Seen::InitApply("before".into()), Seen::InitDone],
        "initial list: {init:?}"
    );
    api.create(
        &PostParams::default(),
        &config_map("w", &[("suite", "meta")])?,
    )
    .await?;
    let got = until(&mut rx, &Seen::Apply("w".into(), String::new())).await?;
    ensure!(got.len() == 1, "before the create: {got:?}");
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"n": "1"}}})),
    )
    .await?;
    let got = until(&mut rx, &Seen::Apply("w".into(), "1".into())).await?;
    ensure!(got.len() == 1, "before the modify: {got:?}");
    api.delete("w", &DeleteParams::default()).await?;
    let got = until(&mut rx, &Seen::Delete("w".into())).await?;
    ensure!(got.len() == 1, "before the delete: {got:?}");
    task.abort();
    Ok(())
}

async fn a_metadata_watcher_sees_create_modify_and_delete(store: Store) -> Result<()> {
    metadata_watcher_sees_changes(store, watcher::Config::default()).await
}

async fn a_metadata_watcher_with_streaming_lists_sees_create_modify_and_delete(
    store: Store,
) -> Result<()> {
    metadata_watcher_sees_changes(store, watcher::Config::default().streaming_lists()).await
}

// ---------------------------------------------------------------------------
// reflector
// ---------------------------------------------------------------------------

async fn a_reflector_store_converges_to_the_servers_list(store: Store) -> Result<()> {
    let c = start(store)?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(
            api.clone(),
            watcher::Config::default().labels("suite=reflector"),
        ),
    )
    .default_backoff()
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    tokio::time::timeout(Duration::from_secs(20), reader.wait_until_ready())
        .await
        .context("the reflector never became ready")??;

    for i in 0..20 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("r-{i:02}"), &[("suite", "reflector")])?,
        )
        .await?;
    }
    for i in 0..5 {
        api.delete(&format!("r-{i:02}"), &DeleteParams::default())
            .await?;
    }
    let want: BTreeSet<String> = (5..20).map(|i| format!("r-{i:02}")).collect();
    let server = names(
        &api.list(&ListParams::default().labels("suite=reflector"))
            .await?
            .items,
    );
    ensure!(server == want, "the server lists {server:?}");
    let cached = eventually("the reflector to converge", Duration::from_secs(20), || {
        let reader = reader.clone();
        let want = want.clone();
        async move {
            let cached: BTreeSet<String> = reader
                .state()
                .iter()
                .filter_map(|o| o.metadata.name.clone())
                .collect();
            Ok((cached == want).then_some(cached))
        }
    })
    .await;
    let cached = match cached {
        Ok(c) => c,
        Err(e) => {
            let now: BTreeSet<String> = reader
                .state()
                .iter()
                .filter_map(|o| o.metadata.name.clone())
                .collect();
            bail!("{e}: the store holds {now:?}, the server {want:?}");
        }
    };
    ensure!(cached.len() == 15, "{cached:?}");
    // The cached objects are the server's, resourceVersion and all.
    for o in reader.state() {
        let name = o.metadata.name.clone().unwrap_or_default();
        let live = api.get(&name).await?;
        ensure!(
            live.metadata.resource_version == o.metadata.resource_version,
            "{name}: cached rv {:?}, server rv {:?}",
            o.metadata.resource_version,
            live.metadata.resource_version
        );
    }
    task.abort();
    Ok(())
}

// ---------------------------------------------------------------------------
// Patches
// ---------------------------------------------------------------------------

/// Sends a JSON Patch (RFC 6902). kube's `Patch::Json` needs the
/// `jsonpatch` feature, which the workspace does not enable, so this goes
/// through the client's raw request path with the right content type.
async fn json_patch(client: &Client, path: &str, ops: &Value) -> Result<(u16, Value)> {
    let mut req =
        kube::core::Request::new("/").create(&PostParams::default(), serde_json::to_vec(ops)?)?;
    *req.method_mut() = "PATCH".parse()?;
    *req.uri_mut() = path.parse()?;
    req.headers_mut()
        .insert("content-type", "application/json-patch+json".parse()?);
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await?;
    Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

async fn merge_and_json_patches_edit_an_object(store: Store) -> Result<()> {
    let c = start(store)?;
    let client = c.client().await?;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    let mut cm = config_map("p", &[])?;
    cm.data = Some(
        [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    api.create(&PostParams::default(), &cm).await?;

    // JSON merge patch: set one key, delete another with null.
    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "10", "b": null, "c": "3"}})),
        )
        .await?;
    let data = merged.data.clone().unwrap_or_default();
    ensure!(
        data.get("a").map(String::as_str) == Some("10")
            && !data.contains_key("b")
            && data.get("c").map(String::as_str) == Some("3"),
        "after the merge patch: {data:?}"
    );

    // JSON patch: test, replace, add, remove.
    let path = "/api/v1/namespaces/default/configmaps/p";
    let (code, body) = json_patch(
        &client,
        path,
        &json!([
            {"op": "test", "path": "/data/a", "value": "10"},
            {"op": "replace", "path": "/data/a", "value": "11"},
            {"op": "add", "path": "/data/d", "value": "4"},
            {"op": "remove", "path": "/data/c"},
        ]),
    )
    .await?;
    ensure!(code == 200, "JSON patch: {code} {body}");
    let got = api.get("p").await?.data.unwrap_or_default();
    ensure!(
        got.get("a").map(String::as_str) == Some("11")
            && got.get("d").map(String::as_str) == Some("4")
            && !got.contains_key("c"),
        "after the JSON patch: {got:?}"
    );
    // A failing `test` op changes nothing and is refused.
    let (code, body) = json_patch(
        &client,
        path,
        &json!([
            {"op": "test", "path": "/data/a", "value": "wrong"},
            {"op": "replace", "path": "/data/a", "value": "12"},
        ]),
    )
    .await?;
    ensure!(
        (400..500).contains(&code) && body["kind"] == "Status",
        "a failing test op: {code} {body}"
    );
    let after = api.get("p").await?.data.unwrap_or_default();
    ensure!(
        after == got,
        "a failed JSON patch changed the object: {after:?}"
    );
    Ok(())
}

async fn a_strategic_merge_patch_merges_containers_by_name(store: Store) -> Result<()> {
    let c = start(store)?;
    let api = Api::<Deployment>::default_namespaced(c.client().await?);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "smp"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "smp"}},
            "template": {
                "metadata": {"labels": {"app": "smp"}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }))?;
    api.create(&PostParams::default(), &d).await?;
    let containers = |d: &Deployment| -> Vec<(String, String)> {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pp = PatchParams::default();
    // Adding a container by name keeps the existing one.
    let d = api
        .patch(
            "smp",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "busybox:1.36"}
            ]}}}})),
        )
        .await?;
    let got = containers(&d);
    ensure!(
        got.len() == 2
            && got.contains(&("main".into(), "nginx:1.27".into()))
            && got.contains(&("sidecar".into(), "busybox:1.36".into())),
        "after adding a sidecar: {got:?}"
    );
    // Changing one container's image by name leaves the other alone.
    let d = api
        .patch(
            "smp",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:1.28"}
            ]}}}})),
        )
        .await?;
    let got = containers(&d);
    ensure!(
        got.len() == 2
            && got.contains(&("main".into(), "nginx:1.28".into()))
            && got.contains(&("sidecar".into(), "busybox:1.36".into())),
        "after changing main's image: {got:?}"
    );
    // `$patch: delete` removes one element.
    let d = api
        .patch(
            "smp",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"}
            ]}}}})),
        )
        .await?;
    let got = containers(&d);
    ensure!(
        got == [("main".to_string(), "nginx:1.28".to_string())],
        "after deleting the sidecar: {got:?}"
    );
    // A JSON merge patch, by contrast, replaces the whole list.
    let d = api
        .patch(
            "smp",
            &pp,
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "only", "image": "redis:7"}
            ]}}}})),
        )
        .await?;
    let got = containers(&d);
    ensure!(
        got == [("only".to_string(), "redis:7".to_string())],
        "after a merge patch of the list: {got:?}"
    );
    Ok(())
}

async fn server_side_apply_tracks_field_managers_and_conflicts(store: Store) -> Result<()> {
    let c = start(store)?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    let apply = |data: Value| {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ssa"},
            "data": data,
        })
    };
    // Apply creates.
    let cm = api
        .patch(
            "ssa",
            &PatchParams::apply("manager-a"),
            &Patch::Apply(apply(json!({"a": "1", "b": "1"}))),
        )
        .await?;
    let managers = |cm: &ConfigMap| -> Vec<(String, String)> {
        cm.metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|m| {
                (
                    m.manager.clone().unwrap_or_default(),
                    m.operation.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    ensure!(
        managers(&cm).contains(&("manager-a".into(), "Apply".into())),
        "managedFields after the first apply: {:?}",
        cm.metadata.managed_fields
    );
    // Another manager changing an owned field conflicts...
    let err = api
        .patch(
            "ssa",
            &PatchParams::apply("manager-b"),
            &Patch::Apply(apply(json!({"a": "2"}))),
        )
        .await;
    match err {
        Err(kube::Error::Api(s)) => ensure!(
            s.code == 409 && s.reason == "Conflict",
            "expected a 409 apply conflict, got {s:?}"
        ),
        other => bail!("expected a 409 apply conflict, got {other:?}"),
    }
    // ...unless it forces, which takes ownership.
    let cm = api
        .patch(
            "ssa",
            &PatchParams::apply("manager-b").force(),
            &Patch::Apply(apply(json!({"a": "2"}))),
        )
        .await?;
    let data = cm.data.clone().unwrap_or_default();
    ensure!(
        data.get("a").map(String::as_str) == Some("2"),
        "forced apply: {data:?}"
    );
    ensure!(
        managers(&cm).contains(&("manager-b".into(), "Apply".into())),
        "managedFields after the forced apply: {:?}",
        cm.metadata.managed_fields
    );
    // A manager that stops applying a field it alone owns removes it.
    let cm = api
        .patch(
            "ssa",
            &PatchParams::apply("manager-a"),
            &Patch::Apply(apply(json!({}))),
        )
        .await?;
    let data = cm.data.clone().unwrap_or_default();
    ensure!(
        !data.contains_key("b") && data.get("a").map(String::as_str) == Some("2"),
        "after manager-a dropped b: {data:?}"
    );
    // An ordinary update is recorded as an Update by its manager.
    let cm = api
        .patch(
            "ssa",
            &PatchParams {
                field_manager: Some("manager-u".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"data": {"u": "1"}})),
        )
        .await?;
    ensure!(
        managers(&cm).contains(&("manager-u".into(), "Update".into())),
        "managedFields after an update: {:?}",
        cm.metadata.managed_fields
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------

async fn list_params_select_by_label(store: Store) -> Result<()> {
    let c = start(store)?;
    let api = Api::<ConfigMap>::default_namespaced(c.client().await?);
    for (name, app) in [("l1", "web"), ("l2", "web"), ("l3", "db"), ("l4", "cache")] {
        api.create(
            &PostParams::default(),
            &config_map(name, &[("suite", "list"), ("app", app)])?,
        )
        .await?;
    }
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    let got = names(
        &api.list(&ListParams::default().labels("app=web"))
            .await?
            .items,
    );
    ensure!(got == set(&["l1", "l2"]), "app=web: {got:?}");
    let selector: Selector = [
        Expression::Equal("suite".into(), "list".into()),
        Expression::NotIn("app".into(), ["web".to_string()].into()),
    ]
    .into_iter()
    .collect();
    let got = names(
        &api.list(&ListParams::default().labels_from(&selector))
            .await?
            .items,
    );
    ensure!(got == set(&["l3", "l4"]), "{selector}: {got:?}");
    let list = api
        .list(&ListParams::default().labels("suite=list").limit(3))
        .await?;
    ensure!(
        list.items.len() == 3 && list.metadata.continue_.is_some(),
        "limit 3: {:?} {:?}",
        names(&list.items),
        list.metadata
    );
    Ok(())
}

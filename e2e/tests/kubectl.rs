//! kubectl 1.32 with default flags against `skiff up`: apply (client- and
//! server-side), get (tables, wide, yaml/json/name, selectors, watch),
//! describe, edit, patch, scale, label, annotate, delete, wait, the
//! imperative `create`/`run`/`expose` commands, discovery, and the errors
//! users see when they get something wrong.
//!
//! The clusters have no nodes, so pods stay Pending and no controller
//! reacts; every assertion is about what the API server stores and answers.
//!
//! kubectl is pinned to 1.32: `$SKIFF_KUBECTL` if set, else the
//! `kubectl.1.32` that the gcloud kubectl dispatcher keeps next to itself
//! (the dispatcher alone would pick the minor version matching the server's),
//! else `kubectl` on `PATH`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{wait_for, Cluster};
use serde_json::Value;

/// kubectl, pinned to 1.32, talking to one cluster.
struct Kubectl {
    cluster: Cluster,
    bin: PathBuf,
}

fn kubectl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_KUBECTL") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.exists());
    if let Some(pinned) = on_path
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.with_file_name("kubectl.1.32"))
        .filter(|p| p.exists())
    {
        return pinned;
    }
    PathBuf::from("kubectl")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("kubectl")
        .join(name)
        .display()
        .to_string()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Kubectl {
    fn start() -> Result<Self> {
        Ok(Kubectl {
            cluster: Cluster::start_default()?,
            bin: kubectl_bin(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("KUBECONFIG", self.cluster.kubeconfig()).args(args);
        cmd
    }

    fn output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin.unwrap_or("").as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl, failing with its output when it fails; returns stdout.
    fn ok(&self, args: &[&str]) -> Result<String> {
        self.ok_stdin(args, "")
    }

    fn ok_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let out = self.output(args, Some(stdin))?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), text(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl expecting it to fail; returns stdout and stderr.
    fn fails(&self, args: &[&str]) -> Result<String> {
        self.fails_stdin(args, "")
    }

    fn fails_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let out = self.output(args, Some(stdin))?;
        ensure!(
            !out.status.success(),
            "kubectl {} should have failed but printed: {}",
            args.join(" "),
            text(&out)
        );
        Ok(text(&out))
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.ok(&all)?)?)
    }

    /// `kubectl get <what> -o jsonpath=<path>`.
    fn jsonpath(&self, what: &str, path: &str) -> Result<String> {
        self.ok(&["get", what, "-o", &format!("jsonpath={path}")])
    }

    /// Starts kubectl in the background with stdout going to a file.
    fn spawn(&self, args: &[&str], out: &Path) -> Result<Background> {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out)?)
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Background(child))
    }
}

/// A background kubectl, killed when dropped.
struct Background(Child);

impl Background {
    fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        wait_for("background kubectl to exit", timeout, || {
            Ok(self.0.try_wait()?)
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kubectl command line without quoting: `words("get pods -o wide")`.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `words(line)` followed by one argument that may hold spaces.
fn with<'a>(line: &'a str, last: &'a str) -> Vec<&'a str> {
    let mut v = words(line);
    v.push(last);
    v
}

/// The header line of a table, with the column padding collapsed.
fn header(table: &str) -> String {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The set of `-o name` lines.
fn names(out: &str) -> Vec<&str> {
    let mut v: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort_unstable();
    v
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: NAME
data:
  a: \"1\"
";

fn configmap(name: &str) -> String {
    CONFIGMAP.replace("NAME", name)
}

#[test]
fn client_side_apply_creates_reports_unchanged_and_three_way_merges_changes() -> Result<()> {
    let k = Kubectl::start()?;
    let app = fixture("app.yaml");
    let out = k.ok(&with("apply -f", &app))?;
    for line in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    let out = k.ok(&with("apply -f", &app))?;
    for line in [
        "deployment.apps/web unchanged",
        "service/web unchanged",
        "configmap/web-config unchanged",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    assert_eq!(
        k.jsonpath("deploy/web", "{.metadata.labels.tier}")?,
        "frontend"
    );

    let out = k.ok(&["apply", "-f", &fixture("app-changed.yaml")])?;
    for line in [
        "deployment.apps/web configured",
        "service/web unchanged",
        "configmap/web-config configured",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    let d = k.json(&words("get deploy web"))?;
    assert_eq!(d["spec"]["replicas"], 3, "replicas not changed: {d}");
    assert_eq!(
        d["metadata"]["labels"],
        serde_json::json!({"app": "web"}),
        "the removed label is still there"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "MODE", "value": "prod"}]),
        "the removed env var is still there"
    );
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .is_some_and(|s| s.contains("\"replicas\":3"))
    );
    assert_eq!(k.jsonpath("cm/web-config", "{.data.color}")?, "red");
    Ok(())
}

#[test]
fn server_side_apply_conflicts_with_a_scale_until_forced() -> Result<()> {
    let k = Kubectl::start()?;
    let ssa = fixture("ssa-deployment.yaml");
    let out = k.ok(&with("apply --server-side -f", &ssa))?;
    assert!(
        out.contains("deployment.apps/ssa serverside-applied"),
        "{out}"
    );
    let fields = k.json(&words("get deploy ssa --show-managed-fields"))?["metadata"]
        ["managedFields"]
        .clone();
    let apply = fields
        .as_array()
        .and_then(|a| a.iter().find(|e| e["operation"] == "Apply"))
        .with_context(|| format!("no Apply entry in {fields}"))?;
    assert_eq!(apply["manager"], "kubectl", "{fields}");
    assert!(
        apply["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{fields}"
    );

    k.ok(&words("scale deploy ssa --replicas=4"))?;
    let err = k.fails(&with("apply --server-side -f", &ssa))?;
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(k.jsonpath("deploy/ssa", "{.spec.replicas}")?, "4");

    let out = k.ok(&with("apply --server-side --force-conflicts -f", &ssa))?;
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(k.jsonpath("deploy/ssa", "{.spec.replicas}")?, "2");
    Ok(())
}

/// Upstream, a forced apply moves the conflicting field into the applier's
/// Apply entry and out of everyone else's.
#[test]
fn forced_server_side_apply_takes_ownership_of_the_conflicting_field() -> Result<()> {
    let k = Kubectl::start()?;
    let ssa = fixture("ssa-deployment.yaml");
    k.ok(&with("apply --server-side -f", &ssa))?;
    k.ok(&words("scale deploy ssa --replicas=4"))?;
    k.ok(&with("apply --server-side --force-conflicts -f", &ssa))?;
    let fields = k.json(&words("get deploy ssa --show-managed-fields"))?["metadata"]
        ["managedFields"]
        .clone();
    let entries = fields.as_array().context("no managedFields")?;
    let owners: Vec<String> = entries
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object())
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap_or("?"),
                e["operation"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        owners,
        vec!["kubectl/Apply".to_string()],
        "spec.replicas should be owned by kubectl's Apply entry only: {fields}"
    );
    Ok(())
}

/// A field the applier changed stays in its Apply entry, so dropping it
/// from the manifest later removes it from the object.
#[test]
fn server_side_apply_removes_a_label_it_changed_earlier_once_dropped() -> Result<()> {
    let k = Kubectl::start()?;
    let manifest = |labels: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-cm\n  labels:\n    keep: \"yes\"\n{labels}"
        )
    };
    k.ok_stdin(
        &words("apply --server-side -f -"),
        &manifest("    tier: a\n"),
    )?;
    k.ok_stdin(
        &words("apply --server-side -f -"),
        &manifest("    tier: b\n"),
    )?;
    assert_eq!(k.jsonpath("cm/ssa-cm", "{.metadata.labels.tier}")?, "b");
    k.ok_stdin(&words("apply --server-side -f -"), &manifest(""))?;
    let labels = k.json(&words("get cm ssa-cm --show-managed-fields"))?;
    assert_eq!(
        labels["metadata"]["labels"],
        serde_json::json!({"keep": "yes"}),
        "tier should be pruned: {labels}"
    );
    Ok(())
}

#[test]
fn get_prints_kubernetes_tables_wide_columns_and_structured_output() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    k.ok(&words("run p1 --image=nginx:1.27 --labels=app=p1,env=prod"))?;

    let cases: [(&str, &str, &str); 5] = [
        (
            "pods",
            "NAME READY STATUS RESTARTS AGE",
            "IP NODE NOMINATED NODE READINESS GATES",
        ),
        (
            "deployments",
            "NAME READY UP-TO-DATE AVAILABLE AGE",
            "CONTAINERS IMAGES SELECTOR",
        ),
        (
            "services",
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
            "SELECTOR",
        ),
        ("configmaps", "NAME DATA AGE", ""),
        ("namespaces", "NAME STATUS AGE", ""),
    ];
    for (resource, columns, wide) in cases {
        let table = k.ok(&["get", resource])?;
        assert_eq!(header(&table), columns, "{resource}:\n{table}");
        let wide_table = k.ok(&["get", resource, "-o", "wide"])?;
        let want = format!("{columns} {wide}").trim().to_string();
        assert_eq!(
            header(&wide_table),
            want,
            "{resource} -o wide:\n{wide_table}"
        );
    }
    let row = |table: &str, name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let pods = k.ok(&words("get pods"))?;
    assert!(row(&pods, "p1").starts_with("p1 0/1 Pending 0 "), "{pods}");
    let deploys = k.ok(&words("get deploy -o wide"))?;
    let web = row(&deploys, "web");
    assert!(web.starts_with("web 0/2 "), "{deploys}");
    assert!(web.ends_with("nginx nginx:1.27 app=web"), "{deploys}");
    let svcs = k.ok(&words("get svc web"))?;
    let svc = row(&svcs, "web");
    assert!(
        svc.starts_with("web ClusterIP ") && svc.contains(" 80/TCP "),
        "{svcs}"
    );
    assert!(row(&k.ok(&words("get cm"))?, "web-config").starts_with("web-config 1 "));
    assert!(row(&k.ok(&words("get ns"))?, "default").starts_with("default Active "));

    // -o name, --show-labels
    assert_eq!(
        k.ok(&words("get deploy/web svc/web cm/web-config -o name"))?
            .lines()
            .collect::<Vec<_>>(),
        vec!["deployment.apps/web", "service/web", "configmap/web-config"]
    );
    let labelled = k.ok(&words("get pods --show-labels"))?;
    assert!(header(&labelled).ends_with("AGE LABELS"), "{labelled}");
    assert!(
        row(&labelled, "p1").ends_with("app=p1,env=prod"),
        "{labelled}"
    );

    // -o json and -o yaml carry the stored object, and round-trip through replace.
    let d = k.json(&words("get deploy web"))?;
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["metadata"]["namespace"], "default");
    for f in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(d["metadata"][f].is_string(), "missing metadata.{f}: {d}");
    }
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    let yaml = k.ok(&words("get deploy web -o yaml"))?;
    assert!(yaml.contains("kind: Deployment") && yaml.contains("replicas: 2"));
    assert!(yaml.contains(&format!(
        "uid: {}",
        d["metadata"]["uid"].as_str().unwrap_or("?")
    )));
    let out = k.ok_stdin(
        &words("replace -f -"),
        &yaml.replace("replicas: 2", "replicas: 5"),
    )?;
    assert!(out.contains("deployment.apps/web replaced"), "{out}");
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "5");
    let json = k.ok(&words("get cm web-config -o json"))?;
    let out = k.ok_stdin(
        &words("replace -f -"),
        &json.replace("\"blue\"", "\"green\""),
    )?;
    assert!(out.contains("configmap/web-config replaced"), "{out}");
    assert_eq!(k.jsonpath("cm/web-config", "{.data.color}")?, "green");
    Ok(())
}

#[test]
fn get_filters_by_label_and_field_selectors() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&words("run p1 --image=nginx --labels=app=p1,env=prod"))?;
    k.ok(&words("run p2 --image=nginx --labels=env=dev"))?;
    k.ok(&words("run p3 --image=nginx"))?;
    let cases: [(&str, &[&str]); 7] = [
        ("env=prod", &["pod/p1"]),
        ("env==dev", &["pod/p2"]),
        ("env!=prod", &["pod/p2", "pod/p3"]),
        ("env in (dev,prod)", &["pod/p1", "pod/p2"]),
        ("env notin (dev)", &["pod/p1", "pod/p3"]),
        ("env", &["pod/p1", "pod/p2"]),
        ("!env", &["pod/p3"]),
    ];
    for (selector, want) in cases {
        let out = k.ok(&["get", "pods", "-l", selector, "-o", "name"])?;
        assert_eq!(names(&out), want, "-l {selector:?}");
    }
    let out = k.ok(&words("get pods -l env=prod,app=p1 -o name"))?;
    assert_eq!(names(&out), ["pod/p1"]);
    let out = k.ok(&words("get pods --field-selector metadata.name=p2 -o name"))?;
    assert_eq!(names(&out), ["pod/p2"]);
    let out = k.ok(&words(
        "get pods --field-selector metadata.name!=p2 -o name",
    ))?;
    assert_eq!(names(&out), ["pod/p1", "pod/p3"]);
    let out = k.ok(&words(
        "get pods --field-selector status.phase=Pending -l env -o name",
    ))?;
    assert_eq!(names(&out), ["pod/p1", "pod/p2"]);
    let out = k.output(&words("get pods -l env=none"), None)?;
    assert!(out.status.success());
    assert!(text(&out).contains("No resources found in default namespace."));
    Ok(())
}

#[test]
fn get_watch_prints_rows_for_creates_updates_and_deletes() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok_stdin(&words("apply -f -"), &configmap("sentinel"))?;
    let dir = tempfile::tempdir()?;
    let (w, wo, wj) = (
        dir.path().join("w"),
        dir.path().join("wo"),
        dir.path().join("wj"),
    );
    let _w = k.spawn(&words("get cm -w"), &w)?;
    let _wo = k.spawn(&words("get cm --watch-only"), &wo)?;
    let _wj = k.spawn(&words("get cm -w -o json"), &wj)?;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // Touch the sentinel until every watcher has printed it: from then on
    // each of them is watching.
    let mut n = 0;
    wait_for("the watches to start", Duration::from_secs(20), || {
        n += 1;
        k.ok(&[
            "annotate",
            "cm",
            "sentinel",
            &format!("n={n}"),
            "--overwrite",
        ])?;
        std::thread::sleep(Duration::from_millis(200));
        Ok([&w, &wo, &wj]
            .iter()
            .all(|p| read(p).contains("sentinel"))
            .then_some(()))
    })?;

    k.ok_stdin(&words("apply -f -"), &configmap("watched"))?;
    k.ok(&with("patch cm watched -p", r#"{"data":{"b":"2"}}"#))?;
    k.ok(&words("delete cm watched"))?;

    let rows = |p: &Path| -> Vec<String> {
        read(p)
            .lines()
            .filter(|l| l.starts_with("watched "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let want = ["watched 1", "watched 2", "watched 2"];
    for p in [&w, &wo] {
        wait_for("watch rows", Duration::from_secs(10), || {
            Ok((rows(p).len() >= 3).then_some(()))
        })
        .with_context(|| format!("{}:\n{}", p.display(), read(p)))?;
        assert_eq!(rows(p), want, "{}", read(p));
    }
    let table = read(&w);
    assert_eq!(header(&table), "NAME DATA AGE", "{table}");
    // The current list comes first: the sentinel, next to the namespace's
    // kube-root-ca.crt (published by the controller manager, as upstream).
    assert!(
        table
            .lines()
            .skip(1)
            .take(2)
            .any(|l| l.starts_with("sentinel ")),
        "-w starts with the current list: {table}"
    );
    let watch_only = read(&wo);
    assert_eq!(header(&watch_only), "NAME DATA AGE", "{watch_only}");

    let objects = |p: &Path| -> Vec<Value> {
        serde_json::Deserializer::from_str(&read(p))
            .into_iter::<Value>()
            .map_while(Result::ok)
            .filter(|o| o["metadata"]["name"] == "watched")
            .collect()
    };
    wait_for("json watch objects", Duration::from_secs(10), || {
        Ok((objects(&wj).len() >= 3).then_some(()))
    })
    .with_context(|| read(&wj))?;
    let objs = objects(&wj);
    assert_eq!(objs[0]["data"], serde_json::json!({"a": "1"}));
    assert_eq!(objs[1]["data"], serde_json::json!({"a": "1", "b": "2"}));
    assert_eq!(objs[0]["kind"], "ConfigMap");
    Ok(())
}

#[test]
fn describe_shows_the_key_fields_of_a_deployment_and_a_pending_pod() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    let out = k.ok(&words("describe deployment web"))?;
    for want in [
        "Name: web",
        "Namespace: default",
        "Labels: app=web",
        "Selector: app=web",
        "Replicas: 2 desired |",
        "StrategyType: RollingUpdate",
        "RollingUpdateStrategy: 25% max unavailable, 25% max surge",
        "Image: nginx:1.27",
        "Port: 80/TCP",
        "MODE: prod",
    ] {
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(want), "missing {want:?} in:\n{out}");
    }

    k.ok(&with(
        "run p1 --image=nginx:1.27 --labels=app=p1 --overrides",
        r#"{"spec":{"nodeSelector":{"disk":"ssd"}}}"#,
    ))?;
    k.ok(&words("run p2 --image=busybox --env=K=V"))?;
    for (pod, wants) in [
        (
            "p1",
            &[
                "Name: p1",
                "Node-Selectors: disk=ssd",
                "Status: Pending",
                "Image: nginx:1.27",
                "Labels: app=p1",
            ][..],
        ),
        (
            "p2",
            &[
                "Name: p2",
                "Status: Pending",
                "Image: busybox",
                "K: V",
                "QoS Class: BestEffort",
            ][..],
        ),
    ] {
        let out = k.ok(&with("describe pod", pod))?;
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in wants {
            assert!(flat.contains(want), "missing {want:?} in:\n{out}");
        }
    }
    Ok(())
}

#[test]
fn edit_with_an_editor_script_saves_valid_changes_and_reports_invalid_ones() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    let dir = tempfile::tempdir()?;
    let editor = |name: &str, sed: &str| -> Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\nsed -i '{sed}' \"$1\"\n"))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(p.display().to_string())
    };
    let edit = |script: &str| -> Result<Output> {
        let mut cmd = k.command(&words("edit deployment web"));
        cmd.env("EDITOR", script).env_remove("KUBE_EDITOR");
        Ok(cmd.stdin(Stdio::null()).output()?)
    };

    let out = edit(&editor("good", "s/replicas: 2/replicas: 3/")?)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deployment.apps/web edited"),
        "{}",
        text(&out)
    );
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "3");

    let out = edit(&editor("bad", "s/replicas: 3/replicas: -5/")?)?;
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains(r#"deployments.apps "web" is invalid"#),
        "{msg}"
    );
    // kubectl keeps the rejected copy with the server's field errors on top.
    let copy = msg
        .split('"')
        .find(|s| s.ends_with(".yaml") && s.contains("edit"))
        .with_context(|| format!("no saved copy named in {msg}"))?;
    let saved = std::fs::read_to_string(copy)?;
    let _ = std::fs::remove_file(copy);
    let comments: String = saved.lines().filter(|l| l.starts_with('#')).collect();
    assert!(comments.contains("spec.replicas"), "{saved}");
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "3");
    Ok(())
}

#[test]
fn patch_applies_strategic_merge_and_json_patches_and_subresources() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    let images = || k.jsonpath("deploy/web", "{.spec.template.spec.containers[*].image}");

    // strategic (the default) merges containers by name
    let add =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#;
    let out = k.ok(&with("patch deploy web -p", add))?;
    assert!(out.contains("deployment.apps/web patched"), "{out}");
    assert_eq!(images()?, "busybox nginx:1.27");
    let bump =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}"#;
    k.ok(&with("patch deploy web --type strategic -p", bump))?;
    assert_eq!(images()?, "busybox nginx:1.28");
    assert_eq!(
        k.jsonpath(
            "deploy/web",
            "{.spec.template.spec.containers[?(@.name==\"nginx\")].env[0].name}"
        )?,
        "MODE",
        "a strategic merge keeps the container's other fields"
    );
    let drop =
        r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"delete","name":"sidecar"}]}}}}"#;
    k.ok(&with("patch deploy web -p", drop))?;
    assert_eq!(images()?, "nginx:1.28");

    // merge: maps merge, null deletes, lists are replaced
    k.ok(&with(
        "patch deploy web --type merge -p",
        r#"{"metadata":{"labels":{"m":"1","tier":null}}}"#,
    ))?;
    assert_eq!(
        k.json(&words("get deploy web"))?["metadata"]["labels"],
        serde_json::json!({"app": "web", "m": "1"})
    );

    // json
    let body = r#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":5},{"op":"add","path":"/metadata/labels/j","value":"x"}]"#;
    k.ok(&with("patch deploy web --type json -p", body))?;
    assert_eq!(
        k.jsonpath("deploy/web", "{.spec.replicas} {.metadata.labels.j}")?,
        "5 x"
    );
    let body = r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":6}]"#;
    let err = k.fails(&with("patch deploy web --type json -p", body))?;
    assert!(err.contains("/spec/replicas"), "{err}");
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "5");

    // subresources
    let out = k.ok(&with(
        "patch deploy web --subresource=scale -p",
        r#"{"spec":{"replicas":7}}"#,
    ))?;
    assert!(out.contains("scale.autoscaling/web patched"), "{out}");
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "7");
    // (a Service: no controller writes a ClusterIP Service's status)
    k.ok(&with(
        "patch svc web --subresource=status --type merge -p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1"}]}},"spec":{"type":"NodePort"}}"#,
    ))?;
    assert_eq!(
        k.jsonpath(
            "svc/web",
            "{.status.loadBalancer.ingress[0].ip} {.spec.type}"
        )?,
        "192.0.2.1 ClusterIP",
        "a status patch changes status only"
    );
    k.ok(&with(
        "patch svc web --type merge -p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.9"}]}}}"#,
    ))?;
    assert_eq!(
        k.jsonpath("svc/web", "{.status.loadBalancer.ingress[0].ip}")?,
        "192.0.2.1",
        "a main-resource patch ignores status"
    );
    Ok(())
}

#[test]
fn scale_sets_replicas_and_honours_the_current_replicas_precondition() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    let out = k.ok(&words("scale deployment web --replicas=4"))?;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "4");
    let err = k.fails(&words(
        "scale deployment/web --current-replicas=2 --replicas=6",
    ))?;
    assert!(err.contains("Expected replicas to be 2, was 4"), "{err}");
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "4");
    k.ok(&words(
        "scale deployment/web --current-replicas=4 --replicas=0",
    ))?;
    assert_eq!(k.jsonpath("deploy/web", "{.spec.replicas}")?, "0");
    Ok(())
}

#[test]
fn label_and_annotate_add_overwrite_and_remove_keys() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&words("run p1 --image=nginx"))?;
    let out = k.ok(&words("label pod p1 team=a"))?;
    assert!(out.contains("pod/p1 labeled"), "{out}");
    let err = k.fails(&words("label pod p1 team=b"))?;
    assert!(
        err.contains("'team' already has a value (a), and --overwrite is false"),
        "{err}"
    );
    assert_eq!(k.jsonpath("pod/p1", "{.metadata.labels.team}")?, "a");
    k.ok(&words("label pod p1 team=b --overwrite"))?;
    assert_eq!(k.jsonpath("pod/p1", "{.metadata.labels.team}")?, "b");
    let out = k.ok(&words("label pod p1 team-"))?;
    assert!(out.contains("pod/p1 unlabeled"), "{out}");
    assert_eq!(
        k.json(&words("get pod p1"))?["metadata"]["labels"],
        serde_json::json!({"run": "p1"})
    );

    let out = k.ok(&words("annotate pod p1 note=x other=o"))?;
    assert!(out.contains("pod/p1 annotated"), "{out}");
    let err = k.fails(&words("annotate pod p1 note=y"))?;
    assert!(err.contains("'note' already has a value (x)"), "{err}");
    k.ok(&words("annotate pod p1 note=y --overwrite"))?;
    assert_eq!(k.jsonpath("pod/p1", "{.metadata.annotations.note}")?, "y");
    k.ok(&words("annotate pod p1 note-"))?;
    assert_eq!(
        k.json(&words("get pod p1"))?["metadata"]["annotations"],
        serde_json::json!({"other": "o"})
    );
    // by selector, on another kind
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    k.ok(&words("label deploy,svc -l app=web env=test"))?;
    assert_eq!(k.jsonpath("deploy/web", "{.metadata.labels.env}")?, "test");
    Ok(())
}

#[test]
fn delete_by_name_file_selector_and_all_and_reports_missing_objects() -> Result<()> {
    let k = Kubectl::start()?;
    let app = fixture("app.yaml");
    k.ok(&with("apply -f", &app))?;
    for (name, labels) in [
        ("p1", "env=dev"),
        ("p2", "env=dev"),
        ("p3", "env=prod"),
        ("p4", "x=y"),
    ] {
        k.ok(&["run", name, "--image=nginx", &format!("--labels={labels}")])?;
    }

    let out = k.ok(&words("delete pod p4"))?;
    assert!(out.contains(r#"pod "p4" deleted"#), "{out}");
    let err = k.fails(&words("delete pod p4"))?;
    assert!(
        err.contains(r#"Error from server (NotFound): pods "p4" not found"#),
        "{err}"
    );
    k.ok(&words("delete pod p4 --ignore-not-found"))?;

    let out = k.ok(&words("delete pods -l env=dev"))?;
    assert!(
        out.contains(r#"pod "p1" deleted"#) && out.contains(r#"pod "p2" deleted"#),
        "{out}"
    );
    // Only the pods this test ran (the Deployment's own pods come and go).
    let listed = k.ok(&words("get pods -o name"))?;
    let remaining: Vec<&str> = names(&listed)
        .into_iter()
        .filter(|n| ["pod/p1", "pod/p2", "pod/p3", "pod/p4"].contains(n))
        .collect();
    assert_eq!(remaining, ["pod/p3"]);

    let out = k.ok(&["delete", "-f", &app, "--wait"])?;
    for line in [
        r#"deployment.apps "web" deleted"#,
        r#"service "web" deleted"#,
        r#"configmap "web-config" deleted"#,
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    let err = k.fails(&words("get deploy web"))?;
    assert!(err.contains("NotFound"), "{err}");

    k.ok_stdin(&words("apply -f -"), &configmap("c1"))?;
    k.ok_stdin(&words("apply -f -"), &configmap("c2"))?;
    let out = k.ok(&words("delete cm --all"))?;
    assert!(
        out.contains(r#"configmap "c1" deleted"#) && out.contains(r#"configmap "c2" deleted"#),
        "{out}"
    );
    let left = k.ok(&words("get cm -o name"))?;
    assert!(
        !left.contains("configmap/c1") && !left.contains("configmap/c2"),
        "left after --all: {left}"
    );
    Ok(())
}

#[test]
fn wait_returns_for_deletion_jsonpath_and_conditions() -> Result<()> {
    let k = Kubectl::start()?;
    k.ok(&["apply", "-f", &fixture("app.yaml")])?;

    // --for=delete blocks while a finalizer holds the object.
    k.ok_stdin(
        &words("apply -f -"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n",
    )?;
    k.ok(&words("delete cm held --wait=false"))?;
    let dir = tempfile::tempdir()?;
    let mut waiter = k.spawn(
        &words("wait --for=delete cm/held --timeout=30s"),
        &dir.path().join("wait"),
    )?;
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        waiter.0.try_wait()?.is_none(),
        "wait returned while the finalizer holds"
    );
    k.ok(&with(
        "patch cm held --type json -p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ))?;
    let status = waiter.wait(Duration::from_secs(20))?;
    assert!(
        status.success(),
        "kubectl wait --for=delete exited {status}"
    );

    // jsonpath after a scale
    k.ok(&words("scale deploy web --replicas=3"))?;
    let out = k.ok(&[
        "wait",
        "--for=jsonpath={.spec.replicas}=3",
        "deploy/web",
        "--timeout=10s",
    ])?;
    assert!(out.contains("deployment.apps/web condition met"), "{out}");

    // a condition set through the status subresource (a type of our own:
    // the Deployment controller owns Available and Progressing)
    let err = k.fails(&words(
        "wait --for=condition=Approved deploy/web --timeout=1s",
    ))?;
    assert!(err.contains("timed out"), "{err}");
    let body = r#"{"status":{"conditions":[{"type":"Approved","status":"True","reason":"Reviewed","message":"ok","lastUpdateTime":"2024-01-01T00:00:00Z","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#;
    k.ok(&with(
        "patch deploy web --subresource=status --type merge -p",
        body,
    ))?;
    let out = k.ok(&words(
        "wait --for=condition=Approved deploy/web --timeout=10s",
    ))?;
    assert!(out.contains("deployment.apps/web condition met"), "{out}");
    let err = k.fails(&words(
        "wait --for=condition=Approved=False deploy/web --timeout=1s",
    ))?;
    assert!(err.contains("timed out"), "{err}");
    Ok(())
}

#[test]
fn mistakes_get_the_errors_kubernetes_gives() -> Result<()> {
    let k = Kubectl::start()?;
    let err = k.fails_stdin(
        &words("apply -f -"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata:\n  a: \"1\"\ndatta:\n  b: \"2\"\n",
    )?;
    assert!(err.contains("strict decoding error"), "{err}");
    assert!(err.contains(r#"unknown field "datta""#), "{err}");
    assert!(k.fails(&words("get cm typo"))?.contains("NotFound"));

    let err = k.fails_stdin(&words("apply -f -"), &configmap("Bad_Name"))?;
    assert!(
        err.contains(r#"The ConfigMap "Bad_Name" is invalid"#),
        "{err}"
    );
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );

    let out = k.output(&words("get pods -n nope"), None)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No resources found in nope namespace."));
    let err = k.fails_stdin(&words("create -n nope -f -"), &configmap("c"))?;
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");
    let err = k.fails(&words("run p --image=nginx -n nope"))?;
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");

    let err = k.fails(&words("get foos"))?;
    assert!(
        err.contains(r#"the server doesn't have a resource type "foos""#),
        "{err}"
    );

    k.ok_stdin(&words("create -f -"), &configmap("dup"))?;
    let err = k.fails_stdin(&words("create -f -"), &configmap("dup"))?;
    assert!(
        err.contains("AlreadyExists") && err.contains(r#"configmaps "dup" already exists"#),
        "{err}"
    );
    Ok(())
}

#[test]
fn run_and_expose_create_a_pod_and_its_service() -> Result<()> {
    let k = Kubectl::start()?;
    let out = k.ok(&words(
        "run web --image=nginx:1.27 --port=80 --labels=app=web",
    ))?;
    assert!(out.contains("pod/web created"), "{out}");
    assert_eq!(
        k.jsonpath("pod/web", "{.spec.containers[0].image} {.status.phase}")?,
        "nginx:1.27 Pending"
    );
    let out = k.ok(&words(
        "expose pod web --port=8080 --target-port=80 --name=web-svc",
    ))?;
    assert!(out.contains("service/web-svc exposed"), "{out}");
    let svc = k.json(&words("get svc web-svc"))?;
    assert_eq!(svc["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);

    k.ok(&["apply", "-f", &fixture("app.yaml")])?;
    let out = k.ok(&words(
        "expose deployment web --port=9090 --name=web-deploy",
    ))?;
    assert!(out.contains("service/web-deploy exposed"), "{out}");
    assert_eq!(
        k.jsonpath("svc/web-deploy", "{.spec.ports[0].port}")?,
        "9090"
    );
    Ok(())
}

/// kubectl's typed clients (create namespace/configmap/secret/deployment)
/// send protobuf bodies, as they do to any Kubernetes API server.
#[test]
fn create_namespace_configmap_secret_and_deployment_work() -> Result<()> {
    let k = Kubectl::start()?;
    let out = k.ok(&words("create namespace team-a"))?;
    assert!(out.contains("namespace/team-a created"), "{out}");
    assert_eq!(k.jsonpath("ns/team-a", "{.status.phase}")?, "Active");

    let out = k.ok(&words(
        "create configmap settings -n team-a --from-literal=color=blue --from-literal=size=L",
    ))?;
    assert!(out.contains("configmap/settings created"), "{out}");
    assert_eq!(
        k.json(&words("get cm settings -n team-a"))?["data"],
        serde_json::json!({"color": "blue", "size": "L"})
    );

    let out = k.ok(&words(
        "create secret generic creds -n team-a --from-literal=password=s3cret",
    ))?;
    assert!(out.contains("secret/creds created"), "{out}");
    let s = k.json(&words("get secret creds -n team-a"))?;
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["password"], "czNjcmV0");

    let out = k.ok(&words(
        "create deployment api -n team-a --image=nginx:1.27 --replicas=2 --port=80",
    ))?;
    assert!(out.contains("deployment.apps/api created"), "{out}");
    let d = k.json(&words("get deploy api -n team-a"))?;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app": "api"})
    );
    let out = k.ok(&words("expose deployment api -n team-a"))?;
    assert!(out.contains("service/api exposed"), "{out}");
    assert!(
        k.fails(&words("get svc api"))?.contains("NotFound"),
        "the service is in team-a"
    );
    assert_eq!(
        k.ok(&with(
            "get svc api -n team-a -o",
            "jsonpath={.spec.ports[0].port}"
        ))?,
        "80"
    );
    Ok(())
}

#[test]
fn discovery_lists_resources_explains_fields_and_shows_versions() -> Result<()> {
    let k = Kubectl::start()?;
    let out = k.ok(&["api-resources"])?;
    assert_eq!(header(&out), "NAME SHORTNAMES APIVERSION NAMESPACED KIND");
    for want in [
        "configmaps cm v1 true ConfigMap",
        "namespaces ns v1 false Namespace",
        "nodes no v1 false Node",
        "pods po v1 true Pod",
        "secrets v1 true Secret",
        "services svc v1 true Service",
        "events ev v1 true Event",
        "deployments deploy apps/v1 true Deployment",
        "replicasets rs apps/v1 true ReplicaSet",
        "daemonsets ds apps/v1 true DaemonSet",
        "jobs batch/v1 true Job",
        "leases coordination.k8s.io/v1 true Lease",
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == want),
            "missing {want:?} in:\n{out}"
        );
    }
    let versions = k.ok(&["api-versions"])?;
    for v in ["v1", "apps/v1", "batch/v1"] {
        assert!(
            versions.lines().any(|l| l == v),
            "missing {v} in {versions}"
        );
    }

    let out = k.ok(&words("explain deployment.spec.replicas"))?;
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(out.contains("FIELD: replicas <integer>"), "{out}");
    assert!(out.contains("Number of desired pods"), "{out}");
    let out = k.ok(&words("explain pods.spec.containers.image"))?;
    assert!(out.contains("FIELD: image <string>"), "{out}");

    let v: Value = serde_json::from_str(&k.ok(&words("version -o json"))?)?;
    assert_eq!(
        v["clientVersion"]["minor"], "32",
        "kubectl is not 1.32: {v}"
    );
    let server = &v["serverVersion"];
    assert_eq!(server["major"], "1", "{v}");
    assert!(
        server["gitVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("v1.")),
        "{v}"
    );
    let out = k.ok(&["version"])?;
    assert!(out.contains("Server Version: v1."), "{out}");
    Ok(())
}

//! The manifests folder: files are applied at start and on change, objects
//! whose file (or document) disappears are pruned, and a bad file produces
//! an Event naming it without stopping the others.

use std::time::Duration;

use e2e::{wait_for, Cluster, ClusterOptions};

fn configmap(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  x: \"{value}\"\n")
}

#[test]
fn a_manifests_folder_is_applied_kept_in_sync_and_pruned() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("app.yaml"),
        format!("{}---\n{}", configmap("one", "1"), configmap("two", "2")),
    )?;
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\ndata: [1\n",
    )?;
    let c = Cluster::start(ClusterOptions {
        extra_args: vec!["--manifests".into(), dir.path().display().to_string()],
        ..Default::default()
    })?;
    let value = |name: &str| -> anyhow::Result<Option<String>> {
        let out = c.kubectl_output(&["get", "cm", name, "-o", "jsonpath={.data.x}"])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    wait_for("both objects of app.yaml", Duration::from_secs(20), || {
        Ok(
            (value("one")?.as_deref() == Some("1") && value("two")?.as_deref() == Some("2"))
                .then_some(()),
        )
    })?;
    // The broken file is reported by name and did not stop app.yaml.
    wait_for(
        "an event naming broken.yaml",
        Duration::from_secs(20),
        || {
            let ev = c.kubectl(&[
                "get",
                "events",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.items[*].message}",
            ])?;
            Ok(ev.contains("broken.yaml: does not parse").then_some(()))
        },
    )?;
    // Changing the file updates the object and prunes the document that left it.
    std::fs::write(dir.path().join("app.yaml"), configmap("one", "3"))?;
    wait_for("the update and the prune", Duration::from_secs(20), || {
        Ok((value("one")?.as_deref() == Some("3") && value("two")?.is_none()).then_some(()))
    })?;
    // Deleting the file prunes its objects.
    std::fs::remove_file(dir.path().join("app.yaml"))?;
    wait_for(
        "the file's objects to be pruned",
        Duration::from_secs(20),
        || Ok(value("one")?.is_none().then_some(())),
    )?;
    Ok(())
}

#[test]
fn a_missing_manifests_folder_is_a_one_line_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(e2e::skiff_bin())
        .args([
            "up",
            "--nodes",
            "0",
            "--runtime",
            "sim",
            "--port",
            &e2e::free_port()?.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--manifests")
        .arg(dir.path().join("nope"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the manifests folder") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    Ok(())
}

/// Every manifest the project ships is accepted by the API server with
/// strict field validation, and its workloads run (on simulated nodes).
#[test]
fn the_shipped_manifests_apply_cleanly_and_their_deployments_become_available() -> anyhow::Result<()>
{
    let cluster = e2e::Cluster::start(e2e::ClusterOptions {
        nodes: 2,
        ..Default::default()
    })?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    for dir in ["examples", "game-launch"] {
        let path = root.join(dir);
        let out = cluster.kubectl_output(&[
            "apply",
            "--validate=strict",
            "-f",
            path.to_str().unwrap_or_default(),
        ])?;
        assert!(
            out.status.success(),
            "kubectl apply -f manifests/{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let hpas = cluster.kubectl(&["get", "hpa", "-n", "game", "-o", "name"])?;
    assert_eq!(hpas.lines().count(), 2, "{hpas}");
    for deployment in ["game-api", "matchmaker", "leaderboard"] {
        cluster.kubectl(&[
            "wait",
            "-n",
            "game",
            "--for=condition=Available",
            &format!("deployment/{deployment}"),
            "--timeout=60s",
        ])?;
    }
    Ok(())
}

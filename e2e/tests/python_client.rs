//! The official Python `kubernetes` client against a real `skiff up`, on
//! both stores: `e2e/python/client_test.py` creates, lists, patches,
//! watches and deletes, and prints a summary this test checks.
//!
//! Needs `python3` and `pip install kubernetes`; without them the test fails
//! and says so, rather than passing silently.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use e2e::{start_on, Cluster, Store};

fn require_python_client() -> Result<()> {
    let out = Command::new("python3")
        .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
        .output()
        .context("python3 is not installed: the Python client tests need python3 and `pip install kubernetes`")?;
    ensure!(
        out.status.success(),
        "the Python kubernetes client is missing: run `pip install kubernetes` ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn run_client_test(cluster: &Cluster) -> Result<()> {
    require_python_client()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("client_test.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} failed with {}:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            script.display(),
            out.status
        );
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("SUMMARY "))
        .with_context(|| format!("no SUMMARY line in:\n{stdout}\n{stderr}"))?;
    for part in [
        "created=3",
        "listed=py-cm,py-deploy",
        "patched=merge,strategic",
        "events=ADDED,MODIFIED,DELETED",
        "deleted=ok",
    ] {
        ensure!(
            summary.split_whitespace().any(|w| w == part),
            "summary {summary:?} lacks {part}"
        );
    }
    Ok(())
}

#[test]
fn the_python_client_creates_lists_patches_watches_and_deletes_on_the_embedded_store() -> Result<()>
{
    require_python_client()?;
    run_client_test(&start_on(Store::Embedded)?.cluster)
}

#[test]
fn the_python_client_creates_lists_patches_watches_and_deletes_on_the_etcd_store() -> Result<()> {
    require_python_client()?;
    run_client_test(&start_on(Store::Etcd)?.cluster)
}

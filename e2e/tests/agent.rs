//! `skiff server` plus `skiff agent`: an agent that has only the node token
//! fetches and verifies the cluster CA, registers its node, and runs pods the
//! scheduler binds to it; a wrong token is refused with one line.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{free_port, skiff_bin, wait_for};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_agent_joins_with_the_node_token_and_runs_scheduled_pods() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server_dir = dir.path().join("server");
    let port = free_port()?;
    let _server = Proc(
        Command::new(skiff_bin())
            .args(["server", "--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&server_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let kubeconfig = server_dir.join("kubeconfig.yaml");
    let token = server_dir.join("node-token");
    wait_for("the server's node token", Duration::from_secs(30), || {
        Ok(token.exists().then_some(()))
    })?;
    let url = format!("https://127.0.0.1:{port}");

    // A token that is not a node token is refused before anything runs.
    let bad = dir.path().join("bad-token");
    std::fs::write(&bad, "not-a-token\n")?;
    let out = Command::new(skiff_bin())
        .args([
            "agent",
            "--server",
            &url,
            "--node-name",
            "w0",
            "--runtime",
            "sim",
        ])
        .arg("--token-file")
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("bad-agent"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node token") && err.trim().lines().count() == 1,
        "{err}"
    );

    let _agent = Proc(
        Command::new(skiff_bin())
            .args([
                "agent",
                "--server",
                &url,
                "--node-name",
                "worker-1",
                "--runtime",
                "sim",
            ])
            .arg("--token-file")
            .arg(&token)
            .arg("--data-dir")
            .arg(dir.path().join("agent"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for("node worker-1 to be Ready", Duration::from_secs(30), || {
        let out = kubectl(
            &kubeconfig,
            &[
                "get",
                "node",
                "worker-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ],
        );
        Ok(out.ok().filter(|s| s == "True").map(|_| ()))
    })?;
    kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
        ],
    )?;
    wait_for(
        "two Running pods on worker-1",
        Duration::from_secs(30),
        || {
            let out = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=web",
                    "-o",
                    "jsonpath={range .items[*]}{.spec.nodeName}/{.status.phase} {end}",
                ],
            )?;
            Ok((out
                .split_whitespace()
                .filter(|p| *p == "worker-1/Running")
                .count()
                == 2)
                .then_some(()))
        },
    )?;
    Ok(())
}

//! `kubectl exec` and `kubectl attach` on real nodes: `skiff up --runtime
//! containerd` runs busybox pods; kubectl 1.32 (WebSocket,
//! `v5.channel.k8s.io`), kube-rs (terminal resizes) and the Python client
//! stream through the API server to the node agent, which runs the
//! command with containerd's Tasks.Exec.
//!
//! These tests run as root and FAIL (not skip) when a component is
//! missing. Containerd tests of every worktree share bridge names: run
//! them under `flock /tmp/skiff-containerd-e2e.lock ... -- --test-threads=1`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::containerd::{block_on, NodeCluster, IMAGE};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Pod `shell` (one container, `WHO=app`) and pod `duo` (containers
/// `first` and `second`, each with its own `WHO`).
fn start_pods(env: &NodeCluster) -> Result<()> {
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: shell}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env: [{{name: WHO, value: app}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: duo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: first
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env: [{{name: WHO, value: first}}]
  - name: second
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env: [{{name: WHO, value: second}}]
"#
    ))?;
    env.wait_running("shell", Duration::from_secs(60))?;
    env.wait_running("duo", Duration::from_secs(60))?;
    Ok(())
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn kubectl(env: &NodeCluster, args: &[&str], stdin: Option<&str>) -> Result<Run> {
    let out = match stdin {
        Some(input) => env.cluster().kubectl_stdin(args, input)?,
        None => env.cluster().kubectl_output(args)?,
    };
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn kubectl_exec_streams_stdout_and_stderr_and_exits_with_the_commands_code() -> Result<()> {
    let env = NodeCluster::start()?;
    start_pods(&env)?;

    let run = kubectl(
        &env,
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    )?;
    ensure!(run.stdout == "out\n", "stdout: {:?}", run.stdout);
    ensure!(run.stderr.contains("err\n"), "stderr: {:?}", run.stderr);
    ensure!(
        run.stderr.contains("command terminated with exit code 3"),
        "stderr: {:?}",
        run.stderr
    );
    ensure!(run.code == Some(3), "kubectl exited with {:?}", run.code);

    let ok = kubectl(
        &env,
        &["exec", "shell", "--", "sh", "-c", "echo $WHO"],
        None,
    )?;
    ensure!(
        ok.code == Some(0) && ok.stdout == "app\n",
        "{:?} {:?}",
        ok.code,
        ok.stdout
    );

    // A command that cannot start fails the exec (kubectl exits non-zero).
    let missing = kubectl(&env, &["exec", "shell", "--", "/no/such/binary"], None)?;
    ensure!(missing.code != Some(0), "a missing binary exec succeeded");
    ensure!(
        missing
            .stderr
            .contains("error executing command in container"),
        "stderr: {:?}",
        missing.stderr
    );

    // Large output arrives whole and in order.
    let started = Instant::now();
    let seq = kubectl(
        &env,
        &["exec", "shell", "--", "busybox", "seq", "1", "200000"],
        None,
    )?;
    let elapsed = started.elapsed();
    let lines: Vec<&str> = seq.stdout.lines().collect();
    ensure!(lines.len() == 200_000, "{} lines", lines.len());
    ensure!(lines[199_999] == "200000" && lines[0] == "1");
    println!(
        "exec of `seq 1 200000` ({} bytes) took {elapsed:?}",
        seq.stdout.len()
    );

    // Round-trip latency of a trivial exec.
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let run = kubectl(&env, &["exec", "shell", "--", "true"], None)?;
        ensure!(run.code == Some(0), "true: {}", run.stderr);
        times.push(started.elapsed());
    }
    times.sort();
    println!("kubectl exec -- true: median {:?} of 5", times[2]);
    Ok(())
}

#[test]
fn kubectl_exec_passes_stdin_picks_containers_and_reports_missing_pods() -> Result<()> {
    let env = NodeCluster::start()?;
    start_pods(&env)?;

    let echo = kubectl(
        &env,
        &["exec", "-i", "shell", "--", "cat"],
        Some("hi\nthere\n"),
    )?;
    ensure!(
        echo.code == Some(0),
        "cat -i: {:?} {}",
        echo.code,
        echo.stderr
    );
    ensure!(echo.stdout == "hi\nthere\n", "cat echoed {:?}", echo.stdout);

    let wc = kubectl(
        &env,
        &["exec", "-i", "shell", "--", "busybox", "wc", "-c"],
        Some(&"x".repeat(300_000)),
    )?;
    ensure!(wc.stdout.trim() == "300000", "wc -c read {:?}", wc.stdout);

    let second = kubectl(
        &env,
        &["exec", "duo", "-c", "second", "--", "sh", "-c", "echo $WHO"],
        None,
    )?;
    ensure!(
        second.stdout == "second\n",
        "-c second ran in {:?}",
        second.stdout
    );
    let first = kubectl(
        &env,
        &["exec", "duo", "-c", "first", "--", "sh", "-c", "echo $WHO"],
        None,
    )?;
    ensure!(
        first.stdout == "first\n",
        "-c first ran in {:?}",
        first.stdout
    );

    let missing = kubectl(&env, &["exec", "ghost", "--", "true"], None)?;
    ensure!(missing.code == Some(1), "exit {:?}", missing.code);
    ensure!(
        missing
            .stderr
            .contains(r#"Error from server (NotFound): pods "ghost" not found"#),
        "stderr: {:?}",
        missing.stderr
    );

    let bad = kubectl(&env, &["exec", "shell", "-c", "nope", "--", "true"], None)?;
    ensure!(bad.code == Some(1), "exit {:?}", bad.code);
    ensure!(
        bad.stderr
            .contains("container nope is not valid for pod shell"),
        "stderr: {:?}",
        bad.stderr
    );
    Ok(())
}

#[test]
fn a_terminal_exec_follows_resizes_and_other_clients_stream_too() -> Result<()> {
    let env = NodeCluster::start()?;
    start_pods(&env)?;

    // kube-rs: a TTY exec, resized to 123x45 before `stty size` runs.
    let (size, tty, status) = block_on(async {
        let client = env.cluster().client().await?;
        let pods: Api<Pod> = Api::default_namespaced(client);
        let params = AttachParams::default().stderr(false).tty(true);
        let mut attached = pods
            .exec(
                "shell",
                ["sh", "-c", "sleep 1; busybox stty size; busybox tty"],
                &params,
            )
            .await?;
        let mut resize = attached.terminal_size().context("a terminal")?;
        resize
            .try_send(TerminalSize {
                width: 123,
                height: 45,
            })
            .context("resize")?;
        let mut stdout = attached.stdout().context("stdout")?;
        let mut text = String::new();
        stdout.read_to_string(&mut text).await?;
        let status = attached.take_status().context("status")?.await;
        let lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        Ok::<_, anyhow::Error>((
            lines.first().cloned().unwrap_or_default(),
            lines.get(1).cloned().unwrap_or_default(),
            status.and_then(|s| s.status),
        ))
    })?;
    ensure!(size == "45 123", "stty size said {size:?}");
    ensure!(tty.starts_with("/dev/pts/"), "tty said {tty:?}");
    ensure!(status.as_deref() == Some("Success"), "status {status:?}");

    // kube-rs: stdin closed (v5 close signal) ends `cat`.
    let echoed = block_on(async {
        let client = env.cluster().client().await?;
        let pods: Api<Pod> = Api::default_namespaced(client);
        let params = AttachParams::default().stdin(true).stderr(false);
        let mut attached = pods.exec("shell", ["cat"], &params).await?;
        let mut stdin = attached.stdin().context("stdin")?;
        stdin.write_all(b"via kube-rs\n").await?;
        stdin.shutdown().await?;
        drop(stdin);
        let mut stdout = attached.stdout().context("stdout")?;
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(20), stdout.read_to_string(&mut text))
            .await
            .context("cat did not end after stdin closed")??;
        Ok::<_, anyhow::Error>(text)
    })?;
    ensure!(echoed == "via kube-rs\n", "cat echoed {echoed:?}");

    // The Python client (websocket-client, v5/v4).
    let script = r#"
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config()
v1 = client.CoreV1Api()
out = stream(v1.connect_get_namespaced_pod_exec, 'duo', 'default', container='second',
             command=['sh', '-c', 'echo from-python $WHO'], stderr=True, stdin=False, stdout=True, tty=False)
print('OUT=' + out.strip())
resp = stream(v1.connect_get_namespaced_pod_exec, 'shell', 'default',
              command=['sh', '-c', 'exit 7'], stderr=True, stdin=False, stdout=True, tty=False,
              _preload_content=False)
resp.run_forever(timeout=20)
print('RC=%s' % resp.returncode)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .env("KUBECONFIG", env.cluster().kubeconfig())
        .output()
        .context("python3 with `pip install kubernetes` is needed")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains("OUT=from-python second"),
        "python: {stdout}"
    );
    ensure!(stdout.contains("RC=7"), "python: {stdout}");
    Ok(())
}

#[test]
fn kubectl_attach_streams_the_output_of_a_running_container() -> Result<()> {
    let env = NodeCluster::start()?;
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: ticker}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: tick
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.3; done"]
"#
    ))?;
    env.wait_running("ticker", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(2));
    let logged = env.kubectl(&["logs", "ticker"])?.lines().count();

    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", env.cluster().kubeconfig())
        .args(["attach", "ticker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl attach")?;
    let stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if err_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 6 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let errors: Vec<String> = err_rx.try_iter().collect();
    ensure!(seen.len() >= 6, "attach saw only {seen:?}");
    ensure!(
        errors.iter().any(|l| l.starts_with("tock ")),
        "the container's stderr did not reach kubectl's stderr: {errors:?}"
    );
    let ticks: Vec<u64> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect();
    ensure!(
        !seen.iter().any(|l| l.starts_with("tock ")),
        "stderr mixed into stdout: {seen:?}"
    );
    // Only new output: the first tick attach shows was written after it began.
    let first = *ticks.first().context("no tick lines")?;
    ensure!(
        first + 1 >= u64::try_from(logged / 2).unwrap_or(0),
        "attach replayed old output: first tick {first}, {logged} lines logged before"
    );
    ensure!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks out of order: {ticks:?}"
    );
    Ok(())
}

#[test]
fn kubectl_port_forward_tunnels_connections_to_a_port_on_the_pods_loopback() -> Result<()> {
    let env = NodeCluster::start()?;
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /srv && echo hello-through-the-tunnel > /srv/index.html && busybox seq 1 100000 > /srv/big.txt && exec httpd -f -p 127.0.0.1:8080 -h /srv"]
"#
    ))?;
    let pod = match env.wait_running("web", Duration::from_secs(90)) {
        Ok(pod) => pod,
        Err(error) => {
            let pod = env
                .kubectl(&["get", "pod", "web", "-o", "yaml"])
                .unwrap_or_default();
            anyhow::bail!("{error:#}\n{pod}");
        }
    };
    // The server listens on the pod's loopback only: its IP refuses, as
    // Kubernetes' port-forward (which connects from inside the pod's
    // network namespace) still gets through.
    let pod_ip = e2e::containerd::pod_ip(&pod).context("pod IP")?;
    ensure!(
        std::net::TcpStream::connect_timeout(
            &format!("{pod_ip}:8080").parse()?,
            Duration::from_secs(2)
        )
        .is_err(),
        "the pod's IP answered on 8080; the test needs a loopback-only port"
    );
    let local = e2e::free_port()?;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", env.cluster().kubeconfig())
        .args(["port-forward", "pod/web", &format!("{local}:8080")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl port-forward")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| -> Result<()> {
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .context("kubectl port-forward printed nothing")?;
        ensure!(ready.contains("Forwarding from"), "unexpected: {ready}");
        // Several connections in a row, each a pair of SPDY streams.
        for _ in 0..3 {
            let page = e2e::containerd::http_get("127.0.0.1", local)?;
            ensure!(page.contains("hello-through-the-tunnel"), "got {page:?}");
        }
        // A larger body arrives whole.
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", local))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /big.txt HTTP/1.0\r\nHost: pod\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        let lines = body.lines().filter(|l| l.parse::<u32>().is_ok()).count();
        ensure!(lines == 100_000, "{lines} lines through the tunnel");
        ensure!(body.trim_end().ends_with("100000"));
        println!(
            "port-forward of {} bytes took {:?}",
            body.len(),
            started.elapsed()
        );
        Ok(())
    })();
    let _ = child.kill();
    let output = child.wait_with_output()?;
    if result.is_err() {
        eprintln!(
            "kubectl port-forward stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    result
}

#[test]
fn kubectl_attach_i_feeds_the_containers_stdin_and_stdin_once_closes_it_after_the_session(
) -> Result<()> {
    let env = NodeCluster::start()?;
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: read
    image: {IMAGE}
    imagePullPolicy: Never
    stdin: true
    stdinOnce: true
    command: ["sh", "-c", "echo ready; while read line; do echo \"got: $line\"; done; echo 'stdin closed'; exec sleep 3600"]
"#
    ))?;
    env.wait_running("reader", Duration::from_secs(60))?;
    wait_for("the reader to start", Duration::from_secs(10), || {
        Ok(env
            .kubectl(&["logs", "reader"])?
            .contains("ready")
            .then_some(()))
    })?;
    // Nothing was sent yet: the container is still reading its stdin.
    ensure!(!env.kubectl(&["logs", "reader"])?.contains("stdin closed"));

    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", env.cluster().kubeconfig())
        .args(["attach", "-i", "reader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl attach -i")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    {
        use std::io::Write;
        let mut input = child.stdin.take().context("stdin")?;
        // Give the session a moment to open before typing.
        std::thread::sleep(Duration::from_millis(500));
        input.write_all(b"hello\nworld\n")?;
        // Dropping `input` ends kubectl's stdin: the session's stdin ends.
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l: &String| l == "got: world") && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    // Disconnect the session. stdinOnce: the container then reads EOF.
    let _ = child.kill();
    let output = child.wait_with_output()?;
    ensure!(
        seen.iter().any(|l| l == "got: hello") && seen.iter().any(|l| l == "got: world"),
        "attach did not echo the input: {seen:?}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let logs = wait_for("stdin closed by stdinOnce", Duration::from_secs(20), || {
        let logs = env.kubectl(&["logs", "reader"])?;
        Ok(logs.contains("stdin closed").then_some(logs))
    })?;
    ensure!(
        logs.contains("got: hello\ngot: world\nstdin closed"),
        "{logs}"
    );
    Ok(())
}

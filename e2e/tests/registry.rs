//! Registry pulls on real nodes: a Debian `docker-registry` on loopback
//! (plain HTTP, so the cluster runs with `--insecure-registry`), the busybox
//! test image pushed into it offline with `skopeo`, and pods whose images
//! come only from there.
//!
//! Proves: a pod pulls its image and runs (`Pulling`/`Pulled` events); a
//! second pod with `imagePullPolicy: Always` pulls again without
//! downloading a layer twice (counted in the registry's access log); a
//! missing tag waits `ErrImagePull` with containerd's "not found" message,
//! then `ImagePullBackOff`; a registry with htpasswd auth refuses a pod
//! without pull secrets (`401 Unauthorized`) and serves one whose
//! `imagePullSecrets` holds a `kubernetes.io/dockerconfigjson` Secret.
//! Every registry process is killed when its guard drops, pass or fail.
//!
//! Needs root, containerd, runc, CNI plugins, busybox-static (as the other
//! containerd tests) plus Debian's `docker-registry` and `skopeo`. Run as
//! `flock /tmp/skiff-containerd-e2e.lock cargo test -p e2e --test registry
//! -- --test-threads=1`. Network use: 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::containerd::{phase, status, NodeCluster};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kubelet::containerd::test_image::{build_busybox_image, ArchiveFormat};

const USER: &str = "skiff";
const PASSWORD: &str = "pull-me";

/// A `docker-registry` on 127.0.0.1, killed (and reaped) on drop.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    /// Starts a registry; with `auth`, it requires Basic auth checked
    /// against a bcrypt htpasswd file.
    fn start(auth: bool) -> Result<Self> {
        for binary in ["/usr/bin/docker-registry", "/usr/bin/skopeo"] {
            assert!(
                Path::new(binary).exists(),
                "{binary} not found: install Debian's `docker-registry` and `skopeo` packages"
            );
        }
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-e2e\n",
            dir.path().join("data").display()
        );
        if auth {
            let hash = bcrypt::hash(PASSWORD, 4).context("bcrypt")?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-e2e\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting docker-registry")?;
        let registry = Self { child, dir, port };
        wait_for("the registry to listen", Duration::from_secs(20), || {
            Ok(registry
                .get("/v2/")
                .ok()
                .filter(|r| r.contains(" 200 ") || r.contains(" 401 "))
                .map(|_| ()))
        })?;
        Ok(registry)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A raw HTTP/1.0 GET, for the readiness check.
    fn get(&self, path: &str) -> Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.host()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }

    /// Pushes the busybox test image as `repository:tag` with skopeo.
    fn push(&self, repository: &str, tag: &str, credentials: bool) -> Result<()> {
        let archive = self.dir.path().join(format!("{tag}.tar"));
        build_busybox_image(
            &archive,
            &format!("{repository}:{tag}"),
            ArchiveFormat::OciLayout,
        )?;
        let mut command = Command::new("/usr/bin/skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if credentials {
            command.arg(format!("--dest-creds={USER}:{PASSWORD}"));
        }
        let out = command
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repository}:{tag}", self.host()))
            .output()
            .context("running skopeo")?;
        if !out.status.success() {
            bail!("skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// How many blob downloads (`GET .../blobs/...` answered 200) the
    /// access log shows.
    fn blob_downloads(&self) -> Result<usize> {
        let log = std::fs::read_to_string(self.log_path())?;
        Ok(log
            .lines()
            .filter(|l| {
                l.contains("\"GET /v2/") && l.contains("/blobs/sha256:") && l.contains("\" 200 ")
            })
            .count())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn pod(name: &str, image: &str, policy: &str, pull_secret: Option<&str>) -> String {
    let secrets = pull_secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
{secrets}  containers:
  - name: main
    image: {image}
    imagePullPolicy: {policy}
    command: ["sh", "-c", "sleep 3600"]
"#
    )
}

fn waiting(pod: &Pod) -> Option<(String, String)> {
    let waiting = status(pod)?.state.as_ref()?.waiting.as_ref()?;
    Some((
        waiting.reason.clone().unwrap_or_default(),
        waiting.message.clone().unwrap_or_default(),
    ))
}

/// Waits until pod `name`'s container waits with `reason`; returns the message.
fn wait_waiting(env: &NodeCluster, name: &str, reason: &str, timeout: Duration) -> Result<String> {
    wait_for(&format!("pod {name} waiting {reason}"), timeout, || {
        let pod = env.pod(name)?;
        Ok(waiting(&pod)
            .filter(|(r, _)| r == reason)
            .map(|(_, message)| message))
    })
}

/// `result`, after printing the cluster's image and pull log lines when
/// it is an error (a returned error, unlike a panic, prints no log).
fn with_log<T>(env: &NodeCluster, result: Result<T>) -> Result<T> {
    if result.is_err() {
        eprintln!("--- skiff log: image lines ---");
        for line in env.cluster().logs().lines().filter(|l| l.contains("image")) {
            eprintln!("{line}");
        }
    }
    result
}

#[test]
fn a_pod_pulls_its_image_from_a_registry_and_a_missing_tag_backs_off() -> Result<()> {
    let registry = Registry::start(false)?;
    registry.push("skiff/busybox", "1", false)?;
    let host = registry.host();
    let env = NodeCluster::start_with(1, &["--insecure-registry", &host])?;
    let result = pulls_and_backs_off(&env, &registry);
    with_log(&env, result)?;
    let pid = registry.pid();
    assert!(alive(pid));
    drop(registry);
    assert!(
        !alive(pid),
        "the registry process {pid} is gone after its guard drops"
    );
    Ok(())
}

fn pulls_and_backs_off(env: &NodeCluster, registry: &Registry) -> Result<()> {
    let host = registry.host();
    let image = format!("{host}/skiff/busybox:1");

    env.apply(&pod("pulled", &image, "IfNotPresent", None))?;
    let pulled = env.wait_running("pulled", Duration::from_secs(60))?;
    assert_eq!(phase(&pulled), "Running");
    let image_id = status(&pulled)
        .map(|s| s.image_id.clone())
        .unwrap_or_default();
    assert!(image_id.starts_with("sha256:"), "imageID {image_id}");
    let events = wait_for("Pulling and Pulled events", Duration::from_secs(10), || {
        let events = env.events("pulled")?;
        let pulled = events.iter().any(|(r, m)| {
            r == "Pulled" && m.starts_with(&format!("Successfully pulled image \"{image}\" in "))
        });
        let pulling = events
            .iter()
            .any(|(r, m)| r == "Pulling" && *m == format!("Pulling image \"{image}\""));
        Ok((pulled && pulling).then_some(events))
    })?;
    let message = events
        .iter()
        .find(|(r, _)| r == "Pulled")
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    println!("pull event: {message}");
    let downloads = registry.blob_downloads()?;
    assert!(downloads >= 2, "config and layer downloaded: {downloads}");

    // `Always` pulls again: the registry names the same digest, so nothing
    // is downloaded a second time.
    env.apply(&pod("again", &image, "Always", None))?;
    env.wait_running("again", Duration::from_secs(60))?;
    wait_for("the second Pulled event", Duration::from_secs(10), || {
        Ok(env
            .events("again")?
            .iter()
            .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image"))
            .then_some(()))
    })?;
    assert_eq!(
        registry.blob_downloads()?,
        downloads,
        "no blob fetched twice"
    );

    // A tag the registry does not have.
    let missing = format!("{host}/skiff/busybox:nope");
    env.apply(&pod("missing", &missing, "IfNotPresent", None))?;
    let message = wait_waiting(env, "missing", "ErrImagePull", Duration::from_secs(30))?;
    assert_eq!(
        message,
        format!("failed to pull and unpack image \"{missing}\": failed to resolve reference \"{missing}\": {missing}: not found")
    );
    let message = wait_waiting(env, "missing", "ImagePullBackOff", Duration::from_secs(30))?;
    assert_eq!(message, format!("Back-off pulling image \"{missing}\""));
    assert_eq!(phase(&env.pod("missing")?), "Pending");
    let events = env.events("missing")?;
    assert!(
        events.iter().any(|(r, m)| r == "Failed"
            && m.starts_with(&format!(
                "Failed to pull image \"{missing}\": failed to pull and unpack image"
            ))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "BackOff" && *m == format!("Back-off pulling image \"{missing}\"")),
        "{events:?}"
    );
    // After the 10 s back-off the pull is tried again (ErrImagePull again),
    // and the pods that pulled keep running.
    wait_waiting(env, "missing", "ErrImagePull", Duration::from_secs(30))?;
    assert_eq!(phase(&env.pod("pulled")?), "Running");
    Ok(())
}

#[test]
fn a_registry_with_htpasswd_auth_needs_the_pods_pull_secret() -> Result<()> {
    let registry = Registry::start(true)?;
    registry.push("private/busybox", "1", true)?;
    let host = registry.host();
    let env = NodeCluster::start_with(1, &["--insecure-registry", &host])?;
    let result = needs_the_pull_secret(&env, &host);
    with_log(&env, result)?;
    let pid = registry.pid();
    drop(registry);
    assert!(
        !alive(pid),
        "the registry process {pid} is gone after its guard drops"
    );
    Ok(())
}

fn needs_the_pull_secret(env: &NodeCluster, host: &str) -> Result<()> {
    let image = format!("{host}/private/busybox:1");

    env.apply(&pod("anonymous", &image, "IfNotPresent", None))?;
    let message = wait_waiting(env, "anonymous", "ErrImagePull", Duration::from_secs(30))?;
    assert!(
        message.starts_with(&format!("failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": unexpected status from HEAD request to http://{host}/v2/private/busybox/manifests/1: 401 Unauthorized")),
        "{message}"
    );

    // Credentials as `kubectl create secret docker-registry` writes them.
    let out = env.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={host}"),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ])?;
    assert!(out.contains("regcred"), "{out}");
    env.apply(&pod("authorized", &image, "IfNotPresent", Some("regcred")))?;
    env.wait_running("authorized", Duration::from_secs(60))?;
    assert!(env
        .events("authorized")?
        .iter()
        .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")));

    // A wrong password is refused too (no fallback to anonymous success).
    let out = env.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "wrong",
        &format!("--docker-server={host}"),
        &format!("--docker-username={USER}"),
        "--docker-password=nope",
    ])?;
    assert!(out.contains("wrong"), "{out}");
    env.apply(&pod(
        "wrong-password",
        &format!("{host}/private/busybox:1"),
        "Always",
        Some("wrong"),
    ))?;
    let message = wait_waiting(
        env,
        "wrong-password",
        "ErrImagePull",
        Duration::from_secs(30),
    )?;
    assert!(message.contains("401 Unauthorized"), "{message}");
    Ok(())
}

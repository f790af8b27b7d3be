//! Pod volumes (projected service-account tokens included), env
//! `valueFrom`, memory limits and OOM kills on real containerd nodes
//! (`skiff up --runtime containerd`).
//!
//! Each test reads what the containers saw through `kubectl logs`, so it
//! proves what a user's process finds in its file system and environment.
//! Run as root, one at a time, under the machine-wide lock:
//! `flock /tmp/skiff-containerd-e2e.lock cargo test -p e2e --test containerd_volumes -- --test-threads=1`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use e2e::containerd::{pack_binary_image, phase, status, NodeCluster, IMAGE};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Pod;

/// `kubectl logs` of one container, once it printed `marker`.
fn logs_with(env: &NodeCluster, pod: &str, container: &str, marker: &str) -> Result<String> {
    wait_for(
        &format!("{pod}/{container} to log {marker:?}"),
        Duration::from_secs(60),
        || {
            let out = env
                .cluster()
                .kubectl_output(&["logs", pod, "-c", container])?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            Ok(text.contains(marker).then_some(text))
        },
    )
}

/// The value logged on the line `NAME=value`.
fn logged<'a>(logs: &'a str, name: &str) -> Option<&'a str> {
    logs.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

fn waiting(pod: &Pod) -> Option<(String, String)> {
    let waiting = status(pod)?.state.as_ref()?.waiting.as_ref()?;
    Some((
        waiting.reason.clone().unwrap_or_default(),
        waiting.message.clone().unwrap_or_default(),
    ))
}

fn tmpfs_mounted_under(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = path.to_string_lossy().to_string();
    mounts
        .lines()
        .any(|l| l.contains(&prefix) && l.split_whitespace().nth(2) == Some("tmpfs"))
}

#[test]
fn containers_read_config_maps_secrets_the_downward_api_and_an_empty_dir_their_init_container_wrote(
) -> Result<()> {
    let env = NodeCluster::start()?;
    let host_dir = env.data_dir().join("host-data");
    let manifest = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  color: blue
  app.conf: |
    listen=8080
  secret-mode: tight
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
type: Opaque
data:
  password: aHVudGVyMg==
---
apiVersion: v1
kind: Pod
metadata:
  name: vol
  labels: {{app: vol, tier: front}}
  annotations: {{note: "hello"}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes:
  - name: cfg
    configMap:
      name: app-config
      items:
      - {{key: color, path: colors/main}}
      - {{key: secret-mode, path: tight, mode: 0400}}
  - name: whole-cfg
    configMap:
      name: app-config
  - name: creds
    secret:
      secretName: app-secret
      defaultMode: 0440
  - name: podinfo
    downwardAPI:
      items:
      - path: labels
        fieldRef: {{fieldPath: metadata.labels}}
      - path: name
        fieldRef: {{fieldPath: metadata.name}}
      - path: mem_mi
        resourceFieldRef: {{containerName: app, resource: limits.memory, divisor: 1Mi}}
  - name: all-in-one
    projected:
      sources:
      - configMap:
          name: app-config
          items: [{{key: color, path: color}}]
      - secret:
          name: app-secret
          items: [{{key: password, path: pw}}]
      - downwardAPI:
          items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]
      - serviceAccountToken: {{path: token, expirationSeconds: 3600}}
  - name: shared
    emptyDir: {{}}
  - name: scratch
    emptyDir: {{medium: Memory, sizeLimit: 8Mi}}
  - name: host
    hostPath: {{path: {host}, type: DirectoryOrCreate}}
  initContainers:
  - name: init
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo from-init > /work/greeting"]
    volumeMounts: [{{name: shared, mountPath: /work}}]
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    resources:
      limits: {{memory: 48Mi, cpu: 500m}}
      requests: {{memory: 16Mi, cpu: 250m}}
    envFrom:
    - prefix: CFG_
      configMapRef: {{name: app-config}}
    env:
    - name: COLOR
      valueFrom: {{configMapKeyRef: {{name: app-config, key: color}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: app-secret, key: password}}}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: POD_IP
      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
    - name: NODE_NAME
      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
    - name: TIER
      valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['tier']"}}}}
    - name: MEM_LIMIT_MI
      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
    - name: CPU_REQUEST_M
      valueFrom: {{resourceFieldRef: {{resource: requests.cpu, divisor: 1m}}}}
    - name: URL
      value: "http://$(POD_NAME):8080/$(UNDEFINED)"
    - name: OPTIONAL_MISSING
      valueFrom: {{configMapKeyRef: {{name: app-config, key: nope, optional: true}}}}
    command:
    - sh
    - -c
    - |
      echo GREETING=$(cat /shared/greeting)
      echo COLOR_FILE=$(cat /cfg/colors/main)
      echo TIGHT_MODE=$(ls -lL /cfg/tight | cut -c1-10)
      echo CFG_ENTRIES=$(ls /cfg | tr '\n' ' ')
      echo APP_CONF=$(cat /etc/app.conf)
      echo PASSWORD_FILE=$(cat /creds/password)
      echo SECRET_MODE=$(ls -lL /creds/password | cut -c1-10)
      echo LABELS=$(cat /podinfo/labels | tr '\n' ',')
      echo DOWNWARD_NAME=$(cat /podinfo/name)
      echo DOWNWARD_MEM=$(cat /podinfo/mem_mi)
      echo PROJECTED=$(cat /all/color)/$(cat /all/pw)/$(cat /all/ns)
      echo PROJECTED_TOKEN=$(test -e /all/token && echo present || echo absent)
      echo RO=$( (echo x > /cfg/x) 2>/dev/null && echo writable || echo read-only)
      echo SCRATCH_FS=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f3)
      echo SECRET_FS=$(grep ' /creds ' /proc/mounts | cut -d' ' -f3)
      echo CONFIG_FS=$(grep ' /cfg ' /proc/mounts | cut -d' ' -f3)
      echo from-app > /host/written
      echo HOST=$(cat /host/written)
      echo COLOR_ENV=$COLOR
      echo CFG_color=$CFG_color
      echo PASSWORD_ENV=$PASSWORD
      echo POD_NAME=$POD_NAME
      echo POD_IP=$POD_IP
      echo NODE_NAME=$NODE_NAME
      echo TIER=$TIER
      echo MEM_LIMIT_MI=$MEM_LIMIT_MI
      echo CPU_REQUEST_M=$CPU_REQUEST_M
      echo URL=$URL
      echo OPTIONAL_MISSING=${{OPTIONAL_MISSING-unset}}
      echo CGROUP_MEMORY_LIMIT=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
      echo done
      sleep 3600
    volumeMounts:
    - {{name: shared, mountPath: /shared}}
    - {{name: cfg, mountPath: /cfg}}
    - {{name: whole-cfg, mountPath: /etc/app.conf, subPath: app.conf}}
    - {{name: creds, mountPath: /creds}}
    - {{name: podinfo, mountPath: /podinfo}}
    - {{name: all-in-one, mountPath: /all}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: host, mountPath: /host}}
"#,
        host = host_dir.display()
    );
    env.apply(&manifest)?;
    let pod = env.wait_running("vol", Duration::from_secs(90))?;
    let logs = logs_with(&env, "vol", "app", "\ndone")?;
    eprintln!("{logs}");
    let uid = pod.metadata.uid.clone().context("uid")?;
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("pod IP")?;
    let expect = |name: &str, value: &str| {
        assert_eq!(logged(&logs, name), Some(value), "{name} in:\n{logs}");
    };
    // emptyDir shared with the init container.
    expect("GREETING", "from-init");
    // configMap with items, modes, subPath; always read-only.
    expect("COLOR_FILE", "blue");
    expect("TIGHT_MODE", "-r--------");
    expect("CFG_ENTRIES", "colors tight");
    expect("APP_CONF", "listen=8080");
    expect("RO", "read-only");
    // secret with defaultMode.
    expect("PASSWORD_FILE", "hunter2");
    expect("SECRET_MODE", "-r--r-----");
    // downwardAPI: labels as sorted key="value" lines, resources.
    expect("LABELS", "app=\"vol\",tier=\"front\"");
    expect("DOWNWARD_NAME", "vol");
    expect("DOWNWARD_MEM", "48");
    // projected: configMap + secret + downwardAPI + a service-account token.
    expect("PROJECTED", "blue/hunter2/default");
    expect("PROJECTED_TOKEN", "present");
    // emptyDir medium Memory is a tmpfs; hostPath is the host's dir.
    expect("SCRATCH_FS", "tmpfs");
    // Secrets live on a tmpfs, never on the node's disk; configMaps on disk.
    expect("SECRET_FS", "tmpfs");
    assert_ne!(logged(&logs, "CONFIG_FS"), Some("tmpfs"), "{logs}");
    expect("HOST", "from-app");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("written"))?,
        "from-app\n"
    );
    // env valueFrom and envFrom.
    expect("COLOR_ENV", "blue");
    expect("CFG_color", "blue");
    expect("PASSWORD_ENV", "hunter2");
    expect("POD_NAME", "vol");
    expect("POD_IP", &pod_ip);
    expect("NODE_NAME", &env.node.node_name);
    expect("TIER", "front");
    expect("MEM_LIMIT_MI", "48");
    expect("CPU_REQUEST_M", "250");
    expect("OPTIONAL_MISSING", "unset");
    expect("URL", "http://vol:8080/$(UNDEFINED)");
    // The memory limit is in the container's cgroup.
    expect("CGROUP_MEMORY_LIMIT", &(48 * 1024 * 1024).to_string());
    // Deleting the pod removes its emptyDir volumes and unmounts the tmpfs.
    let pod_dir = env.node.data_dir.join("pods").join(&uid);
    assert!(pod_dir
        .join("volumes/kubernetes.io~empty-dir/shared/greeting")
        .exists());
    assert!(tmpfs_mounted_under(&pod_dir));
    env.kubectl(&["delete", "pod", "vol", "--wait=true", "--timeout=60s"])?;
    wait_for("the pod dir to be removed", Duration::from_secs(30), || {
        Ok((!pod_dir.exists()).then_some(()))
    })?;
    assert!(!tmpfs_mounted_under(&pod_dir), "tmpfs left mounted");
    assert!(host_dir.join("written").exists(), "hostPath data stays");
    Ok(())
}

#[test]
fn a_missing_config_map_holds_its_pod_in_create_container_config_error_until_it_is_created(
) -> Result<()> {
    let env = NodeCluster::start()?;
    let pods = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: needs-config
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: cfg
    configMap: {{name: late}}
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    env:
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: late-secret, key: password}}}}
    command: ["sh", "-c", "while true; do echo SEEN=$(cat /cfg/key)/$PASSWORD; sleep 1; done"]
    volumeMounts: [{{name: cfg, mountPath: /cfg}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: bystander
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#
    );
    env.apply(&pods)?;
    // Other pods are not blocked.
    env.wait_running("bystander", Duration::from_secs(60))?;
    let (reason, message) = wait_for(
        "needs-config to wait CreateContainerConfigError",
        Duration::from_secs(30),
        || Ok(waiting(&env.pod("needs-config")?)),
    )?;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(message, "configmap \"late\" not found");
    assert_eq!(phase(&env.pod("needs-config")?), "Pending");

    env.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late}\ndata: {key: arrived}\n")?;
    // The volume is there now; the env's secret is still missing.
    let (reason, message) = wait_for(
        "the missing secret to be reported",
        Duration::from_secs(30),
        || Ok(waiting(&env.pod("needs-config")?).filter(|(_, message)| message.contains("secret"))),
    )?;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(message, "secret \"late-secret\" not found");

    env.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: late-secret}\ndata: {password: czNjcjN0}\n",
    )?;
    env.wait_running("needs-config", Duration::from_secs(30))?;
    logs_with(&env, "needs-config", "app", "SEEN=arrived/s3cr3t")?;
    // Each distinct error was recorded once, in Kubernetes' wording,
    // although the kubelet retried every 2 s.
    let mut failed: Vec<String> = env
        .events("needs-config")?
        .into_iter()
        .filter(|(reason, _)| reason == "Failed")
        .map(|(_, message)| message)
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![
            "Error: configmap \"late\" not found".to_string(),
            "Error: secret \"late-secret\" not found".to_string(),
        ]
    );

    // A running pod sees its ConfigMap's update (the `..data` swap).
    let updated = std::time::Instant::now();
    env.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late}\ndata: {key: updated}\n")?;
    logs_with(&env, "needs-config", "app", "SEEN=updated/s3cr3t")?;
    eprintln!(
        "configMap update seen in the container after {:?}",
        updated.elapsed()
    );
    Ok(())
}

/// The claims of a JWT (not verified: the API server does that).
fn jwt_claims(token: &str) -> Result<serde_json::Value> {
    let part = token.split('.').nth(1).context("not a JWT")?;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import base64,sys; s=sys.argv[1]; print(base64.urlsafe_b64decode(s + '=' * (-len(s) % 4)).decode())",
            part,
        ])
        .output()
        .context("cannot run python3")?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The HTTP code of `GET path` on the API server with `token` (curl, trusting the CA).
fn api_code(env: &NodeCluster, path: &str, token: &str) -> Result<String> {
    api_code_trusting(env, &env.data_dir().join("pki").join("ca.crt"), path, token)
}

/// [`api_code`], trusting the CA bundle in the file `ca`.
fn api_code_trusting(env: &NodeCluster, ca: &Path, path: &str, token: &str) -> Result<String> {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(ca)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}{path}", env.cluster().url()))
        .output()
        .context("cannot run curl")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_projected_service_account_token_authenticates_as_the_pod_for_its_audience_only() -> Result<()>
{
    let env = NodeCluster::start()?;
    let manifest = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: robot
---
apiVersion: v1
kind: Pod
metadata:
  name: tokens
spec:
  serviceAccountName: robot
  terminationGracePeriodSeconds: 1
  volumes:
  - name: sa
    projected:
      defaultMode: 0440
      sources:
      - serviceAccountToken: {{path: token}}
      - serviceAccountToken: {{path: vault/token, audience: vault, expirationSeconds: 600}}
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{{name: sa, mountPath: /var/run/secrets/tokens}}]
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ghost
---
apiVersion: v1
kind: Pod
metadata:
  name: ghostly
spec:
  serviceAccountName: ghost
  terminationGracePeriodSeconds: 1
  nodeSelector: {{ghost-test: "yes"}}
  volumes:
  - name: sa
    projected:
      sources:
      - serviceAccountToken: {{path: token}}
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{{name: sa, mountPath: /var/run/secrets/tokens}}]
"#
    );
    env.apply(&manifest)?;
    let pod = env.wait_running("tokens", Duration::from_secs(90))?;
    let uid = pod.metadata.uid.clone().context("uid")?;
    let token = env
        .kubectl(&[
            "exec",
            "tokens",
            "--",
            "cat",
            "/var/run/secrets/tokens/token",
        ])?
        .trim()
        .to_string();
    let vault = env
        .kubectl(&[
            "exec",
            "tokens",
            "--",
            "cat",
            "/var/run/secrets/tokens/vault/token",
        ])?
        .trim()
        .to_string();
    let mode = env.kubectl(&[
        "exec",
        "tokens",
        "--",
        "sh",
        "-c",
        "ls -lL /var/run/secrets/tokens/token | cut -c1-10",
    ])?;
    assert_eq!(mode.trim(), "-r--r-----", "the volume's defaultMode");

    let claims = jwt_claims(&token)?;
    assert_eq!(
        claims["sub"], "system:serviceaccount:default:robot",
        "{claims}"
    );
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "tokens", "{claims}");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        uid.as_str(),
        "{claims}"
    );
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 3600, "the default expirationSeconds");
    let vault_claims = jwt_claims(&vault)?;
    assert_eq!(vault_claims["aud"], serde_json::json!(["vault"]));
    let vault_lifetime =
        vault_claims["exp"].as_i64().unwrap_or(0) - vault_claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(vault_lifetime, 600);

    // From the host: the pod's token authenticates; the vault one is for someone else.
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(api_code(&env, pods, &token)?, "200");
    assert_eq!(api_code(&env, pods, &vault)?, "401");

    // A pod whose service account is deleted before it starts (admission
    // refuses pods naming a missing one) waits, with the kubelet's message:
    // ghostly is held unschedulable by its nodeSelector until then.
    env.kubectl(&["delete", "serviceaccount", "ghost"])?;
    env.kubectl(&["label", "node", e2e::containerd::NODE, "ghost-test=yes"])?;
    let (reason, message) = wait_for(
        "ghostly to wait CreateContainerConfigError",
        Duration::from_secs(30),
        || Ok(waiting(&env.pod("ghostly")?)),
    )?;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(
        message,
        "failed to fetch token: serviceaccounts \"ghost\" not found"
    );
    let events = env.events("ghostly")?;
    assert!(
        events.iter().any(|(reason, message)| reason == "Failed"
            && message == "Error: failed to fetch token: serviceaccounts \"ghost\" not found"),
        "{events:?}"
    );
    env.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ghost}\n")?;
    env.wait_running("ghostly", Duration::from_secs(30))?;

    // Deleting the pod invalidates its token.
    env.kubectl(&["delete", "pod", "tokens", "--wait=true", "--timeout=60s"])?;
    assert_eq!(api_code(&env, pods, &token)?, "401");
    Ok(())
}

#[test]
fn a_pod_finds_its_service_account_token_the_cluster_ca_and_its_namespace_without_asking(
) -> Result<()> {
    let env = NodeCluster::start()?;
    // A new namespace and a pod in it at once, as a user would: the pod
    // starts once the namespace's `default` ServiceAccount and
    // `kube-root-ca.crt` exist.
    let manifest = format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: Pod
metadata:
  name: incluster
  namespace: team
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#
    );
    env.apply(&manifest)?;
    let pod = wait_for("incluster Running", Duration::from_secs(90), || {
        let out = env.cluster().kubectl_output(&[
            "get",
            "pod",
            "incluster",
            "-n",
            "team",
            "-o",
            "json",
        ])?;
        let pod: Pod = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok((phase(&pod) == "Running").then_some(pod))
    })?;
    let uid = pod.metadata.uid.clone().context("uid")?;
    let cat = |file: &str| {
        env.kubectl(&[
            "exec",
            "-n",
            "team",
            "incluster",
            "--",
            "cat",
            &format!("/var/run/secrets/kubernetes.io/serviceaccount/{file}"),
        ])
    };
    let token = cat("token")?.trim().to_string();
    let ca = cat("ca.crt")?;
    let namespace = cat("namespace")?;
    assert_eq!(namespace, "team", "the namespace file");
    assert_eq!(ca, env.cluster().ca_pem()?, "the cluster CA");
    let claims = jwt_claims(&token)?;
    assert_eq!(
        claims["sub"], "system:serviceaccount:team:default",
        "{claims}"
    );
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        uid.as_str(),
        "{claims}"
    );
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 3607, "the injected expirationSeconds");
    let mode = env.kubectl(&[
        "exec",
        "-n",
        "team",
        "incluster",
        "--",
        "sh",
        "-c",
        "ls -lL /var/run/secrets/kubernetes.io/serviceaccount/token | cut -c1-10; \
         (echo x > /var/run/secrets/kubernetes.io/serviceaccount/x) 2>/dev/null && echo writable || echo read-only",
    ])?;
    assert_eq!(
        mode.trim(),
        "-rw-r--r--\nread-only",
        "mode 0644, read-only mount"
    );

    // From the host, over HTTPS trusting the CA the pod was given, the
    // token authenticates as the pod's service account.
    let ca_file = env.data_dir().join("pod-ca.crt");
    std::fs::write(&ca_file, &ca)?;
    assert_eq!(
        api_code_trusting(&env, &ca_file, "/api/v1/namespaces/team/pods", &token)?,
        "200"
    );
    Ok(())
}

/// Packs this workspace's `incluster_client` into an image the node imports
/// (`skiff image build`), as a developer's own operator would be.
fn incluster_client_image(env: &NodeCluster) -> Result<&'static str> {
    const NAME: &str = "skiff.local/incluster-client:e2e";
    pack_binary_image(
        &env.data_dir(),
        env!("CARGO_BIN_EXE_incluster_client"),
        NAME,
    )?;
    Ok(NAME)
}

#[test]
fn an_in_cluster_client_reaches_the_api_through_the_kubernetes_service_with_its_pods_credentials(
) -> Result<()> {
    let env = NodeCluster::start()?;
    let image = incluster_client_image(&env)?;
    // The Service in-cluster clients find the API server by.
    let service = env.kubectl(&[
        "get",
        "service",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].name} {.spec.ports[0].port}",
    ])?;
    assert_eq!(service.trim(), "10.96.0.1 https 443");
    // kube-rs's in-cluster configuration: the env vars, the token, the CA
    // (checked against the serving certificate for 10.96.0.1) and the
    // namespace, all given by the node; the pod lists its own namespace.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: operator
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: Never
    command: ["incluster_client"]
"#
    ))?;
    let pod = wait_for("operator to finish", Duration::from_secs(120), || {
        let pod = env.pod("operator")?;
        Ok(matches!(phase(&pod), "Succeeded" | "Failed").then_some(pod))
    })?;
    let logs = env.kubectl(&["logs", "operator"])?;
    assert_eq!(phase(&pod), "Succeeded", "{logs}");
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("server: https://10.96.0.1")),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .skip_while(|l| **l != "pods:")
            .any(|l| *l == "operator"),
        "the pod sees itself in its namespace: {logs}"
    );
    Ok(())
}

#[test]
fn a_container_over_its_memory_limit_is_reported_oom_killed() -> Result<()> {
    let env = NodeCluster::start()?;
    // dd's 64 MiB block is one anonymous buffer, filled from /dev/zero;
    // `exec` makes dd the container's process, so the OOM kill ends it.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    resources:
      limits: {{memory: 32Mi}}
    command: ["sh", "-c", "echo started; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]
"#
    ))?;
    let last = wait_for(
        "hog to restart after an OOM kill",
        Duration::from_secs(90),
        || {
            let pod = env.pod("hog")?;
            let Some(container) = status(&pod) else {
                return Ok(None);
            };
            Ok((container.restart_count >= 1)
                .then(|| container.last_state.clone()?.terminated)
                .flatten())
        },
    )?;
    assert_eq!(last.reason.as_deref(), Some("OOMKilled"), "{last:?}");
    assert_eq!(last.exit_code, 137);
    let logs = env.kubectl(&["logs", "hog", "--previous"])?;
    assert!(logs.contains("started"), "{logs}");

    // Without restarts, the container's own state says OOMKilled.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hog-once
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    resources:
      limits: {{memory: 32Mi}}
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
"#
    ))?;
    let pod = wait_for("hog-once to fail", Duration::from_secs(60), || {
        let pod = env.pod("hog-once")?;
        Ok((phase(&pod) == "Failed").then_some(pod))
    })?;
    let terminated = status(&pod)
        .and_then(|s| s.state.clone()?.terminated)
        .context("terminated state")?;
    assert_eq!(
        terminated.reason.as_deref(),
        Some("OOMKilled"),
        "{terminated:?}"
    );
    assert_eq!(terminated.exit_code, 137);
    Ok(())
}

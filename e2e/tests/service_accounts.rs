//! Service-account tokens against a real `skiff up` on simulated nodes:
//! every namespace gets a `default` ServiceAccount, `kubectl create token`
//! (the TokenRequest subresource) returns a JWT that authenticates as the
//! service account, and the token stops working when it is for another
//! audience or its ServiceAccount or bound pod is gone.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

/// An HTTP answer: code and body.
struct Answer {
    code: u16,
    body: Value,
}

/// A request to the API server with `token`, as any HTTPS client makes it
/// (curl, trusting the cluster CA).
fn request(
    cluster: &Cluster,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<Answer> {
    let ca = cluster.data_dir.path().join("pki").join("ca.crt");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")]);
    if let Some(body) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    let out = cmd
        .arg(format!("{}{path}", cluster.url()))
        .output()
        .context("cannot run curl")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').context("curl printed no status")?;
    Ok(Answer {
        code: code.trim().parse().context("curl status code")?,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

/// `kubectl create token ARGS`, trimmed.
fn create_token(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    Ok(cluster.kubectl(&all)?.trim().to_string())
}

/// The claims of a JWT (not verified: the server does that).
fn claims(token: &str) -> Result<Value> {
    let part = token.split('.').nth(1).context("not a JWT")?;
    let out = Command::new("python3")
        .args([
            "-c",
            "import base64,sys; s=sys.argv[1]; print(base64.urlsafe_b64decode(s + '=' * (-len(s) % 4)).decode())",
            part,
        ])
        .output()
        .context("cannot run python3")?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn expect_unauthorized(answer: &Answer, what: &str) -> Result<()> {
    ensure!(
        answer.code == 401
            && answer.body["kind"] == "Status"
            && answer.body["reason"] == "Unauthorized",
        "{what}: expected a 401 Unauthorized Status, got {} {}",
        answer.code,
        answer.body
    );
    Ok(())
}

fn wait_default_service_account(cluster: &Cluster, namespace: &str) -> Result<()> {
    wait_for(
        &format!("the default ServiceAccount of {namespace}"),
        Duration::from_secs(30),
        || {
            let out =
                cluster.kubectl_output(&["get", "serviceaccount", "default", "-n", namespace])?;
            Ok(out.status.success().then_some(()))
        },
    )
}

#[test]
fn kubectl_create_token_authenticates_as_the_service_account_for_the_api_audience_only(
) -> Result<()> {
    let cluster = Cluster::start_default()?;
    // The serviceaccount controller gives every namespace (new ones too) a `default`.
    wait_default_service_account(&cluster, "default")?;
    cluster.kubectl(&["create", "namespace", "team"])?;
    wait_default_service_account(&cluster, "team")?;

    cluster.kubectl(&["create", "serviceaccount", "robot"])?;
    let token = create_token(&cluster, &["robot", "--duration", "10m"])?;
    let c = claims(&token)?;
    ensure!(
        c["sub"] == "system:serviceaccount:default:robot",
        "claims: {c}"
    );
    ensure!(
        c["iss"] == "https://kubernetes.default.svc.cluster.local",
        "claims: {c}"
    );
    ensure!(
        c["aud"] == json!(["https://kubernetes.default.svc.cluster.local"]),
        "claims: {c}"
    );
    let lifetime = c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0);
    ensure!(lifetime == 600, "10m token lives {lifetime}s: {c}");
    ensure!(c["kubernetes.io"]["namespace"] == "default", "claims: {c}");
    ensure!(
        c["kubernetes.io"]["serviceaccount"]["name"] == "robot",
        "claims: {c}"
    );

    // The token authenticates: raw HTTPS and kubectl --token.
    let pods = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &token,
        None,
    )?;
    ensure!(
        pods.code == 200 && pods.body["kind"] == "PodList",
        "{} {}",
        pods.code,
        pods.body
    );
    let out = cluster.kubectl_output(&["--token", &token, "get", "pods", "-A"])?;
    ensure!(
        out.status.success(),
        "kubectl --token: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A token for another audience, a garbled one, and none are refused.
    let vault = create_token(&cluster, &["robot", "--audience", "vault"])?;
    ensure!(
        claims(&vault)?["aud"] == json!(["vault"]),
        "{}",
        claims(&vault)?
    );
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &vault,
        None,
    )?;
    expect_unauthorized(&answer, "a token for audience vault")?;
    let garbled = format!("{token}x");
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &garbled,
        None,
    )?;
    expect_unauthorized(&answer, "a token with a broken signature")?;

    // The minimum lifetime is 10 minutes, as upstream.
    let out = cluster.kubectl_output(&["create", "token", "robot", "--duration", "5m"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && stderr.contains("spec.expirationSeconds")
            && stderr.contains("may not specify a duration less than 10 minutes"),
        "a 5m token: {stderr}"
    );
    let short = request(
        &cluster,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        &cluster.token()?,
        Some(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"expirationSeconds": 599}}),
        ),
    )?;
    ensure!(
        short.code == 422 && short.body["reason"] == "Invalid",
        "{} {}",
        short.code,
        short.body
    );

    // A TokenRequest for a missing ServiceAccount is a 404 Status.
    let missing = request(
        &cluster,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/ghost/token",
        &cluster.token()?,
        Some(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        ),
    )?;
    ensure!(
        missing.code == 404
            && missing.body["kind"] == "Status"
            && missing.body["reason"] == "NotFound"
            && missing.body["message"] == "serviceaccounts \"ghost\" not found",
        "{} {}",
        missing.code,
        missing.body
    );
    let created = request(
        &cluster,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        &cluster.token()?,
        Some(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        ),
    )?;
    ensure!(
        created.code == 201
            && created.body["kind"] == "TokenRequest"
            && created.body["spec"]["expirationSeconds"] == 3600
            && created.body["status"]["token"].is_string()
            && created.body["status"]["expirationTimestamp"].is_string(),
        "{} {}",
        created.code,
        created.body
    );

    // Discovery lists the subresource as kubectl and client-go expect.
    let v1: Value = serde_json::from_str(&cluster.kubectl(&["get", "--raw", "/api/v1"])?)?;
    let sub = v1["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "serviceaccounts/token"))
        .cloned()
        .context("serviceaccounts/token not in discovery")?;
    ensure!(
        sub["verbs"] == json!(["create"])
            && sub["kind"] == "TokenRequest"
            && sub["group"] == "authentication.k8s.io",
        "{sub}"
    );

    // Deleting the ServiceAccount invalidates its tokens; a new one with the
    // same name (another uid) does not bring them back.
    cluster.kubectl(&["delete", "serviceaccount", "robot"])?;
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &token,
        None,
    )?;
    expect_unauthorized(&answer, "a token of a deleted ServiceAccount")?;
    cluster.kubectl(&["create", "serviceaccount", "robot"])?;
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &token,
        None,
    )?;
    expect_unauthorized(&answer, "a token of a recreated ServiceAccount")?;
    Ok(())
}

#[test]
fn a_token_bound_to_a_pod_stops_working_once_the_pod_is_deleted() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        ..Default::default()
    })?;
    cluster.kubectl(&["create", "serviceaccount", "robot"])?;
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  serviceAccountName: robot
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox
"#;
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], pod)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = cluster.kubectl(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"])?;
    let bound = [
        "robot",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ];
    let mut with_uid = bound.to_vec();
    with_uid.extend_from_slice(&["--bound-object-uid", uid.as_str()]);
    let token = create_token(&cluster, &with_uid)?;
    let c = claims(&token)?;
    ensure!(
        c["kubernetes.io"]["pod"] == json!({"name": "web", "uid": uid}),
        "claims: {c}"
    );
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods/web",
        &token,
        None,
    )?;
    ensure!(answer.code == 200, "{} {}", answer.code, answer.body);

    // A uid that is not the pod's is a 409 Conflict, as upstream.
    let out = cluster.kubectl_output(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
        "--bound-object-uid",
        "00000000-0000-0000-0000-000000000000",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("does not match the UID in record"),
        "{stderr}"
    );
    // Only the pod's own service account can get a token bound to it.
    let out = cluster.kubectl_output(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("different serviceaccount"),
        "{stderr}"
    );

    cluster.kubectl(&["delete", "pod", "web", "--wait=true", "--timeout=60s"])?;
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &token,
        None,
    )?;
    expect_unauthorized(&answer, "a token bound to a deleted pod")?;
    // A new pod with the same name has another uid: still refused.
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], pod)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = request(
        &cluster,
        "GET",
        "/api/v1/namespaces/default/pods",
        &token,
        None,
    )?;
    expect_unauthorized(&answer, "a token bound to a recreated pod")?;
    Ok(())
}

/// A pod as JSON, from `kubectl get -o json`.
fn get_json(cluster: &Cluster, args: &[&str]) -> Result<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&cluster.kubectl(&all)?)?)
}

fn apply(cluster: &Cluster, manifest: &str) -> Result<std::process::Output> {
    cluster.kubectl_stdin(&["apply", "-f", "-"], manifest)
}

#[test]
fn new_pods_get_the_service_account_credentials_volume_and_namespaces_the_root_ca() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        ..Default::default()
    })?;
    let ca = cluster.ca_pem()?;
    cluster.kubectl(&["create", "namespace", "team"])?;
    // The root-CA publisher gives the new namespace the cluster CA.
    let cm = wait_for("kube-root-ca.crt in team", Duration::from_secs(30), || {
        let out = cluster.kubectl_output(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "json",
        ])?;
        Ok(out
            .status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).ok())
            .flatten())
    })?;
    ensure!(cm["data"]["ca.crt"] == ca.as_str(), "the CA differs: {cm}");
    ensure!(
        cm["metadata"]["annotations"]["kubernetes.io/description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Contains a CA bundle")),
        "{cm}"
    );
    // Edited or deleted, it comes back.
    cluster.kubectl(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered"}}"#,
    ])?;
    wait_for(
        "the CA restored after an edit",
        Duration::from_secs(30),
        || {
            let cm = get_json(&cluster, &["configmap", "kube-root-ca.crt", "-n", "team"])?;
            Ok((cm["data"]["ca.crt"] == ca.as_str()).then_some(()))
        },
    )?;
    cluster.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"])?;
    wait_for(
        "the CA restored after a delete",
        Duration::from_secs(30),
        || {
            let out =
                cluster.kubectl_output(&["get", "configmap", "kube-root-ca.crt", "-n", "team"])?;
            Ok(out.status.success().then_some(()))
        },
    )?;

    // A pod in the new namespace (created right away, as users do) runs as
    // `default` and mounts a kube-api-access volume in every container.
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: team
spec:
  initContainers:
  - name: init
    image: busybox
  containers:
  - name: app
    image: busybox
  - name: own
    image: busybox
    volumeMounts:
    - name: mine
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  volumes:
  - name: mine
    emptyDir: {}
"#;
    let out = apply(&cluster, pod)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = get_json(&cluster, &["pod", "web", "-n", "team"])?;
    let spec = &p["spec"];
    ensure!(spec["serviceAccountName"] == "default", "{spec}");
    ensure!(spec["serviceAccount"] == "default", "{spec}");
    let volumes = spec["volumes"].as_array().context("volumes")?;
    ensure!(volumes.len() == 2, "{spec}");
    let injected = &volumes[1];
    let name = injected["name"].as_str().unwrap_or_default();
    ensure!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{injected}"
    );
    ensure!(
        injected["projected"]
            == json!({
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            }),
        "{injected}"
    );
    let mount = json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    ensure!(spec["initContainers"][0]["volumeMounts"] == mount, "{spec}");
    ensure!(spec["containers"][0]["volumeMounts"] == mount, "{spec}");
    ensure!(
        spec["containers"][1]["volumeMounts"]
            == json!([{"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
        "the container's own mount is kept: {spec}"
    );

    // Opting out on the pod, or on its ServiceAccount, mounts nothing.
    cluster.kubectl(&["create", "serviceaccount", "quiet", "-n", "team"])?;
    cluster.kubectl(&[
        "patch",
        "serviceaccount",
        "quiet",
        "-n",
        "team",
        "-p",
        r#"{"automountServiceAccountToken":false}"#,
    ])?;
    let quiet = r#"apiVersion: v1
kind: Pod
metadata:
  name: quiet
  namespace: team
spec:
  serviceAccountName: quiet
  containers:
  - name: app
    image: busybox
"#;
    let out = apply(&cluster, quiet)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = get_json(&cluster, &["pod", "quiet", "-n", "team"])?;
    ensure!(p["spec"]["volumes"].is_null(), "{}", p["spec"]);
    ensure!(
        p["spec"]["containers"][0]["volumeMounts"].is_null(),
        "{}",
        p["spec"]
    );

    // A ServiceAccount that does not exist is refused, as upstream.
    let ghost = quiet
        .replace("name: quiet\n  namespace", "name: ghost\n  namespace")
        .replace("serviceAccountName: quiet", "serviceAccountName: ghost");
    let out = apply(&cluster, &ghost)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && stderr.contains(
                r#"pods "ghost" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found"#
            ),
        "{stderr}"
    );
    Ok(())
}

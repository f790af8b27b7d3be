//! Services on real nodes: `skiff up --runtime containerd` carries
//! ClusterIPs through kernel DNAT rules (nftables, the default) or, for
//! Services annotated `proxy.skiff.io/mode: userspace`, through its
//! metering proxy; NodePorts through the proxy; and answers cluster DNS.
//!
//! Like containerd_pods.rs these run as root and fail (not skip) when a
//! component is missing. Network use: pod IPs on the node's bridge, the
//! ClusterIPs and DNS IP on the `skiff-svc` interface skiff creates, and
//! 127.0.0.1. A guard kills `skiff up` and removes containers, netns, the
//! bridge and the service interface even when an assertion fails. Other
//! worktrees' containerd tests share these names: run under
//! `flock /tmp/skiff-containerd-e2e.lock`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::containerd::{NodeCluster, IMAGE};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Pod;

const SERVICE_INTERFACE: &str = "skiff-svc";
const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

type Env = NodeCluster;

fn jsonpath(env: &Env, args: &[&str], path: &str) -> Result<String> {
    let template = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", template.as_str()]);
    env.kubectl(&all)
}

/// Everything the pod's container wrote (the node's log file).
fn pod_log(env: &Env, pod: &Pod, container: &str) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let path = env
        .node
        .data_dir
        .join("logs/pods")
        .join(format!("{ns}_{name}_{uid}"))
        .join(container)
        .join("0.log");
    std::fs::read_to_string(path).unwrap_or_default()
}

fn metrics(env: &Env) -> Result<String> {
    env.kubectl(&["get", "--raw", "/metrics"])
}

/// Three replicas, each serving its own hostname (the pod name).
const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: skiff-busybox:e2e
        imagePullPolicy: Never
        command: ["sh", "-c", "hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - name: http
    port: 8081
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web-metered
  annotations: {proxy.skiff.io/mode: userspace}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#;

/// The kernel rules skiff wrote (`nft list table ip skiff-proxy`).
fn kernel_rules() -> String {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", "skiff-proxy"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn http_get(addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let address = addr.parse()?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.") || !response.contains("200 OK") {
        bail!("not a 200 response: {response:?}");
    }
    Ok(response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// The hostnames answering at `addr`, once every one of `want` was seen.
fn reaches_all(env: &Env, addr: &str, want: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    let mut last_error = None;
    wait_for(
        &format!("{addr} to reach every replica"),
        Duration::from_secs(30),
        || {
            match http_get(addr) {
                Ok(body) if body.is_empty() => last_error = Some("an empty body".into()),
                Ok(body) => {
                    seen.insert(body);
                }
                Err(e) => last_error = Some(e.to_string()),
            }
            Ok(want.is_subset(&seen).then(|| seen.clone()))
        },
    )
    .with_context(|| {
        let log = env.cluster().logs();
        let proxy: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("kube_client"))
            .take(60)
            .collect();
        let sh = |cmd: &str| {
            std::process::Command::new("sh")
                .args(["-c", cmd])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        format!(
            "saw {seen:?}, last error {last_error:?}; log:\n{}\n{}\n{}",
            proxy.join("\n"),
            sh("ip addr show skiff-svc"),
            sh("ss -ltnp | grep skiff")
        )
    })
}

/// A DNS query for `name`/`qtype` as RFC 1035 lays it out.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// (rcode, answer count, last 4 bytes) of the reply from the cluster DNS.
fn ask_dns(name: &str) -> Result<(u8, u16, [u8; 4])> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(&dns_query(0x5eed, name, 1), (DNS_IP, 53))?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf)?;
    if n < 12 || buf[..2] != 0x5eed_u16.to_be_bytes() {
        bail!("bad DNS reply {:?}", &buf[..n]);
    }
    let mut last = [0u8; 4];
    last.copy_from_slice(&buf[n - 4..n]);
    Ok((buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]]), last))
}

/// The value of the sample `line_start ... <value>` in Prometheus text.
fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn cluster_ip_node_port_and_dns_reach_every_ready_replica_from_the_host_and_a_pod() -> Result<()> {
    let env = Env::start()?;
    env.apply(WEB)?;
    let pods = wait_for("3 web pods Running", Duration::from_secs(60), || {
        let pods = env.pods("app=web")?;
        let running = pods.iter().all(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
        });
        Ok((pods.len() == 3 && running).then_some(pods))
    })?;
    let names: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let cluster_ip = jsonpath(&env, &["get", "service", "web"], "{.spec.clusterIP}")?;
    let node_port = jsonpath(
        &env,
        &["get", "service", "web-np"],
        "{.spec.ports[0].nodePort}",
    )?;
    eprintln!("web at {cluster_ip}:80, web-np at 127.0.0.1:{node_port}");

    // From the host: the ClusterIP and the nodePort on loopback.
    let started = Instant::now();
    for pod in &pods {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .context("pod IP")?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let body = wait_for("the pod to serve", Duration::from_secs(20), || {
            Ok(http_get(&format!("{ip}:8080")).ok())
        })?;
        assert_eq!(body, name, "the pod at {ip} serves its hostname");
    }
    let seen = reaches_all(&env, &format!("{cluster_ip}:80"), &names)?;
    eprintln!("ClusterIP reached {seen:?} in {:?}", started.elapsed());
    reaches_all(&env, &format!("127.0.0.1:{node_port}"), &names)?;
    let metered_ip = jsonpath(
        &env,
        &["get", "service", "web-metered"],
        "{.spec.clusterIP}",
    )?;
    reaches_all(&env, &format!("{metered_ip}:80"), &names)?;

    // `web` is carried by the kernel (three DNAT targets), `web-metered`
    // by the proxy (no rule).
    let rules = kernel_rules();
    assert!(
        rules.contains(&format!("ip daddr {cluster_ip} tcp dport 80 goto"))
            && rules.contains("numgen random mod 3"),
        "no kernel rule for web:\n{rules}"
    );
    assert!(
        !rules.contains(&format!("ip daddr {metered_ip} ")),
        "web-metered must not be in the kernel rules:\n{rules}"
    );

    // Cluster DNS, asked from the host.
    let ip: Ipv4Addr = cluster_ip.parse()?;
    let (rcode, answers, last) = ask_dns("web.default.svc.cluster.local")?;
    assert_eq!((rcode, answers), (0, 1), "A web.default.svc.cluster.local");
    assert_eq!(Ipv4Addr::from(last), ip);
    assert_eq!(ask_dns("nope.default.svc.cluster.local")?.0, 3, "NXDOMAIN");
    assert_eq!(ask_dns("example.com")?.0, 5, "REFUSED, never forwarded");

    // From inside a pod: the ClusterIP (busybox-static's wget crashes in
    // the test image, so nc), and the DNS server by name.
    // The client also serves, behind its own Service, and reaches itself
    // through it (hairpin: masqueraded so the reply comes back via the host).
    env.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: client-self\nspec:\n  selector: {app: client}\n  ports:\n  - {port: 80, targetPort: 8080}\n",
    )?;
    let self_ip = jsonpath(
        &env,
        &["get", "service", "client-self"],
        "{.spec.clusterIP}",
    )?;
    let script = format!(
        "mkdir -p /tmp/www && echo self-ok > /tmp/www/index.html && httpd -p 8080 -h /tmp/www; while true; do printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {self_ip} 80 | grep -q self-ok && echo hairpin-ok; echo \"via-ip $(printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {cluster_ip} 80 | grep web-)\"; busybox nslookup web.default.svc.cluster.local {DNS_IP} 2>&1 | grep -q {cluster_ip} && echo dns-ok; busybox nslookup web 2>&1 | grep -q {cluster_ip} && echo short-ok; sleep 0.5; done"
    );
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {{app: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", {script:?}]
"#
    ))?;
    let client = wait_for("the client pod", Duration::from_secs(60), || {
        Ok(env.pods("app=client")?.into_iter().next())
    })?;
    wait_for(
        "the pod to reach the ClusterIP, the DNS server and itself",
        Duration::from_secs(60),
        || {
            let log = pod_log(&env, &client, "main");
            let via_ip = names.iter().any(|n| log.contains(&format!("via-ip {n}")));
            // `web` alone resolves through the pod's resolv.conf (the
            // cluster DNS and its search list).
            Ok((via_ip
                && log.contains("dns-ok")
                && log.contains("short-ok")
                && log.contains("hairpin-ok"))
            .then_some(()))
        },
    )
    .with_context(|| {
        let log = pod_log(&env, &client, "main");
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        format!("the client pod's log ends with {tail:?}")
    })?;

    // Counters: every response through the proxy was counted for its
    // Service (the kernel path counts none).
    let metrics = metrics(&env)?;
    let ok = sample(
        &metrics,
        r#"skiff_service_requests_total{namespace="default",service="web-metered",code_class="2xx"}"#,
    );
    assert!(ok >= 3.0, "web-metered 2xx = {ok}\n{metrics}");
    let ok_np = sample(
        &metrics,
        r#"skiff_service_requests_total{namespace="default",service="web-np",code_class="2xx"}"#,
    );
    assert!(ok_np >= 3.0, "web-np 2xx = {ok_np}");

    // Scaling down: within a second of the EndpointSlice change, only the
    // remaining replica answers.
    env.cluster()
        .kubectl(&["scale", "deployment", "web", "--replicas=1"])?;
    wait_for(
        "the EndpointSlice to hold one ready endpoint",
        Duration::from_secs(30),
        || {
            let ready = jsonpath(
                &env,
                &[
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=web",
                ],
                "{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
            )?;
            Ok((ready.split_whitespace().count() == 1).then_some(()))
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let after: BTreeSet<String> = (0..12)
        .map(|_| http_get(&format!("{cluster_ip}:80")))
        .collect::<Result<_>>()?;
    assert_eq!(
        after.len(),
        1,
        "traffic still spread after scale-down: {after:?}"
    );

    // A UDP Service port (kernel path), selectorless, whose endpoint is a
    // socket of this test on the node's bridge gateway. A client that sent
    // before there was an endpoint is not stuck on its stale conntrack
    // entry once one appears.
    let sink = UdpSocket::bind("0.0.0.0:0")?;
    sink.set_read_timeout(Some(Duration::from_millis(300)))?;
    let sink_port = sink.local_addr()?.port();
    let some_pod_ip: Ipv4Addr = pods
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
        .context("a pod IP")?;
    let [a, b, c, _] = some_pod_ip.octets();
    let gateway = Ipv4Addr::new(a, b, c, 1);
    env.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: udp-sink\nspec:\n  ports:\n  - {name: dgram, protocol: UDP, port: 9000}\n",
    )?;
    let udp_ip = jsonpath(&env, &["get", "service", "udp-sink"], "{.spec.clusterIP}")?;
    let client = UdpSocket::bind("0.0.0.0:0")?;
    for _ in 0..3 {
        client.send_to(b"early", format!("{udp_ip}:9000"))?;
        std::thread::sleep(Duration::from_millis(200));
    }
    env.apply(&format!(
        r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: udp-sink-1
  labels: {{kubernetes.io/service-name: udp-sink}}
addressType: IPv4
ports: [{{name: dgram, protocol: UDP, port: {sink_port}}}]
endpoints: [{{addresses: ["{gateway}"], conditions: {{ready: true}}}}]
"#
    ))?;
    wait_for(
        "a datagram through the UDP ClusterIP",
        Duration::from_secs(10),
        || {
            client.send_to(b"hello-udp", format!("{udp_ip}:9000"))?;
            let mut buf = [0u8; 64];
            Ok(match sink.recv_from(&mut buf) {
                Ok((n, _)) => buf[..n].starts_with(b"hello-udp").then_some(()),
                Err(_) => None,
            })
        },
    )?;

    // Fail-static: with skiff killed by SIGKILL, the kernel path still
    // carries the ClusterIP to the running replica.
    let remaining = after.into_iter().next().context("one replica")?;
    let mut env = env;
    env.cluster_mut().kill9()?;
    for _ in 0..5 {
        assert_eq!(
            http_get(&format!("{cluster_ip}:80"))?,
            remaining,
            "the ClusterIP after a kill -9 of skiff up"
        );
    }

    // A restart takes the rules over; a graceful stop removes the service
    // interface and the rules.
    env.cluster_mut().restart()?;
    wait_for(
        "the restarted cluster to serve",
        Duration::from_secs(60),
        || Ok(env.kubectl(&["get", "service", "web"]).ok()),
    )?;
    assert_eq!(http_get(&format!("{cluster_ip}:80"))?, remaining);
    env.cluster_mut().stop()?;
    let link = std::process::Command::new("ip")
        .args(["link", "show", SERVICE_INTERFACE])
        .output()?;
    assert!(!link.status.success(), "{SERVICE_INTERFACE} left behind");
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip", "skiff-proxy"])
        .output()?;
    assert!(!table.status.success(), "the skiff-proxy table left behind");
    Ok(())
}

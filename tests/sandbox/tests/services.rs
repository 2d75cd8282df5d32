// SPDX-License-Identifier: Apache-2.0
//! Services through the real `kubectl` and real connections between
//! sandbox pods: ClusterIPs, EndpointSlices, kube-proxy's nftables NAT and
//! cluster DNS.

mod common;

use std::net::Ipv4Addr;
use std::process::Output;
use std::time::{Duration, Instant};

use common::WAIT;
use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};
use serde_json::Value;

/// Sandboxes of this file start under a read lock; the leak check holds
/// it for writing, so no sandbox of this process takes the slot it checks
/// (slots are reused as soon as they are free).
static SLOTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn start(config: SandboxConfig) -> Sandbox {
    let _starting = SLOTS.read().await;
    Sandbox::start(config).await.unwrap()
}

/// `kubectl ARGS` (with `stdin`, for `-f -`, when given).
async fn kubectl(sb: &Sandbox, args: &[&str], stdin: Option<&str>) -> Output {
    common::kubectl(sb, args, stdin).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A curl from `pod`: (exit code, `%{http_code}`, how long it took).
fn curl(sb: &Sandbox, pod: &str, url: &str) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = sb
        .exec(
            "default",
            pod,
            &[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                url,
            ],
        )
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        started.elapsed(),
    )
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests in an nginx pod's access log (its stdout) from `client`.
async fn hits(sb: &Sandbox, pod: &str, client: Ipv4Addr) -> usize {
    let o = kubectl(sb, &["logs", pod], None).await;
    text(&o.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{client} ")) && l.contains("GET /"))
        .count()
}

fn web(name: &str, node: &str) -> PodManifest {
    let mut p = PodManifest::new("default", name, "nginx:latest", &[]).on_node(node);
    p.value["metadata"]["labels"]["app"] = "web".into();
    p.value["spec"]["containers"][0]["ports"] =
        serde_json::json!([{"name": "http", "containerPort": 80}]);
    p
}

const WEB_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 8080\n    targetPort: http\n";

/// The slices of Service `name`, as `kubectl` reads them.
async fn slices(sb: &Sandbox, name: &str) -> Vec<Value> {
    let o = kubectl(
        sb,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={name}"),
            "-o",
            "json",
        ],
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn endpoint<'a>(slices: &'a [Value], pod: &str) -> Option<&'a Value> {
    slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find(|e| e["targetRef"]["name"] == pod)
}

/// The `kube-proxy` table of a node, as `nft` lists it.
fn node_table(sb: &Sandbox, node: &str) -> String {
    let netns = format!("{}{node}", sb.netns_prefix());
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns,
            "nft",
            "list",
            "table",
            "ip",
            "kube-proxy",
        ])
        .output()
        .unwrap();
    text(&out.stdout)
}

/// `kubectl expose pod/nginx-demo --port 80 --name NAME`.
async fn expose(sb: &Sandbox, name: &str) {
    let o = kubectl(
        sb,
        &["expose", "pod/nginx-demo", "--port", "80", "--name", name],
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), format!("service/{name} exposed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exposes_a_pod_and_prints_its_service_and_endpointslice() {
    let sb = start(SandboxConfig::default()).await;
    expose(&sb, "nginx").await;
    let ip = sb.cluster_ip("default", "nginx").expect("a ClusterIP");
    let cidr = sb.service_cidr().unwrap();
    assert!(cidr.contains(&ip), "{ip} outside {cidr}");
    let pod_ip = sb.pod_ip("default", "nginx-demo").await.unwrap();
    let mut table = String::new();
    eventually(WAIT, "the slice lists nginx-demo", || {
        let mut cmd = sb.kubectl();
        cmd.args(["get", "svc,endpointslices"]);
        table = text(&cmd.output().unwrap().stdout);
        table.contains(&pod_ip.to_string())
    })
    .await;
    let svc_line = table
        .lines()
        .find(|l| l.starts_with("service/nginx "))
        .unwrap();
    for cell in ["ClusterIP", &ip.to_string(), "<none>", "80/TCP"] {
        assert!(svc_line.contains(cell), "{cell} missing: {table}");
    }
    let slice_line = table
        .lines()
        .find(|l| l.starts_with("endpointslice.discovery.k8s.io/nginx-"))
        .unwrap_or_else(|| panic!("{table}"));
    for cell in ["IPv4", " 80 ", &pod_ip.to_string()] {
        assert!(slice_line.contains(cell), "{cell} missing: {table}");
    }
    let s = slices(&sb, "nginx").await;
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["metadata"]["ownerReferences"][0]["kind"], "Service");
    let e = endpoint(&s, "nginx-demo").unwrap();
    assert_eq!(e["conditions"]["ready"], true);
    let node = sb.get_object("pod", "default", "nginx-demo").unwrap()["spec"]["nodeName"].clone();
    assert_eq!(e["nodeName"], node);
    assert_eq!(e["targetRef"]["kind"], "Pod");
    assert_eq!(s[0]["ports"][0]["port"], 80);
    // Other ways of making and changing one.
    let other = "apiVersion: v1\nkind: Service\nmetadata:\n  name: other\nspec:\n  ports:\n  - port: 81\n    targetPort: 80\n";
    for (args, stdin) in [
        (&["apply", "-f", "-"][..], Some(other)),
        (&["apply", "-f", "-"], Some(other)),
        (&["label", "svc", "nginx", "tier=web"], None),
        (&["annotate", "svc", "other", "note=x"], None),
    ] {
        let o = kubectl(&sb, args, stdin).await;
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let o = kubectl(&sb, &["get", "svc", "-l", "tier=web", "-o", "name"], None).await;
    assert_eq!(text(&o.stdout), "service/nginx\n");
    assert_eq!(
        sb.cluster_ip("default", "nginx"),
        Some(ip),
        "the ClusterIP changed"
    );
    let o = kubectl(&sb, &["delete", "svc", "other"], None).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The cluster's DNS Service, as kubeadm sets it up.
    let o = kubectl(&sb, &["get", "svc", "-n", "kube-system", "kube-dns"], None).await;
    let line = text(&o.stdout);
    assert!(
        line.contains("53/UDP,53/TCP") && line.contains(&format!("{}", dns_ip(&sb))),
        "{line}"
    );
    sb.shutdown().await;
}

fn dns_ip(sb: &Sandbox) -> Ipv4Addr {
    let net = sb.service_cidr().unwrap().network();
    Ipv4Addr::from(u32::from(net) + 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_services_are_refused_in_the_servers_words() {
    let sb = start(SandboxConfig::bare()).await;
    let cases = [
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 70000\n",
            "The Service \"bad\" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  selector:\n    app: x\n",
            "The Service \"bad\" is invalid: spec.ports: Required value",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 80\n    targetPort: Web_Port\n",
            "spec.ports[0].targetPort: Invalid value: \"Web_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  clusterIP: 192.0.2.1\n  ports:\n  - port: 80\n",
            "failed to allocate IP 192.0.2.1: provided IP is not in the valid range. The range of valid IPs is ",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 80\n    protocol: ICMP\n",
            "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ),
        // The service CIDR is IPv4 only (in every --ip-family).
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ipFamilyPolicy: RequireDualStack\n  selector:\n    app: x\n  ports:\n  - port: 80\n",
            "The Service \"bad\" is invalid: spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ipFamilies: [IPv6]\n  selector:\n    app: x\n  ports:\n  - port: 80\n",
            "The Service \"bad\" is invalid: spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster",
        ),
    ];
    for (manifest, want) in cases {
        let o = kubectl(&sb, &["apply", "-f", "-"], Some(manifest)).await;
        assert!(!o.status.success(), "accepted: {manifest}");
        assert!(text(&o.stderr).contains(want), "{}", text(&o.stderr));
    }
    // kube-dns's address is taken.
    let taken = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  clusterIP: {}\n  ports:\n  - port: 80\n",
        dns_ip(&sb)
    );
    let o = kubectl(&sb, &["apply", "-f", "-"], Some(&taken)).await;
    assert!(
        text(&o.stderr).contains("provided IP is already allocated"),
        "{}",
        text(&o.stderr)
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusterip_balances_over_ready_backends_and_rejects_when_none() {
    let mut config = SandboxConfig::bare();
    config.pods = vec![
        web("web-1", "node-1"),
        web("web-2", "node-2"),
        PodManifest::curl_demo().on_node("node-1"),
    ];
    let sb = start(config).await;
    let o = kubectl(&sb, &["apply", "-f", "-"], Some(WEB_SERVICE)).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ip = sb.cluster_ip("default", "web").unwrap();
    let url = format!("http://{ip}:8080/");
    let client = sb.pod_ip("default", "curl-demo").await.unwrap();
    // Programmed: both backends in the client node's rules.
    let (ip1, ip2) = (
        sb.pod_ip("default", "web-1").await.unwrap(),
        sb.pod_ip("default", "web-2").await.unwrap(),
    );
    eventually(WAIT, "both backends in node-1's rules", || {
        let t = node_table(&sb, "node-1");
        t.contains(&format!("dnat to {ip1}:80")) && t.contains(&format!("dnat to {ip2}:80"))
    })
    .await;
    // The named targetPort resolved to each pod's port 80.
    let s = slices(&sb, "web").await;
    assert_eq!(s[0]["ports"][0]["port"], 80, "{s:?}");
    assert_eq!(s[0]["ports"][0]["name"], "http", "{s:?}");

    // Random choice: both backends answer within a bounded number of tries
    // (one missing after 40 has odds 2^-39).
    let mut ok = 0;
    for _ in 0..40 {
        let (code, http, _) = curl(&sb, "curl-demo", &url);
        assert_eq!((code, http.as_str()), (0, "200"));
        ok += 1;
        if hits(&sb, "web-1", client).await > 0 && hits(&sb, "web-2", client).await > 0 {
            break;
        }
    }
    assert!(
        hits(&sb, "web-1", client).await > 0,
        "web-1 never reached in {ok}"
    );
    assert!(
        hits(&sb, "web-2", client).await > 0,
        "web-2 never reached in {ok}"
    );

    // Hairpin: a backend reaching itself through its Service.
    for _ in 0..10 {
        let (code, http, _) = curl(&sb, "web-1", &url);
        assert_eq!((code, http.as_str()), (0, "200"), "hairpin");
    }

    // web-1 unready: its endpoint says so, every node's rules drop it
    // within a second of that, and all traffic goes to web-2.
    let web1 = ip1.to_string();
    sb.set_pod_ready("default", "web-1", false).unwrap();
    let mut seen = Instant::now();
    eventually(WAIT, "web-1's endpoint not ready", || {
        seen = Instant::now();
        let mut cmd = sb.kubectl();
        cmd.args([
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        endpoint(&items, "web-1").is_some_and(|e| e["conditions"]["ready"] == false)
    })
    .await;
    eventually(Duration::from_secs(1), "nodes' rules without web-1", || {
        sb.node_names()
            .iter()
            .all(|n| !node_table(&sb, n).contains(&format!("dnat to {web1}:")))
    })
    .await;
    assert!(seen.elapsed() < Duration::from_secs(2));
    let before = hits(&sb, "web-1", client).await;
    for _ in 0..15 {
        let (code, _, _) = curl(&sb, "curl-demo", &url);
        assert_eq!(code, 0);
    }
    assert_eq!(
        hits(&sb, "web-1", client).await,
        before,
        "an unready backend got traffic"
    );

    // web-2 deleted too: no ready endpoint; refused at once, as kube-proxy
    // rejects (ICMP port unreachable → ECONNREFUSED, curl exit 7).
    let o = kubectl(&sb, &["delete", "pod", "web-2", "--wait=true"], None).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = slices(&sb, "web").await;
    assert!(
        endpoint(&s, "web-2").is_none(),
        "deleted web-2 still listed: {s:?}"
    );
    eventually(WAIT, "the Service rejected", || {
        curl(&sb, "curl-demo", &url).0 == 7
    })
    .await;
    let (code, _, took) = curl(&sb, "curl-demo", &url);
    assert_eq!(code, 7, "not refused");
    assert!(took < Duration::from_secs(2), "refusal took {took:?}");
    // curl does not say why it could not connect; bash's connect does.
    let o = sb
        .exec(
            "default",
            "curl-demo",
            &["bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/8080")],
        )
        .unwrap();
    assert!(
        text(&o.stderr).contains("Connection refused"),
        "{}",
        text(&o.stderr)
    );
    assert!(node_table(&sb, "node-1").contains("goto reject-chain"));

    // Ready again: back in the rules, answered.
    sb.set_pod_ready("default", "web-1", true).unwrap();
    eventually(WAIT, "web-1 answers again", || {
        curl(&sb, "curl-demo", &url).0 == 0
    })
    .await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_services_by_name_and_nothing_is_left_after_shutdown() {
    let sb = start(SandboxConfig::default()).await;
    expose(&sb, "nginx").await;
    // The resolv.conf a kubelet writes.
    let conf = sb
        .exec("default", "curl-demo", &["cat", "/etc/resolv.conf"])
        .unwrap();
    assert_eq!(
        text(&conf.stdout),
        format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver {}\noptions ndots:5\n",
            dns_ip(&sb)
        )
    );
    eventually(WAIT, "curl http://nginx answers", || {
        curl(&sb, "curl-demo", "http://nginx").1 == "200"
    })
    .await;
    let (code, http, _) = curl(&sb, "curl-demo", "http://nginx.default.svc.cluster.local/");
    assert_eq!((code, http.as_str()), (0, "200"));
    // Unknown names are NXDOMAIN: curl cannot resolve (exit 6).
    let (code, _, took) = curl(&sb, "curl-demo", "http://nope.default.svc.cluster.local/");
    assert_eq!(code, 6);
    assert!(took < Duration::from_secs(3), "{took:?}");
    // … answered by the DNS pod (reached through the kube-dns ClusterIP,
    // the client's address kept) as NXDOMAIN, never forwarded.
    let o = kubectl(
        &sb,
        &["logs", "-n", "kube-system", "-l", "k8s-app=kube-dns"],
        None,
    )
    .await;
    let log = text(&o.stdout);
    let client = sb.pod_ip("default", "curl-demo").await.unwrap();
    assert!(
        log.contains(&format!(
            "query[A] nope.default.svc.cluster.local from {client}"
        )),
        "{log}"
    );
    assert!(
        log.contains("config nope.default.svc.cluster.local is NXDOMAIN"),
        "{log}"
    );
    assert!(!log.contains("forwarded"), "{log}");
    // Pod records.
    let nginx_ip = sb.pod_ip("default", "nginx-demo").await.unwrap();
    let name = format!(
        "{}.default.pod.cluster.local",
        nginx_ip.to_string().replace('.', "-")
    );
    let out = sb
        .exec("default", "curl-demo", &["getent", "hosts", &name])
        .unwrap();
    assert!(
        text(&out.stdout).starts_with(&format!("{nginx_ip} ")),
        "{}",
        text(&out.stdout)
    );
    // A new Service resolves within a second of its creation (and
    // answers once every node has its rules).
    expose(&sb, "second").await;
    eventually(Duration::from_secs(1), "second resolves", || {
        let o = sb
            .exec("default", "curl-demo", &["getent", "hosts", "second"])
            .unwrap();
        o.status.success()
    })
    .await;
    eventually(WAIT, "second answers", || {
        curl(&sb, "curl-demo", "http://second").1 == "200"
    })
    .await;

    let _alone = SLOTS.write().await;
    let prefix = sb.netns_prefix().to_owned();
    let hosts_dir = std::env::temp_dir().join(format!("{prefix}cluster-dns"));
    assert!(hosts_dir.exists());
    sb.shutdown().await;
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .chain(
            std::fs::read_dir("/etc/netns")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| format!("/etc/netns/{}", e.file_name().to_string_lossy())),
        )
        .filter(|n| n.starts_with(&prefix) || n.starts_with(&format!("/etc/netns/{prefix}")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!hosts_dir.exists(), "DNS records left behind");
    let needle = format!("--hostsdir={}", hosts_dir.display());
    let dnsmasq: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| text(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect();
    assert!(dnsmasq.is_empty(), "dnsmasq left running: {dnsmasq:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_behind_a_service_answers_by_name_from_every_replica() {
    let sb = start(SandboxConfig::default()).await;
    for args in [
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
        ][..],
        &["rollout", "status", "deployment/web", "--timeout=20s"],
        &["expose", "deployment/web", "--port", "80"],
    ] {
        let o = kubectl(&sb, args, None).await;
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let mut ready = Vec::new();
    let deadline = Instant::now() + WAIT;
    while ready.len() < 2 {
        assert!(Instant::now() < deadline, "endpoints: {ready:?}");
        ready = slices(&sb, "web")
            .await
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_owned))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = sb.pod_ip("default", "curl-demo").await.unwrap();
    let mut reached = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (code, http, _) = curl(&sb, "curl-demo", "http://web");
        if code == 0 && http == "200" {
            for pod in &ready {
                if hits(&sb, pod, client).await > 0 {
                    reached.insert(pod.clone());
                }
            }
        }
        if reached.len() == 2 {
            break;
        }
    }
    assert_eq!(reached.len(), 2, "reached {reached:?} of {ready:?}");
    sb.shutdown().await;
}

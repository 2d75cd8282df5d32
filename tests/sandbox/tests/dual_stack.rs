// SPDX-License-Identifier: Apache-2.0
//! IPv6 in the sandbox (`--ip-family dual|ipv6`): pod and node addresses
//! as a dual-stack cluster lists them, pods talking over IPv6 in both CNI
//! shapes, AAAA records, and IPv4 Services and NetworkPolicies unchanged.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::process::Output;
use std::time::{Duration, Instant};

use common::WAIT;
use podtrace_sandbox::{IpFamily, PodManifest, Sandbox, SandboxConfig};
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn kubectl(sb: &Sandbox, args: &[&str], stdin: Option<&str>) -> Output {
    let o = common::kubectl(sb, args, stdin).await;
    assert!(o.status.success(), "kubectl {args:?}: {}", text(&o.stderr));
    o
}

async fn get_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-o", "json"]);
    serde_json::from_slice(&kubectl(sb, &all, None).await.stdout).unwrap()
}

fn pod_ips(pod: &Value) -> Vec<IpAddr> {
    pod["status"]["podIPs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ip"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// A curl from `default/client` with extra `args`: (exit code,
/// `%{http_code} %{remote_ip}`).
fn curl(sb: &Sandbox, client: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = vec![
        "curl",
        "-sS",
        "-g",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{remote_ip}",
        "--max-time",
        "5",
    ];
    cmd.extend(args);
    let out = sb.exec("default", client, &cmd).unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout))
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

fn v6(ips: &[IpAddr]) -> Ipv6Addr {
    ips.iter()
        .find_map(|ip| match ip {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .expect("an IPv6 address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_pods_talk_over_ipv6_in_both_shapes_and_resolve_aaaa() {
    // One nginx on the routed node, one on the bridged node.
    let sb = Sandbox::start(SandboxConfig {
        ip_family: IpFamily::Dual,
        pods: vec![
            PodManifest::new("default", "web-routed", "nginx", &[]).on_node("node-1"),
            PodManifest::new("default", "web-bridged", "nginx", &[]).on_node("node-2"),
            PodManifest::curl_demo().on_node("node-1"),
        ],
        ..SandboxConfig::default()
    })
    .await
    .unwrap();

    // Nodes: both pod CIDRs and both InternalIPs, IPv4 first.
    let node = get_json(&sb, &["node", "node-2"]).await;
    let cidrs: Vec<&str> = node["spec"]["podCIDRs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cidrs.len(), 2, "{cidrs:?}");
    assert!(cidrs[0].ends_with(".2.0/24"), "{cidrs:?}");
    assert!(
        cidrs[1].starts_with("fd00:") && cidrs[1].ends_with(":2::/64"),
        "{cidrs:?}"
    );
    assert_eq!(node["spec"]["podCIDR"], cidrs[0]);
    let internal: Vec<&str> = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(internal.len(), 2, "{internal:?}");
    assert!(internal[1].parse::<Ipv6Addr>().is_ok(), "{internal:?}");

    for (web, node_cidr6) in [("web-routed", "node-1"), ("web-bridged", "node-2")] {
        let pod = get_json(&sb, &["pod", web]).await;
        let ips = pod_ips(&pod);
        assert_eq!(ips.len(), 2, "{ips:?}");
        assert!(ips[0].is_ipv4() && ips[1].is_ipv6(), "{ips:?}");
        assert_eq!(pod["status"]["podIP"], ips[0].to_string());
        let node = get_json(&sb, &["node", node_cidr6]).await;
        let cidr6: ipnet::Ipv6Net = node["spec"]["podCIDRs"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let addr6 = v6(&ips);
        assert!(cidr6.contains(&addr6), "{addr6} not in {cidr6}");
        // Over IPv6, by address and by the pod's AAAA record.
        let (code, out) = curl(&sb, "curl-demo", &[&format!("http://[{addr6}]/")]);
        assert_eq!((code, out.clone()), (0, format!("200 {addr6}")), "{web}");
        let name = format!(
            "{}.default.pod.cluster.local",
            addr6.to_string().replace(':', "-")
        );
        let (code, out) = curl(&sb, "curl-demo", &["-6", &format!("http://{name}/")]);
        assert_eq!((code, out), (0, format!("200 {addr6}")), "{name}");
        // The access log names the client by its IPv6 address.
        let client6 = v6(&pod_ips(&get_json(&sb, &["pod", "curl-demo"]).await));
        let log = text(&kubectl(&sb, &["logs", web], None).await.stdout);
        assert!(log.contains(&format!("{client6} - - ")), "{log}");
    }

    // A ClusterIP Service stays IPv4 (ipFamilies, slices, DNS) and answers.
    kubectl(
        &sb,
        &["expose", "pod/web-bridged", "--port", "80", "--name", "web"],
        None,
    )
    .await;
    let svc = get_json(&sb, &["svc", "web"]).await;
    assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    eventually(WAIT, "curl http://web answers over IPv4", || {
        curl(&sb, "curl-demo", &["http://web/"]).0 == 0
    })
    .await;
    let slices = get_json(
        &sb,
        &["endpointslices", "-l", "kubernetes.io/service-name=web"],
    )
    .await;
    let slice = &slices["items"][0];
    assert_eq!(slice["addressType"], "IPv4");
    let addr = slice["endpoints"][0]["addresses"][0].as_str().unwrap();
    assert!(addr.parse::<std::net::Ipv4Addr>().is_ok(), "{addr}");

    // A headless Service: A and AAAA records of its ready endpoint.
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: headless\nspec:\n  clusterIP: None\n  selector:\n    app: web-routed\n  ports:\n  - port: 80\n";
    kubectl(&sb, &["apply", "-f", "-"], Some(headless)).await;
    let routed = pod_ips(&get_json(&sb, &["pod", "web-routed"]).await);
    let want6 = format!("200 {}", v6(&routed));
    eventually(WAIT, "headless answers AAAA", || {
        curl(&sb, "curl-demo", &["-6", "http://headless/"]).1 == want6
    })
    .await;
    let (code, out) = curl(&sb, "curl-demo", &["-4", "http://headless/"]);
    assert_eq!((code, out), (0, format!("200 {}", routed[0])));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_family_lists_ipv6_first_and_keeps_ipv4_services_and_policies() {
    let sb = Sandbox::start(SandboxConfig {
        ip_family: IpFamily::Ipv6,
        shape: podtrace_sandbox::ShapeChoice::Routed,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let pod = get_json(&sb, &["pod", "nginx-demo"]).await;
    let ips = pod_ips(&pod);
    assert!(ips[0].is_ipv6() && ips[1].is_ipv4(), "{ips:?}");
    assert_eq!(pod["status"]["podIP"], ips[0].to_string());
    let wide = text(
        &kubectl(&sb, &["get", "pod", "nginx-demo", "-o", "wide"], None)
            .await
            .stdout,
    );
    assert!(wide.contains(&ips[0].to_string()), "{wide}");
    let node = get_json(&sb, &["node", "node-1"]).await;
    assert!(
        node["spec"]["podCIDR"].as_str().unwrap().ends_with("::/64"),
        "{}",
        node["spec"]
    );
    // The library's pod_ip is the IPv4 address, pod_ip6 the IPv6 one.
    assert_eq!(
        sb.pod_ip("default", "nginx-demo").await.map(IpAddr::V4),
        Some(ips[1])
    );
    assert_eq!(
        sb.pod_ip6("default", "nginx-demo").await.map(IpAddr::V6),
        Some(ips[0])
    );
    let (code, out) = curl(&sb, "curl-demo", &[&format!("http://[{}]/", ips[0])]);
    assert_eq!((code, out), (0, format!("200 {}", ips[0])));

    // Services reach the pod's IPv4 address.
    kubectl(
        &sb,
        &[
            "expose",
            "pod/nginx-demo",
            "--port",
            "80",
            "--name",
            "nginx",
        ],
        None,
    )
    .await;
    eventually(WAIT, "curl http://nginx answers", || {
        curl(&sb, "curl-demo", &["http://nginx/"]).0 == 0
    })
    .await;
    // A policy isolating nginx-demo drops IPv4 traffic to it.
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\nspec:\n  podSelector:\n    matchLabels:\n      app: nginx-demo\n  policyTypes: [Ingress]\n";
    kubectl(&sb, &["apply", "-f", "-"], Some(deny)).await;
    let url4 = format!("http://{}/", ips[1]);
    eventually(WAIT, "the policy drops IPv4", || {
        curl(&sb, "curl-demo", &["--max-time", "1", &url4]).0 == 28
    })
    .await;
    sb.shutdown().await;
}

// SPDX-License-Identifier: Apache-2.0
//! The `curl_to_nginx_across_two_nodes` scenario end to end (and its one-node and dual-stack
//! twins): `nginx-demo` and `curl-demo` in the
//! sandbox, the real `kubectl podtrace curl-demo nginx-demo -o json` through
//! plugin discovery, curl from curl-demo (over IPv6 on the dual-stack
//! cluster), Ctrl-C, and nothing left behind.
//! Runs as root (network namespaces, eBPF), as CI does.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use podtrace_e2e::{
    assert_nothing_left, bpf_prog_ids, kubectl_podtrace, of_type, peak_rss_kib, Traced,
};
use podtrace_sandbox::{IpFamily, PodManifest, Sandbox, SandboxConfig};
use serde_json::Value;

const NGINX_PAGE_BYTES: u64 = 615;

fn sandbox_config(one_node: bool, ip_family: IpFamily) -> SandboxConfig {
    // The runners run from the runner's image, as runc containers.
    let mut config = SandboxConfig {
        images: vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))],
        ip_family,
        ..SandboxConfig::default()
    };
    if one_node {
        config.nodes = 1;
        config.pods = vec![PodManifest::nginx_demo(), PodManifest::curl_demo()];
    }
    config
}

fn curl(sandbox: &Sandbox, url: &str) -> String {
    let out = sandbox
        .exec(
            "default",
            "curl-demo",
            &[
                "curl",
                "-sS",
                "-g",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
        )
        .expect("exec curl in curl-demo");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn node_of(sandbox: &Sandbox, pod: &str) -> String {
    sandbox
        .get_object("Pod", "default", pod)
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
        .expect("pod has a node")
}

fn has(lines: &[Value], pred: impl Fn(&Value) -> bool) -> bool {
    lines.iter().any(pred)
}

/// `ip_family`: [`IpFamily::Dual`] curls nginx-demo's IPv6 address.
fn run_scenario(one_node: bool, ip_family: IpFamily) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = rt
        .block_on(Sandbox::start(sandbox_config(one_node, ip_family)))
        .expect("sandbox starts");
    let nginx_node = node_of(&sandbox, "nginx-demo");
    let curl_node = node_of(&sandbox, "curl-demo");
    assert_eq!(one_node, nginx_node == curl_node, "pod placement");
    let nginx_ip: IpAddr = if ip_family == IpFamily::Dual {
        rt.block_on(sandbox.pod_ip6("default", "nginx-demo"))
            .expect("nginx-demo has an IPv6 address")
            .into()
    } else {
        rt.block_on(sandbox.pod_ip("default", "nginx-demo"))
            .expect("nginx-demo has an IP")
            .into()
    };
    let (to_80, to_81) = (
        SocketAddr::new(nginx_ip, 80).to_string(),
        SocketAddr::new(nginx_ip, 81).to_string(),
    );

    let mut trace = Traced::spawn(kubectl_podtrace(
        sandbox.kubeconfig_path(),
        &[
            "curl-demo",
            "nginx-demo",
            "-o",
            "json",
            "--duration",
            "120s",
        ],
    ));
    let nodes = if one_node { 1 } else { 2 };
    trace.wait_for(Duration::from_secs(90), "every runner's ready line", |l| {
        of_type(l, "ready").len() >= nodes
    });
    let to_ready = trace.started.elapsed();
    // The runners are runc containers from the runner's image, as
    // `kubectl get pod -o yaml` shows them.
    let pods = sandbox
        .kubectl()
        .args(["get", "pods", "-n", "podtrace", "-o", "json"])
        .output()
        .expect("kubectl get pods");
    let pods: Value = serde_json::from_slice(&pods.stdout).expect("pods JSON");
    let statuses: Vec<&Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["status"]["containerStatuses"][0])
        .collect();
    assert_eq!(statuses.len(), nodes, "one runner pod per node");
    for s in &statuses {
        assert!(
            s["containerID"]
                .as_str()
                .is_some_and(|c| c.starts_with("runc://"))
                && s["imageID"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("ghcr.io/podtrace/podtrace-runner@sha256:")),
            "a runner container from the image: {s}"
        );
    }
    let curl_at = trace.started.elapsed();

    for _ in 0..3 {
        assert_eq!(curl(&sandbox, &format!("http://{to_80}/")), "200");
    }
    let refused = curl(&sandbox, &format!("http://{to_81}/"));
    assert_eq!(refused, "000", "port 81 is closed");

    let curl_pod = "default/curl-demo";
    let nginx_pod = "default/nginx-demo";
    let named = |v: &Value| {
        v["src_name"] == curl_pod
            && v["dst_name"] == nginx_pod
            && v["dst"].as_str().is_some_and(|d| d == to_80 || d == to_81)
    };
    trace.wait_for(Duration::from_secs(30), "the whole conversation", |l| {
        has(l, |v| {
            v["type"] == "connect"
                && v["comm"] == "curl"
                && named(v)
                && v["node"] == curl_node.as_str()
        }) && has(l, |v| {
            v["type"] == "accept" && named(v) && v["node"] == nginx_node.as_str()
        }) && has(l, |v| {
            v["type"] == "established" && v["rtt_us"].as_u64() > Some(0) && named(v)
        }) && has(l, |v| {
            v["type"] == "close"
                && v["node"] == curl_node.as_str()
                && v["bytes_received"].as_u64() >= Some(NGINX_PAGE_BYTES)
        }) && has(l, |v| {
            v["type"] == "failed" && v["error"] == "ECONNREFUSED" && named(v)
        }) && has(l, |v| v["type"] == "reset")
            && has(l, |v| {
                v["type"] == "packet"
                    && v["node"] == curl_node.as_str()
                    && v["flags"].as_str().is_some_and(|f| f.contains("SYN"))
            })
            && has(l, |v| {
                v["type"] == "packet"
                    && v["node"] == nginx_node.as_str()
                    && v["flags"].as_str().is_some_and(|f| f.contains("SYN"))
            })
    });
    let to_events = trace.started.elapsed();
    // The first event of the conversation, from plugin start (the first curl
    // begins right after the last ready line).
    let to_first_event = trace
        .first_at(|v| v["type"] == "connect")
        .expect("a connect event");
    let plugin_rss = peak_rss_kib(trace.child.id());
    let runners = sandbox.runner_processes();
    assert_eq!(runners.len(), nodes, "one runner per node");
    let runner_rss: Vec<u64> = runners.iter().copied().filter_map(peak_rss_kib).collect();
    let runner_progs: Vec<u64> = runners.iter().flat_map(|p| bpf_prog_ids(*p)).collect();
    assert!(
        runner_progs.len() >= 7 * nodes,
        "runner programs: {runner_progs:?}"
    );

    // Ctrl-C, as a person would.
    trace.signal(libc::SIGINT);
    let code = trace.wait_exit(Duration::from_secs(60));
    assert_eq!(
        code,
        0,
        "clean exit after Ctrl-C; stderr:\n{}",
        trace.stderr()
    );
    let lines = trace.json();
    let summaries = of_type(&lines, "summary");
    assert!(
        !summaries.is_empty(),
        "a summary after Ctrl-C: {:?}",
        trace.seen
    );
    let flows: Vec<&Value> = summaries
        .iter()
        .flat_map(|s| s["flows"].as_array().into_iter().flatten())
        .collect();
    assert!(
        flows.iter().any(|f| f["dst"] == to_80.as_str()
            && f["connections"].as_u64() >= Some(3)
            && f["packets_sent"].as_u64() > Some(0)),
        "a flow curl-demo → nginx-demo:80 with the three connections: {flows:?}"
    );
    assert!(
        flows
            .iter()
            .any(|f| f["dst"] == to_81.as_str() && f["failed"].as_u64() >= Some(1)),
        "the refused flow: {flows:?}"
    );
    if !one_node {
        // Both runners stream into one merged, time-ordered output.
        let readies: Vec<&str> = of_type(&lines, "ready")
            .iter()
            .filter_map(|r| r["node"].as_str())
            .collect();
        assert!(readies.contains(&curl_node.as_str()) && readies.contains(&nginx_node.as_str()));
    }
    if ip_family == IpFamily::Dual {
        // Each runner traces both addresses of its pod, limited to both
        // of the peer's (first) and the cluster DNS's.
        let v6 = |ips: &[Value]| {
            ips.iter()
                .filter(|i| i.as_str().is_some_and(|i| i.contains(':')))
                .count()
        };
        for r in of_type(&lines, "ready") {
            let own = r["pod_ips"].as_array().unwrap();
            assert_eq!((own.len(), v6(own)), (2, 1), "pod_ips: {r}");
            let peer = &r["peer_ips"].as_array().unwrap()[..2];
            assert_eq!(v6(peer), 1, "peer_ips: {r}");
        }
    }
    assert_nothing_left(&sandbox, &runner_progs);
    eprintln!(
        "figures ({nodes} node(s)): every runner ready {to_ready:?} after invoking the plugin; \
         first event {to_first_event:?} (curl started at {curl_at:?}); whole conversation seen \
         {to_events:?}; plugin peak RSS {plugin_rss:?} KiB; runner peak RSS {runner_rss:?} KiB"
    );
    rt.block_on(sandbox.shutdown());
}

#[test]
fn curl_to_nginx_across_two_nodes() {
    run_scenario(false, IpFamily::Ipv4);
}

#[test]
fn curl_to_nginx_on_one_node() {
    run_scenario(true, IpFamily::Ipv4);
}

/// The demo on a dual-stack cluster, curl-demo curling nginx-demo's IPv6
/// address: every event named, both runners given both addresses of
/// their pod.
#[test]
fn curl_to_nginx_across_two_nodes_over_ipv6() {
    run_scenario(false, IpFamily::Dual);
}

// SPDX-License-Identifier: Apache-2.0
//! Through a Service and across a rollout, end to end: `kubectl podtrace
//! curl-demo svc/nginx -o json` (the real kubectl, plugin discovery, the
//! runner's image under runc) while `curl-demo` curls `http://nginx` by
//! name; a 2-replica Deployment on two nodes behind the Service is rolled
//! mid-trace; Ctrl-C; nothing left. Runs as root (network namespaces,
//! eBPF), as CI does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use podtrace_e2e::{assert_nothing_left, bpf_prog_ids, kubectl_podtrace, of_type, Traced};
use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};
use serde_json::Value;

fn kubectl(sb: &Sandbox, args: &[&str]) -> String {
    let o = sb.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The Deployment's running pods: `default/name` → node.
fn nginx_pods(sb: &Sandbox) -> BTreeMap<String, String> {
    let v: Value = serde_json::from_str(&kubectl(
        sb,
        &["get", "pods", "-l", "app=nginx", "-o", "json"],
    ))
    .unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| {
            (
                format!("default/{}", p["metadata"]["name"].as_str().unwrap()),
                p["spec"]["nodeName"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// curl-demo fetches `http://nginx/` by name.
fn curl(sb: &Sandbox) {
    let o = sb
        .exec(
            "default",
            "curl-demo",
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                "http://nginx/",
            ],
        )
        .expect("exec curl");
    assert!(o.status.success(), "curl http://nginx/: {o:?}");
}

/// The backends that client-end connections through the Service reached.
fn reached(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|v| v["type"] == "established" && v["end"] == "client")
        .filter(|v| v["service"] == "default/nginx")
        .filter_map(|v| v["dst_name"].as_str().map(str::to_owned))
        .collect()
}

/// Curls (bounded) until every pod of `want` was reached through the
/// Service, `at_least` times in all.
fn curl_until_reached(sb: &Sandbox, trace: &mut Traced, want: &BTreeSet<String>, at_least: u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    while n < at_least || !want.is_subset(&reached(&trace.json())) {
        assert!(
            Instant::now() < deadline,
            "never reached {want:?}; reached {:?}\n{}",
            reached(&trace.json()),
            trace.seen.join("\n")
        );
        curl(sb);
        n += 1;
        let until = Instant::now() + Duration::from_millis(800);
        while trace.next_line(until).is_some() {}
    }
}

#[test]
fn a_service_is_traced_by_name_through_a_rollout() {
    assert!(podtrace_sandbox::is_root(), "needs root, as CI runs");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut config = SandboxConfig {
        images: vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))],
        // node-1 has curl-demo and the cluster DNS: the replicas go to
        // node-2 and node-3.
        nodes: 3,
        pods: vec![PodManifest::curl_demo().on_node("node-1")],
        ..SandboxConfig::default()
    };
    config.start_timeout = Duration::from_secs(30);
    let sb = rt.block_on(Sandbox::start(config)).expect("sandbox starts");
    kubectl(
        &sb,
        &[
            "create",
            "deployment",
            "nginx",
            "--image=nginx",
            "--replicas=2",
            "--port=80",
        ],
    );
    kubectl(&sb, &["expose", "deployment", "nginx", "--port=80"]);
    kubectl(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=60s"],
    );
    let old = nginx_pods(&sb);
    let nodes: BTreeSet<&String> = old.values().collect();
    assert_eq!(nodes.len(), 2, "one replica per node: {old:?}");
    let cip = sb.cluster_ip("default", "nginx").unwrap();
    let dns = sb.cluster_ip("kube-system", "kube-dns").unwrap();

    let mut trace = Traced::spawn(kubectl_podtrace(
        sb.kubeconfig_path(),
        &["curl-demo", "svc/nginx", "-o", "json"],
    ));
    trace.wait_for(Duration::from_secs(90), "3 runners ready", |l| {
        of_type(l, "ready").len() == 3
    });
    let old_names: BTreeSet<String> = old.keys().cloned().collect();
    curl_until_reached(&sb, &mut trace, &old_names, 4);

    let lines = trace.json();
    // One flow: Service and backend in every connection event of it, at
    // both ends, both nodes.
    let through: Vec<&Value> = lines
        .iter()
        .filter(|v| v["proto"] == "tcp" && v["end"].is_string())
        .filter(|v| v["src_name"] == "default/curl-demo")
        .collect();
    for v in &through {
        assert_eq!(v["service"], "default/nginx", "{v}");
        assert_eq!(v["service_addr"], format!("{cip}:80"), "{v}");
        assert!(
            old_names.contains(v["dst_name"].as_str().unwrap_or("")),
            "{v}"
        );
    }
    let server_nodes: BTreeSet<&str> = through
        .iter()
        .filter(|v| v["end"] == "server")
        .filter_map(|v| v["node"].as_str())
        .collect();
    assert_eq!(server_nodes.len(), 2, "both backends' ends seen");
    // The name's lookup: UDP to the cluster DNS, named.
    let lookup = lines
        .iter()
        .find(|v| v["proto"] == "udp" && v["dst"] == format!("{dns}:53"))
        .unwrap_or_else(|| panic!("no DNS lookup:\n{}", trace.seen.join("\n")));
    assert_eq!(lookup["src_name"], "default/curl-demo", "{lookup}");
    assert_eq!(lookup["service"], "kube-system/kube-dns", "{lookup}");

    // A rollout mid-trace: the new pods are traced, the old announced gone.
    kubectl(&sb, &["rollout", "restart", "deployment", "nginx"]);
    kubectl(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=60s"],
    );
    let new = nginx_pods(&sb);
    let new_names: BTreeSet<String> = new.keys().cloned().collect();
    assert!(new_names.is_disjoint(&old_names), "{old:?} {new:?}");
    trace.wait_for(
        Duration::from_secs(30),
        "the old pods announced gone",
        |l| {
            old_names.iter().all(|pod| {
                of_type(l, "target")
                    .iter()
                    .any(|t| t["pod"] == pod.as_str() && t["change"] != "joined")
            })
        },
    );
    // maxSurge first: each old pod goes once a new one runs, so each is
    // announced replaced, by one of the new pods.
    let lines = trace.json();
    for pod in &old_names {
        let gone = of_type(&lines, "target")
            .into_iter()
            .find(|t| t["pod"] == pod.as_str() && t["change"] != "joined")
            .unwrap();
        assert_eq!(gone["change"], "replaced", "{gone}");
        assert!(
            gone["by"].as_str().is_some_and(|by| new_names.contains(by)),
            "{gone}"
        );
    }
    trace.wait_for(Duration::from_secs(30), "runners for the new pods", |l| {
        of_type(l, "ready").len() == 5
    });
    curl_until_reached(&sb, &mut trace, &new_names, 4);

    let runner_progs: Vec<u64> = sb
        .runner_processes()
        .into_iter()
        .flat_map(bpf_prog_ids)
        .collect();
    trace.signal(libc::SIGINT);
    let code = trace.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 0, "stderr:\n{}", trace.stderr());
    let lines = trace.json();
    // Nothing traced twice: each connection event once.
    let mut once = BTreeMap::new();
    for v in lines.iter().filter(|v| v["end"].is_string()) {
        let key = (
            v["type"].to_string(),
            v["end"].to_string(),
            v["src"].to_string(),
            v["time"].to_string(),
        );
        *once.entry(key).or_insert(0) += 1;
    }
    let twice: Vec<_> = once.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "traced twice: {twice:?}");
    // One summary row for the Service flow, with old and new backends.
    let summary = of_type(&lines, "session_summary")[0];
    let rows: Vec<&Value> = summary["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["src_name"] == "default/curl-demo")
        .collect();
    assert_eq!(rows.len(), 1, "{summary}");
    let backends: BTreeSet<String> = rows[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str().map(str::to_owned))
        .collect();
    let all: BTreeSet<String> = old_names.union(&new_names).cloned().collect();
    assert_eq!(backends, all, "{}", rows[0]);
    assert_nothing_left(&sb, &runner_progs);
    rt.block_on(sb.shutdown());
}

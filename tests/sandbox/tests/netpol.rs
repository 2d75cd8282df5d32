// SPDX-License-Identifier: Apache-2.0
//! NetworkPolicy enforcement against upstream's truth tables
//! (`tests/cases/networkpolicy.yaml`), with real TCP and UDP between
//! sandbox pods on a routed node and a bridged node: policies go in
//! through the API, every ordered pair of the case's pods is probed, and
//! what gets through must be what upstream says — soon after the change
//! (see [`CONVERGE`]).

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};
use podtrace_cases::{PodRef, CONTAINER_PORTS};
use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig, ShapeChoice};
use serde_json::json;

/// A connection or datagram that takes longer than this is taken as dropped.
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);
/// How soon after an API change enforcement must match it: a bound for
/// correctness, not a speed target. The aim is well within a second, and
/// the test prints the slowest change it measured; timing is not asserted
/// (a 2-core machine shared with builds saw changes take over 2 s).
const CONVERGE: Duration = Duration::from_secs(10);
/// Bound on the servers' lifetime.
const SERVE_FOR: Duration = Duration::from_secs(600);

/// Runs `f` on a thread that has joined `netns`: sockets made there stay in it.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a valid namespace fd changes only this thread's
        // network namespace; the thread ends after `f`.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// TCP and UDP servers on every model port of a pod, until `stop`.
fn serve(netns: &str, stop: Arc<AtomicBool>) {
    let (tcp, udp) = in_netns(netns, || {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (_, port, proto) in CONTAINER_PORTS {
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            match proto {
                "TCP" => tcp.push(TcpListener::bind(addr).unwrap()),
                _ => udp.push(UdpSocket::bind(addr).unwrap()),
            }
        }
        (tcp, udp)
    });
    let until = Instant::now() + SERVE_FOR;
    for l in tcp {
        let stop = stop.clone();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                match l.accept() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => return,
                }
            }
        });
    }
    for s in udp {
        let stop = stop.clone();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        });
    }
}

/// Whether a new connection (TCP) or an echoed datagram (UDP) gets through.
fn reaches(netns: &str, dst: Ipv4Addr, port: u16, protocol: &str) -> bool {
    let protocol = protocol.to_owned();
    in_netns(netns, move || {
        let addr = SocketAddr::from((dst, port));
        if protocol == "TCP" {
            return TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok();
        }
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        s.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
        s.send_to(b"probe", addr).unwrap();
        let mut buf = [0u8; 16];
        s.recv_from(&mut buf)
            .is_ok_and(|(n, _)| &buf[..n] == b"probe")
    })
}

fn model_pod(pod: &PodRef, node: &str) -> PodManifest {
    let mut m = PodManifest::new(&pod.namespace, &pod.name, "busybox", &["sleep", "infinity"])
        .on_node(node);
    m.value["metadata"]["labels"] = json!(pod.labels());
    m.value["spec"]["containers"][0]["ports"] = json!(CONTAINER_PORTS
        .iter()
        .map(|(name, port, proto)| json!({"name": name, "containerPort": port, "protocol": proto}))
        .collect::<Vec<_>>());
    m
}

fn policy_key(p: &NetworkPolicy) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// Makes the policies in the cluster exactly `want`.
async fn set_policies(
    client: &kube::Client,
    current: &mut BTreeMap<(String, String), NetworkPolicy>,
    want: &[NetworkPolicy],
) {
    let want: BTreeMap<_, _> = want.iter().map(|p| (policy_key(p), p.clone())).collect();
    for (ns, name) in current.keys().filter(|k| !want.contains_key(*k)) {
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for ((ns, name), p) in &want {
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        match current.get(&(ns.clone(), name.clone())) {
            Some(old) if old.spec == p.spec => {}
            Some(_) => {
                api.replace(name, &PostParams::default(), p).await.unwrap();
            }
            None => {
                api.create(&PostParams::default(), p).await.unwrap();
            }
        }
    }
    *current = want;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_matches_upstream_truth_tables() {
    let all = podtrace_cases::all_pods();
    let mut config = SandboxConfig::bare();
    config.shape = ShapeChoice::Mixed; // node-1 routed, node-2 bridged
    config.namespaces = ["x", "y", "z"]
        .iter()
        .map(|n| (n.to_string(), Vec::new()))
        .collect();
    // Alternate nodes so that both same-node and cross-node pairs occur.
    config.pods = all
        .iter()
        .enumerate()
        .map(|(i, p)| {
            model_pod(
                p,
                if i.is_multiple_of(2) {
                    "node-1"
                } else {
                    "node-2"
                },
            )
        })
        .collect();
    let sandbox = Sandbox::start(config).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut netns = BTreeMap::new();
    let mut ips = BTreeMap::new();
    for p in &all {
        let ns = sandbox.netns_of(&p.namespace, &p.name).unwrap();
        serve(&ns, stop.clone());
        netns.insert(p.clone(), ns);
        ips.insert(
            p.clone(),
            sandbox.pod_ip(&p.namespace, &p.name).await.unwrap(),
        );
    }
    let client = common::client(&sandbox, None).await;
    let cases = podtrace_cases::cases(|p| ips[p].to_string()).unwrap();
    let mut failures = Vec::new();
    let mut probed = 0;
    // The longest an API change took to be enforced (an upper bound).
    let mut slowest = Duration::ZERO;
    for case in &cases {
        let mut current = BTreeMap::new();
        let mut labelled_pods: BTreeMap<PodRef, Vec<String>> = BTreeMap::new();
        let mut labelled_ns = Vec::new();
        for (i, step) in case.steps.iter().enumerate() {
            if let Some(policies) = &step.policies {
                set_policies(&client, &mut current, policies).await;
            }
            for (pod, labels) in &step.pod_labels {
                let l: Vec<_> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                    .collect();
                sandbox
                    .set_pod_labels(&pod.namespace, &pod.name, &l)
                    .unwrap();
                labelled_pods
                    .entry(pod.clone())
                    .or_default()
                    .extend(labels.keys().cloned());
            }
            for (ns, labels) in &step.namespace_labels {
                let l: Vec<_> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                    .collect();
                sandbox.set_namespace_labels(ns, &l);
                labelled_ns.extend(labels.keys().map(|k| (ns.clone(), k.clone())));
            }
            let changed = Instant::now();
            for probe in &step.probes {
                let mut pending: Vec<(PodRef, PodRef, bool)> = case
                    .pods
                    .iter()
                    .flat_map(|f| {
                        case.pods
                            .iter()
                            .filter(move |t| *t != f)
                            .map(move |t| (f.clone(), t.clone()))
                    })
                    .map(|(f, t)| {
                        let want = probe.expected(&f, &t);
                        (f, t, want)
                    })
                    .collect();
                probed += pending.len();
                // Re-probe what disagrees until the change has had its second.
                for round in 0.. {
                    let round_start = changed.elapsed();
                    let results: Vec<_> = pending
                        .iter()
                        .map(|(f, t, want)| {
                            let (ns, ip, port, proto) =
                                (netns[f].clone(), ips[t], probe.port, probe.protocol.clone());
                            let (f, t, want) = (f.clone(), t.clone(), *want);
                            std::thread::spawn(move || (f, t, want, reaches(&ns, ip, port, &proto)))
                        })
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|h| h.join().unwrap())
                        .collect();
                    pending = results
                        .into_iter()
                        .filter(|(_, _, want, got)| want != got)
                        .map(|(f, t, want, _)| (f, t, want))
                        .collect();
                    if pending.is_empty() {
                        // Every probe of this round started after the change was
                        // in force (a first round that agrees says nothing new).
                        if round > 0 {
                            slowest = slowest.max(round_start);
                        }
                    }
                    if pending.is_empty() || changed.elapsed() > CONVERGE || round > 10_000 {
                        break;
                    }
                }
                failures.extend(pending.iter().map(|(f, t, want)| {
                    format!(
                        "{} step {i}: {f} -> {t} {}/{}: upstream says {}, the sandbox {}",
                        case.name,
                        probe.protocol,
                        probe.port,
                        if *want { "allowed" } else { "denied" },
                        if *want {
                            "dropped it"
                        } else {
                            "let it through"
                        },
                    )
                }));
            }
        }
        set_policies(&client, &mut current, &[]).await;
        for (pod, keys) in &labelled_pods {
            let base = pod.labels();
            let mut l: Vec<(&str, Option<&str>)> =
                keys.iter().map(|k| (k.as_str(), None)).collect();
            l.extend(base.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))));
            sandbox
                .set_pod_labels(&pod.namespace, &pod.name, &l)
                .unwrap();
        }
        for (ns, k) in &labelled_ns {
            sandbox.set_namespace_labels(ns, &[(k.as_str(), None)]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let nodes: Vec<String> = sandbox
        .node_names()
        .iter()
        .map(|n| format!("{}{n}", sandbox.netns_prefix()))
        .collect();
    sandbox.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} of {probed} probes disagree with upstream:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(probed > 300, "{probed}");
    eprintln!("{probed} probes; every change enforced within {slowest:?}");
    // The rules lived in the nodes' namespaces, which are gone.
    for n in nodes {
        assert!(
            !std::path::Path::new("/run/netns").join(&n).exists(),
            "{n} left behind"
        );
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The evaluator against the upstream truth tables (`tests/cases`), then
//! the verdict details (selecting policies, near misses) the tables do not
//! cover.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use podtrace_cases::{PodRef, CONTAINER_PORTS, NAMESPACES, POD_NAMES};

use super::*;

/// The model's pod IPs: 10.<namespace 1..3>.0.<pod 1..3>.
fn model_ip(pod: &PodRef) -> IpAddr {
    let n = |list: &[&str], x: &str| list.iter().position(|v| *v == x).unwrap() as u8 + 1;
    IpAddr::V4(Ipv4Addr::new(
        10,
        n(&NAMESPACES, &pod.namespace),
        0,
        n(&POD_NAMES, &pod.name),
    ))
}

struct World {
    pod_labels: BTreeMap<PodRef, Labels>,
    ns_labels: BTreeMap<String, Labels>,
}

impl World {
    fn end(&self, pod: &PodRef) -> End {
        End {
            ip: model_ip(pod),
            pod: Some(PodEnd {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                labels: self
                    .pod_labels
                    .get(pod)
                    .cloned()
                    .unwrap_or_else(|| pod.labels()),
                namespace_labels: self
                    .ns_labels
                    .get(&pod.namespace)
                    .cloned()
                    .unwrap_or_default(),
                ports: CONTAINER_PORTS
                    .iter()
                    .map(|(name, port, protocol)| ContainerPort {
                        name: (*name).to_owned(),
                        port: *port,
                        protocol: (*protocol).to_owned(),
                    })
                    .collect(),
            }),
        }
    }
}

fn allowed(decisions: &[Decision]) -> bool {
    decisions.iter().all(|d| d.verdict != Verdict::Denied)
}

#[test]
fn upstream_truth_tables() {
    let cases = podtrace_cases::cases(|p| model_ip(p).to_string()).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for case in &cases {
        let mut policies: Vec<NetworkPolicy> = Vec::new();
        let mut world = World {
            pod_labels: BTreeMap::new(),
            ns_labels: BTreeMap::new(),
        };
        for (i, step) in case.steps.iter().enumerate() {
            if let Some(p) = &step.policies {
                policies = p.clone();
            }
            for (pod, labels) in &step.pod_labels {
                let l = world
                    .pod_labels
                    .entry(pod.clone())
                    .or_insert_with(|| pod.labels());
                l.extend(labels.clone());
            }
            for (ns, labels) in &step.namespace_labels {
                world
                    .ns_labels
                    .entry(ns.clone())
                    .or_default()
                    .extend(labels.clone());
            }
            for probe in &step.probes {
                for from in &case.pods {
                    for to in case.pods.iter().filter(|t| *t != from) {
                        let flow = Flow {
                            src: world.end(from),
                            dst: world.end(to),
                            port: probe.port,
                            protocol: probe.protocol.clone(),
                        };
                        let got = allowed(&evaluate(&policies, &flow));
                        checked += 1;
                        if got != probe.expected(from, to) {
                            wrong.push(format!(
                                "{} step {i}: {from} -> {to} {}/{}: expected {}, got {}",
                                case.name,
                                probe.protocol,
                                probe.port,
                                probe.expected(from, to),
                                got
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked}:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 300, "{checked}");
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name}, "spec": spec,
    }))
    .unwrap()
}

fn pod(ns: &str, name: &str, labels: &[(&str, &str)], last_octet: u8) -> End {
    End {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        pod: Some(PodEnd {
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namespace_labels: Labels::new(),
            ports: vec![ContainerPort {
                name: "http".into(),
                port: 80,
                protocol: "TCP".into(),
            }],
        }),
    }
}

fn curl_to_nginx(port: u16, protocol: &str) -> Flow {
    Flow {
        src: pod("default", "curl-demo", &[("app", "curl-demo")], 2),
        dst: pod("default", "nginx-demo", &[("app", "nginx-demo")], 3),
        port,
        protocol: protocol.into(),
    }
}

fn deny_ingress() -> NetworkPolicy {
    policy(
        "default",
        "default-deny-ingress",
        serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )
}

#[test]
fn no_policy_in_either_direction() {
    let d = evaluate(&[], &curl_to_nginx(80, "TCP"));
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].direction, Direction::Egress);
    assert_eq!(d[1].direction, Direction::Ingress);
    assert!(d
        .iter()
        .all(|d| d.verdict == Verdict::NoPolicy && d.policies.is_empty()));
}

#[test]
fn denied_names_every_selecting_policy_and_the_pod_label_near_miss() {
    let allow = policy(
        "default",
        "allow-from-client",
        serde_json::json!({"podSelector": {"matchLabels": {"app": "nginx-demo"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                         "ports": [{"port": 80}]}]}),
    );
    let d = evaluate(&[deny_ingress(), allow], &curl_to_nginx(80, "TCP"));
    assert_eq!(d[0].verdict, Verdict::NoPolicy);
    let ingress = &d[1];
    assert_eq!(ingress.verdict, Verdict::Denied);
    assert_eq!(
        ingress.policies,
        ["default/allow-from-client", "default/default-deny-ingress"]
    );
    let miss = ingress.near_miss.as_ref().unwrap();
    assert_eq!(miss.policy, "default/allow-from-client");
    assert_eq!(miss.index, 0);
    assert_eq!(miss.miss, Miss::PodLabels);
    assert_eq!(
        miss.detail,
        "wants pods role=client; the source default/curl-demo has app=curl-demo"
    );
}

#[test]
fn right_peer_wrong_port_is_a_port_near_miss_with_named_ports_resolved() {
    let allow = policy(
        "default",
        "allow-http",
        serde_json::json!({"podSelector": {},
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}, {"port": 8000, "endPort": 8080}]}]}),
    );
    let d = evaluate(std::slice::from_ref(&allow), &curl_to_nginx(443, "TCP"));
    let miss = d[1].near_miss.as_ref().unwrap();
    assert_eq!(miss.miss, Miss::Port);
    assert_eq!(
        miss.detail,
        "the peer matches but the rule allows only TCP/http (80), TCP/8000-8080; this flow is TCP/443"
    );
    // The named port resolves against the destination: port 80 is allowed.
    let d = evaluate(&[allow], &curl_to_nginx(80, "TCP"));
    assert_eq!(d[1].verdict, Verdict::Allowed);
    assert_eq!(d[1].allowed_by, ["default/allow-http"]);
    assert!(d[1].near_miss.is_none());
}

#[test]
fn right_port_wrong_namespace_label_is_a_namespace_near_miss() {
    let allow = policy(
        "default",
        "allow-from-frontend-ns",
        serde_json::json!({"podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "frontend"}},
                                   "podSelector": {"matchLabels": {"app": "curl-demo"}}}]}]}),
    );
    let d = evaluate(&[allow], &curl_to_nginx(80, "TCP"));
    let miss = d[1].near_miss.as_ref().unwrap();
    assert_eq!(miss.miss, Miss::Namespace);
    assert_eq!(
        miss.detail,
        "wants namespaces team=frontend; the source default/curl-demo is in default \
         (kubernetes.io/metadata.name=default)"
    );
}

#[test]
fn two_misses_are_no_near_miss() {
    let allow = policy(
        "default",
        "allow-other",
        serde_json::json!({"podSelector": {},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                         "ports": [{"port": 8080}]}]}),
    );
    let d = evaluate(&[allow], &curl_to_nginx(80, "TCP"));
    assert_eq!(d[1].verdict, Verdict::Denied);
    assert!(d[1].near_miss.is_none());
}

#[test]
fn egress_deny_of_dns_is_explained_as_egress() {
    let deny = policy(
        "default",
        "deny-egress",
        serde_json::json!({"podSelector": {"matchLabels": {"app": "curl-demo"}}, "policyTypes": ["Egress"]}),
    );
    let mut flow = curl_to_nginx(53, "UDP");
    flow.dst = pod("kube-system", "coredns", &[("k8s-app", "kube-dns")], 10);
    let d = evaluate(&[deny], &flow);
    assert_eq!(d[0].direction, Direction::Egress);
    assert_eq!(d[0].verdict, Verdict::Denied);
    assert_eq!(d[0].policies, ["default/deny-egress"]);
    assert_eq!(d[1].verdict, Verdict::NoPolicy);
}

#[test]
fn ip_block_misses_say_which_address_and_why() {
    let allow = policy(
        "default",
        "allow-cidr",
        serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/30"]}}]}]}),
    );
    let d = evaluate(&[allow], &curl_to_nginx(80, "TCP"));
    let miss = d[0].near_miss.as_ref().unwrap();
    assert_eq!(miss.miss, Miss::IpBlock);
    assert_eq!(
        miss.detail,
        "ipBlock 10.0.0.0/24 excepts 10.0.0.0/30, which holds the destination 10.0.0.3"
    );
}

#[test]
fn an_address_outside_every_pod_is_never_selected_by_pod_or_namespace_selectors() {
    let allow = policy(
        "default",
        "allow-all-namespaces",
        serde_json::json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    let mut flow = curl_to_nginx(80, "TCP");
    flow.src = End {
        ip: "192.0.2.7".parse().unwrap(),
        pod: None,
    };
    let d = evaluate(&[allow], &flow);
    // No egress decision for a source that is not a pod.
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].direction, Direction::Ingress);
    assert_eq!(d[0].verdict, Verdict::Denied);
}

#[test]
fn unknown_selector_operators_match_nothing() {
    let allow = policy(
        "default",
        "odd",
        serde_json::json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]},
            "policyTypes": ["Ingress"]}),
    );
    let d = evaluate(&[allow], &curl_to_nginx(80, "TCP"));
    assert_eq!(d[1].verdict, Verdict::NoPolicy);
}

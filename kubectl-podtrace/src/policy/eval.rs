// SPDX-License-Identifier: Apache-2.0
//! The evaluation itself: selection, rules, peers, ports, near misses.

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::select::{describe, describe_labels, matches};
use super::{
    ContainerPort, Decision, Direction, End, Flow, Labels, Miss, NearMiss, PodEnd, Verdict,
    NAMESPACE_NAME_LABEL,
};

/// The decisions for a flow: egress at the source when it is a pod, then
/// ingress at the destination when it is a pod.
pub(crate) fn evaluate(policies: &[NetworkPolicy], flow: &Flow) -> Vec<Decision> {
    [Direction::Egress, Direction::Ingress]
        .into_iter()
        .filter_map(|d| decide(policies, flow, d))
        .collect()
}

fn decide(policies: &[NetworkPolicy], flow: &Flow, direction: Direction) -> Option<Decision> {
    let (target, peer) = match direction {
        Direction::Egress => (flow.src.pod.as_ref()?, &flow.dst),
        Direction::Ingress => (flow.dst.pod.as_ref()?, &flow.src),
    };
    let mut selecting: Vec<(String, &NetworkPolicy)> = policies
        .iter()
        .filter(|p| selects(p, target, direction))
        .map(|p| (id(p), p))
        .collect();
    selecting.sort_by(|a, b| a.0.cmp(&b.0));
    let mut decision = Decision {
        direction,
        verdict: Verdict::NoPolicy,
        policies: selecting.iter().map(|(n, _)| n.clone()).collect(),
        allowed_by: Vec::new(),
        near_miss: None,
    };
    if selecting.is_empty() {
        return Some(decision);
    }
    // Named ports are the destination pod's, whichever side the policy is on.
    let named = flow
        .dst
        .pod
        .as_ref()
        .map(|p| p.ports.as_slice())
        .unwrap_or(&[]);
    for (name, policy) in &selecting {
        let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
        for (index, (peers, ports)) in rules(spec(policy), direction).into_iter().enumerate() {
            let peer_result = check_peers(peers, ns, peer, direction);
            let port_ok = ports.is_empty()
                || ports
                    .iter()
                    .any(|p| port_matches(p, &flow.protocol, flow.port, named));
            let miss = match (peer_result, port_ok) {
                (PeerResult::Match, true) => {
                    if !decision.allowed_by.contains(name) {
                        decision.allowed_by.push(name.clone());
                    }
                    continue;
                }
                (PeerResult::Match, false) => Some((
                    Miss::Port,
                    format!(
                        "the peer matches but the rule allows only {}; this flow is {}/{}",
                        ports
                            .iter()
                            .map(|p| describe_port(p, named))
                            .collect::<Vec<_>>()
                            .join(", "),
                        flow.protocol,
                        flow.port
                    ),
                )),
                (PeerResult::OneMiss(miss, detail), true) => Some((miss, detail)),
                _ => None,
            };
            if let (None, Some((miss, detail))) = (&decision.near_miss, miss) {
                decision.near_miss = Some(NearMiss {
                    policy: name.clone(),
                    index,
                    miss,
                    detail,
                });
            }
        }
    }
    if decision.allowed_by.is_empty() {
        decision.verdict = Verdict::Denied;
    } else {
        decision.verdict = Verdict::Allowed;
        decision.near_miss = None;
    }
    Some(decision)
}

fn id(p: &NetworkPolicy) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

fn spec(p: &NetworkPolicy) -> &NetworkPolicySpec {
    static EMPTY: std::sync::OnceLock<NetworkPolicySpec> = std::sync::OnceLock::new();
    p.spec
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(NetworkPolicySpec::default))
}

/// Whether `p` isolates `pod` for `direction`: same namespace, its
/// `podSelector` matches (empty or absent: every pod), and its effective
/// `policyTypes` name the direction.
fn selects(p: &NetworkPolicy, pod: &PodEnd, direction: Direction) -> bool {
    let spec = spec(p);
    p.metadata.namespace.as_deref() == Some(pod.namespace.as_str())
        && matches(
            spec.pod_selector
                .as_ref()
                .unwrap_or(&LabelSelector::default()),
            &pod.labels,
        )
        && policy_types(spec).contains(&direction)
}

/// `policyTypes` as the API server defaults them when absent or empty:
/// `Ingress` always, `Egress` only if the policy has egress rules.
pub(crate) fn policy_types(spec: &NetworkPolicySpec) -> Vec<Direction> {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types
            .iter()
            .filter_map(|t| match t.as_str() {
                "Ingress" => Some(Direction::Ingress),
                "Egress" => Some(Direction::Egress),
                _ => None,
            })
            .collect(),
        _ => {
            let mut v = vec![Direction::Ingress];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                v.push(Direction::Egress);
            }
            v
        }
    }
}

/// The rules for a direction, each as (peers, ports).
fn rules(
    spec: &NetworkPolicySpec,
    direction: Direction,
) -> Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> {
    match direction {
        Direction::Ingress => spec
            .ingress
            .iter()
            .flatten()
            .map(|r| {
                (
                    r.from.as_deref().unwrap_or_default(),
                    r.ports.as_deref().unwrap_or_default(),
                )
            })
            .collect(),
        Direction::Egress => spec
            .egress
            .iter()
            .flatten()
            .map(|r| {
                (
                    r.to.as_deref().unwrap_or_default(),
                    r.ports.as_deref().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

enum PeerResult {
    Match,
    /// No peer matched; the first one that missed on exactly one thing.
    OneMiss(Miss, String),
    NoMatch,
}

/// A rule's peers (OR); none listed means every peer.
fn check_peers(
    peers: &[NetworkPolicyPeer],
    policy_ns: &str,
    other: &End,
    direction: Direction,
) -> PeerResult {
    if peers.is_empty() {
        return PeerResult::Match;
    }
    let mut first_miss = None;
    for peer in peers {
        match check_peer(peer, policy_ns, other, direction) {
            PeerResult::Match => return PeerResult::Match,
            PeerResult::OneMiss(m, d) if first_miss.is_none() => first_miss = Some((m, d)),
            _ => {}
        }
    }
    match first_miss {
        Some((m, d)) => PeerResult::OneMiss(m, d),
        None => PeerResult::NoMatch,
    }
}

/// One peer: `ipBlock` alone, or `namespaceSelector` AND `podSelector`
/// (a missing `namespaceSelector` means the policy's own namespace).
fn check_peer(
    peer: &NetworkPolicyPeer,
    policy_ns: &str,
    other: &End,
    direction: Direction,
) -> PeerResult {
    let side = match direction {
        Direction::Ingress => "source",
        Direction::Egress => "destination",
    };
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            // The API server rejects this combination.
            return PeerResult::NoMatch;
        }
        let Ok(cidr) = block.cidr.parse::<IpNet>() else {
            return PeerResult::NoMatch;
        };
        let excepted = block
            .except
            .iter()
            .flatten()
            .filter_map(|e| e.parse::<IpNet>().ok())
            .find(|e| e.contains(&other.ip));
        return match (cidr.contains(&other.ip), excepted) {
            (true, None) => PeerResult::Match,
            (true, Some(e)) => PeerResult::OneMiss(
                Miss::IpBlock,
                format!(
                    "ipBlock {cidr} excepts {e}, which holds the {side} {}",
                    other.ip
                ),
            ),
            (false, _) => PeerResult::OneMiss(
                Miss::IpBlock,
                format!("ipBlock {cidr} does not hold the {side} {}", other.ip),
            ),
        };
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        // The API server rejects an empty peer.
        return PeerResult::NoMatch;
    }
    let Some(pod) = &other.pod else {
        // Selectors pick pods; an address outside every pod is not one.
        return PeerResult::NoMatch;
    };
    let ns_labels = namespace_labels(pod);
    let ns_ok = match &peer.namespace_selector {
        Some(sel) => matches(sel, &ns_labels),
        None => pod.namespace == policy_ns,
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|sel| matches(sel, &pod.labels));
    let who = format!("{}/{}", pod.namespace, pod.name);
    match (ns_ok, pod_ok) {
        (true, true) => PeerResult::Match,
        (false, true) => PeerResult::OneMiss(
            Miss::Namespace,
            match &peer.namespace_selector {
                Some(sel) => format!(
                    "wants namespaces {}; the {side} {who} is in {} ({})",
                    describe(sel),
                    pod.namespace,
                    describe_labels(&ns_labels)
                ),
                None => format!(
                    "wants pods in {policy_ns} only; the {side} {who} is in {}",
                    pod.namespace
                ),
            },
        ),
        (true, false) => PeerResult::OneMiss(
            Miss::PodLabels,
            format!(
                "wants pods {}; the {side} {who} has {}",
                peer.pod_selector.as_ref().map(describe).unwrap_or_default(),
                describe_labels(&pod.labels)
            ),
        ),
        (false, false) => PeerResult::NoMatch,
    }
}

/// The namespace's labels, with the name label a real server always sets.
fn namespace_labels(pod: &PodEnd) -> Labels {
    let mut labels = pod.namespace_labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| pod.namespace.clone());
    labels
}

fn port_protocol(p: &NetworkPolicyPort) -> &str {
    p.protocol.as_deref().unwrap_or("TCP")
}

/// One `ports` entry against the flow: protocol (default TCP), then no port
/// (every port), a number (up to `endPort` when set), or a name looked up in
/// the destination pod's container ports.
fn port_matches(p: &NetworkPolicyPort, protocol: &str, port: u16, named: &[ContainerPort]) -> bool {
    let proto = port_protocol(p);
    if proto != protocol {
        return false;
    }
    match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => match p.end_port {
            Some(end) => (*n..=end).contains(&i32::from(port)),
            None => *n == i32::from(port),
        },
        Some(IntOrString::String(name)) => named
            .iter()
            .any(|c| &c.name == name && c.protocol == proto && c.port == port),
    }
}

fn describe_port(p: &NetworkPolicyPort, named: &[ContainerPort]) -> String {
    let proto = port_protocol(p);
    match &p.port {
        None => format!("{proto} (any port)"),
        Some(IntOrString::Int(n)) => match p.end_port {
            Some(end) => format!("{proto}/{n}-{end}"),
            None => format!("{proto}/{n}"),
        },
        Some(IntOrString::String(name)) => {
            match named
                .iter()
                .find(|c| &c.name == name && c.protocol == proto)
            {
                Some(c) => format!("{proto}/{name} ({})", c.port),
                None => format!("{proto}/{name} (no such port on the destination)"),
            }
        }
    }
}

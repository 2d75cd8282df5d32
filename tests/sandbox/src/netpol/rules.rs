// SPDX-License-Identifier: Apache-2.0
//! One node's NetworkPolicy ruleset, as an iptables/nftables CNI (Calico's
//! model) builds it: in the node's forward path, a chain per local pod and
//! direction that the pod's policies isolate; a rule per allowed (peer,
//! port) pair; `drop` at the end. Replies of allowed connections pass by
//! conntrack before any pod chain.

use std::borrow::Cow;

use crate::nodenft::{field, s};

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Prefix, Range, SetItem, CT};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::model::{applies, selector_matches, PodInfo, Snapshot, Way};

/// The table every node's rules live in (replaced whole on every change).
pub(crate) const TABLE: &str = "sandbox-netpol";

type Stmts = Vec<Statement<'static>>;

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn prefix(net: IpNet) -> Expression<'static> {
    let net = net.trunc();
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(s(net.network().to_string()))),
        len: u32::from(net.prefix_len()),
    }))
}

/// `ip saddr` for ingress (the peer sends), `ip daddr` for egress.
fn peer_addr(way: Way) -> Expression<'static> {
    field(
        "ip",
        match way {
            Way::Ingress => "saddr",
            Way::Egress => "daddr",
        },
    )
}

/// The alternatives one peer list stands for; none listed: anyone (one
/// empty alternative). A peer that selects nothing adds none.
fn peer_alternatives(
    snap: &Snapshot,
    ns: &str,
    peers: &[NetworkPolicyPeer],
    way: Way,
) -> Vec<Stmts> {
    if peers.is_empty() {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for peer in peers {
        if let Some(block) = &peer.ip_block {
            // The sandbox's pods are IPv4: an IPv6 block can match none.
            let Ok(IpNet::V4(cidr)) = block.cidr.parse::<IpNet>() else {
                continue;
            };
            let mut stmts = vec![is(peer_addr(way), prefix(IpNet::V4(cidr)))];
            let excepts: Vec<SetItem<'static>> = block
                .except
                .iter()
                .flatten()
                .filter_map(|e| e.parse::<IpNet>().ok())
                .filter(|e| matches!(e, IpNet::V4(_)))
                .map(|e| SetItem::Element(prefix(e)))
                .collect();
            if !excepts.is_empty() {
                stmts.push(Statement::Match(Match {
                    left: peer_addr(way),
                    right: Expression::Named(NamedExpression::Set(excepts)),
                    op: Operator::NEQ,
                }));
            }
            out.push(stmts);
            continue;
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            continue; // rejected by validation; never widens
        }
        let ips: Vec<SetItem<'static>> = snap
            .select_pods(
                ns,
                peer.namespace_selector.as_ref(),
                peer.pod_selector.as_ref(),
            )
            .map(|p| SetItem::Element(Expression::String(s(p.ip.to_string()))))
            .collect();
        if !ips.is_empty() {
            out.push(vec![is(
                peer_addr(way),
                Expression::Named(NamedExpression::Set(ips)),
            )]);
        }
    }
    out
}

fn l4(protocol: &str) -> Statement<'static> {
    is(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Expression::String(s(protocol.to_ascii_lowercase())),
    )
}

fn dport(port: Expression<'static>) -> Statement<'static> {
    is(field("th", "dport"), port)
}

/// The alternatives a port list stands for. Named ports are the
/// destination's: the isolated pod's own for ingress; for egress each
/// possible destination pod's, so each alternative names that pod too.
fn port_alternatives(
    snap: &Snapshot,
    target: &PodInfo,
    ports: &[NetworkPolicyPort],
    way: Way,
) -> Vec<Stmts> {
    if ports.is_empty() {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in ports {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        match &p.port {
            None => out.push(vec![l4(proto)]),
            Some(IntOrString::Int(n)) => {
                let port = match p.end_port {
                    Some(end) => Expression::Range(Box::new(Range {
                        range: [
                            Expression::Number(*n as u32),
                            Expression::Number(end as u32),
                        ],
                    })),
                    None => Expression::Number(*n as u32),
                };
                out.push(vec![l4(proto), dport(port)]);
            }
            Some(IntOrString::String(name)) => {
                let owners: Vec<&PodInfo> = match way {
                    Way::Ingress => vec![target],
                    Way::Egress => snap.pods.iter().collect(),
                };
                for owner in owners {
                    for (_, number, _) in owner
                        .ports
                        .iter()
                        .filter(|(n, _, pr)| n == name && pr == proto)
                    {
                        let mut alt = Vec::new();
                        if way == Way::Egress {
                            alt.push(is(
                                field("ip", "daddr"),
                                Expression::String(s(owner.ip.to_string())),
                            ));
                        }
                        alt.extend([l4(proto), dport(Expression::Number(u32::from(*number)))]);
                        out.push(alt);
                    }
                }
            }
        }
    }
    out
}

fn policy_id(p: &NetworkPolicy) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Rules (statements + verdict + comment) of one pod's chain for `way`, or
/// `None` when no policy isolates the pod that way.
fn pod_chain(snap: &Snapshot, pod: &PodInfo, way: Way) -> Option<Vec<(Stmts, String)>> {
    let selecting: Vec<&NetworkPolicy> = snap
        .policies
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(pod.namespace.as_str()))
        .filter(|p| {
            let spec = p.spec.as_ref();
            spec.is_some_and(|s| {
                applies(s, way)
                    && s.pod_selector
                        .as_ref()
                        .is_none_or(|sel| selector_matches(sel, &pod.labels))
            })
        })
        .collect();
    if selecting.is_empty() {
        return None;
    }
    let allow = match way {
        Way::Ingress => Statement::Accept(None),
        // Back to the forward chain: the destination's ingress decides next.
        Way::Egress => Statement::Return(None),
    };
    let mut rules = Vec::new();
    for policy in selecting {
        let Some(spec) = &policy.spec else { continue };
        let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
        let list: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> = match way {
            Way::Ingress => spec
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
            Way::Egress => spec
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
        };
        for (i, (peers, ports)) in list.into_iter().enumerate() {
            let comment = format!(
                "{} {}[{i}]",
                policy_id(policy),
                if way == Way::Ingress {
                    "ingress"
                } else {
                    "egress"
                }
            );
            let port_alts = port_alternatives(snap, pod, ports, way);
            for peer in peer_alternatives(snap, ns, peers, way) {
                for port in &port_alts {
                    let mut stmts = peer.clone();
                    stmts.extend(port.iter().cloned());
                    stmts.push(allow.clone());
                    rules.push((stmts, comment.clone()));
                }
            }
        }
    }
    rules.push((
        vec![Statement::Drop(None)],
        format!("{}/{}: no policy allows this", pod.namespace, pod.name),
    ));
    Some(rules)
}

fn chain(name: &str) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: s(TABLE),
        name: s(name),
        ..Chain::default()
    }
}

fn rule(chain: &str, expr: Stmts, comment: Option<String>) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: s(TABLE),
        chain: s(chain),
        expr: Cow::Owned(expr),
        comment: comment.map(s),
        ..Rule::default()
    })
}

/// The whole ruleset for `node`, replacing whatever was there in one
/// transaction; with nothing to enforce it only removes the table.
pub(crate) fn node_ruleset(snap: &Snapshot, node: &str) -> Nftables<'static> {
    let table = || {
        NfListObject::Table(Table {
            family: NfFamily::INet,
            name: s(TABLE),
            ..Table::default()
        })
    };
    let mut batch = Batch::new();
    // `add` then `delete`: removes the table whether or not it existed.
    batch.add(table());
    batch.delete(table());
    let mut egress = Vec::new();
    let mut ingress = Vec::new();
    for pod in snap.pods.iter().filter(|p| p.node == node) {
        for (way, list) in [(Way::Egress, &mut egress), (Way::Ingress, &mut ingress)] {
            if let Some(rules) = pod_chain(snap, pod, way) {
                let prefix = if way == Way::Ingress {
                    "ingress"
                } else {
                    "egress"
                };
                list.push((
                    pod,
                    format!("{prefix}-{}-{}", pod.namespace, pod.name),
                    rules,
                ));
            }
        }
    }
    if egress.is_empty() && ingress.is_empty() {
        return batch.to_nftables();
    }
    batch.add(table());
    batch.add(NfListObject::Chain(Chain {
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Forward),
        prio: Some(0),
        policy: Some(NfChainPolicy::Accept),
        ..chain("forward")
    }));
    let ct_state = Expression::Named(NamedExpression::CT(CT {
        key: s("state"),
        family: None,
        dir: None,
    }));
    batch.add(rule(
        "forward",
        vec![
            Statement::Match(Match {
                left: ct_state,
                right: Expression::List(vec![
                    Expression::String(s("established")),
                    Expression::String(s("related")),
                ]),
                op: Operator::IN,
            }),
            Statement::Accept(None),
        ],
        Some("replies to allowed connections".into()),
    ));
    // Every egress check before any ingress check: a packet between two
    // pods of this node passes its source's egress and then its
    // destination's ingress.
    for (way, list) in [(Way::Egress, &egress), (Way::Ingress, &ingress)] {
        for (pod, name, rules) in list {
            batch.add(NfListObject::Chain(chain(name)));
            let own = match way {
                Way::Egress => field("ip", "saddr"),
                Way::Ingress => field("ip", "daddr"),
            };
            batch.add(rule(
                "forward",
                vec![
                    is(own, Expression::String(s(pod.ip.to_string()))),
                    Statement::Jump(JumpTarget {
                        target: s(name.clone()),
                    }),
                ],
                None,
            ));
            for (stmts, comment) in rules {
                batch.add(rule(name, stmts.clone(), Some(comment.clone())));
            }
        }
    }
    batch.to_nftables()
}

// SPDX-License-Identifier: Apache-2.0
//! One node's `kube-proxy` table, chain by chain as kube-proxy's nftables
//! proxier writes it (see the module above for the whole picture).

use std::borrow::Cow;

use crate::nodenft::{field, s};

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    BinaryOperation, Expression, Meta, MetaKey, NamedExpression, NgMode, Numgen, Prefix, SetItem,
    CT,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Mangle, Match, NATFlag, Operator, Statement, VerdictMap, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{ServicePort, TABLE};

/// kube-proxy's default masquerade bit (`--masquerade-bit=14`).
const MASQ_MARK: u32 = 0x4000;
/// `dstnat` and `srcnat` priorities; filter chains run before DNAT.
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn cmp(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget { target: s(target) })
}

fn goto(target: &str) -> Statement<'static> {
    Statement::Goto(JumpTarget { target: s(target) })
}

/// `ip daddr . meta l4proto . th dport`
fn dispatch_key() -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        field("ip", "daddr"),
        meta(MetaKey::L4proto),
        field("th", "dport"),
    ]))
}

fn dispatch_item(sp: &ServicePort, verdict: Statement<'static>) -> SetItem<'static> {
    SetItem::MappingStatement(
        Expression::Named(NamedExpression::Concat(vec![
            Expression::String(s(sp.cluster_ip.to_string())),
            Expression::String(s(sp.protocol.clone())),
            Expression::Number(u32::from(sp.port)),
        ])),
        verdict,
    )
}

fn vmap(key: Expression<'static>, items: Vec<SetItem<'static>>) -> Statement<'static> {
    Statement::VerdictMap(VerdictMap {
        key,
        data: Expression::Named(NamedExpression::Set(items)),
    })
}

/// Chains first, then rules: a rule may only name a chain that exists.
struct Rules(Batch<'static>, Vec<NfListObject<'static>>);

impl Rules {
    fn chain(&mut self, name: &str, base: Option<(NfChainType, NfHook, i32)>) {
        let mut chain = Chain {
            family: NfFamily::IP,
            table: s(TABLE),
            name: s(name),
            ..Chain::default()
        };
        if let Some((ty, hook, prio)) = base {
            chain._type = Some(ty);
            chain.hook = Some(hook);
            chain.prio = Some(prio);
            chain.policy = Some(NfChainPolicy::Accept);
        }
        self.0.add(NfListObject::Chain(chain));
    }
    fn rule(&mut self, chain: &str, expr: Vec<Statement<'static>>, comment: Option<String>) {
        self.1.push(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: s(TABLE),
            chain: s(chain),
            expr: Cow::Owned(expr),
            comment: comment.map(s),
            ..Rule::default()
        }));
    }
    fn finish(mut self) -> Nftables<'static> {
        for rule in self.1 {
            self.0.add(rule);
        }
        self.0.to_nftables()
    }
}

/// The whole `kube-proxy` table for a node whose pods are in `pod_cidr`,
/// replacing what was there in one transaction; with no Service at all it
/// only removes the table.
pub(crate) fn node_ruleset(ports: &[ServicePort], pod_cidr: Ipv4Net) -> Nftables<'static> {
    let table = || {
        NfListObject::Table(Table {
            family: NfFamily::IP,
            name: s(TABLE),
            ..Table::default()
        })
    };
    let mut r = Rules(Batch::new(), Vec::new());
    // `add` then `delete`: removes the table whether or not it existed.
    r.0.add(table());
    r.0.delete(table());
    if ports.is_empty() {
        return r.finish();
    }
    r.0.add(table());
    for (name, ty, hook, prio) in [
        (
            "filter-input",
            NfChainType::Filter,
            NfHook::Input,
            DSTNAT - 10,
        ),
        (
            "filter-forward",
            NfChainType::Filter,
            NfHook::Forward,
            DSTNAT - 10,
        ),
        (
            "filter-output",
            NfChainType::Filter,
            NfHook::Output,
            DSTNAT - 10,
        ),
        (
            "nat-prerouting",
            NfChainType::NAT,
            NfHook::Prerouting,
            DSTNAT,
        ),
        ("nat-output", NfChainType::NAT, NfHook::Output, DSTNAT),
        (
            "nat-postrouting",
            NfChainType::NAT,
            NfHook::Postrouting,
            SRCNAT,
        ),
    ] {
        r.chain(name, Some((ty, hook, prio)));
    }
    for name in [
        "endpoints-check",
        "reject-chain",
        "services",
        "masquerading",
        "mark-for-masquerade",
    ] {
        r.chain(name, None);
    }
    let ct_new = || {
        cmp(
            Expression::Named(NamedExpression::CT(CT {
                key: s("state"),
                family: None,
                dir: None,
            })),
            Operator::IN,
            Expression::List(vec![Expression::String(s("new"))]),
        )
    };
    // The reject action is only valid in input, forward and output hooks.
    for chain in ["filter-input", "filter-forward", "filter-output"] {
        r.rule(chain, vec![ct_new(), jump("endpoints-check")], None);
    }
    r.rule("nat-prerouting", vec![jump("services")], None);
    r.rule("nat-output", vec![jump("services")], None);
    r.rule("nat-postrouting", vec![jump("masquerading")], None);
    let mark = || meta(MetaKey::Mark);
    r.rule(
        "mark-for-masquerade",
        vec![Statement::Mangle(Mangle {
            key: mark(),
            value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                mark(),
                Expression::Number(MASQ_MARK),
            ]))),
        })],
        None,
    );
    r.rule(
        "masquerading",
        vec![
            cmp(
                Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                    mark(),
                    Expression::Number(MASQ_MARK),
                ))),
                Operator::EQ,
                Expression::Number(0),
            ),
            Statement::Return(None),
        ],
        None,
    );
    r.rule(
        "masquerading",
        vec![Statement::Mangle(Mangle {
            key: mark(),
            value: Expression::BinaryOperation(Box::new(BinaryOperation::XOR(
                mark(),
                Expression::Number(MASQ_MARK),
            ))),
        })],
        None,
    );
    r.rule(
        "masquerading",
        vec![Statement::Masquerade(Some(NAT {
            addr: None,
            family: None,
            port: None,
            flags: Some([NATFlag::FullyRandom].into_iter().collect()),
        }))],
        None,
    );
    r.rule("reject-chain", vec![Statement::Reject(None)], None);

    let (live, dead): (Vec<&ServicePort>, Vec<&ServicePort>) =
        ports.iter().partition(|p| !p.endpoints.is_empty());
    if !dead.is_empty() {
        r.rule(
            "endpoints-check",
            vec![vmap(
                dispatch_key(),
                dead.iter()
                    .map(|sp| dispatch_item(sp, goto("reject-chain")))
                    .collect(),
            )],
            None,
        );
    }
    if !live.is_empty() {
        r.rule(
            "services",
            vec![vmap(
                dispatch_key(),
                live.iter()
                    .map(|sp| dispatch_item(sp, goto(&sp.chain())))
                    .collect(),
            )],
            None,
        );
    }
    let not_local = || {
        cmp(
            field("ip", "saddr"),
            Operator::NEQ,
            Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(Expression::String(s(pod_cidr.network().to_string()))),
                len: u32::from(pod_cidr.prefix_len()),
            })),
        )
    };
    for sp in live {
        let chain = sp.chain();
        r.chain(&chain, None);
        // Off-node traffic to a ClusterIP is masqueraded (it may bounce
        // to another node); pod traffic keeps its source.
        r.rule(
            &chain,
            vec![
                cmp(
                    field("ip", "daddr"),
                    Operator::EQ,
                    Expression::String(s(sp.cluster_ip.to_string())),
                ),
                cmp(
                    field(&sp.protocol, "dport"),
                    Operator::EQ,
                    Expression::Number(u32::from(sp.port)),
                ),
                not_local(),
                jump("mark-for-masquerade"),
            ],
            None,
        );
        let items = sp
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                SetItem::MappingStatement(
                    Expression::Number(i as u32),
                    goto(&sp.endpoint_chain(*ep)),
                )
            })
            .collect();
        r.rule(
            &chain,
            vec![vmap(
                Expression::Named(NamedExpression::Numgen(Numgen {
                    mode: NgMode::Random,
                    ng_mod: sp.endpoints.len() as u32,
                    offset: None,
                })),
                items,
            )],
            Some(sp.display()),
        );
        for ep in &sp.endpoints {
            let ep_chain = sp.endpoint_chain(*ep);
            r.chain(&ep_chain, None);
            // Hairpin: a backend reaching itself through the Service.
            r.rule(
                &ep_chain,
                vec![
                    cmp(
                        field("ip", "saddr"),
                        Operator::EQ,
                        Expression::String(s(ep.0.to_string())),
                    ),
                    jump("mark-for-masquerade"),
                ],
                None,
            );
            r.rule(
                &ep_chain,
                vec![
                    cmp(
                        meta(MetaKey::L4proto),
                        Operator::EQ,
                        Expression::String(s(sp.protocol.clone())),
                    ),
                    Statement::DNAT(Some(NAT {
                        addr: Some(Expression::String(s(ep.0.to_string()))),
                        family: None,
                        port: Some(Expression::Number(u32::from(ep.1))),
                        flags: None,
                    })),
                ],
                None,
            );
        }
    }
    r.finish()
}

// SPDX-License-Identifier: Apache-2.0
//! Keeping one nftables table per node in step with the store: what
//! NetworkPolicy enforcement (`netpol`) and the Service proxy
//! (`services::proxy`) share. Each builds a node's whole table from a
//! snapshot of the store; this applies it (one `nft` transaction) to every
//! node whose table changed, after every change to the resources it reads,
//! and retries a failed `nft` run.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField};
use podtrace_netns::Shape;
use tokio::sync::broadcast::error::RecvError;

use crate::sandbox::State;
use crate::store::{Resource, Store};

/// How soon a failed `nft` run is retried.
const RETRY: Duration = Duration::from_millis(100);

/// A node as the rule builders see it.
pub(crate) struct NodeNet {
    pub name: String,
    pub netns: String,
    pub shape: Shape,
    pub pod_cidr: Ipv4Net,
}

fn nodes(state: &State) -> Vec<NodeNet> {
    // No clone of the cluster may outlive this call (teardown drops the
    // last one to delete the namespaces).
    let net = state.net.lock().unwrap_or_else(|e| e.into_inner());
    net.as_ref()
        .map(|c| {
            c.nodes()
                .iter()
                .map(|n| NodeNet {
                    name: n.name.clone(),
                    netns: n.netns.name().to_owned(),
                    shape: n.shape,
                    pod_cidr: Ipv4Net::new(n.pod_cidr, 24).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Installs `ruleset` in `netns` in one `nft` transaction. Bridged nodes
/// pass bridged IPv4 through the ip hooks first
/// (`net.bridge.bridge-nf-call-iptables=1`, as flannel clusters have it):
/// filtering and un-NAT of replies between pods of one bridge need it.
fn apply(
    netns: &str,
    shape: Shape,
    ruleset: &nftables::schema::Nftables<'_>,
) -> Result<(), String> {
    if shape == Shape::Bridge {
        podtrace_netns::run(std::process::Command::new("ip").args([
            "netns",
            "exec",
            netns,
            "sysctl",
            "-qw",
            "net.bridge.bridge-nf-call-iptables=1",
        ]))
        .map_err(|e| e.to_string())?;
    }
    nftables::helper::apply_ruleset_with_args(ruleset, Some("ip"), ["netns", "exec", netns, "nft"])
        .map_err(|e| e.to_string())
}

/// Keeps every node's table in step until aborted: `snapshot` reads what
/// the rules depend on (under the store's lock), `ruleset` builds a node's
/// table from it (`empty`: the snapshot at start, when no table exists),
/// and a change to any of `triggers` starts the next sync (a burst of
/// changes is one sync). `what` names the rules in warnings.
pub(crate) async fn keep_in_step<S>(
    state: Arc<State>,
    what: &'static str,
    triggers: &'static [Resource],
    empty: S,
    snapshot: impl Fn(&Store) -> S,
    ruleset: impl Fn(&S, &NodeNet) -> nftables::schema::Nftables<'static>,
) {
    let mut rx = state.lock().subscribe();
    // What each node has now; at start, nothing (no table).
    let mut applied: HashMap<String, String> = HashMap::new();
    for n in nodes(&state) {
        let none = serde_json::to_string(&ruleset(&empty, &n)).unwrap_or_default();
        applied.insert(n.netns, none);
    }
    loop {
        let mut failed = false;
        let snap = snapshot(&state.lock());
        for node in nodes(&state) {
            let rules = ruleset(&snap, &node);
            let text = serde_json::to_string(&rules).unwrap_or_default();
            if applied.get(&node.netns) == Some(&text) {
                continue;
            }
            let netns = node.netns.clone();
            let result =
                tokio::task::spawn_blocking(move || apply(&netns, node.shape, &rules)).await;
            let error = match result {
                Ok(Ok(())) => {
                    applied.insert(node.netns, text);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            };
            failed = true;
            tracing::warn!(node = %node.name, %error, "{what} rules not applied; retrying");
        }
        // Wait for a change that can alter a ruleset, or, after a failed
        // `nft` run, retry soon.
        let retry = tokio::time::sleep(if failed {
            RETRY
        } else {
            Duration::from_secs(3600)
        });
        tokio::pin!(retry);
        loop {
            let change = tokio::select! {
                c = rx.recv() => c,
                _ = &mut retry => break,
            };
            match change {
                Ok(c) if triggers.contains(&c.resource) => break,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
        while rx.try_recv().is_ok() {}
    }
}

/// An owned string for the nftables schema.
pub(crate) fn s(v: impl Into<String>) -> Cow<'static, str> {
    Cow::Owned(v.into())
}

/// A packet field: `ip saddr`, `th dport`, …
pub(crate) fn field(protocol: &str, name: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: s(protocol),
            field: s(name),
        },
    )))
}

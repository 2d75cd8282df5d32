// SPDX-License-Identifier: Apache-2.0
//! NetworkPolicy in the sandbox: the `networking.k8s.io/v1` API object
//! ([`api`]) and its enforcement in every node's network namespace with
//! nftables, as an iptables/nftables CNI does it ([`rules`]), kept in step
//! with the store by [`run`].
//!
//! Enforcement is per node: a pod's ingress is checked on its own node, its
//! egress too, so a drop happens where it would in such a cluster (the
//! kernel reports `NETFILTER_DROP`). Bridged nodes pass bridged IPv4 through
//! the forward hook (`net.bridge.bridge-nf-call-iptables=1`, as flannel
//! clusters have it). The tables live in the nodes' namespaces and go with
//! them at teardown.

pub(crate) mod api;
mod model;
mod rules;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use podtrace_netns::Shape;
use tokio::sync::broadcast::error::RecvError;

use crate::sandbox::State;
use crate::store::Resource;

/// How soon a failed `nft` run is retried.
const RETRY: Duration = Duration::from_millis(100);

/// A node as enforcement sees it.
struct NodeNet {
    name: String,
    netns: String,
    shape: Shape,
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
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Installs `ruleset` in `netns` in one `nft` transaction.
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

/// Keeps every node's ruleset in step with pods, namespaces and policies,
/// until aborted. A change is applied as soon as it is stored (one `nft`
/// run per node whose ruleset changed).
pub(crate) async fn run(state: Arc<State>) {
    let mut rx = state.lock().subscribe();
    // What each node has now; at start, nothing (no table).
    let mut applied: HashMap<String, String> = HashMap::new();
    let empty = model::Snapshot::default();
    for n in nodes(&state) {
        let none = serde_json::to_string(&rules::node_ruleset(&empty, &n.name)).unwrap_or_default();
        applied.insert(n.netns, none);
    }
    loop {
        let mut failed = false;
        let snapshot = model::Snapshot::read(&state.lock());
        for node in nodes(&state) {
            let ruleset = rules::node_ruleset(&snapshot, &node.name);
            let text = serde_json::to_string(&ruleset).unwrap_or_default();
            if applied.get(&node.netns) == Some(&text) {
                continue;
            }
            let netns = node.netns.clone();
            let result =
                tokio::task::spawn_blocking(move || apply(&netns, node.shape, &ruleset)).await;
            let error = match result {
                Ok(Ok(())) => {
                    applied.insert(node.netns, text);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            };
            failed = true;
            tracing::warn!(node = %node.name, %error, "NetworkPolicy rules not applied; retrying");
        }
        // Wait for a change that can alter a ruleset (a burst is one sync),
        // or, after a failed `nft` run, retry soon.
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
                Ok(c)
                    if matches!(
                        c.resource,
                        Resource::Pod | Resource::Namespace | Resource::NetworkPolicy
                    ) =>
                {
                    break
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
        while rx.try_recv().is_ok() {}
    }
}

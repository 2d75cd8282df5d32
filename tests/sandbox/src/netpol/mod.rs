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

use std::sync::Arc;

use crate::sandbox::State;
use crate::store::Resource;

/// Keeps every node's ruleset in step with pods, namespaces and policies,
/// until aborted. A change is applied as soon as it is stored (one `nft`
/// run per node whose ruleset changed).
pub(crate) async fn run(state: Arc<State>) {
    crate::nodenft::keep_in_step(
        state,
        "NetworkPolicy",
        &[Resource::Pod, Resource::Namespace, Resource::NetworkPolicy],
        model::Snapshot::default(),
        model::Snapshot::read,
        |snap, node| rules::node_ruleset(snap, &node.name),
    )
    .await;
}

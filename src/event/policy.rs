// SPDX-License-Identifier: Apache-2.0
//! The `policy` line: the plugin's NetworkPolicy verdict for one direction
//! of a flow that a drop or an unanswered SYN raised (docs/schema.md).
//! Written by the plugin, never by a runner.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Proto;

/// A `{"type":"policy",…}` line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The time of the event that raised it.
    pub time: String,
    pub node: String,
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    pub direction: PolicyDirection,
    pub verdict: PolicyVerdict,
    /// `ns/name` of every policy selecting the pod for `direction`.
    pub policies: Vec<String>,
    /// `ns/name` of the policies whose rules allow the flow.
    pub allowed_by: Vec<String>,
    /// The rule that missed on one thing, when the verdict is `denied`.
    pub rule: Option<PolicyNearMiss>,
    /// What raised it: `drop NETFILTER_DROP`, `unanswered SYN`, or
    /// `connection` (a flow once denied now connecting).
    pub cause: String,
}

/// Which side of the flow a verdict is about.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDirection {
    /// Leaving the source pod.
    Egress,
    /// Entering the destination pod.
    Ingress,
}

/// What the policies say about one direction of a flow.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyVerdict {
    /// Selected by at least one policy, and no rule allows it.
    Denied,
    /// Selected, and at least one rule allows it.
    Allowed,
    /// No policy selects the pod for this direction: not isolated.
    NoPolicy,
}

/// The one thing a near-miss rule got wrong.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMiss {
    /// Peer right; port or protocol not in the rule's `ports`.
    Port,
    /// Port right; the peer pod's labels do not match its `podSelector`.
    PodLabels,
    /// Port right; the peer's namespace does not match (its labels against
    /// the `namespaceSelector`, or, without one, the policy's own namespace).
    Namespace,
    /// Port right; the peer's address is outside the `ipBlock` (or excepted).
    IpBlock,
}

/// A rule that would have allowed the flow but for one thing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PolicyNearMiss {
    /// `ns/name` of the policy.
    pub policy: String,
    /// Index of the rule in the policy's `ingress` or `egress` list.
    pub index: usize,
    pub miss: PolicyMiss,
    /// What the rule wants and what the flow has, in words.
    pub detail: String,
}

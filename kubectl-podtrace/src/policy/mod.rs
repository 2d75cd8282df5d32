// SPDX-License-Identifier: Apache-2.0
//! Which NetworkPolicies decide a flow, and what they decide — Kubernetes'
//! semantics as the API reference and the upstream e2e suite define them,
//! evaluated purely from the objects (no cluster, no kernel).
//!
//! A flow is checked twice: egress at the source pod (policies in its
//! namespace that select it and have `Egress` in their types) and ingress at
//! the destination pod. A direction with no selecting policy is open
//! (`no-policy`); otherwise the flow is allowed when any rule of any
//! selecting policy allows it (policies are additive), and denied if none
//! does — then the rule that missed on exactly one thing (peer right but
//! port wrong, namespace right but pod labels wrong, …) is the near miss.

mod eval;
mod select;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub(crate) use eval::evaluate;

/// Labels, as the API serves them.
pub(crate) type Labels = BTreeMap<String, String>;

/// The label every namespace carries (set by the API server since 1.21).
pub(crate) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A container port of a pod, which a policy may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerPort {
    pub name: String,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// One end of a flow that is a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodEnd {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The labels of the pod's namespace.
    pub namespace_labels: Labels,
    pub ports: Vec<ContainerPort>,
}

/// One end of a flow: its address, and the pod behind it when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct End {
    pub ip: IpAddr,
    pub pod: Option<PodEnd>,
}

/// A connection (or datagram exchange) from `src` to `dst:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flow {
    pub src: End,
    pub dst: End,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

// The verdict's parts are wire types: the `policy` line carries them.
pub(crate) use podtrace::event::{
    PolicyDirection as Direction, PolicyMiss as Miss, PolicyNearMiss as NearMiss,
    PolicyVerdict as Verdict,
};

/// The decision for one direction of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub direction: Direction,
    pub verdict: Verdict,
    /// `ns/name` of every policy that selects the pod for this direction.
    pub policies: Vec<String>,
    /// `ns/name` of the policies with a rule that allows the flow.
    pub allowed_by: Vec<String>,
    /// Only for `Denied`: the nearest rule, when one missed on one thing.
    pub near_miss: Option<NearMiss>,
}

// SPDX-License-Identifier: Apache-2.0
//! The `target` line: a pod joined or left what the trace follows (a
//! workload, a Service's backends, a selector, a named pod recreated)
//! (docs/schema.md). Written by the plugin, never by a runner.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A `{"type":"target",…}` line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TargetChange {
    /// When the plugin saw the change (RFC 3339).
    pub time: String,
    pub change: TargetChangeKind,
    /// The target as the user named it: `deploy/web`, `pod/web-1`, `-l app=web`.
    pub target: String,
    /// `ns/name` of the pod that joined or left.
    pub pod: String,
    /// The pod's node.
    pub node: String,
    /// The pod's IPs.
    pub ips: Vec<IpAddr>,
    /// With `replaced`: `ns/name` of the pod that took its place (when the
    /// old pod left first, the line comes when the new one joins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What happened to the pod.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetChangeKind {
    /// It became Running with an IP and is traced from now on.
    Joined,
    /// It left (deleted, finished, or no longer selected), with no new pod
    /// of the same target to take its place yet.
    Deleted,
    /// It left and a new pod of the same target took its place.
    Replaced,
}

impl TargetChange {
    /// `default/web-abc deleted`, `default/web-abc replaced by
    /// default/web-xyz`, `default/web-xyz joined deploy/web on node-2`.
    pub fn text(&self) -> String {
        let ips: Vec<String> = self.ips.iter().map(IpAddr::to_string).collect();
        match self.change {
            TargetChangeKind::Joined => format!(
                "{} ({}) joined {} on node {}: tracing it",
                self.pod,
                ips.join(", "),
                self.target,
                self.node
            ),
            TargetChangeKind::Deleted => format!("{} ({}) deleted", self.pod, ips.join(", ")),
            TargetChangeKind::Replaced => format!(
                "{} ({}) replaced by {}",
                self.pod,
                ips.join(", "),
                self.by.as_deref().unwrap_or("a new pod")
            ),
        }
    }
}

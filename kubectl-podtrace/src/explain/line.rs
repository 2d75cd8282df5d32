// SPDX-License-Identifier: Apache-2.0
//! The `policy` line: one verdict for one flow and direction, in JSON and
//! as the text line shown under the event that raised it.

use serde::Serialize;

use crate::policy::{Decision, Direction, NearMiss, Verdict};

/// A `{"type":"policy",…}` line (documented in docs/schema.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PolicyLine {
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// The time of the event that raised it.
    pub time: String,
    pub node: String,
    pub proto: podtrace::event::Proto,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    pub direction: Direction,
    pub verdict: Verdict,
    /// `ns/name` of every policy selecting the pod for `direction`.
    pub policies: Vec<String>,
    /// `ns/name` of the policies whose rules allow the flow.
    pub allowed_by: Vec<String>,
    /// The rule that missed on one thing, when the verdict is `denied`.
    pub rule: Option<NearMiss>,
    /// What raised it: `drop NETFILTER_DROP`, `unanswered SYN`, or
    /// `connection` (a flow once denied now connecting).
    pub cause: String,
}

impl PolicyLine {
    pub(crate) fn new(e: &podtrace::event::Event, d: Decision, cause: String) -> PolicyLine {
        PolicyLine {
            ty: "policy",
            time: e.time.clone(),
            node: e.node.clone(),
            proto: e.proto,
            src: e.src,
            dst: e.dst,
            src_name: e.src_name.clone(),
            dst_name: e.dst_name.clone(),
            direction: d.direction,
            verdict: d.verdict,
            policies: d.policies,
            allowed_by: d.allowed_by,
            rule: d.near_miss,
            cause,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// One line, indented under the event it explains.
    pub(crate) fn to_text(&self) -> String {
        let (way, pod) = match self.direction {
            Direction::Ingress => (
                "ingress to",
                self.dst_name.clone().unwrap_or(self.dst.ip().to_string()),
            ),
            Direction::Egress => (
                "egress from",
                self.src_name.clone().unwrap_or(self.src.ip().to_string()),
            ),
        };
        let port = format!("{}/{}", self.proto.as_str().to_uppercase(), self.dst.port());
        let head = format!("    policy: {way} {pod} on {port}");
        match self.verdict {
            Verdict::Denied => {
                let mut s = format!("{head} DENIED by {}", self.policies.join(", "));
                match &self.rule {
                    Some(r) => s.push_str(&format!(
                        "; nearest rule {} {}[{}]: {}",
                        r.policy,
                        self.direction_word(),
                        r.index,
                        r.detail
                    )),
                    None => s.push_str("; no rule comes close"),
                }
                s
            }
            Verdict::Allowed => format!(
                "{head} allowed by {}{}",
                self.allowed_by.join(", "),
                self.other_cause()
            ),
            Verdict::NoPolicy => {
                format!("{head}: no NetworkPolicy selects it{}", self.other_cause())
            }
        }
    }

    fn direction_word(&self) -> &'static str {
        match self.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn other_cause(&self) -> String {
        match self.cause.as_str() {
            "connection" => String::new(),
            c => format!(" (so the {c} has another cause)"),
        }
    }
}

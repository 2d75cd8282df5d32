// SPDX-License-Identifier: Apache-2.0
//! DNS on the wire schema: the `dns` event (one query and its outcome) and
//! the per-pod DNS section of the summaries.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One DNS query of a traced pod and what became of it: answered (with
/// `rcode`, `answers` and `latency_ms`) or `unanswered`. Written when the
/// answer comes, or when none came within [`crate::dns::UNANSWERED_AFTER_NS`]
/// or by the end of the trace. The event's `src` is the asking side, `dst`
/// the server it asked (as addressed: a Service's ClusterIP).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Dns {
    /// The message ID.
    pub id: u16,
    /// The question's name, without the trailing dot.
    pub name: String,
    /// The question's type, e.g. `A`, `AAAA`, `PTR`.
    pub qtype: String,
    /// The response code, e.g. `NOERROR`, `NXDOMAIN`, `SERVFAIL`; absent
    /// when unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// A, AAAA and CNAME records of the answer section, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
    /// From the query's first sending to the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Times the same query (same ID, name and type, from the same
    /// address and port) was sent again before the response.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// No response within 5 s of its last sending, or by the end of the trace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unanswered: bool,
    /// Unanswered, and the kernel dropped the query (or its response) on
    /// the way: the drop's reason, as in `drop` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One record of an answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// `A`, `AAAA` or `CNAME`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The address, or the CNAME's target name.
    pub data: String,
    pub ttl: u32,
}

/// DNS of one pod (the asking side) over a trace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DnsSummary {
    /// The pod's address (the queries' source).
    pub pod: IpAddr,
    /// `ns/name` of `pod`, added by the plugin when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Queries (`dns` events; retries not counted again).
    pub queries: u64,
    pub nxdomain: u64,
    pub servfail: u64,
    pub unanswered: u64,
    /// Median and 99th percentile latency of the answered queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

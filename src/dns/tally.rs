// SPDX-License-Identifier: Apache-2.0
//! The DNS section of a summary, per asking pod, counted from `dns`
//! events: the runner's from its own, the plugin's from every node's (so
//! percentiles never need merging).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::event::{DnsSummary, Event, EventKind};

/// Latency samples kept per pod, at most: percentiles of a longer trace
/// come from its first this many answers.
const MAX_SAMPLES: usize = 100_000;

#[derive(Debug, Default)]
struct PodDns {
    name: Option<String>,
    queries: u64,
    nxdomain: u64,
    servfail: u64,
    unanswered: u64,
    latencies_ms: Vec<f64>,
}

/// DNS counted so far, by the asking side's address.
#[derive(Debug, Default)]
pub struct DnsTally {
    pods: BTreeMap<IpAddr, PodDns>,
}

impl DnsTally {
    /// Folds one event in (any kind: only `dns` ones count).
    pub fn record(&mut self, e: &Event) {
        let EventKind::Dns(d) = &e.kind else {
            return;
        };
        let pod = self.pods.entry(e.src.ip()).or_default();
        if pod.name.is_none() {
            pod.name.clone_from(&e.src_name);
        }
        pod.queries += 1;
        match d.rcode.as_deref() {
            Some("NXDOMAIN") => pod.nxdomain += 1,
            Some("SERVFAIL") => pod.servfail += 1,
            _ => {}
        }
        if d.unanswered {
            pod.unanswered += 1;
        }
        if let Some(ms) = d.latency_ms {
            if pod.latencies_ms.len() < MAX_SAMPLES {
                pod.latencies_ms.push(ms);
            }
        }
    }

    /// The section, by pod address.
    pub fn finish(self) -> Vec<DnsSummary> {
        self.pods
            .into_iter()
            .map(|(ip, mut p)| {
                p.latencies_ms.sort_by(f64::total_cmp);
                DnsSummary {
                    pod: ip,
                    pod_name: p.name,
                    queries: p.queries,
                    nxdomain: p.nxdomain,
                    servfail: p.servfail,
                    unanswered: p.unanswered,
                    p50_ms: percentile(&p.latencies_ms, 50),
                    p99_ms: percentile(&p.latencies_ms, 99),
                }
            })
            .collect()
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50), Some(50.0));
        assert_eq!(percentile(&s, 99), Some(99.0));
        assert_eq!(percentile(&[3.0], 99), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0], 50), Some(1.0));
        assert_eq!(percentile(&[], 50), None);
    }
}

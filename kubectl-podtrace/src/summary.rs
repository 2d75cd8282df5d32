// SPDX-License-Identifier: Apache-2.0
//! The session's summary: every node's flows merged into one list (by the
//! shared rule, `podtrace::flows`), for the text table and for the
//! `session_summary` line of `-o json`.
//!
//! A node whose runner's `summary` line never came (its pod was killed) is
//! counted from the events it streamed, so nothing the user saw is missing.

use podtrace::event::{now_rfc3339, FlowSummary, SessionSummary, Summary};
use podtrace::flows::{self, Flows};

/// What one node contributes.
#[derive(Debug)]
pub(crate) enum NodeFlows {
    /// The runner's own summary.
    Summary(Summary),
    /// Its flows counted from its events.
    FromEvents(Flows),
}

/// The merged summary of `nodes` (`None` without any), each flow passed
/// through `annotate` (names).
pub(crate) fn session_summary(
    nodes: Vec<(String, NodeFlows)>,
    mut annotate: impl FnMut(&mut FlowSummary),
) -> Option<SessionSummary> {
    if nodes.is_empty() {
        return None;
    }
    let (mut lost, mut from_summary, mut from_events) = (0, Vec::new(), Vec::new());
    let lists: Vec<Vec<FlowSummary>> = nodes
        .into_iter()
        .map(|(node, flows)| match flows {
            NodeFlows::Summary(s) => {
                lost += s.lost;
                from_summary.push(node);
                s.flows
            }
            NodeFlows::FromEvents(f) => {
                from_events.push(node);
                f.finish()
            }
        })
        .collect();
    let mut flows = flows::merge(lists.iter().map(Vec::as_slice));
    flows.iter_mut().for_each(&mut annotate);
    Some(SessionSummary {
        time: now_rfc3339(),
        flows,
        dns: Vec::new(),
        lost,
        nodes: from_summary,
        counted_from_events: from_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace::event::{End, Event, EventKind, Proto};

    fn flow(retransmits_sent: u64, retransmits_received: u64, packets: u64) -> FlowSummary {
        FlowSummary {
            proto: Some(Proto::Tcp),
            src: Some("10.0.1.2".parse().unwrap()),
            dst: Some("10.0.2.3:80".parse().unwrap()),
            connections: 1,
            packets_sent: packets,
            retransmits_sent,
            retransmits_received,
            ..Default::default()
        }
    }

    fn summary(node: &str, flows: Vec<FlowSummary>, lost: u64) -> NodeFlows {
        NodeFlows::Summary(Summary {
            node: node.into(),
            time: "t".into(),
            flows,
            dns: Vec::new(),
            lost,
            events: 0,
            duration_s: 1.0,
        })
    }

    #[test]
    fn nodes_merge_into_one_summary_saying_where_counts_came_from() {
        // The client's node retransmitted 55 times, the server's 3 (one
        // more node counted from its events): 58, not the larger of the two.
        let mut events = Flows::from_packet_events();
        events.record(&Event {
            time: "t".into(),
            node: "c".into(),
            proto: Proto::Tcp,
            src: "10.0.1.2:40000".parse().unwrap(),
            dst: "10.0.2.3:80".parse().unwrap(),
            pid: None,
            comm: None,
            src_name: None,
            dst_name: None,
            via: None,
            end: Some(End::Client),
            kind: EventKind::Connect,
        });
        let s = session_summary(
            vec![
                ("a".into(), summary("a", vec![flow(55, 0, 70)], 2)),
                ("b".into(), summary("b", vec![flow(0, 3, 68)], 1)),
                ("c".into(), NodeFlows::FromEvents(events)),
            ],
            |f| f.dst_name = Some("default/nginx-demo".into()),
        )
        .unwrap();
        assert_eq!(s.flows.len(), 1);
        let f = &s.flows[0];
        assert_eq!(f.retransmits(), 58);
        assert_eq!((f.connections, f.packets_sent), (1, 70));
        assert_eq!(f.dst_name.as_deref(), Some("default/nginx-demo"));
        assert_eq!(s.lost, 3);
        assert_eq!(s.nodes, ["a", "b"]);
        assert_eq!(s.counted_from_events, ["c"]);
        assert!(session_summary(Vec::new(), |_| {}).is_none());
    }
}

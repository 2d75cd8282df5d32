// SPDX-License-Identifier: Apache-2.0
//! The per-flow summary printed when a text session ends.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;

use super::Session;
use crate::cli::Output;
use crate::render;

impl Session<'_> {
    /// The per-flow summary, merged over the nodes.
    pub(super) fn print_summary(&mut self) {
        if self.console.output != Output::Text {
            return;
        }
        let mut per_node = Vec::new();
        let mut lost = 0;
        let mut from_events = Vec::new();
        for n in &self.nodes {
            match &n.summary {
                Some(s) => {
                    lost += s.lost;
                    per_node.push((n.node.clone(), s.flows.clone()));
                }
                None if n.ready => {
                    from_events.push(n.node.clone());
                    per_node.push((n.node.clone(), n.tally.flows()));
                }
                None => {}
            }
        }
        if per_node.is_empty() {
            return;
        }
        let local: HashMap<String, Vec<IpAddr>> = self
            .spec
            .plans
            .iter()
            .map(|p| (p.node.clone(), p.pod_ips.clone()))
            .collect();
        let is_local =
            |node: &str, ip: IpAddr| local.get(node).is_some_and(|ips| ips.contains(&ip));
        let mut flows = crate::summary::merge(&per_node, &is_local);
        for f in &mut flows {
            self.names.annotate_flow(f);
        }
        let table = render::summary_table(&flows, lost, self.console.style);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\nSUMMARY");
        let _ = write!(out, "{table}");
        if !from_events.is_empty() {
            let _ = writeln!(
                out,
                "(no summary came from node {}: its flows are counted from the events shown)",
                from_events.join(", ")
            );
        }
        let _ = out.flush();
    }
}

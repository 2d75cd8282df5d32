// SPDX-License-Identifier: Apache-2.0
//! The session's summary when it ends: a table in text, a
//! `session_summary` line in JSON.

use podtrace::event::Message;

use super::Session;
use crate::cli::Output;
use crate::render;
use crate::summary::{session_summary, NodeFlows};
use crate::svcflow;

impl Session<'_> {
    /// The per-flow summary, merged over the nodes.
    pub(super) fn print_summary(&mut self) {
        let nodes = self
            .nodes
            .iter_mut()
            .filter_map(|n| {
                let flows = match n.summary.take() {
                    Some(s) => NodeFlows::Summary(s),
                    // Never ready: it saw nothing.
                    None if n.ready => NodeFlows::FromEvents(std::mem::take(&mut n.tally)),
                    None => return None,
                };
                Some((n.node.clone(), flows))
            })
            .collect();
        let Some(mut summary) = session_summary(nodes, |f| self.names.annotate_flow(f)) else {
            return;
        };
        summary.dns = std::mem::take(&mut self.dns).finish();
        summary.flows = svcflow::fold(summary.flows, &self.svcflows.tally());
        match self.console.output {
            Output::Json => self
                .console
                .line(&Message::session_summary(summary).to_line()),
            Output::Text => self
                .console
                .text(&render::session_summary(&summary, self.console.style)),
        }
    }
}

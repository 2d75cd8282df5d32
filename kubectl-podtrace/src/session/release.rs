// SPDX-License-Identifier: Apache-2.0
//! Lines leaving the reorder window: an event gets what is known of its
//! Service flow by now ([`crate::svcflow`]), then it and its explanations
//! are printed; the capture writes its due packets.

use podtrace::event::{Event, Message, ServiceHop};

use super::console::Held;
use super::Session;
use crate::cli::Output;
use crate::render;

impl Session<'_> {
    /// Prints the due lines and writes the due packets (with `all`,
    /// everything held).
    pub(super) fn flush(&mut self, all: bool) {
        for held in self.console.due(all) {
            match held {
                Held::Line(line) => self.console.line(&line),
                Held::Event(mut e, explanations) => {
                    self.names.annotate_missing(&mut e);
                    self.through_service(&mut e);
                    let (line, extra): (String, Vec<String>) = match self.console.output {
                        Output::Json => (
                            Message::Event(*e).to_line(),
                            explanations.iter().map(|x| x.to_json()).collect(),
                        ),
                        Output::Text => (
                            render::event_line(&e, self.console.style),
                            explanations.iter().map(|x| x.to_text()).collect(),
                        ),
                    };
                    self.console.line(&line);
                    for l in extra {
                        self.console.line(&l);
                    }
                }
            }
        }
        if let Some(warning) = self.capture.as_mut().and_then(|c| c.write_due(all)) {
            self.console.warn(&warning);
        }
    }

    /// Marks an event of a flow to a ClusterIP with its Service, and names
    /// the backend as its `dst` once the backend's end was matched. Packets
    /// and drops keep the addresses they carried.
    fn through_service(&self, e: &mut Event) {
        let hop = self.svcflows.hop(e);
        if let Some(hop) = &hop {
            if let (Some(backend), true) = (hop.backend, e.kind.is_connection_event()) {
                if e.dst == hop.via.service_addr {
                    e.dst = backend;
                    e.dst_name = self.names.get(&backend.ip());
                }
            }
        }
        e.via = hop.map(|h| h.via).or_else(|| {
            // Its client's end unseen (a UDP datagram, a reply at the
            // client's interface): the ClusterIP alone says the Service.
            [e.dst, e.src].into_iter().find_map(|addr| {
                Some(ServiceHop {
                    service: self.explainer.service_at(addr.ip())?,
                    service_addr: addr,
                })
            })
        });
    }
}

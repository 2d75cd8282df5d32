// SPDX-License-Identifier: Apache-2.0
//! DNS of the traced pods, from the port-53 packets whose first bytes the
//! kernel copies (`bpf/packets.bpf.c`, `dns_snaplen`): messages read
//! ([`parse`], with `simple-dns`), queries paired with their responses
//! ([`Tracker`]), and the summary's DNS section ([`DnsTally`], drawn by
//! [`render`]). See docs/schema.md, "dns".

mod parse;
pub mod render;
mod tally;
mod track;

pub use tally::DnsTally;
pub use track::{Done, Tracker, UNANSWERED_AFTER_NS};

/// The port DNS servers listen on: packets from or to it carry their bytes.
pub const PORT: u16 = 53;

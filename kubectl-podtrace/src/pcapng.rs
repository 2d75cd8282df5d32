// SPDX-License-Identifier: Apache-2.0
//! `--write`: the packets the runners captured, as a pcapng file for
//! Wireshark (blocks written by `pcap-file`).
//!
//! One Interface Description Block per node and host-side interface, made
//! when its first packet comes; a Name Resolution Block with the pod and
//! Service names of addresses not named before, ahead of the packet that
//! first shows them (a reader in one pass names every packet); an Enhanced
//! Packet Block per `packet` or `drop` event that carries bytes, a drop's
//! with its reason as comment. What the file holds is in docs/pcapng.md.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::name_resolution::{
    Ipv4Record, Ipv6Record, NameResolutionBlock, Record,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError};
use podtrace::event::{Direction, Event, EventKind, ETH_HLEN};

/// Why the capture could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("failed to write the capture: {0}")]
    Write(#[from] PcapError),
    #[error("a packet event has a time that is not RFC 3339: {0:?}")]
    BadTime(String),
}

/// What the Section Header Block says of the session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The traced pods, `ns/name`.
    pub targets: Vec<String>,
    /// When the session started, RFC 3339.
    pub started: String,
    /// Bytes kept per packet (the runners' `--snaplen`, 0 resolved).
    pub snaplen: u32,
}

/// `epb_flags` direction bits (pcapng draft, section 4.3.1).
const INBOUND: u32 = 0b01;
const OUTBOUND: u32 = 0b10;
/// `if_tsresol` 9: timestamps in nanoseconds, which is how `pcap-file`
/// writes them (it writes a `Duration` as nanoseconds whatever the
/// interface says, and readers assume microseconds without this).
const NANOSECONDS: u8 = 9;

/// Writes packet events into a pcapng stream.
pub(crate) struct Writer<W: Write> {
    out: PcapNgWriter<W>,
    snaplen: u32,
    /// Interface id by (node, host-side interface).
    interfaces: HashMap<(String, String), u32>,
    /// Addresses a Name Resolution Block has named already.
    named: HashSet<IpAddr>,
    packets: u64,
}

impl<W: Write> Writer<W> {
    /// Starts the stream with its Section Header Block.
    pub(crate) fn new(out: W, session: &Session) -> Result<Self, Error> {
        let shb = SectionHeaderBlock {
            endianness: Endianness::native(),
            options: vec![
                SectionHeaderOption::UserApplication(
                    concat!("kubectl-podtrace ", env!("CARGO_PKG_VERSION")).into(),
                ),
                SectionHeaderOption::Comment(
                    format!("kubectl podtrace {}", session.targets.join(" ")).into(),
                ),
                SectionHeaderOption::Comment(format!("started {}", session.started).into()),
            ],
            ..Default::default()
        };
        Ok(Writer {
            out: PcapNgWriter::with_section_header(out, shb)?,
            snaplen: session.snaplen,
            interfaces: HashMap::new(),
            named: HashSet::new(),
            packets: 0,
        })
    }

    /// Packets written so far.
    pub(crate) fn packets(&self) -> u64 {
        self.packets
    }

    /// Writes the event if it is a packet or a drop with bytes (with the
    /// interface and names it needs first); other events are no packets.
    /// A drop is written on the interface of the pod it concerns, with the
    /// reason as its comment; one placed at no traced pod's interface is
    /// not written.
    pub(crate) fn write(&mut self, e: &Event) -> Result<(), Error> {
        let (iface, direction, data, original_len, comment) = match &e.kind {
            EventKind::Packet {
                iface,
                direction,
                len,
                data: Some(data),
                ..
            } => (iface, *direction, data, len + ETH_HLEN, None),
            EventKind::Drop {
                reason,
                iface: Some(iface),
                direction: Some(direction),
                at,
                data: Some(data),
            } => {
                let reason = reason
                    .as_deref()
                    .unwrap_or("no reason given (Linux < 5.17)");
                let at = at.map_or(String::new(), |a| format!(" in the {}", a.as_str()));
                let comment = format!("dropped by the kernel{at}: {reason}");
                (iface, *direction, data, frame_len(&data.0), Some(comment))
            }
            _ => return Ok(()),
        };
        let unix_ns = chrono::DateTime::parse_from_rfc3339(&e.time)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .and_then(|ns| u64::try_from(ns).ok())
            .ok_or_else(|| Error::BadTime(e.time.clone()))?;
        let interface_id = self.interface(e, iface, direction)?;
        self.name(e)?;
        // From the host-side interface's view: what leaves the pod comes
        // in on it.
        let flags = match direction {
            Direction::Egress => INBOUND,
            Direction::Ingress => OUTBOUND,
        };
        let mut options = vec![EnhancedPacketOption::Flags(flags)];
        options.extend(comment.map(|c| EnhancedPacketOption::Comment(c.into())));
        self.out.write_pcapng_block(EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(unix_ns),
            original_len,
            data: Cow::Borrowed(&data.0),
            options,
        })?;
        self.packets += 1;
        Ok(())
    }

    /// The id of the event's interface, described on first use as
    /// `node/iface (ns/pod)`: the pod behind it is the packet's destination
    /// when it enters the pod, its source when it leaves.
    fn interface(&mut self, e: &Event, iface: &str, direction: Direction) -> Result<u32, Error> {
        let key = (e.node.clone(), iface.to_owned());
        if let Some(id) = self.interfaces.get(&key) {
            return Ok(*id);
        }
        let (ip, name) = match direction {
            Direction::Ingress => (e.dst.ip(), &e.dst_name),
            Direction::Egress => (e.src.ip(), &e.src_name),
        };
        let pod = name.clone().unwrap_or_else(|| ip.to_string());
        let id = self.interfaces.len() as u32;
        self.out.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(format!("{}/{iface} ({pod})", e.node).into()),
                InterfaceDescriptionOption::IfDescription(
                    format!("host side of pod {pod} on node {}", e.node).into(),
                ),
                InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
            ],
        })?;
        self.interfaces.insert(key, id);
        Ok(id)
    }

    /// A Name Resolution Block for the event's named addresses not named
    /// before, if any.
    fn name(&mut self, e: &Event) -> Result<(), Error> {
        let mut records = Vec::new();
        for (ip, name) in [(e.src.ip(), &e.src_name), (e.dst.ip(), &e.dst_name)] {
            let Some(name) = name else { continue };
            if !self.named.insert(ip) {
                continue;
            }
            let names = vec![Cow::Owned(name.clone())];
            records.push(match ip {
                IpAddr::V4(v4) => Record::Ipv4(Ipv4Record {
                    ip_addr: Cow::Owned(v4.octets().to_vec()),
                    names,
                }),
                IpAddr::V6(v6) => Record::Ipv6(Ipv6Record {
                    ip_addr: Cow::Owned(v6.octets().to_vec()),
                    names,
                }),
            });
        }
        if !records.is_empty() {
            self.out.write_pcapng_block(NameResolutionBlock {
                records,
                options: Vec::new(),
            })?;
        }
        Ok(())
    }

    /// Hands what was written to the destination.
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.out.get_mut().flush()
    }
}

/// The length of a frame (Ethernet header and IP packet) from its IP
/// header, which the first bytes carry; the bytes' own length when they
/// are too few to tell.
fn frame_len(frame: &[u8]) -> u32 {
    let at = |i: usize| {
        frame
            .get(i..i + 2)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let eth = ETH_HLEN as usize;
    let ip = match frame.get(eth).map(|b| b >> 4) {
        Some(4) => at(eth + 2),
        // The payload length does not count the 40-byte fixed header.
        Some(6) => at(eth + 4).map(|n| n + 40),
        _ => None,
    };
    ip.map_or(frame.len() as u32, |n| n + ETH_HLEN)
        .max(frame.len() as u32)
}

#[cfg(test)]
#[path = "pcapng/tests.rs"]
mod tests;

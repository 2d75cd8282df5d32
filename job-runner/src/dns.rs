// SPDX-License-Identifier: Apache-2.0
//! DNS in the runner: port-53 packets carry their bytes (the kernel's
//! `dns_snaplen`) to the tracker, which writes `dns` events; the packets
//! themselves are shown only as they would be without DNS, and their bytes
//! only as far as `--snaplen` asked.

use std::net::SocketAddr;

use podtrace::abi::ip_from_key;
use podtrace::bpf::types;
use podtrace::decode::Decoder;
use podtrace::dns::{self, DnsTally, Done, Tracker};
use podtrace::event::{rfc3339_nanos, DnsSummary, Event, EventKind, Proto};

/// TCP flags that make a packet an event without `--packets`.
const REPORTED_FLAGS: u8 = (types::pt_tcp_flag::PT_TCP_SYN.0
    | types::pt_tcp_flag::PT_TCP_FIN.0
    | types::pt_tcp_flag::PT_TCP_RST.0) as u8;

/// What becomes of one packet record.
pub(crate) enum Packet<'a> {
    /// Not port 53, or no bytes: as any packet.
    Other,
    /// A DNS packet, shown as a packet event with these bytes (empty
    /// without `--snaplen`).
    Shown(&'a [u8]),
    /// A DNS packet the kernel reported only for its bytes.
    Hidden,
}

pub(crate) struct DnsSink {
    tracker: Tracker,
    tally: DnsTally,
    /// `--packets`.
    trace_packets: bool,
    /// Bytes of each packet asked for (`--snaplen`, in the kernel's
    /// terms); 0: none.
    snaplen: usize,
    node: String,
}

fn proto_of(raw: &types::pt_event) -> Proto {
    if i32::from(raw.proto) == libc::IPPROTO_UDP {
        Proto::Udp
    } else {
        Proto::Tcp
    }
}

impl DnsSink {
    pub(crate) fn new(trace_packets: bool, snaplen: u32, node: &str) -> Self {
        DnsSink {
            tracker: Tracker::default(),
            tally: DnsTally::default(),
            trace_packets,
            snaplen: snaplen as usize,
            node: node.to_owned(),
        }
    }

    /// Reads a packet record's DNS; says how to show the packet, and
    /// hands a `dns` event it completes to `out`.
    pub(crate) fn packet<'a>(
        &mut self,
        raw: &types::pt_event,
        payload: &'a [u8],
        decoder: &Decoder,
        out: &mut Vec<Event>,
    ) -> Packet<'a> {
        let is_dns = raw.sport == dns::PORT || raw.dport == dns::PORT;
        if types::pt_kind(u32::from(raw.kind)) != types::pt_kind::PT_PACKET
            || !is_dns
            || payload.is_empty()
        {
            return Packet::Other;
        }
        let proto = proto_of(raw);
        let src = SocketAddr::new(ip_from_key(&raw.saddr.addr), raw.sport);
        let dst = SocketAddr::new(ip_from_key(&raw.daddr.addr), raw.dport);
        if let Some(done) = self
            .tracker
            .packet(raw.ts_ns, proto, src, dst, raw.ifindex, payload)
        {
            out.push(self.finish_event(done, decoder));
        }
        // The kernel's rule for reporting a packet, without DNS.
        let shown = self.trace_packets
            || raw.tcp_flags & REPORTED_FLAGS != 0
            || (raw.first != 0 && proto == Proto::Udp);
        if !shown {
            return Packet::Hidden;
        }
        Packet::Shown(&payload[..payload.len().min(self.snaplen)])
    }

    /// A decoded event: drops of port-53 packets are kept for the query.
    pub(crate) fn event(&mut self, e: &Event) {
        if let EventKind::Drop { reason, .. } = &e.kind {
            if e.src.port() == dns::PORT || e.dst.port() == dns::PORT {
                // Kernels before 5.17 give no reason: the kernel's name
                // for an unspecified one.
                let reason = reason.as_deref().unwrap_or("NOT_SPECIFIED");
                self.tracker.dropped(e.proto, e.src, e.dst, reason);
            }
        }
    }

    /// Queries unanswered as of now (the kernel's clock).
    pub(crate) fn expire(&mut self, now_ns: u64, decoder: &Decoder, out: &mut Vec<Event>) {
        for done in self.tracker.expire(now_ns) {
            out.push(self.finish_event(done, decoder));
        }
    }

    /// The trace is over: every query still waiting is unanswered.
    pub(crate) fn finish(&mut self, now_ns: u64, decoder: &Decoder, out: &mut Vec<Event>) {
        for done in self.tracker.finish(now_ns) {
            out.push(self.finish_event(done, decoder));
        }
    }

    /// The summary's DNS section.
    pub(crate) fn summary(self) -> Vec<DnsSummary> {
        self.tally.finish()
    }

    fn finish_event(&mut self, done: Done, decoder: &Decoder) -> Event {
        let mut e = done.event;
        e.time = rfc3339_nanos(decoder.unix_ns(done.ts_ns));
        e.node.clone_from(&self.node);
        self.tally.record(&e);
        e
    }
}

// SPDX-License-Identifier: Apache-2.0
//! Loads the BPF programs with the runner's filters, attaches them, and
//! detaches everything again when dropped.
//!
//! Two objects, loaded at the same time on two threads: the tracepoint
//! programs ([`OpenTracepoints`], from `bpf/podtrace.bpf.c`) and the packet
//! programs ([`Packets`], `bpf/packets.bpf.c`), on maps created once for
//! both ([`SharedMaps`]). The packet thread attaches to the interfaces as
//! soon as its object is loaded, so tcx's RCU grace periods overlap the
//! verifier's work on the tracepoint programs; [`Tracer::new`] joins them.
//!
//! Tracepoints are attached as raw tracepoints: they need neither tracefs
//! (not mounted on many nodes) nor kprobes. Packet programs go on each
//! pod's host-side interface as tcx links where the kernel has them
//! (they vanish with the process and sit alongside the CNI's own), else as
//! clsact filters, which we remove ourselves, with the qdisc only if we
//! created it.

mod host;
mod log;
mod maps;
mod packets;
mod recursion;
mod tc;
mod tracepoints;

use std::io;
use std::net::IpAddr;

use libbpf_rs::{Link, RingBuffer};

use crate::bpf::packets::PacketsSkel;
use crate::bpf::{types, PodtraceSkel};
use crate::event::{Features, Hook};

/// Storage for an open BPF object, which the tracer borrows.
pub use libbpf_rs::OpenObject;

pub use host::{node_and_kernel, preflight};
pub use log::set_verbose;
pub use maps::SharedMaps;
pub use packets::Packets;
pub use tracepoints::{OpenTracepoints, Tracepoints};

use tc::TcSet;

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The capabilities missing, each with what needs it (one line).
    #[error("{0}")]
    NotPrivileged(String),
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): podtrace needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.10 or later)"
    )]
    NoBtf,
    #[error(
        "the kernel's BPF verifier rejected program {prog} (run with -v to see libbpf's log){log}"
    )]
    Verifier { prog: String, log: String },
    #[error("failed to {context}")]
    Bpf {
        context: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error(
        "--tc-mode tcx needs Linux 6.6 or later (tcx links), which this kernel is not: \
         use --tc-mode clsact, or auto to take tcx where there is one"
    )]
    NoTcx,
    #[error("failed to attach to {iface}")]
    AttachTc {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to {context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn bpf_err(context: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Error {
    let context = context.into();
    move |source| Error::Bpf { context, source }
}

/// What to trace; the filters end up in the kernel.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub pod_ips: Vec<IpAddr>,
    /// Empty: any peer.
    pub peer_ips: Vec<IpAddr>,
    /// Empty: any port.
    pub ports: Vec<u16>,
    /// An event for every packet, not only SYN/FIN/RST.
    pub packets: bool,
    /// Bytes of each packet (from the Ethernet header) its event carries,
    /// at most [`MAX_SNAPLEN`]; 0: none (nothing is copied but for `dns`).
    pub snaplen: u32,
    /// Packets from or to port 53 carry their first bytes (at least
    /// [`crate::runner_args::DEFAULT_SNAPLEN`]) even with `snaplen` 0: the
    /// runner reads DNS.
    pub dns: bool,
    /// Network namespace inodes whose sockets and drops are in scope.
    pub netns: Vec<u64>,
    /// Ring buffer size in bytes (a power of two of at least a page); 0
    /// keeps the default. Costs twice this in resident memory.
    pub ring_bytes: u32,
    /// `skb_drop_reason` values the kernel does not report as drops (see
    /// [`crate::drop_reason::IGNORED`]); at most 4.
    pub ignored_drop_reasons: Vec<u32>,
    /// [`crate::drop_reason::DropReasons::unnamed_purge`].
    pub unnamed_purge_reason: u32,
    /// What the kernel offers ([`crate::features::Kernel::probe`]): picks
    /// the programs to load.
    pub features: Features,
}

/// The most bytes of a packet its event can carry (`PT_MAX_SNAPLEN` in
/// bpf/podtrace.h: the length of `pt_packet.data`).
pub const MAX_SNAPLEN: u32 = (std::mem::size_of::<crate::bpf::packets::types::pt_packet>()
    - std::mem::offset_of!(crate::bpf::packets::types::pt_packet, data))
    as u32;
const _: () = assert!(MAX_SNAPLEN == crate::runner_args::MAX_SNAPLEN);

/// How to attach packet programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcMode {
    /// tcx when the kernel has it, clsact otherwise.
    #[default]
    Auto,
    Tcx,
    Clsact,
}

/// A pod's host-side interface to attach the packet programs to.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub index: u32,
}

/// When to stop attaching early: a stop request, or (test hook) a number
/// of hooks after which to stop.
pub struct Stop<'a> {
    /// Polled between attachments; true means stop attaching.
    pub requested: &'a (dyn Fn() -> bool + Sync),
    /// Attach at most this many hooks (tracepoints count first).
    pub max_hooks: Option<usize>,
}

impl std::fmt::Debug for Stop<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("max_hooks", &self.max_hooks)
            .finish_non_exhaustive()
    }
}

/// Loaded, attached programs. Dropping detaches everything (tc first).
pub struct Tracer<'obj> {
    // Field order is drop order: tc attachments, tracepoint links, then
    // the programs.
    _tc: TcSet,
    _links: Vec<Link>,
    skel: PodtraceSkel<'obj>,
    packets: PacketsSkel<'obj>,
    hooks: Vec<Hook>,
    features: Features,
}

impl std::fmt::Debug for Tracer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl<'obj> Tracer<'obj> {
    /// Both halves together; hooks in order: tracepoints, then interfaces.
    pub fn new(tracepoints: Tracepoints<'obj>, packets: Packets<'obj>) -> Tracer<'obj> {
        let Tracepoints {
            links,
            skel,
            mut hooks,
            features,
        } = tracepoints;
        let Packets { tc, skel: packets } = packets;
        hooks.extend(tc.hooks.iter().cloned());
        Tracer {
            _tc: tc,
            _links: links,
            skel,
            packets,
            hooks,
            features,
        }
    }

    /// What the kernel offered and the tracer uses.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The hooks attached so far.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// A ring buffer that hands each event to `on_event`, with the packet
    /// bytes it carries (empty when none: see [`Config::snaplen`]).
    pub fn ring_buffer<F>(&self, mut on_event: F) -> Result<RingBuffer<'obj>, Error>
    where
        F: FnMut(&types::pt_event, &[u8]) + 'obj,
    {
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, move |data: &[u8]| {
                let mut ev = types::pt_event::default();
                if plain::copy_from_bytes(&mut ev, data).is_ok() {
                    on_event(&ev, payload(&ev, data));
                }
                0
            })
            .map_err(bpf_err("set up the ring buffer"))?;
        builder.build().map_err(bpf_err("set up the ring buffer"))
    }

    /// Runs of the tracepoint programs the kernel skipped since load and
    /// nothing made up for (see [`recursion`]): each may have carried an
    /// event.
    pub fn skipped_total(&self) -> u64 {
        recursion::skipped(&self.skel)
    }

    /// Events the kernel could not queue since load (all CPUs).
    pub fn lost_total(&self) -> u64 {
        maps::sum_over_cpus(&self.skel.maps.lost)
    }

    /// The kernel's per-flow counters, with the counts the CPUs' flow
    /// caches still hold (see `flow_cache` in packets.bpf.c) added in.
    pub fn flows(&self) -> Vec<(types::pt_flow_key, types::pt_flow_stats)> {
        maps::read_flows(&self.skel.maps.flows, &self.packets.maps.flow_cache)
    }
}

/// What a ring record carries after its event `ev`: an ICMP error's
/// `pt_icmp_info` for a `pt_icmp`; the packet bytes when the record is a
/// `pt_packet` (longer than its header); else nothing.
fn payload<'a>(ev: &types::pt_event, record: &'a [u8]) -> &'a [u8] {
    use crate::bpf::packets::types::pt_packet;
    use types::pt_icmp;
    if u32::from(ev.kind) == types::pt_kind::PT_ICMP.0 {
        return record
            .get(std::mem::offset_of!(pt_icmp, icmp)..)
            .unwrap_or_default();
    }
    let head = std::mem::offset_of!(pt_packet, data);
    let at = std::mem::offset_of!(pt_packet, caplen);
    let Some(caplen) = record.get(at..at + 4) else {
        return &[];
    };
    let caplen = u32::from_ne_bytes(caplen.try_into().expect("4 bytes")) as usize;
    record
        .get(head..)
        .map_or(&[], |d| &d[..caplen.min(d.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_carries_payload_only_past_the_event() {
        let packet = types::pt_event {
            kind: types::pt_kind::PT_PACKET.0 as u8,
            ..Default::default()
        };
        let payload = |rec: &[u8]| payload(&packet, rec).to_vec();
        let event = vec![0u8; std::mem::size_of::<types::pt_event>()];
        assert!(payload(&event).is_empty());
        let head = std::mem::offset_of!(crate::bpf::packets::types::pt_packet, data);
        let at = std::mem::offset_of!(crate::bpf::packets::types::pt_packet, caplen);
        let mut rec = vec![0u8; head + 5];
        rec[at..at + 4].copy_from_slice(&3u32.to_ne_bytes());
        rec[head..].copy_from_slice(b"abcde");
        assert_eq!(payload(&rec), b"abc");
        // A caplen past the record's end is cut to the record.
        rec[at..at + 4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(payload(&rec), b"abcde");
        assert_eq!(MAX_SNAPLEN, 16384);
    }

    #[test]
    fn an_icmp_record_carries_its_details() {
        let icmp = types::pt_event {
            kind: types::pt_kind::PT_ICMP.0 as u8,
            ..Default::default()
        };
        let head = std::mem::size_of::<types::pt_event>();
        let mut rec = vec![0u8; std::mem::size_of::<types::pt_icmp>()];
        rec[head] = 7;
        let tail = payload(&icmp, &rec);
        assert_eq!(tail.len(), std::mem::size_of::<types::pt_icmp_info>());
        assert_eq!(tail[0], 7);
    }
}

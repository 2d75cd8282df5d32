// SPDX-License-Identifier: Apache-2.0
//! The packet programs (`bpf/packets.bpf.c`), loaded on the shared maps
//! and attached to the pods' host-side interfaces.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, AsRawFd as _};

use libbpf_rs::skel::{OpenSkel as _, SkelBuilder as _};
use libbpf_rs::OpenObject;

use super::log::load_error;
use super::maps::{reuse, reuse_shared_maps, set_shared_rodata, SharedMaps};
use super::tc::TcSet;
use super::{bpf_err, Config, Error, Iface, Stop, TcMode};
use crate::abi::ip_key;
use crate::bpf::packets::{PacketsSkel, PacketsSkelBuilder};

/// The packet programs, loaded and attached to the pods' interfaces.
pub struct Packets<'obj> {
    // Field order is drop order: attachments before the programs.
    pub(super) tc: TcSet,
    pub(super) skel: PacketsSkel<'obj>,
}

impl<'obj> Packets<'obj> {
    /// Opens the packet object on the shared maps, loads it and attaches
    /// it to both directions of every interface. Meant for its own thread,
    /// next to [`OpenTracepoints::load`]: a tcx attach mostly waits for an
    /// RCU grace period, a load mostly keeps the verifier busy.
    pub fn start(
        storage: &'obj mut MaybeUninit<OpenObject>,
        shared: &SharedMaps,
        cfg: &Config,
        ifaces: &[Iface],
        mode: TcMode,
        stop: &Stop<'_>,
    ) -> Result<Packets<'obj>, Error> {
        let started = std::time::Instant::now();
        let mut open = PacketsSkelBuilder::default()
            .open(storage)
            .map_err(bpf_err("open the BPF object"))?;
        let rodata = set_shared_rodata!(open, cfg);
        rodata.trace_packets = u8::from(cfg.packets);
        rodata.dns_snaplen = if cfg.dns {
            crate::runner_args::DEFAULT_SNAPLEN
        } else {
            0
        };
        reuse_shared_maps!(open, shared);
        let skel = open.load().map_err(load_error)?;
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "loaded the packet programs"
        );
        let ingress_fd = skel.progs.pt_tc_ingress.as_fd().as_raw_fd();
        let egress_fd = skel.progs.pt_tc_egress.as_fd().as_raw_fd();
        let tc = TcSet::attach_all(ingress_fd, egress_fd, ifaces, mode, stop)?;
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "attached the packet programs"
        );
        Ok(Packets { tc, skel })
    }
}

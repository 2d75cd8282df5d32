// SPDX-License-Identifier: Apache-2.0
//! The maps: those both objects share, created once; the filters the
//! objects' read-only data hold; reading the counters back.

use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::{bpf_err, Config, Error};
use crate::abi::ip_key;
use crate::bpf::types;

// SAFETY: these are plain-old-data C structs from the skeleton's types
// (integers and byte arrays only), valid for any bit pattern.
unsafe impl plain::Plain for types::pt_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::pt_flow_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::pt_flow_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::set_state_cover {}
// SAFETY: as above.
unsafe impl plain::Plain for types::pt_flow_cache {}
// SAFETY: as above.
unsafe impl plain::Plain for types::pt_icmp_info {}

/// Sets what both open BPF objects' read-only data hold alike (the
/// filters, the wake-up threshold) and evaluates to that data. Macros here
/// because each skeleton has its own generated types.
macro_rules! set_shared_rodata {
    ($open:expr, $cfg:expr) => {{
        let cfg = $cfg;
        let rodata = $open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has read-only data");
        rodata.filter_peers = u8::from(!cfg.peer_ips.is_empty());
        rodata.filter_ports = u8::from(!cfg.ports.is_empty());
        let mut pods = cfg.pod_ips.clone();
        pods.sort_unstable();
        pods.dedup();
        rodata.single_pod = u8::from(pods.len() == 1);
        if let [only] = pods.as_slice() {
            let key = ip_key(*only);
            for (half, bytes) in rodata.the_pod.iter_mut().zip(key.chunks_exact(8)) {
                *half = u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
            }
        }
        if cfg.ring_bytes > 0 {
            rodata.wakeup_bytes = cfg.ring_bytes / 8;
        }
        rodata.snaplen = cfg.snaplen.min(super::MAX_SNAPLEN);
        rodata
    }};
}

/// Hands an open object the maps both objects share (see [`SharedMaps`]).
macro_rules! reuse_shared_maps {
    ($open:expr, $shared:expr) => {{
        let m = &mut $open.maps;
        let [a, b, c, d, e, f, g] = $shared.fds();
        reuse(&mut m.pod_ips, a.0, a.1)?;
        reuse(&mut m.peer_ips, b.0, b.1)?;
        reuse(&mut m.ports, c.0, c.1)?;
        reuse(&mut m.flows, d.0, d.1)?;
        reuse(&mut m.events, e.0, e.1)?;
        reuse(&mut m.lost, f.0, f.1)?;
        reuse(&mut m.socks, g.0, g.1)?;
    }};
}

pub(super) use {reuse_shared_maps, set_shared_rodata};

/// The maps both BPF objects use (filters, flows, the ring buffer, the
/// lost counter, the connecting sockets), created up front from the tracepoint object's definitions
/// (`bpf/shared.bpf.h`), so both objects can load at the same time: each is
/// handed these fds instead of creating its own (libbpf map reuse).
#[derive(Debug)]
pub struct SharedMaps {
    pod_ips: MapHandle,
    peer_ips: MapHandle,
    ports: MapHandle,
    flows: MapHandle,
    events: MapHandle,
    lost: MapHandle,
    socks: MapHandle,
}

fn create_like(map: &libbpf_rs::OpenMapMut<'_>) -> Result<MapHandle, Error> {
    let name = map.name().to_string_lossy().into_owned();
    // SAFETY: bpf_map_create_opts is plain C data; all-zero is its default.
    let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _;
    opts.map_flags = map.map_flags();
    MapHandle::create(
        map.map_type(),
        Some(&name),
        map.key_size(),
        map.value_size(),
        map.max_entries(),
        &opts,
    )
    .map_err(bpf_err(format!("create map {name}")))
}

impl SharedMaps {
    pub(super) fn create(
        maps: &crate::bpf::OpenPodtraceMaps<'_>,
        cfg: &Config,
    ) -> Result<SharedMaps, Error> {
        let shared = SharedMaps {
            pod_ips: create_like(&maps.pod_ips)?,
            peer_ips: create_like(&maps.peer_ips)?,
            ports: create_like(&maps.ports)?,
            flows: create_like(&maps.flows)?,
            events: create_like(&maps.events)?,
            lost: create_like(&maps.lost)?,
            socks: create_like(&maps.socks)?,
        };
        let one = [1u8];
        for ip in &cfg.pod_ips {
            shared
                .pod_ips
                .update(&ip_key(*ip), &one, MapFlags::ANY)
                .map_err(bpf_err(format!("add pod IP {ip} to the filter")))?;
        }
        for ip in &cfg.peer_ips {
            shared
                .peer_ips
                .update(&ip_key(*ip), &one, MapFlags::ANY)
                .map_err(bpf_err(format!("add peer IP {ip} to the filter")))?;
        }
        for port in &cfg.ports {
            shared
                .ports
                .update(&port.to_ne_bytes(), &one, MapFlags::ANY)
                .map_err(bpf_err(format!("add port {port} to the filter")))?;
        }
        Ok(shared)
    }

    /// (name, fd) of each shared map, for [`libbpf_rs::OpenMapMut::reuse_fd`].
    pub(super) fn fds(&self) -> [(&'static str, BorrowedFd<'_>); 7] {
        [
            ("pod_ips", self.pod_ips.as_fd()),
            ("peer_ips", self.peer_ips.as_fd()),
            ("ports", self.ports.as_fd()),
            ("flows", self.flows.as_fd()),
            ("events", self.events.as_fd()),
            ("lost", self.lost.as_fd()),
            ("socks", self.socks.as_fd()),
        ]
    }
}

pub(super) fn reuse(
    map: &mut libbpf_rs::OpenMapMut<'_>,
    name: &str,
    fd: BorrowedFd<'_>,
) -> Result<(), Error> {
    map.reuse_fd(fd)
        .map_err(bpf_err(format!("share map {name} between the objects")))
}

/// Whether two flow keys name the same flow (their padding aside).
fn flow_key_eq(a: &types::pt_flow_key, b: &types::pt_flow_key) -> bool {
    (a.client.addr, a.server.addr, a.server_port, a.proto)
        == (b.client.addr, b.server.addr, b.server_port, b.proto)
}

/// The sum over CPUs of the first u64 of a one-entry per-CPU array's value.
pub(super) fn sum_over_cpus(map: &impl libbpf_rs::MapCore) -> u64 {
    match map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu
            .iter()
            .filter_map(|v| v.get(..8))
            .map(|v| u64::from_ne_bytes(v.try_into().unwrap()))
            .sum(),
        _ => 0,
    }
}

/// The kernel's per-flow counters, with the counts the CPUs' flow
/// caches still hold (see `flow_cache` in packets.bpf.c) added in.
pub(super) fn read_flows(
    map: &impl MapCore,
    flow_cache: &impl MapCore,
) -> Vec<(types::pt_flow_key, types::pt_flow_stats)> {
    let mut out = Vec::new();
    for key in map.keys() {
        let Ok(Some(val)) = map.lookup(&key, MapFlags::ANY) else {
            continue;
        };
        let mut k = types::pt_flow_key::default();
        let mut v = types::pt_flow_stats::default();
        if plain::copy_from_bytes(&mut k, &key).is_ok()
            && plain::copy_from_bytes(&mut v, &val).is_ok()
        {
            out.push((k, v));
        }
    }
    let per_cpu = flow_cache.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY);
    for val in per_cpu.ok().flatten().unwrap_or_default() {
        let mut c = types::pt_flow_cache::default();
        if plain::copy_from_bytes(&mut c, &val).is_err() || c.valid == 0 {
            continue;
        }
        let p = &c.pending;
        let at = match out.iter().position(|(k, _)| flow_key_eq(k, &c.key)) {
            Some(i) => i,
            None => {
                out.push((c.key, types::pt_flow_stats::default()));
                out.len() - 1
            }
        };
        let v = &mut out[at].1;
        v.packets_sent += p.packets_sent;
        v.bytes_sent += p.bytes_sent;
        v.packets_received += p.packets_received;
        v.bytes_received += p.bytes_received;
    }
    out
}

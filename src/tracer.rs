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

use std::fmt::Write as _;
use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel as _, SkelBuilder as _};
use libbpf_rs::{Link, MapCore as _, MapFlags, MapHandle, OpenObject, PrintLevel, RingBuffer};

use crate::bpf::packets::{PacketsSkel, PacketsSkelBuilder};
use crate::bpf::{types, OpenPodtraceSkel, PodtraceSkel, PodtraceSkelBuilder};
use crate::event::Hook;

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

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "podtrace-runner needs root, or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN \
         (run it with sudo, or as a privileged pod)"
    )]
    NotPrivileged,
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): podtrace needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or later)"
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
    /// Network namespace inodes whose sockets and drops are in scope.
    pub netns: Vec<u64>,
    /// Ring buffer size in bytes (a power of two of at least a page); 0
    /// keeps the default. Costs twice this in resident memory.
    pub ring_bytes: u32,
    /// `skb_drop_reason` values the kernel does not report as drops (see
    /// [`crate::drop_reason::IGNORED`]); at most 4.
    pub ignored_drop_reasons: Vec<u32>,
}

/// How to attach packet programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcMode {
    /// tcx when the kernel has it, clsact otherwise.
    #[default]
    Auto,
    Tcx,
    Clsact,
}

/// An address as the BPF side keys it: IPv6, or IPv4-mapped IPv6.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

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
        rodata
    }};
}

/// Hands an open object the maps both objects share (see [`SharedMaps`]).
macro_rules! reuse_shared_maps {
    ($open:expr, $shared:expr) => {{
        let m = &mut $open.maps;
        let [a, b, c, d, e, f] = $shared.fds();
        reuse(&mut m.pod_ips, a.0, a.1)?;
        reuse(&mut m.peer_ips, b.0, b.1)?;
        reuse(&mut m.ports, c.0, c.1)?;
        reuse(&mut m.flows, d.0, d.1)?;
        reuse(&mut m.events, e.0, e.1)?;
        reuse(&mut m.lost, f.0, f.1)?;
    }};
}

/// The inverse of [`ip_key`].
pub fn ip_from_key(key: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Fails with a clear message when tracing cannot work here at all.
pub fn preflight() -> Result<(), Error> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Error::NoBtf);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    // Not root: accept the capabilities that are enough.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |c: u32| eff & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) && has(CAP_NET_ADMIN) && has(CAP_BPF) && has(CAP_PERFMON) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);
/// libbpf's recent messages, for the error when a load fails.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());
/// Keep at most this much of libbpf's log (the verifier's tail matters).
const LOG_KEEP: usize = 64 * 1024;

fn libbpf_print(level: PrintLevel, msg: String) {
    if VERBOSE.load(Ordering::Relaxed) {
        eprint!("{msg}");
    } else if level == PrintLevel::Debug {
        return;
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        if log.len() > LOG_KEEP {
            let cut = log.len() - LOG_KEEP / 2;
            let cut = (cut..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(0);
            log.drain(..cut);
        }
        log.push_str(&msg);
    }
}

/// Routes libbpf's messages: everything to stderr when `verbose`, else
/// kept (warnings only) for error reports.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    let level = if verbose {
        PrintLevel::Debug
    } else {
        PrintLevel::Info
    };
    libbpf_rs::set_print(Some((level, libbpf_print)));
}

/// One packet-program attachment; detached when dropped. A tracer drops
/// them newest first, so filters go before the qdisc they sit on.
#[derive(Debug)]
enum TcAttachment {
    /// A tcx link: closing it detaches.
    Tcx(#[allow(dead_code)] OwnedFd),
    /// A clsact filter we added.
    Filter { hook: FilterHook, ifindex: i32 },
    /// A clsact qdisc we created (never one that was there before us).
    Qdisc { ifindex: i32 },
}

/// A libbpf tc hook, movable to another thread.
#[derive(Debug)]
struct FilterHook(libbpf_rs::TcHook);

// SAFETY: a TcHook is plain data (ifindex, handle, priority, fds); its
// only pointer, `bpf_tc_hook.qdisc` (a custom qdisc's name), is never set
// here (null), so nothing is shared with the thread that made it.
unsafe impl Send for FilterHook {}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        match self {
            TcAttachment::Tcx(_) => {}
            TcAttachment::Filter { hook, ifindex } => {
                if let Err(e) = hook.0.detach() {
                    tracing::warn!("detaching tc filter from ifindex {ifindex}: {e}");
                }
            }
            TcAttachment::Qdisc { ifindex } => destroy_clsact(*ifindex),
        }
    }
}

/// Handle and priority of our clsact filters: first in line, so the
/// CNI's own filters cannot redirect packets before we count them.
const TC_HANDLE: u32 = 0x7074;
/// The kernel-internal ENOTSUPP some BPF paths return (not in libc).
const ENOTSUPP: i32 = 524;
const TC_PRIORITY: u32 = 1;

fn clsact_hook(ifindex: i32, point: libbpf_sys::bpf_tc_attach_point) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex,
        attach_point: point,
        ..Default::default()
    }
}

/// Creates the clsact qdisc; true if we created it, false if it existed.
fn create_clsact(ifindex: i32) -> io::Result<bool> {
    let mut hook = clsact_hook(
        ifindex,
        libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS,
    );
    // SAFETY: hook is a valid, sized bpf_tc_hook.
    let err = unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) };
    match err {
        0 => Ok(true),
        e if -e == libc::EEXIST => Ok(false),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

fn destroy_clsact(ifindex: i32) {
    let mut hook = clsact_hook(
        ifindex,
        libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS,
    );
    // SAFETY: hook is a valid, sized bpf_tc_hook.
    let err = unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut hook) };
    if err != 0 && -err != libc::ENOENT && -err != libc::ENODEV {
        tracing::warn!(
            "removing clsact qdisc from ifindex {ifindex}: {}",
            io::Error::from_raw_os_error(-err)
        );
    }
}

/// Attaches `prog` as the first tcx program of `ifindex`.
fn tcx_attach(prog_fd: i32, ifindex: u32, ingress: bool) -> io::Result<OwnedFd> {
    let attach = if ingress {
        libbpf_sys::BPF_TCX_INGRESS
    } else {
        libbpf_sys::BPF_TCX_EGRESS
    };
    // SAFETY: bpf_link_create_opts is plain C data; all-zero is its default.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    // Before everything else (relative_fd 0): see every packet the CNI sees.
    opts.flags = libbpf_sys::BPF_F_BEFORE;
    // SAFETY: valid fds/ifindex and a sized opts struct.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog_fd, ifindex as i32, attach, &opts) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh link fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The maps both BPF objects use (filters, flows, the ring buffer, the
/// lost counter), created up front from the tracepoint object's definitions
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
    fn create(maps: &crate::bpf::OpenPodtraceMaps<'_>, cfg: &Config) -> Result<SharedMaps, Error> {
        let shared = SharedMaps {
            pod_ips: create_like(&maps.pod_ips)?,
            peer_ips: create_like(&maps.peer_ips)?,
            ports: create_like(&maps.ports)?,
            flows: create_like(&maps.flows)?,
            events: create_like(&maps.events)?,
            lost: create_like(&maps.lost)?,
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
    fn fds(&self) -> [(&'static str, BorrowedFd<'_>); 6] {
        [
            ("pod_ips", self.pod_ips.as_fd()),
            ("peer_ips", self.peer_ips.as_fd()),
            ("ports", self.ports.as_fd()),
            ("flows", self.flows.as_fd()),
            ("events", self.events.as_fd()),
            ("lost", self.lost.as_fd()),
        ]
    }
}

fn reuse(map: &mut libbpf_rs::OpenMapMut<'_>, name: &str, fd: BorrowedFd<'_>) -> Result<(), Error> {
    map.reuse_fd(fd)
        .map_err(bpf_err(format!("share map {name} between the objects")))
}

/// The tracepoint object, opened with its filters set and on the shared
/// maps, not loaded yet.
pub struct OpenTracepoints<'obj> {
    open: OpenPodtraceSkel<'obj>,
}

impl std::fmt::Debug for OpenTracepoints<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTracepoints").finish_non_exhaustive()
    }
}

impl<'obj> OpenTracepoints<'obj> {
    /// Opens the tracepoint object, sets its filters, and creates (and
    /// fills) the maps it shares with the packet object.
    pub fn open(
        storage: &'obj mut MaybeUninit<OpenObject>,
        cfg: &Config,
    ) -> Result<(OpenTracepoints<'obj>, SharedMaps), Error> {
        let mut open = PodtraceSkelBuilder::default()
            .open(storage)
            .map_err(bpf_err("open the BPF object"))?;
        set_shared_rodata!(open, cfg);
        if cfg.ring_bytes > 0 {
            open.maps
                .events
                .set_max_entries(cfg.ring_bytes)
                .map_err(bpf_err("size the ring buffer"))?;
        }
        let shared = SharedMaps::create(&open.maps, cfg)?;
        reuse_shared_maps!(open, shared);
        Ok((OpenTracepoints { open }, shared))
    }

    /// Loads the programs with `cfg.ignored_drop_reasons`, scopes them to
    /// `cfg.netns` and attaches them (at most `stop.max_hooks`).
    pub fn load(mut self, cfg: &Config, stop: &Stop<'_>) -> Result<Tracepoints<'obj>, Error> {
        let started = std::time::Instant::now();
        let rodata = self
            .open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has read-only data");
        let mut scope = cfg.netns.clone();
        scope.sort_unstable();
        scope.dedup();
        if scope.len() <= rodata.few_netns.len() && !scope.contains(&0) {
            // Unused slots repeat the first: never 0, so never a match
            // for anything but a namespace in scope.
            for (slot, ns) in rodata.few_netns.iter_mut().zip(scope.iter().cycle()) {
                *slot = *ns as u32;
            }
        }
        let slots = rodata.ignored_drop_reasons.len();
        if cfg.ignored_drop_reasons.len() > slots {
            tracing::warn!("only {slots} drop reasons can be ignored");
        }
        for (slot, r) in rodata
            .ignored_drop_reasons
            .iter_mut()
            .zip(&cfg.ignored_drop_reasons)
        {
            *slot = *r;
        }
        // pt_set_state_nested needs the bpf_link iterator (Linux 6.0) to
        // find pt_set_state's recursion count and bpf_rdonly_cast (6.2) to
        // read it; before that they stay out and skipped runs are
        // reported as lost.
        let cover = release_at_least(&node_and_kernel().1, 6, 2);
        if !cover {
            self.open.progs.pt_set_state_nested.set_autoload(false);
            self.open.progs.pt_find_set_state.set_autoload(false);
            self.open.progs.pt_find_maps.set_autoload(false);
        }
        clear_log();
        let skel = self.open.load().map_err(load_error)?;
        let one = [1u8];
        for ns in &cfg.netns {
            // Namespace inodes are 32-bit (proc_inum) in the kernel.
            skel.maps
                .netns_scope
                .update(&(*ns as u32).to_ne_bytes(), &one, MapFlags::ANY)
                .map_err(bpf_err("add a network namespace to the scope"))?;
        }
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "loaded the tracepoint programs"
        );
        let mut links = Vec::with_capacity(TRACEPOINTS);
        let mut hooks = Vec::with_capacity(TRACEPOINTS);
        {
            let progs = &skel.progs;
            let tps: [(&libbpf_rs::ProgramMut<'_>, &str, &str); TRACEPOINTS] = [
                (&progs.pt_set_state, "sock", "inet_sock_set_state"),
                (&progs.pt_set_state_nested, "sock", "inet_sock_set_state"),
                (&progs.pt_retransmit, "tcp", "tcp_retransmit_skb"),
                (&progs.pt_send_reset, "tcp", "tcp_send_reset"),
                (&progs.pt_receive_reset, "tcp", "tcp_receive_reset"),
                (&progs.pt_kfree_skb, "skb", "kfree_skb"),
            ];
            for (prog, group, name) in tps {
                if stop.max_hooks.is_some_and(|n| hooks.len() >= n) {
                    break;
                }
                if !prog.autoload() {
                    continue;
                }
                if std::ptr::eq(prog, &progs.pt_set_state_nested) {
                    // pt_set_state is attached: look up its count first.
                    if !cover_set_state(&skel) {
                        continue;
                    }
                }
                // BTF tracepoints (tp_btf) carry their target in the
                // program; the raw one is attached by name.
                let btf = prog.prog_type() == libbpf_rs::ProgramType::Tracing;
                let link = if btf {
                    prog.attach()
                } else {
                    prog.attach_raw_tracepoint(name)
                }
                .map_err(bpf_err(format!("attach to tracepoint {group}:{name}")))?;
                links.push(link);
                let kind = if btf {
                    "btf_tracepoint"
                } else {
                    "raw_tracepoint"
                };
                hooks.push(Hook {
                    kind: format!("{kind}/{group}/{name}"),
                    iface: None,
                });
            }
        }
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "attached the tracepoints"
        );
        Ok(Tracepoints { skel, links, hooks })
    }
}

/// The tracepoint programs, loaded and attached.
pub struct Tracepoints<'obj> {
    // Field order is drop order: links before the programs.
    links: Vec<Link>,
    skel: PodtraceSkel<'obj>,
    hooks: Vec<Hook>,
}

/// The packet programs, loaded and attached to the pods' interfaces.
pub struct Packets<'obj> {
    // Field order is drop order: attachments before the programs.
    tc: TcSet,
    skel: PacketsSkel<'obj>,
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

/// Tracepoints we attach: (group, name), in the programs' order below.
const TRACEPOINTS: usize = 6;

/// The tc attachments made so far; dropping it detaches them newest first.
#[derive(Debug, Default)]
struct TcSet {
    attachments: Vec<TcAttachment>,
    hooks: Vec<Hook>,
    mode: Option<TcMode>,
}

impl Drop for TcSet {
    fn drop(&mut self) {
        // Newest first: filters before the qdisc we created for them.
        while let Some(a) = self.attachments.pop() {
            drop(a);
        }
    }
}

impl TcSet {
    /// Attaches both programs to every interface, stopping early when asked.
    fn attach_all(
        ingress_fd: i32,
        egress_fd: i32,
        ifaces: &[Iface],
        mode: TcMode,
        stop: &Stop<'_>,
    ) -> Result<TcSet, Error> {
        let mut set = TcSet::default();
        let limit = stop
            .max_hooks
            .map_or(usize::MAX, |n| n.saturating_sub(TRACEPOINTS));
        for iface in ifaces {
            if (stop.requested)() || set.hooks.len() >= limit {
                break;
            }
            set.attach(ingress_fd, egress_fd, iface, mode)?;
        }
        Ok(set)
    }

    /// Attaches the packet programs to both directions of `iface`.
    fn attach(
        &mut self,
        ingress_fd: i32,
        egress_fd: i32,
        iface: &Iface,
        mode: TcMode,
    ) -> Result<(), Error> {
        let (ifname, ifindex) = (iface.name.as_str(), iface.index);
        let err = |source| Error::AttachTc {
            iface: ifname.to_owned(),
            source,
        };
        let use_tcx = match (mode, self.mode) {
            (TcMode::Clsact, _) | (TcMode::Auto, Some(TcMode::Clsact)) => false,
            (TcMode::Tcx, _) | (TcMode::Auto, Some(_)) => true,
            (TcMode::Auto, None) => {
                // Probe with the first attachment: EINVAL/EOPNOTSUPP mean a
                // kernel without tcx (before 6.6).
                match tcx_attach(ingress_fd, ifindex, true) {
                    Ok(fd) => {
                        self.mode = Some(TcMode::Tcx);
                        self.attachments.push(TcAttachment::Tcx(fd));
                        self.hooks.push(Hook {
                            kind: "tcx/ingress".into(),
                            iface: Some(ifname.to_owned()),
                        });
                        let fd = tcx_attach(egress_fd, ifindex, false).map_err(err)?;
                        self.attachments.push(TcAttachment::Tcx(fd));
                        self.hooks.push(Hook {
                            kind: "tcx/egress".into(),
                            iface: Some(ifname.to_owned()),
                        });
                        return Ok(());
                    }
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
                        ) =>
                    {
                        tracing::debug!("no tcx ({e}); using clsact");
                        self.mode = Some(TcMode::Clsact);
                        false
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        };
        if use_tcx {
            for (fd, ingress, kind) in [
                (ingress_fd, true, "tcx/ingress"),
                (egress_fd, false, "tcx/egress"),
            ] {
                let link = tcx_attach(fd, ifindex, ingress).map_err(err)?;
                self.attachments.push(TcAttachment::Tcx(link));
                self.hooks.push(Hook {
                    kind: kind.into(),
                    iface: Some(ifname.to_owned()),
                });
            }
            return Ok(());
        }
        if create_clsact(ifindex as i32).map_err(err)? {
            self.attachments.push(TcAttachment::Qdisc {
                ifindex: ifindex as i32,
            });
        }
        for (fd, point, kind) in [
            (ingress_fd, libbpf_rs::TC_INGRESS, "tc/ingress"),
            (egress_fd, libbpf_rs::TC_EGRESS, "tc/egress"),
        ] {
            // SAFETY: the fd is a loaded program's, owned by the packet
            // skeleton, which outlives every attach (Tracer::start joins
            // this thread before returning); the builder only borrows it.
            let prog = unsafe { BorrowedFd::borrow_raw(fd) };
            // Replace: a filter with our handle and priority can only be
            // one a killed runner left behind; we take it over and remove
            // it on exit.
            let hook = libbpf_rs::TcHookBuilder::new(prog)
                .ifindex(ifindex as i32)
                .replace(true)
                .handle(TC_HANDLE)
                .priority(TC_PRIORITY)
                .hook(point)
                .attach()
                .map_err(|e| err(io::Error::other(e.to_string())))?;
            self.attachments.push(TcAttachment::Filter {
                hook: FilterHook(hook),
                ifindex: ifindex as i32,
            });
            self.hooks.push(Hook {
                kind: kind.into(),
                iface: Some(ifname.to_owned()),
            });
        }
        Ok(())
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
        } = tracepoints;
        let Packets { tc, skel: packets } = packets;
        hooks.extend(tc.hooks.iter().cloned());
        Tracer {
            _tc: tc,
            _links: links,
            skel,
            packets,
            hooks,
        }
    }

    /// The hooks attached so far.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// A ring buffer that hands each event to `on_event`.
    pub fn ring_buffer<F>(&self, mut on_event: F) -> Result<RingBuffer<'obj>, Error>
    where
        F: FnMut(&types::pt_event) + 'obj,
    {
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, move |data: &[u8]| {
                let mut ev = types::pt_event::default();
                if plain::copy_from_bytes(&mut ev, data).is_ok() {
                    on_event(&ev);
                }
                0
            })
            .map_err(bpf_err("set up the ring buffer"))?;
        builder.build().map_err(bpf_err("set up the ring buffer"))
    }

    /// Runs of the tracepoint programs the kernel skipped since load and
    /// nothing made up for. The kernel runs a program at most once per CPU
    /// at a time, so when a tracepoint fires in an interrupt while the same
    /// program is running on that CPU (a softirq's TCP state change landing
    /// inside a process-context one), that run is dropped and only counted
    /// in the program's `recursion_misses`. For state changes
    /// `pt_set_state_nested` does exactly those runs instead (it reads the
    /// count the kernel tests) and counts them (`covered`), so this is 0
    /// for them unless the cover could not be set up (Linux < 6.2). Its own
    /// misses are not losses: it is interrupted only while pt_set_state is
    /// not running, so pt_set_state does that run. What is left (the
    /// other tracepoints) may each have carried an event. tc programs are
    /// never skipped this way. Always 0 before Linux 5.12, which does not
    /// count misses.
    pub fn skipped_total(&self) -> u64 {
        let p = &self.skel.progs;
        let misses: u64 = [
            &p.pt_set_state,
            &p.pt_retransmit,
            &p.pt_send_reset,
            &p.pt_receive_reset,
            &p.pt_kfree_skb,
        ]
        .iter()
        .map(|prog| recursion_misses(prog.as_fd()))
        .sum();
        misses.saturating_sub(sum_over_cpus(&self.skel.maps.set_state_covered))
    }

    /// Events the kernel could not queue since load (all CPUs).
    pub fn lost_total(&self) -> u64 {
        sum_over_cpus(&self.skel.maps.lost)
    }

    /// The kernel's per-flow counters, with the counts the CPUs' flow
    /// caches still hold (see `flow_cache` in packets.bpf.c) added in.
    pub fn flows(&self) -> Vec<(types::pt_flow_key, types::pt_flow_stats)> {
        let map = &self.skel.maps.flows;
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
        let per_cpu = self
            .packets
            .maps
            .flow_cache
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY);
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
}

/// Fills `set_state_cover` (see podtrace.bpf.c) so pt_set_state_nested
/// can read pt_set_state's per-CPU recursion count: the ids it needs, then
/// the addresses the two iterators find, folded into `bias`. pt_set_state
/// must be attached (its link is how the iterator finds it). False, with a
/// warning, when that fails: skipped runs are then reported as lost.
fn cover_set_state(skel: &PodtraceSkel<'_>) -> bool {
    let found = find_cover_addresses(skel);
    if let Err(e) = &found {
        tracing::warn!(
            "cannot find pt_set_state's recursion count ({e}): \
             skipped state changes will be reported as lost, not made up for"
        );
    }
    found.is_ok()
}

fn find_cover_addresses(skel: &PodtraceSkel<'_>) -> Result<(), libbpf_rs::Error> {
    use std::io::Read as _;
    let map = &skel.maps.set_state_cover;
    let key = 0u32.to_ne_bytes();
    let write = |c: &types::set_state_cover| {
        // SAFETY: plain C integers with no padding (see the Plain impls).
        map.update(&key, unsafe { plain::as_bytes(c) }, MapFlags::ANY)
    };
    let mut c = types::set_state_cover {
        prog_id: libbpf_rs::Program::id_from_fd(skel.progs.pt_set_state.as_fd())?,
        covered_id: skel.maps.set_state_covered.info()?.info.id,
        self_id: map.info()?.info.id,
        ..Default::default()
    };
    write(&c)?;
    for prog in [&skel.progs.pt_find_maps, &skel.progs.pt_find_set_state] {
        let link = prog.attach()?;
        let mut sink = Vec::new();
        libbpf_rs::Iter::new(&link)?.read_to_end(&mut sink)?;
    }
    let raw = map
        .lookup(&key, MapFlags::ANY)?
        .ok_or_else(|| libbpf_rs::Error::from(io::Error::other("no entry")))?;
    plain::copy_from_bytes(&mut c, &raw)
        .map_err(|_| libbpf_rs::Error::from(io::Error::other("entry size")))?;
    if c.active == 0 || c.covered_pptr == 0 || c.self_addr == 0 {
        return Err(io::Error::other("an iterator found nothing").into());
    }
    // nested reads (covered on this CPU - this entry) + bias, which is
    // active + this CPU's per-CPU offset.
    c.bias = c
        .active
        .wrapping_add(c.self_addr)
        .wrapping_sub(c.covered_pptr);
    write(&c)
}

/// This machine's host name and kernel release, from uname(2).
pub fn node_and_kernel() -> (String, String) {
    // SAFETY: a zeroed utsname is a valid buffer for uname(2) to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is valid for writes.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().map(|c| *c as u8).collect();
        crate::decode::c_str(&bytes).into_owned()
    };
    (field(&u.nodename), field(&u.release))
}

/// Whether a kernel release like `6.18.44-fc` is at least `major.minor`
/// (an unreadable one counts as new: the load then says what is missing).
fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(ma)), Some(Ok(mi))) => (ma, mi) >= (major, minor),
        _ => true,
    }
}

fn clear_log() {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.clear();
    }
}

/// Turns a failed load into the verifier error when that is what it was.
fn load_error(e: libbpf_rs::Error) -> Error {
    let log = LIBBPF_LOG.lock().map(|l| l.clone()).unwrap_or_default();
    if let Some(pos) = log.find("failed to load") {
        let before = &log[..pos];
        let prog = before
            .rfind("prog '")
            .map(|i| &before[i + 6..])
            .and_then(|s| s.split('\'').next())
            .unwrap_or("?")
            .to_owned();
        let mut tail = String::new();
        if VERBOSE.load(Ordering::Relaxed) {
            let _ = write!(tail, "\n{log}");
        }
        return Error::Verifier { prog, log: tail };
    }
    Error::Bpf {
        context: "load the BPF programs".into(),
        source: e,
    }
}

/// The kernel's count of a program's skipped runs (see
/// [`Tracer::skipped_total`]); 0 when it cannot be read.
fn recursion_misses(prog: BorrowedFd<'_>) -> u64 {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a valid bpf_prog_info of `len` bytes; with its array
    // pointers zeroed the kernel writes nothing else.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc == 0 {
        info.recursion_misses
    } else {
        0
    }
}

/// Whether two flow keys name the same flow (their padding aside).
fn flow_key_eq(a: &types::pt_flow_key, b: &types::pt_flow_key) -> bool {
    (a.client.addr, a.server.addr, a.server_port, a.proto)
        == (b.client.addr, b.server.addr, b.server_port, b.proto)
}

/// The sum over CPUs of the first u64 of a one-entry per-CPU array's value.
fn sum_over_cpus(map: &impl libbpf_rs::MapCore) -> u64 {
    match map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu
            .iter()
            .filter_map(|v| v.get(..8))
            .map(|v| u64::from_ne_bytes(v.try_into().unwrap()))
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(release_at_least("6.18.44-fc-v669", 6, 0));
        assert!(release_at_least("6.0.0", 6, 0));
        assert!(!release_at_least("5.15.0-91-generic", 6, 0));
        assert!(!release_at_least("5.19-rc1", 6, 0));
        assert!(release_at_least("10.1", 6, 0));
        // Unreadable: assume new, the load reports what is missing.
        assert!(release_at_least("weird", 6, 0));
    }
}

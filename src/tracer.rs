// SPDX-License-Identifier: Apache-2.0
//! Loads the BPF programs with the runner's filters, attaches them, and
//! detaches everything again when dropped.
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
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel as _, SkelBuilder as _};
use libbpf_rs::{Link, MapCore as _, MapFlags, OpenObject, PrintLevel, RingBuffer};

use crate::bpf::{types, PodtraceSkel, PodtraceSkelBuilder};
use crate::event::Hook;

// SAFETY: these are plain-old-data C structs from the skeleton's types
// (integers and byte arrays only), valid for any bit pattern.
unsafe impl plain::Plain for types::pt_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::pt_flow_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::pt_flow_stats {}

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
    Filter {
        hook: libbpf_rs::TcHook,
        ifindex: i32,
    },
    /// A clsact qdisc we created (never one that was there before us).
    Qdisc { ifindex: i32 },
}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        match self {
            TcAttachment::Tcx(_) => {}
            TcAttachment::Filter { hook, ifindex } => {
                if let Err(e) = hook.detach() {
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

/// Loaded, attached programs. Dropping detaches everything (tc first).
pub struct Tracer<'obj> {
    // Field order is drop order: attachments before the programs.
    tc: Vec<TcAttachment>,
    links: Vec<Link>,
    skel: PodtraceSkel<'obj>,
    hooks: Vec<Hook>,
    tc_mode: Option<TcMode>,
}

impl Drop for Tracer<'_> {
    fn drop(&mut self) {
        // Newest first: filters before the qdisc we created for them.
        while let Some(a) = self.tc.pop() {
            drop(a);
        }
    }
}

impl std::fmt::Debug for Tracer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl<'obj> Tracer<'obj> {
    /// Opens the object, sets the filters and loads it into the kernel.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        cfg: &Config,
    ) -> Result<Tracer<'obj>, Error> {
        let builder = PodtraceSkelBuilder::default();
        let mut open = builder
            .open(storage)
            .map_err(bpf_err("open the BPF object"))?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has read-only data");
        rodata.filter_peers = u8::from(!cfg.peer_ips.is_empty());
        rodata.filter_ports = u8::from(!cfg.ports.is_empty());
        rodata.trace_packets = u8::from(cfg.packets);
        if cfg.ring_bytes > 0 {
            rodata.wakeup_bytes = cfg.ring_bytes / 8;
            open.maps
                .events
                .set_max_entries(cfg.ring_bytes)
                .map_err(bpf_err("size the ring buffer"))?;
        }
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            log.clear();
        }
        let skel = open.load().map_err(load_error)?;
        let one = [1u8];
        for ip in &cfg.pod_ips {
            skel.maps
                .pod_ips
                .update(&ip_key(*ip), &one, MapFlags::ANY)
                .map_err(bpf_err(format!("add pod IP {ip} to the filter")))?;
        }
        for ip in &cfg.peer_ips {
            skel.maps
                .peer_ips
                .update(&ip_key(*ip), &one, MapFlags::ANY)
                .map_err(bpf_err(format!("add peer IP {ip} to the filter")))?;
        }
        for port in &cfg.ports {
            skel.maps
                .ports
                .update(&port.to_ne_bytes(), &one, MapFlags::ANY)
                .map_err(bpf_err(format!("add port {port} to the filter")))?;
        }
        for ns in &cfg.netns {
            // Namespace inodes are 32-bit (proc_inum) in the kernel.
            skel.maps
                .netns_scope
                .update(&(*ns as u32).to_ne_bytes(), &one, MapFlags::ANY)
                .map_err(bpf_err("add a network namespace to the scope"))?;
        }
        Ok(Tracer {
            tc: Vec::new(),
            links: Vec::new(),
            skel,
            hooks: Vec::new(),
            tc_mode: None,
        })
    }

    /// Attaches every tracepoint program.
    pub fn attach_tracepoints(&mut self) -> Result<(), Error> {
        let progs = &self.skel.progs;
        let tps: [(&libbpf_rs::ProgramMut<'_>, &str, &str); 5] = [
            (&progs.pt_set_state, "sock", "inet_sock_set_state"),
            (&progs.pt_retransmit, "tcp", "tcp_retransmit_skb"),
            (&progs.pt_send_reset, "tcp", "tcp_send_reset"),
            (&progs.pt_receive_reset, "tcp", "tcp_receive_reset"),
            (&progs.pt_kfree_skb, "skb", "kfree_skb"),
        ];
        for (prog, group, name) in tps {
            let link = prog
                .attach_raw_tracepoint(name)
                .map_err(bpf_err(format!("attach to tracepoint {group}:{name}")))?;
            self.links.push(link);
            self.hooks.push(Hook {
                kind: format!("raw_tracepoint/{group}/{name}"),
                iface: None,
            });
        }
        Ok(())
    }

    /// Attaches the packet programs to both directions of `ifname`.
    pub fn attach_tc(&mut self, ifname: &str, ifindex: u32, mode: TcMode) -> Result<(), Error> {
        let err = |source| Error::AttachTc {
            iface: ifname.to_owned(),
            source,
        };
        let ingress_fd = self.skel.progs.pt_tc_ingress.as_fd().as_raw_fd();
        let egress_fd = self.skel.progs.pt_tc_egress.as_fd().as_raw_fd();
        let use_tcx = match (mode, self.tc_mode) {
            (TcMode::Clsact, _) | (TcMode::Auto, Some(TcMode::Clsact)) => false,
            (TcMode::Tcx, _) | (TcMode::Auto, Some(_)) => true,
            (TcMode::Auto, None) => {
                // Probe with the first attachment: EINVAL/EOPNOTSUPP mean a
                // kernel without tcx (before 6.6).
                match tcx_attach(ingress_fd, ifindex, true) {
                    Ok(fd) => {
                        self.tc_mode = Some(TcMode::Tcx);
                        self.tc.push(TcAttachment::Tcx(fd));
                        self.hooks.push(Hook {
                            kind: "tcx/ingress".into(),
                            iface: Some(ifname.to_owned()),
                        });
                        let fd = tcx_attach(egress_fd, ifindex, false).map_err(err)?;
                        self.tc.push(TcAttachment::Tcx(fd));
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
                        self.tc_mode = Some(TcMode::Clsact);
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
                self.tc.push(TcAttachment::Tcx(link));
                self.hooks.push(Hook {
                    kind: kind.into(),
                    iface: Some(ifname.to_owned()),
                });
            }
            return Ok(());
        }
        if create_clsact(ifindex as i32).map_err(err)? {
            self.tc.push(TcAttachment::Qdisc {
                ifindex: ifindex as i32,
            });
        }
        for (prog, point, kind) in [
            (
                &self.skel.progs.pt_tc_ingress,
                libbpf_rs::TC_INGRESS,
                "tc/ingress",
            ),
            (
                &self.skel.progs.pt_tc_egress,
                libbpf_rs::TC_EGRESS,
                "tc/egress",
            ),
        ] {
            // Replace: a filter with our handle and priority can only be
            // one a killed runner left behind; we take it over and remove
            // it on exit.
            let hook = libbpf_rs::TcHookBuilder::new(prog.as_fd())
                .ifindex(ifindex as i32)
                .replace(true)
                .handle(TC_HANDLE)
                .priority(TC_PRIORITY)
                .hook(point)
                .attach()
                .map_err(|e| err(io::Error::other(e.to_string())))?;
            self.tc.push(TcAttachment::Filter {
                hook,
                ifindex: ifindex as i32,
            });
            self.hooks.push(Hook {
                kind: kind.into(),
                iface: Some(ifname.to_owned()),
            });
        }
        Ok(())
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

    /// Events the kernel could not queue since load (all CPUs).
    pub fn lost_total(&self) -> u64 {
        match self
            .skel
            .maps
            .lost
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| v.get(..8))
                .map(|v| u64::from_ne_bytes(v.try_into().unwrap()))
                .sum(),
            _ => 0,
        }
    }

    /// The kernel's per-flow counters.
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
        out
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

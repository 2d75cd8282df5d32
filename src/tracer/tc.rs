// SPDX-License-Identifier: Apache-2.0
//! Attaching the packet programs to an interface: tcx links where the
//! kernel has them, else clsact filters (and the qdisc, if we made it),
//! removed again when dropped.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;

use super::tracepoints::TRACEPOINTS;
use super::{Error, Iface, Stop, TcMode};
use crate::event::Hook;

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

/// Whether a tcx attach failed for want of tcx (a kernel before 6.6).
fn no_tcx(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
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

/// The tc attachments made so far; dropping it detaches them newest first.
#[derive(Debug, Default)]
pub(super) struct TcSet {
    attachments: Vec<TcAttachment>,
    pub(super) hooks: Vec<Hook>,
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
    pub(super) fn attach_all(
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
                    Err(e) if no_tcx(&e) => {
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
                let link = tcx_attach(fd, ifindex, ingress).map_err(|e| {
                    if no_tcx(&e) && self.hooks.is_empty() {
                        Error::NoTcx
                    } else {
                        err(e)
                    }
                })?;
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

// SPDX-License-Identifier: Apache-2.0
//! The tracepoint programs (`bpf/podtrace.bpf.c`): opened with the
//! filters, loaded with the netns scope, attached as BTF or raw
//! tracepoints (neither needs tracefs).

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel as _, SkelBuilder as _};
use libbpf_rs::{Link, MapCore as _, MapFlags, OpenObject};

use super::host::{node_and_kernel, release_at_least};
use super::log::{clear_log, load_error};
use super::maps::{reuse, reuse_shared_maps, set_shared_rodata, SharedMaps};
use super::recursion::{counts_skipped_runs, cover_set_state};
use super::{bpf_err, Config, Error, Stop};
use crate::abi::ip_key;
use crate::bpf::{OpenPodtraceSkel, PodtraceSkel, PodtraceSkelBuilder};
use crate::event::{Features, Hook};

/// Tracepoints we attach at most (of nine programs: one of the two
/// kfree_skb ones).
pub(super) const TRACEPOINTS: usize = 8;

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
        rodata.unnamed_purge_reason = cfg.unnamed_purge_reason;
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
        // One of the two kfree_skb programs: with the reason argument
        // (5.17) or without.
        let progs = &mut self.open.progs;
        if cfg.features.drop_reasons {
            progs.pt_kfree_skb_no_reason.set_autoload(false);
        } else {
            progs.pt_kfree_skb.set_autoload(false);
        }
        // Its tracepoint came in 5.14: without it the close's sk_err and
        // sk_err_soft are what a failed connect reports.
        if !cfg.features.error_report {
            progs.pt_error_report.set_autoload(false);
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
        let mut features = cfg.features;
        features.skipped_runs = counts_skipped_runs(&skel);
        {
            let progs = &skel.progs;
            let tps: [(&libbpf_rs::ProgramMut<'_>, &str, &str); TRACEPOINTS + 1] = [
                (&progs.pt_set_state, "sock", "inet_sock_set_state"),
                (&progs.pt_set_state_nested, "sock", "inet_sock_set_state"),
                (&progs.pt_retransmit, "tcp", "tcp_retransmit_skb"),
                (&progs.pt_retransmit_synack, "tcp", "tcp_retransmit_synack"),
                (&progs.pt_error_report, "sock", "inet_sk_error_report"),
                (&progs.pt_send_reset, "tcp", "tcp_send_reset"),
                (&progs.pt_receive_reset, "tcp", "tcp_receive_reset"),
                (&progs.pt_kfree_skb, "skb", "kfree_skb"),
                (&progs.pt_kfree_skb_no_reason, "skb", "kfree_skb"),
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
                    features.recursion_cover = true;
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
        Ok(Tracepoints {
            skel,
            links,
            hooks,
            features,
        })
    }
}

/// The tracepoint programs, loaded and attached.
pub struct Tracepoints<'obj> {
    // Field order is drop order: links before the programs.
    pub(super) links: Vec<Link>,
    pub(super) skel: PodtraceSkel<'obj>,
    pub(super) hooks: Vec<Hook>,
    pub(super) features: Features,
}

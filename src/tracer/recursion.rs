// SPDX-License-Identifier: Apache-2.0
//! Runs of the tracepoint programs the kernel skipped (recursion
//! misses), and the cover that makes up for those of pt_set_state.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore as _, MapFlags};

use super::maps::sum_over_cpus;
use crate::bpf::{types, PodtraceSkel};

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
pub(super) fn skipped(skel: &PodtraceSkel<'_>) -> u64 {
    let p = &skel.progs;
    let misses: u64 = [
        &p.pt_set_state,
        &p.pt_retransmit,
        &p.pt_send_reset,
        &p.pt_receive_reset,
        &p.pt_kfree_skb,
        &p.pt_kfree_skb_no_reason,
    ]
    .iter()
    .filter(|prog| prog.autoload())
    .map(|prog| recursion_misses(prog.as_fd()).unwrap_or(0))
    .sum();
    misses.saturating_sub(sum_over_cpus(&skel.maps.set_state_covered))
}

/// Fills `set_state_cover` (see podtrace.bpf.c) so pt_set_state_nested
/// can read pt_set_state's per-CPU recursion count: the ids it needs, then
/// the addresses the two iterators find, folded into `bias`. pt_set_state
/// must be attached (its link is how the iterator finds it). False, with a
/// warning, when that fails: skipped runs are then reported as lost.
pub(super) fn cover_set_state(skel: &PodtraceSkel<'_>) -> bool {
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

/// Whether the kernel counts skipped runs (Linux 5.12), told by how much
/// of `bpf_prog_info` it fills in.
pub(super) fn counts_skipped_runs(skel: &PodtraceSkel<'_>) -> bool {
    recursion_misses(skel.progs.pt_set_state.as_fd()).is_some()
}

/// The kernel's count of a program's skipped runs (see
/// [`Tracer::skipped_total`]); `None` when it cannot be read or this
/// kernel's `bpf_prog_info` has no such field (it writes back the length
/// it filled).
fn recursion_misses(prog: BorrowedFd<'_>) -> Option<u64> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a valid bpf_prog_info of `len` bytes; with its array
    // pointers zeroed the kernel writes nothing else.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    let end = std::mem::offset_of!(libbpf_sys::bpf_prog_info, recursion_misses) + 8;
    (rc == 0 && len as usize >= end).then_some(info.recursion_misses)
}

// SPDX-License-Identifier: Apache-2.0
//! What the running kernel offers, probed from its BTF at start (one pass
//! of [`crate::btf`] over the type section, on the thread that also reads
//! the drop reasons' names) so that the programs that need a missing
//! feature are replaced or left out before loading. What the kernel BTF
//! cannot tell (counting of skipped runs, the recursion cover) the tracer
//! fills in once the programs are loaded.

use std::path::Path;

use crate::btf::{has_strings, read_enums, VMLINUX_BTF};
use crate::drop_reason::DropReasons;
use crate::event::Features;

/// The kernel as the runner needs to know it before loading.
#[derive(Debug, Default, Clone)]
pub struct Kernel {
    /// Names of `enum skb_drop_reason` values (empty before Linux 5.17).
    pub drop_reasons: DropReasons,
    /// What the BTF tells; `skipped_runs` and `recursion_cover` are left
    /// for the tracer.
    pub features: Features,
}

impl Kernel {
    /// Probes the running kernel; with a warning, everything off when its
    /// BTF cannot be read (the load then says what is missing).
    pub fn probe() -> Kernel {
        match Self::read(Path::new(VMLINUX_BTF)) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("cannot read the kernel's BTF to probe its features: {e}");
                Kernel::default()
            }
        }
    }

    /// Probes the raw BTF file at `path`.
    pub fn read(path: &Path) -> std::io::Result<Kernel> {
        // The enums whose presence dates the features: skb_drop_reason
        // came with kfree_skb's reason argument (5.17), sk_rst_reason with
        // tcp_send_reset for resets without a socket (6.10), and
        // BPF_TCX_INGRESS with tcx (6.6).
        let mut found = read_enums(
            path,
            &["skb_drop_reason", "sk_rst_reason", "bpf_attach_type"],
        )?;
        // A BTF tracepoint is there when its typedef is (btf_trace_NAME).
        let error_report = has_strings(path, &["btf_trace_inet_sk_error_report"])?[0];
        let attach_types = found[2].take().unwrap_or_default();
        let reset_without_socket = found[1].is_some();
        let drop_reasons = found[0]
            .take()
            .map(DropReasons::from_members)
            .unwrap_or_default();
        Ok(Kernel {
            features: Features {
                drop_reasons: !drop_reasons.is_empty(),
                tcx: attach_types.iter().any(|(n, _)| n == "BPF_TCX_INGRESS"),
                reset_without_socket,
                error_report,
                ..Features::default()
            },
            drop_reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kernel (6.18) has all that BTF can tell.
    #[test]
    fn this_kernel_has_every_btf_feature() {
        let k = Kernel::read(Path::new(VMLINUX_BTF)).unwrap();
        assert!(k.features.drop_reasons, "{k:?}");
        assert!(k.features.tcx, "{k:?}");
        assert!(k.features.reset_without_socket, "{k:?}");
        assert!(k.features.error_report, "{k:?}");
        assert!(k.drop_reasons.value("NO_SOCKET").is_some());
    }
}

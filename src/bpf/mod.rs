// SPDX-License-Identifier: Apache-2.0
//! The skeletons libbpf-cargo generated: from `bpf/podtrace.bpf.c` (socket
//! tracepoints and drops), with its `types` (the C header's structs,
//! emitted through dummy instances), and in [`packets`] from
//! `bpf/packets.bpf.c` (the tc programs).

#[allow(
    clippy::all,
    clippy::pedantic,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unused_imports,
    missing_docs,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/podtrace.skel.rs"));
}

pub use skel::*;

/// The packet programs' skeleton (`bpf/packets.bpf.c`).
pub mod packets {
    #[allow(
        clippy::all,
        clippy::pedantic,
        non_camel_case_types,
        non_snake_case,
        non_upper_case_globals,
        dead_code,
        unused_imports,
        missing_docs,
        unsafe_op_in_unsafe_fn
    )]
    mod skel {
        include!(concat!(env!("OUT_DIR"), "/packets.skel.rs"));
    }

    pub use skel::*;
}

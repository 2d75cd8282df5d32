// SPDX-License-Identifier: Apache-2.0
//! Compiles `bpf/*.bpf.c` into libbpf-rs skeletons when the `bpf` feature is on;
//! does nothing otherwise, so the plugin builds without clang on any OS.

fn main() {
    #[cfg(feature = "bpf")]
    bpf::build();
}

#[cfg(feature = "bpf")]
mod bpf {
    use std::env;
    use std::path::PathBuf;

    use libbpf_cargo::SkeletonBuilder;

    /// Each program: (source under bpf/, skeleton file name in OUT_DIR).
    const PROGRAMS: &[(&str, &str)] = &[
        ("podtrace.bpf.c", "podtrace.skel.rs"),
        ("packets.bpf.c", "packets.skel.rs"),
    ];
    /// Headers the programs include; a change to any rebuilds them all.
    const HEADERS: &[&str] = &["podtrace.h", "kernel.h", "shared.bpf.h"];

    pub fn build() {
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        // kernel.h uses the UAPI headers (linux/bpf.h, ...), which include
        // <asm/types.h> from the multiarch directory on Debian/Ubuntu.
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
        for h in HEADERS {
            println!("cargo:rerun-if-changed=bpf/{h}");
        }
        for (src, skel) in PROGRAMS {
            println!("cargo:rerun-if-changed=bpf/{src}");
            SkeletonBuilder::new()
                .source(format!("bpf/{src}"))
                .clang_args(["-Wall", "-Wno-unused-function", multiarch.as_str()])
                .build_and_generate(out.join(skel))
                .unwrap_or_else(|e| panic!("building bpf/{src}: {e:#}"));
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
//! Starting a tracer inside a node's network namespace without a launcher
//! process in between.
//!
//! `ip netns exec` would add a fork and exec of `ip` to every ready time
//! we measure, and make the child's pid `ip`'s rather than the tracer's (we
//! read the tracer's memory from `/proc/PID/status`). So the forked child
//! does what `ip netns exec` does — join the namespace, take a private mount
//! namespace and mount a sysfs that shows the namespace's interfaces — and
//! then execs the tracer itself. The namespaces themselves still come from
//! `podtrace-netns`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

/// Prepares `cmd` to run inside the namespace at `netns_path` (a
/// `/run/netns/NAME` bind mount). With `tracefs`, also mounts tracefs at
/// `/sys/kernel/tracing` in the child's private mount namespace: bpftrace
/// needs it and this machine does not mount it at boot; nothing outside the
/// child sees the mount. The returned file must live until `cmd` is spawned.
pub fn in_netns(cmd: &mut Command, netns_path: &Path, tracefs: bool) -> Result<File> {
    let ns = File::open(netns_path).with_context(|| format!("open {}", netns_path.display()))?;
    let fd = ns.as_raw_fd();
    let cs = |s: &str| CString::new(s).expect("no NUL in a literal");
    let (root, sys, sysfs, tracing, tracefs_type, none) = (
        cs("/"),
        cs("/sys"),
        cs("sysfs"),
        cs("/sys/kernel/tracing"),
        cs("tracefs"),
        cs("none"),
    );
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // raw syscalls on strings and a descriptor prepared before the fork; it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setns(fd, libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Keep our mounts from propagating back to the host.
            check(libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ))?;
            libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
            check(libc::mount(
                sysfs.as_ptr(),
                sys.as_ptr(),
                sysfs.as_ptr(),
                0,
                std::ptr::null(),
            ))?;
            if tracefs {
                check(libc::mount(
                    tracefs_type.as_ptr(),
                    tracing.as_ptr(),
                    tracefs_type.as_ptr(),
                    0,
                    std::ptr::null(),
                ))?;
            }
            Ok(())
        });
    }
    Ok(ns)
}

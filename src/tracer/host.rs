// SPDX-License-Identifier: Apache-2.0
//! What the host offers: privileges, BTF, its name and kernel release.

use std::path::Path;

use super::Error;

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

/// This machine's host name and kernel release, from uname(2).
pub fn node_and_kernel() -> (String, String) {
    // SAFETY: a zeroed utsname is a valid buffer for uname(2) to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is valid for writes.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().map(|c| *c as u8).collect();
        crate::abi::c_str(&bytes).into_owned()
    };
    (field(&u.nodename), field(&u.release))
}

/// Whether a kernel release like `6.18.44-fc` is at least `major.minor`
/// (an unreadable one counts as new: the load then says what is missing).
pub(super) fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(ma)), Some(Ok(mi))) => (ma, mi) >= (major, minor),
        _ => true,
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

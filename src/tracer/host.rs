// SPDX-License-Identifier: Apache-2.0
//! What the host offers: privileges, BTF, its name and kernel release.

use std::path::Path;

use super::Error;

/// Fails with a clear message when tracing cannot work here at all.
pub fn preflight() -> Result<(), Error> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Error::NoBtf);
    }
    // Root in a container holds only the capabilities it was given.
    let (effective, last_cap) = crate::caps::current();
    let missing = crate::caps::missing(effective, last_cap);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotPrivileged(crate::caps::message(&missing)))
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

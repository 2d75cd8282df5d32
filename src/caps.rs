// SPDX-License-Identifier: Apache-2.0
//! The capabilities the runner needs, each with what needs it, checked at
//! start so a runner short of one fails in one line that names it (not with
//! an `EPERM` from deep inside libbpf). Least privilege, as docs/image.md
//! measures it: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE.

/// Bit numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What each capability is for, in the order they are needed.
pub const NEEDED: [(&str, u32, &str); 4] = [
    (
        "CAP_BPF",
        CAP_BPF,
        "loading the eBPF programs and creating their maps",
    ),
    (
        "CAP_PERFMON",
        CAP_PERFMON,
        "attaching to the kernel's tracepoints",
    ),
    (
        "CAP_NET_ADMIN",
        CAP_NET_ADMIN,
        "attaching to the pods' interfaces (tc) and reading their namespaces' addresses",
    ),
    (
        "CAP_SYS_PTRACE",
        CAP_SYS_PTRACE,
        "finding the pods' network namespaces (/proc/PID/ns/net of their processes)",
    ),
];

/// The needed capabilities missing from `effective` (a `CapEff` mask) on
/// a kernel whose highest capability is `last_cap`, each with what needs
/// it. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (the kernel
/// accepts either), and is the only way on kernels before 5.8, which have
/// neither.
pub fn missing(effective: u64, last_cap: u32) -> Vec<(&'static str, &'static str)> {
    let has = |c: u32| effective & (1 << c) != 0;
    let split = last_cap >= CAP_BPF;
    NEEDED
        .iter()
        .filter(|(_, bit, _)| !has(*bit))
        .filter(|(_, bit, _)| !(matches!(*bit, CAP_BPF | CAP_PERFMON) && has(CAP_SYS_ADMIN)))
        .map(|(name, bit, what)| match (*bit, split) {
            (CAP_BPF | CAP_PERFMON, false) => (
                "CAP_SYS_ADMIN",
                "eBPF on kernels older than 5.8, which have no CAP_BPF (use --security privileged)",
            ),
            _ => (*name, *what),
        })
        .fold(Vec::new(), |mut v, m| {
            if !v.contains(&m) {
                v.push(m);
            }
            v
        })
}

/// This process's effective set and the kernel's highest capability.
pub fn current() -> (u64, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAP_BPF);
    (effective, last)
}

/// One line: each missing capability and what needs it.
pub fn message(missing: &[(&str, &str)]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(cap, what)| format!("{cap} (needed for {what})"))
        .collect();
    format!(
        "missing capability {}: add it to the container's securityContext.capabilities \
         (kubectl podtrace does), or run the runner with sudo",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL4: u64 = 1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_NET_ADMIN | 1 << CAP_SYS_PTRACE;

    #[test]
    fn the_four_are_enough_and_each_missing_one_is_named_with_its_use() {
        assert!(missing(ALL4, 40).is_empty());
        for (name, bit, what) in NEEDED {
            let got = missing(ALL4 & !(1 << bit), 40);
            assert_eq!(got, [(name, what)], "without {name}");
        }
        let line = message(&missing(ALL4 & !(1 << CAP_SYS_PTRACE), 40));
        assert!(!line.contains('\n'));
        assert!(line.contains("missing capability CAP_SYS_PTRACE (needed for finding the pods' network namespaces"), "{line}");
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon_and_is_needed_before_5_8() {
        let admin = 1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN | 1 << CAP_SYS_PTRACE;
        assert!(missing(admin, 40).is_empty());
        let got = missing(1 << CAP_NET_ADMIN | 1 << CAP_SYS_PTRACE, 37);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "CAP_SYS_ADMIN");
        assert!(got[0].1.contains("--security privileged"));
    }
}

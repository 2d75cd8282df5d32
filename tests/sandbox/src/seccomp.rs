// SPDX-License-Identifier: Apache-2.0
//! Seccomp `RuntimeDefault`: the default profile of the container runtimes,
//! read from the one Debian ships for them (`containers-common`'s
//! `/usr/share/containers/seccomp.json`, the profile CRI-O applies, of the
//! same lineage as containerd's `contrib/seccomp`), specialised for a
//! container's capabilities as containerd does it:
//! - rules that `include` capabilities apply only when the container's
//!   bounding set has them, rules that `exclude` them only when it has not;
//! - what the default action refuses fails with `EPERM` (containerd sets no
//!   `defaultErrnoRet`);
//! - `bpf` is allowed with `CAP_BPF` and `perf_event_open` with
//!   `CAP_PERFMON`, as containerd >= 1.7 allows them (older profiles allow
//!   them only with `CAP_SYS_ADMIN`).

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

/// Where Debian's `golang-github-containers-common` (a podman dependency,
/// installed by `scripts/install-deps.sh`) puts the profile.
pub const PROFILE: &str = "/usr/share/containers/seccomp.json";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

/// Syscalls containerd >= 1.7 allows for a capability short of SYS_ADMIN.
const CAP_SYSCALLS: [(&str, &str); 2] = [("CAP_BPF", "bpf"), ("CAP_PERFMON", "perf_event_open")];

/// The profile for a container whose bounding set is `caps` (`CAP_…` names).
pub fn runtime_default(caps: &HashSet<String>) -> Result<LinuxSeccomp, String> {
    runtime_default_from(Path::new(PROFILE), caps)
}

pub(crate) fn runtime_default_from(
    path: &Path,
    caps: &HashSet<String>,
) -> Result<LinuxSeccomp, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "failed to read the RuntimeDefault seccomp profile {}: {e} (install podman: scripts/install-deps.sh)",
            path.display()
        )
    })?;
    let profile: Profile = serde_json::from_str(&text)
        .map_err(|e| format!("invalid seccomp profile {}: {e}", path.display()))?;
    let granted: Vec<&str> = CAP_SYSCALLS
        .iter()
        .filter(|(cap, _)| caps.contains(*cap))
        .map(|(_, call)| *call)
        .collect();
    let arch_ok = |arches: &[String]| arches.iter().any(|a| a == "amd64");
    let mut syscalls: Vec<LinuxSyscall> = Vec::new();
    for rule in profile.syscalls {
        let applies = rule.includes.caps.iter().all(|c| caps.contains(c))
            && (rule.includes.arches.is_empty() || arch_ok(&rule.includes.arches))
            && !rule.excludes.caps.iter().any(|c| caps.contains(c))
            && !arch_ok(&rule.excludes.arches);
        if !applies {
            continue;
        }
        let mut names = rule.names;
        if rule.action != LinuxSeccompAction::ScmpActAllow {
            // A refusal must not shadow what a capability grants below.
            names.retain(|n| !granted.contains(&n.as_str()));
        }
        if names.is_empty() {
            continue;
        }
        let mut b = LinuxSyscallBuilder::default()
            .names(names)
            .action(rule.action);
        if let Some(e) = rule.errno_ret {
            b = b.errno_ret(e);
        }
        if let Some(a) = rule.args.filter(|a| !a.is_empty()) {
            b = b.args(a);
        }
        syscalls.push(b.build().map_err(|e| e.to_string())?);
    }
    if !granted.is_empty() {
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(granted.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &LinuxSeccomp, call: &str) -> bool {
        p.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.names().iter().any(|n| n == call)
                && s.args().as_ref().is_none_or(Vec::is_empty)
        })
    }

    fn caps(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn refuses_by_default_with_eperm_and_allows_ordinary_calls() {
        let p = runtime_default(&caps(&[])).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), None, "EPERM, as containerd");
        for call in ["read", "write", "openat", "connect", "exit_group"] {
            assert!(allowed(&p, call), "{call} allowed");
        }
        for call in ["bpf", "perf_event_open", "init_module", "kexec_load"] {
            assert!(!allowed(&p, call), "{call} refused without capabilities");
        }
    }

    #[test]
    fn bpf_and_perf_follow_cap_bpf_cap_perfmon_or_sys_admin() {
        let p = runtime_default(&caps(&["CAP_BPF", "CAP_PERFMON"])).unwrap();
        assert!(allowed(&p, "bpf") && allowed(&p, "perf_event_open"));
        // No refusal rule for them is left to conflict with the grant.
        assert!(!p.syscalls().iter().flatten().any(|s| {
            s.action() != LinuxSeccompAction::ScmpActAllow && s.names().iter().any(|n| n == "bpf")
        }));
        let only_bpf = runtime_default(&caps(&["CAP_BPF"])).unwrap();
        assert!(allowed(&only_bpf, "bpf") && !allowed(&only_bpf, "perf_event_open"));
        let admin = runtime_default(&caps(&["CAP_SYS_ADMIN"])).unwrap();
        assert!(allowed(&admin, "bpf") && allowed(&admin, "perf_event_open"));
    }

    #[test]
    fn a_missing_profile_says_how_to_install_it() {
        let e =
            runtime_default_from(Path::new("/nonexistent/seccomp.json"), &caps(&[])).unwrap_err();
        assert!(e.contains("install-deps"), "{e}");
    }
}

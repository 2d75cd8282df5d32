// SPDX-License-Identifier: Apache-2.0
//! Containers run by `runc`, as containerd's shim runs them: one OCI bundle
//! per container (the image unpacked as its root, the generated
//! `config.json`), `runc run` in the foreground so its exit status is the
//! container's, `runc kill` to stop it, `runc delete` to remove it with its
//! cgroup. Container ids start with the sandbox's owner tag
//! (`pt{slot}-{pid}-`), so whatever a dead sandbox left is found and removed:
//! by its janitor the moment it dies, or when its slot is taken again.

use std::fs;
use std::io::Write as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::Spec;

use crate::images::StoredImage;

/// runc's state directory for every sandbox's containers.
pub const RUNC_ROOT: &str = "/run/podtrace-sandbox/runc";
/// Bundles (root filesystem + `config.json`), one directory per container.
pub const BUNDLES: &str = "/run/podtrace-sandbox/bundles";
/// The cgroup (in every v1 hierarchy, or the v2 tree) containers live under.
pub const CGROUP_PARENT: &str = "podtrace-sandbox";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One container: its id, bundle and cgroup.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
}

impl Container {
    pub fn new(id: String) -> Container {
        Container { id }
    }

    pub fn bundle(&self) -> PathBuf {
        Path::new(BUNDLES).join(&self.id)
    }

    /// `linux.cgroupsPath` for the spec.
    pub fn cgroups_path(&self) -> String {
        format!("/{CGROUP_PARENT}/{}", self.id)
    }

    /// Unpacks the image and writes the spec.
    pub fn create_bundle(&self, spec: &Spec, image: &StoredImage) -> Result<(), String> {
        let bundle = self.bundle();
        crate::images::unpack(image, &bundle.join("rootfs"))
            .map_err(|e| format!("failed to create containerd container: {e}"))?;
        spec.save(bundle.join("config.json"))
            .map_err(|e| format!("failed to write the container spec: {e}"))
    }

    /// `runc run`: its exit status is the container's (128 + signal when
    /// killed). `--keep` leaves the stopped container (and its cgroup) for
    /// [`Container::oom_killed`] to read before [`Container::delete`].
    pub fn run_command(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.args(["--root", RUNC_ROOT, "run", "--keep", "--bundle"])
            .arg(self.bundle())
            .arg(&self.id);
        cmd
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's init, or with
    /// `all` to every process in it.
    pub fn signal(&self, signal: &str, all: bool) {
        let mut cmd = Command::new("runc");
        cmd.args(["--root", RUNC_ROOT, "kill"]);
        if all {
            cmd.arg("--all");
        }
        let _ = cmd
            .args([self.id.as_str(), signal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn memory_cgroup(&self) -> PathBuf {
        let v1 = Path::new(CGROUP_ROOT)
            .join("memory")
            .join(CGROUP_PARENT)
            .join(&self.id);
        if Path::new(CGROUP_ROOT).join("memory").is_dir() {
            v1
        } else {
            Path::new(CGROUP_ROOT).join(CGROUP_PARENT).join(&self.id)
        }
    }

    /// Whether the kernel's OOM killer ended a process of the container
    /// (`oom_kill` in v1's `memory.oom_control`, v2's `memory.events`).
    pub fn oom_killed(&self) -> bool {
        let dir = self.memory_cgroup();
        ["memory.oom_control", "memory.events"].iter().any(|f| {
            fs::read_to_string(dir.join(f)).is_ok_and(|text| {
                text.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    }

    /// Pids of the container's processes (empty once it is gone).
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.memory_cgroup().join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills what is left, removes the container, its cgroup and bundle.
    pub fn delete(&self) {
        delete_id(&self.id);
    }
}

fn delete_id(id: &str) {
    let _ = Command::new("runc")
        .args(["--root", RUNC_ROOT, "delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = fs::remove_dir_all(Path::new(BUNDLES).join(id));
    remove_cgroups(|name| name == id);
}

/// Removes the cgroups under [`CGROUP_PARENT`] whose name matches, in every
/// hierarchy (runc leaves none behind when it deletes a container; this is
/// for containers whose runc state was lost).
fn remove_cgroups(matches: impl Fn(&str) -> bool) {
    let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) else {
        return;
    };
    let mut parents: Vec<PathBuf> = hierarchies
        .flatten()
        .map(|h| h.path().join(CGROUP_PARENT))
        .collect();
    parents.push(Path::new(CGROUP_ROOT).join(CGROUP_PARENT));
    for parent in parents {
        if let Ok(children) = fs::read_dir(&parent) {
            for c in children.flatten() {
                if c.path().is_dir() && matches(&c.file_name().to_string_lossy()) {
                    let _ = fs::remove_dir(c.path());
                }
            }
        }
        // Empty once no sandbox has a container: then it goes too.
        let _ = fs::remove_dir(&parent);
    }
}

/// Removes every container whose id starts with `tag` (runc state, process,
/// cgroup, bundle): what a sandbox that died without cleaning up left.
pub fn reclaim(tag: &str) {
    let ids: Vec<String> = fs::read_dir(RUNC_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .chain(fs::read_dir(BUNDLES).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| id.starts_with(tag))
        .collect();
    for id in ids {
        delete_id(&id);
    }
    remove_cgroups(|name| name.starts_with(tag));
}

/// What is on the node of the containers whose id `matches`: runc state,
/// bundles, cgroups (every hierarchy) and mounts under their bundles, one
/// line each (`runc state ID`, `bundle ID`, `cgroup PATH`, `mount PATH`).
/// Empty once they are all deleted.
pub fn artifacts(matches: impl Fn(&str) -> bool) -> Vec<String> {
    let names = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| matches(id))
            .collect()
    };
    let mut out: Vec<String> = names(Path::new(RUNC_ROOT))
        .into_iter()
        .map(|id| format!("runc state {id}"))
        .collect();
    out.extend(
        names(Path::new(BUNDLES))
            .into_iter()
            .map(|id| format!("bundle {id}")),
    );
    let mut parents: Vec<PathBuf> = fs::read_dir(CGROUP_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(CGROUP_PARENT))
        .collect();
    parents.push(Path::new(CGROUP_ROOT).join(CGROUP_PARENT));
    for parent in parents {
        out.extend(
            names(&parent)
                .into_iter()
                .map(|id| format!("cgroup {}", parent.join(id).display())),
        );
    }
    // Field 5 of mountinfo is the mount point.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        let under = Path::new(point)
            .strip_prefix(BUNDLES)
            .ok()
            .and_then(|rest| rest.iter().next())
            .is_some_and(|id| matches(&id.to_string_lossy()));
        if under {
            out.push(format!("mount {point}"));
        }
    }
    out
}

/// A process that cleans up after the sandbox if it dies without doing it
/// (SIGKILL): it waits for the end of a pipe only the sandbox holds, then
/// removes the sandbox's containers. Dropping this after a clean shutdown
/// finds nothing left to remove.
#[derive(Debug)]
pub struct Janitor {
    _pipe: OwnedFd,
}

impl Janitor {
    pub fn spawn(tag: &str) -> std::io::Result<Janitor> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Shell, not this process: a test binary cannot re-exec itself as a
        // janitor, and a fork of a multi-threaded process may not run Rust.
        // Rounds, a bounded number: a `runc run` still creating its
        // container when the sandbox died goes on making mount points in
        // the bundle while it is removed, then fails and exits; the next
        // round removes what it made.
        let script = r#"
cat >/dev/null
for round in 1 2 3 4 5 6 7 8 9 10; do
  ids=$( (ls -1 "$1"; ls -1 "$2") 2>/dev/null | grep "^$3" | sort -u)
  for id in $ids; do
    runc --root "$1" delete --force "$id" >/dev/null 2>&1
    rm -rf "$2/$id"
  done
  for h in /sys/fs/cgroup/*/"$4" /sys/fs/cgroup/"$4"; do
    for c in "$h/$3"*; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
    rmdir "$h" 2>/dev/null
  done
  [ -z "$ids" ] && break
  sleep 0.3
done
exit 0
"#;
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            script,
            "janitor",
            RUNC_ROOT,
            BUNDLES,
            tag,
            CGROUP_PARENT,
        ])
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the sandbox's process group: a Ctrl-C to it must not
        // reach the janitor first.
        .process_group(0);
        use std::os::unix::process::CommandExt as _;
        let mut child = cmd.spawn()?;
        // Reaped by a thread so it never lingers as a zombie of ours.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(Janitor { _pipe: write })
    }
}

/// Writes `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d)?;
    }
    fs::File::create(path)?.write_all(text.as_bytes())
}

/// Every capability this process holds in its bounding set (`CAP_…`), what
/// `privileged` grants as containerd's `WithAllCurrentCapabilities` does.
pub fn current_capabilities() -> Vec<String> {
    let bounding = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, n)| format!("CAP_{n}"))
        .collect()
}

/// Capability numbers (linux/capability.h), in order.
const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The host's device nodes (what `privileged` containers get, as
/// containerd's `WithHostDevices`).
pub fn host_devices() -> Vec<oci_spec::runtime::LinuxDevice> {
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceType};
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                // As containerd: mounts of their own inside the container.
                let name = e.file_name();
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == Path::new("/dev/console") {
                continue;
            }
            let rdev = meta.rdev();
            if let Ok(d) = LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(libc::major(rdev) as i64)
                .minor(libc::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
            {
                out.push(d);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A bundle something still writes into when the janitor starts (a
    /// `runc run` making its mount points) is gone once the writing stops.
    #[test]
    fn the_janitor_removes_a_bundle_still_being_written() {
        let tag = format!("ptjanitor-{}-", std::process::id());
        let bundle = Path::new(BUNDLES).join(format!("{tag}c"));
        fs::create_dir_all(bundle.join("rootfs")).unwrap();
        let janitor = Janitor::spawn(&tag).unwrap();
        // Writes new directories into the bundle for 600 ms, then stops.
        let writer = {
            let rootfs = bundle.join("rootfs");
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_millis(600);
                let mut n = 0u32;
                while Instant::now() < until {
                    let _ = fs::create_dir_all(rootfs.join(format!("d{n}")));
                    n += 1;
                }
            })
        };
        drop(janitor);
        writer.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !artifacts(|id| id.starts_with(&tag)).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = artifacts(|id| id.starts_with(&tag));
        let _ = fs::remove_dir_all(&bundle);
        assert!(left.is_empty(), "left: {left:?}");
    }
}

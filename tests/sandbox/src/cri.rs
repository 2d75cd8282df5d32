// SPDX-License-Identifier: Apache-2.0
//! The kubelet's side of a container that runs from a loaded image: the
//! files it mounts (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
//! `/dev/termination-log`, `emptyDir`s), the runtime spec (see [`crate::oci`])
//! and the bundle, ready for `runc run`; and the sandbox-wide container
//! runtime state (image store, janitor, runner containers for leak checks).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::images::{ImageStore, StoredImage};
use crate::oci::{PodFiles, SpecInput};
use crate::runc::{self, Container, Janitor};

/// Where each sandbox keeps its image store: `{STORE_ROOT}/{prefix}images`.
pub const STORE_ROOT: &str = "/run/podtrace-sandbox";

/// The runner's OCI archive as scripts/build-image.sh writes it:
/// `PODTRACE_RUNNER_IMAGE_ARCHIVE` (scripts/test.sh sets it), else
/// `image/podtrace-runner-vVERSION.oci.tar` in the target directory the
/// current executable was built in. `Err` says how to build it.
pub fn runner_image_archive() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PODTRACE_RUNNER_IMAGE_ARCHIVE") {
        return Ok(PathBuf::from(p));
    }
    let name = format!(
        "image/podtrace-runner-v{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    );
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    exe.ancestors()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no runner image ({name} above {}): build it with scripts/build-image.sh",
                exe.display()
            )
        })
}

/// The sandbox's container runtime.
#[derive(Debug)]
pub struct Runtime {
    pub images: ImageStore,
    /// Prefix of every container id of this sandbox (`pt{slot}-{pid}-`).
    pub tag: String,
    /// Ids of runner containers still alive (for leak checks).
    pub runners: Mutex<HashSet<String>>,
    /// Ids of every runner container started (for leak checks).
    pub runners_started: Mutex<HashSet<String>>,
    _janitor: Option<Janitor>,
}

/// The image store of the sandbox whose namespaces start with `prefix`.
pub fn store_for(prefix: &str) -> ImageStore {
    ImageStore::new(Path::new(STORE_ROOT).join(format!("{prefix}images")))
}

impl Runtime {
    /// Takes over the slot's leftovers (a sandbox that died in it before)
    /// and starts the janitor for ours.
    pub fn start(prefix: &str) -> Runtime {
        runc::reclaim(prefix);
        let images = store_for(prefix);
        let _ = std::fs::remove_dir_all(images.dir());
        // Present (if empty) from the start: `podtrace-sandbox load` looks
        // for it to know a sandbox runs.
        let _ = std::fs::create_dir_all(images.dir());
        let tag = format!("{prefix}{}-", std::process::id());
        let janitor = Janitor::spawn(&tag)
            .inspect_err(|e| tracing::warn!(error = %e, "no janitor: a killed sandbox leaves its containers"))
            .ok();
        Runtime {
            images,
            tag,
            runners: Mutex::new(HashSet::new()),
            runners_started: Mutex::new(HashSet::new()),
            _janitor: janitor,
        }
    }

    /// Removes every container of this sandbox and its image store.
    pub fn teardown(&self) {
        runc::reclaim(&self.tag);
        let _ = std::fs::remove_dir_all(self.images.dir());
    }

    /// What is left on the node of runner containers that ended (see
    /// [`runc::artifacts`]).
    pub fn runner_leftovers(&self) -> Vec<String> {
        let alive = self
            .runners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ended: HashSet<String> = self
            .runners_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .difference(&alive)
            .cloned()
            .collect();
        runc::artifacts(|id| ended.contains(id))
    }

    /// Live processes of runner containers.
    pub fn runner_pids(&self) -> Vec<u32> {
        let ids: Vec<String> = self
            .runners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        ids.into_iter()
            .flat_map(|id| Container::new(id).pids())
            .collect()
    }
}

/// What the kubelet knows about the pod when it starts a container.
#[derive(Debug)]
pub struct PodInfo<'a> {
    pub pod: &'a Value,
    pub container: &'a Value,
    pub node: &'a str,
    pub pod_ip: &'a str,
    /// Network namespace names (under /run/netns).
    pub node_netns: &'a str,
    pub pod_netns: Option<&'a str>,
    pub env: Vec<(String, String)>,
    /// The container's scratch directory (removed with the pod).
    pub scratch: &'a Path,
}

/// Writes the pod's files, generates the spec and the bundle: the
/// container is ready for `runc run`. `Err` is the kubelet's start error.
pub fn prepare(
    rt: &Runtime,
    info: &PodInfo,
    image: &StoredImage,
    attempt: u32,
) -> Result<Container, String> {
    let pod = info.pod;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let cname = info.container["name"].as_str().unwrap_or_default();
    let host_network = pod["spec"]["hostNetwork"] == Value::Bool(true);
    let hostname = if host_network { info.node } else { name };
    let files = pod_files(info, hostname, ns)
        .map_err(|e| format!("failed to prepare the pod's files: {e}"))?;
    let container = Container::new(format!("{}{ns}.{name}.{cname}.{attempt}", rt.tag));
    let input = SpecInput {
        pod,
        container: info.container,
        image: image.config.config().as_ref(),
        env: info.env.clone(),
        node_netns: netns_path(info.node_netns),
        pod_netns: info.pod_netns.map(netns_path),
        cgroups_path: container.cgroups_path(),
        files,
        all_caps: runc::current_capabilities(),
        host_devices: if info.container["securityContext"]["privileged"] == Value::Bool(true) {
            runc::host_devices()
        } else {
            Vec::new()
        },
        runtime_default: crate::seccomp::runtime_default,
    };
    let spec = crate::oci::runtime_spec(&input)?;
    // A leftover of an earlier attempt with the same id goes first.
    container.delete();
    container.create_bundle(&spec, image)?;
    Ok(container)
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// `/etc/hosts` as the kubelet writes it (the node's own for hostNetwork),
/// `/etc/hostname`, `/etc/resolv.conf` (cluster DNS search path),
/// `/dev/termination-log`, and one directory per `emptyDir` volume.
fn pod_files(info: &PodInfo, hostname: &str, ns: &str) -> std::io::Result<PodFiles> {
    let dir = info.scratch.join("files");
    let hosts = dir.join("hosts");
    let host_network = info.pod["spec"]["hostNetwork"] == Value::Bool(true);
    let hosts_text = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n",
            info.pod_ip
        )
    };
    runc::write_file(&hosts, &hosts_text)?;
    let hostname_file = dir.join("hostname");
    runc::write_file(&hostname_file, &format!("{hostname}\n"))?;
    let resolv = dir.join("resolv.conf");
    runc::write_file(
        &resolv,
        &format!("search {ns}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"),
    )?;
    let termination_log = dir.join("termination-log");
    runc::write_file(&termination_log, "")?;
    let mut empty_dirs = std::collections::HashMap::new();
    for v in info.pod["spec"]["volumes"].as_array().into_iter().flatten() {
        if let (Some(n), false) = (v["name"].as_str(), v["emptyDir"].is_null()) {
            let d = info.scratch.join("volumes").join(n);
            std::fs::create_dir_all(&d)?;
            empty_dirs.insert(n.to_owned(), d);
        }
    }
    Ok(PodFiles {
        hosts,
        hostname: hostname_file,
        resolv_conf: resolv,
        termination_log,
        empty_dirs,
    })
}

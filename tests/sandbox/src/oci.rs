// SPDX-License-Identifier: Apache-2.0
//! The OCI runtime spec of a pod's container, generated as the kubelet and
//! containerd's CRI plugin generate it (`buildLinuxSpec`, `WithMounts`,
//! `WithCapabilities`, `WithResources`, `WithPodNamespaces`,
//! `WithPrivileged` in containerd's `internal/cri`), from the pod object, the
//! image's config and what the kubelet prepared (namespaces, files).
//! A pure function: the tests check it field by field.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    get_default_maskedpaths, get_default_readonly_paths, Capability, LinuxBuilder,
    LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde_json::Value;

/// containerd's default capability set (`oci.defaultUnixCaps`).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `PATH` when the image sets none (`oci.WithDefaultPathEnv`).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Files the kubelet and containerd mount into every container.
#[derive(Debug, Clone, Default)]
pub struct PodFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
    pub termination_log: PathBuf,
    /// Host directories of the pod's `emptyDir` volumes, by volume name.
    pub empty_dirs: HashMap<String, PathBuf>,
}

/// Everything the spec is made of.
#[derive(Debug)]
pub struct SpecInput<'a> {
    pub pod: &'a Value,
    pub container: &'a Value,
    pub image: Option<&'a ImageConfig>,
    /// The container's environment as the kubelet resolved it (`fieldRef`s
    /// included), `HOSTNAME` first.
    pub env: Vec<(String, String)>,
    /// The node's network namespace (what `hostNetwork` shares).
    pub node_netns: PathBuf,
    /// The pod sandbox's network namespace (`None` for `hostNetwork`).
    pub pod_netns: Option<PathBuf>,
    pub cgroups_path: String,
    pub files: PodFiles,
    /// Every capability this machine has (what `privileged` grants).
    pub all_caps: Vec<String>,
    /// The host's devices (what `privileged` gets).
    pub host_devices: Vec<LinuxDevice>,
    /// The `RuntimeDefault` seccomp profile for a capability set.
    pub runtime_default: fn(&HashSet<String>) -> Result<oci_spec::runtime::LinuxSeccomp, String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// A field of the container's securityContext, else the pod's.
fn security<'v>(pod: &'v Value, c: &'v Value, field: &str) -> &'v Value {
    let own = &c["securityContext"][field];
    if own.is_null() {
        &pod["spec"]["securityContext"][field]
    } else {
        own
    }
}

fn build_err(e: oci_spec::OciSpecError) -> String {
    format!("failed to generate the container spec: {e}")
}

/// The capability set, as `WithCapabilities` then `WithPrivileged` make it.
pub fn capabilities(c: &Value, all_caps: &[String]) -> Vec<String> {
    if c["securityContext"]["privileged"] == Value::Bool(true) {
        return all_caps.to_vec();
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let add = strings(&c["securityContext"]["capabilities"]["add"]);
    let drop = strings(&c["securityContext"]["capabilities"]["drop"]);
    let with_prefix = |s: &String| format!("CAP_{}", s.to_uppercase());
    if add.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        caps = all_caps.to_vec();
    }
    if drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    }
    for a in add.iter().filter(|a| !a.eq_ignore_ascii_case("ALL")) {
        let cap = with_prefix(a);
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    for d in drop.iter().filter(|d| !d.eq_ignore_ascii_case("ALL")) {
        let cap = with_prefix(d);
        caps.retain(|c| *c != cap);
    }
    caps
}

/// The process's argv (`WithProcessArgs`): `command` replaces the image's
/// entrypoint, `args` its cmd.
pub fn argv(c: &Value, image: Option<&ImageConfig>) -> Vec<String> {
    let command = strings(&c["command"]);
    let args = strings(&c["args"]);
    let entrypoint = image
        .and_then(|i| i.entrypoint().clone())
        .unwrap_or_default();
    let cmd = image.and_then(|i| i.cmd().clone()).unwrap_or_default();
    let (mut argv, rest) = if command.is_empty() {
        (entrypoint, if args.is_empty() { cmd } else { args })
    } else {
        (command, args)
    };
    argv.extend(rest);
    argv
}

/// A Kubernetes quantity in bytes (`256Mi`, `1G`, `129e6`, `1000`).
pub fn bytes(q: &Value) -> Option<u64> {
    quantity(q).map(|v| v.ceil() as u64)
}

/// A CPU quantity (`500m`, `1.5`) in millicores.
pub fn millicores(q: &Value) -> Option<u64> {
    quantity(q).map(|v| (v * 1000.0).round() as u64)
}

fn quantity(q: &Value) -> Option<f64> {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((s.as_str(), 1.0));
    let (num, mult) = match num.strip_suffix('m') {
        Some(n) if mult == 1.0 => (n, 1e-3),
        _ => (num, mult),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * mult)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(build_err)
}

fn bind(dest: &str, source: &std::path::Path, read_only: bool) -> Result<Mount, String> {
    let mode = if read_only { "ro" } else { "rw" };
    mount(
        dest,
        "bind",
        &source.display().to_string(),
        &["rbind", "rprivate", mode],
    )
}

/// The mounts: containerd's defaults (without `/run`), cgroup, `/dev/shm`,
/// the kubelet's files, then the container's volume mounts.
fn mounts(input: &SpecInput, privileged: bool, read_only_root: bool) -> Result<Vec<Mount>, String> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    ];
    let f = &input.files;
    out.push(bind("/etc/hosts", &f.hosts, read_only_root)?);
    out.push(bind("/etc/hostname", &f.hostname, read_only_root)?);
    out.push(bind("/etc/resolv.conf", &f.resolv_conf, read_only_root)?);
    out.push(bind("/dev/termination-log", &f.termination_log, false)?);
    let volumes = input.pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for vm in input.container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = vm["name"].as_str().unwrap_or_default();
        let dest = vm["mountPath"].as_str().unwrap_or_default();
        let ro = vm["readOnly"] == Value::Bool(true);
        let vol = volumes.iter().find(|v| v["name"] == name).ok_or_else(|| {
            format!(
                "container {:?} mounts volume {name:?}, which the pod does not define",
                input.container["name"]
            )
        })?;
        let source = if let Some(p) = vol["hostPath"]["path"].as_str() {
            PathBuf::from(p)
        } else if let Some(p) = f.empty_dirs.get(name) {
            p.clone()
        } else {
            return Err(format!(
                "volume {name:?}: only hostPath and emptyDir volumes run here"
            ));
        };
        out.push(bind(dest, &source, ro)?);
    }
    Ok(out)
}

/// The runtime spec for one container.
pub fn runtime_spec(input: &SpecInput) -> Result<Spec, String> {
    let (pod, c) = (input.pod, input.container);
    let privileged = c["securityContext"]["privileged"] == Value::Bool(true);
    let read_only_root = c["securityContext"]["readOnlyRootFilesystem"] == Value::Bool(true);
    let host_network = pod["spec"]["hostNetwork"] == Value::Bool(true);
    let host_pid = pod["spec"]["hostPID"] == Value::Bool(true);
    let host_ipc = pod["spec"]["hostIPC"] == Value::Bool(true);

    let caps = capabilities(c, &input.all_caps);
    let cap_set: HashSet<Capability> = caps
        .iter()
        .filter_map(|c| c.strip_prefix("CAP_").and_then(|n| n.parse().ok()))
        .collect();
    let uid = security(pod, c, "runAsUser").as_u64().map(|u| u as u32);
    let uid = uid.or_else(|| {
        input
            .image
            .and_then(|i| i.user().clone())
            .and_then(|u| u.split(':').next().and_then(|u| u.parse().ok()))
    });
    let gid = security(pod, c, "runAsGroup").as_u64().unwrap_or(0) as u32;
    let groups: Vec<u32> = pod["spec"]["securityContext"]["supplementalGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_u64().map(|g| g as u32))
        .collect();
    let mut user = UserBuilder::default().uid(uid.unwrap_or(0)).gid(gid);
    if !groups.is_empty() {
        user = user.additional_gids(groups);
    }

    let mut env = vec![DEFAULT_PATH.to_owned()];
    let mut push_env = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    let (hostname_env, rest) = input
        .env
        .split_first()
        .map_or((None, &[][..]), |(h, r)| (Some(h), r));
    if let Some((k, v)) = hostname_env {
        push_env(format!("{k}={v}"));
    }
    for e in input
        .image
        .and_then(|i| i.env().clone())
        .unwrap_or_default()
    {
        push_env(e);
    }
    for (k, v) in rest {
        push_env(format!("{k}={v}"));
    }
    let cwd = c["workingDir"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| input.image.and_then(|i| i.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        // Not oci-spec's example defaults: containerd sets neither.
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(build_err)?;
    let argv = argv(c, input.image);
    if argv.is_empty() {
        return Err("no command specified".into());
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user.build().map_err(build_err)?)
        .args(argv)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(security(pod, c, "allowPrivilegeEscalation") == &Value::Bool(false))
        .build()
        .map_err(build_err)?;

    // Namespaces: the pod's network (the node's for hostNetwork); PID, IPC
    // and UTS of their own unless shared with the host.
    let ns = |t: LinuxNamespaceType, path: Option<&PathBuf>| {
        let mut b = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = path {
            b = b.path(p.clone());
        }
        b.build().map_err(build_err)
    };
    let net_path = if host_network {
        Some(&input.node_netns)
    } else {
        input.pod_netns.as_ref()
    };
    let mut namespaces = vec![
        ns(LinuxNamespaceType::Mount, None)?,
        ns(LinuxNamespaceType::Network, net_path)?,
    ];
    if !host_pid {
        namespaces.push(ns(LinuxNamespaceType::Pid, None)?);
    }
    if !host_ipc {
        namespaces.push(ns(LinuxNamespaceType::Ipc, None)?);
    }
    if !host_network {
        namespaces.push(ns(LinuxNamespaceType::Uts, None)?);
    }

    // Resources, as the kubelet converts them (shares from requests, quota
    // over a 100 ms period from limits) and containerd applies them.
    let res = &c["resources"];
    let millis = millicores;
    let mut cpu = LinuxCpuBuilder::default().shares(
        millis(&res["requests"]["cpu"])
            .or_else(|| millis(&res["limits"]["cpu"]))
            .map_or(2, |m| (m * 1024 / 1000).max(2)),
    );
    if let Some(m) = millis(&res["limits"]["cpu"]) {
        cpu = cpu.quota((m * 100) as i64).period(100_000u64);
    }
    let mut resources = LinuxResourcesBuilder::default().cpu(cpu.build().map_err(build_err)?);
    if let Some(limit) = bytes(&res["limits"]["memory"]) {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit as i64)
                .build()
                .map_err(build_err)?,
        );
    }
    let all = LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()
        .map_err(build_err)?;
    resources = resources.devices(vec![all]);

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(resources.build().map_err(build_err)?);
    if privileged {
        linux = linux
            .devices(input.host_devices.clone())
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(get_default_maskedpaths())
            .readonly_paths(get_default_readonly_paths());
    }
    let seccomp_type = security(pod, c, "seccompProfile")["type"]
        .as_str()
        .unwrap_or("Unconfined");
    if !privileged {
        match seccomp_type {
            "RuntimeDefault" => {
                linux = linux.seccomp((input.runtime_default)(&caps.iter().cloned().collect())?)
            }
            "Unconfined" => {}
            other => {
                return Err(format!(
                    "failed to generate seccomp spec opts: seccomp profile type {other:?} is not available on this node"
                ))
            }
        }
    }

    let mut annotations = HashMap::new();
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    annotations.insert(
        "io.kubernetes.cri.container-name".into(),
        c["name"].as_str().unwrap_or_default().into(),
    );
    annotations.insert(
        "io.kubernetes.cri.sandbox-name".into(),
        pod["metadata"]["name"].as_str().unwrap_or_default().into(),
    );
    annotations.insert(
        "io.kubernetes.cri.sandbox-namespace".into(),
        pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .into(),
    );
    annotations.insert(
        "io.kubernetes.cri.image-name".into(),
        c["image"].as_str().unwrap_or_default().into(),
    );
    // The builders start from oci-spec's example defaults (hostname,
    // rlimits…): what containerd does not set is cleared after building.
    let mut spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(read_only_root)
                .build()
                .map_err(build_err)?,
        )
        .process(process)
        .mounts(mounts(input, privileged, read_only_root)?)
        .linux(linux.build().map_err(build_err)?)
        .annotations(annotations);
    if !host_network {
        spec = spec.hostname(pod["metadata"]["name"].as_str().unwrap_or_default());
    }
    let mut spec = spec.build().map_err(build_err)?;
    if host_network {
        spec.set_hostname(None);
    }
    if let Some(p) = spec.process_mut() {
        // containerd's WithoutDefaultSecuritySettings: no rlimits.
        p.set_rlimits(None);
    }
    Ok(spec)
}

#[cfg(test)]
#[path = "oci_tests.rs"]
mod tests;

// SPDX-License-Identifier: Apache-2.0
//! The runtime spec, field by field, against what containerd's CRI plugin
//! generates for the same pod.

use super::*;
use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder};
use serde_json::json;

fn fake_default(caps: &HashSet<String>) -> Result<oci_spec::runtime::LinuxSeccomp, String> {
    // Marks what it was called with, so tests see the capability set.
    let mut names: Vec<String> = caps.iter().cloned().collect();
    names.sort();
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .syscalls(vec![oci_spec::runtime::LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActAllow)
            .build()
            .unwrap()])
        .build()
        .map_err(|e| e.to_string())
}

fn runner_pod() -> Value {
    json!({
        "metadata": {"name": "podtrace-x-0-abcde", "namespace": "podtrace"},
        "spec": {
            "hostNetwork": true, "hostPID": true,
            "containers": [{
                "name": "runner", "image": "ghcr.io/podtrace/podtrace-runner:v0.1.0",
                "command": ["/podtrace-runner"], "args": ["--pod-ip", "10.0.0.1"],
                "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                              "requests": {"cpu": "50m", "memory": "64Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "runAsUser": 0, "privileged": false,
                    "capabilities": {"add": ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"], "drop": ["ALL"]},
                    "seccompProfile": {"type": "Unconfined"}
                }
            }]
        }
    })
}

fn app_pod() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "example/app:1", "command": ["/app"]}]}
    })
}

fn spec_for(pod: &Value) -> Result<Spec, String> {
    spec_with(pod, None)
}

fn spec_with(pod: &Value, image: Option<&ImageConfig>) -> Result<Spec, String> {
    let c = &pod["spec"]["containers"][0];
    let input = SpecInput {
        pod,
        container: c,
        image,
        env: vec![
            ("HOSTNAME".into(), "node-1".into()),
            ("NODE_NAME".into(), "node-1".into()),
        ],
        node_netns: "/run/netns/pt1-node-1".into(),
        pod_netns: (pod["spec"]["hostNetwork"] != json!(true))
            .then(|| "/run/netns/pt1-default.web".into()),
        cgroups_path: "/podtrace-sandbox/pt1-1-x".into(),
        files: PodFiles {
            hosts: "/tmp/f/hosts".into(),
            hostname: "/tmp/f/hostname".into(),
            resolv_conf: "/tmp/f/resolv.conf".into(),
            termination_log: "/tmp/f/termination-log".into(),
            empty_dirs: HashMap::new(),
        },
        all_caps: vec!["CAP_CHOWN".into(), "CAP_SYS_ADMIN".into(), "CAP_BPF".into()],
        host_devices: vec![oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/dev/kmsg")
            .typ(oci_spec::runtime::LinuxDeviceType::C)
            .major(1)
            .minor(11)
            .build()
            .unwrap()],
        runtime_default: fake_default,
    };
    runtime_spec(&input)
}

fn namespaces(s: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    s.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .clone()
        .unwrap()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

fn caps(s: &Spec) -> Vec<String> {
    let mut v: Vec<String> = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    v.sort();
    v
}

fn mount_of<'s>(s: &'s Spec, dest: &str) -> Option<&'s Mount> {
    s.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == std::path::Path::new(dest))
}

fn options(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

#[test]
fn host_network_joins_the_node_namespace_and_host_pid_adds_no_pid_namespace() {
    let s = spec_for(&runner_pod()).unwrap();
    let ns = namespaces(&s);
    assert!(ns.contains(&(
        LinuxNamespaceType::Network,
        Some("/run/netns/pt1-node-1".into())
    )));
    assert!(
        !ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Pid),
        "{ns:?}"
    );
    assert!(
        !ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Uts),
        "host UTS with host network"
    );
    assert_eq!(s.hostname(), &None);
}

#[test]
fn a_pod_network_pod_joins_its_own_namespace_with_private_pid_uts_ipc() {
    let s = spec_for(&app_pod()).unwrap();
    let ns = namespaces(&s);
    assert!(ns.contains(&(
        LinuxNamespaceType::Network,
        Some("/run/netns/pt1-default.web".into())
    )));
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
    ] {
        assert!(ns.contains(&(t, None)), "{t:?} in {ns:?}");
    }
    assert_eq!(s.hostname().as_deref(), Some("web"));
}

#[test]
fn mounts_are_containerds_defaults_plus_the_kubelets_files() {
    let s = spec_for(&app_pod()).unwrap();
    for (dest, typ) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
        ("/sys/fs/cgroup", "cgroup"),
        ("/etc/hosts", "bind"),
        ("/etc/hostname", "bind"),
        ("/etc/resolv.conf", "bind"),
        ("/dev/termination-log", "bind"),
    ] {
        let m = mount_of(&s, dest).unwrap_or_else(|| panic!("{dest} mounted"));
        assert_eq!(m.typ().as_deref(), Some(typ), "{dest}");
    }
    assert!(mount_of(&s, "/run").is_none(), "WithoutRunMount");
    assert!(options(mount_of(&s, "/sys").unwrap()).contains(&"ro".into()));
    assert!(options(mount_of(&s, "/sys/fs/cgroup").unwrap()).contains(&"ro".into()));
    assert_eq!(
        mount_of(&s, "/etc/hosts").unwrap().source().as_deref(),
        Some(std::path::Path::new("/tmp/f/hosts"))
    );
}

#[test]
fn read_only_root_makes_root_and_the_etc_files_read_only() {
    let s = spec_for(&runner_pod()).unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    assert!(options(mount_of(&s, "/etc/resolv.conf").unwrap()).contains(&"ro".into()));
    let s = spec_for(&app_pod()).unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
}

#[test]
fn run_as_user_comes_from_the_container_then_the_pod_then_the_image() {
    let mut pod = app_pod();
    pod["spec"]["securityContext"] =
        json!({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]});
    let s = spec_for(&pod).unwrap();
    let user = s.process().as_ref().unwrap().user();
    assert_eq!((user.uid(), user.gid()), (1000, 3000));
    assert_eq!(user.additional_gids().as_deref(), Some(&[4000u32][..]));
    pod["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 2000});
    assert_eq!(
        spec_for(&pod)
            .unwrap()
            .process()
            .as_ref()
            .unwrap()
            .user()
            .uid(),
        2000
    );
    let image: ImageConfig = serde_json::from_value(json!({"User": "65532"})).unwrap();
    assert_eq!(
        spec_with(&app_pod(), Some(&image))
            .unwrap()
            .process()
            .as_ref()
            .unwrap()
            .user()
            .uid(),
        65532
    );
}

#[test]
fn capabilities_are_the_default_set_plus_add_minus_drop() {
    let s = spec_for(&app_pod()).unwrap();
    let mut want: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(caps(&s), want);
    let mut pod = app_pod();
    pod["spec"]["containers"][0]["securityContext"] =
        json!({"capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN", "KILL"]}});
    let got = caps(&spec_for(&pod).unwrap());
    assert!(got.contains(&"CAP_NET_ADMIN".into()));
    assert!(!got.contains(&"CAP_CHOWN".into()) && !got.contains(&"CAP_KILL".into()));
    assert_eq!(got.len(), DEFAULT_CAPS.len() - 1);
    let s = spec_for(&runner_pod()).unwrap();
    assert_eq!(
        caps(&s),
        ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_PTRACE"]
    );
    let pcaps = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert_eq!(pcaps.effective(), pcaps.bounding());
    assert_eq!(pcaps.permitted(), pcaps.bounding());
    assert!(
        pcaps.ambient().as_ref().is_none_or(|a| a.is_empty()),
        "no ambient caps"
    );
    assert!(
        pcaps.inheritable().as_ref().is_none_or(|a| a.is_empty()),
        "no inheritable caps"
    );
}

#[test]
fn privileged_gets_every_capability_device_and_rw_sysfs_and_no_seccomp() {
    let mut pod = runner_pod();
    pod["spec"]["containers"][0]["securityContext"] =
        json!({"privileged": true, "seccompProfile": {"type": "RuntimeDefault"}});
    let s = spec_for(&pod).unwrap();
    assert_eq!(caps(&s), ["CAP_BPF", "CAP_CHOWN", "CAP_SYS_ADMIN"]);
    let linux = s.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none(), "privileged runs unconfined");
    assert_eq!(linux.devices().as_ref().unwrap().len(), 1);
    let dev = &linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()[0];
    assert!(dev.allow(), "all devices allowed");
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    assert!(options(mount_of(&s, "/sys").unwrap()).contains(&"rw".into()));
    // Unprivileged: all devices denied, the kubelet's masked paths.
    let s = spec_for(&runner_pod()).unwrap();
    let linux = s.linux().as_ref().unwrap();
    assert!(!linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()[0]
        .allow());
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
}

#[test]
fn allow_privilege_escalation_false_sets_no_new_privileges() {
    let s = spec_for(&runner_pod()).unwrap();
    assert_eq!(
        s.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    let s = spec_for(&app_pod()).unwrap();
    assert_eq!(
        s.process().as_ref().unwrap().no_new_privileges(),
        Some(false)
    );
}

#[test]
fn seccomp_runtime_default_gets_the_profile_for_the_capabilities_unconfined_none() {
    let s = spec_for(&runner_pod()).unwrap();
    assert!(
        s.linux().as_ref().unwrap().seccomp().is_none(),
        "Unconfined"
    );
    let mut pod = runner_pod();
    pod["spec"]["containers"][0]["securityContext"]["seccompProfile"] =
        json!({"type": "RuntimeDefault"});
    let s = spec_for(&pod).unwrap();
    let sc = s.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(
        sc.syscalls().as_ref().unwrap()[0].names(),
        &["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_PTRACE"]
    );
    // The pod's profile applies when the container sets none.
    let mut pod = app_pod();
    pod["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    assert!(spec_for(&pod)
        .unwrap()
        .linux()
        .as_ref()
        .unwrap()
        .seccomp()
        .is_some());
    // Not set at all: the kubelet's default is Unconfined.
    assert!(spec_for(&app_pod())
        .unwrap()
        .linux()
        .as_ref()
        .unwrap()
        .seccomp()
        .is_none());
    pod["spec"]["securityContext"] =
        json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}});
    assert!(spec_for(&pod).unwrap_err().contains("Localhost"));
}

#[test]
fn env_is_path_hostname_image_then_container_later_wins() {
    let image: ImageConfig =
        serde_json::from_value(json!({"Env": ["PATH=/opt/bin", "NODE_NAME=from-image", "LANG=C"]}))
            .unwrap();
    let s = spec_with(&runner_pod(), Some(&image)).unwrap();
    let env = s.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(
        env,
        [
            "HOSTNAME=node-1",
            "PATH=/opt/bin",
            "LANG=C",
            "NODE_NAME=node-1"
        ]
    );
    let s = spec_for(&app_pod()).unwrap();
    assert!(s.process().as_ref().unwrap().env().as_ref().unwrap()[0]
        .starts_with("PATH=/usr/local/sbin"));
}

#[test]
fn resources_become_cgroup_limits_as_the_kubelet_converts_them() {
    let s = spec_for(&runner_pod()).unwrap();
    let linux = s.linux().as_ref().unwrap();
    let r = linux.resources().as_ref().unwrap();
    assert_eq!(
        r.memory().as_ref().unwrap().limit(),
        Some(256 * 1024 * 1024)
    );
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(cpu.shares(), Some(51), "50m request: 50 * 1024 / 1000");
    assert_eq!(
        (cpu.quota(), cpu.period()),
        (Some(50_000), Some(100_000)),
        "500m limit"
    );
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(std::path::Path::new("/podtrace-sandbox/pt1-1-x"))
    );
    let s = spec_for(&app_pod()).unwrap();
    let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
    assert_eq!(
        r.cpu().as_ref().unwrap().shares(),
        Some(2),
        "BestEffort: minimum shares"
    );
    assert!(r.memory().is_none());
}

#[test]
fn command_replaces_the_entrypoint_and_args_the_cmd() {
    let image: ImageConfig =
        serde_json::from_value(json!({"Entrypoint": ["/podtrace-runner"], "Cmd": ["--help"]}))
            .unwrap();
    let c = json!({});
    assert_eq!(argv(&c, Some(&image)), ["/podtrace-runner", "--help"]);
    let c = json!({"args": ["--version"]});
    assert_eq!(argv(&c, Some(&image)), ["/podtrace-runner", "--version"]);
    let c = json!({"command": ["/bin/sh"], "args": ["-c", "x"]});
    assert_eq!(argv(&c, Some(&image)), ["/bin/sh", "-c", "x"]);
    let mut pod = app_pod();
    pod["spec"]["containers"][0]["command"] = json!([]);
    assert_eq!(spec_for(&pod).unwrap_err(), "no command specified");
}

#[test]
fn quantities_parse_as_kubernetes_writes_them() {
    for (q, want) in [
        (json!("256Mi"), Some(268_435_456)),
        (json!("1G"), Some(1_000_000_000)),
        (json!("129e6"), Some(129_000_000)),
        (json!(1000), Some(1000)),
        (json!("1.5Ki"), Some(1536)),
        (json!("lots"), None),
        (json!("-1"), None),
    ] {
        assert_eq!(bytes(&q), want, "{q}");
    }
    assert_eq!(millicores(&json!("500m")), Some(500));
    assert_eq!(millicores(&json!("1.5")), Some(1500));
}

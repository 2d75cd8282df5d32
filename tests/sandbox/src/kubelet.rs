// SPDX-License-Identifier: Apache-2.0
//! The scheduler and the kubelet: place a pod on a node, give it a network
//! namespace, "pull" its image (map it to something runnable here), run
//! each container as a process group and report it through the pod's
//! status, events and log, as a real kubelet does.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::objects::event_for;
use crate::sandbox::State;
use crate::store::{now, Key, Resource};

const KUBELET: &str = "kubelet";

/// What the kubelet holds for a pod it runs.
pub struct PodRuntime {
    /// The namespace the pod's processes run in (the node's for hostNetwork).
    pub netns: Option<String>,
    /// The pod's own namespace; dropping it removes it.
    pub net_pod: Option<podtrace_netns::Pod>,
    /// Process groups of its running containers.
    pub groups: Vec<i32>,
    /// `Some(grace seconds)` once the pod is being deleted.
    pub kill: watch::Sender<Option<i64>>,
    /// Scratch files (nginx config), removed with the pod.
    pub dirs: Vec<PathBuf>,
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_owned(), name.to_owned())
}

/// Starts running a pod that was just stored.
pub fn start_pod(state: &Arc<State>, ns: &str, name: &str) {
    let (kill, kill_rx) = watch::channel(None);
    state
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            key(ns, name),
            PodRuntime {
                netns: None,
                net_pod: None,
                groups: Vec::new(),
                kill,
                dirs: Vec::new(),
            },
        );
    let state = state.clone();
    let (ns, name) = (ns.to_owned(), name.to_owned());
    tokio::spawn(async move {
        run_pod(&state, &ns, &name, kill_rx).await;
        finish_pod(&state, &ns, &name).await;
    });
}

/// Asks the kubelet to stop a pod: SIGTERM now, SIGKILL after `grace`
/// seconds. `false` if the kubelet is not running it.
pub fn stop_pod(state: &State, ns: &str, name: &str, grace: i64) -> bool {
    let rt = state.runtime.lock().unwrap_or_else(|e| e.into_inner());
    match rt.get(&key(ns, name)) {
        Some(r) => {
            r.kill.send_replace(Some(grace));
            true
        }
        None => false,
    }
}

pub fn netns_of(state: &State, ns: &str, name: &str) -> Option<String> {
    let rt = state.runtime.lock().unwrap_or_else(|e| e.into_inner());
    rt.get(&key(ns, name)).and_then(|r| r.netns.clone())
}

/// Live processes in any runner container's process group.
pub fn runner_processes(state: &State) -> Vec<u32> {
    let groups = state
        .runner_groups
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut pids = processes_in_groups(&groups, false);
    pids.extend(state.cri.runner_pids());
    pids
}

/// Pids whose process group is one of `groups` (zombies too if asked).
fn processes_in_groups(groups: &HashSet<i32>, zombies: bool) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp …
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if !zombies && fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(pgrp) = fields.get(2).and_then(|p| p.parse::<i32>().ok()) {
            if groups.contains(&pgrp) {
                out.push(pid);
            }
        }
    }
    out
}

/// Kills every container process and drops every pod namespace (teardown).
pub fn kill_everything(state: &State) {
    // Containers first: runc's own processes below then exit with them.
    state.cri.teardown();
    let runtimes: Vec<PodRuntime> = state
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, r)| r)
        .collect();
    let mut groups: HashSet<i32> = state
        .runner_groups
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for r in &runtimes {
        groups.extend(r.groups.iter().copied());
    }
    for g in &groups {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    for r in runtimes {
        for d in &r.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        drop(r.net_pod);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // Until reaped (by the kubelet's waiters), so no pid outlives us.
    while !processes_in_groups(&groups, true).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn update_pod(state: &State, ns: &str, name: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
    state
        .lock()
        .update(&Key::new(Resource::Pod, ns, name), f)
        .ok()
}

/// Sets every container's `ready` (a readiness probe's verdict); `None`
/// when the pod does not exist.
pub(crate) fn set_ready(state: &State, ns: &str, name: &str, ready: bool) -> Option<Value> {
    update_pod(state, ns, name, |p| {
        for c in p["status"]["containerStatuses"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            c["ready"] = json!(ready);
        }
        recompute(p);
    })
}

fn event(state: &State, ns: &str, name: &str, ty: &str, reason: &str, msg: &str, node: &str) {
    let component = if reason == "Scheduled" || reason == "FailedScheduling" {
        "default-scheduler"
    } else {
        KUBELET
    };
    let host = (component == KUBELET).then_some(node);
    event_for(
        &mut state.lock(),
        &Key::new(Resource::Pod, ns, name),
        ty,
        reason,
        msg,
        component,
        host,
    );
}

/// Waits for `d` unless the pod is being deleted first; `true` if deleted.
async fn sleep_or_killed(d: Duration, kill: &mut watch::Receiver<Option<i64>>) -> bool {
    if kill.borrow().is_some() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = kill.wait_for(Option::is_some) => true,
    }
}

async fn run_pod(state: &Arc<State>, ns: &str, name: &str, mut kill: watch::Receiver<Option<i64>>) {
    let Some(pod) = state
        .lock()
        .get(&Key::new(Resource::Pod, ns, name))
        .cloned()
    else {
        return;
    };
    // Schedule, retrying as nodes change (a taint removed, a node uncordoned).
    let preset = pod["spec"]["nodeName"].as_str().map(str::to_owned);
    let mut reported = String::new();
    let node = loop {
        let decision = match &preset {
            Some(n) => Ok(n.clone()),
            None => {
                // Decide and bind under one lock: pods created together must
                // see each other's placement, or they all pick the same
                // least-loaded node.
                let mut st = state.lock();
                let decision = schedule(
                    &st.list(Resource::Node, None),
                    &pod,
                    &st.list(Resource::Pod, None),
                );
                if let Ok(node) = &decision {
                    let _ = st.update(&Key::new(Resource::Pod, ns, name), |p| {
                        p["spec"]["nodeName"] = json!(node);
                    });
                }
                decision
            }
        };
        match decision {
            Ok(n) => break n,
            Err(msg) => {
                if msg != reported {
                    update_pod(state, ns, name, |p| {
                        p["status"]["conditions"] = json!([{
                            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": msg, "lastProbeTime": null, "lastTransitionTime": now(),
                        }]);
                    });
                    event(state, ns, name, "Warning", "FailedScheduling", &msg, "");
                    reported = msg;
                }
                if sleep_or_killed(Duration::from_millis(500), &mut kill).await {
                    return;
                }
            }
        }
    };
    let host_network = pod["spec"]["hostNetwork"] == json!(true);
    let Some(node_obj) = state
        .lock()
        .get(&Key::new(Resource::Node, "", &node))
        .cloned()
    else {
        // A real kubelet for a node that does not exist never picks it up.
        let _ = kill.wait_for(Option::is_some).await;
        return;
    };
    // The node's InternalIPs, the primary family first.
    let host_ips: Vec<String> = node_obj["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| Some(a["address"].as_str()?.to_owned()))
        .collect();
    let host_ip = host_ips.first().cloned().unwrap_or_default();
    update_pod(state, ns, name, |p| {
        p["spec"]["nodeName"] = json!(node);
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True",
            "lastProbeTime": null, "lastTransitionTime": now()}]);
    });
    if preset.is_none() {
        event(
            state,
            ns,
            name,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {ns}/{name} to {node}"),
            &node,
        );
    }
    // The pod sandbox: its network namespace and address.
    // No clone of the cluster may outlive this block: teardown drops the
    // last one to delete the nodes' namespaces.
    let net = state.net.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(net) = net else { return };
    let (netns, pod_ips) = if host_network {
        let netns = net
            .node(&node)
            .map(|n| n.netns.name().to_owned())
            .unwrap_or_default();
        drop(net);
        (netns, host_ips.clone())
    } else {
        let (node2, pname) = (node.clone(), format!("{ns}.{name}"));
        let family = state.ip_family;
        match tokio::task::spawn_blocking(move || net.add_pod(&node2, &pname)).await {
            Ok(Ok(p)) => {
                let netns = p.netns.name().to_owned();
                let ips = family.order(p.ip.to_string(), p.ip6.map(|a| a.to_string()));
                if let Some(rt) = state
                    .runtime
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&key(ns, name))
                {
                    rt.net_pod = Some(p);
                }
                (netns, ips)
            }
            Ok(Err(e)) => {
                event(
                    state,
                    ns,
                    name,
                    "Warning",
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                    &node,
                );
                let _ = kill.wait_for(Option::is_some).await;
                return;
            }
            Err(_) => return,
        }
    };
    if let Some(rt) = state
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&key(ns, name))
    {
        rt.netns = Some(netns.clone());
    }
    crate::services::dns::write_resolv_conf(state, &pod, &netns);
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    update_pod(state, ns, name, |p| {
        let ts = now();
        p["status"]["hostIP"] = json!(host_ip);
        p["status"]["hostIPs"] = json!(host_ips
            .iter()
            .map(|ip| json!({"ip": ip}))
            .collect::<Vec<_>>());
        p["status"]["podIP"] = json!(pod_ips.first());
        p["status"]["podIPs"] = json!(pod_ips
            .iter()
            .map(|ip| json!({"ip": ip}))
            .collect::<Vec<_>>());
        p["status"]["startTime"] = json!(ts);
        p["status"]["containerStatuses"] = json!(containers
            .iter()
            .map(|c| json!({
                "name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                "restartCount": 0, "started": false, "lastState": {},
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }))
            .collect::<Vec<_>>());
        recompute(p);
    });
    let ctx = PodCtx {
        state: state.clone(),
        ns: ns.to_owned(),
        name: name.to_owned(),
        node,
        netns,
        pod_ips,
        host_ip,
        pod,
    };
    let ctx = Arc::new(ctx);
    let tasks: Vec<_> = containers
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(run_container(ctx.clone(), i, c, kill.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// After the pod's containers are all gone: if it is being deleted, remove
/// it (and its namespace); otherwise it stays, Succeeded or Failed.
async fn finish_pod(state: &Arc<State>, ns: &str, name: &str) {
    let deleting = {
        let rt = state.runtime.lock().unwrap_or_else(|e| e.into_inner());
        rt.get(&key(ns, name))
            .is_none_or(|r| r.kill.borrow().is_some())
    };
    if !deleting {
        // Keep the runtime entry (no processes) so a later delete is
        // handled here: wait for it.
        let rx = {
            let rt = state.runtime.lock().unwrap_or_else(|e| e.into_inner());
            rt.get(&key(ns, name)).map(|r| r.kill.subscribe())
        };
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }
    let rt = state
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key(ns, name));
    if let Some(rt) = rt {
        let _ = tokio::task::spawn_blocking(move || {
            for d in &rt.dirs {
                let _ = std::fs::remove_dir_all(d);
            }
            drop(rt.net_pod);
        })
        .await;
    }
    state.logs.remove_pod(ns, name);
    let removed = state.lock().remove(&Key::new(Resource::Pod, ns, name));
    if let Ok(pod) = removed {
        note_ended_job_pod(state, &pod);
    }
}

/// A Job's pod that goes counts for its Job: succeeded if it did, failed
/// otherwise (also when deleted while pending or running), as the real
/// controller counts it before its tracking finalizer lets the pod go.
pub fn note_ended_job_pod(state: &State, pod: &Value) {
    let owner = pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["kind"] == "Job" && o["controller"] == json!(true));
    if let Some(o) = owner {
        state
            .ended_job_pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(crate::jobs::EndedPod {
                job_uid: o["uid"].as_str().unwrap_or("").to_owned(),
                pod_uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
                succeeded: pod["status"]["phase"] == "Succeeded",
            });
    }
}

struct PodCtx {
    state: Arc<State>,
    ns: String,
    name: String,
    node: String,
    netns: String,
    /// The primary family first.
    pod_ips: Vec<String>,
    host_ip: String,
    pod: Value,
}

impl PodCtx {
    fn event(&self, ty: &str, reason: &str, msg: &str) {
        event(
            &self.state,
            &self.ns,
            &self.name,
            ty,
            reason,
            msg,
            &self.node,
        );
    }

    fn set_container(&self, i: usize, f: impl FnOnce(&mut Value)) {
        update_pod(&self.state, &self.ns, &self.name, |p| {
            f(&mut p["status"]["containerStatuses"][i]);
            recompute(p);
        });
    }
}

/// Derives phase and conditions from the container statuses.
fn recompute(p: &mut Value) {
    let restart = p["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_owned();
    let cs = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ran = |c: &Value| {
        !c["state"]["running"].is_null()
            || !c["state"]["terminated"].is_null()
            || c["restartCount"].as_i64().unwrap_or(0) > 0
    };
    let all_terminated = !cs.is_empty() && cs.iter().all(|c| !c["state"]["terminated"].is_null());
    let phase = if cs.is_empty() || !cs.iter().all(ran) {
        "Pending"
    } else if all_terminated && restart != "Always" {
        if cs
            .iter()
            .all(|c| c["state"]["terminated"]["exitCode"] == json!(0))
        {
            "Succeeded"
        } else if restart == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Running"
    };
    let ready = !cs.is_empty() && cs.iter().all(|c| c["ready"] == json!(true));
    let ts = now();
    let not_ready: Vec<String> = cs
        .iter()
        .filter(|c| c["ready"] != json!(true))
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let cond = |ty: &str, ok: bool, reason: Option<&str>| {
        let mut c = json!({"type": ty, "status": if ok {"True"} else {"False"},
                           "lastProbeTime": null, "lastTransitionTime": ts});
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
            c["message"] = json!(format!(
                "containers with unready status: [{}]",
                not_ready.join(" ")
            ));
        }
        c
    };
    let sandbox_ready = !all_terminated || restart == "Always";
    let mut conditions = vec![
        cond("PodReadyToStartContainers", sandbox_ready, None),
        cond("Initialized", true, None),
        cond(
            "Ready",
            ready,
            Some(if phase == "Succeeded" || phase == "Failed" {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
        ),
        cond(
            "ContainersReady",
            ready,
            Some(if phase == "Succeeded" || phase == "Failed" {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
        ),
        cond("PodScheduled", true, None),
    ];
    // Keep transition times of conditions whose status did not change.
    if let Some(old) = p["status"]["conditions"].as_array() {
        for c in &mut conditions {
            if let Some(o) = old
                .iter()
                .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
            {
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
            }
        }
    }
    p["status"]["phase"] = json!(phase);
    p["status"]["conditions"] = json!(conditions);
}

/// What an image becomes on this machine.
enum Image {
    Runner,
    /// Loaded into the node's image store: runs as an OCI container.
    Oci(Box<crate::images::StoredImage>),
    Nginx,
    /// A tool image: its default command, when the pod gives none.
    Tool(&'static str),
}

/// `docker.io/library/nginx:1.27@sha256:…` → `docker.io/library/nginx`
fn image_repo(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// How a container is started.
enum Launch {
    /// A process in the pod's network namespace.
    Process(Vec<String>),
    /// An OCI container, bundle ready.
    Runc(crate::runc::Container),
}

fn is_runner_image(image: &str) -> bool {
    image_repo(image).ends_with("podtrace-runner")
}

/// The image from the node's store, unless a runner crash is injected
/// (that runs the crashing stand-in instead).
fn oci_image(ctx: &PodCtx, image: &str) -> Option<Image> {
    let crash = ctx
        .state
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .runner_crash
        .is_some();
    if crash && is_runner_image(image) {
        return None;
    }
    match ctx.state.cri.images.resolve(image) {
        Ok(found) => found.map(|i| Image::Oci(Box::new(i))),
        Err(e) => {
            tracing::warn!(image, error = %e, "image store unreadable");
            None
        }
    }
}

fn prepare_oci(
    ctx: &PodCtx,
    c: &Value,
    image: &crate::images::StoredImage,
    scratch: &Path,
    attempt: u32,
) -> Result<crate::runc::Container, String> {
    let host_network = ctx.pod["spec"]["hostNetwork"] == json!(true);
    let node_netns = ctx
        .state
        .net
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|n| n.node(&ctx.node).ok().map(|n| n.netns.name().to_owned()))
        .unwrap_or_else(|| ctx.netns.clone());
    let info = crate::cri::PodInfo {
        pod: &ctx.pod,
        container: c,
        node: &ctx.node,
        pod_ip: ctx.pod_ips.first().map(String::as_str).unwrap_or(""),
        node_netns: &node_netns,
        pod_netns: (!host_network).then_some(ctx.netns.as_str()),
        env: env_for(ctx, c),
        scratch,
    };
    crate::cri::prepare(&ctx.state.cri, &info, image, attempt)
        .map_err(|e| format!("failed to create containerd task: failed to create shim task: {e}"))
}

fn classify(image: &str) -> Option<Image> {
    let repo = image_repo(image);
    let short = repo
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    if repo.ends_with("podtrace-runner") {
        return Some(Image::Runner);
    }
    let last = repo.rsplit('/').next().unwrap_or(repo);
    if last.starts_with("nginx") {
        return Some(Image::Nginx);
    }
    let tool = match short {
        "curlimages/curl" => "curl",
        "busybox"
        | "alpine"
        | "debian"
        | "ubuntu"
        | "praqma/network-multitool"
        | "wbitt/network-multitool"
        | "nicolaka/netshoot"
        | "registry.k8s.io/e2e-test-images/agnhost" => "sh",
        "registry.k8s.io/dns/k8s-dns-dnsmasq-nanny" => "dnsmasq",
        "registry.k8s.io/pause" | "k8s.gcr.io/pause" => "sleep infinity",
        _ => return None,
    };
    Some(Image::Tool(tool))
}

fn pull_error(image: &str) -> String {
    let repo = image_repo(image);
    let full = if repo.contains('.')
        && repo.contains('/')
        && repo
            .split('/')
            .next()
            .is_some_and(|h| h.contains('.') || h.contains(':'))
    {
        image.to_owned()
    } else if repo.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    let full = if full.contains(':') && full.rfind(':') > full.rfind('/') {
        full
    } else {
        format!("{full}:latest")
    };
    format!(
        "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
    )
}

/// The runner binary: config, `PODTRACE_RUNNER_BIN`, next to the current
/// executable or in its parent directory (cargo's `deps/`), else `PATH`.
fn runner_bin(state: &State) -> Option<PathBuf> {
    if let Some(p) = &state.runner_bin {
        return Some(p.clone());
    }
    if let Some(p) = std::env::var_os("PODTRACE_RUNNER_BIN") {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        let dir = exe.parent().map(Path::to_path_buf);
        for d in dir.iter().chain(
            dir.as_ref()
                .and_then(|d| d.parent())
                .map(Path::to_path_buf)
                .iter(),
        ) {
            let candidate = d.join("podtrace-runner");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    which("podtrace-runner")
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

fn container_id() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

/// A started container: the process and the reader of its output.
struct Running {
    child: std::process::Child,
    reader: std::thread::JoinHandle<()>,
}

fn spawn(
    ctx: &PodCtx,
    argv: &[String],
    env: &[(String, String)],
    log: Arc<crate::logs::Log>,
    workdir: Option<&str>,
) -> std::io::Result<Running> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ctx.netns]).args(argv);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            }),
        )
        .env("HOME", "/root");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(w) = workdir.filter(|w| Path::new(w).is_dir()) {
        cmd.current_dir(w);
    }
    spawn_logged(cmd, log)
}

/// Starts `cmd` in a process group of its own, its stdout and stderr (one
/// pipe: lines interleave as they were written) going to `log`.
fn spawn_logged(mut cmd: Command, log: Arc<crate::logs::Log>) -> std::io::Result<Running> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write2 = write.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2));
    // Its own process group, so stopping the container reaches its children.
    cmd.process_group(0);
    let child = cmd.spawn()?;
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(std::fs::File::from(read));
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    log.push(line.clone());
                }
            }
        }
    });
    Ok(Running { child, reader })
}

/// `ipv6`: listen on IPv6 too (the socket cannot be made where the pod's
/// namespace has IPv6 off).
fn nginx_conf(dir: &Path, ipv6: bool) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let listen6 = if ipv6 {
        "    listen [::]:80 default_server;\n"
    } else {
        ""
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log stderr notice;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log /dev/stdout;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 80 default_server;\n{listen6}    root /var/www/html;\n\
         index index.html index.htm index.nginx-debian.html;\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn is_listening(netns: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "ss",
            "-Hltn",
            &format!("sport = :{port}"),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

fn env_for(ctx: &PodCtx, c: &Value) -> Vec<(String, String)> {
    let hostname = if ctx.pod["spec"]["hostNetwork"] == json!(true) {
        ctx.node.clone()
    } else {
        ctx.name.clone()
    };
    let mut env = vec![("HOSTNAME".to_owned(), hostname)];
    for e in c["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let value = if let Some(v) = e["value"].as_str() {
            v.to_owned()
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "spec.nodeName" => ctx.node.clone(),
                "metadata.name" => ctx.name.clone(),
                "metadata.namespace" => ctx.ns.clone(),
                "metadata.uid" => ctx.pod["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
                "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
                // As the kubelet: every address, comma-separated.
                "status.podIPs" => ctx.pod_ips.join(","),
                "status.hostIP" => ctx.host_ip.clone(),
                "spec.serviceAccountName" => ctx.pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
                _ => String::new(),
            }
        } else {
            String::new()
        };
        env.push((name.to_owned(), value));
    }
    env
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The argv to run for a container, or the runtime's start error.
fn argv_for(ctx: &PodCtx, c: &Value, image: &Image, scratch: &Path) -> Result<Vec<String>, String> {
    let command = strings(&c["command"]);
    let args = strings(&c["args"]);
    let not_found = |p: &str| {
        format!(
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{p}\": executable file not found in $PATH: unknown")
    };
    match image {
        Image::Runner => {
            let crash = ctx
                .state
                .faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .runner_crash
                .clone();
            if let Some(crash) = crash {
                return Ok(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo \"$0\" >&2; exit \"$1\"".into(),
                    crash.message,
                    crash.exit_code.to_string(),
                ]);
            }
            let bin = runner_bin(&ctx.state).ok_or_else(|| not_found("podtrace-runner"))?;
            let mut argv = vec![bin.display().to_string()];
            // The image's entrypoint is the runner: a command naming it
            // (by any path) is the binary; anything else runs as given.
            match command.split_first() {
                Some((first, rest)) if first.rsplit('/').next() == Some("podtrace-runner") => {
                    argv.extend(rest.iter().cloned())
                }
                Some(_) => argv = command.clone(),
                None => {}
            }
            argv.extend(args);
            Ok(argv)
        }
        Image::Nginx => {
            let ipv6 = ctx.pod_ips.iter().any(|ip| ip.contains(':'));
            let conf = nginx_conf(scratch, ipv6)
                .map_err(|e| format!("failed to write the nginx config: {e}"))?;
            Ok(vec![
                "nginx".into(),
                "-e".into(),
                "stderr".into(),
                "-c".into(),
                conf.display().to_string(),
            ])
        }
        Image::Oci(_) => Err("an OCI image runs through runc, not as a process".into()),
        Image::Tool(default) => {
            let mut argv = if command.is_empty() {
                default.split(' ').map(str::to_owned).collect()
            } else {
                command
            };
            argv.extend(args);
            if which(&argv[0]).is_none() {
                return Err(not_found(&argv[0]));
            }
            Ok(argv)
        }
    }
}

async fn run_container(
    ctx: Arc<PodCtx>,
    i: usize,
    c: Value,
    mut kill: watch::Receiver<Option<i64>>,
) {
    let image_name = c["image"].as_str().unwrap_or("").to_owned();
    let cname = c["name"].as_str().unwrap_or("").to_owned();
    let restart = ctx.pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_owned();
    // Pull, with back-off while it fails (a fault may be lifted meanwhile).
    let mut backoff = Duration::from_secs(1);
    let image = loop {
        ctx.event(
            "Normal",
            "Pulling",
            &format!("Pulling image \"{image_name}\""),
        );
        let (delay, failing) = {
            let f = ctx.state.faults.lock().unwrap_or_else(|e| e.into_inner());
            (
                f.pull_delay,
                f.failing_images
                    .iter()
                    .any(|p| image_name.starts_with(p.as_str())),
            )
        };
        let started = Instant::now();
        if sleep_or_killed(delay, &mut kill).await {
            return;
        }
        let stored = if failing {
            None
        } else {
            oci_image(&ctx, &image_name)
        };
        if let Some(img) = stored {
            ctx.event(
                "Normal",
                "Pulled",
                &format!("Container image \"{image_name}\" already present on machine"),
            );
            break img;
        }
        match classify(&image_name).filter(|_| !failing) {
            Some(img) => {
                let took = started.elapsed().as_secs_f64();
                ctx.event("Normal", "Pulled", &format!(
                    "Successfully pulled image \"{image_name}\" in {took:.3}s ({took:.3}s including waiting). Image size: 4194304 bytes."));
                break img;
            }
            None => {
                let msg = pull_error(&image_name);
                ctx.event("Warning", "Failed", &msg);
                ctx.event("Warning", "Failed", "Error: ErrImagePull");
                ctx.set_container(i, |s| {
                    s["state"] = json!({"waiting": {"reason": "ErrImagePull", "message": msg}})
                });
                if sleep_or_killed(Duration::from_millis(300), &mut kill).await {
                    return;
                }
                let msg = format!("Back-off pulling image \"{image_name}\"");
                ctx.event("Normal", "BackOff", &msg);
                ctx.event("Warning", "Failed", "Error: ImagePullBackOff");
                ctx.set_container(i, |s| {
                    s["state"] = json!({"waiting": {"reason": "ImagePullBackOff", "message": msg}})
                });
                if sleep_or_killed(backoff, &mut kill).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    let scratch = std::env::temp_dir().join(format!(
        "{}{}.{}-{cname}",
        ctx.netns.split('-').next().unwrap_or("pt"),
        ctx.ns,
        ctx.name
    ));
    if let Some(rt) = ctx
        .state
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&key(&ctx.ns, &ctx.name))
    {
        rt.dirs.push(scratch.clone());
    }
    let mut restarts = 0;
    let mut crash_backoff = Duration::from_secs(1);
    loop {
        let launch = match &image {
            Image::Oci(img) => prepare_oci(&ctx, &c, img, &scratch, restarts).map(Launch::Runc),
            _ => argv_for(&ctx, &c, &image, &scratch).map(Launch::Process),
        };
        let launch = match launch {
            Ok(l) => l,
            Err(msg) => {
                ctx.event("Warning", "Failed", &format!("Error: {msg}"));
                let ts = now();
                ctx.set_container(i, |s| {
                    s["state"] = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": msg,
                                                       "startedAt": "1970-01-01T00:00:00Z", "finishedAt": ts}});
                });
                if restart == "Never" || sleep_or_killed(crash_backoff, &mut kill).await {
                    let _ = kill.wait_for(Option::is_some).await;
                    return;
                }
                crash_backoff = (crash_backoff * 2).min(Duration::from_secs(10));
                restarts += 1;
                continue;
            }
        };
        let cid = match &launch {
            Launch::Runc(c) => format!("runc://{}", c.id),
            Launch::Process(_) => format!("containerd://{}", container_id()),
        };
        ctx.event("Normal", "Created", &format!("Created container: {cname}"));
        let log = ctx.state.logs.start(&ctx.ns, &ctx.name, &cname);
        let env = env_for(&ctx, &c);
        let spawned = match &launch {
            Launch::Process(argv) => spawn(&ctx, argv, &env, log.clone(), c["workingDir"].as_str()),
            Launch::Runc(container) => spawn_logged(container.run_command(), log.clone()),
        };
        let mut running = match spawned {
            Ok(r) => r,
            Err(e) => {
                ctx.event(
                    "Warning",
                    "Failed",
                    &format!("Error: failed to start container \"{cname}\": {e}"),
                );
                log.finish();
                let _ = kill.wait_for(Option::is_some).await;
                return;
            }
        };
        let pgid = running.child.id() as i32;
        if let Some(rt) = ctx
            .state
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key(&ctx.ns, &ctx.name))
        {
            rt.groups.push(pgid);
        }
        if let (Launch::Runc(container), true) = (&launch, is_runner_image(&image_name)) {
            for set in [&ctx.state.cri.runners, &ctx.state.cri.runners_started] {
                set.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(container.id.clone());
            }
        }
        if matches!(image, Image::Runner) {
            ctx.state
                .runner_groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pgid);
        }
        ctx.event("Normal", "Started", &format!("Started container {cname}"));
        let started_at = now();
        // nginx is Ready once it listens, as a readiness probe would say.
        if matches!(image, Image::Nginx) {
            let netns = ctx.netns.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !is_listening(&netns, 80) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .await;
        }
        ctx.set_container(i, |s| {
            s["state"] = json!({"running": {"startedAt": started_at}});
            s["ready"] = json!(true);
            s["started"] = json!(true);
            s["containerID"] = json!(cid);
            s["imageID"] = json!(match &image {
                Image::Oci(img) => format!("{}@{}", img.repository, img.digest),
                _ => format!("{}@sha256:{}", image_repo(&image_name), container_id()),
            });
        });
        // Wait for exit, deletion, or the SIGKILL deadline after SIGTERM.
        let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
        let reader = running.reader;
        std::thread::spawn(move || {
            let status = running.child.wait();
            let _ = exit_tx.send(status);
        });
        let mut killed = false;
        let mut sigkill_timer: Option<tokio::task::JoinHandle<()>> = None;
        let status = loop {
            tokio::select! {
                s = &mut exit_rx => break s.ok().and_then(Result::ok),
                r = kill.wait_for(Option::is_some), if !killed => {
                    killed = true;
                    let grace = r.ok().and_then(|g| *g).unwrap_or(30);
                    ctx.event("Normal", "Killing", &format!("Stopping container {cname}"));
                    let pg = pgid;
                    let oci = match &launch {
                        Launch::Runc(c) => Some(c.clone()),
                        Launch::Process(_) => None,
                    };
                    match &oci {
                        // runc forwards nothing here: the runtime signals.
                        Some(c) => c.signal("TERM", false),
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        None => {
                            unsafe { libc::kill(-pgid, libc::SIGTERM) };
                        }
                    };
                    sigkill_timer = Some(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(grace.max(0) as u64)).await;
                        match &oci {
                            Some(c) => c.signal("KILL", true),
                            // SAFETY: as above; the group may be gone already.
                            None => {
                                unsafe { libc::kill(-pg, libc::SIGKILL) };
                            }
                        };
                    }));
                }
            }
        };
        if let Some(t) = sigkill_timer {
            t.abort();
        }
        // The container is over: nothing of it may outlive it.
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = tokio::task::spawn_blocking(move || {
            let _ = reader.join();
        })
        .await;
        log.finish();
        if let Some(rt) = ctx
            .state
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key(&ctx.ns, &ctx.name))
        {
            rt.groups.retain(|g| *g != pgid);
        }
        let code = status
            .map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)))
            .unwrap_or(137);
        let mut oom = false;
        if let Launch::Runc(container) = &launch {
            let gone = container.clone();
            oom = tokio::task::spawn_blocking(move || {
                let oom = gone.oom_killed();
                gone.delete();
                oom
            })
            .await
            .unwrap_or(false);
            ctx.state
                .cri
                .runners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&container.id);
        }
        let reason = match (code, oom) {
            (_, true) => "OOMKilled",
            (0, _) => "Completed",
            _ => "Error",
        };
        let terminated = json!({"exitCode": code, "reason": reason, "startedAt": started_at,
                                "finishedAt": now(), "containerID": cid});
        let again = !killed && (restart == "Always" || (restart == "OnFailure" && code != 0));
        if !again {
            ctx.set_container(i, |s| {
                s["state"] = json!({"terminated": terminated});
                s["ready"] = json!(false);
                s["started"] = json!(false);
            });
            return;
        }
        restarts += 1;
        let msg = format!(
            "back-off {}s restarting failed container={cname} pod={}_{}({})",
            crash_backoff.as_secs(),
            ctx.name,
            ctx.ns,
            ctx.pod["metadata"]["uid"].as_str().unwrap_or("")
        );
        ctx.event(
            "Warning",
            "BackOff",
            &format!(
                "Back-off restarting failed container {cname} in pod {}_{}",
                ctx.name, ctx.ns
            ),
        );
        ctx.set_container(i, |s| {
            s["lastState"] = json!({"terminated": terminated});
            s["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}});
            s["ready"] = json!(false);
            s["started"] = json!(false);
            s["restartCount"] = json!(restarts);
        });
        if sleep_or_killed(crash_backoff, &mut kill).await {
            return;
        }
        crash_backoff = (crash_backoff * 2).min(Duration::from_secs(10));
    }
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            let effect_ok = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
            let key_ok = match t["key"].as_str() {
                None | Some("") => t["operator"] == "Exists",
                Some(k) => Some(k) == taint["key"].as_str(),
            };
            let value_ok = t["operator"] == "Exists"
                || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
            effect_ok && key_ok && value_ok
        })
}

fn node_matches(pod: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let sel_ok = pod["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let terms = pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array();
    let expr_ok = |e: &Value, value: Option<&str>| {
        let values = strings(&e["values"]);
        match e["operator"].as_str().unwrap_or("") {
            "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
            "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    };
    let aff_ok = terms.is_none_or(|terms| {
        terms.iter().any(|t| {
            t["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| expr_ok(e, labels[e["key"].as_str().unwrap_or("")].as_str()))
                && t["matchFields"].as_array().into_iter().flatten().all(|e| {
                    expr_ok(
                        e,
                        (e["key"] == "metadata.name")
                            .then(|| node["metadata"]["name"].as_str())
                            .flatten(),
                    )
                })
        })
    });
    sel_ok && aff_ok
}

/// A CPU quantity (`2`, `1.5`, `250m`) in millicores; unparsable counts as 0.
fn millicores(q: &Value) -> u64 {
    let Some(q) = q
        .as_str()
        .map(str::to_owned)
        .or_else(|| q.as_f64().map(|f| f.to_string()))
    else {
        return 0;
    };
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => q.parse::<f64>().map(|c| (c * 1000.0) as u64).unwrap_or(0),
    }
}

fn cpu_requests(pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| millicores(&c["resources"]["requests"]["cpu"]))
        .sum()
}

/// NodeResourcesFit for CPU: the node's allocatable must cover the requests
/// of the pods already bound to it (and not finished) plus this one's.
fn fits_cpu(node: &Value, name: &str, pod: &Value, pods: &[Value]) -> bool {
    let allocatable = millicores(&node["status"]["allocatable"]["cpu"]);
    let used: u64 = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str() == Some(name))
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .map(cpu_requests)
        .sum();
    used + cpu_requests(pod) <= allocatable
}

/// The default scheduler, reduced: filter by unschedulable, taints, node
/// selection and CPU requests, then spread (fewest pods). `Err` is its message.
fn schedule(nodes: &[Value], pod: &Value, pods: &[Value]) -> Result<String, String> {
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    let mut feasible = Vec::new();
    for n in nodes {
        let name = n["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let untolerated = n["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
            .find(|t| !tolerates(pod, t));
        let reason = if n["spec"]["unschedulable"] == json!(true)
            && !tolerates(
                pod,
                &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
            ) {
            Some("node(s) were unschedulable".to_owned())
        } else if let Some(t) = untolerated {
            Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t["key"].as_str().unwrap_or(""),
                t["value"].as_str().unwrap_or("")
            ))
        } else if !node_matches(pod, n) {
            Some("node(s) didn't match Pod's node affinity/selector".to_owned())
        } else if !fits_cpu(n, &name, pod, pods) {
            Some("Insufficient cpu".to_owned())
        } else {
            None
        };
        match reason {
            Some(r) => *reasons.entry(r).or_default() += 1,
            None => {
                let load = pods
                    .iter()
                    .filter(|p| p["spec"]["nodeName"].as_str() == Some(&name))
                    .count();
                feasible.push((load, name));
            }
        }
    }
    feasible.sort();
    if let Some((_, name)) = feasible.into_iter().next() {
        return Ok(name);
    }
    let total = nodes.len();
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    Err(format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    ))
}

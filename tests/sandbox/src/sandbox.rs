// SPDX-License-Identifier: Apache-2.0
//! The public face: start a sandbox, reach into it, inject faults, stop it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podtrace_netns::Shape;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::family::IpFamily;
use crate::kubelet::PodRuntime;
use crate::logs::Logs;
use crate::rbac::{Rbac, User};
use crate::store::{Key, Resource, Store};
use crate::{io_err, kubeconfig, objects, Error, Result};

/// How nodes attach their pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShapeChoice {
    /// Every node routed (/32 per veth, as Calico).
    Routed,
    /// Every node bridged (`cni0`, as flannel).
    Bridge,
    /// Odd nodes routed, even nodes bridged: both shapes in one cluster.
    #[default]
    Mixed,
}

impl ShapeChoice {
    fn for_node(self, index: usize) -> Shape {
        match self {
            ShapeChoice::Routed => Shape::Routed,
            ShapeChoice::Bridge => Shape::Bridge,
            ShapeChoice::Mixed if index.is_multiple_of(2) => Shape::Routed,
            ShapeChoice::Mixed => Shape::Bridge,
        }
    }
}

/// A Pod object to create at start (or later with [`Sandbox::create_pod`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PodManifest {
    pub value: Value,
}

impl PodManifest {
    /// A pod running `image` with `command` (empty: the image's default).
    pub fn new(namespace: &str, name: &str, image: &str, command: &[&str]) -> PodManifest {
        let mut container = json!({"name": name, "image": image});
        if !command.is_empty() {
            container["command"] = json!(command);
        }
        PodManifest {
            value: json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {"containers": [container]},
            }),
        }
    }

    /// Pins the pod to a node (`spec.nodeName`).
    pub fn on_node(mut self, node: &str) -> PodManifest {
        self.value["spec"]["nodeName"] = json!(node);
        self
    }

    /// The demo's `nginx-demo` (image `nginx:latest`).
    pub fn nginx_demo() -> PodManifest {
        PodManifest::new("default", "nginx-demo", "nginx:latest", &[])
    }

    /// The demo's `curl-demo` (`curlimages/curl`, `sleep infinity`).
    pub fn curl_demo() -> PodManifest {
        PodManifest::new(
            "default",
            "curl-demo",
            "curlimages/curl",
            &["sleep", "infinity"],
        )
    }

    /// Every `kind: Pod` document of a (multi-document) YAML or JSON text.
    pub fn from_yaml(text: &str) -> Result<Vec<PodManifest>> {
        let mut pods = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = Value::deserialize(doc).map_err(|e| Error::Manifest(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            match value["kind"].as_str() {
                Some("Pod") => pods.push(PodManifest { value }),
                Some("List") => {
                    for item in value["items"].as_array().into_iter().flatten() {
                        if item["kind"] == "Pod" {
                            pods.push(PodManifest {
                                value: item.clone(),
                            });
                        }
                    }
                }
                other => {
                    return Err(Error::Manifest(format!(
                        "only Pods can be created at start, not {other:?}"
                    )))
                }
            }
        }
        Ok(pods)
    }
}

use serde::Deserialize as _;

/// What a crashing runner does instead of running (see
/// [`Sandbox::crash_runner_on_start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerCrash {
    /// Written to the container's stderr (so it shows in its log).
    pub message: String,
    pub exit_code: i32,
}

impl Default for RunnerCrash {
    fn default() -> Self {
        RunnerCrash {
            message: "Error: failed to load BPF programs: Operation not permitted (os error 1)"
                .into(),
            exit_code: 1,
        }
    }
}

/// How to start a sandbox. `Default`: two nodes (one routed, one bridged),
/// the demo pods `nginx-demo` and `curl-demo` in `default`, namespace
/// `podtrace` labelled Pod Security `privileged`, one admin user.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Node count (named `node-1`, `node-2`, …).
    pub nodes: usize,
    pub shape: ShapeChoice,
    /// Pod and node address families (IPv4 only by default).
    pub ip_family: IpFamily,
    /// Pods created at start; [`Sandbox::start`] returns once they run.
    pub pods: Vec<PodManifest>,
    /// Extra namespaces and their labels (`default`, `kube-system`,
    /// `kube-public` and `podtrace` always exist).
    pub namespaces: Vec<(String, Vec<(String, String)>)>,
    /// Extra users, each with a kubeconfig context of its own name.
    pub users: Vec<User>,
    /// Where to write the kubeconfig; default: a fresh temporary directory
    /// (removed at shutdown).
    pub kubeconfig: Option<PathBuf>,
    /// The runner binary; default: `PODTRACE_RUNNER_BIN`, else next to the
    /// current executable or in its parent directory, else `PATH`.
    pub runner_bin: Option<PathBuf>,
    /// How long start-up may wait for `pods` to run.
    pub start_timeout: Duration,
    /// OCI archives loaded into the nodes' image store before `pods` start
    /// (as `kind load image-archive`): pods using their images run as
    /// containers through runc.
    pub images: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            nodes: 2,
            shape: ShapeChoice::Mixed,
            ip_family: IpFamily::Ipv4,
            pods: vec![PodManifest::nginx_demo(), PodManifest::curl_demo()],
            namespaces: Vec::new(),
            users: Vec::new(),
            kubeconfig: None,
            runner_bin: None,
            start_timeout: Duration::from_secs(20),
            images: Vec::new(),
        }
    }
}

impl SandboxConfig {
    /// Nodes and namespaces only, no pods.
    pub fn bare() -> SandboxConfig {
        SandboxConfig {
            pods: Vec::new(),
            ..SandboxConfig::default()
        }
    }
}

/// Switchable misbehaviour.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub pull_delay: Duration,
    pub failing_images: Vec<String>,
    pub runner_crash: Option<RunnerCrash>,
}

/// One API request as the sandbox served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// Its `User-Agent` (empty for kube-rs, which sends none).
    pub agent: String,
    pub method: String,
    /// Path and query, as sent: `/api/v1/pods?watch=true&…`.
    pub uri: String,
}

impl ApiRequest {
    /// A list (not a watch) of `path`, whatever its query.
    pub fn is_list_of(&self, path: &str) -> bool {
        let (p, query) = self.uri.split_once('?').unwrap_or((&self.uri, ""));
        self.method == "GET"
            && p == path
            && !query
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1")
    }
}

/// Everything the server, controllers and kubelet share.
pub(crate) struct State {
    pub store: Mutex<Store>,
    pub logs: Logs,
    pub rbac: Mutex<Rbac>,
    pub faults: Mutex<Faults>,
    /// Taken at teardown so the namespaces go then, whoever still holds `State`.
    pub net: Mutex<Option<podtrace_netns::Cluster>>,
    pub runtime: Mutex<HashMap<(String, String), PodRuntime>>,
    /// Job pods removed from the store since the job controller last looked.
    pub ended_job_pods: Mutex<Vec<crate::jobs::EndedPod>>,
    /// Process groups of runner containers ever started (for leak checks).
    pub runner_groups: Mutex<std::collections::HashSet<i32>>,
    /// API requests served, per `User-Agent` (for measurements).
    pub requests: Mutex<HashMap<String, u64>>,
    /// Every API request served, in order (for tests that count a kind).
    pub request_log: Mutex<Vec<ApiRequest>>,
    /// Bumped to cut every open watch / log stream.
    pub drop_watches: watch::Sender<u64>,
    pub drop_logs: watch::Sender<u64>,
    pub runner_bin: Option<PathBuf>,
    pub ip_family: IpFamily,
    /// Containers run from loaded images (runc), and the image store.
    pub cri: crate::cri::Runtime,
}

impl State {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A controller's loop: `pass` now, after every change to the store and
    /// at least every 200 ms (for deadlines and TTLs), until aborted.
    pub async fn run_controller(self: Arc<Self>, mut pass: impl FnMut(&Arc<State>)) {
        let mut rx = self.lock().subscribe();
        loop {
            pass(&self);
            tokio::select! {
                r = rx.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// A running sandbox cluster. Stop it with [`Sandbox::shutdown`]; dropping
/// it also tears everything down (synchronously).
pub struct Sandbox {
    pub(crate) state: Arc<State>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    /// A directory we created for the kubeconfig, removed at teardown.
    own_dir: Option<PathBuf>,
    prefix: String,
    ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
    down: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("server", &self.server_url())
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Sandbox {
    /// Builds the nodes, starts the API server, controllers and kubelet,
    /// writes the kubeconfig and returns once `config.pods` are Running.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox> {
        if !podtrace_netns::is_root() {
            return Err(Error::Api(
                "the sandbox builds network namespaces: run it as root".into(),
            ));
        }
        let started = Instant::now();
        let nodes = config.nodes.max(1);
        let shape = config.shape;
        let family = config.ip_family;
        let net = tokio::task::spawn_blocking(move || -> Result<podtrace_netns::Cluster> {
            // Claiming a slot races with other sandboxes reclaiming a stale
            // one (in this process or another): serialise ours, and retry a
            // set-up that a racer's clean-up broke.
            static SETUP: Mutex<()> = Mutex::new(());
            let _one_at_a_time = SETUP.lock().unwrap_or_else(|e| e.into_inner());
            let build = || -> Result<podtrace_netns::Cluster> {
                let net = if family.has_ipv6() {
                    podtrace_netns::Cluster::dual_stack()?
                } else {
                    podtrace_netns::Cluster::new()?
                };
                for i in 0..nodes {
                    net.add_node(&format!("node-{}", i + 1), shape.for_node(i))?;
                }
                Ok(net)
            };
            let mut tries = 0;
            loop {
                match build() {
                    Err(Error::Netns(e)) if tries < 5 => {
                        tracing::debug!(error = %e, "node set-up raced, retrying");
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(50 * tries));
                    }
                    other => break other,
                }
            }
        })
        .await
        .map_err(|e| Error::Api(format!("node set-up panicked: {e}")))??;
        let prefix = net.prefix();
        let kernel_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut store = Store::new();
        for (name, labels) in objects::default_namespaces()
            .into_iter()
            .chain(config.namespaces.iter().cloned())
        {
            let _ = store.create(Resource::Namespace, objects::namespace(&name, &labels));
        }
        for node in net.nodes() {
            let _ = store.create(
                Resource::Node,
                objects::node(&node, &kernel_version, family),
            );
        }
        let mut rbac = Rbac::default();
        rbac.add(User::admin(ADMIN));
        for u in &config.users {
            rbac.add(u.clone());
        }
        let state = Arc::new(State {
            store: Mutex::new(store),
            logs: Logs::default(),
            rbac: Mutex::new(rbac),
            faults: Mutex::new(Faults::default()),
            net: Mutex::new(Some(net)),
            runtime: Mutex::new(HashMap::new()),
            ended_job_pods: Mutex::new(Vec::new()),
            runner_groups: Mutex::new(Default::default()),
            requests: Mutex::new(Default::default()),
            request_log: Mutex::new(Vec::new()),
            drop_watches: watch::channel(0).0,
            drop_logs: watch::channel(0).0,
            runner_bin: config.runner_bin.clone(),
            ip_family: family,
            cri: crate::cri::Runtime::start(&prefix),
        });
        crate::services::route_service_cidr(&state)?;
        crate::services::create_kube_dns_service(&state);
        for archive in &config.images {
            state.cri.images.load_archive(archive).map_err(|e| {
                Error::Api(format!(
                    "failed to load image archive {}: {e}",
                    archive.display()
                ))
            })?;
        }
        let tls = crate::tls::make()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io_err("bind the API server on 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("read the API server's address"))?;
        let (kubeconfig, own_dir) = match &config.kubeconfig {
            Some(p) => (p.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!("{prefix}sandbox-{}", addr.port()));
                (dir.join("kubeconfig"), Some(dir))
            }
        };
        let mut sandbox = Sandbox {
            state: state.clone(),
            addr,
            kubeconfig,
            own_dir,
            prefix,
            ca_pem: tls.ca_pem.clone(),
            tasks: Vec::new(),
            down: false,
        };
        sandbox.tasks.push(tokio::spawn(crate::server::serve(
            listener,
            tls.acceptor,
            state.clone(),
        )));
        sandbox
            .tasks
            .push(tokio::spawn(crate::jobs::run(state.clone())));
        sandbox
            .tasks
            .push(tokio::spawn(crate::namespaces::run(state.clone())));
        sandbox
            .tasks
            .push(tokio::spawn(crate::gc::run(state.clone())));
        sandbox
            .tasks
            .push(tokio::spawn(crate::apps::run(state.clone())));
        sandbox
            .tasks
            .push(tokio::spawn(crate::netpol::run(state.clone())));
        sandbox.tasks.extend(crate::services::start(&state));
        sandbox.write_kubeconfig()?;
        for pod in &config.pods {
            // Start-up pods may name namespaces nobody created: make them.
            let ns = pod.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            sandbox.set_namespace_labels(ns, &[]);
            sandbox.create_pod(pod.clone()).await?;
        }
        let deadline = started + config.start_timeout;
        for pod in &config.pods {
            let ns = pod.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            let name = pod.value["metadata"]["name"].as_str().unwrap_or_default();
            sandbox
                .wait_for_pod_phase(
                    ns,
                    name,
                    "Running",
                    deadline.saturating_duration_since(Instant::now()),
                )
                .await?;
        }
        // Cluster DNS last, so the pods above are placed as without it.
        if let Some(dns) = crate::services::dns_pod(&state) {
            let name = dns["metadata"]["name"].as_str().unwrap_or("").to_owned();
            sandbox.create_pod(PodManifest { value: dns }).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            sandbox
                .wait_for_pod_phase("kube-system", &name, "Running", left)
                .await?;
        }
        tracing::info!(elapsed = ?started.elapsed(), "sandbox ready");
        Ok(sandbox)
    }

    /// The kubeconfig (current context: the admin; one context per extra user).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`
    pub fn server_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin's kubeconfig context (the current one).
    pub fn admin_context(&self) -> &'static str {
        kubeconfig::ADMIN_CONTEXT
    }

    /// Prefix of every network namespace (and host interface) this sandbox
    /// makes, for leak checks: `pt{slot}-`.
    pub fn netns_prefix(&self) -> &str {
        &self.prefix
    }

    /// Node names, in order (`node-1`, …).
    pub fn node_names(&self) -> Vec<String> {
        let store = self.state.lock();
        store
            .list(Resource::Node, None)
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// API requests served so far, per `User-Agent` (a watch or a log
    /// follow counts once, when it opens).
    pub fn requests_by_agent(&self) -> HashMap<String, u64> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every API request served so far, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.state
            .request_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A `kubectl` command already pointed at this sandbox (admin context).
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        // Discovery cache beside the kubeconfig, never in ~/.kube.
        if let Some(dir) = self.kubeconfig.parent() {
            cmd.arg("--cache-dir").arg(dir.join("cache"));
        }
        cmd
    }

    /// The pod's IPv4 address once it has one (in every [`IpFamily`]:
    /// the sandbox's Services are IPv4).
    pub async fn pod_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        crate::family::pod_ipv4(&self.get(Resource::Pod, namespace, name)?)
    }

    /// The pod's IPv6 address once it has one (not with [`IpFamily::Ipv4`]).
    pub async fn pod_ip6(&self, namespace: &str, name: &str) -> Option<Ipv6Addr> {
        crate::family::pod_ipv6(&self.get(Resource::Pod, namespace, name)?)
    }

    /// A copy of an object, as the API would return it.
    pub fn get_object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.kind().eq_ignore_ascii_case(kind) || r.plural() == kind)?;
        self.get(resource, namespace, name)
    }

    fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .get(&Key::new(resource, namespace, name))
            .cloned()
    }

    /// Waits (bounded) until the pod's `status.phase` is `phase`.
    pub async fn wait_for_pod_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: &str,
        timeout: Duration,
    ) -> Result<()> {
        let mut rx = self.state.lock().subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.get(Resource::Pod, namespace, name);
            if current.as_ref().and_then(|p| p["status"]["phase"].as_str()) == Some(phase) {
                return Ok(());
            }
            let what = || {
                format!(
                    "pod {namespace}/{name} to be {phase} (it is {})",
                    current
                        .as_ref()
                        .map(objects::describe_pod)
                        .unwrap_or_else(|| "gone".into())
                )
            };
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(Error::Timeout(timeout, what())),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err(Error::Api(what()))
                }
                Ok(_) => {}
            }
        }
    }

    /// Creates a pod through the same path as the API (admission included).
    pub async fn create_pod(&self, pod: PodManifest) -> Result<()> {
        crate::api::create_pod(&self.state, pod.value).map_err(|s| Error::Api(s.message()))?;
        Ok(())
    }

    /// Runs `cmd` in the pod's network namespace (its node's for
    /// `hostNetwork` pods), as `kubectl exec` would, and waits for it.
    pub fn exec(&self, namespace: &str, pod: &str, cmd: &[&str]) -> Result<Output> {
        let netns = self
            .netns_of(namespace, pod)
            .ok_or_else(|| Error::NotFound {
                kind: "running pod",
                name: format!("{namespace}/{pod}"),
            })?;
        exec_in(&netns, cmd)
    }

    /// The network namespace a pod's processes run in.
    pub fn netns_of(&self, namespace: &str, pod: &str) -> Option<String> {
        crate::kubelet::netns_of(&self.state, namespace, pod)
    }

    /// Pids of runner processes (any container of a `*podtrace-runner`
    /// image, and its children) still alive. Empty after a clean stop.
    pub fn runner_processes(&self) -> Vec<u32> {
        crate::kubelet::runner_processes(&self.state)
    }

    /// What runner containers that ended left on the node: runc state,
    /// bundles, cgroups, mounts (empty when everything was removed).
    pub fn runner_container_leftovers(&self) -> Vec<String> {
        self.state.cri.runner_leftovers()
    }

    /// Adds (or replaces) a user; returns the kubeconfig context to use it
    /// with (the user's name). The kubeconfig is rewritten.
    pub fn add_user(&self, user: User) -> Result<String> {
        let name = user.name.clone();
        self.state
            .rbac
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(user);
        self.write_kubeconfig()?;
        Ok(name)
    }

    /// Creates the namespace if needed and sets its labels (`None` removes one).
    pub fn set_namespace_labels(&self, namespace: &str, labels: &[(&str, Option<&str>)]) {
        let mut store = self.state.lock();
        let key = Key::new(Resource::Namespace, "", namespace);
        if store.get(&key).is_none() {
            let _ = store.create(Resource::Namespace, objects::namespace(namespace, &[]));
        }
        let _ = store.update(&key, |ns| {
            for (k, v) in labels {
                match v {
                    Some(v) => ns["metadata"]["labels"][*k] = json!(v),
                    None => {
                        if let Some(m) = ns["metadata"]["labels"].as_object_mut() {
                            m.remove(*k);
                        }
                    }
                }
            }
        });
    }

    /// Sets a pod's labels (`None` removes one), as `kubectl label pod` does.
    pub fn set_pod_labels(
        &self,
        namespace: &str,
        pod: &str,
        labels: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let key = Key::new(Resource::Pod, namespace, pod);
        self.state
            .lock()
            .update(&key, |p| {
                for (k, v) in labels {
                    match v {
                        Some(v) => p["metadata"]["labels"][*k] = json!(v),
                        None => {
                            if let Some(m) = p["metadata"]["labels"].as_object_mut() {
                                m.remove(*k);
                            }
                        }
                    }
                }
            })
            .map(drop)
            .map_err(|_| Error::NotFound {
                kind: "pod",
                name: format!("{namespace}/{pod}"),
            })
    }

    /// Labels the namespace `pod-security.kubernetes.io/enforce=level`
    /// (`privileged`, `baseline` or `restricted`), creating it if needed.
    pub fn set_pod_security(&self, namespace: &str, level: &str) {
        self.set_namespace_labels(
            namespace,
            &[
                ("pod-security.kubernetes.io/enforce", Some(level)),
                ("pod-security.kubernetes.io/enforce-version", Some("latest")),
            ],
        );
    }

    /// Adds a taint (`effect`: `NoSchedule`, `PreferNoSchedule`, `NoExecute`).
    pub fn taint_node(&self, node: &str, key: &str, value: &str, effect: &str) -> Result<()> {
        self.update_node(node, |n| {
            let taint = json!({"key": key, "value": value, "effect": effect});
            match n["spec"]["taints"].as_array_mut() {
                Some(t) => t.push(taint),
                None => n["spec"]["taints"] = json!([taint]),
            }
        })
    }

    /// Marks the node unschedulable, as `kubectl cordon` does.
    pub fn cordon(&self, node: &str) -> Result<()> {
        self.update_node(node, |n| {
            n["spec"]["unschedulable"] = json!(true);
            let taint = json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                               "timeAdded": crate::store::now()});
            match n["spec"]["taints"].as_array_mut() {
                Some(t) => t.push(taint),
                None => n["spec"]["taints"] = json!([taint]),
            }
        })
    }

    /// Sets the node's allocatable CPU (e.g. `"10m"`): pods whose CPU
    /// requests do not fit stay Pending with `Insufficient cpu`, the one
    /// scheduling failure that tolerating every taint does not avoid.
    pub fn set_allocatable_cpu(&self, node: &str, cpu: &str) -> Result<()> {
        self.update_node(node, |n| n["status"]["allocatable"]["cpu"] = json!(cpu))
    }

    fn update_node(&self, node: &str, f: impl FnOnce(&mut Value)) -> Result<()> {
        self.state
            .lock()
            .update(&Key::new(Resource::Node, "", node), f)
            .map(|_| ())
            .map_err(|_| Error::NotFound {
                kind: "node",
                name: node.to_owned(),
            })
    }

    /// Every image pull from now on takes this long (slow registry).
    pub fn set_image_pull_delay(&self, delay: Duration) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pull_delay = delay;
    }

    /// Pulls of images starting with `image_prefix` fail (`ErrImagePull`,
    /// then `ImagePullBackOff`), even images the sandbox could run.
    pub fn fail_image_pulls(&self, image_prefix: &str) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failing_images
            .push(image_prefix.to_owned());
    }

    /// Runner containers started from now on print `crash.message` to
    /// stderr and exit with `crash.exit_code` instead of running (`None`
    /// restores the real runner).
    pub fn crash_runner_on_start(&self, crash: Option<RunnerCrash>) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .runner_crash = crash;
    }

    /// Cuts every open watch stream now, mid-way (the connection is
    /// aborted, not ended cleanly), as a restarting API server or a proxy
    /// timeout does.
    pub fn drop_watches(&self) {
        self.state.drop_watches.send_modify(|n| *n += 1);
    }

    /// Cuts every open `pods/log` stream now, mid-way.
    pub fn drop_log_streams(&self) {
        self.state.drop_logs.send_modify(|n| *n += 1);
    }

    /// Forgets the watch history: a watch resuming from any version before
    /// now gets `410 Gone` (`Expired`), as after etcd compaction.
    pub fn compact(&self) {
        self.state.lock().compact();
    }

    /// Stops everything and waits until every process and namespace is gone.
    pub async fn shutdown(mut self) {
        let state = self.state.clone();
        let own_dir = self.own_dir.take();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.down = true;
        let _ = tokio::task::spawn_blocking(move || teardown(&state, own_dir.as_deref())).await;
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let users = self
            .state
            .rbac
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tokens();
        kubeconfig::write(
            &self.kubeconfig,
            &self.server_url(),
            &self.ca_pem,
            &self.prefix,
            &users,
            ADMIN,
        )
    }
}

/// The admin user's name (and its context's user).
const ADMIN: &str = "sandbox-admin";

/// Runs `cmd` inside network namespace `netns` and waits for it.
pub fn exec_in(netns: &str, cmd: &[&str]) -> Result<Output> {
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| Error::Api("exec needs a command".into()))?;
    std::process::Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io_err(format!("run {program} in {netns}")))
}

fn teardown(state: &State, own_dir: Option<&Path>) {
    crate::kubelet::kill_everything(state);
    crate::services::teardown(state);
    let net = state.net.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(net);
    if let Some(dir) = own_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        teardown(&self.state, self.own_dir.as_deref());
    }
}

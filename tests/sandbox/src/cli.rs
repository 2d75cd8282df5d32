// SPDX-License-Identifier: Apache-2.0
//! The `podtrace-sandbox` command line: `up` runs a sandbox until
//! interrupted; `exec` runs a command in a pod's network namespace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::{IpFamily, PodManifest, RunnerCrash, Sandbox, SandboxConfig, ShapeChoice};

/// A local Kubernetes cluster: real network namespaces and processes, and
/// an API server that kubectl and kube-rs talk to.
#[derive(Debug, Parser)]
#[command(name = "podtrace-sandbox", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "EXAMPLES:
  # Start the demo cluster of curl_to_nginx_across_two_nodes (nginx-demo, curl-demo)
  sudo podtrace-sandbox up
  # In another shell
  export KUBECONFIG=/tmp/podtrace-sandbox/kubeconfig
  kubectl get pods -o wide
  podtrace-sandbox exec --kubeconfig $KUBECONFIG curl-demo -- \\
      curl -s http://$(kubectl get pod nginx-demo -o jsonpath='{.status.podIP}')
  # Load the runner's image (scripts/build-image.sh) into the nodes
  podtrace-sandbox load target/image/podtrace-runner-v0.1.0.oci.tar";

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a sandbox cluster and run it until SIGINT/SIGTERM.
    Up(UpArgs),
    /// Run a command in a pod's network namespace (as `kubectl exec`).
    Exec(ExecArgs),
    /// Load an OCI image archive into the running sandbox's nodes (as
    /// `kind load image-archive`): pods using its images run through runc.
    Load(LoadArgs),
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The sandbox's kubeconfig.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// OCI archives (`podman save --format oci-archive`, `scripts/build-image.sh`).
    #[arg(required = true)]
    archives: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShapeArg {
    Routed,
    Bridge,
    Mixed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FamilyArg {
    Ipv4,
    Ipv6,
    Dual,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Where to write the kubeconfig (never ~/.kube/config).
    #[arg(long, default_value = "/tmp/podtrace-sandbox/kubeconfig")]
    kubeconfig: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// How pods attach to nodes (mixed: odd nodes routed, even bridged).
    #[arg(long, value_enum, default_value = "mixed")]
    shape: ShapeArg,
    /// Pod and node addresses: ipv4; dual (IPv4 and IPv6, IPv4 first);
    /// ipv6 (IPv6 first; pods keep IPv4 too, as Services stay IPv4).
    #[arg(long, value_enum, default_value = "ipv4")]
    ip_family: FamilyArg,
    /// Pod manifests (YAML/JSON) to create instead of the demo pods.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Also create the demo pods when -f is given.
    #[arg(long)]
    demo: bool,
    /// Label this namespace Pod Security `baseline` (repeatable).
    #[arg(long = "psa-baseline", value_name = "NAMESPACE")]
    psa_baseline: Vec<String>,
    /// Taint a node NoSchedule: NODE or NODE=KEY=VALUE (repeatable).
    #[arg(long, value_name = "NODE[=KEY=VALUE]")]
    taint: Vec<String>,
    /// Make every image pull take this many seconds.
    #[arg(long, value_name = "SECS")]
    pull_delay: Option<f64>,
    /// Make runner containers crash on start.
    #[arg(long)]
    crash_runner: bool,
    /// Add a user with no rights (context of the same name) (repeatable).
    #[arg(long = "user-without-rights", value_name = "NAME")]
    unprivileged_users: Vec<String>,
    /// Load this OCI image archive before the pods start (repeatable).
    #[arg(long = "image-archive", value_name = "ARCHIVE")]
    images: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// The sandbox's kubeconfig.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Namespace of the pod.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The pod (NAME or pod/NAME).
    pod: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Up(a) => up(a).await.map(|()| 0),
        Command::Exec(a) => exec(a),
        Command::Load(a) => load(a).map(|()| 0),
    }
}

async fn up(a: UpArgs) -> Result<()> {
    let started = Instant::now();
    let mut pods = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("failed to read {}", f.display()))?;
        pods.extend(PodManifest::from_yaml(&text).with_context(|| format!("in {}", f.display()))?);
    }
    if a.files.is_empty() || a.demo {
        pods.extend([PodManifest::nginx_demo(), PodManifest::curl_demo()]);
    }
    let config = SandboxConfig {
        nodes: a.nodes,
        shape: match a.shape {
            ShapeArg::Routed => ShapeChoice::Routed,
            ShapeArg::Bridge => ShapeChoice::Bridge,
            ShapeArg::Mixed => ShapeChoice::Mixed,
        },
        ip_family: match a.ip_family {
            FamilyArg::Ipv4 => IpFamily::Ipv4,
            FamilyArg::Ipv6 => IpFamily::Ipv6,
            FamilyArg::Dual => IpFamily::Dual,
        },
        pods,
        kubeconfig: Some(a.kubeconfig.clone()),
        users: a
            .unprivileged_users
            .iter()
            .map(|u| crate::User::with_rules(u, Vec::new()))
            .collect(),
        images: a.images.clone(),
        ..SandboxConfig::default()
    };
    // Signals are caught from here on, so a stop during start-up still
    // tears down what was built.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let sandbox = tokio::select! {
        s = Sandbox::start(config) => s.context("failed to start the sandbox")?,
        _ = term.recv() => bail!("interrupted during start-up"),
        _ = int.recv() => bail!("interrupted during start-up"),
    };
    for ns in &a.psa_baseline {
        sandbox.set_pod_security(ns, "baseline");
    }
    for t in &a.taint {
        let mut parts = t.splitn(3, '=');
        let node = parts.next().unwrap_or_default();
        let key = parts.next().unwrap_or("podtrace.dev/tainted");
        let value = parts.next().unwrap_or("true");
        sandbox.taint_node(node, key, value, "NoSchedule")?;
    }
    if let Some(d) = a.pull_delay {
        sandbox.set_image_pull_delay(Duration::from_secs_f64(d));
    }
    if a.crash_runner {
        sandbox.crash_runner_on_start(Some(RunnerCrash::default()));
    }
    println!(
        "podtrace-sandbox ready in {:.2}s: server {} nodes {} kubeconfig {} (export KUBECONFIG={})",
        started.elapsed().as_secs_f64(),
        sandbox.server_url(),
        sandbox.node_names().join(","),
        a.kubeconfig.display(),
        a.kubeconfig.display()
    );
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("podtrace-sandbox: stopping");
    sandbox.shutdown().await;
    let _ = std::fs::remove_file(&a.kubeconfig);
    Ok(())
}

fn exec(a: ExecArgs) -> Result<i32> {
    let pod = a.pod.strip_prefix("pod/").unwrap_or(&a.pod);
    let prefix = crate::read_netns_prefix(&a.kubeconfig)?;
    // Pod namespaces are named `{prefix}{namespace}.{pod}` by the kubelet.
    let netns = format!("{prefix}{}.{pod}", a.namespace);
    if !podtrace_netns::netns_exists(&netns) {
        bail!(
            "pod {}/{pod} is not running in this sandbox (or is hostNetwork)",
            a.namespace
        );
    }
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(&a.command)
        .status()
        .with_context(|| format!("failed to run {:?}", a.command))?;
    Ok(status.code().unwrap_or(1))
}

fn load(a: LoadArgs) -> Result<()> {
    let prefix = crate::read_netns_prefix(&a.kubeconfig)?;
    let store = crate::cri::store_for(&prefix);
    if !store.dir().is_dir() {
        bail!(
            "no sandbox is running for {} (start one with `podtrace-sandbox up`)",
            a.kubeconfig.display()
        );
    }
    for archive in &a.archives {
        for name in store.load_archive(archive)? {
            println!("loaded {name} from {}", archive.display());
        }
    }
    Ok(())
}

// SPDX-License-Identifier: Apache-2.0
//! A local Kubernetes cluster for tests and demos: a wire-faithful API server
//! on loopback, a job controller, and a kubelet that runs pods as real
//! processes in network namespaces (see `podtrace-netns`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), podtrace_sandbox::Error> {
//! use podtrace_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?; // nginx-demo + curl-demo
//! // Point kube-rs or the real kubectl at it:
//! //   KUBECONFIG=sandbox.kubeconfig_path() kubectl get pods
//! let ip = sandbox.pod_ip("default", "nginx-demo").await;
//! let out = sandbox.exec("default", "curl-demo", &["curl", "-s", &format!("http://{}", ip.unwrap())])?;
//! assert!(out.status.success());
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What is real
//! Nodes are network namespaces routed to each other; pods are namespaces
//! joined to their node by veth pairs (routed /32 or bridge, as Calico and
//! flannel do). `nginx*` images run Debian's nginx on port 80; tool images
//! (`curlimages/curl`, `busybox`, `alpine`, `nicolaka/netshoot`, …) run the
//! pod's command here; any image whose name ends in `podtrace-runner` runs
//! the built runner binary inside the node's namespace (found through
//! `PODTRACE_RUNNER_BIN`, else next to the current executable or in its
//! parent directory, else on `PATH`); anything else fails with
//! `ErrImagePull`. A container's stdout and stderr, interleaved, are its log.
//!
//! # The API server
//! HTTPS on `127.0.0.1:<random port>` (a CA made at start, its certificate
//! in the kubeconfig), bearer tokens from the written kubeconfig. Discovery,
//! OpenAPI v3, namespaces, nodes, pods (+ `log`), jobs, deployments and
//! replicasets (+ `scale`; their controllers in `apps`), events, Services
//! with ClusterIPs and EndpointSlices (kube-proxy's nftables NAT in the
//! nodes and cluster DNS with dnsmasq, `src/services/`),
//! NetworkPolicies (enforced with nftables in the nodes, `src/netpol/`),
//! `SelfSubjectAccessReview`, `SelfSubjectReview`; list + watch with
//! resource versions, bookmarks, `410 Gone`; PATCH (JSON, merge, strategic
//! merge); `Status`
//! errors with the real reasons and messages; Table printing for the real
//! `kubectl`. Deleting a namespace makes it `Terminating` until the
//! namespace controller has deleted everything in it.
//! Deleting a `batch/v1` Job without a propagation policy orphans its pods,
//! as a real server does; a pod whose owning Job is gone (made from a stale
//! view just after the Job's deletion) is garbage-collected, as the real
//! collector does (`gc`, for every owner kind: deleting a Deployment takes
//! its ReplicaSets and their pods). Pod Security admission runs on pod creation (so a
//! Job in a `baseline` namespace is admitted and its controller gets a
//! `FailedCreate` event). Field validation follows `fieldValidation`
//! (`Strict` rejects unknown fields with 400, the default `Warn` answers
//! with a `Warning` header, `Ignore` drops them), as a real server does.
//!
//! # Faults
//! [`Sandbox::add_user`] (RBAC-limited callers), [`Sandbox::set_pod_security`],
//! [`Sandbox::taint_node`], [`Sandbox::cordon`], [`Sandbox::set_allocatable_cpu`],
//! [`Sandbox::set_image_pull_delay`],
//! [`Sandbox::fail_image_pulls`], [`Sandbox::crash_runner_on_start`],
//! [`Sandbox::set_pod_ready`],
//! [`Sandbox::drop_watches`], [`Sandbox::drop_log_streams`], [`Sandbox::compact`].
//!
//! # Clean-up
//! [`Sandbox::shutdown`] (or drop) kills every container process and deletes
//! every namespace, interface and route it made (the nodes' nftables tables
//! go with them), the pods' `/etc/netns` entries, the cluster DNS records,
//! and the kubeconfig when the sandbox chose its path.

mod admission;
mod api;
mod apps;
pub mod cli;
mod cri;
mod discovery;
mod family;
mod gc;
mod images;
mod jobs;
mod kubeconfig;
mod kubelet;
mod logs;
mod namespaces;
mod netpol;
mod nodenft;
mod objects;
mod oci;
mod openapi;
mod patch;
mod protobuf;
mod rbac;
mod runc;
mod sandbox;
mod seccomp;
mod selectors;
mod server;
mod services;
mod status;
mod store;
mod strategic;
mod tls;

pub use cri::runner_image_archive;
pub use family::IpFamily;
pub use kubeconfig::{read_netns_prefix, read_server_and_token};
/// Test support shared with the other test crates.
pub use podtrace_netns::{is_root, ChildLines};
pub use rbac::{Rule, User};
pub use runc::artifacts as container_artifacts;
pub use sandbox::{ApiRequest, PodManifest, RunnerCrash, Sandbox, SandboxConfig, ShapeChoice};

/// Errors from starting and driving a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to set up network namespaces: {0}")]
    Netns(#[from] podtrace_netns::Error),
    #[error("invalid pod manifest: {0}")]
    Manifest(String),
    #[error("{0}")]
    Api(String),
    #[error("no such {kind} {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// Tests hold sandboxes across awaits on multi-threaded runtimes.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Sandbox>();
};

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

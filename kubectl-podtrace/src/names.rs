// SPDX-License-Identifier: Apache-2.0
//! Which pod or Service an IP belongs to, shown as `ns/name`.
//!
//! Pods come from one watch on every pod ([`pods`], a kube-runtime
//! watcher keeping IPs and names only), Services from the Services watch
//! the explainer keeps for ClusterIPs: the cluster is never listed per
//! unknown IP. The pod watch starts with the session rather than at the
//! first unknown IP: its first list costs what the one list at the start
//! used to, and the first events are then named without waiting for it.

mod pods;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::{watcher, WatchStreamExt as _};

use podtrace::event::{Event, FlowSummary};

use crate::errors::Error;
use pods::PodIps;

/// How long the start waits for the pod watch's first list.
const READY_WAIT: Duration = Duration::from_secs(3);

/// What the pod watch shares with the session.
#[derive(Debug, Default)]
struct Watched {
    pods: PodIps,
    /// Its first list is in.
    ready: bool,
    /// Why pods cannot be watched, once refused (the watch then ends).
    refused: Option<String>,
}

/// IP → `ns/name`, from the targets, the pod watch and the Services watch.
pub struct Names {
    /// The targets, named from the start (and after they left, for their
    /// late events).
    known: HashMap<IpAddr, String>,
    watched: Arc<Mutex<Watched>>,
    ready: Arc<tokio::sync::Notify>,
    services: Store<Service>,
    said_refused: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Names {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Names {
    /// Starts the pod watch; `services` is the Services watch's store.
    pub(crate) fn start(client: &kube::Client, services: Store<Service>) -> Names {
        let watched = Arc::new(Mutex::new(Watched::default()));
        let ready = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(watch_pods(client.clone(), watched.clone(), ready.clone()));
        Names {
            known: HashMap::new(),
            watched,
            ready,
            services,
            said_refused: false,
            task,
        }
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one known name (the targets are always known).
    pub fn insert(&mut self, ip: IpAddr, name: String) {
        self.known.insert(ip, name);
    }

    /// The pod holding `ip` now, else the target that had it, else the
    /// Service whose ClusterIP it is.
    pub fn get(&self, ip: &IpAddr) -> Option<String> {
        if let Some(pod) = self.watched().pods.get(ip) {
            return Some(pod.to_owned());
        }
        self.known
            .get(ip)
            .cloned()
            .or_else(|| crate::explain::service_name_at(&self.services, *ip))
    }

    /// Waits (a little) for the pod watch's first list.
    pub(crate) async fn wait_until_ready(&self) {
        let notified = self.ready.notified();
        {
            let w = self.watched();
            if w.ready || w.refused.is_some() {
                return;
            }
        }
        let _ = tokio::time::timeout(READY_WAIT, notified).await;
    }

    /// A warning to show once when pods cannot be watched.
    pub(crate) fn warning(&mut self) -> Option<String> {
        if self.said_refused {
            return None;
        }
        let why = self.watched().refused.clone()?;
        self.said_refused = true;
        Some(format!("{why}; showing bare IPs for other pods"))
    }

    /// Sets `src_name`/`dst_name` on an event.
    pub fn annotate(&self, e: &mut Event) {
        e.src_name = self.get(&e.src.ip());
        e.dst_name = self.get(&e.dst.ip());
    }

    /// Names what an event still lacks: a name that came after the event
    /// did (a new pod's IP in the watch) is given while it is held.
    pub fn annotate_missing(&self, e: &mut Event) {
        if e.src_name.is_none() {
            e.src_name = self.get(&e.src.ip());
        }
        if e.dst_name.is_none() {
            e.dst_name = self.get(&e.dst.ip());
        }
    }

    /// Sets `src_name`/`dst_name` on a flow.
    pub fn annotate_flow(&self, f: &mut FlowSummary) {
        f.src_name = f.src.and_then(|ip| self.get(&ip));
        f.dst_name = f.dst.and_then(|a| self.get(&a.ip()));
    }
}

/// Keeps `watched` in step with every pod until aborted; a refusal (403)
/// is recorded and ends it, other errors are retried with back-off.
async fn watch_pods(
    client: kube::Client,
    watched: Arc<Mutex<Watched>>,
    ready: Arc<tokio::sync::Notify>,
) {
    let api: Api<Pod> = Api::all(client);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(events);
    while let Some(item) = events.next().await {
        let mut w = watched.lock().unwrap_or_else(|e| e.into_inner());
        match item {
            Ok(event) => {
                let done = matches!(event, watcher::Event::InitDone);
                w.pods.apply(event);
                if done && !w.ready {
                    w.ready = true;
                    ready.notify_waiters();
                }
            }
            Err(e) => {
                let refused = match e {
                    watcher::Error::InitialListFailed(e @ kube::Error::Api(_))
                    | watcher::Error::WatchStartFailed(e @ kube::Error::Api(_))
                    | watcher::Error::WatchFailed(e @ kube::Error::Api(_))
                        if Error::status_code(&e) == Some(403) =>
                    {
                        Some(Error::kube("list pods in all namespaces", e).to_string())
                    }
                    watcher::Error::WatchError(s) if s.code == 403 => Some(
                        Error::kube("watch pods in all namespaces", kube::Error::Api(s))
                            .to_string(),
                    ),
                    e => {
                        tracing::debug!(error = %e, "pod watch failed; retrying");
                        None
                    }
                };
                if let Some(why) = refused {
                    w.refused = Some(why);
                    ready.notify_waiters();
                    return;
                }
            }
        }
    }
}

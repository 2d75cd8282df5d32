// SPDX-License-Identifier: Apache-2.0
//! Why a flow was dropped, by NetworkPolicy: when a traced flow has a
//! netfilter drop or a SYN that goes unanswered, the cluster's policies are
//! evaluated for it ([`crate::policy`]) and one [`PolicyLine`] per direction
//! is shown — once, and again only when the verdict changes (a flow once
//! denied is looked at again when it connects).
//!
//! Policies and namespaces come from watches (kept in reflectors); the two
//! pods' labels and container ports are read when a flow is explained.
//! Without the rights to watch, it says once what it cannot explain and why,
//! and the trace goes on. A connection to a ClusterIP that fails is
//! explained by its Service ([`service`]).

mod diagnose;
mod line;
mod service;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use podtrace::event::{Event, EventKind, Proto};

pub(crate) use line::PolicyLine;
pub(crate) use service::ServiceLine;

/// A line that explains an event, shown under it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Explanation {
    Policy(PolicyLine),
    Service(ServiceLine),
}

impl Explanation {
    pub(crate) fn to_json(&self) -> String {
        match self {
            Explanation::Policy(l) => l.to_json(),
            Explanation::Service(l) => l.to_json(),
        }
    }

    pub(crate) fn to_text(&self) -> String {
        match self {
            Explanation::Policy(l) => l.to_text(),
            Explanation::Service(l) => l.to_text(),
        }
    }
}

use crate::policy::{self, ContainerPort, Direction, End, Flow, PodEnd, Verdict};

/// How long a first explanation waits for the watches' initial lists.
const READY_WAIT: Duration = Duration::from_secs(3);

/// A flow as verdicts are remembered: the client's port changes with every
/// connection, the verdict does not.
type FlowKey = (Proto, IpAddr, IpAddr, u16);

/// Aborts the watch tasks with the session.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

pub(crate) struct Explainer {
    client: kube::Client,
    policies: reflector::Store<NetworkPolicy>,
    namespaces: reflector::Store<Namespace>,
    /// Why explaining is impossible, once a watch was refused.
    unavailable: Arc<Mutex<Option<String>>>,
    said_unavailable: bool,
    verdicts: HashMap<(FlowKey, Direction), Verdict>,
    /// Every Service, for its ClusterIPs: a watch, never a list per flow.
    service_objects: reflector::Store<Service>,
    /// Why the Services cannot be watched, once refused.
    services_unavailable: Arc<Mutex<Option<String>>>,
    services: service::ServiceWhy,
    _tasks: Tasks,
}

/// A watch kept in a reflector until the session ends; a refusal (403)
/// is recorded in `unavailable` and ends it.
fn watch<K>(
    api: Api<K>,
    what: &'static str,
    unavailable: Arc<Mutex<Option<String>>>,
) -> (reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let Err(e) = item else { continue };
            let refused = match &e {
                watcher::Error::InitialListFailed(kube::Error::Api(s))
                | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
                watcher::Error::WatchError(s) => s.code == 403,
                _ => false,
            };
            if refused {
                let mut u = unavailable.lock().unwrap_or_else(|e| e.into_inner());
                u.get_or_insert_with(|| format!("watching {what} in all namespaces is forbidden"));
                return;
            }
            tracing::debug!(error = %e, what, "watch failed; retrying");
        }
    });
    (reader, task)
}

/// `ns/name` of the Service in `services` whose ClusterIP `ip` is.
pub(crate) fn service_name_at(services: &reflector::Store<Service>, ip: IpAddr) -> Option<String> {
    let svc = service::by_cluster_ip(services, ip)?;
    Some(format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default()
    ))
}

fn cause(e: &Event) -> Option<String> {
    match &e.kind {
        EventKind::Drop {
            reason: Some(reason),
            ..
        } if reason.starts_with("NETFILTER") => Some(format!("drop {reason}")),
        EventKind::Retransmit { state: Some(s) } if s == "SYN_SENT" => {
            Some("unanswered SYN".into())
        }
        _ => None,
    }
}

impl Explainer {
    /// Starts the watches.
    pub(crate) fn start(client: &kube::Client) -> Explainer {
        let unavailable = Arc::new(Mutex::new(None));
        let (policies, t1) = watch(
            Api::all(client.clone()),
            "networkpolicies",
            unavailable.clone(),
        );
        let (namespaces, t2) = watch(Api::all(client.clone()), "namespaces", unavailable.clone());
        let services_unavailable = Arc::new(Mutex::new(None));
        let (service_objects, t3) = watch(
            Api::all(client.clone()),
            "services",
            services_unavailable.clone(),
        );
        Explainer {
            client: client.clone(),
            policies,
            namespaces,
            unavailable,
            said_unavailable: false,
            verdicts: HashMap::new(),
            service_objects,
            services_unavailable,
            services: service::ServiceWhy::default(),
            _tasks: Tasks(vec![t1, t2, t3]),
        }
    }

    /// Waits (a little) for the Services' initial list; a warning to show
    /// once when they cannot be watched.
    pub(crate) async fn services_ready(&self) -> Option<String> {
        let _ = tokio::time::timeout(READY_WAIT, self.service_objects.wait_until_ready()).await;
        self.services_unavailable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(|why| {
                format!(
                    "Services are not followed ({why}): a flow to a ClusterIP may show \
                     without its Service (needs list and watch on services); tracing on"
                )
            })
    }

    /// `ns/name` of the Service whose ClusterIP `ip` is.
    pub(crate) fn service_at(&self, ip: IpAddr) -> Option<String> {
        service_name_at(&self.service_objects, ip)
    }

    /// The Services watch's store (its ClusterIPs name addresses too).
    pub(crate) fn services(&self) -> reflector::Store<Service> {
        self.service_objects.clone()
    }

    fn key(e: &Event) -> FlowKey {
        (e.proto, e.src.ip(), e.dst.ip(), e.dst.port())
    }

    /// The lines `e` calls for (its Service's, then policies'), and the
    /// warnings to show once when what explains them cannot be read.
    pub(crate) async fn on_event(&mut self, e: &Event) -> (Vec<Explanation>, Vec<String>) {
        let (service, w1) = self
            .services
            .on_event(&self.client, &self.service_objects, e)
            .await;
        let (policies, w2) = self.policy_lines(e).await;
        let lines = service
            .map(Explanation::Service)
            .into_iter()
            .chain(policies.into_iter().map(Explanation::Policy))
            .collect();
        (lines, w1.into_iter().chain(w2).collect())
    }

    /// The policy lines `e` calls for, and a warning to show once when
    /// policies cannot be read.
    async fn policy_lines(&mut self, e: &Event) -> (Vec<PolicyLine>, Option<String>) {
        let key = Explainer::key(e);
        let cause = match cause(e) {
            Some(c) => c,
            // A flow once denied that now connects: has its verdict changed?
            None if matches!(e.kind, EventKind::Established { .. })
                && self
                    .verdicts
                    .iter()
                    .any(|((k, _), v)| *k == key && *v == Verdict::Denied) =>
            {
                "connection".to_owned()
            }
            None => return (Vec::new(), None),
        };
        if !self.ready().await {
            let why = self
                .unavailable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if self.said_unavailable {
                return (Vec::new(), None);
            }
            self.said_unavailable = true;
            let why = why.unwrap_or_else(|| "the NetworkPolicy watch did not answer".into());
            return (
                Vec::new(),
                Some(format!(
                    "drops cannot be explained by NetworkPolicy: {why} \
                     (needs list and watch on networkpolicies and namespaces); tracing on"
                )),
            );
        }
        let flow = Flow {
            src: self.end(e.src.ip(), e.src_name.as_deref()).await,
            dst: self.end(e.dst.ip(), e.dst_name.as_deref()).await,
            port: e.dst.port(),
            protocol: e.proto.as_str().to_uppercase(),
        };
        let policies: Vec<NetworkPolicy> = self
            .policies
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect();
        let decisions = policy::evaluate(&policies, &flow);
        let denied = decisions.iter().any(|d| d.verdict == Verdict::Denied);
        let mut lines = Vec::new();
        for d in decisions {
            let seen = self.verdicts.insert((key, d.direction), d.verdict);
            if seen == Some(d.verdict) {
                continue;
            }
            let mut line = PolicyLine::new(e, d, cause.clone());
            line.says_other_cause &= !denied;
            lines.push(line);
        }
        (lines, None)
    }

    /// Whether both watches have their initial lists (waiting a little the
    /// first time) and none was refused.
    async fn ready(&self) -> bool {
        let refused = || {
            self.unavailable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
        };
        if refused() {
            return false;
        }
        let both = async {
            let _ = self.policies.wait_until_ready().await;
            let _ = self.namespaces.wait_until_ready().await;
        };
        tokio::time::timeout(READY_WAIT, both).await.is_ok() && !refused()
    }

    /// An end of the flow: the pod named `ns/name` when it still exists.
    async fn end(&self, ip: IpAddr, name: Option<&str>) -> End {
        let pod = match name.and_then(|n| n.split_once('/')) {
            Some((ns, name)) => self.pod(ns, name).await,
            None => None,
        };
        End { ip, pod }
    }

    async fn pod(&self, ns: &str, name: &str) -> Option<PodEnd> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default().fields(&format!("metadata.name={name}"));
        let pod = api.list(&lp).await.ok()?.items.into_iter().next()?;
        let namespace_labels = self
            .namespaces
            .state()
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(ns))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let ports = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(ContainerPort {
                    name: p.name.clone()?,
                    port: u16::try_from(p.container_port).ok()?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                })
            })
            .collect();
        Some(PodEnd {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            labels: pod.metadata.labels.unwrap_or_default(),
            namespace_labels,
            ports,
        })
    }
}

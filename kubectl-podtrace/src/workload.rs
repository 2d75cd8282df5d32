// SPDX-License-Identifier: Apache-2.0
//! From a target the user named to one side of the trace: the pods it
//! selects now, and the selector that keeps following it ([`Side`]).
//! A workload's pods are found with its own `spec.selector`; a Service's
//! with its `spec.selector`; a pod by its name.

use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

use crate::cli::PodRef;
use crate::errors::{Error, Result};
use crate::resolve::{self, target_from_pod, Target};
use crate::target::{map_selector, selector_string, Kind, TargetRef};

/// One side of the trace (POD or PEER).
#[derive(Debug, Clone)]
pub(crate) struct Side {
    /// How messages name it: `deploy/web`, `pod/web-1`, `-l app=web`.
    pub label: String,
    pub namespace: String,
    /// What selects its pods, for the watch that follows them.
    pub select: Select,
    /// Its pods that can be traced now.
    pub pods: Vec<Target>,
    /// The addresses a client reaches it by besides its pods' (a
    /// Service's ClusterIPs), so the other side's runners let them through;
    /// with two sides, the cluster DNS's too ([`with_cluster_dns`]).
    pub addressed: Vec<IpAddr>,
}

/// How a side's pods are selected in its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Select {
    /// One pod by name (followed when recreated under that name).
    Name(String),
    /// A label selector (a workload's, a Service's, or `-l`).
    Labels(String),
}

/// Resolves one target. `namespace_flag`: the default namespace came from
/// `-n`.
pub(crate) async fn side(
    client: &kube::Client,
    default_ns: &str,
    namespace_flag: bool,
    target: &TargetRef,
) -> Result<Side> {
    let namespace = target.namespace().unwrap_or(default_ns).to_string();
    let label = target.to_string();
    let (kind, name) = match target {
        TargetRef::Selector(labels) => {
            let pods = pods_selected(client, &namespace, labels, &label).await?;
            return Ok(Side {
                label,
                namespace,
                select: Select::Labels(labels.clone()),
                pods,
                addressed: Vec::new(),
            });
        }
        TargetRef::Object { kind, name, .. } => (*kind, name.as_str()),
    };
    let found = |s: Option<LabelSelector>| s.map(|s| selector_string(&s));
    let mut addressed = Vec::new();
    let labels = match kind {
        Kind::Pod => {
            let pod_ref = PodRef {
                namespace: target.namespace().map(str::to_string),
                name: name.to_string(),
            };
            let t = resolve::resolve(client, default_ns, namespace_flag, &pod_ref).await?;
            return Ok(Side {
                label,
                namespace,
                select: Select::Name(name.to_string()),
                pods: vec![t],
                addressed: Vec::new(),
            });
        }
        Kind::Deployment => {
            let d: Deployment = get(client, &namespace, name, &label).await?;
            found(d.spec.map(|s| s.selector))
        }
        Kind::ReplicaSet => {
            let r: ReplicaSet = get(client, &namespace, name, &label).await?;
            found(r.spec.map(|s| s.selector))
        }
        Kind::StatefulSet => {
            let s: StatefulSet = get(client, &namespace, name, &label).await?;
            found(s.spec.map(|s| s.selector))
        }
        Kind::DaemonSet => {
            let d: DaemonSet = get(client, &namespace, name, &label).await?;
            found(d.spec.map(|s| s.selector))
        }
        // Set by the API server unless manualSelector; always there to read.
        Kind::Job => {
            let j: Job = get(client, &namespace, name, &label).await?;
            found(j.spec.and_then(|s| s.selector))
        }
        Kind::Service => {
            let svc = get::<Service>(client, &namespace, name, &label).await?;
            let spec = svc.spec.unwrap_or_default();
            addressed = cluster_ips(&spec);
            let sel = spec.selector.unwrap_or_default();
            let Some(labels) = map_selector(&sel) else {
                return Err(Error::Target(format!(
                    "{label} has no selector, so no pods back it here (its endpoints are set by \
                     hand): trace its pods by name or with -l"
                )));
            };
            Some(Ok(labels))
        }
    };
    let labels = match labels {
        Some(Ok(l)) => l,
        Some(Err(why)) => {
            return Err(Error::Target(format!(
                "{label} in namespace {namespace} has a selector we cannot use ({why}): trace its \
                 pods by name or with -l"
            )))
        }
        None => {
            return Err(Error::Target(format!(
            "{label} in namespace {namespace} has no selector: trace its pods by name or with -l"
        )))
        }
    };
    let pods = pods_selected(client, &namespace, &labels, &label).await?;
    Ok(Side {
        label,
        namespace,
        select: Select::Labels(labels),
        pods,
        addressed,
    })
}

/// A Service's ClusterIPs (none for a headless one).
fn cluster_ips(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    let all = spec.cluster_ips.iter().flatten().chain(&spec.cluster_ip);
    for ip in all.filter_map(|i| i.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// Lets both sides' runners see their pods' DNS lookups: the cluster DNS's
/// addresses join each side's `addressed` when there are two sides (the
/// peer filter would otherwise drop them; with one side nothing is
/// filtered by peer). A Service is mostly reached by name, and "cannot
/// reach it" often ends in a lookup that failed.
pub(crate) async fn with_cluster_dns(client: &kube::Client, sides: &mut [Side]) {
    if sides.len() < 2 {
        return;
    }
    let dns = cluster_dns(client).await;
    for side in sides {
        for ip in &dns {
            if !side.addressed.contains(ip) {
                side.addressed.push(*ip);
            }
        }
    }
}

/// The cluster DNS's addresses (`kube-system/kube-dns`, the name kubeadm,
/// kind and the managed clusters keep for CoreDNS too): its ClusterIPs, as
/// a pod's resolver sends to, and its endpoints' addresses, where a lookup
/// goes after the NAT — a query dropped there (a NetworkPolicy on the
/// node) is only seen with them. None when it cannot be read.
async fn cluster_dns(client: &kube::Client) -> Vec<IpAddr> {
    let api: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let mut ips = match api.get_opt("kube-dns").await {
        Ok(Some(svc)) => cluster_ips(&svc.spec.unwrap_or_default()),
        _ => return Vec::new(),
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let owned = ListParams::default().labels("kubernetes.io/service-name=kube-dns");
    if let Ok(list) = slices.list(&owned).await {
        let endpoints = list.items.into_iter().flat_map(|s| s.endpoints);
        for ip in endpoints
            .flat_map(|e| e.addresses)
            .filter_map(|a| a.parse().ok())
        {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

/// Gets a workload or Service; a missing one is said in one line.
async fn get<K>(client: &kube::Client, namespace: &str, name: &str, label: &str) -> Result<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(Error::Target(format!(
            "{label} not found in namespace {namespace}: check the name with `kubectl get {} -n \
             {namespace}`",
            label.split('/').next().unwrap_or("all")
        ))),
        Err(e) => Err(Error::kube(
            format!("get {label} in namespace {namespace}"),
            e,
        )),
    }
}

/// The running pods a label selector matches; none matching, or none of
/// them running, is an error that says which.
async fn pods_selected(
    client: &kube::Client,
    namespace: &str,
    labels: &str,
    label: &str,
) -> Result<Vec<Target>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(labels))
        .await
        .map_err(|e| Error::kube(format!("list pods of {label} in namespace {namespace}"), e))?;
    if list.items.is_empty() {
        let what = if label.starts_with("-l ") {
            label.to_string()
        } else {
            format!("{label} (selector {labels})")
        };
        return Err(Error::Target(format!(
            "{what} matches no pod in namespace {namespace}: check the labels with `kubectl get \
             pods -n {namespace} --show-labels`"
        )));
    }
    let mut running = Vec::new();
    let mut first_problem = None;
    for p in &list.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        match target_from_pod(p, namespace, &name) {
            Ok(t) => running.push(t),
            Err(e) => {
                first_problem.get_or_insert(e);
            }
        }
    }
    match (running.is_empty(), first_problem) {
        (true, Some(e)) => Err(Error::Target(format!(
            "{label} matches {} pod{} in namespace {namespace} but none can be traced yet: {e}",
            list.items.len(),
            if list.items.len() == 1 { "" } else { "s" }
        ))),
        _ => Ok(running),
    }
}

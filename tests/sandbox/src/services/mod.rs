// SPDX-License-Identifier: Apache-2.0
//! Services in the sandbox, as a cluster has them on the path from a pod
//! to a Service: the `v1` Service object with a ClusterIP ([`api`]), the
//! EndpointSlice controller ([`endpoints`]), kube-proxy's nftables data
//! path in every node ([`proxy`]) and cluster DNS ([`dns`]).
//!
//! The service CIDR is `10.{slot}.252.0/22`, inside the sandbox's own
//! `10.{slot}.0.0/16` (node indexes stop at 250, so no pod CIDR overlaps
//! it); `kube-dns` is its tenth address. ClusterIPs exist only in the
//! nodes' NAT rules, so traffic to them never leaves the sandbox.

mod alloc;
pub(crate) mod api;
pub(crate) mod dns;
mod endpoints;
mod proxy;
pub(crate) mod table;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use tokio::task::JoinHandle;

use crate::sandbox::{Sandbox, State};
use crate::store::{Key, Resource};
use crate::{Error, Result};

/// The label that ties an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn prefix(state: &State) -> Option<String> {
    let net = state.net.lock().unwrap_or_else(|e| e.into_inner());
    net.as_ref().map(podtrace_netns::Cluster::prefix)
}

/// `10.{slot}.252.0/22`, while the sandbox's network is up.
pub(crate) fn service_cidr(state: &State) -> Option<Ipv4Net> {
    let net = state.net.lock().unwrap_or_else(|e| e.into_inner());
    let slot = net.as_ref()?.slot();
    Ipv4Net::new(Ipv4Addr::new(10, slot, 252, 0), 22).ok()
}

/// The cluster DNS Service's address: the CIDR's tenth.
pub(crate) fn dns_ip(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 10)
}

/// Routes the service CIDR out of every node's uplink, as a node's default
/// route would: a packet to a ClusterIP must be routable for the forward
/// hook (where a Service without endpoints is rejected) to see it, and a
/// node's own processes need a route before `nat-output` rewrites it.
pub(crate) fn route_service_cidr(state: &State) -> Result<()> {
    let Some(cidr) = service_cidr(state) else {
        return Ok(());
    };
    let net = state.net.lock().unwrap_or_else(|e| e.into_inner());
    for node in net
        .as_ref()
        .map(podtrace_netns::Cluster::nodes)
        .unwrap_or_default()
    {
        node.netns
            .ip(&["route", "replace", &cidr.to_string(), "dev", "eth0"])?;
    }
    Ok(())
}

/// Stores the `kube-dns` Service (before any pod starts, so every pod's
/// `resolv.conf` names an address that answers once the DNS pod runs).
pub(crate) fn create_kube_dns_service(state: &State) {
    let Some(cidr) = service_cidr(state) else {
        return;
    };
    let (mut svc, _) = match crate::api::decode(
        Resource::Service,
        &dns::service(dns_ip(cidr)),
        crate::admission::FieldValidation::Strict,
    ) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e.message(), "kube-dns Service not made");
            return;
        }
    };
    api::set_defaults(&mut svc);
    let _ = state.lock().create(Resource::Service, svc);
}

/// The DNS pod's manifest, on the first node.
pub(crate) fn dns_pod(state: &State) -> Option<serde_json::Value> {
    let prefix = prefix(state)?;
    let node = {
        let net = state.net.lock().unwrap_or_else(|e| e.into_inner());
        net.as_ref()?.nodes().first()?.name.clone()
    };
    Some(dns::pod(&prefix, &node))
}

/// Starts the EndpointSlice controller, the proxy and the DNS records'
/// writer; they run until aborted.
pub(crate) fn start(state: &Arc<State>) -> Vec<JoinHandle<()>> {
    let endpoints = tokio::spawn(state.clone().run_controller(|st| endpoints::sync(st)));
    let proxy = tokio::spawn(crate::nodenft::keep_in_step(
        state.clone(),
        "Service",
        &[Resource::Service, Resource::EndpointSlice],
        Vec::new(),
        proxy::service_ports,
        |ports, node| proxy::node_ruleset(ports, node.pod_cidr),
    ));
    let mut written: Option<BTreeSet<String>> = None;
    let records = tokio::spawn(state.clone().run_controller(move |st| {
        let Some(prefix) = prefix(st) else { return };
        dns::remove_resolv_confs(&prefix, false);
        let now = dns::records(&st.lock());
        if written.as_ref() == Some(&now) {
            return;
        }
        match dns::write_hosts(&prefix, &now) {
            Ok(()) => written = Some(now),
            Err(e) => tracing::warn!(error = %e, "cluster DNS records not written; retrying"),
        }
    }));
    vec![endpoints, proxy, records]
}

/// Removes what lives outside the namespaces: the DNS records and every
/// pod's `resolv.conf`. (The nftables tables go with the nodes.)
pub(crate) fn teardown(state: &State) {
    if let Some(prefix) = prefix(state) {
        dns::remove_resolv_confs(&prefix, true);
        let _ = std::fs::remove_dir_all(dns::hosts_dir(&prefix));
    }
}

impl Sandbox {
    /// The service CIDR (`10.{slot}.252.0/22`).
    pub fn service_cidr(&self) -> Option<Ipv4Net> {
        service_cidr(&self.state)
    }

    /// The Service's ClusterIP, once it has one.
    pub fn cluster_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        let store = self.state.lock();
        let svc = store.get(&Key::new(Resource::Service, namespace, name))?;
        svc["spec"]["clusterIP"].as_str()?.parse().ok()
    }

    /// Makes the pod's containers ready or not, as a passing or failing
    /// readiness probe would (`Ready` and `ContainersReady` follow).
    pub fn set_pod_ready(&self, namespace: &str, pod: &str, ready: bool) -> Result<()> {
        crate::kubelet::set_ready(&self.state, namespace, pod, ready)
            .map(drop)
            .ok_or_else(|| Error::NotFound {
                kind: "pod",
                name: format!("{namespace}/{pod}"),
            })
    }
}

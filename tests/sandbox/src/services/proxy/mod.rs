// SPDX-License-Identifier: Apache-2.0
//! The Service data path in every node's network namespace, built the way
//! kube-proxy's nftables mode builds it (`pkg/proxy/nftables/proxier.go`):
//! a table `ip kube-proxy` whose `services` chain (from `nat-prerouting`
//! and `nat-output`) dispatches `daddr . l4proto . dport` of a ClusterIP
//! to a chain per Service port; that chain marks traffic from outside the
//! node's pod CIDR for masquerade and picks an endpoint chain with `numgen
//! random`; the endpoint chain marks hairpin traffic (a pod reaching
//! itself) for masquerade and DNATs to the backend. A Service port with no
//! ready endpoint is rejected (`reject`: ICMP port unreachable, so a TCP
//! client sees ECONNREFUSED at once) from `endpoints-check` in the filter
//! chains. `nat-postrouting` masquerades what was marked.
//!
//! Unlike kube-proxy, the dispatch maps are anonymous verdict maps in the
//! rules (the `nftables` crate cannot declare a named verdict map) and the
//! whole table is replaced in one transaction on every change, so no chain
//! is ever left stale. Connections already set up keep their conntrack
//! NAT, as with kube-proxy.

mod rules;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::Value;
use sha2::Digest as _;

use crate::store::{Resource, Store};

use super::SERVICE_NAME_LABEL;

pub(crate) use rules::node_ruleset;

/// kube-proxy's table name.
pub(crate) const TABLE: &str = "kube-proxy";
/// One Service port as the proxier sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServicePort {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// Ready endpoints (address, port), in a stable order.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// Every ClusterIP Service port with its ready endpoints.
pub(crate) fn service_ports(store: &Store) -> Vec<ServicePort> {
    let slices = store.list(Resource::EndpointSlice, None);
    let mut out = Vec::new();
    for svc in store.list(Resource::Service, None) {
        let Some(cluster_ip) = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless
        };
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let own: Vec<&Value> = slices
            .iter()
            .filter(|s| {
                s["metadata"]["namespace"] == ns
                    && s["metadata"]["labels"][SERVICE_NAME_LABEL] == name
            })
            .collect();
        for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
            let port_name = p["name"].as_str().unwrap_or("").to_owned();
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            let mut endpoints = Vec::new();
            for slice in &own {
                let Some(sp) = slice["ports"].as_array().into_iter().flatten().find(|sp| {
                    sp["name"].as_str().unwrap_or("") == port_name
                        && sp["protocol"].as_str().unwrap_or("TCP") == protocol
                }) else {
                    continue;
                };
                let Some(number) = sp["port"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                    continue;
                };
                for e in slice["endpoints"].as_array().into_iter().flatten() {
                    // kube-proxy treats a missing `ready` as ready.
                    if e["conditions"]["ready"] == Value::Bool(false) {
                        continue;
                    }
                    for a in e["addresses"].as_array().into_iter().flatten() {
                        if let Some(ip) = a.as_str().and_then(|a| a.parse().ok()) {
                            endpoints.push((ip, number));
                        }
                    }
                }
            }
            let mut seen = HashSet::new();
            endpoints.retain(|e| seen.insert(*e));
            endpoints.sort();
            out.push(ServicePort {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                port_name,
                protocol: protocol.to_ascii_lowercase(),
                cluster_ip,
                port: p["port"]
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(0),
                endpoints,
            });
        }
    }
    out
}

/// `HASH-name`, as kube-proxy's `hashAndTruncate` (base32 of SHA-256).
fn hashed(name: &str) -> String {
    let digest = sha2::Sha256::digest(name.as_bytes());
    let encoded = data_encoding::BASE32.encode(&digest);
    format!("{}-{name}", &encoded[..8])
}

impl ServicePort {
    /// `ns/svc/tcp/portname`
    fn base(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace, self.name, self.protocol, self.port_name
        )
    }
    pub(crate) fn chain(&self) -> String {
        format!("service-{}", hashed(&self.base()))
    }
    pub(crate) fn endpoint_chain(&self, ep: (Ipv4Addr, u16)) -> String {
        format!(
            "endpoint-{}",
            hashed(&format!("{}__{}/{}", self.base(), ep.0, ep.1))
        )
    }
    /// `ns/svc:portname`, kube-proxy's ServicePortName.
    pub(crate) fn display(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names kube-proxy's own comments give as examples
    /// (`servicePortChainNameBase`, `servicePortEndpointChainNameBase`).
    #[test]
    fn chain_names_are_kube_proxys() {
        let sp = ServicePort {
            namespace: "ns1".into(),
            name: "svc1".into(),
            port_name: "p80".into(),
            protocol: "tcp".into(),
            cluster_ip: Ipv4Addr::new(172, 30, 0, 41),
            port: 80,
            endpoints: Vec::new(),
        };
        assert_eq!(sp.chain(), "service-ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(
            sp.endpoint_chain((Ipv4Addr::new(10, 180, 0, 1), 80)),
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }

    #[test]
    fn only_ready_endpoints_of_the_matching_port_are_backends() {
        let mut store = Store::new();
        let svc = serde_json::json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.1.252.20", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}});
        store.create(Resource::Service, svc).unwrap();
        let slice = serde_json::json!({"metadata": {"name": "web-abcde", "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: "web"}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.1.1.2"], "conditions": {"ready": true}},
                {"addresses": ["10.1.1.3"], "conditions": {"ready": false}},
                {"addresses": ["10.1.2.2"]}]});
        store.create(Resource::EndpointSlice, slice).unwrap();
        let ports = service_ports(&store);
        assert_eq!(ports.len(), 2);
        assert_eq!(
            ports[0].endpoints,
            [
                (Ipv4Addr::new(10, 1, 1, 2), 8080),
                (Ipv4Addr::new(10, 1, 2, 2), 8080)
            ]
        );
        assert_eq!(ports[1].protocol, "udp");
        assert!(ports[1].endpoints.is_empty(), "no slice port named dns");
    }
}

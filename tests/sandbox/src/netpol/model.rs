// SPDX-License-Identifier: Apache-2.0
//! What enforcement needs from the store: pods with their addresses, nodes
//! and named ports, namespace labels, and the policies; plus selector
//! matching and which policies isolate a pod.
//!
//! Written apart from the plugin's evaluator on purpose: the two are
//! checked against the same upstream tables, never against each other.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::store::{Resource, Store};

pub(crate) type Labels = BTreeMap<String, String>;

/// A pod that policies can select: it has an address of its own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    pub node: String,
    /// (name, port, protocol) of every named container port.
    pub ports: Vec<(String, u16, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub pods: Vec<PodInfo>,
    pub namespaces: BTreeMap<String, Labels>,
    pub policies: Vec<NetworkPolicy>,
}

fn labels(v: &Value) -> Labels {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

impl Snapshot {
    pub(crate) fn read(store: &Store) -> Snapshot {
        let pods = store
            .list(Resource::Pod, None)
            .iter()
            .filter(|p| p["spec"]["hostNetwork"] != Value::Bool(true))
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| {
                Some(PodInfo {
                    namespace: p["metadata"]["namespace"].as_str()?.to_owned(),
                    name: p["metadata"]["name"].as_str()?.to_owned(),
                    labels: labels(&p["metadata"]["labels"]),
                    // Rules are IPv4 only (the `ip` family), as the Services.
                    ip: crate::family::pod_ipv4(p)?,
                    node: p["spec"]["nodeName"].as_str()?.to_owned(),
                    ports: p["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                        .filter_map(|port| {
                            Some((
                                port["name"].as_str()?.to_owned(),
                                u16::try_from(port["containerPort"].as_u64()?).ok()?,
                                port["protocol"].as_str().unwrap_or("TCP").to_owned(),
                            ))
                        })
                        .collect(),
                })
            })
            .collect();
        let namespaces = store
            .list(Resource::Namespace, None)
            .iter()
            .filter_map(|n| {
                let name = n["metadata"]["name"].as_str()?.to_owned();
                let mut l = labels(&n["metadata"]["labels"]);
                l.entry("kubernetes.io/metadata.name".into())
                    .or_insert_with(|| name.clone());
                Some((name, l))
            })
            .collect();
        let policies = store
            .list(Resource::NetworkPolicy, None)
            .into_iter()
            .filter_map(|p| serde_json::from_value(p).ok())
            .collect();
        Snapshot {
            pods,
            namespaces,
            policies,
        }
    }

    /// Pods matching `namespace_selector` (or, without one, in `policy_ns`)
    /// AND `pod_selector` (or, without one, every pod).
    pub(crate) fn select_pods<'a>(
        &'a self,
        policy_ns: &'a str,
        namespace_selector: Option<&'a LabelSelector>,
        pod_selector: Option<&'a LabelSelector>,
    ) -> impl Iterator<Item = &'a PodInfo> + 'a {
        self.pods.iter().filter(move |p| {
            let ns_ok = match namespace_selector {
                Some(sel) => self
                    .namespaces
                    .get(&p.namespace)
                    .is_some_and(|l| selector_matches(sel, l)),
                None => p.namespace == policy_ns,
            };
            ns_ok && pod_selector.is_none_or(|sel| selector_matches(sel, &p.labels))
        })
    }
}

pub(crate) fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    let pairs = sel.match_labels.iter().flatten();
    let exprs = sel.match_expressions.iter().flatten();
    pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v))
        && exprs.into_iter().all(|e| {
            let vals = e.values.as_deref().unwrap_or_default();
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| vals.contains(g)),
                "NotIn" => got.is_none_or(|g| !vals.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
}

/// Which way a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    Ingress,
    Egress,
}

/// The policy's effective types, as the API server defaults them.
pub(crate) fn applies(spec: &NetworkPolicySpec, way: Way) -> bool {
    match spec.policy_types.as_deref().filter(|t| !t.is_empty()) {
        Some(types) => types.iter().any(|t| {
            t == match way {
                Way::Ingress => "Ingress",
                Way::Egress => "Egress",
            }
        }),
        None => way == Way::Ingress || spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The EndpointSlice controller, as `pkg/controller/endpointslice` keeps
//! `discovery.k8s.io/v1` slices: for every Service with a selector, its
//! pods (matching, with an address, not finished) as endpoints with
//! `ready` / `serving` / `terminating`, `nodeName` and a `targetRef`; the
//! Service's ports resolved per pod (a named `targetPort` is looked up in
//! the pod's container ports, so pods that number it differently land in
//! different slices); labels `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`; owned by the Service. A Service
//! whose selector matches nothing keeps one empty slice, as upstream does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::sandbox::State;
use crate::store::{random_suffix, Key, Resource, Store};

use super::SERVICE_NAME_LABEL;

const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// Whether every `selector` entry is among `labels`.
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k.as_str()] == *v))
}

/// The pod's port for a Service port, as `podutil.FindPort` finds it.
fn find_port(pod: &Value, svc_port: &Value) -> Option<i64> {
    let target: IntOrString = serde_json::from_value(svc_port["targetPort"].clone()).unwrap_or(
        IntOrString::Int(svc_port["port"].as_i64().unwrap_or(0) as i32),
    );
    let protocol = svc_port["protocol"].as_str().unwrap_or("TCP");
    match target {
        IntOrString::Int(n) => Some(i64::from(n)),
        IntOrString::String(name) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| {
                p["name"] == name.as_str() && p["protocol"].as_str().unwrap_or("TCP") == protocol
            })
            .and_then(|p| p["containerPort"].as_i64()),
    }
}

/// The slices `svc` should have: ports → endpoints.
fn desired(store: &Store, svc: &Value) -> BTreeMap<String, (Value, Vec<Value>)> {
    let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
    let svc_ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for pod in store.list(Resource::Pod, Some(ns)) {
        if !selects(&svc["spec"]["selector"], &pod["metadata"]["labels"]) {
            continue;
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        // The slices are IPv4, as the sandbox's Services.
        let Some(ip) = crate::family::pod_ipv4(&pod) else {
            continue;
        };
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let ports: Vec<Value> = svc_ports
            .iter()
            .filter_map(|p| {
                Some(json!({
                    "name": p["name"].as_str().unwrap_or(""),
                    "port": find_port(&pod, p)?,
                    "protocol": p["protocol"].as_str().unwrap_or("TCP"),
                }))
            })
            .collect();
        let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
        let ready = crate::objects::pod_is_ready(&pod);
        let endpoint = json!({
            "addresses": [ip.to_string()],
            "conditions": {"ready": ready && !terminating, "serving": ready, "terminating": terminating},
            "nodeName": pod["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"],
                          "uid": pod["metadata"]["uid"]},
        });
        let ports = json!(ports);
        groups
            .entry(ports.to_string())
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint);
    }
    if groups.is_empty() {
        // The placeholder slice: no ports, no endpoints.
        groups.insert(String::new(), (Value::Null, Vec::new()));
    }
    groups
}

fn slice_body(svc: &Value, ports: &Value, endpoints: &[Value]) -> Value {
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    let mut labels = svc["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[SERVICE_NAME_LABEL] = json!(name);
    labels[MANAGED_BY] = json!(CONTROLLER);
    json!({
        "metadata": {
            "namespace": svc["metadata"]["namespace"],
            "labels": labels,
            "generateName": format!("{name}-"),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                "uid": svc["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": if endpoints.is_empty() { Value::Null } else { json!(endpoints) },
        "ports": ports,
    })
}

/// One pass: every managed slice brought in step with its Service.
pub(crate) fn sync(state: &State) {
    let mut store = state.lock();
    let services = store.list(Resource::Service, None);
    let mut keep: Vec<Key> = Vec::new();
    for svc in &services {
        if svc["spec"]["selector"]
            .as_object()
            .is_none_or(|s| s.is_empty())
        {
            continue; // slices of a selector-less Service are its owner's to write
        }
        let ns = svc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let mut existing: Vec<Value> = store
            .list(Resource::EndpointSlice, Some(&ns))
            .into_iter()
            .filter(|s| {
                s["metadata"]["labels"][SERVICE_NAME_LABEL] == name
                    && s["metadata"]["labels"][MANAGED_BY] == CONTROLLER
            })
            .collect();
        for (_, (ports, mut endpoints)) in desired(&store, svc) {
            endpoints.sort_by_key(|e| e["targetRef"]["name"].as_str().unwrap_or("").to_owned());
            let body = slice_body(svc, &ports, &endpoints);
            // Reuse a slice with these ports, else any left over, else a new one.
            let reuse = existing
                .iter()
                .position(|s| s["ports"] == ports)
                .or(if existing.is_empty() { None } else { Some(0) });
            let key = match reuse {
                Some(i) => {
                    let old = existing.remove(i);
                    let key = Key::new(
                        Resource::EndpointSlice,
                        &ns,
                        old["metadata"]["name"].as_str().unwrap_or(""),
                    );
                    let _ = store.update(&key, |s| {
                        for k in ["labels", "ownerReferences"] {
                            s["metadata"][k] = body["metadata"][k].clone();
                        }
                        for k in ["addressType", "endpoints", "ports"] {
                            s[k] = body[k].clone();
                        }
                    });
                    key
                }
                None => {
                    let mut body = body;
                    let sname = format!("{name}-{}", random_suffix());
                    body["metadata"]["name"] = json!(sname);
                    let _ = store.create(Resource::EndpointSlice, body);
                    Key::new(Resource::EndpointSlice, &ns, &sname)
                }
            };
            keep.push(key);
        }
    }
    // Managed slices whose Service (or port group) is gone.
    for s in store.list(Resource::EndpointSlice, None) {
        if s["metadata"]["labels"][MANAGED_BY] != CONTROLLER {
            continue;
        }
        let key = Key::new(
            Resource::EndpointSlice,
            s["metadata"]["namespace"].as_str().unwrap_or(""),
            s["metadata"]["name"].as_str().unwrap_or(""),
        );
        if !keep.contains(&key) {
            let _ = store.remove(&key);
        }
    }
}

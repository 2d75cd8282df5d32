// SPDX-License-Identifier: Apache-2.0
//! The Tables `kubectl get svc` and `kubectl get endpointslices` print.

use serde_json::{json, Value};

use crate::store::Resource;

type Columns = Vec<(&'static str, &'static str, u8)>;

/// `kubectl get svc` (Name, Type, Cluster-IP, External-IP, Port(s), Age,
/// wide: Selector) and `kubectl get endpointslices` (Name, AddressType,
/// Ports, Endpoints, Age).
pub(crate) fn table_cells(
    r: Resource,
    o: &Value,
    name: Value,
    age: Value,
) -> (Columns, Vec<Value>) {
    let or_none = |v: Vec<String>, more: usize| {
        if v.is_empty() {
            "<unset>".to_owned()
        } else if more > 0 {
            format!("{} + {more} more...", v.join(","))
        } else {
            v.join(",")
        }
    };
    if r == Resource::EndpointSlice {
        let ports: Vec<String> = o["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
            .collect();
        let addrs: Vec<String> = o["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        let more = addrs.len().saturating_sub(3);
        return (
            vec![
                ("Name", "string", 0),
                ("AddressType", "string", 0),
                ("Ports", "string", 0),
                ("Endpoints", "string", 0),
                ("Age", "date", 0),
            ],
            vec![
                name,
                o["addressType"].clone(),
                json!(or_none(ports, 0)),
                json!(or_none(addrs.into_iter().take(3).collect(), more)),
                age,
            ],
        );
    }
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
        .collect();
    let selector: Vec<String> = o["spec"]["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    let none = |v: Vec<String>| {
        if v.is_empty() {
            "<none>".to_owned()
        } else {
            v.join(",")
        }
    };
    (
        vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        vec![
            name,
            json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
            json!(o["spec"]["clusterIP"].as_str().unwrap_or("None")),
            json!("<none>"),
            json!(none(ports)),
            age,
            json!(none(selector)),
        ],
    )
}

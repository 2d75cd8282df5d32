// SPDX-License-Identifier: Apache-2.0
//! Discovery documents (legacy, unaggregated: kubectl falls back to them)
//! and server-side Table printing for `kubectl get`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::store::Resource;

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

/// The API groups besides the core one, with their one version.
pub const GROUPS: [(&str, &str); 6] = [
    ("apps", "v1"),
    ("batch", "v1"),
    ("networking.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("authentication.k8s.io", "v1"),
];

pub fn api_groups() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The verbs the server answers for `r`, as discovery and OpenAPI list them.
pub fn verbs(r: Resource) -> &'static [&'static str] {
    match r {
        Resource::Namespace => &["create", "delete", "get", "list", "patch", "watch"],
        Resource::Deployment | Resource::ReplicaSet => &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        Resource::Pod | Resource::Job => &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "watch",
        ],
        Resource::Node | Resource::Event | Resource::EndpointSlice => &["get", "list", "watch"],
        Resource::NetworkPolicy | Resource::Service => &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    }
}

fn short_names(r: Resource) -> Option<Value> {
    match r {
        Resource::Namespace => Some(json!(["ns"])),
        Resource::Node => Some(json!(["no"])),
        Resource::Pod => Some(json!(["po"])),
        Resource::Event => Some(json!(["ev"])),
        Resource::Service => Some(json!(["svc"])),
        Resource::NetworkPolicy => Some(json!(["netpol"])),
        Resource::Deployment => Some(json!(["deploy"])),
        Resource::ReplicaSet => Some(json!(["rs"])),
        Resource::Job | Resource::EndpointSlice => None,
    }
}

fn singular(r: Resource) -> String {
    r.kind().to_lowercase()
}

/// `APIResourceList` for a group/version, or `None` if not served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    if version != "v1" {
        return None;
    }
    let mut list: Vec<Value> = Vec::new();
    match group {
        "" | "apps" | "batch" | "networking.k8s.io" | "discovery.k8s.io" => {
            for r in Resource::ALL.into_iter().filter(|r| r.group() == group) {
                let mut e = json!({"name": r.plural(), "singularName": singular(r),
                    "namespaced": r.namespaced(), "kind": r.kind(), "verbs": verbs(r)});
                if let Some(s) = short_names(r) {
                    e["shortNames"] = s;
                }
                if r == Resource::Pod {
                    e["categories"] = json!(["all"]);
                }
                if matches!(
                    r,
                    Resource::Job | Resource::Deployment | Resource::ReplicaSet | Resource::Service
                ) {
                    e["categories"] = json!(["all"]);
                }
                list.push(e);
                if matches!(r, Resource::Deployment | Resource::ReplicaSet) {
                    list.push(json!({"name": format!("{}/scale", r.plural()), "singularName": "",
                        "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale",
                        "verbs": ["get", "patch", "update"]}));
                }
                if r == Resource::Pod {
                    list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
                }
            }
        }
        "authorization.k8s.io" => list.push(
            json!({"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
            "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}),
        ),
        "authentication.k8s.io" => list.push(
            json!({"name": "selfsubjectreviews", "singularName": "selfsubjectreview",
            "namespaced": false, "kind": "SelfSubjectReview", "verbs": ["create"]}),
        ),
        _ => return None,
    }
    let gv = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

/// Age as kubectl prints it (`5s`, `3m2s`, `12m`, `5h`, `3d`).
pub fn age(ts: &Value) -> String {
    let Some(t) = ts
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    else {
        return "<unknown>".into();
    };
    let secs = (Utc::now() - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": name, "priority": priority})
}

/// kubectl's STATUS column for a pod.
fn pod_status(p: &Value) -> String {
    if !p["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating".into();
    }
    let mut reason = p["status"]["reason"]
        .as_str()
        .or(p["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_owned();
    for c in p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(w) = c["state"]["waiting"]["reason"].as_str() {
            reason = w.to_owned();
        } else if let Some(t) = c["state"]["terminated"]["reason"].as_str() {
            reason = t.to_owned();
        }
    }
    reason
}

fn columns_and_cells(r: Resource, o: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = o["metadata"]["name"].clone();
    let age_v = json!(age(&o["metadata"]["creationTimestamp"]));
    match r {
        Resource::Pod => {
            let cs = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == json!(true)).count();
            let restarts: i64 = cs
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            (
                vec![
                    col("Name", "string", 0),
                    col("Ready", "string", 0),
                    col("Status", "string", 0),
                    col("Restarts", "string", 0),
                    col("Age", "string", 0),
                    col("IP", "string", 1),
                    col("Node", "string", 1),
                    col("Nominated Node", "string", 1),
                    col("Readiness Gates", "string", 1),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(o)),
                    json!(restarts.to_string()),
                    age_v,
                    json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                    json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                    json!("<none>"),
                    json!("<none>"),
                ],
            )
        }
        Resource::Job => {
            let conds = o["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if !o["metadata"]["deletionTimestamp"].is_null() {
                "Terminating"
            } else if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("FailureTarget") {
                "FailureTarget"
            } else {
                "Running"
            };
            let completions = format!(
                "{}/{}",
                o["status"]["succeeded"].as_i64().unwrap_or(0),
                o["spec"]["completions"].as_i64().unwrap_or(1)
            );
            let start = o["status"]["startTime"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
            let end = o["status"]["completionTime"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(Utc::now);
            let duration = start.map_or(String::new(), |s| {
                let secs = (end - s.with_timezone(&Utc)).num_seconds().max(0);
                if secs < 120 {
                    format!("{secs}s")
                } else {
                    format!("{}m", secs / 60)
                }
            });
            let containers = o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let join = |k: &str| {
                containers
                    .iter()
                    .filter_map(|c| c[k].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            (
                vec![
                    col("Name", "string", 0),
                    col("Status", "string", 0),
                    col("Completions", "string", 0),
                    col("Duration", "string", 0),
                    col("Age", "date", 0),
                    col("Containers", "string", 1),
                    col("Images", "string", 1),
                    col("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(status),
                    json!(completions),
                    json!(duration),
                    age_v,
                    json!(join("name")),
                    json!(join("image")),
                    json!(format!(
                        "batch.kubernetes.io/controller-uid={}",
                        o["metadata"]["uid"].as_str().unwrap_or("")
                    )),
                ],
            )
        }
        Resource::Node => {
            let ready = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let mut status = if ready {
                "Ready".to_owned()
            } else {
                "NotReady".to_owned()
            };
            if o["spec"]["unschedulable"] == json!(true) {
                status.push_str(",SchedulingDisabled");
            }
            let info = &o["status"]["nodeInfo"];
            (
                vec![
                    col("Name", "string", 0),
                    col("Status", "string", 0),
                    col("Roles", "string", 0),
                    col("Age", "string", 0),
                    col("Version", "string", 0),
                    col("Internal-IP", "string", 1),
                    col("External-IP", "string", 1),
                    col("OS-Image", "string", 1),
                    col("Kernel-Version", "string", 1),
                    col("Container-Runtime", "string", 1),
                ],
                vec![
                    name,
                    json!(status),
                    json!("<none>"),
                    age_v,
                    info["kubeletVersion"].clone(),
                    o["status"]["addresses"][0]["address"].clone(),
                    json!("<none>"),
                    info["osImage"].clone(),
                    info["kernelVersion"].clone(),
                    info["containerRuntimeVersion"].clone(),
                ],
            )
        }
        Resource::Namespace => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            vec![name, o["status"]["phase"].clone(), age_v],
        ),
        Resource::Event => {
            let io = &o["involvedObject"];
            (
                vec![
                    col("Last Seen", "string", 0),
                    col("Type", "string", 0),
                    col("Reason", "string", 0),
                    col("Object", "string", 0),
                    col("Message", "string", 0),
                ],
                vec![
                    json!(age(&o["lastTimestamp"])),
                    o["type"].clone(),
                    o["reason"].clone(),
                    json!(format!(
                        "{}/{}",
                        io["kind"].as_str().unwrap_or("").to_lowercase(),
                        io["name"].as_str().unwrap_or("")
                    )),
                    o["message"].clone(),
                ],
            )
        }
        Resource::NetworkPolicy => {
            let (cols, cells) = crate::netpol::api::table_cells(o, name, age_v);
            (
                cols.into_iter().map(|(n, t, p)| col(n, t, p)).collect(),
                cells,
            )
        }
        Resource::Deployment | Resource::ReplicaSet => {
            let (cols, cells) = crate::apps::table::cells(r, o, name, age_v);
            (
                cols.into_iter().map(|(n, t, p)| col(n, t, p)).collect(),
                cells,
            )
        }
        Resource::Service | Resource::EndpointSlice => {
            let (cols, cells) = crate::services::table::table_cells(r, o, name, age_v);
            (
                cols.into_iter().map(|(n, t, p)| col(n, t, p)).collect(),
                cells,
            )
        }
    }
}

/// A `meta.k8s.io/v1` Table of `items`; `include`: `None`, `Metadata`
/// (default) or `Object`, as the `includeObject` parameter says.
pub fn table(r: Resource, items: &[Value], rv: u64, include: &str) -> Value {
    let mut columns = columns_and_cells(r, &json!({})).0;
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let (c, cells) = columns_and_cells(r, o);
            columns = c;
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                           "metadata": o["metadata"]})
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
           "columnDefinitions": columns, "rows": rows})
}

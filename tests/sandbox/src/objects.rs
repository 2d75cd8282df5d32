// SPDX-License-Identifier: Apache-2.0
//! Builders for the objects the cluster itself makes: namespaces, nodes,
//! events, and small readers over pod objects.

use serde_json::{json, Value};

use crate::family::IpFamily;
use crate::store::{now, Key, Resource, Store};

pub fn default_namespaces() -> Vec<(String, Vec<(String, String)>)> {
    let psa = |level: &str| {
        vec![
            (
                "pod-security.kubernetes.io/enforce".to_owned(),
                level.to_owned(),
            ),
            (
                "pod-security.kubernetes.io/enforce-version".to_owned(),
                "latest".to_owned(),
            ),
        ]
    };
    vec![
        ("default".into(), vec![]),
        ("kube-system".into(), vec![]),
        ("kube-public".into(), vec![]),
        ("kube-node-lease".into(), vec![]),
        ("podtrace".into(), psa("privileged")),
    ]
}

pub fn namespace(name: &str, labels: &[(String, String)]) -> Value {
    let mut ns = json!({"metadata": {"name": name}, "status": {"phase": "Active"}});
    for (k, v) in labels {
        ns["metadata"]["labels"][k] = json!(v);
    }
    crate::admission::set_namespace_defaults(&mut ns);
    ns
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into())
}

pub fn node(node: &podtrace_netns::Node, kernel: &str, family: IpFamily) -> Value {
    let ts = now();
    let cidrs = family.order(
        node.pod_cidr_string(),
        node.pod_cidr6.map(|c| format!("{c}/64")),
    );
    let mut addresses: Vec<Value> = family
        .order(
            node.uplink_ip.to_string(),
            node.uplink_ip6.map(|a| a.to_string()),
        )
        .into_iter()
        .map(|a| json!({"type": "InternalIP", "address": a}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": node.name}));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    json!({
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
            },
            "annotations": {"podtrace.dev/netns": node.netns.name(),
                            "podtrace.dev/cni-shape": format!("{:?}", node.shape)},
        },
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        "status": {
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "message": "kubelet has sufficient memory available", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                 "message": "kubelet has no disk pressure", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                 "message": "kubelet has sufficient PID available", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
            ],
            "addresses": addresses,
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": kernel,
                "osImage": os_image(),
                "containerRuntimeVersion": "podtrace-sandbox://0.1.0",
                "kubeletVersion": "v1.33.0",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    })
}

/// Records an Event about `involved` (a full object), as a controller or
/// the kubelet would.
pub fn record_event(
    store: &mut Store,
    involved: &Value,
    kind_type: &str,
    reason: &str,
    message: &str,
    component: &str,
    host: Option<&str>,
) {
    let meta = &involved["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let name = meta["name"].as_str().unwrap_or("");
    let ts = now();
    let mut source = json!({"component": component});
    if let Some(h) = host {
        source["host"] = json!(h);
    }
    let ev = json!({
        "metadata": {"name": "", "namespace": ns},
        "involvedObject": {
            "kind": involved["kind"], "namespace": ns, "name": name,
            "uid": meta["uid"], "apiVersion": involved["apiVersion"],
            "resourceVersion": meta["resourceVersion"],
        },
        "reason": reason, "message": message, "type": kind_type,
        "source": source, "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        "eventTime": null, "reportingComponent": component, "reportingInstance": host.unwrap_or(""),
    });
    // Named as a real recorder names them (`{object}.{unix nanos in hex}`),
    // which also sorts an object's events in time order.
    let mut nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let mut ev = ev;
    loop {
        ev["metadata"]["name"] = json!(format!("{name}.{nanos:x}"));
        match store.create(Resource::Event, ev.clone()) {
            Err(crate::store::StoreError::AlreadyExists) => nanos += 1,
            _ => break,
        }
    }
}

/// Records an event about the object at `key`, if it still exists.
pub fn event_for(
    store: &mut Store,
    key: &Key,
    kind_type: &str,
    reason: &str,
    message: &str,
    component: &str,
    host: Option<&str>,
) {
    if let Some(obj) = store.get(key).cloned() {
        record_event(store, &obj, kind_type, reason, message, component, host);
    }
}

/// One phrase for a pod's state, for timeouts and messages.
pub fn describe_pod(pod: &Value) -> String {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str();
    let sched = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .filter(|c| c["status"] == "False")
        .and_then(|c| c["message"].as_str());
    match (waiting, sched) {
        (Some(w), _) => format!("{phase}/{w}"),
        (None, Some(m)) => format!("{phase}: {m}"),
        _ => phase.to_owned(),
    }
}

/// Whether the pod's `Ready` condition is `True` (what Deployments count
/// and EndpointSlices mark ready).
pub fn pod_is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

// SPDX-License-Identifier: Apache-2.0
//! From a pod the user named to a pod with a node and IPs ([`Target`]), and
//! from those to one trace per node ([`plan`]).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, ListParams};

use crate::cli::PodRef;
use crate::errors::{close_matches, Error, Result};

mod plan;
pub use plan::{plan, plan_one, NodePlan};

/// A pod to trace, as found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The pod's uid: a pod recreated under the same name is another pod.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
}

impl Target {
    /// `ns/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Looks a pod up; a missing pod names the namespace and where a pod of
/// that name is, or close matches; a pod that is not running says what it
/// is doing. `namespace_flag`: the default namespace came from `-n`.
pub async fn resolve(
    client: &kube::Client,
    default_ns: &str,
    namespace_flag: bool,
    pod: &PodRef,
) -> Result<Target> {
    let namespace = pod
        .namespace
        .clone()
        .unwrap_or_else(|| default_ns.to_string());
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let found = api
        .get_opt(&pod.name)
        .await
        .map_err(|e| Error::kube(format!("get pod {namespace}/{}", pod.name), e))?;
    let Some(found) = found else {
        let elsewhere = namespaces_with(client, &pod.name).await;
        let hint = if elsewhere.is_empty() {
            close_match_hint(&api, &pod.name).await
        } else {
            // `-n` set the namespace this pod was looked up in.
            let flag = namespace_flag && pod.namespace.is_none();
            elsewhere_hint(&pod.name, &elsewhere, flag)
        };
        return Err(Error::PodNotFound {
            namespace,
            name: pod.name.clone(),
            hint,
        });
    };
    target_from_pod(&found, &namespace, &pod.name)
}

/// The namespaces that hold a pod named `name`; none when we may not list
/// pods in all namespaces.
async fn namespaces_with(client: &kube::Client, name: &str) -> Vec<String> {
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    match Api::<Pod>::all(client.clone()).list(&lp).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|p| p.metadata.name.as_deref() == Some(name))
            .filter_map(|p| p.metadata.namespace)
            .collect(),
        Err(e) => {
            tracing::debug!("cannot look for pod {name} in other namespaces: {e}");
            Vec::new()
        }
    }
}

/// `; it is in namespace "web": name it web/NAME`, and with `-n` that it
/// applies to both pods.
fn elsewhere_hint(name: &str, namespaces: &[String], namespace_flag: bool) -> String {
    let quoted: Vec<String> = namespaces.iter().map(|ns| format!("\"{ns}\"")).collect();
    let refs: Vec<String> = namespaces.iter().map(|ns| format!("{ns}/{name}")).collect();
    format!(
        "; it is in namespace{} {}: name it {}{}",
        if namespaces.len() > 1 { "s" } else { "" },
        quoted.join(", "),
        refs.join(" or "),
        if namespace_flag {
            " (-n applies to both pods)"
        } else {
            ""
        }
    )
}

/// `; did you mean …?`, `; it has no pods`, or nothing.
async fn close_match_hint(api: &Api<Pod>, name: &str) -> String {
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            let names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            let close = close_matches(name, names.iter().map(String::as_str));
            if close.is_empty() {
                if names.is_empty() {
                    "; it has no pods".to_string()
                } else {
                    String::new()
                }
            } else {
                format!("; did you mean {}?", close.join(", "))
            }
        }
        Err(_) => String::new(),
    }
}

/// Checks a pod can be traced and extracts what the trace needs.
pub fn target_from_pod(pod: &Pod, namespace: &str, name: &str) -> Result<Target> {
    let id = format!("{namespace}/{name}");
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(Error::PodNotReady {
            pod: id,
            state: "terminating".into(),
            doing: "it is being deleted; pick another pod".into(),
        });
    }
    if let Some((reason, message)) = never_starts(&status) {
        return Err(Error::PodWillNotStart {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason,
            message: message.map(|m| format!(" ({m})")).unwrap_or_default(),
        });
    }
    if phase != "Running" {
        let doing = match phase.as_str() {
            "Pending" => {
                let waiting = status
                    .container_statuses
                    .iter()
                    .flatten()
                    .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                    .map(|w| {
                        let reason = w.reason.clone().unwrap_or_default();
                        match &w.message {
                            Some(m) if !m.is_empty() => format!("{reason} ({m})"),
                            _ => reason,
                        }
                    })
                    .find(|r| !r.is_empty());
                let unscheduled = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                    .map(|c| c.message.clone().unwrap_or_default());
                match (unscheduled, waiting) {
                    (Some(m), _) => format!("not scheduled yet: {m}"),
                    (None, Some(w)) => {
                        format!("its containers are starting: {w}; try again when it is Running")
                    }
                    (None, None) => "it is starting; try again when it is Running".into(),
                }
            }
            "Succeeded" | "Failed" => "it has finished, so it has no traffic left to trace".into(),
            _ => "its node is not reporting it; try again later".into(),
        };
        return Err(Error::PodNotReady {
            pod: id,
            state: phase,
            doing,
        });
    }
    let node = spec.node_name.clone().ok_or_else(|| Error::PodNotReady {
        pod: id.clone(),
        state: "Running without a node".into(),
        doing: "the API server does not say where it runs".into(),
    })?;
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    if ips.is_empty() {
        return Err(Error::PodNotReady {
            pod: id,
            state: "Running but has no IP yet".into(),
            doing: "its network is being set up; try again in a moment".into(),
        });
    }
    Ok(Target {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        node,
        ips,
        host_network: spec.host_network.unwrap_or(false),
    })
}

/// Why a pod's containers will not run without someone fixing the pod: a
/// waiting reason the kubelet only retries with back-off (and message).
/// None while any container runs.
fn never_starts(status: &PodStatus) -> Option<(String, Option<String>)> {
    const NEVER: &[&str] = &[
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    ];
    let states: Vec<_> = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref())
        .collect();
    if states.iter().any(|s| s.running.is_some()) {
        return None;
    }
    states
        .iter()
        .filter_map(|s| s.waiting.as_ref())
        .find_map(|w| {
            let reason = w.reason.as_deref()?;
            NEVER.contains(&reason).then(|| {
                (
                    reason.to_string(),
                    w.message.clone().filter(|m| !m.is_empty()),
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn running(name: &str, node: &str, ip: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        }))
    }

    #[test]
    fn running_pod_becomes_target() {
        let t = target_from_pod(
            &running("nginx-demo", "n1", "10.244.1.5"),
            "default",
            "nginx-demo",
        )
        .unwrap();
        assert_eq!(t.node, "n1");
        assert_eq!(t.ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(t.id(), "default/nginx-demo");
        assert!(!t.host_network);
    }

    #[test]
    fn pending_pod_says_what_it_is_doing() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "c", "image": "nginx", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }));
        let e = target_from_pod(&p, "default", "x").unwrap_err().to_string();
        assert_eq!(
            e,
            "pod default/x is Pending: its containers are starting: ContainerCreating; try again when it is Running"
        );
        let p = pod(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running"}
        }));
        let e = target_from_pod(&p, "default", "x").unwrap_err().to_string();
        assert!(e.contains("has no IP yet"), "{e}");
    }

    #[test]
    fn a_pod_in_another_namespace_is_named_with_it() {
        assert_eq!(
            elsewhere_hint("nginx-demo", &["default".into()], false),
            "; it is in namespace \"default\": name it default/nginx-demo"
        );
        assert_eq!(
            elsewhere_hint("web", &["a".into(), "b".into()], true),
            "; it is in namespaces \"a\", \"b\": name it a/web or b/web (-n applies to both pods)"
        );
    }

    #[test]
    fn a_pod_that_only_backs_off_will_not_start() {
        let waiting = |phase: &str, reason: &str| {
            pod(serde_json::json!({
                "metadata": {"name": "x"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": phase, "podIP": "10.0.0.1", "containerStatuses": [{
                    "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": reason, "message": "back-off 10s"}}}]}
            }))
        };
        let e = target_from_pod(&waiting("Running", "CrashLoopBackOff"), "default", "x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "pod default/x will not start: its container is in CrashLoopBackOff (back-off 10s); \
             fix the pod (see `kubectl describe pod -n default x`)"
        );
        let e = target_from_pod(&waiting("Pending", "ImagePullBackOff"), "default", "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("will not start: its container is in ImagePullBackOff"),
            "{e}"
        );
        let e = target_from_pod(&waiting("Pending", "ContainerCreating"), "default", "x")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("try again when it is Running"), "{e}");
    }
}

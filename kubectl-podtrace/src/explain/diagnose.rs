// SPDX-License-Identifier: Apache-2.0
//! Why a Service cannot answer on a port: a pure function of the Service,
//! its EndpointSlices and the pods in its namespace.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podtrace::event::ServiceMiss;

/// Why the Service cannot answer on `port`/`protocol` (`TCP`, `UDP`), or
/// `None` when it has a ready endpoint for it (then a refusal came from a
/// backend).
pub(crate) fn diagnose(
    svc: &Service,
    slices: &[EndpointSlice],
    pods: &[Pod],
    port: u16,
    protocol: &str,
) -> Option<(ServiceMiss, String)> {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let proto_of = |p: &Option<String>| p.clone().unwrap_or_else(|| "TCP".into());
    let Some(sp) = ports
        .iter()
        .find(|p| i32::from(port) == p.port && proto_of(&p.protocol) == protocol)
    else {
        let have: Vec<String> = ports
            .iter()
            .map(|p| match &p.name {
                Some(n) if !n.is_empty() => format!("{}/{} ({n})", proto_of(&p.protocol), p.port),
                _ => format!("{}/{}", proto_of(&p.protocol), p.port),
            })
            .collect();
        let have = if have.is_empty() {
            "none".to_owned()
        } else {
            have.join(", ")
        };
        return Some((
            ServiceMiss::NoPort,
            format!("no port of the Service is {protocol}/{port} (its ports: {have})"),
        ));
    };
    let ready = ready_endpoints(slices, sp.name.as_deref().unwrap_or(""));
    if ready > 0 {
        return None;
    }
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Some((
            ServiceMiss::NoSelector,
            "it has no selector (its endpoints are set by hand) and none is ready".into(),
        ));
    }
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    let selector_text = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if selected.is_empty() {
        return Some((
            ServiceMiss::NoPods,
            format!("its selector {selector_text} matches no pod"),
        ));
    }
    let id = |p: &Pod| {
        format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default()
        )
    };
    if let Some(IntOrString::String(name)) = &sp.target_port {
        let has = |p: &&Pod| {
            p.spec.iter().flat_map(|s| &s.containers).any(|c| {
                c.ports.iter().flatten().any(|cp| {
                    cp.name.as_deref() == Some(name.as_str()) && proto_of(&cp.protocol) == protocol
                })
            })
        };
        if !selected.iter().any(has) {
            let names: Vec<String> = selected.iter().map(|p| id(p)).collect();
            return Some((
                ServiceMiss::NamedPortUnmatched,
                format!(
                    "its targetPort {name:?} names no {protocol} container port of its pods ({})",
                    names.join(", ")
                ),
            ));
        }
    }
    let not_ready: Vec<String> = selected
        .iter()
        .filter(|p| !pod_ready(p))
        .map(|p| id(p))
        .collect();
    let n = selected.len();
    let why = if not_ready.is_empty() {
        // Ready pods, yet no ready endpoint: the slices lag behind.
        format!("{n} of {n} pods ready, but no endpoint is ready yet")
    } else {
        format!(
            "{} of {n} pod{} ready: {} not ready",
            n - not_ready.len(),
            if n == 1 { "" } else { "s" },
            not_ready.join(", ")
        )
    };
    Some((ServiceMiss::NoReadyEndpoints, why))
}

/// Ready endpoints for the Service port named `port_name` (`""` when it
/// has one unnamed port). A missing `ready` condition means ready.
fn ready_endpoints(slices: &[EndpointSlice], port_name: &str) -> usize {
    slices
        .iter()
        .filter(|s| {
            s.ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref().unwrap_or("") == port_name)
        })
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .count()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(selector: serde_json::Value, target_port: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "selector": selector,
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                "targetPort": target_port}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                     "ports": [{"name": "web", "containerPort": 80}]}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn slice(ready: &[bool]) -> EndpointSlice {
        let endpoints: Vec<_> = ready
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({"addresses": [format!("10.244.1.{}", i + 2)],
                                 "conditions": {"ready": r}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
        }))
        .unwrap()
    }

    #[test]
    fn no_ready_endpoints_names_the_pods_not_ready() {
        let svc = service(json!({"app": "web"}), json!(80));
        let pods = [pod("web-1", false), pod("web-2", false)];
        assert_eq!(
            diagnose(&svc, &[slice(&[false, false])], &pods, 80, "TCP"),
            Some((
                ServiceMiss::NoReadyEndpoints,
                "0 of 2 pods ready: default/web-1, default/web-2 not ready".into()
            ))
        );
        let pods = [pod("web-1", true), pod("web-2", false)];
        assert_eq!(
            diagnose(&svc, &[slice(&[false])], &pods, 80, "TCP").map(|d| d.1),
            Some("1 of 2 pods ready: default/web-2 not ready".into())
        );
        // A ready endpoint: the refusal came from a backend, nothing to say.
        assert_eq!(
            diagnose(&svc, &[slice(&[true, false])], &pods, 80, "TCP"),
            None
        );
    }

    #[test]
    fn a_port_the_service_does_not_have_lists_its_ports() {
        let svc = service(json!({"app": "web"}), json!(80));
        assert_eq!(
            diagnose(&svc, &[slice(&[true])], &[pod("web-1", true)], 8080, "TCP"),
            Some((
                ServiceMiss::NoPort,
                "no port of the Service is TCP/8080 (its ports: TCP/80 (http))".into()
            ))
        );
        assert_eq!(
            diagnose(&svc, &[slice(&[true])], &[], 80, "UDP").map(|d| d.0),
            Some(ServiceMiss::NoPort)
        );
    }

    #[test]
    fn no_selector_and_a_selector_that_matches_nothing() {
        let svc = service(json!(null), json!(80));
        assert_eq!(
            diagnose(&svc, &[], &[pod("web-1", true)], 80, "TCP").map(|d| d.0),
            Some(ServiceMiss::NoSelector)
        );
        // Endpoints set by hand and ready: it can answer.
        assert_eq!(diagnose(&svc, &[slice(&[true])], &[], 80, "TCP"), None);
        let svc = service(json!({"app": "wbe"}), json!(80));
        assert_eq!(
            diagnose(&svc, &[], &[pod("web-1", true)], 80, "TCP"),
            Some((
                ServiceMiss::NoPods,
                "its selector app=wbe matches no pod".into()
            ))
        );
    }

    #[test]
    fn a_named_target_port_no_container_has() {
        let svc = service(json!({"app": "web"}), json!("http"));
        assert_eq!(
            diagnose(&svc, &[], &[pod("web-1", true)], 80, "TCP"),
            Some((
                ServiceMiss::NamedPortUnmatched,
                "its targetPort \"http\" names no TCP container port of its pods (default/web-1)"
                    .into()
            ))
        );
        let svc = service(json!({"app": "web"}), json!("web"));
        assert_eq!(
            diagnose(&svc, &[], &[pod("web-1", false)], 80, "TCP").map(|d| d.0),
            Some(ServiceMiss::NoReadyEndpoints)
        );
    }
}

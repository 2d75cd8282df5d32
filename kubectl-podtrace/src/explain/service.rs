// SPDX-License-Identifier: Apache-2.0
//! Why a Service cannot answer: when a connection to a ClusterIP fails or
//! is reset, the Service, its EndpointSlices and its pods are read and
//! [`diagnose`]d, and one [`ServiceLine`] is shown — once per flow, and
//! again only when the problem changes. A Service with a ready endpoint
//! gets no line: the refusal came from a backend.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::Store;
use podtrace::event::{Event, EventKind, Message, Proto, ResetDirection, ServiceProblem};

use super::diagnose::diagnose;
use crate::errors::Error;

/// A failing flow is read from the API at most this often.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

type FlowKey = (Proto, IpAddr, IpAddr, u16);

/// A `{"type":"service",…}` line ([`ServiceProblem`], docs/schema.md) and
/// how its text reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceLine {
    pub wire: ServiceProblem,
}

impl ServiceLine {
    pub(crate) fn to_json(&self) -> String {
        Message::service(self.wire.clone()).to_line()
    }

    /// One line, indented under the event it explains.
    pub(crate) fn to_text(&self) -> String {
        format!(
            "    service: {} cannot answer on {}/{}: {} ({})",
            self.wire.service,
            self.wire.proto.as_str().to_uppercase(),
            self.wire.dst.port(),
            self.wire.problem.words(),
            self.wire.detail
        )
    }
}

/// What raised the question, for the events that raise it.
fn cause(e: &Event) -> Option<String> {
    match &e.kind {
        EventKind::Failed { error: Some(err) } => Some(format!("failed {err}")),
        EventKind::Failed { error: None } => Some("failed".into()),
        EventKind::Reset {
            direction: ResetDirection::Received,
        } => Some("reset received".into()),
        _ => None,
    }
}

#[derive(Default)]
pub(crate) struct ServiceWhy {
    /// Per flow: the last problem said (`None`: none), and when it was read.
    seen: HashMap<FlowKey, (Option<String>, Instant)>,
    /// Set once reading was refused; said once.
    refused: bool,
}

impl ServiceWhy {
    /// The line `e` calls for, and a warning to show once when the
    /// Services cannot be read.
    pub(crate) async fn on_event(
        &mut self,
        client: &kube::Client,
        services: &Store<Service>,
        e: &Event,
    ) -> (Option<ServiceLine>, Option<String>) {
        let Some(cause) = cause(e) else {
            return (None, None);
        };
        // Not a ClusterIP: nothing to read (the Services are watched).
        let Some(svc) = by_cluster_ip(services, e.dst.ip()) else {
            return (None, None);
        };
        if self.refused {
            return (None, None);
        }
        let key = (e.proto, e.src.ip(), e.dst.ip(), e.dst.port());
        let last = self.seen.get(&key).cloned();
        if last
            .as_ref()
            .is_some_and(|(_, t)| t.elapsed() < RECHECK_EVERY)
        {
            return (None, None);
        }
        let found = match read(client, &svc, e).await {
            Ok(f) => f,
            Err(err) => {
                self.refused = true;
                return (
                    None,
                    Some(format!(
                        "a Service that cannot answer cannot be explained: {err} (needs list on \
                         services, endpointslices.discovery.k8s.io and pods); tracing on"
                    )),
                );
            }
        };
        let said = last.and_then(|(s, _)| s);
        let (service, problem) = found;
        let text = problem.as_ref().map(|(_, d)| d.clone());
        self.seen.insert(key, (text.clone(), Instant::now()));
        let Some((problem, detail)) = problem else {
            return (None, None);
        };
        if said == text {
            return (None, None);
        }
        let wire = ServiceProblem {
            time: e.time.clone(),
            node: e.node.clone(),
            proto: e.proto,
            src: e.src,
            dst: e.dst,
            src_name: e.src_name.clone(),
            service,
            problem,
            detail,
            cause,
        };
        (Some(ServiceLine { wire }), None)
    }
}

type Found = (String, Option<(podtrace::event::ServiceMiss, String)>);

/// The Service whose ClusterIP (one of them) is `ip`, from the watch.
pub(super) fn by_cluster_ip(services: &Store<Service>, ip: IpAddr) -> Option<Arc<Service>> {
    let ip = ip.to_string();
    services.find(|s| {
        s.spec.as_ref().is_some_and(|spec| {
            spec.cluster_ip.as_deref() == Some(ip.as_str())
                || spec.cluster_ips.iter().flatten().any(|c| *c == ip)
        })
    })
}

/// `svc` as `ns/name`, and its problem; its EndpointSlices and pods are
/// read now. A refusal is an error.
async fn read(client: &kube::Client, svc: &Service, e: &Event) -> Result<Found, Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map_err(|err| Error::kube(format!("list endpointslices in namespace {ns}"), err))?
        .items;
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels(&labels.join(",")))
            .await
            .map_err(|err| Error::kube(format!("list pods in namespace {ns}"), err))?
            .items
    };
    let protocol = e.proto.as_str().to_uppercase();
    let problem = diagnose(svc, &slices, &pods, e.dst.port(), &protocol);
    Ok((format!("{ns}/{name}"), problem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace::event::ServiceMiss;

    #[test]
    fn a_service_line_in_json_and_text() {
        let l = ServiceLine {
            wire: ServiceProblem {
                time: "2026-11-29T11:07:02.235658000Z".into(),
                node: "node-1".into(),
                proto: Proto::Tcp,
                src: "10.2.2.2:36042".parse().unwrap(),
                dst: "10.96.0.20:80".parse().unwrap(),
                src_name: Some("default/curl-demo".into()),
                service: "default/web".into(),
                problem: ServiceMiss::NoReadyEndpoints,
                detail: "0 of 2 pods ready: default/web-1, default/web-2 not ready".into(),
                cause: "failed ECONNREFUSED".into(),
            },
        };
        let v: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
        assert_eq!(v["type"], "service");
        assert_eq!(v["problem"], "no-ready-endpoints");
        assert_eq!(v["service"], "default/web");
        match Message::parse(&l.to_json()).unwrap() {
            Message::Service(s) => assert_eq!(s.body, l.wire),
            m => panic!("read back as {}", m.type_name()),
        }
        assert_eq!(
            l.to_text(),
            "    service: default/web cannot answer on TCP/80: no ready endpoints (0 of 2 pods \
             ready: default/web-1, default/web-2 not ready)"
        );
    }
}

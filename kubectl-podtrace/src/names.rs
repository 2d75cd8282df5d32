// SPDX-License-Identifier: Apache-2.0
//! Which pod or Service an IP belongs to, shown as `ns/name`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use podtrace::event::{Event, FlowSummary};

use crate::errors::Error;

/// Don't list the cluster again for an unknown IP more often than this.
const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// IP → `ns/name`, from pods and Services.
#[derive(Debug, Default)]
pub struct Names {
    map: HashMap<IpAddr, String>,
    last_refresh: Option<Instant>,
    /// Set once listing was forbidden (we then say so once and stop trying).
    forbidden: bool,
}

impl Names {
    /// Adds one known name (the targets are always known).
    pub fn insert(&mut self, ip: IpAddr, name: String) {
        self.map.insert(ip, name);
    }

    pub fn get(&self, ip: &IpAddr) -> Option<&str> {
        self.map.get(ip).map(String::as_str)
    }

    /// Whether a refresh is worth it for an IP we don't know.
    pub fn should_refresh(&self, ip: &IpAddr) -> bool {
        !self.forbidden
            && !self.map.contains_key(ip)
            && !ip.is_loopback()
            && self
                .last_refresh
                .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
    }

    /// Lists pods and Services in all namespaces. Returns a warning to show
    /// (once) when that is not allowed.
    pub async fn refresh(&mut self, client: &kube::Client) -> Option<String> {
        self.last_refresh = Some(Instant::now());
        let mut warnings = Vec::new();
        match Api::<Pod>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => {
                for pod in list.items {
                    let spec = pod.spec.unwrap_or_default();
                    if spec.host_network.unwrap_or(false) {
                        // Its IP is the node's: naming it after one pod would mislead.
                        continue;
                    }
                    let id = format!(
                        "{}/{}",
                        pod.metadata.namespace.unwrap_or_default(),
                        pod.metadata.name.unwrap_or_default()
                    );
                    let status = pod.status.unwrap_or_default();
                    let ips = status
                        .pod_ips
                        .into_iter()
                        .flatten()
                        .map(|i| i.ip)
                        .chain(status.pod_ip);
                    for ip in ips.filter_map(|i| i.parse::<IpAddr>().ok()) {
                        self.map.insert(ip, id.clone());
                    }
                }
            }
            Err(e) => warnings.push(Error::kube("list pods in all namespaces", e).to_string()),
        }
        match Api::<Service>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => {
                for svc in list.items {
                    let id = format!(
                        "{}/{}",
                        svc.metadata.namespace.unwrap_or_default(),
                        svc.metadata.name.unwrap_or_default()
                    );
                    let spec = svc.spec.unwrap_or_default();
                    let ips = spec
                        .cluster_ips
                        .into_iter()
                        .flatten()
                        .chain(spec.cluster_ip);
                    for ip in ips.filter_map(|i| i.parse::<IpAddr>().ok()) {
                        self.map.entry(ip).or_insert_with(|| id.clone());
                    }
                }
            }
            Err(e) => warnings.push(Error::kube("list services in all namespaces", e).to_string()),
        }
        if warnings.is_empty() || self.forbidden {
            return None;
        }
        self.forbidden = true;
        Some(format!(
            "{}; showing bare IPs for other pods",
            warnings.join("; ")
        ))
    }

    /// The first IP of an event we have no name for, if a refresh may help.
    pub fn unknown_in(&self, e: &Event) -> Option<IpAddr> {
        [e.src.ip(), e.dst.ip()]
            .into_iter()
            .find(|ip| self.should_refresh(ip))
    }

    /// Sets `src_name`/`dst_name` on an event.
    pub fn annotate(&self, e: &mut Event) {
        e.src_name = self.get(&e.src.ip()).map(str::to_string);
        e.dst_name = self.get(&e.dst.ip()).map(str::to_string);
    }

    /// Sets `src_name`/`dst_name` on a flow.
    pub fn annotate_flow(&self, f: &mut FlowSummary) {
        f.src_name = f.src.and_then(|ip| self.get(&ip)).map(str::to_string);
        f.dst_name = f.dst.and_then(|a| self.get(&a.ip())).map(str::to_string);
    }
}

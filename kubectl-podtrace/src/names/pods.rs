// SPDX-License-Identifier: Apache-2.0
//! Pod IP → `ns/name`, as a watch on every pod reports them. Only the IPs
//! and names are kept, never the pods.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

/// Each pod's IPs (both families) and who holds each IP now.
#[derive(Debug, Default)]
pub(crate) struct PodIps {
    by_ip: HashMap<IpAddr, String>,
    by_pod: HashMap<String, Vec<IpAddr>>,
    /// A relist under way: the pods it brought so far.
    relist: Option<Vec<(String, Vec<IpAddr>)>>,
}

/// `ns/name` and the IPs a pod holds: none when it uses the node's network
/// (naming the node's IP after one pod would mislead) or has finished (its
/// IPs are free for other pods).
fn held(pod: &Pod) -> (String, Vec<IpAddr>) {
    let id = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let status = pod.status.as_ref();
    let finished = status
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if host_network || finished {
        return (id, Vec::new());
    }
    let mut ips: Vec<IpAddr> = status
        .into_iter()
        .flat_map(|s| s.pod_ips.iter().flatten().map(|i| i.ip.as_str()))
        .chain(status.and_then(|s| s.pod_ip.as_deref()))
        .filter_map(|i| i.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    (id, ips)
}

impl PodIps {
    /// The pod holding `ip`.
    pub(crate) fn get(&self, ip: &IpAddr) -> Option<&str> {
        self.by_ip.get(ip).map(String::as_str)
    }

    /// Applies one watch event. A relist (`Init` … `InitDone`) replaces
    /// everything once it is complete, so a pod gone meanwhile is dropped.
    pub(crate) fn apply(&mut self, event: Event<Pod>) {
        match event {
            Event::Apply(pod) => {
                let (id, ips) = held(&pod);
                self.set(id, ips);
            }
            Event::Delete(pod) => self.set(held(&pod).0, Vec::new()),
            Event::Init => self.relist = Some(Vec::new()),
            Event::InitApply(pod) => self.relist.get_or_insert_with(Vec::new).push(held(&pod)),
            Event::InitDone => {
                let pods = self.relist.take().unwrap_or_default();
                self.by_ip.clear();
                self.by_pod.clear();
                for (id, ips) in pods {
                    self.set(id, ips);
                }
            }
        }
    }

    /// `id` holds `ips` now (none: it is gone). An IP another pod held is
    /// renamed: the newest holder is the one alive.
    fn set(&mut self, id: String, ips: Vec<IpAddr>) {
        for old in self.by_pod.remove(&id).unwrap_or_default() {
            if !ips.contains(&old) && self.by_ip.get(&old) == Some(&id) {
                self.by_ip.remove(&old);
            }
        }
        for ip in &ips {
            self.by_ip.insert(*ip, id.clone());
        }
        if !ips.is_empty() {
            self.by_pod.insert(id, ips);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, ips: &[&str]) -> Pod {
        let pod_ips: Vec<_> = ips.iter().map(|ip| json!({ "ip": ip })).collect();
        serde_json::from_value(json!({
            "metadata": { "namespace": ns, "name": name },
            "status": { "phase": "Running", "podIP": ips.first(), "podIPs": pod_ips }
        }))
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pod_is_named_by_each_of_its_ips() {
        let mut m = PodIps::default();
        m.apply(Event::Apply(pod(
            "default",
            "web",
            &["10.0.0.5", "fd00::5"],
        )));
        assert_eq!(m.get(&ip("10.0.0.5")), Some("default/web"));
        assert_eq!(m.get(&ip("fd00::5")), Some("default/web"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_deleted_pod_loses_its_names() {
        let mut m = PodIps::default();
        m.apply(Event::Apply(pod(
            "default",
            "web",
            &["10.0.0.5", "fd00::5"],
        )));
        m.apply(Event::Delete(pod(
            "default",
            "web",
            &["10.0.0.5", "fd00::5"],
        )));
        assert_eq!(m.get(&ip("10.0.0.5")), None);
        assert_eq!(m.get(&ip("fd00::5")), None);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn an_ip_reused_by_a_new_pod_is_renamed_and_keeps_the_new_name() {
        let mut m = PodIps::default();
        m.apply(Event::Apply(pod("default", "old", &["10.0.0.5"])));
        m.apply(Event::Apply(pod("shop", "new", &["10.0.0.5"])));
        assert_eq!(m.get(&ip("10.0.0.5")), Some("shop/new"));
        // The old pod's delete comes late: the IP is the new pod's now.
        m.apply(Event::Delete(pod("default", "old", &["10.0.0.5"])));
        assert_eq!(m.get(&ip("10.0.0.5")), Some("shop/new"));
    }

    #[test]
    fn a_pod_that_changes_ips_drops_the_old_ones() {
        let mut m = PodIps::default();
        m.apply(Event::Apply(pod("default", "web", &["10.0.0.5"])));
        m.apply(Event::Apply(pod("default", "web", &["10.0.0.6"])));
        assert_eq!(m.get(&ip("10.0.0.5")), None);
        assert_eq!(m.get(&ip("10.0.0.6")), Some("default/web"));
    }

    #[test]
    fn host_network_and_finished_pods_claim_no_ip() {
        let mut m = PodIps::default();
        let mut host = pod("kube-system", "proxy", &["192.168.1.10"]);
        host.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        m.apply(Event::Apply(host));
        let mut done = pod("default", "job-x", &["10.0.0.7"]);
        m.apply(Event::Apply(done.clone()));
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        m.apply(Event::Apply(done));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_relist_drops_the_pods_it_no_longer_has() {
        let mut m = PodIps::default();
        m.apply(Event::Apply(pod("default", "gone", &["10.0.0.5"])));
        m.apply(Event::Init);
        m.apply(Event::InitApply(pod("default", "kept", &["10.0.0.6"])));
        // Until the relist is complete, what was known still holds.
        assert_eq!(m.get(&ip("10.0.0.5")), Some("default/gone"));
        m.apply(Event::InitDone);
        assert_eq!(m.get(&ip("10.0.0.5")), None);
        assert_eq!(m.get(&ip("10.0.0.6")), Some("default/kept"));
    }
}

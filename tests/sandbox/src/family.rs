// SPDX-License-Identifier: Apache-2.0
//! The cluster's IP families: which addresses pods and nodes get, in which
//! order the API lists them (the primary family first, as a dual-stack
//! cluster's `--cluster-cidr` order decides), and reading them back from
//! a stored pod.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

/// The families of pod and node addresses. Services (ClusterIPs, cluster
/// DNS) stay IPv4 in every one, so pods keep an IPv4 address in all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamily {
    /// IPv4 only.
    #[default]
    Ipv4,
    /// IPv6 primary: `podIP` is the IPv6 address, IPv4 second in `podIPs`.
    Ipv6,
    /// IPv4 primary, IPv6 second.
    Dual,
}

impl IpFamily {
    /// Whether pods and nodes get IPv6 addresses.
    pub fn has_ipv6(self) -> bool {
        self != IpFamily::Ipv4
    }

    /// `v4` and `v6` (where present) in the API's order.
    pub(crate) fn order<T>(self, v4: T, v6: Option<T>) -> Vec<T> {
        match (self, v6) {
            (IpFamily::Ipv6, Some(v6)) => vec![v6, v4],
            (_, Some(v6)) => vec![v4, v6],
            (_, None) => vec![v4],
        }
    }
}

/// Every address of a stored pod (`status.podIPs`, else `status.podIP`).
pub(crate) fn pod_ips(pod: &Value) -> Vec<IpAddr> {
    let listed: Vec<IpAddr> = pod["status"]["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["ip"].as_str()?.parse().ok())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    pod["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .into_iter()
        .collect()
}

/// A stored pod's IPv4 address: what Services (IPv4 in the sandbox),
/// their endpoints and NetworkPolicy rules use.
pub(crate) fn pod_ipv4(pod: &Value) -> Option<Ipv4Addr> {
    pod_ips(pod).into_iter().find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    })
}

/// A stored pod's IPv6 address, in a cluster that gives pods one.
pub(crate) fn pod_ipv6(pod: &Value) -> Option<Ipv6Addr> {
    pod_ips(pod).into_iter().find_map(|ip| match ip {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_primary_family_comes_first() {
        assert_eq!(IpFamily::Ipv4.order(4, None), vec![4]);
        assert_eq!(IpFamily::Dual.order(4, Some(6)), vec![4, 6]);
        assert_eq!(IpFamily::Ipv6.order(4, Some(6)), vec![6, 4]);
    }

    #[test]
    fn reads_either_family_from_pod_ips() {
        let pod = json!({"status": {"podIP": "fd00:1:2::5",
            "podIPs": [{"ip": "fd00:1:2::5"}, {"ip": "10.1.2.5"}]}});
        assert_eq!(pod_ipv4(&pod), Some(Ipv4Addr::new(10, 1, 2, 5)));
        assert_eq!(pod_ipv6(&pod), Some("fd00:1:2::5".parse().unwrap()));
        let old = json!({"status": {"podIP": "10.1.2.5"}});
        assert_eq!(pod_ipv4(&old), Some(Ipv4Addr::new(10, 1, 2, 5)));
        assert_eq!(pod_ipv6(&old), None);
    }
}

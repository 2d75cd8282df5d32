// SPDX-License-Identifier: Apache-2.0
//! From the pods of each side to what each runner traces: one runner per
//! node at the start, one more for each pod that joins during the trace.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Target;

/// What one node's runner traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub node: String,
    /// Targets running on this node.
    pub local: Vec<Target>,
    /// IPs of this node's pods (`--pod-ip`).
    pub pod_ips: Vec<IpAddr>,
    /// IPs the trace is limited to (`--peer-ip`); empty for one pod.
    pub peer_ips: Vec<IpAddr>,
}

/// One plan per node with a pod of either side on it. With two sides
/// (POD and PEER) each runner is limited to traffic with the other side:
/// its pods and the addresses it is reached by (`addressed[side]`, a
/// Service's ClusterIPs; missing sides have none).
pub fn plan(sides: &[&[Target]], addressed: &[&[IpAddr]]) -> Vec<NodePlan> {
    let mut by_node: BTreeMap<String, Vec<(usize, Target)>> = BTreeMap::new();
    for (side, targets) in sides.iter().enumerate() {
        for t in targets.iter() {
            let local = by_node.entry(t.node.clone()).or_default();
            if !local
                .iter()
                .any(|(_, l)| l.uid == t.uid && l.id() == t.id())
            {
                local.push((side, t.clone()));
            }
        }
    }
    by_node
        .into_iter()
        .map(|(node, local)| {
            let mut pod_ips: Vec<IpAddr> = local.iter().flat_map(|(_, t)| t.ips.clone()).collect();
            pod_ips.dedup();
            let local_sides: Vec<usize> = local.iter().map(|(s, _)| *s).collect();
            NodePlan {
                node,
                local: local.into_iter().map(|(_, t)| t).collect(),
                pod_ips,
                peer_ips: peers(sides, addressed, &local_sides),
            }
        })
        .collect()
}

/// The plan of a runner for one pod that joined `side` during the trace:
/// only it, limited to the other side's pods as they are now.
pub fn plan_one(
    sides: &[&[Target]],
    addressed: &[&[IpAddr]],
    side: usize,
    joined: &Target,
) -> NodePlan {
    NodePlan {
        node: joined.node.clone(),
        local: vec![joined.clone()],
        pod_ips: joined.ips.clone(),
        peer_ips: peers(sides, addressed, &[side]),
    }
}

/// `--peer-ip` for a runner tracing pods of `local_sides`: every IP of the
/// other side (local ones too: two pods on one node are each other's
/// peers) and the addresses it is reached by, as a client's socket sees
/// them before NAT; none with one side.
fn peers(sides: &[&[Target]], addressed: &[&[IpAddr]], local_sides: &[usize]) -> Vec<IpAddr> {
    if sides.len() < 2 {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for (side, targets) in sides.iter().enumerate() {
        if local_sides.iter().any(|l| *l != side) {
            let extra = addressed.get(side).copied().unwrap_or_default();
            for ip in targets.iter().flat_map(|t| t.ips.iter()).chain(extra) {
                if !ips.contains(ip) {
                    ips.push(*ip);
                }
            }
        }
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::target_from_pod;
    use k8s_openapi::api::core::v1::Pod;

    fn running(name: &str, node: &str, ip: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        }))
        .unwrap()
    }

    #[test]
    fn plans_one_runner_per_node() {
        let a = target_from_pod(&running("a", "n1", "10.0.1.2"), "default", "a").unwrap();
        let b = target_from_pod(&running("b", "n2", "10.0.2.2"), "default", "b").unwrap();
        let plans = plan(&[std::slice::from_ref(&a), std::slice::from_ref(&b)], &[]);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].node, "n1");
        assert_eq!(plans[0].pod_ips, a.ips);
        assert_eq!(plans[0].peer_ips, b.ips);
        assert_eq!(plans[1].pod_ips, b.ips);
        assert_eq!(plans[1].peer_ips, a.ips);

        let c = target_from_pod(&running("c", "n1", "10.0.1.3"), "default", "c").unwrap();
        let plans = plan(&[std::slice::from_ref(&a), std::slice::from_ref(&c)], &[]);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].pod_ips.len(), 2);
        assert_eq!(plans[0].peer_ips.len(), 2);
        assert!(plans[0]
            .pod_ips
            .iter()
            .all(|ip| plans[0].peer_ips.contains(ip)));

        let plans = plan(&[std::slice::from_ref(&a)], &[]);
        assert_eq!(plans.len(), 1);
        assert!(plans[0].peer_ips.is_empty());
    }

    #[test]
    fn a_dual_stack_pod_is_traced_and_filtered_by_both_addresses() {
        let dual = |name: &str, node: &str, v4: &str, v6: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
                "status": {"phase": "Running", "podIP": v6,
                           "podIPs": [{"ip": v6}, {"ip": v4}]}
            }))
            .unwrap()
        };
        let a = target_from_pod(&dual("a", "n1", "10.0.1.2", "fd00::1:2"), "default", "a").unwrap();
        let b = target_from_pod(&dual("b", "n2", "10.0.2.2", "fd00::2:2"), "default", "b").unwrap();
        let ips = |l: &[&str]| -> Vec<IpAddr> { l.iter().map(|i| i.parse().unwrap()).collect() };
        let plans = plan(&[std::slice::from_ref(&a), std::slice::from_ref(&b)], &[]);
        assert_eq!(plans[0].pod_ips, ips(&["fd00::1:2", "10.0.1.2"]));
        assert_eq!(plans[0].peer_ips, ips(&["fd00::2:2", "10.0.2.2"]));
        assert_eq!(plans[1].pod_ips, ips(&["fd00::2:2", "10.0.2.2"]));
        assert_eq!(plans[1].peer_ips, ips(&["fd00::1:2", "10.0.1.2"]));
    }

    #[test]
    fn plans_sets_of_pods_and_pods_that_join() {
        let t = |name: &str, node: &str, ip: &str| {
            let mut p = running(name, node, ip);
            p.metadata.uid = Some(format!("uid-{name}"));
            target_from_pod(&p, "default", name).unwrap()
        };
        // `-l app=web` on two nodes, no peer: one runner per node, no filter.
        let (w1, w2) = (t("w1", "n1", "10.0.1.2"), t("w2", "n2", "10.0.2.2"));
        let plans = plan(&[&[w1.clone(), w2.clone()]], &[]);
        assert_eq!(plans.len(), 2);
        assert!(plans
            .iter()
            .all(|p| p.peer_ips.is_empty() && p.local.len() == 1));
        // With a peer on n1: n1's runner has w1 and the client, each the
        // other's peer; n2's runner filters on the client only.
        let c = t("c", "n1", "10.0.1.9");
        let sides: [&[Target]; 2] = [std::slice::from_ref(&c), &[w1.clone(), w2.clone()]];
        let plans = plan(&sides, &[]);
        assert_eq!(plans[0].local.len(), 2);
        assert_eq!(plans[0].peer_ips.len(), 3);
        assert_eq!(plans[1].peer_ips, c.ips);
        // A pod that joins the PEER side is traced alone, limited to POD.
        let w3 = t("w3", "n2", "10.0.2.3");
        let one = plan_one(&sides, &[], 1, &w3);
        assert_eq!(
            (one.node.as_str(), one.pod_ips.clone()),
            ("n2", w3.ips.clone())
        );
        assert_eq!(one.peer_ips, c.ips);
        assert_eq!(one.local, vec![w3.clone()]);
        assert!(plan_one(&[std::slice::from_ref(&w1)], &[], 0, &w3)
            .peer_ips
            .is_empty());
    }

    #[test]
    fn a_service_peer_lets_its_cluster_ips_through() {
        let c = target_from_pod(&running("c", "n1", "10.0.1.9"), "default", "c").unwrap();
        let w = target_from_pod(&running("w", "n2", "10.0.2.2"), "default", "w").unwrap();
        let cluster_ip: IpAddr = "10.96.0.20".parse().unwrap();
        let sides: [&[Target]; 2] = [std::slice::from_ref(&c), std::slice::from_ref(&w)];
        let addressed: [&[IpAddr]; 2] = [&[], &[cluster_ip]];
        let plans = plan(&sides, &addressed);
        // The client's runner sees the ClusterIP its socket connects to.
        assert_eq!(plans[0].peer_ips, vec![w.ips[0], cluster_ip]);
        // The backend's runner sees the client, never its own ClusterIP.
        assert_eq!(plans[1].peer_ips, c.ips);
        let c2 = target_from_pod(&running("c2", "n1", "10.0.1.8"), "default", "c2").unwrap();
        assert!(plan_one(&sides, &addressed, 0, &c2)
            .peer_ips
            .contains(&cluster_ip));
    }
}

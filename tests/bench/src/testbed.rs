// SPDX-License-Identifier: Apache-2.0
//! The set-up every measurement shares: one node, an nginx pod serving a
//! 1 KiB page, and a load-generator pod beside it, built with the project's
//! network-namespace harness. Everything goes when the testbed is dropped.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use podtrace_netns::{Cluster, Daemon, Pod, Shape};
use tempfile::TempDir;

use crate::tracer::Target;

/// Size of the page nginx serves, as the issue asks.
pub const PAGE_BYTES: usize = 1024;
pub const PORT: u16 = 80;
pub const NODE: &str = "node-a";

pub struct Testbed {
    // Field order is drop order: nginx before its pod, pods before the cluster.
    _nginx: Daemon,
    pub server: Pod,
    pub client: Pod,
    pub cluster: Cluster,
    /// tmpfs: the page, the bpftrace script, tcpdump's capture.
    pub scratch: TempDir,
}

impl Testbed {
    pub fn new() -> Result<Testbed> {
        let scratch = tempfile::Builder::new()
            .prefix("podtrace-bench-")
            .tempdir_in("/dev/shm")
            .context("create a scratch directory on tmpfs")?;
        let www = scratch.path().join("www");
        fs::create_dir_all(&www)?;
        fs::write(www.join("index.html"), page())?;
        let cluster = Cluster::new().context("create the network-namespace cluster")?;
        // The routed shape (Calico-like): the pod's host side is a plain veth.
        cluster.add_node(NODE, Shape::Routed)?;
        let server = cluster.add_pod(NODE, "nginx")?;
        let client = cluster.add_pod(NODE, "loadgen")?;
        // Tens of thousands of short connections a second would otherwise run
        // the client out of ephemeral ports within a step.
        client
            .netns
            .sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
        client.netns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        let nginx = server
            .start_nginx(PORT, Some(&www))
            .context("start nginx in the server pod")?;
        let tb = Testbed {
            _nginx: nginx,
            server,
            client,
            cluster,
            scratch,
        };
        let out = tb.client.curl(&tb.url(), 5)?;
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            said == format!("200 {PAGE_BYTES}"),
            "the client pod cannot fetch the page: curl said {said:?}"
        );
        Ok(tb)
    }

    pub fn url(&self) -> String {
        format!("http://{}:{PORT}/", self.server.ip)
    }

    pub fn target(&self, runner: PathBuf, before_runner: Option<PathBuf>) -> Target {
        Target {
            node_netns: self.server.node.netns.path(),
            node_name: self.server.node.netns.name().to_owned(),
            pod_ip: self.server.ip,
            host_if: self.server.host_if.clone(),
            runner,
            before_runner,
            scratch: self.scratch.path().to_owned(),
        }
    }

    /// TCP passive opens in the server pod: the kernel's own count of
    /// accepted connections, our ground truth for connection events.
    pub fn passive_opens(&self) -> Result<u64> {
        let out = self.server.netns.exec("cat", &["/proc/net/snmp"])?;
        snmp_field(&String::from_utf8_lossy(&out.stdout), "Tcp", "PassiveOpens")
            .context("no Tcp PassiveOpens in /proc/net/snmp")
    }

    /// Packets both ways through the pod's host-side veth, as the kernel
    /// counts them: ground truth for packet events.
    pub fn veth_packets(&self) -> Result<u64> {
        let base = format!("/sys/class/net/{}/statistics", self.server.host_if);
        let out = self.server.node.netns.exec(
            "cat",
            &[&format!("{base}/rx_packets"), &format!("{base}/tx_packets")],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }
}

/// A 1 KiB HTML page.
fn page() -> Vec<u8> {
    let head = b"<!doctype html><title>podtrace bench</title><p>";
    let tail = b"</p>\n";
    let mut p = head.to_vec();
    p.resize(PAGE_BYTES - tail.len(), b'x');
    p.extend_from_slice(tail);
    p
}

/// A counter from `/proc/net/snmp`'s header/value line pairs.
pub fn snmp_field(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    // The group's first line names the fields, its second holds the values.
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (head, vals) = (lines.next()?, lines.next()?);
    let i = head.split_whitespace().position(|h| h == name)?;
    vals.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_exactly_one_kib() {
        assert_eq!(page().len(), PAGE_BYTES);
    }

    #[test]
    fn reads_snmp_counters() {
        let t = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm ActiveOpens PassiveOpens\nTcp: 1 5 77\n";
        assert_eq!(snmp_field(t, "Tcp", "PassiveOpens"), Some(77));
        assert_eq!(snmp_field(t, "Udp", "InDatagrams"), None);
    }
}

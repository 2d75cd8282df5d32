// SPDX-License-Identifier: Apache-2.0
//! Cluster DNS: Debian's dnsmasq, run as the `kube-dns` pod in
//! `kube-system` behind the `kube-dns` Service (so a lookup goes through
//! the Service NAT like any Service traffic), answering from a hosts file
//! this module rewrites from the API on every change (dnsmasq's
//! `--hostsdir` re-reads it through inotify). `--local=/cluster.local/`
//! makes unknown names under the cluster domain NXDOMAIN; with no upstream
//! server (`--no-resolv`) nothing is ever asked outside the sandbox.
//!
//! Records, as the Kubernetes DNS specification names them: a ClusterIP
//! Service `SVC.NS.svc.cluster.local` → its ClusterIP (A: ClusterIPs are
//! IPv4); a headless one → its ready endpoints (A), and their pods' IPv6
//! addresses (AAAA) where pods have them; a pod
//! `A-B-C-D.NS.pod.cluster.local` → its IPv4 address and, with IPv6, the
//! AAAA record of `fd00-1-2--5.NS.pod.cluster.local` (the address with `:`
//! as `-`, as CoreDNS names it). Where pods are IPv4 only, AAAA questions
//! get no answer (NOERROR, no data), as from a cluster without IPv6.
//!
//! Pods get the `resolv.conf` a kubelet writes for `dnsPolicy:
//! ClusterFirst`, as `/etc/netns/NETNS/resolv.conf`, which `ip netns exec`
//! (how every pod process, and `Sandbox::exec`, is started) mounts over
//! `/etc/resolv.conf`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::sandbox::State;
use crate::store::{Key, Resource, Store};

use super::SERVICE_NAME_LABEL;

pub(crate) const DOMAIN: &str = "cluster.local";
/// The DNS pod's label, the `kube-dns` Service's selector.
const APP_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The image the DNS pod names (the kubelet runs the pod's command, Debian's
/// dnsmasq, as for the other tool images).
pub(crate) const IMAGE: &str = "registry.k8s.io/dns/k8s-dns-dnsmasq-nanny:1.23.1";

/// Where the hosts file lives: one directory per sandbox, by its prefix.
pub(crate) fn hosts_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}cluster-dns"))
}

/// `/etc/netns/NETNS`, whose files `ip netns exec` mounts over `/etc`.
fn netns_etc(netns: &str) -> PathBuf {
    Path::new("/etc/netns").join(netns)
}

/// The `kube-dns` Service, on the service CIDR's tenth address (as
/// kubeadm puts it).
pub(crate) fn service(ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "selector": {APP_LABEL.0: APP_LABEL.1},
            "clusterIP": ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    })
}

/// The DNS pod, on `node`.
pub(crate) fn pod(prefix: &str, node: &str) -> Value {
    let dir = hosts_dir(prefix);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("kube-dns-{}", crate::store::random_suffix()),
                     "namespace": "kube-system", "labels": {APP_LABEL.0: APP_LABEL.1}},
        "spec": {
            "nodeName": node,
            "dnsPolicy": "Default",
            "priorityClassName": "system-cluster-critical",
            "containers": [{
                "name": "dnsmasq",
                "image": IMAGE,
                "command": [
                    "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
                    "--no-resolv", "--no-hosts", "--user=nobody", "--group=nogroup",
                    format!("--hostsdir={}", dir.display()),
                    format!("--local=/{DOMAIN}/"),
                    "--log-facility=-", "--log-queries",
                ],
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ],
            }],
        },
    })
}

/// The hosts file's lines for the cluster as stored now.
pub(crate) fn records(store: &Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for svc in store.list(Resource::Service, None) {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let fqdn = format!("{name}.{ns}.svc.{DOMAIN}");
        match svc["spec"]["clusterIP"].as_str() {
            Some("None") => {
                for slice in store.list(Resource::EndpointSlice, Some(ns)) {
                    if slice["metadata"]["labels"][SERVICE_NAME_LABEL] != name {
                        continue;
                    }
                    for e in slice["endpoints"].as_array().into_iter().flatten() {
                        if e["conditions"]["ready"] == Value::Bool(false) {
                            continue;
                        }
                        for a in e["addresses"].as_array().into_iter().flatten() {
                            if let Some(a) = a.as_str() {
                                out.insert(format!("{a} {fqdn}"));
                            }
                        }
                        // The slices are IPv4 (as the Service); the pod's
                        // IPv6 address answers AAAA, as a dual-stack
                        // headless Service's IPv6 slice would.
                        let pod = e["targetRef"]["name"]
                            .as_str()
                            .and_then(|p| store.get(&Key::new(Resource::Pod, ns, p)).cloned());
                        if let Some(ip6) = pod.as_ref().and_then(crate::family::pod_ipv6) {
                            out.insert(format!("{ip6} {fqdn}"));
                        }
                    }
                }
            }
            Some(ip) if !ip.is_empty() => {
                out.insert(format!("{ip} {fqdn}"));
            }
            _ => {}
        }
    }
    for pod in store.list(Resource::Pod, None) {
        if pod["spec"]["hostNetwork"] == Value::Bool(true) {
            continue;
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        for ip in crate::family::pod_ips(&pod) {
            let label = ip.to_string().replace(['.', ':'], "-");
            out.insert(format!("{ip} {label}.{ns}.pod.{DOMAIN}"));
        }
    }
    out
}

/// Replaces the hosts file in one rename, so dnsmasq never reads half of it.
pub(crate) fn write_hosts(prefix: &str, records: &BTreeSet<String>) -> std::io::Result<()> {
    let dir = hosts_dir(prefix);
    std::fs::create_dir_all(&dir)?;
    // Written beside the directory: dnsmasq reads every file inside it.
    let tmp = std::env::temp_dir().join(format!("{prefix}cluster-dns.hosts.tmp"));
    let mut text = String::new();
    for r in records {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join("hosts"))
}

/// Writes the `resolv.conf` a kubelet writes for a pod of namespace `ns`
/// with `dnsPolicy: ClusterFirst` (the default), before its containers
/// start; other policies keep the node's.
pub(crate) fn write_resolv_conf(state: &State, pod: &Value, netns: &str) {
    let policy = pod["spec"]["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    if pod["spec"]["hostNetwork"] == Value::Bool(true) || policy != "ClusterFirst" {
        return;
    }
    let Some(ip) = super::service_cidr(state).map(super::dns_ip) else {
        return;
    };
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let text = format!(
        "search {ns}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\nnameserver {ip}\noptions ndots:5\n"
    );
    let dir = netns_etc(netns);
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("resolv.conf"), text))
    {
        tracing::warn!(netns, error = %e, "pod resolv.conf not written");
    }
}

/// Removes the `/etc/netns` entries of this sandbox's namespaces that are
/// gone (`all`: every one, at teardown).
pub(crate) fn remove_resolv_confs(prefix: &str, all: bool) {
    let Ok(entries) = std::fs::read_dir("/etc/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && (all || !podtrace_netns::netns_exists(&name)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

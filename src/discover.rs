// SPDX-License-Identifier: Apache-2.0
//! Finds each pod's host-side interface and network namespace from its IP.
//!
//! The runner sits in the node's network namespace. A pod IP must route
//! to a local link there: a veth (routed CNIs such as Calico) or a bridge
//! (flannel, the bridge CNI), in which case the port is the one whose veth
//! peer lives in the pod's namespace. The pod's namespace is the one that
//! owns the IP; it is found among `/run/netns/*` and `/proc/*/ns/net`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use crate::netlink::{Link, Netlink};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "pod IP {ip} is not on this node: {why} (pass the IPs of pods scheduled on this node)"
    )]
    NotLocal { ip: IpAddr, why: String },
    #[error("failed to {context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// How the pod hangs off the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfaceKind {
    Veth,
    BridgePort,
}

impl IfaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IfaceKind::Veth => "veth",
            IfaceKind::BridgePort => "bridge-port",
        }
    }
}

/// A traced pod as found on this node.
#[derive(Debug, Clone)]
pub struct PodIface {
    pub pod_ip: IpAddr,
    /// Host-side interface (in the node's namespace).
    pub ifname: String,
    pub ifindex: u32,
    pub kind: IfaceKind,
    /// Inode of the pod's network namespace.
    pub netns: u64,
}

/// Everything the runner needs to know about where its pods are.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Inode of the node's (our own) network namespace.
    pub own_netns: u64,
    pub pods: Vec<PodIface>,
    /// Every link in the node's namespace, by index (for naming interfaces).
    pub links: HashMap<u32, String>,
}

/// Finds the interface and namespace of every pod IP, or says why not.
pub fn discover(pod_ips: &[IpAddr]) -> Result<Discovery, Error> {
    let own_netns = fs::metadata("/proc/self/ns/net")
        .map_err(io_err("stat /proc/self/ns/net"))?
        .ino();
    let mut nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
    let links = nl.links().map_err(io_err("list network links"))?;
    let by_index: HashMap<u32, &Link> = links.iter().map(|l| (l.index, l)).collect();

    // First the routes: cheap, and the usual mistake (a pod on another node)
    // is reported before any namespace is entered.
    let mut routed = Vec::with_capacity(pod_ips.len());
    for &ip in pod_ips {
        let not_local = |why: String| Error::NotLocal { ip, why };
        let route = nl
            .route_get(ip)
            .map_err(|e| not_local(format!("no route ({e})")))?;
        if route.local {
            return Err(not_local(
                "it is an address of the node itself (a hostNetwork pod?)".into(),
            ));
        }
        let oif = route.oif.and_then(|i| by_index.get(&i).copied());
        let Some(oif) = oif else {
            return Err(not_local("its route has no output interface".into()));
        };
        if let Some(gw) = route.gateway {
            return Err(not_local(format!("it is routed via {gw} on {}", oif.name)));
        }
        if oif.kind != "veth" && oif.kind != "bridge" {
            return Err(not_local(format!(
                "it routes to {} ({}), not to a pod veth or bridge",
                oif.name,
                if oif.kind.is_empty() {
                    "device"
                } else {
                    &oif.kind
                }
            )));
        }
        routed.push((ip, oif));
    }

    let mut namespaces = find_namespaces(pod_ips, own_netns, false)?;
    let mut pods = Vec::with_capacity(pod_ips.len());
    for (ip, oif) in routed {
        let mut found = match_namespace(&mut nl, &links, ip, oif, namespaces.remove(&ip));
        if found.is_err() {
            // Rare: retry with every namespace that owns the address.
            let mut every = find_namespaces(&[ip], own_netns, true)?;
            if let Ok(pod) = match_namespace(&mut nl, &links, ip, oif, every.remove(&ip)) {
                found = Ok(pod);
            }
        }
        pods.push(found?);
    }
    Ok(Discovery {
        own_netns,
        pods,
        links: links.into_iter().map(|l| (l.index, l.name)).collect(),
    })
}

/// Picks, among the namespaces that own `ip`, the one behind `oif` (the
/// veth itself, or a port of the bridge), and returns the pod.
fn match_namespace(
    nl: &mut Netlink,
    links: &[Link],
    ip: IpAddr,
    oif: &Link,
    owners: Option<Vec<(u64, File)>>,
) -> Result<PodIface, Error> {
    let not_local = |why: String| Error::NotLocal { ip, why };
    let owners = owners.unwrap_or_default();
    if owners.is_empty() {
        return Err(not_local(format!(
            "it routes to {} but no network namespace on this node owns it \
             (searched /run/netns and /proc/*/ns/net)",
            oif.name
        )));
    }
    let mut last_err = None;
    for (netns, file) in owners {
        let nsid = nl
            .nsid_of(std::os::fd::AsFd::as_fd(&file))
            .map_err(io_err(format!("get the namespace id of pod {ip}")))?;
        let hit = if oif.kind == "veth" {
            // A namespace with no id here is not the peer's (the kernel
            // gives the peer's namespace an id when the veth crosses).
            (oif.peer_netnsid.is_none() || oif.peer_netnsid == nsid)
                .then_some((oif, IfaceKind::Veth))
        } else {
            links
                .iter()
                .find(|l| {
                    l.master == Some(oif.index)
                        && l.kind == "veth"
                        && nsid.is_some()
                        && l.peer_netnsid == nsid
                })
                .map(|port| (port, IfaceKind::BridgePort))
        };
        match hit {
            Some((link, kind)) => {
                return Ok(PodIface {
                    pod_ip: ip,
                    ifname: link.name.clone(),
                    ifindex: link.index,
                    kind,
                    netns,
                })
            }
            None => {
                last_err = Some(if oif.kind == "veth" {
                    format!(
                        "it routes to {}, whose peer is not in the namespace that owns it",
                        oif.name
                    )
                } else {
                    format!(
                        "it routes to bridge {}, but no port of it leads to the pod's namespace \
                         (namespace id {nsid:?}, ports {:?})",
                        oif.name,
                        links
                            .iter()
                            .filter(|l| l.master == Some(oif.index))
                            .map(|l| (&l.name, l.peer_netnsid))
                            .collect::<Vec<_>>()
                    )
                });
            }
        }
    }
    Err(not_local(last_err.unwrap_or_default()))
}

/// Candidate namespace files: named ones first (cheap, and where CNIs and
/// our sandbox put them), then every process's.
fn candidates() -> impl Iterator<Item = PathBuf> {
    let named = fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let procs = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .map(|e| e.path().join("ns/net"));
    named.chain(procs)
}

/// Enters each candidate namespace in turn and checks which pod IPs are its
/// own (an address can be bound only where it is configured). Returns the
/// namespace inode and an open handle per IP found.
///
/// With `all`, keeps looking after a first match and returns every owner
/// (a namespace being torn down can briefly still hold a reused address).
fn find_namespaces(
    ips: &[IpAddr],
    own: u64,
    all: bool,
) -> Result<HashMap<IpAddr, Vec<(u64, File)>>, Error> {
    let home = File::open("/proc/self/ns/net").map_err(io_err("open /proc/self/ns/net"))?;
    let mut found: HashMap<IpAddr, Vec<(u64, File)>> = HashMap::new();
    let mut seen = HashSet::from([own]);
    for path in candidates() {
        if !all && found.len() == ips.len() {
            break;
        }
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if !seen.insert(meta.ino()) {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut owned = Vec::new();
        {
            // A name under /run/netns is briefly a plain file while `ip netns
            // add` sets it up (EINVAL): skip it. No permission is fatal.
            let _back = match Entered::enter(&file, &home) {
                Ok(b) => b,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(io_err("enter a network namespace (needs CAP_SYS_ADMIN)")(e))
                }
                Err(_) => continue,
            };
            for ip in ips {
                if (all || !found.contains_key(ip)) && UdpSocket::bind((*ip, 0)).is_ok() {
                    owned.push(*ip);
                }
            }
        }
        for ip in owned {
            let handle = file.try_clone().map_err(io_err("dup a namespace handle"))?;
            found.entry(ip).or_default().push((meta.ino(), handle));
        }
    }
    Ok(found)
}

/// The calling thread inside another network namespace until dropped.
struct Entered<'a> {
    home: &'a File,
}

impl<'a> Entered<'a> {
    fn enter(target: &File, home: &'a File) -> io::Result<Entered<'a>> {
        // SAFETY: setns(2) on a valid namespace fd; only this thread moves.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Entered { home })
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // SAFETY: setns(2) back to the namespace we started in.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Staying in a pod's namespace would attach to the wrong
            // interfaces: there is no safe way on.
            eprintln!(
                "podtrace: cannot return to the node's network namespace: {}",
                io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}

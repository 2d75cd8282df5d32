// SPDX-License-Identifier: Apache-2.0
//! Finds each pod's host-side interface and network namespace from its IP.
//!
//! The runner sits in the node's network namespace. A pod IP must route
//! to a local link there: a veth (routed CNIs such as Calico) or a bridge
//! (flannel, the bridge CNI), in which case the port is the one whose veth
//! peer lives in the pod's namespace. The pod's namespace is the one that
//! owns the IP. Nothing is entered (no `setns`, so no CAP_SYS_ADMIN): the
//! kernel names each veth's peer namespace by an id (`IFLA_LINK_NETNSID`),
//! lists that namespace's addresses from here (`IFA_TARGET_NETNSID`, needs
//! CAP_NET_ADMIN), and tells the id of each `/run/netns/*` and
//! `/proc/*/ns/net` handle (`RTM_GETNSID`) — opening other processes'
//! handles needs CAP_SYS_PTRACE — which gives the namespace's inode.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
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

    let mut strict = Netlink::open_strict().map_err(io_err("open a netlink socket"))?;
    let mut addresses: HashMap<i32, Vec<IpAddr>> = HashMap::new();
    let mut owners = Vec::with_capacity(routed.len());
    for (ip, oif) in &routed {
        let mut hit = None;
        for (link, kind) in behind(&links, oif) {
            let Some(nsid) = link.peer_netnsid else {
                continue;
            };
            let owned = match addresses.entry(nsid) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(strict.addresses_in(nsid).map_err(|err| {
                        if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                            io_err("list a pod namespace's addresses (needs CAP_NET_ADMIN)")(err)
                        } else {
                            io_err(format!("list the addresses behind {}", link.name))(err)
                        }
                    })?)
                }
            };
            if owned.contains(ip) {
                hit = Some((link, kind, nsid));
                break;
            }
        }
        let Some(hit) = hit else {
            return Err(Error::NotLocal {
                ip: *ip,
                why: if oif.kind == "veth" {
                    format!(
                        "it routes to {}, whose peer namespace does not own it",
                        oif.name
                    )
                } else {
                    format!(
                        "it routes to bridge {}, but no port of it leads to a namespace that owns it (ports {:?})",
                        oif.name,
                        behind(&links, oif).iter().map(|(l, _)| (&l.name, l.peer_netnsid)).collect::<Vec<_>>()
                    )
                },
            });
        };
        owners.push((*ip, hit));
    }
    let wanted: HashSet<i32> = owners.iter().map(|(_, (_, _, id))| *id).collect();
    let inodes = namespace_inodes(&mut nl, &wanted, own_netns)?;
    let mut pods = Vec::with_capacity(owners.len());
    for (ip, (link, kind, nsid)) in owners {
        let Some(&netns) = inodes.get(&nsid) else {
            return Err(Error::NotLocal {
                ip,
                why: format!(
                    "it is in the namespace behind {} (id {nsid}), but no process on this node \
                     runs in it (searched /run/netns and /proc/*/ns/net)",
                    link.name
                ),
            });
        };
        pods.push(PodIface {
            pod_ip: ip,
            ifname: link.name.clone(),
            ifindex: link.index,
            kind,
            netns,
        });
    }
    Ok(Discovery {
        own_netns,
        pods,
        links: links.into_iter().map(|l| (l.index, l.name)).collect(),
    })
}

/// The veths whose peer namespace can hold a pod that routes to `oif`: the
/// veth itself, or the veth ports of a bridge.
fn behind<'a>(links: &'a [Link], oif: &'a Link) -> Vec<(&'a Link, IfaceKind)> {
    if oif.kind == "veth" {
        vec![(oif, IfaceKind::Veth)]
    } else {
        links
            .iter()
            .filter(|l| l.master == Some(oif.index) && l.kind == "veth")
            .map(|l| (l, IfaceKind::BridgePort))
            .collect()
    }
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

/// The inode of each namespace in `wanted` (ids as this namespace gives
/// them), from the handles in `/run/netns` and `/proc/*/ns/net`.
fn namespace_inodes(
    nl: &mut Netlink,
    wanted: &HashSet<i32>,
    own: u64,
) -> Result<HashMap<i32, u64>, Error> {
    let mut found = HashMap::new();
    let mut seen = HashSet::from([own]);
    let mut refused = None;
    for path in candidates() {
        if found.len() == wanted.len() {
            break;
        }
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                // Without CAP_SYS_PTRACE even the stat of another process's
                // namespace link is refused.
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                    refused.get_or_insert(e);
                }
                continue;
            }
        };
        if !seen.insert(meta.ino()) {
            continue;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                    refused.get_or_insert(e);
                }
                continue;
            }
        };
        // A name under /run/netns is briefly a plain file while `ip netns
        // add` sets it up: no id, skipped.
        if let Ok(Some(id)) = nl.nsid_of(file.as_fd()) {
            if wanted.contains(&id) {
                found.insert(id, meta.ino());
            }
        }
    }
    match refused {
        Some(e) if found.len() < wanted.len() => Err(io_err(
            "open other processes' network namespaces (needs CAP_SYS_PTRACE)",
        )(e)),
        _ => Ok(found),
    }
}

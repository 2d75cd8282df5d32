// SPDX-License-Identifier: Apache-2.0
//! Pods and nodes as network namespaces, for tests and the local sandbox.
//!
//! A [`Cluster`] is a private "fabric" namespace with a bridge that every
//! [`Node`] namespace plugs into; nodes route each other's pod CIDRs. A
//! [`Pod`] is a namespace joined to its node by a veth pair in one of the two
//! common CNI shapes ([`Shape::Routed`]: a /32 per veth with proxy ARP, as
//! Calico; [`Shape::Bridge`]: a bridge on the node, as flannel).
//!
//! Every cluster takes a unique slot (1..=250) so clusters in parallel tests
//! never share a name or an address: names start `pt{slot}-`, addresses are
//! `10.{slot}.{node}.{pod}` (node uplinks `10.{slot}.0.{node}`). Nothing is
//! ever routed outside the cluster's own namespaces. Everything is removed on
//! drop; a slot left by a crashed process is reclaimed (with its namespaces)
//! the next time it is taken.

mod child;

pub use child::ChildLines;

use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where slot claims live: `slot-N` holds the claiming process's pid.
const SLOT_DIR: &str = "/run/podtrace-netns";
/// MAC of every host-side veth in the routed shape, as Calico does it.
const CALICO_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// Slots usable as the second octet of `10.x.0.0/16`.
const MAX_SLOT: u8 = 250;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("failed to {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("all {MAX_SLOT} network slots under {SLOT_DIR} are taken by live processes")]
    NoSlot,
    #[error("no node named {0:?}")]
    NoNode(String),
    #[error("node {0:?} has no free pod address left")]
    NodeFull(String),
    #[error("{0}")]
    Timeout(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Runs a command to completion; a non-zero exit becomes [`Error::Command`].
pub fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("run {shown}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// `ip ARGS…` in the current namespace.
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// Polls `check` every 10 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A named network namespace (`ip netns add`). Dropping it kills every
/// process still inside and deletes it, which also deletes its interfaces
/// (and so the peers of its veth pairs).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        {
            // Concurrent `ip netns add` calls race while making /run/netns a
            // shared mount point (seen as EINVAL on the next `ip -n`), so
            // creation is serialized across threads and processes.
            let _lock = CreateLock::take()?;
            ip(&["netns", "add", name])?;
        }
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace's bind mount, usable with `setns(2)`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Namespace inode, as `stat -L /proc/PID/ns/net` shows for its processes.
    pub fn inode(&self) -> Result<u64> {
        let meta =
            fs::metadata(self.path()).map_err(io_err(format!("stat netns {}", self.name)))?;
        Ok(meta.ino())
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program ARGS…` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        run(self.command(program).args(args))
    }

    /// `ip ARGS…` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Makes sure IPv6 is on, forwarding, and without duplicate address
    /// detection (which would hold new addresses back for a second).
    pub fn enable_ipv6(&self) -> Result<()> {
        for scope in ["all", "default"] {
            self.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
            self.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
            self.sysctl(&format!("net.ipv6.conf.{scope}.forwarding"), "1")?;
        }
        Ok(())
    }

    /// Pids of processes inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        ip(&["netns", "pids", &self.name])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn kill_all(&self) {
        for pid in self.pids() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = wait_until(Duration::from_secs(5), "processes to exit", || {
            self.pids().is_empty()
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// An exclusive `flock` on `SLOT_DIR/create.lock`, released on drop.
struct CreateLock(fs::File);

impl CreateLock {
    fn take() -> Result<CreateLock> {
        fs::create_dir_all(SLOT_DIR).map_err(io_err(format!("create {SLOT_DIR}")))?;
        let path = Path::new(SLOT_DIR).join("create.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
            return Err(io_err("lock netns creation")(io::Error::last_os_error()));
        }
        Ok(CreateLock(file))
    }
}

impl Drop for CreateLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.0), libc::LOCK_UN) };
    }
}

/// How pods attach to their node, as the two common CNI plugins do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One /32 route per pod to its veth; the pod's gateway is the
    /// link-local 169.254.1.1 answered by proxy ARP (Calico).
    Routed,
    /// Pods on a /24 behind a bridge `cni0` on the node (flannel, bridge CNI).
    Bridge,
}

/// A claim on a slot, released on drop.
#[derive(Debug)]
struct Slot(u8);

impl Slot {
    fn take() -> Result<Slot> {
        // Claims are made under the same lock as namespace creation, so two
        // processes never take over the same stale slot at once.
        let _lock = CreateLock::take()?;
        for n in 1..=MAX_SLOT {
            let path = Slot::path(n);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    // The slot is ours now: any namespace still carrying its
                    // prefix was left by an owner that died before cleaning up.
                    reclaim(n);
                    return Ok(Slot(n));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if Slot::owner_alive(&path) {
                        continue;
                    }
                    // A crashed owner: take its slot over (its namespaces are
                    // reclaimed once the claim is ours).
                    let _ = fs::remove_file(&path);
                    if let Ok(mut f) = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                    {
                        let _ = write!(f, "{}", std::process::id());
                        reclaim(n);
                        return Ok(Slot(n));
                    }
                }
                Err(e) => return Err(io_err(format!("claim {}", path.display()))(e)),
            }
        }
        Err(Error::NoSlot)
    }

    fn path(n: u8) -> PathBuf {
        Path::new(SLOT_DIR).join(format!("slot-{n}"))
    }

    fn owner_alive(path: &Path) -> bool {
        let Ok(text) = fs::read_to_string(path) else {
            // Being written right now by its new owner.
            return true;
        };
        match text.trim().parse::<i32>() {
            // SAFETY: kill(pid, 0) only checks for existence.
            Ok(pid) => unsafe { libc::kill(pid, 0) == 0 },
            Err(_) => true,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = fs::remove_file(Slot::path(self.0));
    }
}

/// Deletes every namespace named `pt{slot}-…` (left by a crashed process).
fn reclaim(slot: u8) {
    let prefix = format!("pt{slot}-");
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                drop(Netns { name });
            }
        }
    }
}

/// A node: a namespace with an uplink to the fabric and a pod CIDR.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub index: u8,
    pub shape: Shape,
    /// Address on the fabric (`10.{slot}.0.{index}`).
    pub uplink_ip: Ipv4Addr,
    /// First address of the node's /24 pod CIDR.
    pub pod_cidr: Ipv4Addr,
    /// In a dual-stack cluster: the node's IPv6 address on the fabric
    /// (`fd00:{slot}::{index}`) and its /64 pod CIDR (`fd00:{slot}:{index}::`).
    pub uplink_ip6: Option<Ipv6Addr>,
    pub pod_cidr6: Option<Ipv6Addr>,
    pub netns: Netns,
    next_pod: Mutex<u8>,
}

impl Node {
    /// `10.{slot}.{index}.0/24`
    pub fn pod_cidr_string(&self) -> String {
        format!("{}/24", self.pod_cidr)
    }

    /// Bridge name on the node for [`Shape::Bridge`].
    pub const BRIDGE: &'static str = "cni0";
}

#[derive(Debug)]
struct Inner {
    // Dropped in this order: nodes, then the fabric, then the slot claim.
    nodes: Mutex<Vec<Arc<Node>>>,
    /// Pods and nodes get IPv6 addresses too.
    dual_stack: bool,
    fabric: Netns,
    slot: Slot,
}

/// A set of nodes routed to each other. Cheap to clone; the namespaces go
/// when the last clone (and every [`Pod`], which holds one) is dropped.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Claims a slot and creates the fabric namespace (IPv4 only).
    pub fn new() -> Result<Cluster> {
        Self::create(false)
    }

    /// Like [`Cluster::new`], with IPv6 besides IPv4 on every node and pod
    /// (as a dual-stack cluster): [`Pod::ip6`].
    pub fn dual_stack() -> Result<Cluster> {
        Self::create(true)
    }

    fn create(dual_stack: bool) -> Result<Cluster> {
        let slot = Slot::take()?;
        let fabric = Netns::create(&format!("pt{}-fabric", slot.0))?;
        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        fabric.ip(&["link", "set", "br0", "up"])?;
        Ok(Cluster {
            inner: Arc::new(Inner {
                slot,
                fabric,
                nodes: Mutex::new(Vec::new()),
                dual_stack,
            }),
        })
    }

    /// The slot: second octet of every address in this cluster.
    pub fn slot(&self) -> u8 {
        self.inner.slot.0
    }

    /// Prefix of every namespace and interface name in this cluster.
    pub fn prefix(&self) -> String {
        format!("pt{}-", self.slot())
    }

    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.inner.nodes.lock().unwrap().clone()
    }

    pub fn node(&self, name: &str) -> Result<Arc<Node>> {
        self.nodes()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::NoNode(name.to_owned()))
    }

    /// Adds a node namespace `pt{slot}-{name}` with forwarding on, its uplink
    /// on the fabric, and routes to and from every other node's pod CIDR.
    pub fn add_node(&self, name: &str, shape: Shape) -> Result<Arc<Node>> {
        let mut nodes = self.inner.nodes.lock().unwrap();
        let index = u8::try_from(nodes.len() + 1)
            .ok()
            .filter(|i| *i <= 250)
            .ok_or_else(|| Error::NodeFull(name.to_owned()))?;
        let slot = self.slot();
        let netns = Netns::create(&format!("pt{slot}-{name}"))?;
        netns.sysctl("net.ipv4.ip_forward", "1")?;
        let uplink_ip = Ipv4Addr::new(10, slot, 0, index);
        let pod_cidr = Ipv4Addr::new(10, slot, index, 0);
        let dual = self.inner.dual_stack;
        let (uplink_ip6, pod_cidr6) = if dual {
            netns.enable_ipv6()?;
            let s = u16::from(slot);
            let i = u16::from(index);
            (
                Some(Ipv6Addr::new(0xfd00, s, 0, 0, 0, 0, 0, i)),
                Some(Ipv6Addr::new(0xfd00, s, i, 0, 0, 0, 0, 0)),
            )
        } else {
            (None, None)
        };
        let fab_if = format!("n{index}");
        self.inner.fabric.ip(&[
            "link",
            "add",
            &fab_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ])?;
        self.inner
            .fabric
            .ip(&["link", "set", &fab_if, "master", "br0", "up"])?;
        netns.ip(&["addr", "add", &format!("{uplink_ip}/24"), "dev", "eth0"])?;
        if let Some(ip6) = uplink_ip6 {
            netns.ip(&["addr", "add", &format!("{ip6}/64"), "dev", "eth0", "nodad"])?;
        }
        netns.ip(&["link", "set", "eth0", "up"])?;
        if shape == Shape::Bridge {
            netns.ip(&["link", "add", Node::BRIDGE, "type", "bridge"])?;
            let gw = Ipv4Addr::new(10, slot, index, 1);
            netns.ip(&["addr", "add", &format!("{gw}/24"), "dev", Node::BRIDGE])?;
            if let Some(cidr6) = pod_cidr6 {
                let gw6 = with_host(cidr6, 1);
                netns.ip(&[
                    "addr",
                    "add",
                    &format!("{gw6}/64"),
                    "dev",
                    Node::BRIDGE,
                    "nodad",
                ])?;
            }
            netns.ip(&["link", "set", Node::BRIDGE, "up"])?;
        }
        let node = Arc::new(Node {
            name: name.to_owned(),
            index,
            shape,
            uplink_ip,
            pod_cidr,
            uplink_ip6,
            pod_cidr6,
            netns,
            // Bridge shape keeps .1 for the gateway.
            next_pod: Mutex::new(2),
        });
        for other in nodes.iter() {
            other.netns.ip(&[
                "route",
                "add",
                &node.pod_cidr_string(),
                "via",
                &uplink_ip.to_string(),
            ])?;
            node.netns.ip(&[
                "route",
                "add",
                &other.pod_cidr_string(),
                "via",
                &other.uplink_ip.to_string(),
            ])?;
            if let (Some(a), Some(b)) = (node.pod_cidr6, other.pod_cidr6) {
                let (a_up, b_up) = (node.uplink_ip6.unwrap(), other.uplink_ip6.unwrap());
                other.netns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &format!("{a}/64"),
                    "via",
                    &a_up.to_string(),
                ])?;
                node.netns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &format!("{b}/64"),
                    "via",
                    &b_up.to_string(),
                ])?;
            }
        }
        nodes.push(node.clone());
        Ok(node)
    }

    /// Adds a pod namespace `pt{slot}-{name}` on `node`, with the next free
    /// address of the node's pod CIDR.
    pub fn add_pod(&self, node: &str, name: &str) -> Result<Pod> {
        let node = self.node(node)?;
        let host = {
            let mut next = node.next_pod.lock().unwrap();
            let host = *next;
            if host == 255 {
                return Err(Error::NodeFull(node.name.clone()));
            }
            *next += 1;
            host
        };
        let slot = self.slot();
        let ip = Ipv4Addr::new(10, slot, node.index, host);
        let ip6 = node.pod_cidr6.map(|c| with_host(c, host));
        let netns = Netns::create(&format!("pt{slot}-{name}"))?;
        if ip6.is_some() {
            netns.enable_ipv6()?;
        }
        // Interface names are at most 15 bytes: pt{slot}v{node}x{host}.
        let host_if = format!("pt{slot}v{}x{host}", node.index);
        // Calico gives every host-side veth this MAC; the pod's gateway
        // 169.254.1.1 resolves to it (a node without a default route cannot
        // proxy-ARP for a link-local address).
        let mut link = vec!["link", "add", &host_if];
        if node.shape == Shape::Routed {
            link.extend(["address", CALICO_MAC]);
        }
        link.extend([
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ]);
        node.netns.ip(&link)?;
        match node.shape {
            Shape::Routed => {
                node.netns
                    .sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"), "1")?;
                node.netns.ip(&["link", "set", &host_if, "up"])?;
                node.netns
                    .ip(&["route", "add", &format!("{ip}/32"), "dev", &host_if])?;
                netns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
                netns.ip(&["link", "set", "eth0", "up"])?;
                netns.ip(&[
                    "route",
                    "add",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                    "scope",
                    "link",
                ])?;
                netns.ip(&[
                    "neigh",
                    "add",
                    "169.254.1.1",
                    "lladdr",
                    CALICO_MAC,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ])?;
                netns.ip(&[
                    "route",
                    "add",
                    "default",
                    "via",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                ])?;
                if let Some(ip6) = ip6 {
                    // As Calico: the pod's IPv6 gateway is the link-local
                    // address of the host-side veth (from its fixed MAC).
                    node.netns.ip(&[
                        "-6",
                        "route",
                        "add",
                        &format!("{ip6}/128"),
                        "dev",
                        &host_if,
                    ])?;
                    netns.ip(&["addr", "add", &format!("{ip6}/128"), "dev", "eth0", "nodad"])?;
                    netns.ip(&[
                        "-6",
                        "neigh",
                        "add",
                        CALICO_LL,
                        "lladdr",
                        CALICO_MAC,
                        "dev",
                        "eth0",
                        "nud",
                        "permanent",
                    ])?;
                    netns.ip(&[
                        "-6", "route", "add", "default", "via", CALICO_LL, "dev", "eth0",
                    ])?;
                }
            }
            Shape::Bridge => {
                node.netns
                    .ip(&["link", "set", &host_if, "master", Node::BRIDGE, "up"])?;
                netns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
                netns.ip(&["link", "set", "eth0", "up"])?;
                let gw = Ipv4Addr::new(10, slot, node.index, 1);
                netns.ip(&["route", "add", "default", "via", &gw.to_string()])?;
                if let (Some(ip6), Some(cidr6)) = (ip6, node.pod_cidr6) {
                    netns.ip(&["addr", "add", &format!("{ip6}/64"), "dev", "eth0", "nodad"])?;
                    let gw6 = with_host(cidr6, 1).to_string();
                    netns.ip(&["-6", "route", "add", "default", "via", &gw6])?;
                }
            }
        }
        Ok(Pod {
            name: name.to_owned(),
            ip,
            ip6,
            host_if,
            node,
            netns,
            _cluster: self.clone(),
        })
    }
}

/// A pod: a namespace with `eth0` holding [`Pod::ip`], joined to its node by
/// the veth whose node side is [`Pod::host_if`].
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address in a dual-stack cluster.
    pub ip6: Option<Ipv6Addr>,
    /// The host-side interface (in the node's namespace).
    pub host_if: String,
    pub node: Arc<Node>,
    pub netns: Netns,
    // Keeps the node and fabric alive while the pod lives; declared last so
    // the pod's namespace goes first.
    _cluster: Cluster,
}

impl Pod {
    /// The pod's address in `family`; panics for IPv6 outside a
    /// dual-stack cluster (a test's own mistake).
    pub fn addr(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => self.ip.into(),
            Family::V6 => self
                .ip6
                .expect("an IPv6 pod address needs Cluster::dual_stack")
                .into(),
        }
    }

    /// Starts Debian's nginx in the pod, serving `root` (default: Debian's
    /// default page in /var/www/html) on `port`, one worker, no access log.
    /// Returns once the port is listening.
    pub fn start_nginx(&self, port: u16, root: Option<&Path>) -> Result<Daemon> {
        let dir = std::env::temp_dir().join(format!("{}{}-nginx", self.node_prefix(), self.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let root = root.unwrap_or(Path::new("/var/www/html"));
        let d = dir.display();
        // IPv6 too where the pod has it (the socket fails where IPv6 is off).
        let listen6 = if self.ip6.is_some() {
            format!("    listen [::]:{port} default_server reuseport;\n")
        } else {
            String::new()
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 1000000;\n\
               server {{\n    listen {port} default_server reuseport;\n{listen6}    root {};\n\
                 index index.html index.htm index.nginx-debian.html;\n  }}\n}}\n",
            root.display()
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).map_err(io_err("write nginx.conf"))?;
        let child = self
            .netns
            .command("nginx")
            .args(["-e", &format!("{d}/error.log"), "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("start nginx (is nginx-light installed?)"))?;
        let mut daemon = Daemon {
            child,
            dir: Some(dir),
        };
        let listening = wait_until(Duration::from_secs(10), "nginx to listen", || {
            daemon.exited() || self.is_listening(port)
        });
        if daemon.exited() || listening.is_err() {
            let log = fs::read_to_string(daemon.dir.as_ref().unwrap().join("error.log"))
                .unwrap_or_default();
            return Err(Error::Command {
                cmd: "nginx".into(),
                stderr: format!("nginx did not start listening on :{port}: {log}"),
            });
        }
        Ok(daemon)
    }

    /// Whether a TCP listener is bound to `port` inside the pod.
    pub fn is_listening(&self, port: u16) -> bool {
        self.netns
            .exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    }

    /// Runs `curl` in the pod against `url` (bounded by `--max-time`).
    pub fn curl(&self, url: &str, max_time_s: u32) -> std::io::Result<Output> {
        self.netns
            .command("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
            ])
            .args(["--max-time", &max_time_s.to_string(), url])
            .stdin(Stdio::null())
            .output()
    }

    /// Starts a long-running command in the pod.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<Daemon> {
        let child = self
            .netns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(io_err(format!("start {program} in pod {}", self.name)))?;
        Ok(Daemon { child, dir: None })
    }

    fn node_prefix(&self) -> String {
        self.netns
            .name()
            .strip_suffix(&self.name)
            .unwrap_or_default()
            .to_owned()
    }
}

/// An address family, for tests that run over both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// `prefix` with `host` as its last 16 bits.
fn with_host(prefix: Ipv6Addr, host: u8) -> Ipv6Addr {
    let mut seg = prefix.segments();
    seg[7] = u16::from(host);
    Ipv6Addr::from(seg)
}

/// The link-local address a veth with [`CALICO_MAC`] gets (EUI-64).
const CALICO_LL: &str = "fe80::ecee:eeff:feee:eeee";

/// A process started in a namespace; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Daemon {
    pub child: Child,
    dir: Option<PathBuf>,
}

impl Daemon {
    /// Whether the process has already exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Whether a namespace with this name exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Whether this process runs as root (the tests that build namespaces or
/// load BPF programs need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_reach_each_other_across_nodes_in_both_shapes_and_vanish_on_drop() {
        assert!(
            is_root(),
            "these tests build network namespaces: run as root"
        );
        let cluster = Cluster::new().unwrap();
        let prefix = cluster.prefix();
        cluster.add_node("node-a", Shape::Routed).unwrap();
        cluster.add_node("node-b", Shape::Bridge).unwrap();
        let server = cluster.add_pod("node-b", "server").unwrap();
        let client = cluster.add_pod("node-a", "client").unwrap();
        let nginx = server.start_nginx(80, None).unwrap();
        let out = client.curl(&format!("http://{}/", server.ip), 5).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("200 "), "curl said {text:?} {out:?}");
        // And the other way round, pod to pod on the bridge side.
        let other = cluster.add_pod("node-b", "other").unwrap();
        let _n2 = client.start_nginx(8080, None).unwrap();
        let out = other
            .curl(&format!("http://{}:8080/", client.ip), 5)
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("200 "));
        drop((nginx, _n2, server, client, other));
        drop(cluster);
        let left: Vec<_> = fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// A dual-stack cluster: pods reach each other over IPv6 as over IPv4,
    /// routed and bridged, on one node and across nodes.
    #[test]
    fn dual_stack_pods_reach_each_other_over_ipv6_in_both_shapes() {
        assert!(
            is_root(),
            "these tests build network namespaces: run as root"
        );
        let cluster = Cluster::dual_stack().unwrap();
        cluster.add_node("node-a", Shape::Routed).unwrap();
        cluster.add_node("node-b", Shape::Bridge).unwrap();
        let routed = cluster.add_pod("node-a", "routed").unwrap();
        let routed2 = cluster.add_pod("node-a", "routed2").unwrap();
        let bridged = cluster.add_pod("node-b", "bridged").unwrap();
        let bridged2 = cluster.add_pod("node-b", "bridged2").unwrap();
        let _servers: Vec<Daemon> = [&routed, &bridged]
            .iter()
            .map(|p| p.start_nginx(80, None).unwrap())
            .collect();
        for (from, to) in [
            (&routed2, &routed),
            (&bridged2, &bridged),
            (&routed, &bridged),
            (&bridged, &routed),
        ] {
            for family in [Family::V4, Family::V6] {
                let url = match to.addr(family) {
                    IpAddr::V6(a) => format!("http://[{a}]/"),
                    a => format!("http://{a}/"),
                };
                let out = from.curl(&url, 5).unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.starts_with("200 "),
                    "{} -> {url}: curl said {text:?} {out:?}",
                    from.name
                );
            }
        }
    }
}

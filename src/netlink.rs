// SPDX-License-Identifier: Apache-2.0
//! Just enough rtnetlink to find a pod's host-side interface: route lookup
//! (`ip route get`), the link table with each link's kind, master and veth
//! peer namespace, namespace ids, and the addresses of another namespace
//! read from this one. Synchronous, allocation-light, no dependency beyond
//! libc.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTN_LOCAL: u8 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_TARGET_NETNSID: u16 = 10;
/// `SOL_NETLINK` option: requests are checked strictly, which is what
/// makes the kernel honour `IFA_TARGET_NETNSID` in address dumps.
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;

/// One network interface, as `ip -d link` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `bridge`, ... (empty for plain devices such as `lo`).
    pub kind: String,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    /// For a veth: the peer's ifindex (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// For a veth whose peer is in another namespace: that namespace's id
    /// as seen from here.
    pub peer_netnsid: Option<i32>,
}

/// The answer to a route lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// The address is one of this namespace's own.
    pub local: bool,
}

/// A NETLINK_ROUTE socket in the namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 0 })
    }

    /// A socket whose requests the kernel checks strictly (Linux 4.20+).
    pub fn open_strict() -> io::Result<Netlink> {
        let nl = Netlink::open()?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on our fd with a valid int for the option.
        let r = unsafe {
            libc::setsockopt(
                nl.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                NETLINK_GET_STRICT_CHK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(nl)
    }

    /// Sends one request and collects the payloads of its replies.
    fn request(&mut self, ty: u16, flags: u16, payload: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + payload.len());
        msg.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        // SAFETY: an all-zero sockaddr_nl is valid; nl_family set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and addr are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut data = &buf[..n as usize];
            while data.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
                let mty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
                let seq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
                if len < NLMSG_HDRLEN || len > data.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink message",
                    ));
                }
                let body = &data[NLMSG_HDRLEN..len];
                data = &data[align4(len).min(data.len())..];
                if seq != self.seq {
                    continue;
                }
                match mty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(body[0..4].try_into().unwrap());
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(out);
                    }
                    _ => {
                        out.push((mty, body.to_vec()));
                        if !dump {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }

    /// `ip route get ADDR`.
    pub fn route_get(&mut self, addr: IpAddr) -> io::Result<Route> {
        let (family, bytes): (u8, Vec<u8>) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        let mut p = vec![family, (bytes.len() * 8) as u8, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&0u32.to_ne_bytes());
        push_attr(&mut p, RTA_DST, &bytes);
        let replies = self.request(RTM_GETROUTE, 0, &p)?;
        let (_, body) = replies
            .into_iter()
            .find(|(t, _)| *t == RTM_NEWROUTE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no route"))?;
        if body.len() < 12 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short rtmsg"));
        }
        let mut route = Route {
            oif: None,
            gateway: None,
            local: body[7] == RTN_LOCAL,
        };
        for (ty, val) in attrs(&body[12..]) {
            match ty {
                RTA_OIF if val.len() >= 4 => {
                    route.oif = Some(u32::from_ne_bytes(val[..4].try_into().unwrap()))
                }
                RTA_GATEWAY if val.len() == 4 => {
                    route.gateway = Some(IpAddr::from(<[u8; 4]>::try_from(val).unwrap()))
                }
                RTA_GATEWAY if val.len() == 16 => {
                    route.gateway = Some(IpAddr::from(<[u8; 16]>::try_from(val).unwrap()))
                }
                _ => {}
            }
        }
        Ok(route)
    }

    /// `ip -d link show`.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        // struct ifinfomsg: family, pad, type, index, flags, change
        let p = [0u8; 16];
        let replies = self.request(RTM_GETLINK, NLM_F_DUMP, &p)?;
        let mut links = Vec::with_capacity(replies.len());
        for (ty, body) in replies {
            if ty != RTM_NEWLINK || body.len() < 16 {
                continue;
            }
            let mut link = Link {
                index: i32::from_ne_bytes(body[4..8].try_into().unwrap()) as u32,
                ..Link::default()
            };
            for (aty, val) in attrs(&body[16..]) {
                match aty {
                    IFLA_IFNAME => link.name = cstr(val),
                    IFLA_LINK if val.len() >= 4 => {
                        link.peer_index = Some(u32::from_ne_bytes(val[..4].try_into().unwrap()))
                    }
                    IFLA_MASTER if val.len() >= 4 => {
                        link.master = Some(u32::from_ne_bytes(val[..4].try_into().unwrap()))
                    }
                    IFLA_LINK_NETNSID if val.len() >= 4 => {
                        link.peer_netnsid = Some(i32::from_ne_bytes(val[..4].try_into().unwrap()))
                    }
                    IFLA_LINKINFO => {
                        for (ity, ival) in attrs(val) {
                            if ity == IFLA_INFO_KIND {
                                link.kind = cstr(ival);
                            }
                        }
                    }
                    _ => {}
                }
            }
            links.push(link);
        }
        Ok(links)
    }

    /// The id this namespace gives the namespace behind `ns` (an open
    /// `/proc/PID/ns/net` or `/run/netns/NAME`), if it has assigned one.
    pub fn nsid_of(&mut self, ns: BorrowedFd<'_>) -> io::Result<Option<i32>> {
        // struct rtgenmsg, padded to 4, then NETNSA_FD.
        let mut p = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        push_attr(&mut p, NETNSA_FD, &(ns.as_raw_fd() as u32).to_ne_bytes());
        let replies = self.request(RTM_GETNSID, 0, &p)?;
        for (ty, body) in replies {
            if ty != RTM_NEWNSID || body.len() < 4 {
                continue;
            }
            for (aty, val) in attrs(&body[4..]) {
                if aty == NETNSA_NSID && val.len() >= 4 {
                    let id = i32::from_ne_bytes(val[..4].try_into().unwrap());
                    return Ok((id >= 0).then_some(id));
                }
            }
        }
        Ok(None)
    }
}

impl Netlink {
    /// `ip -n NS addr`: the addresses of the namespace this one calls
    /// `nsid`, read without entering it (`IFA_TARGET_NETNSID`, Linux 4.20;
    /// needs CAP_NET_ADMIN and a socket from [`Netlink::open_strict`]).
    pub fn addresses_in(&mut self, nsid: i32) -> io::Result<Vec<IpAddr>> {
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        let mut p = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        p.extend_from_slice(&0u32.to_ne_bytes());
        push_attr(&mut p, IFA_TARGET_NETNSID, &nsid.to_ne_bytes());
        let replies = self.request(RTM_GETADDR, NLM_F_DUMP, &p)?;
        let mut out = Vec::new();
        for (ty, body) in replies {
            if ty != RTM_NEWADDR || body.len() < 8 {
                continue;
            }
            for (aty, val) in attrs(&body[8..]) {
                let ip = match (aty, val.len()) {
                    (IFA_LOCAL | IFA_ADDRESS, 4) => IpAddr::from(<[u8; 4]>::try_from(val).unwrap()),
                    (IFA_LOCAL | IFA_ADDRESS, 16) => {
                        IpAddr::from(<[u8; 16]>::try_from(val).unwrap())
                    }
                    _ => continue,
                };
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        Ok(out)
    }
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, val: &[u8]) {
    buf.extend_from_slice(&((4 + val.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(val);
    buf.resize(align4(buf.len()), 0);
}

/// Iterates `(type, value)` over a run of rtattrs (nested flag masked off).
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let val = &data[4..len];
        data = &data[align4(len).min(data.len())..];
        Some((ty, val))
    })
}

fn cstr(val: &[u8]) -> String {
    let end = val.iter().position(|b| *b == 0).unwrap_or(val.len());
    String::from_utf8_lossy(&val[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut buf = Vec::new();
        push_attr(&mut buf, 3, b"eth0\0");
        push_attr(&mut buf, 5, &7u32.to_ne_bytes());
        let got: Vec<_> = attrs(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(cstr(got[0].1), "eth0");
        assert_eq!(got[1], (5, &7u32.to_ne_bytes()[..]));
    }

    #[test]
    fn loopback_is_listed() {
        let links = Netlink::open().unwrap().links().unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    }
}

// SPDX-License-Identifier: Apache-2.0
//! A DNS message out of a captured frame: the frame's headers are walked
//! to the transport payload, the message itself is read by `simple-dns`.

use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag, QTYPE, RCODE, TYPE};

use crate::event::{DnsAnswer, Proto, ETH_HLEN};

/// What the tracker needs of one message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub id: u16,
    pub response: bool,
    /// The first question's name (lower case, no trailing dot) and type.
    pub name: String,
    pub qtype: String,
    pub rcode: String,
    pub answers: Vec<DnsAnswer>,
}

/// The DNS message in a frame (Ethernet header on, as the kernel copies
/// it), or `None` when there is none whole: not IP, cut short, a TCP
/// segment without a whole message, or not DNS.
pub(crate) fn message(frame: &[u8], proto: Proto) -> Option<Message> {
    let payload = transport_payload(frame, proto)?;
    let dns = match proto {
        Proto::Udp => payload,
        // DNS over TCP: a two-byte length, then the message; only
        // messages that fit one segment are read (queries and most
        // answers).
        Proto::Tcp => {
            let len = usize::from(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
            payload.get(2..2 + len)?
        }
    };
    let p = Packet::parse(dns).ok()?;
    let q = p.questions.first()?;
    Some(Message {
        id: p.id(),
        response: p.has_flags(PacketFlag::RESPONSE),
        name: name_text(&q.qname.to_string()),
        qtype: qtype_name(q.qtype),
        rcode: rcode_name(p.rcode()),
        answers: p
            .answers
            .iter()
            .filter_map(|rr| {
                let (rtype, data) = match &rr.rdata {
                    RData::A(a) => ("A", std::net::Ipv4Addr::from(a.address).to_string()),
                    RData::AAAA(a) => ("AAAA", std::net::Ipv6Addr::from(a.address).to_string()),
                    RData::CNAME(c) => ("CNAME", name_text(&c.0.to_string())),
                    _ => return None,
                };
                Some(DnsAnswer {
                    rtype: rtype.into(),
                    data,
                    ttl: rr.ttl,
                })
            })
            .collect(),
    })
}

/// The bytes after the UDP or TCP header of an Ethernet frame holding
/// IPv4 or IPv6 (extension headers are not followed, as in the kernel).
fn transport_payload(frame: &[u8], proto: Proto) -> Option<&[u8]> {
    let eth = usize::try_from(ETH_HLEN).ok()?;
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(eth..)?;
    let l4 = match ethertype {
        0x0800 => ip.get(usize::from(ip.first()? & 0x0f) * 4..)?,
        0x86dd => ip.get(40..)?,
        _ => return None,
    };
    match proto {
        Proto::Udp => l4.get(8..),
        Proto::Tcp => l4.get(usize::from(l4.get(12)? >> 4) * 4..),
    }
}

fn name_text(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

fn qtype_name(t: QTYPE) -> String {
    match t {
        QTYPE::TYPE(TYPE::Unknown(n)) => format!("TYPE{n}"),
        QTYPE::TYPE(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

/// The mnemonics of RFC 1035 and RFC 2136, as dig prints them.
fn rcode_name(r: RCODE) -> String {
    match r {
        RCODE::NoError => "NOERROR",
        RCODE::FormatError => "FORMERR",
        RCODE::ServerFailure => "SERVFAIL",
        RCODE::NameError => "NXDOMAIN",
        RCODE::NotImplemented => "NOTIMP",
        RCODE::Refused => "REFUSED",
        RCODE::YXDOMAIN => "YXDOMAIN",
        RCODE::YXRRSET => "YXRRSET",
        RCODE::NXRRSET => "NXRRSET",
        RCODE::NOTAUTH => "NOTAUTH",
        RCODE::NOTZONE => "NOTZONE",
        RCODE::BADVERS => "BADVERS",
        RCODE::Reserved => "RESERVED",
    }
    .into()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use simple_dns::{Name, Question, ResourceRecord, CLASS, QCLASS};

    /// An Ethernet + IPv4 + UDP (or TCP) frame around a DNS message.
    pub(in crate::dns) fn frame(dns: &[u8], proto: Proto, v6: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        if v6 {
            f.extend_from_slice(&[0x60; 1]);
            f.extend_from_slice(&[0; 39]);
        } else {
            f.push(0x45);
            f.extend_from_slice(&[0; 19]);
        }
        match proto {
            Proto::Udp => {
                f.extend_from_slice(&[0; 8]);
                f.extend_from_slice(dns);
            }
            Proto::Tcp => {
                let mut th = [0u8; 20];
                th[12] = 5 << 4;
                f.extend_from_slice(&th);
                f.extend_from_slice(&(dns.len() as u16).to_be_bytes());
                f.extend_from_slice(dns);
            }
        }
        f
    }

    pub(in crate::dns) fn query(id: u16, name: &str, t: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            t.into(),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    /// A response to `query(id, name, t)`, without answers.
    pub(in crate::dns) fn reply(id: u16, name: &str, t: TYPE, rcode: RCODE) -> Packet<'_> {
        let mut r = Packet::new_reply(id);
        *r.rcode_mut() = rcode;
        r.questions.push(Question::new(
            Name::new_unchecked(name),
            t.into(),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        r
    }

    #[test]
    fn queries_and_answers_read_over_udp_and_tcp_and_both_families() {
        let q = query(0x1234, "Nginx.Default.svc.cluster.local", TYPE::A);
        for (proto, v6) in [(Proto::Udp, false), (Proto::Tcp, false), (Proto::Udp, true)] {
            let m = message(&frame(&q, proto, v6), proto).unwrap();
            assert_eq!(m.id, 0x1234);
            assert!(!m.response);
            assert_eq!(m.name, "nginx.default.svc.cluster.local");
            assert_eq!(m.qtype, "A");
        }
        let mut r = reply(7, "web.example", TYPE::AAAA, RCODE::NoError);
        r.answers.push(ResourceRecord::new(
            Name::new_unchecked("web.example"),
            CLASS::IN,
            30,
            RData::CNAME(simple_dns::rdata::CNAME(Name::new_unchecked("w.example"))),
        ));
        r.answers.push(ResourceRecord::new(
            Name::new_unchecked("w.example"),
            CLASS::IN,
            30,
            RData::AAAA("fd00::5".parse::<std::net::Ipv6Addr>().unwrap().into()),
        ));
        let m = message(
            &frame(&r.build_bytes_vec().unwrap(), Proto::Udp, false),
            Proto::Udp,
        )
        .unwrap();
        assert!(m.response);
        assert_eq!((m.qtype.as_str(), m.rcode.as_str()), ("AAAA", "NOERROR"));
        let got: Vec<_> = m
            .answers
            .iter()
            .map(|a| (a.rtype.as_str(), a.data.as_str()))
            .collect();
        assert_eq!(got, [("CNAME", "w.example"), ("AAAA", "fd00::5")]);
    }

    #[test]
    fn what_is_not_a_whole_message_is_nothing() {
        let q = query(1, "a.b", TYPE::A);
        let f = frame(&q, Proto::Udp, false);
        assert_eq!(message(&f[..f.len() - 3], Proto::Udp), None);
        // A TCP segment with only the first part of a message.
        let t = frame(&q, Proto::Tcp, false);
        assert_eq!(message(&t[..t.len() - 1], Proto::Tcp), None);
        assert_eq!(message(&[0u8; 10], Proto::Udp), None);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(message(&arp, Proto::Udp), None);
    }
}

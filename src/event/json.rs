// SPDX-License-Identifier: Apache-2.0
//! The runner's JSON writer for events: byte for byte what serde writes
//! for an [`Event`] (a test holds them together), without serde's map
//! serializer for `flatten` and `Display` for every address.

use std::net::SocketAddr;

use super::{Event, EventKind, Message, Payload};

impl Message {
    /// Appends this line's JSON (no newline) to `out`. Events take the fast
    /// path ([`Event::write_json`]); control lines, a handful per run, go
    /// through serde.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Message::Event(e) => e.write_json(out),
            // Serializing these types cannot fail: no maps with non-string
            // keys, no custom serializers that error.
            m => serde_json::to_writer(out, m).expect("wire types always serialize"),
        }
    }
}

/// `,"key":` as one constant: a key costs one fixed-size copy.
macro_rules! key {
    ($k:literal) => {
        concat!(",\"", $k, "\":").as_bytes()
    };
}

impl Event {
    /// Appends the event's JSON object (no newline) to `out`: byte for byte
    /// what the derived `Serialize` writes (a test holds them together), at
    /// a fraction of the cost: the runner writes one per event, on the
    /// traced pods' own CPUs under load.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // A few per second at most, with nested answers: serde's.
        if let EventKind::Dns(_) = self.kind {
            serde_json::to_writer(out, self).expect("wire types always serialize");
            return;
        }
        // Room for a typical line up front: the pushes below then never
        // reallocate mid-line.
        out.reserve(512);
        let mut j = JsonObject { out };
        j.str(b"{\"time\":", &self.time);
        j.str(key!("node"), &self.node);
        j.raw_str(key!("proto"), self.proto.as_str());
        j.addr(key!("src"), &self.src);
        j.addr(key!("dst"), &self.dst);
        if let Some(pid) = self.pid {
            j.int(key!("pid"), pid);
        }
        if let Some(c) = &self.comm {
            j.str(key!("comm"), c);
        }
        if let Some(n) = &self.src_name {
            j.str(key!("src_name"), n);
        }
        if let Some(n) = &self.dst_name {
            j.str(key!("dst_name"), n);
        }
        if let Some(v) = &self.via {
            j.str(key!("service"), &v.service);
            j.addr(key!("service_addr"), &v.service_addr);
        }
        if let Some(end) = self.end {
            j.raw_str(key!("end"), end.as_str());
        }
        j.raw_str(key!("type"), self.kind.name());
        match &self.kind {
            EventKind::Connect | EventKind::Accept => {}
            EventKind::Established { rtt_us } => j.int(key!("rtt_us"), *rtt_us),
            EventKind::Close {
                duration_ms,
                bytes_sent,
                bytes_received,
            } => {
                j.float(key!("duration_ms"), *duration_ms);
                j.int(key!("bytes_sent"), *bytes_sent);
                j.int(key!("bytes_received"), *bytes_received);
            }
            EventKind::Failed { error } => {
                if let Some(err) = error {
                    j.str(key!("error"), err);
                }
            }
            EventKind::Reset { direction } => j.raw_str(key!("direction"), direction.as_str()),
            EventKind::Retransmit { state } => {
                if let Some(st) = state {
                    j.str(key!("state"), st);
                }
            }
            EventKind::Drop {
                reason,
                iface,
                direction,
                at,
                data,
            } => {
                if let Some(r) = reason {
                    j.str(key!("reason"), r);
                }
                if let Some(i) = iface {
                    j.str(key!("iface"), i);
                }
                if let Some(d) = direction {
                    j.raw_str(key!("direction"), d.as_str());
                }
                if let Some(a) = at {
                    j.raw_str(key!("at"), a.as_str());
                }
                if let Some(d) = data {
                    j.bytes(key!("data"), d);
                }
            }
            EventKind::Packet {
                iface,
                direction,
                flags,
                len,
                first,
                data,
            } => {
                j.str(key!("iface"), iface);
                j.raw_str(key!("direction"), direction.as_str());
                j.str(key!("flags"), flags);
                j.int(key!("len"), *len);
                if *first {
                    j.out
                        .extend_from_slice(concat!(",\"first\":", "true").as_bytes());
                }
                if let Some(d) = data {
                    j.bytes(key!("data"), d);
                }
            }
            EventKind::Icmp {
                error,
                mtu,
                from,
                icmp_type,
                icmp_code,
                iface,
                direction,
            } => {
                j.str(key!("error"), error);
                if let Some(m) = mtu {
                    j.int(key!("mtu"), *m);
                }
                // A few per run: Display is fine here.
                j.str(key!("from"), &from.to_string());
                j.int(key!("icmp_type"), *icmp_type);
                j.int(key!("icmp_code"), *icmp_code);
                j.str(key!("iface"), iface);
                j.raw_str(key!("direction"), direction.as_str());
            }
            // Written by serde above.
            EventKind::Dns(_) => {}
        }
        j.out.push(b'}');
    }
}

/// Writes one flat JSON object, field by field. Each field starts with its
/// separator and key as one constant (see `key!`); the first is `{"time":`.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
}

impl JsonObject<'_> {
    /// A string that may need escaping (names, comm, reasons).
    #[inline(always)]
    fn str(&mut self, k: &[u8], v: &str) {
        self.out.extend_from_slice(k);
        // No early exit: the compiler vectorizes this (our strings are
        // short and nearly always clean).
        let plain = !v.bytes().fold(false, |bad, b| {
            bad | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if plain {
            self.out.push(b'"');
            self.out.extend_from_slice(v.as_bytes());
            self.out.push(b'"');
        } else {
            serde_json::to_writer(&mut *self.out, v).expect("a str always serializes");
        }
    }

    /// One of our own constant strings: nothing to escape.
    #[inline(always)]
    fn raw_str(&mut self, k: &[u8], v: &str) {
        self.out.extend_from_slice(k);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    /// Packet bytes, base64: nothing to escape.
    fn bytes(&mut self, k: &[u8], v: &Payload) {
        self.out.extend_from_slice(k);
        self.out.push(b'"');
        v.encode_into(self.out);
        self.out.push(b'"');
    }

    #[inline(always)]
    fn int(&mut self, k: &[u8], v: impl itoa::Integer) {
        self.out.extend_from_slice(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline(always)]
    fn float(&mut self, k: &[u8], v: f64) {
        self.out.extend_from_slice(k);
        // serde_json's own float formatting, so the two agree exactly.
        serde_json::to_writer(&mut *self.out, &v).expect("a float always serializes");
    }

    /// `"a.b.c.d:port"` or `"[v6]:port"`, as `SocketAddr`'s `Display`.
    /// IPv4 is assembled on the stack and appended in one copy.
    #[inline(always)]
    fn addr(&mut self, k: &[u8], a: &SocketAddr) {
        self.out.extend_from_slice(k);
        match a {
            SocketAddr::V4(v4) => {
                // `"255.255.255.255:65535"` is 23 bytes.
                let mut b = [0u8; 24];
                b[0] = b'"';
                let mut n = 1;
                for (i, &o) in v4.ip().octets().iter().enumerate() {
                    if i > 0 {
                        b[n] = b'.';
                        n += 1;
                    }
                    if o >= 100 {
                        b[n] = b'0' + o / 100;
                        n += 1;
                    }
                    if o >= 10 {
                        b[n] = b'0' + o / 10 % 10;
                        n += 1;
                    }
                    b[n] = b'0' + o % 10;
                    n += 1;
                }
                b[n] = b':';
                n += 1;
                let mut ib = itoa::Buffer::new();
                let port = ib.format(v4.port()).as_bytes();
                b[n..n + port.len()].copy_from_slice(port);
                n += port.len();
                b[n] = b'"';
                self.out.extend_from_slice(&b[..=n]);
            }
            SocketAddr::V6(_) => {
                use std::io::Write as _;
                let _ = write!(self.out, "\"{a}\"");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::tests::sample_event;
    use crate::event::{Direction, DropSite, EventKind, Message, Payload, ResetDirection};

    #[test]
    fn fast_event_json_is_what_serde_writes() {
        let mut events = Vec::new();
        let kinds = [
            EventKind::Connect,
            EventKind::Accept,
            EventKind::Established { rtt_us: 0 },
            EventKind::Close {
                duration_ms: 0.000001,
                bytes_sent: u64::MAX,
                bytes_received: 0,
            },
            EventKind::Close {
                duration_ms: 12345.5,
                bytes_sent: 1,
                bytes_received: 854,
            },
            EventKind::Failed {
                error: Some("ECONNREFUSED".into()),
            },
            EventKind::Failed { error: None },
            EventKind::Reset {
                direction: ResetDirection::Sent,
            },
            EventKind::Reset {
                direction: ResetDirection::Received,
            },
            EventKind::Retransmit { state: None },
            EventKind::Retransmit {
                state: Some("SYN_SENT".into()),
            },
            EventKind::Drop {
                reason: Some("NO_SOCKET".into()),
                iface: Some("eth0".into()),
                direction: Some(Direction::Ingress),
                at: Some(DropSite::Pod),
                data: None,
            },
            EventKind::Drop {
                reason: None,
                iface: None,
                direction: None,
                at: None,
                data: None,
            },
            EventKind::Drop {
                reason: Some("NETFILTER_DROP".into()),
                iface: Some("cni0".into()),
                direction: Some(Direction::Egress),
                at: Some(DropSite::Node),
                data: Some(Payload(vec![0; 20])),
            },
            EventKind::Packet {
                iface: "cali\"1".into(),
                direction: Direction::Ingress,
                flags: String::new(),
                len: 0,
                first: false,
                data: Some(Payload(Vec::new())),
            },
            EventKind::Packet {
                iface: "veth".into(),
                direction: Direction::Egress,
                flags: "SYN|ACK".into(),
                len: 65535,
                first: true,
                data: None,
            },
            EventKind::Packet {
                iface: "veth".into(),
                direction: Direction::Egress,
                flags: "ACK".into(),
                len: 3,
                first: false,
                data: Some(Payload(vec![0, 0xff, 0x10, b'"', b'\\'])),
            },
            crate::event::tests::frag_needed(),
            EventKind::Icmp {
                error: "port unreachable".into(),
                mtu: None,
                from: "fd00::1:3".parse().unwrap(),
                icmp_type: 1,
                icmp_code: 4,
                iface: "veth".into(),
                direction: Direction::Egress,
            },
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let mut e = sample_event(kind);
            // Vary everything optional, escaping and both address families.
            if i % 2 == 0 {
                e.pid = None;
                e.comm = None;
                e.src = "[fd00::1:2]:443".parse().unwrap();
                e.dst = "[::ffff:10.0.0.1]:0".parse().unwrap();
            } else {
                e.comm = Some("we\"ird\\co\u{1}mm\u{e9}".into());
                e.src_name = Some("default/curl-demo".into());
                e.dst_name = Some("ns/n\tginx".into());
                e.via = Some(crate::event::ServiceHop {
                    service: "default/ngi\"nx".into(),
                    service_addr: "10.96.0.20:80".parse().unwrap(),
                });
                e.src = "255.255.255.255:65535".parse().unwrap();
                e.dst = "0.0.0.0:0".parse().unwrap();
            }
            if i % 4 == 3 {
                // Octets of one, two and three digits.
                e.src = "10.88.0.3:51706".parse().unwrap();
                e.dst = "1.22.100.9:80".parse().unwrap();
            }
            events.push(e);
        }
        for e in events {
            let serde = serde_json::to_string(&e).unwrap();
            let mut fast = Vec::new();
            e.write_json(&mut fast);
            assert_eq!(String::from_utf8(fast).unwrap(), serde);
            assert_eq!(Message::Event(e.clone()).to_line(), serde);
        }
    }
}

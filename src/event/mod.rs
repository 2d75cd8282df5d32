// SPDX-License-Identifier: Apache-2.0
//! The wire schema between `podtrace-runner` and `kubectl-podtrace`.
//!
//! The runner writes one JSON object per line on stdout; the plugin reads them
//! from the pod log. This module is the only definition of those lines: both
//! sides serialize and parse through these types. The full field reference is
//! `docs/schema.md`; the version is [`SCHEMA`] and is bumped on any change
//! that an older reader would misread.
//!
//! Every line has a `type`. Control lines are `hello`, `ready`, `lost`,
//! `warning` and `summary` (and the plugin's `session_summary`,
//! `policy`, `service` and `target`); everything else is an [`Event`].

use serde::Serialize;

mod control;
mod dns;
mod json;
mod policy;
mod record;
mod service;
mod target;
mod time;

pub use control::{
    Backend, Features, FlowSummary, Hello, Hook, Interface, Lost, Ready, Rtt, SessionSummary,
    Summary, Warning,
};
pub use dns::{Dns, DnsAnswer, DnsSummary};
pub use policy::{Policy, PolicyDirection, PolicyMiss, PolicyNearMiss, PolicyVerdict};
pub use record::{
    Direction, DropSite, End, Event, EventKind, Payload, Proto, ResetDirection, ServiceHop,
    ETH_HLEN,
};
pub use service::{ServiceMiss, ServiceProblem};
pub use target::{TargetChange, TargetChangeKind};
pub use time::{now_rfc3339, rfc3339_nanos, Rfc3339};

/// Version of this schema, carried in the `hello` line.
pub const SCHEMA: u32 = 3;

/// Any line of the stream.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Message {
    Hello(TypeTagged<Hello>),
    Ready(TypeTagged<Ready>),
    Lost(TypeTagged<Lost>),
    Warning(TypeTagged<Warning>),
    Summary(TypeTagged<Summary>),
    SessionSummary(TypeTagged<SessionSummary>),
    Policy(TypeTagged<Policy>),
    Service(TypeTagged<ServiceProblem>),
    Target(TypeTagged<TargetChange>),
    Event(Event),
}

/// A control record serialized with its `type` key first.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TypeTagged<T> {
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(flatten)]
    pub body: T,
}

/// Why a line could not be read as part of the stream.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("JSON object without a string \"type\" field")]
    NoType,
    #[error("bad {ty:?} line: {source}")]
    Invalid {
        ty: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Message {
    pub fn hello(body: Hello) -> Self {
        Message::Hello(TypeTagged { ty: "hello", body })
    }
    pub fn ready(body: Ready) -> Self {
        Message::Ready(TypeTagged { ty: "ready", body })
    }
    pub fn lost(body: Lost) -> Self {
        Message::Lost(TypeTagged { ty: "lost", body })
    }
    pub fn warning(body: Warning) -> Self {
        Message::Warning(TypeTagged {
            ty: "warning",
            body,
        })
    }
    pub fn summary(body: Summary) -> Self {
        Message::Summary(TypeTagged {
            ty: "summary",
            body,
        })
    }

    pub fn session_summary(body: SessionSummary) -> Self {
        Message::SessionSummary(TypeTagged {
            ty: "session_summary",
            body,
        })
    }

    pub fn policy(body: Policy) -> Self {
        Message::Policy(TypeTagged { ty: "policy", body })
    }

    pub fn service(body: ServiceProblem) -> Self {
        Message::Service(TypeTagged {
            ty: "service",
            body,
        })
    }

    pub fn target(body: TargetChange) -> Self {
        Message::Target(TypeTagged { ty: "target", body })
    }

    /// The `type` of this line.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Hello(t) => t.ty,
            Message::Ready(t) => t.ty,
            Message::Lost(t) => t.ty,
            Message::Warning(t) => t.ty,
            Message::Summary(t) => t.ty,
            Message::SessionSummary(t) => t.ty,
            Message::Policy(t) => t.ty,
            Message::Service(t) => t.ty,
            Message::Target(t) => t.ty,
            Message::Event(e) => e.kind.name(),
        }
    }

    /// Parses one line of runner output.
    pub fn parse(line: &str) -> Result<Message, ParseError> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(ParseError::NotJson)?;
        Self::from_value(value)
    }

    /// Reads an already-parsed JSON object as a line of the stream.
    pub fn from_value(value: serde_json::Value) -> Result<Message, ParseError> {
        let ty = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or(ParseError::NoType)?
            .to_owned();
        let invalid = |source| ParseError::Invalid {
            ty: ty.clone(),
            source,
        };
        Ok(match ty.as_str() {
            "hello" => Message::hello(serde_json::from_value(value).map_err(invalid)?),
            "ready" => Message::ready(serde_json::from_value(value).map_err(invalid)?),
            "lost" => Message::lost(serde_json::from_value(value).map_err(invalid)?),
            "warning" => Message::warning(serde_json::from_value(value).map_err(invalid)?),
            "summary" => Message::summary(serde_json::from_value(value).map_err(invalid)?),
            "session_summary" => {
                Message::session_summary(serde_json::from_value(value).map_err(invalid)?)
            }
            "policy" => Message::policy(serde_json::from_value(value).map_err(invalid)?),
            "service" => Message::service(serde_json::from_value(value).map_err(invalid)?),
            "target" => Message::target(serde_json::from_value(value).map_err(invalid)?),
            _ => Message::Event(serde_json::from_value(value).map_err(invalid)?),
        })
    }

    /// Serializes as one JSON line (no trailing newline).
    pub fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event of `kind` with every common field set.
    pub(crate) fn sample_event(kind: EventKind) -> Event {
        Event {
            time: rfc3339_nanos(1_764_081_438_123_456_789),
            node: "node-1".into(),
            proto: Proto::Tcp,
            src: "10.244.1.2:43210".parse().unwrap(),
            dst: "10.244.2.3:80".parse().unwrap(),
            pid: Some(42),
            comm: Some("curl".into()),
            src_name: None,
            dst_name: None,
            via: None,
            end: kind.is_connection_event().then_some(End::Server),
            kind,
        }
    }

    /// An ICMP error event's kind: a `frag needed` from a node.
    pub(crate) fn frag_needed() -> EventKind {
        EventKind::Icmp {
            error: "frag needed".into(),
            mtu: Some(1400),
            from: "10.244.1.1".parse().unwrap(),
            icmp_type: 3,
            icmp_code: 4,
            iface: "cali1".into(),
            direction: Direction::Ingress,
        }
    }

    #[test]
    fn event_line_is_flat_with_type_and_addresses() {
        let line = Message::Event(sample_event(EventKind::Established { rtt_us: 57 })).to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "established");
        assert_eq!(v["src"], "10.244.1.2:43210");
        assert_eq!(v["dst"], "10.244.2.3:80");
        assert_eq!(v["rtt_us"], 57);
        assert_eq!(v["proto"], "tcp");
        assert!(v.get("src_name").is_none());
    }

    #[test]
    fn every_line_round_trips() {
        let kinds = vec![
            EventKind::Connect,
            EventKind::Accept,
            EventKind::Established { rtt_us: 1 },
            EventKind::Close {
                duration_ms: 1.5,
                bytes_sent: 73,
                bytes_received: 853,
            },
            EventKind::Failed {
                error: Some("ECONNREFUSED".into()),
            },
            EventKind::Failed { error: None },
            EventKind::Reset {
                direction: ResetDirection::Received,
            },
            EventKind::Retransmit {
                state: Some("SYN_SENT".into()),
            },
            EventKind::Drop {
                reason: Some("NETFILTER_DROP".into()),
                iface: Some("cali1".into()),
                direction: Some(Direction::Ingress),
                at: Some(DropSite::Node),
                data: Some(Payload(vec![0, 1, 2])),
            },
            EventKind::Packet {
                iface: "cali1".into(),
                direction: Direction::Egress,
                flags: "SYN".into(),
                len: 60,
                first: true,
                data: None,
            },
            EventKind::Packet {
                iface: "cali1".into(),
                direction: Direction::Ingress,
                flags: "ACK".into(),
                len: 40,
                first: false,
                data: Some(Payload(b"\x00\x01GET / HTTP/1.1\r\n\xff".to_vec())),
            },
            EventKind::Icmp {
                error: "packet too big".into(),
                mtu: Some(1280),
                from: "fd00:1::1".parse().unwrap(),
                icmp_type: 2,
                icmp_code: 0,
                iface: "cali1".into(),
                direction: Direction::Ingress,
            },
        ];
        let mut msgs: Vec<Message> = kinds
            .into_iter()
            .map(|k| Message::Event(sample_event(k)))
            .collect();
        msgs.push(Message::hello(Hello {
            version: "0.1.0".into(),
            schema: SCHEMA,
            node: "n".into(),
            kernel: "6.18".into(),
            time: now_rfc3339(),
        }));
        msgs.push(Message::lost(Lost {
            node: "n".into(),
            time: now_rfc3339(),
            count: 3,
            total: 3,
            skipped: 1,
        }));
        msgs.push(Message::summary(Summary {
            node: "n".into(),
            time: now_rfc3339(),
            flows: vec![FlowSummary {
                proto: Some(Proto::Udp),
                dst: Some("10.0.0.10:53".parse().unwrap()),
                rtt: Some(Rtt::default()),
                ..Default::default()
            }],
            dns: vec![crate::event::DnsSummary {
                pod: "10.0.1.2".parse().unwrap(),
                pod_name: Some("default/curl-demo".into()),
                queries: 3,
                nxdomain: 1,
                servfail: 0,
                unanswered: 1,
                p50_ms: Some(0.5),
                p99_ms: Some(1.25),
            }],
            lost: 3,
            events: 10,
            duration_s: 1.0,
        }));
        msgs.push(Message::session_summary(SessionSummary {
            time: now_rfc3339(),
            flows: vec![FlowSummary {
                proto: Some(Proto::Tcp),
                retransmits_sent: 55,
                retransmits_received: 3,
                ..Default::default()
            }],
            dns: Vec::new(),
            lost: 0,
            nodes: vec!["a".into()],
            counted_from_events: vec!["b".into()],
        }));
        msgs.push(Message::service(ServiceProblem {
            time: now_rfc3339(),
            node: "n".into(),
            proto: Proto::Tcp,
            src: "10.244.1.2:43210".parse().unwrap(),
            dst: "10.96.0.20:80".parse().unwrap(),
            src_name: Some("default/curl-demo".into()),
            service: "default/web".into(),
            problem: ServiceMiss::NoReadyEndpoints,
            detail: "0 of 2 pods ready".into(),
            cause: "failed ECONNREFUSED".into(),
        }));
        msgs.push(Message::target(TargetChange {
            time: now_rfc3339(),
            change: TargetChangeKind::Replaced,
            target: "deploy/nginx".into(),
            pod: "default/nginx-7d9f-abc".into(),
            node: "node-1".into(),
            ips: vec!["10.244.1.5".parse().unwrap()],
            by: Some("default/nginx-7d9f-xyz".into()),
        }));
        for m in msgs {
            let line = m.to_line();
            let back = Message::parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back, m, "{line}");
            assert_eq!(back.type_name(), m.type_name());
        }
    }

    #[test]
    fn target_lines_read_as_said() {
        let line = r#"{"type":"target","time":"2026-11-29T13:00:00Z","change":"deleted","target":"pod/nginx-demo","pod":"default/nginx-demo","node":"node-2","ips":["10.244.2.2"]}"#;
        let Message::Target(t) = Message::parse(line).unwrap() else {
            panic!("not a target line")
        };
        assert_eq!(t.body.change, TargetChangeKind::Deleted);
        assert_eq!(t.body.text(), "default/nginx-demo (10.244.2.2) deleted");
        assert_eq!(Message::Target(t).to_line(), line);
        let joined = TargetChange {
            change: TargetChangeKind::Joined,
            by: None,
            ..match Message::parse(line).unwrap() {
                Message::Target(t) => t.body,
                _ => unreachable!(),
            }
        };
        assert_eq!(
            joined.text(),
            "default/nginx-demo (10.244.2.2) joined pod/nginx-demo on node node-2: tracing it"
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(matches!(
            Message::parse("hello world"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(Message::parse("{}"), Err(ParseError::NoType)));
        let err = Message::parse(r#"{"type":"connect","src":"nope"}"#).unwrap_err();
        assert!(err.to_string().starts_with("bad \"connect\" line"), "{err}");
    }
}

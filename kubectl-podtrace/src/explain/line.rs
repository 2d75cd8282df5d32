// SPDX-License-Identifier: Apache-2.0
//! The `policy` line: one verdict for one flow and direction, in JSON and
//! as the text line shown under the event that raised it.

use podtrace::event::{Message, Policy};

use crate::policy::{Decision, Direction, Verdict};

/// A `{"type":"policy",…}` line ([`Policy`], documented in docs/schema.md)
/// and how its text reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolicyLine {
    pub wire: Policy,
    /// Whether the text says the drop has another cause: not when the other
    /// direction is denied (that explains it).
    pub says_other_cause: bool,
}

impl PolicyLine {
    pub(crate) fn new(e: &podtrace::event::Event, d: Decision, cause: String) -> PolicyLine {
        PolicyLine {
            says_other_cause: cause != "connection",
            wire: Policy {
                time: e.time.clone(),
                node: e.node.clone(),
                proto: e.proto,
                src: e.src,
                dst: e.dst,
                src_name: e.src_name.clone(),
                dst_name: e.dst_name.clone(),
                direction: d.direction,
                verdict: d.verdict,
                policies: d.policies,
                allowed_by: d.allowed_by,
                rule: d.near_miss,
                cause,
            },
        }
    }

    pub(crate) fn to_json(&self) -> String {
        Message::policy(self.wire.clone()).to_line()
    }

    /// One line, indented under the event it explains.
    pub(crate) fn to_text(&self) -> String {
        let (way, pod) = match self.wire.direction {
            Direction::Ingress => (
                "ingress to",
                self.wire
                    .dst_name
                    .clone()
                    .unwrap_or(self.wire.dst.ip().to_string()),
            ),
            Direction::Egress => (
                "egress from",
                self.wire
                    .src_name
                    .clone()
                    .unwrap_or(self.wire.src.ip().to_string()),
            ),
        };
        let port = format!(
            "{}/{}",
            self.wire.proto.as_str().to_uppercase(),
            self.wire.dst.port()
        );
        let head = format!("    policy: {way} {pod} on {port}");
        match self.wire.verdict {
            Verdict::Denied => {
                let mut s = format!("{head} DENIED by {}", self.wire.policies.join(", "));
                match &self.wire.rule {
                    Some(r) => s.push_str(&format!(
                        "; nearest rule {} {}[{}]: {}",
                        r.policy,
                        self.direction_word(),
                        r.index,
                        r.detail
                    )),
                    None => s.push_str("; no rule comes close"),
                }
                s
            }
            Verdict::Allowed => format!(
                "{head} allowed by {}{}",
                self.wire.allowed_by.join(", "),
                self.other_cause()
            ),
            Verdict::NoPolicy => {
                format!("{head}: no NetworkPolicy selects it{}", self.other_cause())
            }
        }
    }

    fn direction_word(&self) -> &'static str {
        match self.wire.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn other_cause(&self) -> String {
        if self.says_other_cause {
            format!(" (so the {} has another cause)", self.wire.cause)
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Miss, NearMiss};

    fn drop_event() -> podtrace::event::Event {
        serde_json::from_str(
            r#"{"time":"2026-11-29T11:07:02.235658000Z","node":"node-1","proto":"tcp",
                "src":"10.2.2.2:36042","dst":"10.2.1.2:80","src_name":"default/curl-demo",
                "dst_name":"default/nginx-demo","type":"drop","reason":"NETFILTER_DROP","iface":"eth0"}"#,
        )
        .unwrap()
    }

    fn decision(direction: Direction, verdict: Verdict) -> Decision {
        Decision {
            direction,
            verdict,
            policies: vec![
                "default/allow-from-client".into(),
                "default/default-deny-ingress".into(),
            ],
            allowed_by: Vec::new(),
            near_miss: (verdict == Verdict::Denied).then(|| NearMiss {
                policy: "default/allow-from-client".into(),
                index: 0,
                miss: Miss::PodLabels,
                detail: "wants pods role=client; the source default/curl-demo has app=curl-demo"
                    .into(),
            }),
        }
    }

    #[test]
    fn a_denied_line_in_json_and_text() {
        let l = PolicyLine::new(
            &drop_event(),
            decision(Direction::Ingress, Verdict::Denied),
            "drop NETFILTER_DROP".into(),
        );
        let v: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
        assert_eq!(v["type"], "policy");
        assert_eq!(v["verdict"], "denied");
        assert_eq!(v["direction"], "ingress");
        assert_eq!(v["rule"]["miss"], "pod-labels");
        assert_eq!(v["src"], "10.2.2.2:36042");
        assert_eq!(v["dst_name"], "default/nginx-demo");
        assert!(v.get("says_other_cause").is_none());
        // One definition of the line: what the plugin writes, the schema reads.
        match Message::parse(&l.to_json()).unwrap() {
            Message::Policy(p) => assert_eq!(p.body, l.wire),
            m => panic!("read back as {}", m.type_name()),
        }
        assert_eq!(
            l.to_text(),
            "    policy: ingress to default/nginx-demo on TCP/80 DENIED by default/allow-from-client, \
             default/default-deny-ingress; nearest rule default/allow-from-client ingress[0]: \
             wants pods role=client; the source default/curl-demo has app=curl-demo"
        );
    }

    #[test]
    fn an_open_direction_says_the_drop_has_another_cause_only_when_alone() {
        let mut d = decision(Direction::Egress, Verdict::NoPolicy);
        d.policies.clear();
        let mut l = PolicyLine::new(&drop_event(), d, "drop NETFILTER_DROP".into());
        assert_eq!(
            l.to_text(),
            "    policy: egress from default/curl-demo on TCP/80: no NetworkPolicy selects it \
             (so the drop NETFILTER_DROP has another cause)"
        );
        l.says_other_cause = false;
        assert_eq!(
            l.to_text(),
            "    policy: egress from default/curl-demo on TCP/80: no NetworkPolicy selects it"
        );
    }
}

// SPDX-License-Identifier: Apache-2.0
//! NetworkPolicy truth tables from the upstream definition
//! (`networkpolicy.yaml` beside this crate says where each case comes from
//! and how the file reads), for two independent consumers: the plugin's
//! policy evaluator and the sandbox's nftables enforcement.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// The cases file, compiled in so every consumer reads the same text.
pub const CASES_YAML: &str = include_str!("../networkpolicy.yaml");

/// The model's namespaces and pod names (upstream's x, y, z and a, b, c).
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const POD_NAMES: [&str; 3] = ["a", "b", "c"];

/// Every pod's container ports: (name, port, protocol).
pub const CONTAINER_PORTS: [(&str, u16, &str); 5] = [
    ("serve-80-tcp", 80, "TCP"),
    ("serve-80-udp", 80, "UDP"),
    ("serve-81-tcp", 81, "TCP"),
    ("serve-81-udp", 81, "UDP"),
    ("dns", 53, "UDP"),
];

pub type Labels = BTreeMap<String, String>;

/// `ns/name` of a model pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl PodRef {
    pub fn parse(s: &str) -> Result<PodRef, String> {
        match s.split_once('/') {
            Some((ns, name)) if NAMESPACES.contains(&ns) && POD_NAMES.contains(&name) => {
                Ok(PodRef {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("{s:?} is not a model pod (x|y|z)/(a|b|c)")),
        }
    }

    /// The labels the model gives this pod before any step adds some.
    pub fn labels(&self) -> Labels {
        Labels::from([("pod".to_owned(), self.name.clone())])
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every pod of the model.
pub fn all_pods() -> Vec<PodRef> {
    NAMESPACES
        .iter()
        .flat_map(|ns| {
            POD_NAMES.iter().map(|n| PodRef {
                namespace: (*ns).to_owned(),
                name: (*n).to_owned(),
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The upstream test (or documentation section) the case comes from.
    pub upstream: String,
    pub pods: Vec<PodRef>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// The policies that exist from this step on; `None` keeps the previous.
    pub policies: Option<Vec<NetworkPolicy>>,
    /// Labels added to pods (cumulative over steps).
    pub pod_labels: BTreeMap<PodRef, Labels>,
    /// Labels added to namespaces (cumulative over steps).
    pub namespace_labels: BTreeMap<String, Labels>,
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    expect: Vec<Expect>,
}

#[derive(Debug, Clone)]
struct Expect {
    allow: bool,
    from: Pattern,
    to: Pattern,
}

#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Namespace(String),
    Pod(PodRef),
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        match s.trim() {
            "*" => Ok(Pattern::Any),
            p => match p.strip_suffix("/*") {
                Some(ns) if NAMESPACES.contains(&ns) => Ok(Pattern::Namespace(ns.to_owned())),
                Some(_) => Err(format!("{p:?}: unknown namespace")),
                None => PodRef::parse(p).map(Pattern::Pod),
            },
        }
    }

    fn matches(&self, pod: &PodRef) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Namespace(ns) => &pod.namespace == ns,
            Pattern::Pod(p) => p == pod,
        }
    }
}

impl Probe {
    /// Whether `from` can reach `to` on this probe's port, per upstream.
    pub fn expected(&self, from: &PodRef, to: &PodRef) -> bool {
        self.expect.iter().fold(true, |acc, e| {
            match e.from.matches(from) && e.to.matches(to) {
                true => e.allow,
                false => acc,
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCase {
    name: String,
    upstream: String,
    pods: Vec<String>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStep {
    policies: Option<Vec<RawPolicy>>,
    #[serde(default)]
    pod_labels: BTreeMap<String, Labels>,
    #[serde(default)]
    namespace_labels: BTreeMap<String, Labels>,
    probes: Vec<RawProbe>,
}

// NetworkPolicy's own Deserialize wants apiVersion and kind; the file
// leaves them out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    metadata: ObjectMeta,
    spec: NetworkPolicySpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    port: u16,
    protocol: String,
    expect: Vec<String>,
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    let (verb, rest) = s
        .split_once(' ')
        .ok_or_else(|| format!("{s:?}: want \"allow|deny FROM -> TO\""))?;
    let allow = match verb {
        "allow" => true,
        "deny" => false,
        _ => return Err(format!("{s:?}: want \"allow\" or \"deny\" first")),
    };
    let (from, to) = rest
        .split_once("->")
        .ok_or_else(|| format!("{s:?}: want FROM -> TO"))?;
    Ok(Expect {
        allow,
        from: Pattern::parse(from)?,
        to: Pattern::parse(to)?,
    })
}

/// The cases, with every `{ns/pod}` in the text replaced by `ip(pod)`.
pub fn cases(ip: impl Fn(&PodRef) -> String) -> Result<Vec<Case>, String> {
    let mut text = CASES_YAML.to_owned();
    for pod in all_pods() {
        text = text.replace(&format!("{{{pod}}}"), &ip(&pod));
    }
    let raw: Vec<RawCase> =
        serde_yaml::from_str(&text).map_err(|e| format!("networkpolicy.yaml: {e}"))?;
    raw.into_iter()
        .map(|c| {
            let ctx = |e: String| format!("case {}: {e}", c.name);
            let pods = c
                .pods
                .iter()
                .map(|p| PodRef::parse(p))
                .collect::<Result<_, _>>()
                .map_err(ctx)?;
            let steps = c
                .steps
                .into_iter()
                .map(|s| {
                    Ok(Step {
                        policies: s.policies.map(|ps| {
                            ps.into_iter()
                                .map(|p| NetworkPolicy {
                                    metadata: p.metadata,
                                    spec: Some(p.spec),
                                })
                                .collect()
                        }),
                        pod_labels: s
                            .pod_labels
                            .into_iter()
                            .map(|(k, v)| Ok((PodRef::parse(&k)?, v)))
                            .collect::<Result<_, String>>()?,
                        namespace_labels: s.namespace_labels,
                        probes: s
                            .probes
                            .into_iter()
                            .map(|p| {
                                Ok(Probe {
                                    port: p.port,
                                    protocol: p.protocol,
                                    expect: p
                                        .expect
                                        .iter()
                                        .map(|e| parse_expect(e))
                                        .collect::<Result<_, _>>()?,
                                })
                            })
                            .collect::<Result<_, String>>()?,
                    })
                })
                .collect::<Result<_, String>>()
                .map_err(ctx)?;
            Ok(Case {
                name: c.name,
                upstream: c.upstream,
                pods,
                steps,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_and_placeholders_are_replaced() {
        let cases = cases(|p| format!("10.9.9.{}", p.name.len())).unwrap();
        assert!(cases.len() >= 30, "{}", cases.len());
        assert!(!CASES_YAML.is_empty());
        let block = cases.iter().find(|c| c.name == "egress-ip-block").unwrap();
        let spec = block.steps[0].policies.as_ref().unwrap()[0]
            .spec
            .clone()
            .unwrap();
        let egress = spec.egress.unwrap();
        let peer = &egress[0].to.as_ref().unwrap()[0];
        assert_eq!(peer.ip_block.as_ref().unwrap().cidr, "10.9.9.1/32");
    }

    #[test]
    fn expectations_apply_in_order() {
        let p = Probe {
            port: 80,
            protocol: "TCP".into(),
            expect: vec![
                parse_expect("deny * -> x/a").unwrap(),
                parse_expect("allow x/b -> x/a").unwrap(),
            ],
        };
        let r = |s| PodRef::parse(s).unwrap();
        assert!(!p.expected(&r("y/a"), &r("x/a")));
        assert!(p.expected(&r("x/b"), &r("x/a")));
        assert!(p.expected(&r("x/a"), &r("x/b")));
        assert!(parse_expect("maybe x/a -> x/b").is_err());
        assert!(parse_expect("deny q/* -> x/b").is_err());
    }
}

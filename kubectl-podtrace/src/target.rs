// SPDX-License-Identifier: Apache-2.0
//! What the user named as POD or PEER: a pod, a workload (`deploy/web`), a
//! Service's backends (`svc/web`) or a label selector (`-l app=web`); and a
//! workload's `spec.selector` as the label selector string the API takes.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;

use crate::cli::TraceArgs;

/// A kind of object whose pods can be traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    Service,
}

/// The kinds, with every spelling kubectl accepts for each; the first is the
/// one we print.
const KINDS: &[(Kind, &[&str])] = &[
    (Kind::Pod, &["pod", "pods", "po"]),
    (
        Kind::Deployment,
        &["deploy", "deployment", "deployments", "deployment.apps"],
    ),
    (
        Kind::ReplicaSet,
        &["rs", "replicaset", "replicasets", "replicaset.apps"],
    ),
    (
        Kind::StatefulSet,
        &["sts", "statefulset", "statefulsets", "statefulset.apps"],
    ),
    (
        Kind::DaemonSet,
        &["ds", "daemonset", "daemonsets", "daemonset.apps"],
    ),
    (Kind::Job, &["job", "jobs", "job.batch"]),
    (Kind::Service, &["svc", "service", "services"]),
];

/// kubectl kinds that have no pods of their own to trace: `cronjob/x` is
/// told the kinds we take rather than read as namespace `cronjob`.
const OTHER_KINDS: &[&str] = &[
    "rc",
    "replicationcontroller",
    "replicationcontrollers",
    "cj",
    "cronjob",
    "cronjobs",
    "cm",
    "configmap",
    "configmaps",
    "secret",
    "secrets",
    "no",
    "node",
    "nodes",
    "ns",
    "namespace",
    "namespaces",
    "ing",
    "ingress",
    "ingresses",
    "ep",
    "endpoints",
    "netpol",
    "networkpolicy",
    "networkpolicies",
    "hpa",
    "sa",
    "serviceaccount",
    "pvc",
    "pv",
];

/// What an unknown kind is told.
const KIND_LIST: &str = "pod/, deploy/, rs/, sts/, ds/, job/ or svc/";

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        let lower = s.to_ascii_lowercase();
        KINDS
            .iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|(k, _)| *k)
    }

    /// The short name, as in `deploy/web`.
    pub(crate) fn short(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, names)| names[0])
            .unwrap_or("pod")
    }
}

/// One side of the trace as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetRef {
    /// `NAME`, `NS/NAME`, `KIND/NAME` or `NS/KIND/NAME`.
    Object {
        /// Given explicitly as `NS/…`.
        namespace: Option<String>,
        kind: Kind,
        name: String,
    },
    /// `-l/--selector`: pods in the namespace with these labels.
    Selector(String),
}

impl TargetRef {
    /// Reads `NAME`, `NS/NAME`, `KIND/NAME` or `NS/KIND/NAME`. A two-part
    /// name is `KIND/NAME` when the first part is a kind we know, else
    /// `NS/NAME` (a pod), as before workloads were targets.
    pub(crate) fn parse(s: &str) -> Result<TargetRef, String> {
        let usage = || {
            format!("{s:?} is not a target: use NAME, NS/NAME, KIND/NAME or NS/KIND/NAME (KIND: {KIND_LIST})")
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(usage());
        }
        let (namespace, kind, name) = match parts.as_slice() {
            [name] => (None, Kind::Pod, *name),
            [first, name] => match Kind::parse(first) {
                Some(kind) => (None, kind, *name),
                None if OTHER_KINDS.contains(&first.to_ascii_lowercase().as_str()) => {
                    return Err(unknown_kind(first, s))
                }
                None => (Some(*first), Kind::Pod, *name),
            },
            [ns, kind, name] => match Kind::parse(kind) {
                Some(kind) => (Some(*ns), kind, *name),
                None => return Err(unknown_kind(kind, s)),
            },
            _ => return Err(usage()),
        };
        Ok(TargetRef::Object {
            namespace: namespace.map(str::to_string),
            kind,
            name: name.to_string(),
        })
    }

    /// The namespace given with it, if any.
    pub(crate) fn namespace(&self) -> Option<&str> {
        match self {
            TargetRef::Object { namespace, .. } => namespace.as_deref(),
            TargetRef::Selector(_) => None,
        }
    }
}

fn unknown_kind(kind: &str, target: &str) -> String {
    format!("unknown kind {kind:?} in {target:?}: use {KIND_LIST} (KIND/NAME or NS/KIND/NAME)")
}

impl fmt::Display for TargetRef {
    /// `deploy/web`, `pod/web-1`, `-l app=web`: how messages name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRef::Object { kind, name, .. } => write!(f, "{}/{name}", kind.short()),
            TargetRef::Selector(s) => write!(f, "-l {s}"),
        }
    }
}

/// POD and PEER as typed: `-l` takes POD's place, and a positional
/// argument beside it is the PEER.
pub(crate) fn from_args(trace: &TraceArgs) -> Result<Vec<TargetRef>, String> {
    let mut refs = Vec::new();
    if let Some(labels) = &trace.selector {
        if trace.peer.is_some() {
            return Err("with -l (the POD side) give at most one more target, the PEER".into());
        }
        if labels.trim().is_empty() {
            return Err("-l needs a label selector, e.g. -l app=web".into());
        }
        refs.push(TargetRef::Selector(labels.clone()));
    }
    for s in trace.pod.iter().chain(trace.peer.iter()) {
        refs.push(TargetRef::parse(s)?);
    }
    Ok(refs)
}

/// A workload's `spec.selector` (matchLabels and matchExpressions) as a
/// label selector string; an error for an operator the API does not define,
/// or an empty selector (it would select every pod in the namespace).
pub(crate) fn selector_string(sel: &LabelSelector) -> Result<String, String> {
    let parsed = Selector::try_from(sel.clone()).map_err(|e| e.to_string())?;
    if parsed.selects_all() {
        return Err("an empty selector".into());
    }
    Ok(parsed.to_string())
}

/// A Service's `spec.selector` (plain labels) as a label selector string.
pub(crate) fn map_selector(labels: &BTreeMap<String, String>) -> Option<String> {
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ns: Option<&str>, kind: Kind, name: &str) -> TargetRef {
        TargetRef::Object {
            namespace: ns.map(str::to_string),
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn every_form_parses() {
        let p = |s| TargetRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(p("nginx"), obj(None, Kind::Pod, "nginx"));
        assert_eq!(p("web/nginx"), obj(Some("web"), Kind::Pod, "nginx"));
        assert_eq!(p("pod/nginx"), obj(None, Kind::Pod, "nginx"));
        assert_eq!(p("po/nginx"), obj(None, Kind::Pod, "nginx"));
        assert_eq!(p("web/pod/nginx"), obj(Some("web"), Kind::Pod, "nginx"));
        for (s, kind) in [
            ("deploy/x", Kind::Deployment),
            ("deployment/x", Kind::Deployment),
            ("Deployment/x", Kind::Deployment),
            ("rs/x", Kind::ReplicaSet),
            ("replicaset/x", Kind::ReplicaSet),
            ("sts/x", Kind::StatefulSet),
            ("statefulset/x", Kind::StatefulSet),
            ("ds/x", Kind::DaemonSet),
            ("daemonset/x", Kind::DaemonSet),
            ("job/x", Kind::Job),
            ("jobs/x", Kind::Job),
            ("svc/x", Kind::Service),
            ("service/x", Kind::Service),
        ] {
            match p(s) {
                TargetRef::Object { kind: k, name, .. } => {
                    assert_eq!((k, name.as_str()), (kind, "x"), "{s}")
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(
            p("shop/deploy/web"),
            obj(Some("shop"), Kind::Deployment, "web")
        );
        assert_eq!(p("deploy/web").to_string(), "deploy/web");
        assert_eq!(p("deployment/web").to_string(), "deploy/web");
        assert_eq!(p("web/nginx").to_string(), "pod/nginx");
        assert_eq!(TargetRef::Selector("app=x".into()).to_string(), "-l app=x");
    }

    #[test]
    fn bad_targets_say_how_to_write_them() {
        let e = TargetRef::parse("ns/cronjob/x").unwrap_err();
        assert_eq!(
            e,
            "unknown kind \"cronjob\" in \"ns/cronjob/x\": use pod/, deploy/, rs/, sts/, ds/, \
             job/ or svc/ (KIND/NAME or NS/KIND/NAME)"
        );
        let e = TargetRef::parse("cronjob/x").unwrap_err();
        assert!(
            e.starts_with("unknown kind \"cronjob\" in \"cronjob/x\": use pod/"),
            "{e}"
        );
        for s in ["a/b/c/d", "pod/", "/x", "deploy//x", ""] {
            let e = TargetRef::parse(s).unwrap_err();
            assert!(
                e.contains("is not a target: use NAME, NS/NAME, KIND/NAME"),
                "{s}: {e}"
            );
            assert!(e.contains("deploy/"), "{s}: {e}");
        }
    }

    fn args(argv: &[&str]) -> Result<Vec<TargetRef>, String> {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("kubectl-podtrace").chain(argv.iter().copied()),
        )
        .map_err(|e| e.to_string())?;
        from_args(&cli.trace)
    }

    #[test]
    fn selector_takes_the_pod_side() {
        let sel = |s: &str| TargetRef::Selector(s.into());
        assert_eq!(args(&["-l", "app=web"]).unwrap(), vec![sel("app=web")]);
        assert_eq!(
            args(&["--selector", "app=web,tier in (a,b)", "curl"]).unwrap(),
            vec![sel("app=web,tier in (a,b)"), obj(None, Kind::Pod, "curl")]
        );
        assert_eq!(
            args(&["deploy/web", "svc/api"]).unwrap(),
            vec![
                obj(None, Kind::Deployment, "web"),
                obj(None, Kind::Service, "api")
            ]
        );
        let e = args(&["-l", "app=web", "a", "b"]).unwrap_err();
        assert!(e.contains("at most one more target, the PEER"), "{e}");
        let e = args(&["-l", " "]).unwrap_err();
        assert!(e.contains("-l needs a label selector"), "{e}");
        let e = args(&["rc/x"]).unwrap_err();
        assert!(e.contains("unknown kind \"rc\""), "{e}");
        assert!(args(&[]).unwrap_err().contains("required"));
    }

    fn label_selector(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn workload_selectors_become_label_selector_strings() {
        let s = label_selector(serde_json::json!({"matchLabels": {"app": "web", "tier": "fe"}}));
        assert_eq!(selector_string(&s).unwrap(), "app=web,tier=fe");
        let s = label_selector(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "track", "operator": "NotIn", "values": ["old"]},
                {"key": "owner", "operator": "Exists"}
            ]
        }));
        assert_eq!(
            selector_string(&s).unwrap(),
            "app=web,env in (prod,staging),!canary,track notin (old),owner"
        );
        let bad = label_selector(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]
        }));
        assert!(selector_string(&bad).is_err());
        assert!(selector_string(&LabelSelector::default()).is_err());
        assert_eq!(
            map_selector(&BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("b".to_string(), "c".to_string())
            ])),
            Some("app=web,b=c".into())
        );
        assert_eq!(map_selector(&BTreeMap::new()), None);
    }
}

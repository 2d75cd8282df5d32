// SPDX-License-Identifier: Apache-2.0
//! Checks made before anything is created: the job namespace exists and
//! admits privileged pods, and the caller may do everything the session does.

use futures::future::join_all;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use crate::errors::{Error, Result};

/// The Pod Security admission label that decides what pods a namespace takes.
pub(crate) const PSA_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// One permission: verb, API group, resource, subresource; where it is
/// needed, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub scope: Scope,
    pub need: Need,
}

/// Where a permission is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// In the job namespace (manifests/rbac.yaml's Role).
    JobNamespace,
    /// In the namespaces of the pods named, which may be any (the ClusterRole).
    Targets,
    /// Across all namespaces at once (the ClusterRole).
    AllNamespaces,
    /// On the job namespace object itself (the ClusterRole, by name).
    JobNamespaceObject,
}

/// What a permission is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A trace cannot run without it: preflight checks it.
    Trace,
    /// A trace runs without it, with less (bare IPs, no early Pod Security
    /// check, no "did you mean").
    Optional,
    /// Only `kubectl podtrace cleanup` uses it.
    Cleanup,
}

const fn perm(
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    scope: Scope,
    need: Need,
) -> Permission {
    Permission {
        verb,
        group,
        resource,
        subresource: "",
        scope,
        need,
    }
}

/// Every API call the plugin makes, as a permission. manifests/rbac.yaml
/// grants exactly these (a test compares them).
pub(crate) const USED: &[Permission] = &[
    // The session: create and delete the Jobs, list them until gone.
    perm("create", "batch", "jobs", Scope::JobNamespace, Need::Trace),
    perm("list", "batch", "jobs", Scope::JobNamespace, Need::Trace),
    perm("delete", "batch", "jobs", Scope::JobNamespace, Need::Trace),
    // Follow the runner pods: poll them, read one's exit code, its log.
    perm("get", "", "pods", Scope::JobNamespace, Need::Trace),
    perm("list", "", "pods", Scope::JobNamespace, Need::Trace),
    Permission {
        verb: "get",
        group: "",
        resource: "pods",
        subresource: "log",
        scope: Scope::JobNamespace,
        need: Need::Trace,
    },
    // Why a runner pod does not start.
    perm("list", "", "events", Scope::JobNamespace, Need::Trace),
    // Pods orphaned by a Job deleted without a propagation policy.
    perm("delete", "", "pods", Scope::JobNamespace, Need::Cleanup),
    // Resolve the pods named, and suggest close names.
    perm("get", "", "pods", Scope::Targets, Need::Trace),
    perm("list", "", "pods", Scope::Targets, Need::Optional),
    // Follow the targets' pods as they come and go (without it, the pods
    // found at the start are traced and no others).
    perm("watch", "", "pods", Scope::Targets, Need::Optional),
    // A workload or Service named as a target: its selector. Needed only
    // when that kind is named (the 403 then says which).
    perm("get", "apps", "deployments", Scope::Targets, Need::Optional),
    perm("get", "apps", "replicasets", Scope::Targets, Need::Optional),
    perm(
        "get",
        "apps",
        "statefulsets",
        Scope::Targets,
        Need::Optional,
    ),
    perm("get", "apps", "daemonsets", Scope::Targets, Need::Optional),
    perm("get", "batch", "jobs", Scope::Targets, Need::Optional),
    perm("get", "", "services", Scope::Targets, Need::Optional),
    // Name the IPs seen as ns/name: a watch on every pod.
    perm("list", "", "pods", Scope::AllNamespaces, Need::Optional),
    perm("watch", "", "pods", Scope::AllNamespaces, Need::Optional),
    perm("list", "", "services", Scope::AllNamespaces, Need::Optional),
    // Which Service a ClusterIP is (for flows through it, and names): a watch.
    perm(
        "watch",
        "",
        "services",
        Scope::AllNamespaces,
        Need::Optional,
    ),
    // Explain netfilter drops by NetworkPolicy: the policies and the
    // namespaces' labels, kept by watches.
    perm(
        "list",
        "networking.k8s.io",
        "networkpolicies",
        Scope::AllNamespaces,
        Need::Optional,
    ),
    perm(
        "watch",
        "networking.k8s.io",
        "networkpolicies",
        Scope::AllNamespaces,
        Need::Optional,
    ),
    perm(
        "list",
        "",
        "namespaces",
        Scope::AllNamespaces,
        Need::Optional,
    ),
    perm(
        "watch",
        "",
        "namespaces",
        Scope::AllNamespaces,
        Need::Optional,
    ),
    // Explain a connection to a Service that cannot answer: the Service
    // (listed above), its EndpointSlices and its pods (listed above).
    perm(
        "list",
        "discovery.k8s.io",
        "endpointslices",
        Scope::AllNamespaces,
        Need::Optional,
    ),
    // Read the job namespace's Pod Security label.
    perm(
        "get",
        "",
        "namespaces",
        Scope::JobNamespaceObject,
        Need::Optional,
    ),
];

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut res = self.resource.to_string();
        if !self.subresource.is_empty() {
            res = format!("{res}/{}", self.subresource);
        }
        if !self.group.is_empty() {
            res = format!("{res}.{}", self.group);
        }
        write!(f, "{} {}", self.verb, res)
    }
}

/// Formats missing permissions, each with the namespace it is missing in:
/// `create jobs.batch, get pods/log in namespace "podtrace"`, namespaces
/// joined with `; `.
pub(crate) fn describe_missing(missing: &[(Permission, String)]) -> String {
    let mut namespaces: Vec<&str> = Vec::new();
    for (_, ns) in missing {
        if !namespaces.contains(&ns.as_str()) {
            namespaces.push(ns);
        }
    }
    namespaces
        .iter()
        .map(|ns| {
            let list: Vec<String> = missing
                .iter()
                .filter(|(_, n)| n == ns)
                .map(|(p, _)| p.to_string())
                .collect();
            format!("{} in namespace \"{ns}\"", list.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a Pod Security enforce level admits the runner's pod.
pub(crate) fn psa_admits_privileged(level: Option<&str>) -> bool {
    matches!(level, None | Some("privileged"))
}

/// Runs every check before anything is created; the first failure is
/// returned. `targets` are the namespaces of the pods named.
pub(crate) async fn check(client: &kube::Client, namespace: &str, targets: &[&str]) -> Result<()> {
    check_namespace(client, namespace).await?;
    let missing = missing(client, namespace, targets).await?;
    if !missing.is_empty() {
        return Err(Error::Forbidden {
            missing: describe_missing(&missing),
        });
    }
    Ok(())
}

/// The job namespace exists and admits the privileged runner pod.
async fn check_namespace(client: &kube::Client, namespace: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(None) => Err(Error::NamespaceMissing(namespace.to_string())),
        Ok(Some(ns)) => {
            let level = ns
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PSA_ENFORCE_LABEL))
                .map(String::as_str);
            if psa_admits_privileged(level) {
                Ok(())
            } else {
                Err(Error::PodSecurity {
                    namespace: namespace.to_string(),
                    level: level.unwrap_or_default().to_string(),
                })
            }
        }
        // Reading namespaces is not required; admission will still tell.
        Err(e) if Error::status_code(&e) == Some(403) => {
            tracing::debug!("cannot read namespace {namespace}: {e}");
            Ok(())
        }
        Err(e) => Err(Error::kube(format!("get namespace {namespace}"), e)),
    }
}

/// The permissions a trace needs that the caller lacks, each with its
/// namespace, asked of the API server (SelfSubjectAccessReview).
pub(crate) async fn missing(
    client: &kube::Client,
    job_namespace: &str,
    targets: &[&str],
) -> Result<Vec<(Permission, String)>> {
    let mut wanted: Vec<(Permission, String)> = Vec::new();
    for p in USED.iter().filter(|p| p.need == Need::Trace) {
        match p.scope {
            Scope::JobNamespace => wanted.push((*p, job_namespace.to_string())),
            Scope::Targets => {
                for ns in targets {
                    if !wanted.iter().any(|(w, n)| w == p && n == ns) {
                        wanted.push((*p, (*ns).to_string()));
                    }
                }
            }
            Scope::AllNamespaces | Scope::JobNamespaceObject => {}
        }
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let checks = wanted.into_iter().map(|(p, namespace)| {
        let reviews = reviews.clone();
        async move {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.clone()),
                        verb: Some(p.verb.to_string()),
                        group: Some(p.group.to_string()),
                        resource: Some(p.resource.to_string()),
                        subresource: (!p.subresource.is_empty()).then(|| p.subresource.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await;
            (p, namespace, answer)
        }
    });
    let mut missing = Vec::new();
    for (p, namespace, answer) in join_all(checks).await {
        let allowed = answer
            .map_err(|e| Error::kube("check your permissions (SelfSubjectAccessReview)", e))?
            .status
            .is_some_and(|s| s.allowed);
        if !allowed {
            missing.push((p, namespace));
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_permissions_are_listed_exactly() {
        let log = USED.iter().find(|p| p.subresource == "log").unwrap();
        let m = describe_missing(&[
            (USED[0], "podtrace".to_string()),
            (*log, "podtrace".to_string()),
        ]);
        assert_eq!(
            m,
            "create jobs.batch, get pods/log in namespace \"podtrace\""
        );
        let e = Error::Forbidden { missing: m };
        assert_eq!(
            e.to_string(),
            "you are missing permissions the trace needs: create jobs.batch, get pods/log in namespace \"podtrace\" (see manifests/rbac.yaml)"
        );
    }

    #[test]
    fn missing_permissions_name_each_namespace() {
        let get_pods = USED
            .iter()
            .find(|p| p.scope == Scope::Targets && p.verb == "get")
            .unwrap();
        let m = describe_missing(&[
            (USED[0], "podtrace".to_string()),
            (*get_pods, "shop".to_string()),
            (USED[2], "podtrace".to_string()),
        ]);
        assert_eq!(
            m,
            "create jobs.batch, delete jobs.batch in namespace \"podtrace\"; get pods in namespace \"shop\""
        );
    }

    /// (cluster-wide, by name, verb, group, resource, subresource).
    type Grant = (bool, bool, String, String, String, String);

    fn grant(wide: bool, named: bool, verb: &str, group: &str, resource: &str) -> Grant {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        (
            wide,
            named,
            verb.into(),
            group.into(),
            resource.into(),
            sub.into(),
        )
    }

    /// What manifests/rbac.yaml grants, rule by rule.
    fn granted() -> std::collections::BTreeSet<Grant> {
        use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
        use serde::Deserialize;
        let text = include_str!("../../manifests/rbac.yaml");
        let mut out = std::collections::BTreeSet::new();
        let mut add = |wide: bool, rules: Vec<PolicyRule>| {
            for r in rules {
                let names = r.resource_names.unwrap_or_default();
                if !names.is_empty() {
                    assert_eq!(
                        names,
                        ["podtrace"],
                        "only the default job namespace by name"
                    );
                }
                for verb in &r.verbs {
                    for group in r.api_groups.iter().flatten() {
                        for res in r.resources.iter().flatten() {
                            assert!(verb != "*" && group != "*" && res != "*", "no wildcards");
                            out.insert(grant(wide, !names.is_empty(), verb, group, res));
                        }
                    }
                }
            }
        };
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            match v["kind"].as_str() {
                Some("ClusterRole") => {
                    let r: ClusterRole = serde_yaml::from_value(v).unwrap();
                    add(true, r.rules.unwrap_or_default());
                }
                Some("Role") => {
                    let r: Role = serde_yaml::from_value(v).unwrap();
                    assert_eq!(r.metadata.namespace.as_deref(), Some("podtrace"));
                    add(false, r.rules.unwrap_or_default());
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn rbac_manifest_grants_exactly_what_the_plugin_uses() {
        let used: std::collections::BTreeSet<Grant> = USED
            .iter()
            .map(|p| {
                let (wide, named) = match p.scope {
                    Scope::JobNamespace => (false, false),
                    Scope::Targets | Scope::AllNamespaces => (true, false),
                    Scope::JobNamespaceObject => (true, true),
                };
                let res = if p.subresource.is_empty() {
                    p.resource.to_string()
                } else {
                    format!("{}/{}", p.resource, p.subresource)
                };
                grant(wide, named, p.verb, p.group, &res)
            })
            .collect();
        let granted = granted();
        let unused: Vec<_> = granted.difference(&used).collect();
        let missing: Vec<_> = used.difference(&granted).collect();
        assert!(
            unused.is_empty() && missing.is_empty(),
            "manifests/rbac.yaml grants what the plugin does not use: {unused:?}; \
             and lacks what it uses: {missing:?}"
        );
    }

    #[test]
    fn only_privileged_or_unlabelled_namespaces_admit_the_runner() {
        assert!(psa_admits_privileged(None));
        assert!(psa_admits_privileged(Some("privileged")));
        assert!(!psa_admits_privileged(Some("baseline")));
        assert!(!psa_admits_privileged(Some("restricted")));
    }
}

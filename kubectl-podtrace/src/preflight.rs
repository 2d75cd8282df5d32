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
pub const PSA_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// One permission: verb, API group, resource, subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
}

const fn perm(verb: &'static str, group: &'static str, resource: &'static str) -> Permission {
    Permission {
        verb,
        group,
        resource,
        subresource: "",
    }
}

/// Everything a session does in the job namespace.
pub const REQUIRED: &[Permission] = &[
    perm("create", "batch", "jobs"),
    perm("get", "batch", "jobs"),
    perm("list", "batch", "jobs"),
    perm("watch", "batch", "jobs"),
    perm("delete", "batch", "jobs"),
    perm("get", "", "pods"),
    perm("list", "", "pods"),
    perm("watch", "", "pods"),
    Permission {
        verb: "get",
        group: "",
        resource: "pods",
        subresource: "log",
    },
    perm("list", "", "events"),
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

/// Formats missing permissions: `create jobs.batch, get pods/log in namespace "podtrace"`.
pub fn describe_missing(missing: &[Permission], namespace: &str) -> String {
    let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
    format!("{} in namespace \"{namespace}\"", list.join(", "))
}

/// Whether a Pod Security enforce level admits the runner's pod.
pub fn psa_admits_privileged(level: Option<&str>) -> bool {
    matches!(level, None | Some("privileged"))
}

/// Runs every check; the first failure is returned.
pub async fn check(client: &kube::Client, namespace: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(None) => return Err(Error::NamespaceMissing(namespace.to_string())),
        Ok(Some(ns)) => {
            let level = ns
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PSA_ENFORCE_LABEL))
                .map(String::as_str);
            if !psa_admits_privileged(level) {
                return Err(Error::PodSecurity {
                    namespace: namespace.to_string(),
                    level: level.unwrap_or_default().to_string(),
                });
            }
        }
        // Reading namespaces is not required; admission will still tell.
        Err(e) if Error::status_code(&e) == Some(403) => {
            tracing::debug!("cannot read namespace {namespace}: {e}");
        }
        Err(e) => return Err(Error::kube(format!("get namespace {namespace}"), e)),
    }

    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let checks = REQUIRED.iter().map(|p| {
        let reviews = reviews.clone();
        async move {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.to_string()),
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
            (p, answer)
        }
    });
    let mut missing = Vec::new();
    for (p, answer) in join_all(checks).await {
        match answer {
            Ok(r) => {
                if !r.status.is_some_and(|s| s.allowed) {
                    missing.push(*p);
                }
            }
            Err(e) => {
                return Err(Error::kube(
                    "check your permissions (SelfSubjectAccessReview)",
                    e,
                ));
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::Forbidden {
            missing: describe_missing(&missing, namespace),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_permissions_are_listed_exactly() {
        let m = describe_missing(&[REQUIRED[0], REQUIRED[8]], "podtrace");
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
    fn only_privileged_or_unlabelled_namespaces_admit_the_runner() {
        assert!(psa_admits_privileged(None));
        assert!(psa_admits_privileged(Some("privileged")));
        assert!(!psa_admits_privileged(Some("baseline")));
        assert!(!psa_admits_privileged(Some("restricted")));
    }
}

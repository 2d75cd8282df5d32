// SPDX-License-Identifier: Apache-2.0
//! Every way the plugin can fail, each as one clear sentence.

use std::time::Duration;

/// An error the user sees as `error: <sentence>`, with exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered, or could not be reached, while doing something.
    #[error("{message}")]
    Api {
        message: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
    },
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{0}")]
    Usage(String),
    #[error("pod \"{name}\" not found in namespace \"{namespace}\"{hint}")]
    PodNotFound {
        namespace: String,
        name: String,
        /// `; did you mean …?` or empty.
        hint: String,
    },
    /// A workload, Service or selector that names no pod to trace.
    #[error("{0}")]
    Target(String),
    #[error("pod {pod} is {state}: {doing}")]
    PodNotReady {
        pod: String,
        state: String,
        doing: String,
    },
    #[error(
        "pod {namespace}/{name} will not start: its container is in {reason}{message}; fix the \
         pod (see `kubectl describe pod -n {namespace} {name}`)"
    )]
    PodWillNotStart {
        namespace: String,
        name: String,
        reason: String,
        /// ` (the kubelet's message)` or empty.
        message: String,
    },
    #[error(
        "the job namespace \"{0}\" does not exist: create it with \
         `kubectl apply -f manifests/namespace.yaml` (or `kubectl create namespace {0}` and \
         `kubectl label namespace {0} pod-security.kubernetes.io/enforce=privileged`)"
    )]
    NamespaceMissing(String),
    #[error("you are missing permissions the trace needs: {missing} (see manifests/rbac.yaml)")]
    Forbidden { missing: String },
    #[error(
        "namespace \"{namespace}\" enforces Pod Security \"{level}\", which rejects the \
         privileged trace pod: run `kubectl label namespace {namespace} \
         pod-security.kubernetes.io/enforce=privileged --overwrite`"
    )]
    PodSecurity { namespace: String, level: String },
    #[error("cannot pull the runner image \"{image}\" on node {node}: {reason}{message}")]
    ImagePull {
        image: String,
        node: String,
        reason: String,
        message: String,
    },
    #[error("the trace pod for node {node} cannot be scheduled: {message}")]
    Unschedulable { node: String, message: String },
    #[error("the cluster refused to create the trace pod for node {node}: {message}")]
    Rejected { node: String, message: String },
    #[error("the runner on node {node} exited with code {code} before tracing started{logs}")]
    RunnerExited {
        node: String,
        code: i32,
        /// Its last log lines, formatted, or empty.
        logs: String,
    },
    #[error("the runners were not tracing after {}s (--start-timeout): {waiting}", .timeout.as_secs())]
    StartTimeout { timeout: Duration, waiting: String },
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Describes a failed API call as one sentence; `action` says what we were
    /// doing, e.g. `get pod default/nginx`.
    pub fn kube(action: impl std::fmt::Display, err: kube::Error) -> Error {
        Error::Api {
            message: describe_kube_error(&action.to_string(), &err),
            status: Error::status_code(&err),
        }
    }

    /// Whether the API server said 403 Forbidden.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Error::Api {
                status: Some(403),
                ..
            }
        )
    }

    /// The HTTP status of an API error.
    pub fn status_code(err: &kube::Error) -> Option<u16> {
        match err {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

/// One sentence for a failed API call.
pub fn describe_kube_error(action: &str, err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            match status.code {
                401 => format!(
                    "cannot {action}: the API server did not accept your credentials ({message}); \
                     log in again or check the kubeconfig user"
                ),
                403 => format!("cannot {action}: forbidden: {message}"),
                404 => format!("cannot {action}: not found: {message}"),
                409 => format!("cannot {action}: conflict: {message}"),
                410 => format!("cannot {action}: the API server expired our view: {message}"),
                422 => format!("cannot {action}: the API server rejected it as invalid: {message}"),
                429 => format!("cannot {action}: the API server is throttling us: {message}"),
                504 => format!("cannot {action}: the API server timed out: {message}"),
                code => format!("cannot {action}: the API server answered {code}: {message}"),
            }
        }
        other => {
            let chain = error_chain(other);
            let lower = chain.to_lowercase();
            if lower.contains("connection refused") {
                format!(
                    "cannot {action}: the API server refused the connection (is the cluster \
                     up, and is the kubeconfig's server address right?)"
                )
            } else if lower.contains("timed out") || lower.contains("timeout") {
                format!("cannot {action}: timed out talking to the API server")
            } else if lower.contains("dns") || lower.contains("failed to lookup") {
                format!("cannot {action}: cannot resolve the API server's address ({chain})")
            } else if lower.contains("certificate") || lower.contains("tls") {
                format!("cannot {action}: TLS with the API server failed ({chain})")
            } else {
                format!("cannot {action}: {chain}")
            }
        }
    }
}

/// The messages of an error and its sources, joined with `: `, without the
/// repetition kube's wrappers add.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    // The innermost message is usually the informative one.
    parts.last().cloned().unwrap_or_default()
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Names among `candidates` close to `name`: sharing a prefix or substring,
/// or a few edits away; best first, at most five.
pub fn close_matches<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let d = edit_distance(name, c);
            let related = c.contains(name) || name.contains(c) || c.starts_with(name);
            let limit = (name.len() / 3).max(2);
            (related || d <= limit).then_some((if related { 0 } else { d }, c))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(5)
        .map(|(_, c)| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn api_errors_are_one_sentence() {
        let m = describe_kube_error(
            "create jobs in namespace podtrace",
            &api(
                403,
                "Forbidden",
                "jobs.batch is forbidden: User \"dev\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"podtrace\"",
            ),
        );
        assert_eq!(
            m,
            "cannot create jobs in namespace podtrace: forbidden: jobs.batch is forbidden: User \"dev\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"podtrace\""
        );
        assert!(!m.contains('\n'));
        let m = describe_kube_error(
            "get pod default/x",
            &api(404, "NotFound", "pods \"x\" not found"),
        );
        assert_eq!(
            m,
            "cannot get pod default/x: not found: pods \"x\" not found"
        );
        let m = describe_kube_error(
            "create job",
            &api(409, "AlreadyExists", "jobs.batch \"a\" already exists"),
        );
        assert!(
            m.contains("conflict: jobs.batch \"a\" already exists"),
            "{m}"
        );
        let m = describe_kube_error(
            "create job",
            &api(422, "Invalid", "Job.batch \"a\" is invalid"),
        );
        assert!(m.contains("rejected it as invalid"), "{m}");
        let m = describe_kube_error("list pods", &api(500, "InternalError", "boom"));
        assert_eq!(m, "cannot list pods: the API server answered 500: boom");
    }

    #[test]
    fn connection_errors_are_explained() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let e = kube::Error::Service(Box::new(io));
        let m = describe_kube_error("get pod default/x", &e);
        assert!(
            m.starts_with("cannot get pod default/x: the API server refused the connection"),
            "{m}"
        );
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "operation timed out");
        let m = describe_kube_error("list pods", &kube::Error::Service(Box::new(io)));
        assert_eq!(m, "cannot list pods: timed out talking to the API server");
    }

    #[test]
    fn user_errors_name_the_fix() {
        let e = Error::PodNotFound {
            namespace: "default".into(),
            name: "ngnix".into(),
            hint: "; did you mean nginx-demo?".into(),
        };
        assert_eq!(
            e.to_string(),
            "pod \"ngnix\" not found in namespace \"default\"; did you mean nginx-demo?"
        );
        let e = Error::PodSecurity {
            namespace: "podtrace".into(),
            level: "baseline".into(),
        };
        assert!(e
            .to_string()
            .contains("pod-security.kubernetes.io/enforce=privileged"));
        let e = Error::NamespaceMissing("podtrace".into());
        assert!(e.to_string().contains("manifests/namespace.yaml"));
        let e = Error::ImagePull {
            image: "ghcr.io/x/y:v1".into(),
            node: "n1".into(),
            reason: "ErrImagePull".into(),
            message: ": not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot pull the runner image \"ghcr.io/x/y:v1\" on node n1: ErrImagePull: not found"
        );
    }

    #[test]
    fn close_matches_rank_related_names() {
        let pods = ["nginx-demo", "curl-demo", "nginx-demo-2", "redis"];
        assert_eq!(
            close_matches("nginx", pods),
            vec!["nginx-demo", "nginx-demo-2"]
        );
        assert_eq!(close_matches("ngnix-demo", pods), vec!["nginx-demo"]);
        assert!(close_matches("postgres", pods).is_empty());
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The trace Job: one pure function from what to trace to the Job object,
//! checked against golden YAML in `tests/golden/`.
//!
//! Every field used is in `batch/v1` and `core/v1` as of Kubernetes 1.23
//! (`ttlSecondsAfterFinished` went GA then), the oldest server we support.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, EnvVarSource, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podtrace::runner_args::{Format, RunnerArgs};

use crate::cli::Security;
use crate::resolve::NodePlan;

mod dry_run;
pub use dry_run::to_yaml;

/// Label every object of ours carries.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label with the session id: one per `kubectl podtrace` run.
pub const SESSION_LABEL: &str = "podtrace.io/session";
/// Label with the caller (kubeconfig user), made label-safe.
pub const CALLER_LABEL: &str = "podtrace.io/caller";
/// Selects everything this plugin created.
pub const OURS_SELECTOR: &str =
    "app.kubernetes.io/name=podtrace,app.kubernetes.io/managed-by=kubectl-podtrace";
/// The runner's container.
pub const CONTAINER: &str = "runner";
/// Seconds a finished Job stays around for `kubectl logs` before the TTL
/// controller deletes it.
pub const TTL_AFTER_FINISHED: i32 = 300;
/// Seconds the runner gets after SIGTERM to detach and write its summary.
pub const GRACE_PERIOD: i64 = 10;

/// Everything that decides one node's trace Job.
#[derive(Debug, Clone)]
pub struct JobInput<'a> {
    /// Session id (lowercase letters and digits).
    pub session: &'a str,
    /// Position of this node in the session, for a short unique name.
    pub index: usize,
    pub namespace: &'a str,
    pub plan: &'a NodePlan,
    /// Every target of the session, `ns/name`.
    pub targets: &'a [String],
    pub image: &'a str,
    pub ports: &'a [u16],
    pub packets: bool,
    /// `--snaplen` (with `--write`): packet bytes the runner copies.
    pub snaplen: Option<u32>,
    /// `--duration`: the runner stops by itself after this long.
    pub duration: Option<Duration>,
    /// `--max-duration`: the server-side deadline.
    pub max_duration: Duration,
    pub security: Security,
    /// The kubeconfig user.
    pub caller: &'a str,
    /// RFC 3339 creation time.
    pub created: &'a str,
}

/// The Job name for a session and node index.
pub fn job_name(session: &str, index: usize) -> String {
    format!("podtrace-{session}-{index}")
}

/// Makes any string a valid label value (≤ 63 chars of `[A-Za-z0-9._-]`,
/// starting and ending with an alphanumeric).
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "unknown".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The runner's command line for a node.
pub fn runner_args(input: &JobInput<'_>) -> RunnerArgs {
    RunnerArgs {
        pod_ips: input.plan.pod_ips.clone(),
        peer_ips: input.plan.peer_ips.clone(),
        ports: input.ports.to_vec(),
        packets: input.packets,
        snaplen: input.snaplen,
        duration: input.duration,
        format: Format::Json,
        node_name: Some(input.plan.node.clone()),
    }
}

/// Builds one node's trace Job.
pub fn job_spec(input: &JobInput<'_>) -> Job {
    let s = |v: &str| v.to_string();
    let mut labels = BTreeMap::from([
        (s(NAME_LABEL), s("podtrace")),
        (s(MANAGED_BY_LABEL), s("kubectl-podtrace")),
        (s(SESSION_LABEL), s(input.session)),
    ]);
    labels.insert(s(CALLER_LABEL), label_value(input.caller));
    let pod_labels = labels.clone();
    let annotations = BTreeMap::from([
        (s("podtrace.io/targets"), input.targets.join(",")),
        (s("podtrace.io/node"), input.plan.node.clone()),
        (s("podtrace.io/caller"), s(input.caller)),
        (s("podtrace.io/created"), s(input.created)),
    ]);

    let security_context = match input.security {
        Security::Privileged => SecurityContext {
            privileged: Some(true),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        },
        // Least privilege, each capability measured as needed (docs/image.md):
        // BPF programs and maps, tracepoints, tc and the pods' addresses,
        // other processes' /proc/PID/ns/net. No SYS_ADMIN: the runner enters
        // no namespace. Unconfined: before containerd 1.7 (and in CRI-O's
        // profile) RuntimeDefault allows bpf(2) and perf_event_open(2) only
        // with SYS_ADMIN.
        Security::Capabilities => SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(0),
            capabilities: Some(Capabilities {
                add: Some(
                    ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"]
                        .map(s)
                        .to_vec(),
                ),
                drop: Some(vec![s("ALL")]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: s("Unconfined"),
                ..Default::default()
            }),
            ..Default::default()
        },
    };

    let container = Container {
        name: s(CONTAINER),
        image: Some(s(input.image)),
        image_pull_policy: Some(s("IfNotPresent")),
        command: Some(vec![s("/podtrace-runner")]),
        args: Some(runner_args(input).to_args()),
        env: Some(vec![EnvVar {
            name: s("NODE_NAME"),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: s("spec.nodeName"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                (s("cpu"), Quantity(s("50m"))),
                (s("memory"), Quantity(s("64Mi"))),
            ])),
            // BPF maps and ring buffers are charged to the pod's memory cgroup.
            limits: Some(BTreeMap::from([
                (s("cpu"), Quantity(s("500m"))),
                (s("memory"), Quantity(s("256Mi"))),
            ])),
            ..Default::default()
        }),
        security_context: Some(security_context),
        // No volumes: the runner attaches raw tracepoints (no tracefs), reads
        // BTF from /sys/kernel/btf (a privileged container's sysfs is the
        // node's), reaches pod network namespaces through /proc (hostPID)
        // and pins nothing (so no /sys/fs/bpf). Its tc/tcx links die with it.
        termination_message_policy: Some(s("FallbackToLogsOnError")),
        ..Default::default()
    };

    let pod_spec = PodSpec {
        // Pinned to the node with the same node affinity DaemonSets use, so
        // the scheduler still explains when the pod does not fit.
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: s("metadata.name"),
                            operator: s("In"),
                            values: Some(vec![input.plan.node.clone()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Trace pods wherever they are, even on tainted nodes.
        tolerations: Some(vec![Toleration {
            operator: Some(s("Exists")),
            ..Default::default()
        }]),
        host_network: Some(true),
        host_pid: Some(true),
        restart_policy: Some(s("Never")),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(GRACE_PERIOD),
        containers: vec![container],
        ..Default::default()
    };

    Job {
        metadata: ObjectMeta {
            name: Some(job_name(input.session, input.index)),
            namespace: Some(s(input.namespace)),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(input.max_duration.as_secs().max(1) as i64),
            ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Target;

    fn plan(node: &str, pod: &[&str], peer: &[&str]) -> NodePlan {
        NodePlan {
            node: node.into(),
            local: vec![Target {
                uid: "u1".into(),
                namespace: "default".into(),
                name: "curl-demo".into(),
                node: node.into(),
                ips: pod.iter().map(|i| i.parse().unwrap()).collect(),
                host_network: false,
            }],
            pod_ips: pod.iter().map(|i| i.parse().unwrap()).collect(),
            peer_ips: peer.iter().map(|i| i.parse().unwrap()).collect(),
        }
    }

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        assert_eq!(
            actual,
            expected,
            "{} differs (UPDATE_GOLDEN=1 to accept)",
            path.display()
        );
    }

    fn input<'a>(plan: &'a NodePlan, targets: &'a [String]) -> JobInput<'a> {
        JobInput {
            session: "k3x9q2",
            index: 0,
            namespace: "podtrace",
            plan,
            targets,
            image: "ghcr.io/podtrace/podtrace-runner:v0.1.0",
            ports: &[],
            packets: false,
            snaplen: None,
            duration: None,
            max_duration: Duration::from_secs(3600),
            security: Security::Privileged,
            caller: "kind-admin@example.com",
            created: "2025-11-25T14:37:18Z",
        }
    }

    #[test]
    fn two_pods_two_nodes_matches_golden() {
        let targets = vec![
            "default/curl-demo".to_string(),
            "default/nginx-demo".to_string(),
        ];
        let p1 = plan("node-1", &["10.244.1.2"], &["10.244.2.3"]);
        let p2 = plan("node-2", &["10.244.2.3"], &["10.244.1.2"]);
        let mut i2 = input(&p2, &targets);
        i2.index = 1;
        let yaml = to_yaml(&[job_spec(&input(&p1, &targets)), job_spec(&i2)]);
        golden("two-nodes.yaml", &yaml);
    }

    #[test]
    fn one_pod_with_flags_matches_golden() {
        let targets = vec!["web/nginx-demo".to_string()];
        let p = plan("worker-a", &["10.244.1.2", "fd00::2"], &[]);
        let mut i = input(&p, &targets);
        i.ports = &[80, 443];
        i.packets = true;
        i.duration = Some(Duration::from_secs(30));
        i.max_duration = Duration::from_secs(600);
        i.security = Security::Capabilities;
        golden("one-pod-capabilities.yaml", &to_yaml(&[job_spec(&i)]));
    }

    #[test]
    fn job_has_the_safety_properties() {
        let targets = vec!["default/a".to_string()];
        let p = plan("n", &["10.0.0.1"], &[]);
        let job = job_spec(&input(&p, &targets));
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(3600));
        assert!(spec.ttl_seconds_after_finished.is_some());
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.host_pid, Some(true));
        assert_eq!(
            pod.tolerations.unwrap()[0].operator.as_deref(),
            Some("Exists")
        );
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.privileged, Some(true));
    }

    #[test]
    fn the_jobs_runner_args_read_back_as_the_contract() {
        let targets = vec!["default/a".to_string()];
        let p = plan("-node", &["10.0.0.1", "fd00::1"], &["10.0.0.2"]);
        let mut i = input(&p, &targets);
        i.ports = &[53, 8080];
        i.duration = Some(Duration::from_millis(2500));
        let job = job_spec(&i);
        let args = job.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert_eq!(RunnerArgs::from_args(args).unwrap(), runner_args(&i));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(
            label_value("kind-admin@example.com"),
            "kind-admin_example.com"
        );
        assert_eq!(label_value("system:admin"), "system_admin");
        assert_eq!(label_value("@@"), "unknown");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }
}

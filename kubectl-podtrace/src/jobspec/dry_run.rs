// SPDX-License-Identifier: Apache-2.0
//! `--dry-run`: the trace Jobs as YAML that every reader takes as written.

use k8s_openapi::api::batch::v1::Job;

/// `--dry-run` output: the Jobs as one YAML stream. Every string is quoted,
/// so no reader takes one for another type: YAML 1.1 tools (PyYAML,
/// kubernetes-validate) read a plain `2026-11-29T08:27:47Z` as a timestamp
/// and `on`, `no` or `0x1f` as booleans and numbers.
pub fn to_yaml(jobs: &[Job]) -> String {
    let mut out = String::new();
    for job in jobs {
        let mut value = serde_json::to_value(job).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            // k8s-openapi leaves apiVersion/kind to the client; kubectl needs them.
            obj.insert("apiVersion".into(), "batch/v1".into());
            obj.insert("kind".into(), "Job".into());
        }
        out.push_str("---\n");
        // A JSON value always serializes; an empty document would still fail
        // the server's validation loudly.
        let options = serde_saphyr::ser_options! { quote_all: true };
        let _ = serde_saphyr::to_fmt_writer_with_options(&mut out, &value, options);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;
    use crate::cli::Security;
    use crate::jobspec::{job_spec, JobInput};
    use crate::resolve::NodePlan;

    /// Where scripts/install-deps.sh installs the official schema validator
    /// (PyPI `kubernetes-validate`); `KUBERNETES_VALIDATE` overrides it.
    const VALIDATOR: &str = "/opt/kubernetes-validate/bin/kubernetes-validate";

    fn plan(node: &str, pod: &str, peer: &str) -> NodePlan {
        NodePlan {
            node: node.into(),
            local: Vec::new(),
            pod_ips: vec![pod.parse().unwrap()],
            peer_ips: vec![peer.parse().unwrap()],
        }
    }

    fn jobs(security: Security, plans: &[NodePlan], caller: &str) -> Vec<Job> {
        let targets = [
            "default/curl-demo".to_string(),
            "default/nginx-demo".to_string(),
        ];
        plans
            .iter()
            .enumerate()
            .map(|(index, plan)| {
                job_spec(&JobInput {
                    session: "k3x9q2",
                    index,
                    namespace: "podtrace",
                    plan,
                    targets: &targets,
                    image: "ghcr.io/podtrace/podtrace-runner:v0.1.0",
                    ports: &[80],
                    packets: false,
                    snaplen: None,
                    duration: Some(Duration::from_millis(1500)),
                    max_duration: Duration::from_secs(3600),
                    security,
                    caller,
                    created: "2026-11-29T08:27:47Z",
                })
            })
            .collect()
    }

    /// `kubernetes-validate --strict` against Kubernetes 1.33's schemas,
    /// through PyYAML, a YAML 1.1 reader: a plain timestamp, `on` or `0x1F`
    /// would arrive as a datetime, a boolean or a number, not a string.
    #[test]
    fn dry_run_output_passes_the_official_schemas() {
        let validator = std::env::var("KUBERNETES_VALIDATE").unwrap_or_else(|_| VALIDATOR.into());
        assert!(
            std::path::Path::new(&validator).is_file(),
            "{validator} is missing: run scripts/install-deps.sh (as root) to install \
             kubernetes-validate, or set KUBERNETES_VALIDATE to its path"
        );
        let one = [plan("node-1", "10.244.1.2", "10.244.2.3")];
        let two = [one[0].clone(), plan("node-2", "10.244.2.3", "10.244.1.2")];
        for security in [Security::Privileged, Security::Capabilities] {
            for (plans, caller) in [(&one[..], "on"), (&two[..], "0x1F")] {
                let yaml = to_yaml(&jobs(security, plans, caller));
                let mut child = Command::new(&validator)
                    .args(["--strict", "-k", "1.33.0", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run {validator}: {e}"));
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(yaml.as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                let report = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{security:?}, {} node(s): {report}{}\n{yaml}",
                    plans.len(),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(
                    report.matches(" passed for resource job/").count(),
                    plans.len(),
                    "{report}"
                );
            }
        }
    }
}

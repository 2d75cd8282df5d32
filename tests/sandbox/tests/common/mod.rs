// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the sandbox's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use podtrace_sandbox::Sandbox;
use serde_json::json;

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// A kube client for `context` (the admin's when `None`).
pub async fn client(sandbox: &Sandbox, context: Option<&str>) -> kube::Client {
    let kc = Kubeconfig::read_from(sandbox.kubeconfig_path()).unwrap();
    let opts = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Waits (bounded by [`WAIT`]) until the pod `name` with `uid` is gone.
pub async fn wait_pod_deleted(pods: &kube::Api<Pod>, name: &str, uid: &str) {
    let gone = kube::runtime::wait::await_condition(
        pods.clone(),
        name,
        kube::runtime::wait::conditions::is_deleted(uid),
    );
    tokio::time::timeout(WAIT, gone)
        .await
        .unwrap_or_else(|_| panic!("pod {name} still there after {WAIT:?}"))
        .unwrap();
}

/// A stand-in runner: the runner's JSON-lines contract, its env and args
/// echoed, a stderr line, and a summary on SIGTERM.
pub fn fake_runner(dir: &Path) -> PathBuf {
    let path = dir.join("podtrace-runner");
    std::fs::write(
        &path,
        r#"#!/bin/sh
echo "{\"type\":\"hello\",\"node\":\"$NODE_NAME\",\"args\":\"$*\"}"
trap 'echo "{\"type\":\"summary\"}"; exit 0' TERM INT
echo "{\"type\":\"ready\"}"
echo "runner: attached (stderr)" >&2
case "$*" in *--duration*) sleep 0.3; echo '{"type":"summary"}'; exit 0;; esac
while true; do sleep 0.05; done
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A trace Job shaped like the plugin's: pinned, hostNetwork, privileged.
pub fn runner_job(name: &str, node: &str, args: &[&str]) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "podtrace"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "podtrace"}},
                "spec": {
                    "nodeName": node, "hostNetwork": true, "hostPID": true,
                    "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "runner", "image": "ghcr.io/podtrace/podtrace-runner:v0.1.0",
                        "command": ["podtrace-runner"], "args": args,
                        "securityContext": {"privileged": true},
                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    }],
                },
            },
        },
    }))
    .unwrap()
}

/// Network namespaces whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl ARGS`, bounded by [`WAIT`], with `stdin` piped in when given
/// (for `-f -`).
pub async fn kubectl(sb: &Sandbox, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut cmd = sb.kubectl();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = stdin.map(str::to_owned);
    let run = move || {
        let mut child = cmd.spawn()?;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = input {
            pipe.write_all(text.as_bytes())?;
        }
        drop(pipe);
        child.wait_with_output()
    };
    tokio::time::timeout(WAIT, tokio::task::spawn_blocking(run))
        .await
        .expect("kubectl timed out")
        .unwrap()
        .unwrap()
}

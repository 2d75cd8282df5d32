// SPDX-License-Identifier: Apache-2.0
//! The real `kubectl` on the PATH against the sandbox: a client we did not
//! write keeps the server honest.

mod common;

use std::process::Output;

use common::{client, fake_runner, runner_job, WAIT};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use podtrace_sandbox::{Rule, Sandbox, SandboxConfig, User};

async fn kubectl(sb: &Sandbox, args: &[&str]) -> Output {
    common::kubectl(sb, args, None).await
}

/// `kubectl ARGS -f -` with `manifest` on stdin.
async fn kubectl_stdin(sb: &Sandbox, args: &[&str], manifest: &str) -> Output {
    let all: Vec<&str> = args.iter().copied().chain(["-f", "-"]).collect();
    common::kubectl(sb, &all, Some(manifest)).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn start() -> (Sandbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        runner_bin: Some(fake_runner(dir.path())),
        ..SandboxConfig::default()
    };
    (Sandbox::start(config).await.unwrap(), dir)
}

#[tokio::test]
async fn kubectl_gets_pods_nodes_and_the_demo_pod_ip_by_jsonpath() {
    let (sb, _d) = start().await;
    let o = kubectl(&sb, &["get", "pods"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("NAME "), "{text}");
    for pod in ["nginx-demo", "curl-demo"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(pod))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("1/1") && line.contains("Running"), "{line}");
    }
    let o = kubectl(
        &sb,
        &["get", "pod", "nginx-demo", "-o", "jsonpath={.status.podIP}"],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        sb.pod_ip("default", "nginx-demo")
            .await
            .unwrap()
            .to_string()
    );
    let o = kubectl(&sb, &["get", "nodes", "-o", "wide"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("node-1") && stdout(&o).contains("Ready"),
        "{}",
        stdout(&o)
    );
    let o = kubectl(&sb, &["get", "pod", "missing"]).await;
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (NotFound): pods \"missing\" not found"
    );
    let o = kubectl(
        &sb,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=nginx-demo",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Started"), "{}", stdout(&o));
    sb.shutdown().await;
}

#[tokio::test]
async fn kubectl_lists_jobs_and_follows_logs_to_the_end() {
    let (sb, _d) = start().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    jobs.create(
        &PostParams::default(),
        &runner_job("tracer", "node-1", &["--duration", "1"]),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    let o = kubectl(&sb, &["get", "jobs", "-A"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("NAMESPACE "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("podtrace ") && l.contains("tracer")),
        "{text}"
    );
    // Wait for the pod to exist, then follow its log until the runner ends.
    let pod = tokio::time::timeout(WAIT, async {
        loop {
            let l = pods
                .list(&ListParams::default().labels("job-name=tracer"))
                .await
                .unwrap();
            if let Some(p) = l.items.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| c[0].state.as_ref().is_some_and(|s| s.waiting.is_none()))
            }) {
                return p.metadata.name.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let o = kubectl(&sb, &["logs", "-f", "-n", "podtrace", &pod]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.lines().next().unwrap().contains("\"type\":\"hello\""),
        "{text}"
    );
    assert_eq!(
        text.lines().last(),
        Some("{\"type\":\"summary\"}"),
        "{text}"
    );
    tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), "tracer", conditions::is_job_completed()),
    )
    .await
    .unwrap()
    .unwrap();
    let o = kubectl(
        &sb,
        &["logs", "-n", "podtrace", "job/tracer", "--tail", "1"],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\"type\":\"summary\"}\n");
    // kubectl's delete is Background: the pod goes with the Job.
    let o = kubectl(&sb, &["delete", "job", "-n", "podtrace", "tracer"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    tokio::time::timeout(WAIT, async {
        while !pods
            .list(&ListParams::default().labels("job-name=tracer"))
            .await
            .unwrap()
            .items
            .is_empty()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    sb.shutdown().await;
}

#[tokio::test]
async fn kubectl_sees_rbac_denials_worded_like_a_real_server() {
    let (sb, _d) = start().await;
    let ctx = sb
        .add_user(User::with_rules(
            "bob",
            vec![Rule::new(&["list"], &[""], &["pods"]).in_namespace("default")],
        ))
        .unwrap();
    let o = kubectl(
        &sb,
        &[
            "--context",
            &ctx,
            "get",
            "pods",
            "-n",
            "default",
            "-o",
            "name",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pod/nginx-demo"));
    let o = kubectl(&sb, &["--context", &ctx, "get", "jobs", "-n", "podtrace"]).await;
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (Forbidden): jobs.batch is forbidden: User \"bob\" cannot list resource \"jobs\" in API group \"batch\" in the namespace \"podtrace\""
    );
    let o = kubectl(
        &sb,
        &[
            "--context",
            &ctx,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "bob");
    let o = kubectl(
        &sb,
        &[
            "--context",
            &ctx,
            "auth",
            "can-i",
            "create",
            "jobs",
            "-n",
            "podtrace",
        ],
    )
    .await;
    assert_eq!(stdout(&o).trim(), "no");
    let o = kubectl(&sb, &["auth", "can-i", "create", "jobs", "-n", "podtrace"]).await;
    assert_eq!(stdout(&o).trim(), "yes");
    sb.shutdown().await;
}

/// A pod whose process ends on SIGTERM, or (`stubborn`) ignores it and so
/// stays for its whole 60 s grace period.
fn pod(ns: &str, name: &str, stubborn: bool) -> String {
    let trap = if stubborn { "trap '' TERM; " } else { "" };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "{trap}while true; do sleep 0.1; done"]
"#
    )
}

#[tokio::test]
async fn kubectl_creates_lists_and_deletes_namespaces_with_their_pods() {
    let (sb, _d) = start().await;
    // kubectl sends this one in protobuf.
    let o = kubectl(&sb, &["create", "namespace", "team-a"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "namespace/team-a created\n");
    let o = kubectl(&sb, &["create", "namespace", "team-a"]).await;
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (AlreadyExists): namespaces \"team-a\" already exists"
    );
    let o = kubectl(&sb, &["get", "ns"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("NAME "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().take(2).eq(["team-a", "Active"])),
        "{text}"
    );
    let o = kubectl(
        &sb,
        &[
            "get",
            "ns",
            "team-a",
            "-o",
            "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
        ],
    )
    .await;
    assert_eq!(stdout(&o), "team-a", "{}", stderr(&o));
    for (name, stubborn) in [("quick", false), ("stays", true)] {
        let o = kubectl_stdin(&sb, &["apply"], &pod("team-a", name, stubborn)).await;
        assert!(o.status.success(), "{}", stderr(&o));
        sb.wait_for_pod_phase("team-a", name, "Running", WAIT)
            .await
            .unwrap();
    }
    // Terminating while its pods stop; nothing new may start in it.
    let o = kubectl(&sb, &["delete", "namespace", "team-a", "--wait=false"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kubectl(
        &sb,
        &["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"],
    )
    .await;
    assert_eq!(stdout(&o), "Terminating", "{}", stderr(&o));
    let o = kubectl_stdin(&sb, &["create"], &pod("team-a", "late", false)).await;
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": pods \"late\" is forbidden: unable to create new content in namespace team-a because it is being terminated"
    );
    // The namespace controller deleted both pods: one is gone, the other
    // is in its grace period, and the namespace waits for it.
    let o = kubectl(
        &sb,
        &[
            "wait",
            "--for=delete",
            "-n",
            "team-a",
            "pod/quick",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let stays = sb.get_object("Pod", "team-a", "stays").unwrap();
    assert!(
        stays["metadata"]["deletionTimestamp"].is_string(),
        "{stays}"
    );
    assert!(sb.get_object("Namespace", "", "team-a").is_some());
    let o = kubectl(
        &sb,
        &[
            "delete",
            "-n",
            "team-a",
            "pod/stays",
            "--grace-period=0",
            "--force",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kubectl(
        &sb,
        &["wait", "--for=delete", "namespace/team-a", "--timeout=20s"],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kubectl(&sb, &["get", "ns", "team-a"]).await;
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (NotFound): namespaces \"team-a\" not found"
    );
    let o = kubectl(&sb, &["delete", "namespace", "default"]).await;
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (Forbidden): namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn kubectl_applies_namespaces_and_pods_with_validation_on() {
    let (sb, _d) = start().await;
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n";
    let o = kubectl_stdin(&sb, &["apply"], ns).await;
    assert_eq!(stdout(&o), "namespace/team-b created\n", "{}", stderr(&o));
    let o = kubectl_stdin(&sb, &["apply"], ns).await;
    assert_eq!(stdout(&o), "namespace/team-b unchanged\n", "{}", stderr(&o));
    // A change is a PATCH.
    let labelled = format!("{ns}  labels:\n    team: b\n");
    let o = kubectl_stdin(&sb, &["apply"], &labelled).await;
    assert_eq!(
        stdout(&o),
        "namespace/team-b configured\n",
        "{}",
        stderr(&o)
    );
    let labels = &sb.get_object("Namespace", "", "team-b").unwrap()["metadata"]["labels"];
    assert_eq!(labels["team"], "b");
    assert_eq!(labels["kubernetes.io/metadata.name"], "team-b");
    let o = kubectl_stdin(&sb, &["apply"], &pod("team-b", "web", false)).await;
    assert_eq!(stdout(&o), "pod/web created\n", "{}", stderr(&o));
    // kubectl explain reads the same OpenAPI document.
    let o = kubectl(&sb, &["explain", "pod.spec.hostNetwork"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("FIELD: hostNetwork <boolean>"),
        "{}",
        stdout(&o)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn kubectl_apply_refuses_unknown_fields_and_missing_namespaces() {
    let (sb, _d) = start().await;
    let bad = pod("default", "odd", false).replace("spec:\n", "spec:\n  foo: 1\n");
    let o = kubectl_stdin(&sb, &["apply"], &bad).await;
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (BadRequest): error when creating \"STDIN\": Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.foo\""
    );
    assert!(sb.get_object("Pod", "default", "odd").is_none());
    let o = kubectl_stdin(&sb, &["apply"], &pod("nowhere", "lost", false)).await;
    assert_eq!(
        stderr(&o).trim(),
        "Error from server (NotFound): error when creating \"STDIN\": namespaces \"nowhere\" not found"
    );
    sb.shutdown().await;
}

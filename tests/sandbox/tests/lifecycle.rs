// SPDX-License-Identifier: Apache-2.0
//! Start-up, teardown, isolation, the kubelet's failure paths and the
//! fault switches.

mod common;

use std::time::{Duration, Instant};

use common::{client, fake_runner, netns_with_prefix, runner_job, wait_pod_deleted, WAIT};
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use podtrace_sandbox::{PodManifest, RunnerCrash, Sandbox, SandboxConfig};

async fn start() -> (Sandbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        runner_bin: Some(fake_runner(dir.path())),
        ..SandboxConfig::default()
    };
    (Sandbox::start(config).await.unwrap(), dir)
}

fn waiting_reason(p: Option<&Pod>) -> Option<String> {
    p?.status.as_ref()?.container_statuses.as_ref()?[0]
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

async fn wait_pod(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    cond: impl Fn(Option<&Pod>) -> bool,
) -> Pod {
    tokio::time::timeout(WAIT, await_condition(pods.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name}: {what}"))
        .unwrap()
        .unwrap()
}

async fn job_pod(pods: &Api<Pod>, job: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let l = pods
                .list(&ListParams::default().labels(&format!("job-name={job}")))
                .await
                .unwrap();
            if let Some(p) = l.items.into_iter().next() {
                return p.metadata.name.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn shutdown_and_drop_leave_no_namespace_process_or_file() {
    let (sb, _d) = start().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    jobs.create(&PostParams::default(), &runner_job("t", "node-1", &[]))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    let name = job_pod(&pods, "t").await;
    wait_pod(&pods, &name, "running", |p| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Running")
    })
    .await;
    let prefix = sb.netns_prefix().to_owned();
    let kubeconfig = sb.kubeconfig_path().to_owned();
    assert!(
        netns_with_prefix(&prefix).len() >= 5,
        "fabric, 2 nodes, 2 pods"
    );
    let runners = sb.runner_processes();
    assert!(!runners.is_empty());
    sb.shutdown().await;
    assert_eq!(netns_with_prefix(&prefix), Vec::<String>::new());
    let left: Vec<String> = runners
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .collect();
    assert!(left.is_empty(), "runner processes left: {left:?}");
    assert!(!kubeconfig.exists());

    // Drop (no shutdown) cleans up as well.
    let (sb, _d2) = start().await;
    let prefix = sb.netns_prefix().to_owned();
    drop(sb);
    assert_eq!(netns_with_prefix(&prefix), Vec::<String>::new());
}

#[tokio::test]
async fn two_sandboxes_run_side_by_side_without_seeing_each_other() {
    let ((a, _da), (b, _db)) = tokio::join!(start(), start());
    assert_ne!(a.netns_prefix(), b.netns_prefix());
    assert_ne!(a.server_url(), b.server_url());
    let ca = client(&a, None).await;
    let jobs: Api<Job> = Api::namespaced(ca.clone(), "podtrace");
    jobs.create(
        &PostParams::default(),
        &runner_job("only-in-a", "node-1", &[]),
    )
    .await
    .unwrap();
    let cb = client(&b, None).await;
    let jobs_b: Api<Job> = Api::namespaced(cb.clone(), "podtrace");
    assert!(jobs_b
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    for sb in [&a, &b] {
        let ip = sb.pod_ip("default", "nginx-demo").await.unwrap();
        let out = sb
            .exec(
                "default",
                "curl-demo",
                &[
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "5",
                    &format!("http://{ip}/"),
                ],
            )
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    }
    // A's nginx is not reachable from B's pods: separate fabrics.
    let ip_a = a.pod_ip("default", "nginx-demo").await.unwrap();
    let out = b
        .exec(
            "default",
            "curl-demo",
            &["curl", "-s", "--max-time", "1", &format!("http://{ip_a}/")],
        )
        .unwrap();
    assert!(!out.status.success());
    let (pa, pb) = (a.netns_prefix().to_owned(), b.netns_prefix().to_owned());
    a.shutdown().await;
    assert!(netns_with_prefix(&pa).is_empty());
    assert!(
        !netns_with_prefix(&pb).is_empty(),
        "B survives A's teardown"
    );
    b.shutdown().await;
    assert!(netns_with_prefix(&pb).is_empty());
}

#[tokio::test]
async fn unknown_images_fail_to_pull_and_unschedulable_pods_say_why() {
    let (sb, _d) = start().await;
    let c = client(&sb, None).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    sb.create_pod(PodManifest::new(
        "default",
        "nope",
        "registry.example.com/team/nope:1.0",
        &[],
    ))
    .await
    .unwrap();
    let p = wait_pod(&pods, "nope", "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let err = pods.logs("nope", &LogParams::default()).await.unwrap_err();
    assert!(err.to_string().contains("container \"nope\" in pod \"nope\" is waiting to start: trying and failing to pull image"), "{err}");
    // A runnable image made unpullable by the fault switch.
    sb.fail_image_pulls("nginx:1.27");
    sb.create_pod(PodManifest::new("default", "web", "nginx:1.27", &[]))
        .await
        .unwrap();
    wait_pod(&pods, "web", "ErrImagePull", |p| {
        waiting_reason(p).is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    })
    .await;

    sb.cordon("node-1").unwrap();
    sb.taint_node("node-2", "dedicated", "infra", "NoSchedule")
        .unwrap();
    sb.create_pod(PodManifest::new(
        "default",
        "homeless",
        "busybox",
        &["sleep", "infinity"],
    ))
    .await
    .unwrap();
    let unschedulable = |p: Option<&Pod>| {
        p.and_then(|p| {
            p.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")
                .cloned()
        })
        .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    };
    let p = wait_pod(&pods, "homeless", "Unschedulable", unschedulable).await;
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        cond.message.unwrap(),
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn crashing_runner_fails_the_job_and_slow_pulls_hold_container_creating() {
    let (sb, _d) = start().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    sb.crash_runner_on_start(Some(RunnerCrash::default()));
    jobs.create(&PostParams::default(), &runner_job("crash", "node-1", &[]))
        .await
        .unwrap();
    let name = job_pod(&pods, "crash").await;
    let p = wait_pod(&pods, &name, "Failed", |p| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Failed")
    })
    .await;
    let term = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (1, Some("Error")));
    let log = pods.logs(&name, &LogParams::default()).await.unwrap();
    assert_eq!(log.trim(), RunnerCrash::default().message);
    let failed = |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref()?.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Failed" && c.reason.as_deref() == Some("BackoffLimitExceeded")
                })
            })
    };
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "crash", failed))
        .await
        .unwrap()
        .unwrap();
    sb.crash_runner_on_start(None);

    sb.set_image_pull_delay(Duration::from_millis(800));
    let started = Instant::now();
    jobs.create(&PostParams::default(), &runner_job("slow", "node-2", &[]))
        .await
        .unwrap();
    let name = job_pod(&pods, "slow").await;
    let p = wait_pod(&pods, &name, "ContainerCreating", |p| {
        waiting_reason(p).as_deref() == Some("ContainerCreating")
    })
    .await;
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let err = pods.logs(&name, &LogParams::default()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("is waiting to start: ContainerCreating"),
        "{err}"
    );
    wait_pod(&pods, &name, "Running", |p| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Running")
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(800));
    sb.shutdown().await;
}

#[tokio::test]
async fn pod_deletion_escalates_to_sigkill_after_the_grace_period_and_log_drops_cut_streams() {
    let (sb, _d) = start().await;
    let c = client(&sb, None).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut stubborn = PodManifest::new(
        "default",
        "stubborn",
        "busybox:1.36",
        &[
            "sh",
            "-c",
            "trap '' TERM; echo up; while true; do sleep 0.05; done",
        ],
    );
    stubborn.value["spec"]["terminationGracePeriodSeconds"] = serde_json::json!(1);
    sb.create_pod(stubborn).await.unwrap();
    wait_pod(&pods, "stubborn", "Running", |p| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Running")
    })
    .await;
    // A followed log, cut by the fault switch while the container runs.
    let mut lines = pods
        .log_stream(
            "stubborn",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .lines();
    assert_eq!(
        tokio::time::timeout(WAIT, lines.try_next())
            .await
            .unwrap()
            .unwrap()
            .as_deref(),
        Some("up")
    );
    sb.drop_log_streams();
    let cut = tokio::time::timeout(WAIT, lines.try_next())
        .await
        .expect("the stream is cut");
    assert!(cut.is_err() || cut.unwrap().is_none());
    let started = Instant::now();
    let uid = pods.get("stubborn").await.unwrap().metadata.uid.unwrap();
    pods.delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    wait_pod_deleted(&pods, "stubborn", &uid).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "SIGKILL after the 1 s grace period, took {took:?}"
    );
    sb.shutdown().await;
}

#[test]
fn the_up_binary_is_ready_fast_serves_kubectl_and_exec_and_cleans_up_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let started = Instant::now();
    let mut up = podtrace_sandbox::ChildLines::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_podtrace-sandbox"))
            .args(["up", "--kubeconfig"])
            .arg(&kubeconfig),
    )
    .unwrap();
    let first = up.wait_for(Duration::from_secs(30), |_| true);
    let ready_in = started.elapsed();
    let line = first
        .map(|i| up.seen[i].clone())
        .unwrap_or_else(|| panic!("podtrace-sandbox up wrote nothing; stderr: {}", up.stderr()));
    assert!(line.starts_with("podtrace-sandbox ready in "), "{line}");
    assert!(ready_in < Duration::from_secs(5), "ready in {ready_in:?}");
    eprintln!("podtrace-sandbox up: ready in {ready_in:?}");
    let prefix = podtrace_sandbox::read_netns_prefix(&kubeconfig).unwrap();
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args)
            .output()
            .unwrap()
    };
    let ip = kubectl(&["get", "pod", "nginx-demo", "-o", "jsonpath={.status.podIP}"]);
    let ip = String::from_utf8(ip.stdout).unwrap();
    assert!(ip.starts_with("10."), "{ip}");
    let exec = std::process::Command::new(env!("CARGO_BIN_EXE_podtrace-sandbox"))
        .args(["exec", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "curl-demo",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{ip}/"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(up.child.id() as i32, libc::SIGTERM) };
    assert!(up.child.wait().unwrap().success());
    assert!(netns_with_prefix(&prefix).is_empty());
    assert!(!kubeconfig.exists());
}

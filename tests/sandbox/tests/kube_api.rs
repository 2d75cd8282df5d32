// SPDX-License-Identifier: Apache-2.0
//! The API server through kube-rs: what the plugin relies on.

mod common;

use std::time::Duration;

use common::{client, fake_runner, runner_job, wait_pod_deleted, WAIT};
use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{watcher, WatchStreamExt as _};
use podtrace_sandbox::{Rule, Sandbox, SandboxConfig, User};
use serde_json::json;

async fn sandbox_with_fake_runner() -> (Sandbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        runner_bin: Some(fake_runner(dir.path())),
        ..SandboxConfig::default()
    };
    (Sandbox::start(config).await.unwrap(), dir)
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

async fn wait_job_pod_running(pods: &Api<Pod>, job: &str) -> Pod {
    let lp = watcher::Config::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let stream = watcher(pods.clone(), lp)
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    tokio::time::timeout(WAIT, async {
        while let Some(p) = stream.try_next().await.unwrap() {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                return p;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("job pod running")
}

#[tokio::test]
async fn discovery_nodes_namespaces_and_demo_pods() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let nodes: Api<Node> = Api::all(c.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    let info = list.items[0]
        .status
        .as_ref()
        .unwrap()
        .node_info
        .as_ref()
        .unwrap();
    assert_eq!(
        info.kernel_version.trim(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    let ns: Api<Namespace> = Api::all(c.clone());
    let podtrace = ns.get("podtrace").await.unwrap();
    assert_eq!(
        podtrace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let nginx = pods.get("nginx-demo").await.unwrap();
    let curl = pods.get("curl-demo").await.unwrap();
    let (ns1, ns2) = (
        nginx.spec.unwrap().node_name.unwrap(),
        curl.spec.unwrap().node_name.unwrap(),
    );
    assert_ne!(ns1, ns2, "demo pods are spread over the two nodes");
    let ip = nginx.status.unwrap().pod_ip.unwrap();
    // The check of curl_to_nginx_across_two_nodes: curl-demo reaches nginx-demo.
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
                &format!("http://{ip}/"),
            ],
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // Field selectors the plugin uses.
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={ns1}")))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 1);
    assert_eq!(
        on_node.items[0].metadata.name.as_deref(),
        Some("nginx-demo")
    );
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=curl-demo"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let err = pods.get("nope").await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.message, "pods \"nope\" not found");
            assert_eq!(s.reason, "NotFound");
        }
        e => panic!("{e}"),
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn job_runs_the_runner_in_the_node_netns_streams_logs_and_background_delete_removes_pods() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    jobs.create(
        &PostParams::default(),
        &runner_job("trace-a", "node-1", &["--pod-ip", "10.0.0.1"]),
    )
    .await
    .unwrap();
    let pod = wait_job_pod_running(&pods, "trace-a").await;
    let name = pod.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("trace-a-") && name.len() == "trace-a-".len() + 5,
        "{name}"
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
    assert_eq!(
        pod.status.as_ref().unwrap().pod_ip,
        pod.status.as_ref().unwrap().host_ip,
        "hostNetwork"
    );
    // Logs, followed: hello (with the downward-API node name), ready, stderr.
    let mut lines = pods
        .log_stream(
            &name,
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .lines();
    let hello = tokio::time::timeout(WAIT, lines.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        hello.contains("\"node\":\"node-1\"") && hello.contains("--pod-ip 10.0.0.1"),
        "{hello}"
    );
    let ready = tokio::time::timeout(WAIT, lines.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ready, "{\"type\":\"ready\"}");
    let stderr = tokio::time::timeout(WAIT, lines.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stderr, "runner: attached (stderr)");
    assert!(!sb.runner_processes().is_empty());
    // The runner runs in the node's network namespace.
    let netns = sb.netns_of("podtrace", &name).unwrap();
    assert!(netns.ends_with("node-1"), "{netns}");
    // Delete with Background propagation: the pod goes, SIGTERM → summary.
    jobs.delete("trace-a", &DeleteParams::background())
        .await
        .unwrap();
    let rest: Vec<String> = tokio::time::timeout(WAIT, lines.try_collect())
        .await
        .unwrap()
        .unwrap();
    // (sh may also say "Terminated" about its killed `sleep`.)
    assert_eq!(
        rest.last().map(String::as_str),
        Some("{\"type\":\"summary\"}"),
        "log follow ends with the container: {rest:?}"
    );
    wait_pod_deleted(&pods, &name, pod.metadata.uid.as_deref().unwrap()).await;
    assert!(
        sb.runner_processes().is_empty(),
        "runner left: {:?}",
        sb.runner_processes()
    );
    assert!(jobs.get_opt("trace-a").await.unwrap().is_none());
    sb.shutdown().await;
}

#[tokio::test]
async fn job_delete_without_policy_orphans_its_pod_and_foreground_waits_for_it() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    jobs.create(&PostParams::default(), &runner_job("orphan", "node-2", &[]))
        .await
        .unwrap();
    let pod = wait_job_pod_running(&pods, "orphan").await;
    jobs.delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    assert!(jobs.get_opt("orphan").await.unwrap().is_none());
    let still = pods
        .get(pod.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        still.status.unwrap().phase.as_deref(),
        Some("Running"),
        "orphaned pod keeps running"
    );
    assert!(still.metadata.owner_references.is_none_or(|o| o.is_empty()));
    assert!(!sb.runner_processes().is_empty());
    pods.delete(
        pod.metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    wait_pod_deleted(
        &pods,
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap(),
    )
    .await;

    // Foreground: the Job stays (with a deletionTimestamp) until its pod is gone.
    jobs.create(&PostParams::default(), &runner_job("fg", "node-1", &[]))
        .await
        .unwrap();
    let pod = wait_job_pod_running(&pods, "fg").await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    jobs.delete("fg", &dp).await.unwrap();
    let job = jobs.get_opt("fg").await.unwrap();
    if let Some(j) = job {
        assert!(j.metadata.deletion_timestamp.is_some());
    }
    let uid = pod.metadata.uid.clone().unwrap();
    wait_pod_deleted(&pods, pod.metadata.name.as_deref().unwrap(), &uid).await;
    tokio::time::timeout(WAIT, async {
        while jobs.get_opt("fg").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    assert!(sb.runner_processes().is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn job_completes_then_ttl_deletes_it_and_deadline_fails_another() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    let mut done = runner_job("done", "node-1", &["--duration", "1"]);
    done.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(1);
    jobs.create(&PostParams::default(), &done).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), "done", conditions::is_job_completed()),
    )
    .await
    .unwrap()
    .unwrap();
    let j = jobs.get("done").await.unwrap();
    assert_eq!(j.status.unwrap().succeeded, Some(1));
    let pod = &job_pods(&pods, "done").await[0];
    let cs = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let term = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    // TTL: the Job and its pod go.
    tokio::time::timeout(WAIT, async {
        while jobs.get_opt("done").await.unwrap().is_some()
            || !job_pods(&pods, "done").await.is_empty()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("ttlSecondsAfterFinished deletes the job and its pod");

    let mut slow = runner_job("deadline", "node-2", &[]);
    slow.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    jobs.create(&PostParams::default(), &slow).await.unwrap();
    let failed = |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref()?.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Failed"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("DeadlineExceeded")
                })
            })
    };
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "deadline", failed))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while !job_pods(&pods, "deadline").await.is_empty() || !sb.runner_processes().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the deadline kills the pod");
    let events: Api<Event> = Api::namespaced(c.clone(), "podtrace");
    let ev = events
        .list(&ListParams::default().fields("involvedObject.name=deadline,involvedObject.kind=Job"))
        .await
        .unwrap();
    assert!(
        ev.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DeadlineExceeded")),
        "{:?}",
        ev.items
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn rbac_pod_security_and_validation_errors_read_like_a_real_server() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let alice = sb
        .add_user(User::with_rules(
            "alice",
            vec![Rule::new(&["get", "list", "watch"], &[""], &["pods"])],
        ))
        .unwrap();
    let c = client(&sb, Some(&alice)).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    match jobs
        .create(&PostParams::default(), &runner_job("x", "node-1", &[]))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(s.message, "jobs.batch is forbidden: User \"alice\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"podtrace\"");
        }
        e => panic!("{e}"),
    }
    let ssar: Api<SelfSubjectAccessReview> = Api::all(c.clone());
    let review =
        |verb: &str, group: &str, resource: &str, sub: Option<&str>| SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some("podtrace".into()),
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    subresource: sub.map(str::to_owned),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
    let r = ssar
        .create(
            &PostParams::default(),
            &review("create", "batch", "jobs", None),
        )
        .await
        .unwrap();
    assert!(!r.status.unwrap().allowed);
    let r = ssar
        .create(&PostParams::default(), &review("list", "", "pods", None))
        .await
        .unwrap();
    assert!(r.status.unwrap().allowed);
    let r = ssar
        .create(
            &PostParams::default(),
            &review("get", "", "pods", Some("log")),
        )
        .await
        .unwrap();
    assert!(!r.status.unwrap().allowed);

    // Pod Security baseline: the Job is admitted, its pod is not.
    sb.set_pod_security("podtrace", "baseline");
    let admin = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), "podtrace");
    jobs.create(&PostParams::default(), &runner_job("psa", "node-1", &[]))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(admin.clone(), "podtrace");
    let ev = tokio::time::timeout(WAIT, async {
        loop {
            let l = events
                .list(&ListParams::default().fields("involvedObject.name=psa"))
                .await
                .unwrap();
            if let Some(e) = l
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedCreate"))
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let msg = ev.message.unwrap();
    assert!(msg.starts_with("Error creating: pods \"psa-"), "{msg}");
    assert!(msg.ends_with("is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true, hostPID=true), privileged (container \"runner\" must not set securityContext.privileged=true)"), "{msg}");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "podtrace");
    assert!(job_pods(&pods, "psa").await.is_empty());

    // Validation: strict unknown fields, invalid names, missing fields.
    let mut bad = serde_json::to_value(runner_job("strict", "node-1", &[])).unwrap();
    bad["spec"]["template"]["spec"]["containers"][0]["bogus"] = serde_json::json!(1);
    // kube's PostParams has no fieldValidation: send it as kubectl does.
    let req =
        hyper::Request::post("/apis/batch/v1/namespaces/podtrace/jobs?fieldValidation=Strict")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&bad).unwrap())
            .unwrap();
    match admin.request::<serde_json::Value>(req).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(s.message.contains("strict decoding error: unknown field \"spec.template.spec.containers[0].bogus\""), "{}", s.message);
        }
        e => panic!("{e}"),
    }
    let mut invalid = runner_job("Bad_Name", "node-1", &[]);
    invalid
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = None;
    match jobs
        .create(&PostParams::default(), &invalid)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.starts_with("Job.batch \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", s.message);
            assert!(
                s.message
                    .contains("spec.template.spec.containers[0].image: Required value"),
                "{}",
                s.message
            );
        }
        e => panic!("{e}"),
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn watches_resume_after_a_drop_and_get_410_after_compaction() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    // A too-old resourceVersion: the watch answers 410 Expired.
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    jobs.create(&PostParams::default(), &runner_job("w1", "node-1", &[]))
        .await
        .unwrap();
    sb.compact();
    let mut s = pods
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, s.next()).await.unwrap() {
        Some(Ok(kube::api::WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    // kube's watcher survives a dropped watch and sees what came after.
    let stream = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    let _ = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    sb.drop_watches();
    jobs.create(&PostParams::default(), &runner_job("w2", "node-2", &[]))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(p)) if p.metadata.name.as_deref().unwrap_or("").starts_with("w2-") => {
                    return
                }
                Some(_) => {}
                None => panic!("watcher ended"),
            }
        }
    })
    .await
    .expect("watcher recovers");
    sb.shutdown().await;
}

#[tokio::test]
async fn delete_collection_by_label_removes_jobs_and_their_pods_and_services_list() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    for (name, node) in [("dc-1", "node-1"), ("dc-2", "node-2")] {
        jobs.create(&PostParams::default(), &runner_job(name, node, &[]))
            .await
            .unwrap();
        wait_job_pod_running(&pods, name).await;
    }
    let lp = ListParams::default().labels("app.kubernetes.io/name=podtrace");
    jobs.delete_collection(&DeleteParams::background(), &lp)
        .await
        .unwrap();
    assert!(jobs.list(&lp).await.unwrap().items.is_empty());
    tokio::time::timeout(WAIT, async {
        while !pods.list(&lp).await.unwrap().items.is_empty() || !sb.runner_processes().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("pods of the deleted jobs go");
    // Services list: only the cluster's DNS, as kubeadm sets it up.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::all(c.clone());
    let names: Vec<String> = services
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s.metadata.namespace.as_deref().unwrap_or(""),
                s.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, ["kube-system/kube-dns"]);
    sb.shutdown().await;
}

#[tokio::test]
async fn a_job_pod_deleted_while_running_counts_as_failed() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "podtrace");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    // A container that dies of the SIGTERM (exit 143): the pod fails.
    let mut job = runner_job("victim", "node-1", &[]);
    let container = &mut job
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0];
    container.image = Some("busybox:1.36".into());
    container.command = Some(vec!["sleep".into(), "infinity".into()]);
    container.args = None;
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pod = wait_job_pod_running(&pods, "victim").await;
    pods.delete(
        pod.metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    let failed = |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref()?.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Failed" && c.reason.as_deref() == Some("BackoffLimitExceeded")
                })
            })
    };
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "victim", failed))
        .await
        .unwrap()
        .unwrap();
    // The first pod, and the replacement made while it terminated (then
    // deleted with the failed Job), both count as failed.
    let status = jobs.get("victim").await.unwrap().status.unwrap();
    assert!(status.failed.unwrap_or(0) >= 1, "{status:?}");
    tokio::time::timeout(WAIT, async {
        while !job_pods(&pods, "victim").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no pod left for a failed job");
    sb.shutdown().await;
}

#[tokio::test]
async fn a_pod_whose_job_is_gone_is_garbage_collected_and_an_ownerless_one_stays() {
    let (sb, _d) = sandbox_with_fake_runner().await;
    let c = client(&sb, None).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "podtrace");
    // What a Job controller acting on a stale cache leaves: a pod made for a
    // Job that was deleted a moment before.
    let template = runner_job("gone", "node-1", &[]).spec.unwrap().template;
    let pod = |name: &str, owner: Option<&str>| -> Pod {
        let owners = owner.map(|uid| {
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "gone", "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}])
        });
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": template.metadata.as_ref().unwrap().labels,
                         "ownerReferences": owners},
            "spec": template.spec,
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    pods.create(&pp, &pod("ownerless", None)).await.unwrap();
    let dangling = pods
        .create(
            &pp,
            &pod("dangling", Some("5c0e4a8e-0000-4000-8000-000000000000")),
        )
        .await
        .unwrap();
    // The collector deletes a pod whose Job is gone.
    wait_pod_deleted(&pods, "dangling", dangling.metadata.uid.as_deref().unwrap()).await;
    // The sweep that took the dangling pod saw this one too.
    assert!(pods.get_opt("ownerless").await.unwrap().is_some());
    sb.shutdown().await;
}

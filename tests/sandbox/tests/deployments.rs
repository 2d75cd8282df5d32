// SPDX-License-Identifier: Apache-2.0
//! Deployments through the real `kubectl`: create, scale, rollout restart
//! and status, delete (with each propagation), as on a cluster — names,
//! labels, owners, new pods with new names and addresses on a rollout.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{client, netns_with_prefix, WAIT};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use podtrace_sandbox::{Sandbox, SandboxConfig};

async fn kubectl(sb: &Sandbox, args: &[&str]) -> Output {
    let mut cmd = sb.kubectl();
    cmd.args(args);
    tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .expect("kubectl timed out")
        .unwrap()
        .unwrap()
}

/// `kubectl ARGS`, which must succeed; its stdout.
async fn ok(sb: &Sandbox, args: &[&str]) -> String {
    let o = kubectl(sb, args).await;
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `check` until it gives `Some`, for at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The Ready pods labelled `app=APP`, once there are exactly `n` pods.
async fn ready_pods(pods: &Api<Pod>, app: &str, n: usize) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("app={app}"));
    until(&format!("{n} ready {app} pods and no others"), || async {
        let list = pods.list(&lp).await.ok()?.items;
        (list.len() == n && list.iter().all(is_ready)).then_some(list)
    })
    .await
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// The one owner reference, which must be the controller's.
fn controller(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String, String) {
    let refs = meta.owner_references.clone().unwrap_or_default();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].controller, Some(true), "{refs:?}");
    (
        refs[0].kind.clone(),
        refs[0].name.clone(),
        refs[0].uid.clone(),
    )
}

async fn start() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.unwrap()
}

#[tokio::test]
async fn create_scale_and_delete_a_deployment_with_kubectl() {
    let sb = start().await;
    let kc = client(&sb, None).await;
    let (deploys, sets, pods): (Api<Deployment>, Api<ReplicaSet>, Api<Pod>) = (
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc, "default"),
    );
    let out = ok(
        &sb,
        &[
            "create",
            "deployment",
            "nginx",
            "--image=nginx",
            "--replicas=2",
        ],
    )
    .await;
    assert_eq!(out.trim(), "deployment.apps/nginx created");
    let two = ready_pods(&pods, "nginx", 2).await;

    // Deployment → ReplicaSet → Pods, named and labelled as on a cluster.
    let d = deploys.get("nginx").await.unwrap();
    let rs_list = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs_list.len(), 1);
    let rs = &rs_list[0];
    let rs_name = rs.metadata.name.clone().unwrap();
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(rs_name, format!("nginx-{hash}"));
    assert_eq!(
        controller(&rs.metadata),
        (
            "Deployment".into(),
            "nginx".into(),
            d.metadata.uid.clone().unwrap()
        )
    );
    let mut nodes = BTreeSet::new();
    for p in &two {
        let n = name(p);
        let suffix = n
            .strip_prefix(&format!("{rs_name}-"))
            .unwrap_or_else(|| panic!("{n}"));
        assert_eq!(suffix.len(), 5, "{n}");
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "nginx");
        assert_eq!(labels["pod-template-hash"], hash);
        assert_eq!(
            controller(&p.metadata),
            (
                "ReplicaSet".into(),
                rs_name.clone(),
                rs.metadata.uid.clone().unwrap()
            )
        );
        nodes.insert(p.spec.as_ref().unwrap().node_name.clone().unwrap());
    }
    assert_eq!(
        nodes.len(),
        2,
        "two replicas spread over both nodes: {nodes:?}"
    );

    // The status `kubectl rollout status` reads.
    let d = until("the deployment's status", || async {
        let d = deploys.get("nginx").await.ok()?;
        let s = d.status.clone()?;
        (s.available_replicas == Some(2)).then_some(d)
    })
    .await;
    let s = d.status.unwrap();
    assert_eq!(
        (s.replicas, s.ready_replicas, s.updated_replicas),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(s.observed_generation, d.metadata.generation);
    let conds = s.conditions.unwrap();
    let cond = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(cond("Available").status, "True");
    assert_eq!(
        cond("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let table = ok(&sb, &["get", "deploy,rs"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("deployment.apps/nginx ") && l.contains("2/2")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("replicaset.apps/{rs_name} "))),
        "{table}"
    );

    // Scale up and down: the same ReplicaSet, a new generation each time.
    let out = ok(&sb, &["scale", "deployment", "nginx", "--replicas=3"]).await;
    assert_eq!(out.trim(), "deployment.apps/nginx scaled");
    ready_pods(&pods, "nginx", 3).await;
    // With a precondition, kubectl reads the Scale and PUTs it back.
    let o = kubectl(
        &sb,
        &[
            "scale",
            "deploy/nginx",
            "--current-replicas=5",
            "--replicas=1",
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Expected replicas to be 5, was 3"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(
        &sb,
        &[
            "scale",
            "deploy/nginx",
            "--current-replicas=3",
            "--replicas=1",
        ],
    )
    .await;
    let one = ready_pods(&pods, "nginx", 1).await;
    assert!(name(&one[0]).starts_with(&format!("{rs_name}-")));
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let d = deploys.get("nginx").await.unwrap();
    assert_eq!(d.metadata.generation, Some(3));
    let out = ok(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=20s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    // Deleting the Deployment takes its ReplicaSet and pods along.
    ok(&sb, &["delete", "deployment", "nginx"]).await;
    until("the ReplicaSet and pods to go", || async {
        let rs = sets.list(&ListParams::default()).await.ok()?.items;
        let left = pods
            .list(&ListParams::default().labels("app=nginx"))
            .await
            .ok()?
            .items;
        (rs.is_empty() && left.is_empty()).then_some(())
    })
    .await;
    let prefix = sb.netns_prefix().to_owned();
    sb.shutdown().await;
    assert_eq!(netns_with_prefix(&prefix), Vec::<String>::new());
}

#[tokio::test]
async fn rollout_restart_gives_new_pods_new_names_and_addresses() {
    let sb = start().await;
    let kc = client(&sb, None).await;
    let (deploys, sets, pods): (Api<Deployment>, Api<ReplicaSet>, Api<Pod>) = (
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc, "default"),
    );
    ok(
        &sb,
        &[
            "create",
            "deployment",
            "nginx",
            "--image=nginx",
            "--replicas=2",
        ],
    )
    .await;
    let before = ready_pods(&pods, "nginx", 2).await;
    ok(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=20s"],
    )
    .await;

    let out = ok(&sb, &["rollout", "restart", "deployment", "nginx"]).await;
    assert_eq!(out.trim(), "deployment.apps/nginx restarted");
    // `rollout status` watches until the new ReplicaSet is complete.
    let started = Instant::now();
    let out = ok(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=20s"],
    )
    .await;
    assert!(
        out.contains("deployment \"nginx\" successfully rolled out"),
        "{out}"
    );
    assert!(started.elapsed() < WAIT);

    let after = ready_pods(&pods, "nginx", 2).await;
    let names = |ps: &[Pod]| ps.iter().map(name).collect::<BTreeSet<_>>();
    let ips = |ps: &[Pod]| ps.iter().map(ip).collect::<BTreeSet<_>>();
    assert!(
        names(&before).is_disjoint(&names(&after)),
        "{:?} {:?}",
        names(&before),
        names(&after)
    );
    assert!(
        ips(&before).is_disjoint(&ips(&after)),
        "{:?} {:?}",
        ips(&before),
        ips(&after)
    );
    assert!(after.iter().all(|p| !ip(p).is_empty()));
    for p in &before {
        let err = pods.get(&name(p)).await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref e) if e.code == 404),
            "{err}"
        );
    }

    // The patch changed the template: a new generation, a new ReplicaSet;
    // the old one is kept at zero for `rollout undo`.
    let d = deploys.get("nginx").await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.as_ref().unwrap().observed_generation, Some(2));
    let annotations = d
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    let mut rs = sets.list(&ListParams::default()).await.unwrap().items;
    rs.sort_by_key(|r| r.spec.as_ref().unwrap().replicas);
    let replicas: Vec<Option<i32>> = rs
        .iter()
        .map(|r| r.spec.as_ref().unwrap().replicas)
        .collect();
    assert_eq!(replicas, [Some(0), Some(2)]);
    let new_rs = rs[1].metadata.name.clone().unwrap();
    assert!(after
        .iter()
        .all(|p| name(p).starts_with(&format!("{new_rs}-"))));
    sb.shutdown().await;
}

#[tokio::test]
async fn foreground_and_orphan_deletion_and_adoption_by_a_new_deployment() {
    let sb = start().await;
    let kc = client(&sb, None).await;
    let (deploys, sets, pods): (Api<Deployment>, Api<ReplicaSet>, Api<Pod>) = (
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc, "default"),
    );
    ok(
        &sb,
        &[
            "create",
            "deployment",
            "kept",
            "--image=nginx",
            "--replicas=1",
        ],
    )
    .await;
    ok(
        &sb,
        &[
            "create",
            "deployment",
            "gone",
            "--image=nginx",
            "--replicas=1",
        ],
    )
    .await;
    ready_pods(&pods, "kept", 1).await;
    ready_pods(&pods, "gone", 1).await;

    // Orphan: the ReplicaSet and its pod stay, without the owner reference.
    ok(&sb, &["delete", "deployment", "kept", "--cascade=orphan"]).await;
    let rs = until("the orphaned ReplicaSet", || async {
        let rs = sets
            .list(&ListParams::default().labels("app=kept"))
            .await
            .ok()?
            .items;
        let rs = rs.into_iter().next()?;
        rs.metadata.owner_references.is_none().then_some(rs)
    })
    .await;
    assert_eq!(ready_pods(&pods, "kept", 1).await.len(), 1);
    assert!(deploys.get_opt("kept").await.unwrap().is_none());

    // Foreground: the Deployment goes last, after its ReplicaSet and pod.
    ok(
        &sb,
        &[
            "delete",
            "deployment",
            "gone",
            "--cascade=foreground",
            "--wait=true",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(deploys.get_opt("gone").await.unwrap().is_none());
    assert!(sets
        .list(&ListParams::default().labels("app=gone"))
        .await
        .unwrap()
        .items
        .is_empty());
    until("the foreground-deleted pod to go", || async {
        let left = pods
            .list(&ListParams::default().labels("app=gone"))
            .await
            .ok()?
            .items;
        left.is_empty().then_some(())
    })
    .await;

    // A Deployment made again adopts the orphaned ReplicaSet, which still
    // has its pod: nothing is replaced.
    let pod = name(&ready_pods(&pods, "kept", 1).await[0]);
    ok(
        &sb,
        &[
            "create",
            "deployment",
            "kept",
            "--image=nginx",
            "--replicas=1",
        ],
    )
    .await;
    let d = deploys.get("kept").await.unwrap();
    let rs_name = rs.metadata.name.clone().unwrap();
    let adopted = until("the ReplicaSet's adoption", || async {
        let rs = sets.get(&rs_name).await.ok()?;
        rs.metadata.owner_references.is_some().then_some(rs)
    })
    .await;
    assert_eq!(
        controller(&adopted.metadata),
        (
            "Deployment".into(),
            "kept".into(),
            d.metadata.uid.clone().unwrap()
        )
    );
    ok(
        &sb,
        &["rollout", "status", "deployment", "kept", "--timeout=20s"],
    )
    .await;
    assert_eq!(name(&ready_pods(&pods, "kept", 1).await[0]), pod);
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    ok(&sb, &["delete", "deployment", "kept"]).await;
    ready_pods(&pods, "kept", 0).await;
    sb.shutdown().await;
}

/// `kubectl ARGS -f -` with `manifest` on stdin.
async fn with_stdin(sb: &Sandbox, args: &[&str], manifest: &str) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut cmd = sb.kubectl();
    cmd.args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let manifest = manifest.to_owned();
    let run = move || {
        let mut child = cmd.spawn()?;
        child.stdin.take().unwrap().write_all(manifest.as_bytes())?;
        child.wait_with_output()
    };
    tokio::time::timeout(WAIT, tokio::task::spawn_blocking(run))
        .await
        .expect("kubectl timed out")
        .unwrap()
        .unwrap()
}

async fn apply(sb: &Sandbox, manifest: &str) {
    let o = with_stdin(sb, &["apply"], manifest).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const WEB: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: 'nginx:1.25', ports: [{containerPort: 80}]}
";

#[tokio::test]
async fn set_image_keeps_the_container_and_rollout_undo_brings_back_the_old_replica_set() {
    let sb = start().await;
    let kc = client(&sb, None).await;
    let (deploys, sets, pods): (Api<Deployment>, Api<ReplicaSet>, Api<Pod>) = (
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc.clone(), "default"),
        Api::namespaced(kc, "default"),
    );
    apply(&sb, WEB).await;
    ok(&sb, &["rollout", "status", "deploy/web", "--timeout=20s"]).await;
    let first = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first.len(), 1);
    let first = first[0].metadata.name.clone().unwrap();

    // A strategic merge patch of one container's image: its ports stay.
    ok(&sb, &["set", "image", "deploy/web", "nginx=nginx:1.26"]).await;
    ok(&sb, &["rollout", "status", "deploy/web", "--timeout=20s"]).await;
    let d = deploys.get("web").await.unwrap();
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx:1.26"));
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 80);
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    // Undo sends the old template back: the old ReplicaSet, not a third.
    ok(&sb, &["rollout", "undo", "deploy/web"]).await;
    ok(&sb, &["rollout", "status", "deploy/web", "--timeout=20s"]).await;
    let rs = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 2);
    let back = rs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(&first))
        .unwrap();
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(2));
    let running = ready_pods(&pods, "web", 2).await;
    assert!(running
        .iter()
        .all(|p| name(p).starts_with(&format!("{first}-"))));

    // PUT of the whole object: from the current version it is taken, from
    // a stale one it is a conflict.
    let current = ok(&sb, &["get", "deploy/web", "-o", "json"]).await;
    let mut d: serde_json::Value = serde_json::from_str(&current).unwrap();
    d["spec"]["replicas"] = 1.into();
    let o = with_stdin(&sb, &["replace"], &d.to_string()).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ready_pods(&pods, "web", 1).await;
    d["spec"]["replicas"] = 3.into();
    let o = with_stdin(&sb, &["replace"], &d.to_string()).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the object has been modified"), "{err}");
    sb.shutdown().await;
}

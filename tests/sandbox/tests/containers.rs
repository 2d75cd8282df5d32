// SPDX-License-Identifier: Apache-2.0
//! Pods whose image is loaded run as OCI containers through runc: the
//! runner's image (scripts/build-image.sh) under the least privilege it
//! needs, every capability of that set shown to be needed, memory limits
//! enforced (OOMKilled), stop with SIGTERM then SIGKILL, and nothing left
//! behind, even by a SIGKILLed sandbox. Runs as root, as CI does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const RUNC_ROOT: &str = "/run/podtrace-sandbox/runc";
const WAIT: Duration = Duration::from_secs(30);

fn runner_archive() -> PathBuf {
    podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))
}

/// A `FROM scratch` image holding Debian's static busybox, built with
/// podman and saved as an OCI archive (for a process that can be made to
/// ignore SIGTERM or to eat memory).
fn busybox_archive(dir: &Path) -> PathBuf {
    let ctx = dir.join("busybox");
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("bin/busybox"))
        .expect("busybox-static (scripts/install-deps.sh)");
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin /bin\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    let tag = "localhost/podtrace-test/busybox:1";
    let ok = Command::new("podman")
        .args(["build", "--quiet", "--pull=never", "-t", tag])
        .arg(&ctx)
        .stdout(Stdio::null())
        .status()
        .expect("podman (scripts/install-deps.sh)");
    assert!(
        ok.success(),
        "podman build of the busybox test image failed"
    );
    let archive = dir.join("busybox.oci.tar");
    let ok = Command::new("podman")
        .args(["save", "--quiet", "--format", "oci-archive", "-o"])
        .arg(&archive)
        .arg(tag)
        .status()
        .unwrap();
    assert!(ok.success(), "podman save failed");
    archive
}

async fn sandbox(images: Vec<PathBuf>) -> Sandbox {
    Sandbox::start(SandboxConfig {
        images,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

/// A runner pod as the plugin's Job makes it, on nginx-demo's node, with
/// this security context.
fn runner_pod(sandbox: &Sandbox, name: &str, security: Value, memory: &str) -> PodManifest {
    let nginx = sandbox.get_object("Pod", "default", "nginx-demo").unwrap();
    let ip = nginx["status"]["podIP"].as_str().unwrap().to_owned();
    let node = nginx["spec"]["nodeName"].as_str().unwrap().to_owned();
    let mut pod = PodManifest::new(
        "default",
        name,
        "ghcr.io/podtrace/podtrace-runner:v0.1.0",
        &["/podtrace-runner"],
    );
    pod.value["spec"]["hostNetwork"] = json!(true);
    pod.value["spec"]["hostPID"] = json!(true);
    pod.value["spec"]["restartPolicy"] = json!("Never");
    let c = &mut pod.value["spec"]["containers"][0];
    c["args"] = json!([
        "--pod-ip",
        ip,
        "--duration",
        "1",
        "--format",
        "json",
        "--node-name",
        node
    ]);
    c["resources"] = json!({"limits": {"cpu": "500m", "memory": memory}, "requests": {"cpu": "50m", "memory": "64Mi"}});
    c["securityContext"] = security;
    pod.on_node(&node)
}

fn least_privilege(caps: &[&str]) -> Value {
    json!({
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "privileged": false,
        "capabilities": {"add": caps, "drop": ["ALL"]},
        "seccompProfile": {"type": "Unconfined"},
    })
}

const FOUR: [&str; 4] = ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"];

async fn finished(sandbox: &Sandbox, name: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let pod = sandbox.get_object("Pod", "default", name).unwrap();
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        ) {
            return pod;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} did not finish: {}",
            pod["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log(sandbox: &Sandbox, name: &str) -> String {
    let out = sandbox.kubectl().args(["logs", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// runc state, bundles, cgroups and mounts of containers whose id starts
/// with `tag_prefix`.
fn artifacts_of(tag_prefix: &str) -> Vec<String> {
    podtrace_sandbox::container_artifacts(|id| id.starts_with(tag_prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_image_runs_with_exactly_four_capabilities_and_each_is_needed() {
    let sandbox = sandbox(vec![runner_archive()]).await;
    let mut cases = vec![("four", least_privilege(&FOUR), None)];
    for (i, cap) in FOUR.iter().enumerate() {
        let rest: Vec<&str> = FOUR
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| *c)
            .collect();
        cases.push((
            ["no-bpf", "no-perfmon", "no-net-admin", "no-sys-ptrace"][i],
            least_privilege(&rest),
            Some(*cap),
        ));
    }
    cases.push(("privileged", json!({"privileged": true}), None));
    for (name, security, _) in &cases {
        sandbox
            .create_pod(runner_pod(&sandbox, name, security.clone(), "256Mi"))
            .await
            .unwrap();
    }
    for (name, _, missing) in &cases {
        let pod = finished(&sandbox, name).await;
        let text = log(&sandbox, name);
        let status = &pod["status"]["containerStatuses"][0];
        assert!(
            status["containerID"]
                .as_str()
                .unwrap()
                .starts_with("runc://"),
            "{status}"
        );
        assert!(
            status["imageID"]
                .as_str()
                .unwrap()
                .starts_with("ghcr.io/podtrace/podtrace-runner@sha256:"),
            "{status}"
        );
        match missing {
            None => {
                assert_eq!(pod["status"]["phase"], "Succeeded", "{name}: {text}");
                assert!(
                    text.contains("\"type\":\"ready\"") && text.contains("\"type\":\"summary\""),
                    "{name}: {text}"
                );
            }
            Some(cap) => {
                assert_eq!(pod["status"]["phase"], "Failed", "{name}: {text}");
                assert_eq!(status["state"]["terminated"]["reason"], "Error");
                let last = text.lines().last().unwrap_or_default();
                assert!(
                    last.contains(&format!("missing capability CAP_{cap} (needed for ")),
                    "{name}: {last}"
                );
            }
        }
    }
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_are_enforced_and_a_stop_is_sigterm_then_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(vec![busybox_archive(dir.path())]).await;
    let image = "localhost/podtrace-test/busybox:1";
    // Eats memory until the kernel's OOM killer ends it.
    let mut hog = PodManifest::new(
        "default",
        "hog",
        image,
        &["/bin/busybox", "sh", "-c", "tail /dev/zero"],
    );
    hog.value["spec"]["restartPolicy"] = json!("Never");
    hog.value["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "16Mi"}});
    // Ignores SIGTERM: only the SIGKILL after the grace period ends it.
    let stubborn = PodManifest::new(
        "default",
        "stubborn",
        image,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "trap '' TERM; echo started; while true; do sleep 1; done",
        ],
    );
    sandbox.create_pod(hog).await.unwrap();
    sandbox.create_pod(stubborn).await.unwrap();
    let pod = finished(&sandbox, "hog").await;
    let t = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");
    sandbox
        .wait_for_pod_phase("default", "stubborn", "Running", WAIT)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !log(&sandbox, "stubborn").contains("started") {
        assert!(Instant::now() < deadline, "stubborn never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = pod_container_id(&sandbox, "stubborn");
    let started = Instant::now();
    let out = sandbox
        .kubectl()
        .args([
            "delete",
            "pod",
            "stubborn",
            "--grace-period=2",
            "--wait=true",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "SIGTERM was ignored: only SIGKILL after 2 s ends it (took {took:?})"
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGKILL came late: {took:?}"
    );
    assert!(
        artifacts_of(&id).is_empty(),
        "container {id} left: {:?}",
        artifacts_of(&id)
    );
    sandbox.shutdown().await;
}

fn pod_container_id(sandbox: &Sandbox, name: &str) -> String {
    let pod = sandbox.get_object("Pod", "default", name).unwrap();
    pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("runc://")
        .to_owned()
}

#[test]
fn a_sigkilled_sandbox_leaves_no_container_state_cgroup_or_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sleeper, namespace: default}\nspec:\n  containers:\n  - name: sleeper\n    image: localhost/podtrace-test/busybox:1\n    command: [/bin/busybox, sleep, '1000']\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_podtrace-sandbox");
    let mut child = Command::new(bin)
        .args(["up", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--image-archive")
        .arg(busybox_archive(dir.path()))
        .arg("-f")
        .arg(&pod)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Its containers' ids start with pt{slot}-{pid}-.
    let deadline = Instant::now() + WAIT;
    let tag = loop {
        let ids: Vec<String> = std::fs::read_dir(RUNC_ROOT)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| id.split('-').nth(1) == Some(&pid.to_string()))
            .collect();
        if let Some(id) = ids.first() {
            let mut parts = id.splitn(3, '-');
            break format!("{}-{}-", parts.next().unwrap(), parts.next().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox never ran a container"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = artifacts_of(&tag);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left by the killed sandbox: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The leak check sees each kind of leftover: a bundle, a cgroup and a
/// mount under a bundle of a container id it is asked about, and nothing
/// of other ids.
#[test]
fn the_leak_check_names_a_left_bundle_cgroup_and_mount() {
    let id = format!("ptleakcheck-{}-x", std::process::id());
    let bundle = Path::new("/run/podtrace-sandbox/bundles").join(&id);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let hierarchy = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|h| h.join("cgroup.procs").is_file())
        .expect("a cgroup hierarchy");
    let cgroup = hierarchy.join("podtrace-sandbox").join(&id);
    std::fs::create_dir_all(&cgroup).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "leakcheck"])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs");
    let seen = artifacts_of(&id);
    let others = artifacts_of(&format!("{id}-other"));
    let _ = Command::new("umount").arg(&rootfs).status();
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(hierarchy.join("podtrace-sandbox"));
    let _ = std::fs::remove_dir_all(&bundle);
    assert!(seen.contains(&format!("bundle {id}")), "{seen:?}");
    assert!(
        seen.contains(&format!("cgroup {}", cgroup.display())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("mount {}", rootfs.display())),
        "{seen:?}"
    );
    assert!(others.is_empty(), "{others:?}");
    assert!(artifacts_of(&id).is_empty(), "{:?}", artifacts_of(&id));
}

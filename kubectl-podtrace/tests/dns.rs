// SPDX-License-Identifier: Apache-2.0
//! DNS through the plugin: `curl-demo` asks the sandbox's cluster DNS
//! (dnsmasq behind the `kube-system/kube-dns` Service) for a good name and
//! a missing one, traced by the real runner. Needs root (network
//! namespaces, eBPF): CI runs as root.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");
const GOOD: &str = "kube-dns.kube-system.svc.cluster.local";

/// Lines of a child's pipe, read on a thread.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `rx` into `seen` until `done` holds (at most 60 s).
fn wait_for(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no {what}; seen:\n{}", seen.join("\n")),
        }
    }
}

type Lines = mpsc::Receiver<String>;

/// Starts the plugin on `args` against the sandbox and waits for its
/// runners' `tracing on`.
fn trace(sb: &Sandbox, args: &[&str]) -> (Child, Lines, Lines, Vec<String>, Vec<String>) {
    let mut child = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(args)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin starts");
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let (stdout, mut stderr) = (Vec::new(), Vec::new());
    wait_for(&err, &mut stderr, "tracing on", |s| {
        s.iter().any(|l| l.contains("tracing on"))
    });
    (child, out, err, stdout, stderr)
}

/// Ctrl-C, then the rest of its output; it must exit cleanly.
fn stop(
    child: &mut Child,
    out: &Lines,
    err: &Lines,
    stdout: &mut Vec<String>,
    stderr: &mut Vec<String>,
) {
    let status = common::interrupt_and_wait(child);
    stdout.extend(out.iter());
    stderr.extend(err.iter());
    assert!(status.success(), "{}", stderr.join("\n"));
}

/// A `dns` text line of curl-demo's lookup at the cluster DNS.
fn dns_line(l: &str, want: &str) -> bool {
    l.contains(" udp dns ")
        && l.contains("default/curl-demo:")
        && l.contains("-> svc/kube-system/kube-dns:53")
        && l.contains(want)
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_show_as_dns_lines_and_a_summary_section() {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    let sb = Sandbox::start(SandboxConfig {
        pods: vec![PodManifest::curl_demo().on_node("node-1")],
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let (mut child, out, err, mut stdout, mut stderr) = trace(&sb, &["curl-demo", "--port", "53"]);

    // The absolute name: one question. The short missing one goes through
    // the search list (ndots:5), each try NXDOMAIN.
    let good = sb
        .exec(
            "default",
            "curl-demo",
            &["getent", "ahostsv4", &format!("{GOOD}.")],
        )
        .unwrap();
    assert!(good.status.success(), "{GOOD} resolves");
    let missing = sb
        .exec(
            "default",
            "curl-demo",
            &["getent", "ahostsv4", "nope-podtrace"],
        )
        .unwrap();
    assert!(!missing.status.success(), "nope-podtrace does not");
    wait_for(&out, &mut stdout, "the dns lines", |s| {
        s.iter().any(|l| dns_line(l, &format!("A {GOOD} NOERROR ")))
            && s.iter()
                .any(|l| dns_line(l, "A nope-podtrace.default.svc.cluster.local NXDOMAIN "))
    });
    let answered = stdout
        .iter()
        .find(|l| dns_line(l, &format!("A {GOOD} NOERROR ")))
        .unwrap();
    let service_ip = sb
        .kubectl()
        .args(["get", "svc", "-n", "kube-system", "kube-dns"])
        .args(["-o", "jsonpath={.spec.clusterIP}"])
        .output()
        .unwrap();
    let service_ip = String::from_utf8_lossy(&service_ip.stdout).into_owned();
    assert!(
        answered.contains(&format!("NOERROR {service_ip} ")),
        "the answer, then the latency: {answered}"
    );
    assert!(
        answered.ends_with("ms") || answered.ends_with("µs"),
        "{answered}"
    );

    stop(&mut child, &out, &err, &mut stdout, &mut stderr);
    let nxdomains = stdout.iter().filter(|l| dns_line(l, " NXDOMAIN ")).count();
    let queries = stdout.iter().filter(|l| dns_line(l, "")).count();
    let header = stdout
        .iter()
        .position(|l| l.starts_with("DNS ") && l.contains("NXDOMAIN") && l.contains("P99"))
        .unwrap_or_else(|| panic!("no DNS section:\n{}", stdout.join("\n")));
    let row: Vec<&str> = stdout[header + 1].split_whitespace().collect();
    assert_eq!(row[0], "default/curl-demo", "{}", stdout.join("\n"));
    assert_eq!(
        row[1..5],
        [
            queries.to_string().as_str(),
            nxdomains.to_string().as_str(),
            "0",
            "0"
        ],
        "queries, NXDOMAIN, SERVFAIL, unanswered:\n{}",
        stdout.join("\n")
    );
}

/// With two targets the runners keep to traffic between them, and a pod's
/// lookups go to neither: the cluster DNS's addresses pass that filter too,
/// or "cannot reach it by name" would be invisible in the usual trace.
#[tokio::test(flavor = "multi_thread")]
async fn a_trace_between_two_pods_shows_their_lookups() {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    let sb = Sandbox::start(SandboxConfig {
        pods: vec![
            PodManifest::curl_demo().on_node("node-1"),
            PodManifest::nginx_demo().on_node("node-2"),
        ],
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let (mut child, out, err, mut stdout, mut stderr) = trace(&sb, &["curl-demo", "nginx-demo"]);
    let good = sb
        .exec(
            "default",
            "curl-demo",
            &["getent", "ahostsv4", &format!("{GOOD}.")],
        )
        .unwrap();
    assert!(good.status.success(), "{GOOD} resolves");
    wait_for(&out, &mut stdout, "the lookup's dns line", |s| {
        s.iter().any(|l| dns_line(l, &format!("A {GOOD} NOERROR ")))
    });
    // A lookup dropped after the NAT, on its way to the DNS pod, is
    // unanswered with the kernel's reason: the DNS pod's address passes too.
    let deny = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/examples/netpol-deny-egress.yaml"
    );
    let applied = sb.kubectl().args(["apply", "-f", deny]).output().unwrap();
    assert!(applied.status.success(), "{applied:?}");
    let again = || {
        sb.exec(
            "default",
            "curl-demo",
            &["getent", "ahostsv4", &format!("{GOOD}.")],
        )
        .unwrap()
    };
    // The policy is in the node's rules well within a second; until then a
    // lookup may still be answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while again().status.success() {
        assert!(Instant::now() < deadline, "the egress deny never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(&out, &mut stdout, "the unanswered lookup", |s| {
        s.iter()
            .any(|l| dns_line(l, &format!("A {GOOD} unanswered (dropped: NETFILTER_DROP)")))
    });
    stop(&mut child, &out, &err, &mut stdout, &mut stderr);
}

// SPDX-License-Identifier: Apache-2.0
//! "Why can't curl-demo reach nginx-demo?" end to end: the sandbox enforces
//! NetworkPolicy with nftables; `kubectl podtrace curl-demo nginx-demo -o
//! json` shows the netfilter drops and the unanswered SYNs, and says which
//! policies deny the flow and which rule nearly allowed it; labelling
//! curl-demo makes the next curl succeed, shown allowed; an egress deny on
//! curl-demo is explained as egress, for TCP to nginx-demo and for its DNS
//! lookups to the cluster DNS.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use podtrace_e2e::{built_bin, kubectl_podtrace, of_type, Traced};
use podtrace_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

fn curl(sandbox: &Sandbox, url: &str) -> String {
    let out = sandbox
        .exec(
            "default",
            "curl-demo",
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
        )
        .expect("exec curl in curl-demo");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Curls until the answer is `want` (a policy change takes effect within a
/// second), for at most a few seconds; the last answer.
fn curl_until(sandbox: &Sandbox, url: &str, want: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    let mut code = curl(sandbox, url);
    while code != want && Instant::now() < until {
        code = curl(sandbox, url);
    }
    code
}

fn kubectl(sandbox: &Sandbox, args: &[&str]) {
    let out = sandbox
        .kubectl()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn apply(sandbox: &Sandbox, file: &str) {
    let path = format!(
        "{}/../../manifests/examples/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    kubectl(sandbox, &["apply", "-f", &path]);
}

fn node_of(sandbox: &Sandbox, pod: &str) -> String {
    sandbox
        .get_object("Pod", "default", pod)
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
        .expect("pod has a node")
}

fn policy<'a>(lines: &'a [Value], direction: &str, verdict: &str) -> Option<&'a Value> {
    lines.iter().find(|v| {
        v["type"] == "policy"
            && v["direction"] == direction
            && v["verdict"] == verdict
            && v["src_name"] == "default/curl-demo"
            && v["dst_name"] == "default/nginx-demo"
    })
}

/// The egress verdict on a DNS lookup from curl-demo.
fn dns_verdict(lines: &[Value]) -> Option<&Value> {
    lines.iter().find(|v| {
        v["type"] == "policy"
            && v["direction"] == "egress"
            && v["verdict"] == "denied"
            && v["proto"] == "udp"
            && v["src_name"] == "default/curl-demo"
            && v["dst"].as_str().is_some_and(|d| d.ends_with(":53"))
    })
}

#[test]
fn a_network_policy_drop_is_explained_then_allowed_then_denied_on_egress() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = rt
        .block_on(Sandbox::start(SandboxConfig {
            runner_bin: Some(built_bin("podtrace-runner")),
            ..SandboxConfig::default()
        }))
        .expect("sandbox starts");
    let nginx_node = node_of(&sandbox, "nginx-demo");
    let curl_node = node_of(&sandbox, "curl-demo");
    let nginx_ip = rt
        .block_on(sandbox.pod_ip("default", "nginx-demo"))
        .unwrap();
    let url = format!("http://{nginx_ip}/");
    apply(&sandbox, "netpol-demo.yaml");

    let mut trace = Traced::spawn(kubectl_podtrace(
        sandbox.kubeconfig_path(),
        &[
            "curl-demo",
            "nginx-demo",
            "-o",
            "json",
            "--duration",
            "180s",
        ],
    ));
    trace.wait_for(Duration::from_secs(90), "every runner's ready line", |l| {
        of_type(l, "ready").len() >= 2
    });

    // 1. Denied at nginx-demo's ingress.
    assert_eq!(
        curl_until(&sandbox, &url, "000"),
        "000",
        "the policies stop curl"
    );
    trace.wait_for(
        Duration::from_secs(30),
        "drops, SYN retransmits and a denied verdict",
        |l| {
            l.iter().any(|v| {
                v["type"] == "drop"
                    && v["reason"] == "NETFILTER_DROP"
                    && v["node"] == nginx_node.as_str()
            }) && l
                .iter()
                .any(|v| v["type"] == "retransmit" && v["state"] == "SYN_SENT")
                && policy(l, "ingress", "denied").is_some()
        },
    );
    let lines = trace.json();
    let drop = lines
        .iter()
        .find(|v| v["type"] == "drop" && v["reason"] == "NETFILTER_DROP")
        .unwrap();
    assert_eq!(drop["node"], nginx_node.as_str(), "{drop}");
    // On nginx-demo's node, on its way into nginx-demo (its host-side veth).
    assert!(
        drop["iface"].is_string(),
        "the drop names its interface: {drop}"
    );
    assert_eq!(drop["direction"], "ingress", "{drop}");
    assert_eq!(drop["at"], "node", "{drop}");
    let denied = policy(&lines, "ingress", "denied").unwrap();
    assert_eq!(
        denied["policies"],
        serde_json::json!(["default/allow-from-client", "default/default-deny-ingress"]),
        "{denied}"
    );
    assert_eq!(
        denied["rule"]["policy"], "default/allow-from-client",
        "{denied}"
    );
    assert_eq!(denied["rule"]["miss"], "pod-labels", "{denied}");
    assert_eq!(
        denied["rule"]["detail"],
        "wants pods role=client; the source default/curl-demo has app=curl-demo",
        "{denied}"
    );
    assert!(
        policy(&lines, "egress", "no-policy").is_some(),
        "egress: no policy"
    );

    // 2. Labelled as the allow wants: the next curl gets through, shown allowed.
    kubectl(&sandbox, &["label", "pod", "curl-demo", "role=client"]);
    assert_eq!(
        curl_until(&sandbox, &url, "200"),
        "200",
        "labelled, curl-demo gets through"
    );
    trace.wait_for(Duration::from_secs(30), "an allowed verdict", |l| {
        policy(l, "ingress", "allowed").is_some()
    });
    let lines = trace.json();
    let allowed = policy(&lines, "ingress", "allowed").unwrap();
    assert_eq!(
        allowed["allowed_by"],
        serde_json::json!(["default/allow-from-client"])
    );
    // Raised by the connection that got through, or by a drop in the
    // moment between the label and its enforcement.
    assert!(allowed["cause"].is_string(), "{allowed}");

    // 3. Every egress from curl-demo denied: explained as egress, on its node.
    apply(&sandbox, "netpol-deny-egress.yaml");
    assert_eq!(
        curl_until(&sandbox, &url, "000"),
        "000",
        "the egress deny stops curl"
    );
    trace.wait_for(Duration::from_secs(30), "a denied egress verdict", |l| {
        policy(l, "egress", "denied").is_some()
    });
    let lines = trace.json();
    let egress = policy(&lines, "egress", "denied").unwrap();
    assert_eq!(
        egress["policies"],
        serde_json::json!(["default/deny-egress-from-curl"])
    );
    assert!(
        egress["rule"].is_null(),
        "a deny-all has no near miss: {egress}"
    );
    assert!(
        lines.iter().any(|v| v["type"] == "drop"
            && v["reason"] == "NETFILTER_DROP"
            && v["node"] == curl_node.as_str()
            && v["direction"] == "egress"),
        "the egress drop happens on curl-demo's node"
    );

    trace.signal(libc::SIGINT);
    let code = trace.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 0, "clean exit; stderr:\n{}", trace.stderr());
    let _ = std::io::stderr().write_all(trace.seen.join("\n").as_bytes());

    // 4. The same deny blocks DNS: curl-demo's lookups, traced on port 53,
    // die in netfilter on their way out and are explained as egress.
    let mut dns = Traced::spawn(kubectl_podtrace(
        sandbox.kubeconfig_path(),
        &[
            "curl-demo",
            "--port",
            "53",
            "-o",
            "json",
            "--duration",
            "120s",
        ],
    ));
    dns.wait_for(Duration::from_secs(90), "the runner's ready line", |l| {
        !of_type(l, "ready").is_empty()
    });
    let name = "http://kube-dns.kube-system.svc.cluster.local/";
    assert_eq!(curl(&sandbox, name), "000", "the lookup is blocked");
    dns.wait_for(
        Duration::from_secs(30),
        "a denied egress verdict on UDP/53",
        |l| dns_verdict(l).is_some(),
    );
    let lines = dns.json();
    let verdict = dns_verdict(&lines).unwrap();
    assert_eq!(
        verdict["policies"],
        serde_json::json!(["default/deny-egress-from-curl"]),
        "{verdict}"
    );
    assert!(
        lines.iter().any(|v| v["type"] == "drop"
            && v["proto"] == "udp"
            && v["reason"] == "NETFILTER_DROP"
            && v["node"] == curl_node.as_str()
            && v["direction"] == "egress"),
        "the lookup's drop, on its way out of curl-demo"
    );
    dns.signal(libc::SIGINT);
    let code = dns.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 0, "clean exit; stderr:\n{}", dns.stderr());
    rt.block_on(sandbox.shutdown());
}

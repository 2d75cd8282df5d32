// SPDX-License-Identifier: Apache-2.0
//! `networking.k8s.io/v1` NetworkPolicy through the real `kubectl` and
//! kube-rs: apply, get (Table), describe, defaults, validation errors
//! worded like a real server's, watch, delete.

mod common;

use std::io::Write as _;
use std::process::{Output, Stdio};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use podtrace_sandbox::{Sandbox, SandboxConfig};

/// Runs kubectl with `stdin` piped in (bounded by [`common::WAIT`]).
async fn kubectl(sb: &Sandbox, args: &[&str], stdin: &str) -> Output {
    let mut cmd = sb.kubectl();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    let run = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    });
    tokio::time::timeout(common::WAIT, run)
        .await
        .expect("kubectl timed out")
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const POLICIES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-client, namespace: default}
spec:
  podSelector: {matchLabels: {app: nginx-demo}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_lists_describes_and_deletes_network_policies() {
    let sb = Sandbox::start(SandboxConfig::bare()).await.unwrap();
    let out = kubectl(&sb, &["apply", "-f", "-"], POLICIES).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "networkpolicy.networking.k8s.io/default-deny-ingress created\n\
         networkpolicy.networking.k8s.io/allow-from-client created\n"
    );

    let out = kubectl(&sb, &["get", "netpol"], "").await;
    let t = text(&out);
    let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "POD-SELECTOR", "AGE"], "{t}");
    assert_eq!(
        lines[1][..2],
        ["allow-from-client", "app=nginx-demo"],
        "{t}"
    );
    assert_eq!(lines[2][..2], ["default-deny-ingress", "<none>"], "{t}");

    // The v1 defaults: policyTypes from the rules present, protocol TCP.
    let api: Api<NetworkPolicy> = Api::namespaced(common::client(&sb, None).await, "default");
    let allow = api.get("allow-from-client").await.unwrap();
    let spec = allow.spec.clone().unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let ports = spec.ingress.unwrap()[0].ports.clone().unwrap();
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(allow.metadata.generation, Some(1));

    // Re-applied with another port: patched, a new generation.
    let changed = POLICIES.replace("ports: [{port: 80}]", "ports: [{port: 8080}]");
    let out = kubectl(&sb, &["apply", "-f", "-"], &changed).await;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("networkpolicy.networking.k8s.io/allow-from-client configured"),
        "{}",
        text(&out)
    );
    let allow = api.get("allow-from-client").await.unwrap();
    assert_eq!(allow.metadata.generation, Some(2));
    let port = &allow.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
        .ports
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        port.port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
    );
    kubectl(&sb, &["apply", "-f", "-"], POLICIES).await;

    let out = kubectl(&sb, &["describe", "netpol", "allow-from-client"], "").await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "Name:         allow-from-client",
        "PodSelector:     app=nginx-demo",
        "    From:\n      PodSelector: role=client",
        "To Port: 80/TCP",
        "Not affecting egress traffic",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }

    // A watch sees a new policy.
    let mut events = api
        .watch(
            &WatchParams::default(),
            &api.get("allow-from-client")
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let mut np: NetworkPolicy =
        serde_yaml::from_str(POLICIES.split("---").next().unwrap()).unwrap();
    np.metadata.name = Some("third".into());
    api.create(&PostParams::default(), &np).await.unwrap();
    let added = tokio::time::timeout(common::WAIT, async {
        while let Some(event) = events.try_next().await.unwrap() {
            match event {
                WatchEvent::Bookmark(_) => continue,
                other => return other,
            }
        }
        panic!("the watch ended");
    })
    .await
    .unwrap();
    assert!(
        matches!(&added, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("third")),
        "{added:?}"
    );

    let out = kubectl(&sb, &["delete", "netpol", "third"], "").await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "networkpolicy.networking.k8s.io \"third\" deleted\n"
    );
    let out = kubectl(&sb, &["get", "netpol", "third"], "").await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): networkpolicies.networking.k8s.io \"third\" not found\n"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_network_policies_are_refused_with_the_real_servers_words() {
    let sb = Sandbox::start(SandboxConfig::bare()).await.unwrap();
    let bad = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: default}
spec:
  podSelector: {matchExpressions: [{key: app, operator: Gt, values: ["1"]}]}
  policyTypes: [Ingress, Sideways]
  ingress:
  - from:
    - {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}
      podSelector: {}
    ports:
    - {port: 0}
    - {port: 80, endPort: 79, protocol: ICMP}
    - {port: http, endPort: 90}
"#;
    let out = kubectl(&sb, &["apply", "-f", "-"], bad).await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "The NetworkPolicy \"bad\" is invalid: \n\
         * spec.podSelector.matchExpressions[0].operator: Invalid value: \"Gt\": not a valid selector operator\n\
         * spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n\
         * spec.ingress[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"\n\
         * spec.ingress[0].ports[1].endPort: Invalid value: 79: must be greater than or equal to `port`\n\
         * spec.ingress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is non-numeric\n\
         * spec.ingress[0].from[0]: Required value: must specify a peer\n\
         * spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"192.168.0.0/16\": must be a strict subset of `cidr`\n\
         * spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer\n\
         * spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""
    );
    // Nothing was stored.
    assert!(sb.get_object("networkpolicies", "default", "bad").is_none());
    sb.shutdown().await;
}

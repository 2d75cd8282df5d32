// SPDX-License-Identifier: Apache-2.0
//! The files in `manifests/` are what users apply and what krew installs
//! from: they must parse as the objects they claim to be and agree with the
//! plugin (its name, version, binary and default namespace).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn documents(file: &str) -> Vec<serde_yaml::Value> {
    let path = manifests().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn as_object<T: serde::de::DeserializeOwned>(file: &str, doc: &serde_yaml::Value) -> T {
    serde_yaml::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn krew_manifest_fields_validate() {
    // scripts/release.sh points this test at the manifest it filled in.
    let (file, version) = match std::env::var("PODTRACE_KREW_MANIFEST") {
        Ok(path) => (path, std::env::var("PODTRACE_KREW_VERSION").unwrap()),
        Err(_) => (
            "krew/podtrace.yaml".to_owned(),
            concat!("v", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
    };
    let docs = documents(&file);
    assert_eq!(docs.len(), 1);
    let m = &docs[0];
    assert_eq!(
        m["apiVersion"].as_str(),
        Some("krew.googlecontainertools.github.com/v1alpha2")
    );
    assert_eq!(m["kind"].as_str(), Some("Plugin"));
    // krew: the plugin name is what follows `kubectl `, lowercase, no prefix.
    let name = m["metadata"]["name"].as_str().unwrap();
    assert_eq!(name, "podtrace");
    assert!(name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    let spec = &m["spec"];
    assert_eq!(
        spec["version"].as_str(),
        Some(version.as_str()),
        "krew version is the plugin's, with a v"
    );
    let short = spec["shortDescription"].as_str().unwrap();
    assert!(!short.is_empty() && short.len() <= 80, "{short}");
    assert!(spec["homepage"].as_str().unwrap().starts_with("https://"));
    assert!(!spec["description"].as_str().unwrap().trim().is_empty());
    let platforms = spec["platforms"].as_sequence().expect("platforms");
    assert!(!platforms.is_empty());
    let mut seen = Vec::new();
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        let os = labels["os"].as_str().expect("selector os");
        let arch = labels["arch"].as_str().expect("selector arch");
        assert!(["linux", "darwin", "windows"].contains(&os), "{os}");
        assert!(["amd64", "arm64"].contains(&arch), "{arch}");
        seen.push(format!("{os}/{arch}"));
        let uri = p["uri"].as_str().unwrap();
        assert!(uri.starts_with("https://"), "{uri}");
        assert!(uri.contains(&version), "{uri} names this version");
        let sha = p["sha256"].as_str().unwrap();
        assert!(
            sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{sha}"
        );
        let bin = p["bin"].as_str().unwrap();
        let expected = if os == "windows" {
            "kubectl-podtrace.exe"
        } else {
            "kubectl-podtrace"
        };
        assert_eq!(bin, expected, "bin for {os}");
        let files = p["files"].as_sequence().expect("files");
        assert!(
            files
                .iter()
                .any(|f| f["from"].as_str().is_some_and(|s| s.ends_with(expected))),
            "the archive's {expected} is installed for {os}/{arch}"
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "one entry per platform: {seen:?}");
    assert!(seen.contains(&"linux/amd64".to_owned()));
}

#[test]
fn namespace_admits_privileged_pods_and_is_the_default_job_namespace() {
    let docs = documents("namespace.yaml");
    let ns: Namespace = as_object("namespace.yaml", &docs[0]);
    assert_eq!(ns.metadata.name.as_deref(), Some("podtrace"));
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged")
    );
}

#[test]
fn rbac_parses_and_binds_what_it_defines() {
    let file = "rbac.yaml";
    let mut roles = Vec::new();
    let mut bound = Vec::new();
    for doc in documents(file) {
        match doc["kind"].as_str().unwrap() {
            "ClusterRole" => {
                let r: ClusterRole = as_object(file, &doc);
                assert!(!r.rules.unwrap_or_default().is_empty());
                roles.push(("ClusterRole", r.metadata.name.unwrap()));
            }
            "Role" => {
                let r: Role = as_object(file, &doc);
                assert_eq!(r.metadata.namespace.as_deref(), Some("podtrace"));
                let rules = r.rules.unwrap_or_default();
                assert!(rules.iter().any(|rule| {
                    rule.resources
                        .as_ref()
                        .is_some_and(|r| r.contains(&"jobs".to_owned()))
                        && rule.verbs.contains(&"create".to_owned())
                }));
                roles.push(("Role", r.metadata.name.unwrap()));
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = as_object(file, &doc);
                bound.push((b.role_ref.kind, b.role_ref.name));
            }
            "RoleBinding" => {
                let b: RoleBinding = as_object(file, &doc);
                bound.push((b.role_ref.kind, b.role_ref.name));
            }
            other => panic!("unexpected {other} in {file}"),
        }
    }
    for (kind, name) in &bound {
        assert!(
            roles.iter().any(|(k, n)| k == kind && n == name),
            "binding to a {kind} {name} that {file} does not define"
        );
    }
    assert!(!roles.is_empty() && bound.len() >= roles.len());
}

#[test]
fn example_pods_are_curl_to_nginx_across_two_nodes() {
    for (file, name, image) in [
        ("examples/nginx-demo.yaml", "nginx-demo", "nginx"),
        ("examples/curl-demo.yaml", "curl-demo", "curlimages/curl"),
    ] {
        let docs = documents(file);
        let pod: Pod = as_object(file, &docs[0]);
        assert_eq!(pod.metadata.name.as_deref(), Some(name));
        let spec = pod.spec.unwrap();
        assert!(spec.containers[0]
            .image
            .as_deref()
            .unwrap()
            .starts_with(image));
    }
}

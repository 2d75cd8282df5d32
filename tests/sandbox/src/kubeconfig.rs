// SPDX-License-Identifier: Apache-2.0
//! Writing the sandbox's kubeconfig (one context per user, the admin's
//! current) and reading back what `podtrace-sandbox exec` needs from it.

use std::fmt::Write as _;
use std::path::Path;

use crate::{io_err, Error, Result};

pub const CLUSTER: &str = "podtrace-sandbox";
/// The admin's context; every other user's context is named after the user.
pub const ADMIN_CONTEXT: &str = "podtrace-sandbox";
const NETNS_PREFIX: &str = "# podtrace-sandbox netns prefix: ";

/// The sandbox's network namespace prefix, from a kubeconfig it wrote.
pub fn read_netns_prefix(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    text.lines()
        .find_map(|l| l.strip_prefix(NETNS_PREFIX))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Api(format!(
                "{} was not written by podtrace-sandbox",
                path.display()
            ))
        })
}

/// Writes the kubeconfig atomically (a reader never sees half a file).
/// `netns_prefix` goes in a comment, for `podtrace-sandbox exec`.
pub fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    netns_prefix: &str,
    users: &[(String, String)],
    admin: &str,
) -> Result<()> {
    let mut y = String::new();
    let _ = writeln!(y, "# Written by podtrace-sandbox; removed when it stops.");
    let _ = writeln!(y, "{NETNS_PREFIX}{netns_prefix}");
    let _ = writeln!(y, "apiVersion: v1\nkind: Config\nclusters:");
    let _ = writeln!(
        y,
        "- name: {CLUSTER}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}",
        crate::tls::base64(ca_pem.as_bytes())
    );
    let _ = writeln!(y, "users:");
    for (name, token) in users {
        let _ = writeln!(y, "- name: {name:?}\n  user:\n    token: {token:?}");
    }
    let _ = writeln!(y, "contexts:");
    for (name, _) in users {
        let ctx = if name == admin { ADMIN_CONTEXT } else { name };
        let _ = writeln!(
            y,
            "- name: {ctx:?}\n  context:\n    cluster: {CLUSTER}\n    user: {name:?}\n    namespace: default"
        );
    }
    let _ = writeln!(y, "current-context: {ADMIN_CONTEXT}\npreferences: {{}}");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, y).map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("write {}", path.display())))
}

/// The current context's server URL and bearer token.
pub fn read_server_and_token(path: &Path) -> Result<(String, Option<String>)> {
    let text = std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| Error::Api(format!("bad kubeconfig: {e}")))?;
    let current = doc["current-context"].as_str().unwrap_or_default();
    let find = |list: &str, name: &str| {
        doc[list]
            .as_sequence()
            .and_then(|s| s.iter().find(|e| e["name"].as_str() == Some(name)).cloned())
    };
    let ctx = find("contexts", current)
        .ok_or_else(|| Error::Api(format!("kubeconfig has no context {current:?}")))?;
    let cluster = find("clusters", ctx["context"]["cluster"].as_str().unwrap_or(""))
        .ok_or_else(|| Error::Api("kubeconfig context names no known cluster".into()))?;
    let server = cluster["cluster"]["server"]
        .as_str()
        .ok_or_else(|| Error::Api("kubeconfig cluster has no server".into()))?
        .to_owned();
    let token = find("users", ctx["context"]["user"].as_str().unwrap_or(""))
        .and_then(|u| u["user"]["token"].as_str().map(str::to_owned));
    Ok((server, token))
}

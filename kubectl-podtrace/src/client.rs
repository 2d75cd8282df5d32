// SPDX-License-Identifier: Apache-2.0
//! Connecting to the cluster the way kubectl does: `--kubeconfig`, else
//! `$KUBECONFIG` (a list of files, merged), else `~/.kube/config`; then
//! `--context`, `--cluster`, `--user`; the namespace from `-n`, else the
//! context's, else `default`.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::KubeArgs;
use crate::errors::{Error, Result};

/// A client and what the kubeconfig said about who and where we are.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// Namespace for pods named without one.
    pub namespace: String,
    /// The kubeconfig user name, recorded on the Jobs we create.
    pub caller: String,
}

/// Loads the kubeconfig and builds a client.
pub async fn connect(args: &KubeArgs) -> Result<Cluster> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?,
        None => Kubeconfig::read().map_err(|e| {
            Error::Kubeconfig(format!(
                "{e} (set --kubeconfig or KUBECONFIG, or create ~/.kube/config)"
            ))
        })?,
    };
    let caller = caller_name(&kubeconfig, args);
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| Error::Kubeconfig(format!("cannot build a client for {server}: {e}")))?;
    Ok(Cluster {
        client,
        namespace,
        caller,
    })
}

/// The kubeconfig user that will make the calls: `--user`, else the chosen
/// context's user.
fn caller_name(kubeconfig: &Kubeconfig, args: &KubeArgs) -> String {
    if let Some(user) = &args.user {
        return user.clone();
    }
    let context_name = args
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone());
    kubeconfig
        .contexts
        .iter()
        .find(|c| Some(&c.name) == context_name.as_ref())
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: dev
  context:
    cluster: c1
    user: alice
    namespace: web
- name: ops
  context:
    cluster: c1
    user: bob
current-context: dev
users:
- name: alice
  user:
    token: a
- name: bob
  user:
    token: b
";

    async fn connect_with(args: KubeArgs) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        connect(&KubeArgs {
            kubeconfig: Some(path),
            ..args
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn namespace_and_caller_follow_the_context_like_kubectl() {
        let c = connect_with(KubeArgs::default()).await;
        assert_eq!((c.namespace.as_str(), c.caller.as_str()), ("web", "alice"));
        let c = connect_with(KubeArgs {
            context: Some("ops".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(
            (c.namespace.as_str(), c.caller.as_str()),
            ("default", "bob")
        );
        let c = connect_with(KubeArgs {
            namespace: Some("shop".into()),
            user: Some("bob".into()),
            ..Default::default()
        })
        .await;
        assert_eq!((c.namespace.as_str(), c.caller.as_str()), ("shop", "bob"));
    }

    #[tokio::test]
    async fn a_missing_context_is_one_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let err = connect(&KubeArgs {
            kubeconfig: Some(path),
            context: Some("nope".into()),
            ..Default::default()
        })
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("cannot load the kubeconfig: "), "{err}");
        assert!(err.contains("nope"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

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
    /// The API server's address, for error messages.
    pub server: String,
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
        server,
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

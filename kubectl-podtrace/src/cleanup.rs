// SPDX-License-Identifier: Apache-2.0
//! `kubectl podtrace cleanup`: delete trace Jobs a session left behind.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};

use crate::client::Cluster;
use crate::errors::{describe_kube_error, Error, Result};
use crate::jobspec::{label_value, CALLER_LABEL, OURS_SELECTOR};

/// The label selector for the Jobs `cleanup` removes.
pub fn selector(caller: &str, all: bool) -> String {
    if all {
        OURS_SELECTOR.to_string()
    } else {
        format!("{OURS_SELECTOR},{CALLER_LABEL}={}", label_value(caller))
    }
}

/// Deletes the caller's (or with `all`, everyone's) trace Jobs and any trace
/// pod whose Job is gone. Returns what was deleted, one line each.
pub async fn cleanup(cluster: &Cluster, namespace: &str, all: bool) -> Result<Vec<String>> {
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), namespace);
    let lp = ListParams::default().labels(&selector(&cluster.caller, all));
    let list = jobs
        .list(&lp)
        .await
        .map_err(|e| Error::kube(format!("list trace jobs in namespace {namespace}"), e))?;
    let mut done = Vec::new();
    let mut existing = Vec::new();
    for job in list.items {
        let name = job.metadata.name.clone().unwrap_or_default();
        let ann = job.metadata.annotations.clone().unwrap_or_default();
        existing.push(name.clone());
        match delete_job(&jobs, &name).await {
            Ok(false) => {}
            Ok(true) => done.push(format!(
                "job.batch/{name} deleted (node {}, tracing {}, by {})",
                ann.get("podtrace.io/node")
                    .map(String::as_str)
                    .unwrap_or("?"),
                ann.get("podtrace.io/targets")
                    .map(String::as_str)
                    .unwrap_or("?"),
                ann.get("podtrace.io/caller")
                    .map(String::as_str)
                    .unwrap_or("?"),
            )),
            Err(e) => return Err(Error::kube(format!("delete job {name}"), e)),
        }
    }
    // Pods of Jobs deleted without a propagation policy are orphaned.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let pod_list = pods
        .list(&lp)
        .await
        .map_err(|e| Error::kube(format!("list trace pods in namespace {namespace}"), e))?;
    for pod in pod_list.items {
        let owner_gone = pod
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.iter().all(|o| !existing.contains(&o.name)));
        if !owner_gone {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => done.push(format!("pod/{name} deleted (its Job was already gone)")),
            Err(e) if Error::status_code(&e) == Some(404) => {}
            Err(e) => done.push(format!(
                "could not delete orphaned pod {name}: {}",
                describe_kube_error(&format!("delete pod {name}"), &e)
            )),
        }
    }
    Ok(done)
}

/// Deletes a trace Job, its pods with it (in the background, so the runners
/// get their grace period). `Ok(false)`: it was already gone.
pub(crate) async fn delete_job(jobs: &Api<Job>, name: &str) -> Result<bool, kube::Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match jobs.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(e) if Error::status_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_is_the_callers_unless_all() {
        assert_eq!(
            selector("alice@corp", false),
            "app.kubernetes.io/name=podtrace,app.kubernetes.io/managed-by=kubectl-podtrace,podtrace.io/caller=alice_corp"
        );
        assert_eq!(selector("alice", true), OURS_SELECTOR);
    }
}

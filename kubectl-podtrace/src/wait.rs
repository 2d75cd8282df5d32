// SPDX-License-Identifier: Apache-2.0
//! Reading a runner pod's status while it starts: where it is, and the
//! failures that waiting will not fix (so we fail fast and say why).

use k8s_openapi::api::core::v1::Pod;

use crate::errors::Error;
use crate::jobspec::CONTAINER;

/// Where a runner pod is, as far as its status tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not on a node yet.
    Pending,
    /// On a node; the container is being created (image pull included).
    Scheduled,
    /// The container runs.
    Running,
    /// The container ended with this exit code.
    Exited(i32),
}

/// Reads a runner pod's status. Errors are the failures to stop on.
pub fn pod_state(pod: &Pod, image: &str, node: &str) -> Result<PodState, Error> {
    let status = pod.status.clone().unwrap_or_default();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        if c.reason.as_deref() == Some("Unschedulable") {
            return Err(Error::Unschedulable {
                node: node.to_string(),
                message: c
                    .message
                    .clone()
                    .unwrap_or_else(|| "no reason given".into()),
            });
        }
    }
    let state = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)
        .and_then(|c| c.state.clone())
        .unwrap_or_default();
    if let Some(w) = &state.waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.clone().filter(|m| !m.is_empty());
        match reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                return Err(Error::ImagePull {
                    image: image.to_string(),
                    node: node.to_string(),
                    reason,
                    message: message.map(|m| format!(": {m}")).unwrap_or_default(),
                });
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                return Err(Error::Rejected {
                    node: node.to_string(),
                    message: format!("{reason}: {}", message.unwrap_or_default()),
                });
            }
            _ => {}
        }
    }
    if let Some(t) = &state.terminated {
        return Ok(PodState::Exited(t.exit_code));
    }
    let phase = status.phase.clone().unwrap_or_default();
    if phase == "Failed" {
        return Err(Error::Rejected {
            node: node.to_string(),
            message: status
                .message
                .clone()
                .or(status.reason.clone())
                .unwrap_or_else(|| "the pod failed".into()),
        });
    }
    if state.running.is_some() || phase == "Running" {
        return Ok(PodState::Running);
    }
    let on_node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
        || status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True");
    Ok(if on_node {
        PodState::Scheduled
    } else {
        PodState::Pending
    })
}

/// Whether a pod belongs to a Job (by owner reference or job-name label).
pub fn pod_of_job(pod: &Pod, job: &str) -> bool {
    let owned = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job" && o.name == job);
    let labelled = pod.metadata.labels.as_ref().is_some_and(|l| {
        l.get("job-name").map(String::as_str) == Some(job)
            || l.get("batch.kubernetes.io/job-name").map(String::as_str) == Some(job)
    });
    owned || labelled
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "podtrace-abc-0-x1", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "podtrace-abc-0", "uid": "u"}]},
            "spec": {"containers": [{"name": "runner", "image": "img"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        json!({"phase": "Pending", "containerStatuses": [{"name": "runner", "image": "img",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}]})
    }

    #[test]
    fn image_pull_failures_name_the_image() {
        let e = pod_state(
            &pod(waiting("ErrImagePull", "not found")),
            "ghcr.io/x:v1",
            "node-1",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot pull the runner image \"ghcr.io/x:v1\" on node node-1: ErrImagePull: not found"
        );
        let e = pod_state(&pod(waiting("ImagePullBackOff", "")), "img", "n").unwrap_err();
        assert!(e.to_string().ends_with("ImagePullBackOff"), "{e}");
    }

    #[test]
    fn unschedulable_shows_the_schedulers_message() {
        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."}]}),
        );
        assert_eq!(
            pod_state(&p, "img", "node-3").unwrap_err().to_string(),
            "the trace pod for node node-3 cannot be scheduled: 0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn stages() {
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending"})), "i", "n").unwrap(),
            PodState::Pending
        );
        assert_eq!(
            pod_state(&pod(waiting("ContainerCreating", "")), "i", "n").unwrap(),
            PodState::Pending
        );
        let mut p = pod(waiting("ContainerCreating", ""));
        p.spec.as_mut().unwrap().node_name = Some("n".into());
        assert_eq!(pod_state(&p, "i", "n").unwrap(), PodState::Scheduled);
        let p = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "runner",
            "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}),
        );
        assert_eq!(pod_state(&p, "i", "n").unwrap(), PodState::Running);
        let p = pod(
            json!({"phase": "Failed", "containerStatuses": [{"name": "runner",
            "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 2}}}]}),
        );
        assert_eq!(pod_state(&p, "i", "n").unwrap(), PodState::Exited(2));
        assert!(pod_of_job(&p, "podtrace-abc-0"));
        assert!(!pod_of_job(&p, "podtrace-abc-1"));
    }
}

// SPDX-License-Identifier: Apache-2.0
//! While the runners start: poll their pods and the job namespace's events,
//! show each node's stage, and fail fast on what waiting will not fix.

use k8s_openapi::api::core::v1::{Event as K8sEvent, Pod};
use kube::api::{Api, ListParams};
use tokio::sync::mpsc;

use super::{Session, POLL};
use crate::errors::{Error, Result};
use crate::progress::Stage;
use crate::stream;
use crate::wait::{pod_of_job, pod_state, PodState};

/// The runner pods and the job namespace's events at one moment.
pub(super) struct Snapshot {
    pods: Vec<Pod>,
    events: Vec<K8sEvent>,
}

/// Consecutive failed polls before giving up (a blip is retried).
const POLL_FAILURES: u32 = 5;

/// Polls the session's pods and the namespace's events in the background, so
/// a slow API server never holds up the log lines.
pub(super) async fn poll(
    pods: Api<Pod>,
    events: Api<K8sEvent>,
    selector: String,
    tx: mpsc::Sender<Result<Snapshot>>,
) {
    let lp = ListParams::default().labels(&selector);
    let mut failures = 0;
    loop {
        let result = async {
            let p = pods
                .list(&lp)
                .await
                .map_err(|e| ("list the trace pods", e))?;
            // Events are optional: without them failures are less precise.
            let ev = events
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            Ok::<_, (&str, kube::Error)>(Snapshot {
                pods: p.items,
                events: ev,
            })
        }
        .await;
        let msg = match result {
            Ok(snap) => {
                failures = 0;
                Ok(snap)
            }
            Err((what, e)) => {
                failures += 1;
                if failures < POLL_FAILURES && Error::status_code(&e) != Some(403) {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(Error::kube(what, e))
            }
        };
        let fatal = msg.is_err();
        if tx.send(msg).await.is_err() || fatal {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Aborts a background task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Session<'_> {
    /// What the nodes not tracing yet are doing, for the start timeout.
    pub(super) fn waiting_on(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| !n.ready)
            .map(|n| format!("node {} is {}", n.node, n.stage.text()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads one poll of the runners' pods and events while they start;
    /// fails fast on what will not get better by waiting.
    pub(super) fn on_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].ready {
                continue;
            }
            let job = self.nodes[i].job.clone();
            let node = self.nodes[i].node.clone();
            let Some(pod) = snap.pods.iter().find(|p| pod_of_job(p, &job)) else {
                if let Some(msg) = event_message(&snap.events, &job, "Job", &["FailedCreate"]) {
                    return Err(Error::Rejected { node, message: msg });
                }
                self.set_stage(i, Stage::Creating);
                continue;
            };
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            self.nodes[i].pod = Some(pod_name.clone());
            let state = pod_state(pod, &self.spec.image, &node)?;
            match state {
                // Follow the log even of an ended runner: its lines say
                // whether it got ready, and why not; the end of the stream
                // decides.
                PodState::Running | PodState::Exited(_) => {
                    if state == PodState::Running {
                        self.set_stage(i, Stage::Running);
                    }
                    if !self.nodes[i].following {
                        self.nodes[i].following = true;
                        stream::follow(
                            self.pods_api.clone(),
                            pod_name,
                            job.clone(),
                            self.tx.clone(),
                        );
                    }
                }
                PodState::Scheduled => {
                    let pulling = event_message(&snap.events, &pod_name, "Pod", &["Pulling"])
                        .is_some()
                        && event_message(&snap.events, &pod_name, "Pod", &["Pulled"]).is_none();
                    self.set_stage(
                        i,
                        if pulling {
                            Stage::Pulling
                        } else {
                            Stage::Scheduled
                        },
                    );
                }
                PodState::Pending => self.set_stage(i, Stage::Creating),
            }
        }
        Ok(())
    }
}

/// The message of the newest event about an object with one of `reasons`.
fn event_message(events: &[K8sEvent], name: &str, kind: &str, reasons: &[&str]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.involved_object.kind.as_deref() == Some(kind)
                && e.reason.as_deref().is_some_and(|r| reasons.contains(&r))
        })
        .map(|e| e.message.clone().unwrap_or_default())
}

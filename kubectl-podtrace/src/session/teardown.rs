// SPDX-License-Identifier: Apache-2.0
//! The end of a session: delete the Jobs, read the runners' last lines
//! (their summaries), and wait (bounded) until nothing is left.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::{Session, POLL};
use crate::cleanup::delete_job;
use crate::errors::describe_kube_error;
use crate::jobspec::{GRACE_PERIOD, SESSION_LABEL};
use crate::stream::LogEvent;

/// Longest wait for the runners' last lines after the Jobs are deleted.
const DRAIN: Duration = Duration::from_secs(GRACE_PERIOD as u64 + 10);
/// Longest wait for the Jobs and their pods to be gone.
const GONE: Duration = Duration::from_secs(GRACE_PERIOD as u64 + 20);

impl Session<'_> {
    /// Deletes the session's Jobs (their pods with them), keeps reading the
    /// runners' last lines, and waits (bounded) until everything is gone.
    /// Errors are warnings: what could not be cleaned up, and how to check.
    pub(super) async fn stop(
        &mut self,
        jobs_api: &Api<Job>,
        created: &[String],
        interrupted: &mut watch::Receiver<u32>,
    ) -> Result<(), String> {
        if created.is_empty() {
            return Ok(());
        }
        let mut problems = Vec::new();
        for name in created {
            if let Err(e) = delete_job(jobs_api, name).await {
                problems.push(describe_kube_error(&format!("delete job {name}"), &e));
            }
        }
        let drain_deadline = Instant::now() + DRAIN;
        let gone_deadline = Instant::now() + GONE;
        let lp = ListParams::default().labels(&format!("{SESSION_LABEL}={}", self.spec.id));
        let mut gone = false;
        let mut tick = tokio::time::interval(POLL);
        loop {
            self.flush(false);
            let drained = self.nodes.iter().all(|n| n.ended || !n.following);
            if (drained || Instant::now() >= drain_deadline)
                && (gone || Instant::now() >= gone_deadline)
            {
                break;
            }
            tokio::select! {
                _ = interrupted.changed() => {}
                Some(ev) = self.rx.recv(), if !drained => {
                    if let LogEvent::End { job, error } = &ev {
                        if let Some(i) = self.node_index(job) {
                            self.nodes[i].ended = true;
                        }
                        if let Some(e) = error {
                            self.console.warn(e);
                        }
                    } else {
                        let _ = self.on_log(ev).await;
                    }
                }
                _ = tick.tick(), if !gone => {
                    let jobs = jobs_api.list(&lp).await;
                    let pods = self.pods_api.list(&lp).await;
                    if let (Ok(j), Ok(p)) = (jobs, pods) {
                        gone = j.items.is_empty() && p.items.is_empty();
                    }
                }
                _ = tokio::time::sleep(POLL), if gone => {}
            }
        }
        if !gone {
            problems.push(format!(
                "the trace Jobs were deleted but are not gone yet; check with `kubectl get jobs,pods \
                 -n {} -l {SESSION_LABEL}={}`",
                self.spec.job_namespace, self.spec.id
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

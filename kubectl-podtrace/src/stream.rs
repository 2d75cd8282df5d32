// SPDX-License-Identifier: Apache-2.0
//! Following runner pods' logs, all at once, into one channel.
//!
//! A log stream that ends while the container still runs was dropped (an API
//! server or proxy timeout): it is reopened from the start and the lines
//! already read are skipped, so no line is lost or repeated.

use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio::sync::mpsc;

use crate::jobspec::CONTAINER;

/// What a log follower reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// One line of the runner's stdout. `job`: the runner's Job, which
    /// tells the runners apart (a node may have several).
    Line { job: String, line: String },
    /// The stream was dropped and reopened.
    Reconnected { job: String },
    /// The stream ended for good; `error` says why when it was not the
    /// container ending.
    End { job: String, error: Option<String> },
}

/// How often a dropped stream is reopened before giving up.
const MAX_RECONNECTS: u32 = 5;

/// Follows one pod's log until its container ends; reports on `tx`.
pub fn follow(api: Api<Pod>, pod: String, job: String, tx: mpsc::Sender<LogEvent>) {
    tokio::spawn(async move {
        let error = follow_inner(&api, &pod, &job, &tx).await.err();
        let _ = tx.send(LogEvent::End { job, error }).await;
    });
}

async fn follow_inner(
    api: &Api<Pod>,
    pod: &str,
    job: &str,
    tx: &mpsc::Sender<LogEvent>,
) -> Result<(), String> {
    let params = LogParams {
        container: Some(CONTAINER.to_string()),
        follow: true,
        ..Default::default()
    };
    let mut seen: u64 = 0;
    let mut reconnects = 0;
    let mut opened = false;
    loop {
        let stream = match api.log_stream(pod, &params).await {
            Ok(s) => s,
            Err(e) if crate::errors::Error::status_code(&e) == Some(404) => return Ok(()),
            Err(e) => {
                if container_ended(api, pod).await {
                    return Ok(());
                }
                reconnects += 1;
                if reconnects > MAX_RECONNECTS {
                    return Err(crate::errors::describe_kube_error(
                        &format!("follow the log of pod {pod}"),
                        &e,
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(reconnects))).await;
                continue;
            }
        };
        tracing::debug!(pod, seen, "log stream open");
        if std::mem::replace(&mut opened, true) {
            let _ = tx
                .send(LogEvent::Reconnected {
                    job: job.to_string(),
                })
                .await;
        }
        let mut lines = stream.lines();
        let mut index: u64 = 0;
        let mut broken = None;
        loop {
            match lines.try_next().await {
                Ok(Some(line)) => {
                    index += 1;
                    if index <= seen {
                        continue;
                    }
                    seen = index;
                    let line = line.trim_end_matches('\r').to_string();
                    if tx
                        .send(LogEvent::Line {
                            job: job.to_string(),
                            line,
                        })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        tracing::debug!(pod, index, seen, ?broken, "log stream ended");
        // A follow stream ends cleanly when the container exits, often a
        // moment before the pod's status says so: wait for the status
        // (bounded) before taking the end for a break.
        let settle = if broken.is_none() {
            ENDED_SETTLE
        } else {
            Duration::ZERO
        };
        if ended_within(api, pod, settle).await {
            // The container is done: whatever the follow stream did not
            // deliver is in the complete log now.
            let rest = LogParams {
                container: Some(CONTAINER.to_string()),
                ..Default::default()
            };
            if let Ok(all) = api.logs(pod, &rest).await {
                for line in all.lines().skip(seen as usize) {
                    let _ = tx
                        .send(LogEvent::Line {
                            job: job.to_string(),
                            line: line.trim_end_matches('\r').to_string(),
                        })
                        .await;
                }
            }
            return Ok(());
        }
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            return Err(format!(
                "the log stream of pod {pod} keeps breaking{}",
                broken.map(|b| format!(": {b}")).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(reconnects))).await;
    }
}

/// How long a cleanly ended log stream waits for its container to be
/// reported stopped before it is reopened.
const ENDED_SETTLE: Duration = Duration::from_secs(2);

/// Whether the runner's container has stopped (or its pod is gone), asking
/// again every 100 ms until `within` has passed.
async fn ended_within(api: &Api<Pod>, pod: &str, within: Duration) -> bool {
    let until = tokio::time::Instant::now() + within;
    loop {
        if container_ended(api, pod).await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the runner's container has stopped (or its pod is gone).
async fn container_ended(api: &Api<Pod>, pod: &str) -> bool {
    match api.get_opt(pod).await {
        Ok(None) => true,
        Ok(Some(p)) => {
            let status = p.status.unwrap_or_default();
            matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
                || status
                    .container_statuses
                    .iter()
                    .flatten()
                    .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        }
        // Can't tell: assume it still runs and let the caller retry.
        Err(_) => false,
    }
}

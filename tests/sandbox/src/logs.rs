// SPDX-License-Identifier: Apache-2.0
//! Container logs: every line a container wrote (stdout and stderr
//! interleaved, as a runtime's log file), with its time, and a signal for
//! followers. A buffer is `done` once its container has ended, which is
//! what ends a `follow=true` stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

#[derive(Debug)]
pub struct LogBuf {
    pub lines: Vec<(DateTime<Utc>, Vec<u8>)>,
    pub done: bool,
}

#[derive(Debug)]
pub struct Log {
    pub buf: Mutex<LogBuf>,
    /// Bumped on every append and at the end.
    pub tick: watch::Sender<u64>,
}

impl Log {
    pub fn push(&self, line: Vec<u8>) {
        self.buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .push((Utc::now(), line));
        self.tick.send_modify(|n| *n += 1);
    }

    pub fn finish(&self) {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        self.tick.send_modify(|n| *n += 1);
    }
}

/// (namespace, pod, container) → log of the container's current run.
#[derive(Debug, Default)]
pub struct Logs {
    map: Mutex<HashMap<(String, String, String), Arc<Log>>>,
}

impl Logs {
    /// A fresh log for a new run of the container (a restart starts anew,
    /// as `kubectl logs` shows only the current run).
    pub fn start(&self, ns: &str, pod: &str, container: &str) -> Arc<Log> {
        let log = Arc::new(Log {
            buf: Mutex::new(LogBuf {
                lines: Vec::new(),
                done: false,
            }),
            tick: watch::channel(0).0,
        });
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((ns.into(), pod.into(), container.into()), log.clone());
        log
    }

    pub fn get(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<Log>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ns.into(), pod.into(), container.into()))
            .cloned()
    }

    /// Forgets a deleted pod's logs (ending any follower).
    pub fn remove_pod(&self, ns: &str, pod: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(n, p, _), log| {
            let keep = !(n == ns && p == pod);
            if !keep {
                log.finish();
            }
            keep
        });
    }
}

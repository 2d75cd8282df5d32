// SPDX-License-Identifier: Apache-2.0
//! Following the targets for the whole trace: one kube-runtime watcher per
//! side (POD, PEER) on the pods it selects. A pod that becomes Running with
//! an IP gets a runner of its own (a new Job on its node); a pod that leaves
//! is announced. Runners already tracing are never touched, so pods already
//! traced have no gap and no duplicate (docs/follow.md says why and what it
//! costs).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use podtrace::event::{now_rfc3339, Message, TargetChange, TargetChangeKind};
use tokio::sync::mpsc;

use super::startup::AbortOnDrop;
use super::{NodeState, Session};
use crate::errors::{Error, Result};
use crate::resolve::{self, target_from_pod, Target};
use crate::workload::{Select, Side};

/// A watcher's report: which side, and what happened.
pub(super) type PodEvent = (usize, std::result::Result<Event<Pod>, watcher::Error>);

/// Starts one watcher per side; they stop when the returned guards drop.
pub(super) fn watch(
    client: &kube::Client,
    sides: &[Side],
    tx: mpsc::Sender<PodEvent>,
) -> Vec<AbortOnDrop> {
    sides
        .iter()
        .enumerate()
        .map(|(i, side)| {
            let api: Api<Pod> = Api::namespaced(client.clone(), &side.namespace);
            let config = match &side.select {
                Select::Name(name) => {
                    watcher::Config::default().fields(&format!("metadata.name={name}"))
                }
                Select::Labels(labels) => watcher::Config::default().labels(labels),
            };
            let tx = tx.clone();
            AbortOnDrop(tokio::spawn(async move {
                let mut events = std::pin::pin!(watcher(api, config).default_backoff());
                while let Some(ev) = events.next().await {
                    if tx.send((i, ev)).await.is_err() {
                        return;
                    }
                }
            }))
        })
        .collect()
}

/// What the session knows of each side's pods while following them.
#[derive(Default)]
pub(super) struct Followed {
    /// Per side: uid → the pod as traced.
    pods: Vec<BTreeMap<String, Target>>,
    /// Per side: the uids listed since the watch (re)started, until its
    /// initial list is complete; then the traced pods not among them left.
    relisting: Vec<Option<HashSet<String>>>,
    /// Per side: pods that joined and have not replaced one that left.
    unpaired_joins: Vec<Vec<String>>,
    /// Per side: pods that left before a pod replaced them.
    unpaired_leaves: Vec<Vec<Target>>,
    /// Per side: the watch is failing (said once until it recovers).
    broken: Vec<bool>,
    /// The next Job index (the first ones are the session's start).
    next_index: usize,
}

impl Followed {
    pub(super) fn new(sides: &[Side], first_free_index: usize) -> Followed {
        Followed {
            pods: sides
                .iter()
                .map(|s| s.pods.iter().map(|t| (t.uid.clone(), t.clone())).collect())
                .collect(),
            relisting: vec![None; sides.len()],
            unpaired_joins: vec![Vec::new(); sides.len()],
            unpaired_leaves: vec![Vec::new(); sides.len()],
            broken: vec![false; sides.len()],
            next_index: first_free_index,
        }
    }
}

impl Session<'_> {
    /// Handles one watcher report.
    pub(super) async fn on_pod_event(&mut self, ev: PodEvent) -> Result<()> {
        let (side, ev) = ev;
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                // The watcher retries with back-off: say it once per break.
                if !std::mem::replace(&mut self.follow.broken[side], true) {
                    self.console.warn(&format!(
                        "cannot watch the pods of {} ({e}); pods that join are not traced \
                         until the watch recovers (retrying)",
                        self.spec.sides[side].label
                    ));
                }
                return Ok(());
            }
        };
        self.follow.broken[side] = false;
        match ev {
            Event::Init => self.follow.relisting[side] = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) =
                    (&mut self.follow.relisting[side], pod.metadata.uid.as_ref())
                {
                    seen.insert(uid.clone());
                }
                self.on_pod(side, &pod).await?;
            }
            Event::InitDone => {
                if let Some(seen) = self.follow.relisting[side].take() {
                    let gone: Vec<String> = self.follow.pods[side]
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.left(side, &uid);
                    }
                }
            }
            Event::Apply(pod) => self.on_pod(side, &pod).await?,
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.left(side, uid);
                }
            }
        }
        Ok(())
    }

    /// A pod of a side changed: it joins once it can be traced, and leaves
    /// when it is deleted or finishes.
    async fn on_pod(&mut self, side: usize, pod: &Pod) -> Result<()> {
        let Some(uid) = pod.metadata.uid.clone() else {
            return Ok(());
        };
        let leaving = pod.metadata.deletion_timestamp.is_some()
            || pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if self.follow.pods[side].contains_key(&uid) {
            if leaving {
                self.left(side, &uid);
            }
            return Ok(());
        }
        if leaving {
            return Ok(());
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        // Not traceable yet (Pending, no IP): a later change brings it.
        if let Ok(t) = target_from_pod(pod, &namespace, &name) {
            self.joined(side, t).await?;
        }
        Ok(())
    }

    /// A pod joined: name its IPs, announce it, and start a runner for it.
    async fn joined(&mut self, side: usize, t: Target) -> Result<()> {
        for ip in &t.ips {
            self.names.insert(*ip, t.id());
        }
        self.follow.pods[side].insert(t.uid.clone(), t.clone());
        // Oldest first: in a rollout the first new pod replaces the first
        // old one to go.
        let change = match pop_oldest(&mut self.follow.unpaired_leaves[side]) {
            Some(old) => self.change(side, &old, TargetChangeKind::Replaced, Some(t.id())),
            None => {
                self.follow.unpaired_joins[side].push(t.uid.clone());
                self.change(side, &t, TargetChangeKind::Joined, None)
            }
        };
        self.announce(change);
        self.start_runner(side, &t).await
    }

    /// A pod left: announce it, as replaced when a new pod of the same
    /// target already joined.
    fn left(&mut self, side: usize, uid: &str) {
        let Some(old) = self.follow.pods[side].remove(uid) else {
            return;
        };
        self.follow.unpaired_joins[side].retain(|u| u != uid);
        let by = pop_oldest(&mut self.follow.unpaired_joins[side])
            .and_then(|u| self.follow.pods[side].get(&u))
            .map(Target::id);
        let change = match by {
            Some(by) => self.change(side, &old, TargetChangeKind::Replaced, Some(by)),
            None => {
                self.follow.unpaired_leaves[side].push(old.clone());
                self.change(side, &old, TargetChangeKind::Deleted, None)
            }
        };
        self.announce(change);
    }

    fn change(
        &self,
        side: usize,
        t: &Target,
        change: TargetChangeKind,
        by: Option<String>,
    ) -> TargetChange {
        TargetChange {
            time: now_rfc3339(),
            change,
            target: self.spec.sides[side].label.clone(),
            pod: t.id(),
            node: t.node.clone(),
            ips: t.ips.clone(),
            by,
        }
    }

    fn announce(&mut self, change: TargetChange) {
        let text = change.text();
        self.console.info_or_json(&Message::target(change), &text);
    }

    /// Creates a Job on the pod's node for just this pod, limited to the
    /// other side's pods as they are now, and follows it like the first.
    async fn start_runner(&mut self, side: usize, t: &Target) -> Result<()> {
        let pods: Vec<Vec<Target>> = self
            .follow
            .pods
            .iter()
            .map(|m| m.values().cloned().collect())
            .collect();
        let sides: Vec<&[Target]> = pods.iter().map(Vec::as_slice).collect();
        let addressed: Vec<&[std::net::IpAddr]> = self
            .spec
            .sides
            .iter()
            .map(|s| s.addressed.as_slice())
            .collect();
        let plan = resolve::plan_one(&sides, &addressed, side, t);
        let index = self.follow.next_index;
        self.follow.next_index += 1;
        let job = (self.spec.make_job)(index, &plan);
        let name = job.metadata.name.clone().unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(self.cluster.client.clone(), &self.spec.job_namespace);
        jobs.create(&PostParams::default(), &job)
            .await
            .map_err(|e| {
                Error::kube(
                    format!("create job {name} in namespace {}", self.spec.job_namespace),
                    e,
                )
            })?;
        tracing::info!(job = %name, pod = %t.id(), node = %t.node, "runner added");
        self.added.push(name.clone());
        self.nodes.push(NodeState::new(
            plan.node,
            name,
            Instant::now() + self.spec.start_timeout,
        ));
        Ok(())
    }
}

fn pop_oldest<T>(v: &mut Vec<T>) -> Option<T> {
    (!v.is_empty()).then(|| v.remove(0))
}

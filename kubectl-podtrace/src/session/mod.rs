// SPDX-License-Identifier: Apache-2.0
//! One trace session: create the Jobs, wait for the runners ([`startup`]),
//! stream their lines ([`logs`], printed by [`console`] in the order of
//! [`reorder`], packets written by [`capture`] with `--write`), stop and
//! clean up ([`teardown`]), summarize ([`summary`]).
//! Ctrl-C is counted by [`signals`].

mod capture;
mod console;
mod follow;
mod logs;
mod release;
mod reorder;
mod signals;
mod startup;
mod summary;
mod teardown;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use tokio::sync::{mpsc, watch};

use podtrace::event::Summary;
use podtrace::flows::Flows;

pub(crate) use capture::Capture;
pub(crate) use signals::interrupts;

use crate::cli::Output;
use crate::client::Cluster;
use crate::errors::{Error, Result};
use crate::explain::Explainer;
use crate::jobspec::SESSION_LABEL;
use crate::names::Names;
use crate::progress::Stage;
use crate::resolve::{NodePlan, Target};
use crate::stream::LogEvent;
use crate::svcflow::ServiceFlows;
use crate::workload::Side;
use console::Console;
use startup::AbortOnDrop;

/// How often pod state is polled while the runners start, and while waiting
/// for the Jobs to go.
const POLL: Duration = Duration::from_millis(250);

/// Builds the trace Job with this index for a node's plan: the same for the
/// session's first Jobs and the ones added for pods that join.
pub(crate) type MakeJob = Box<dyn Fn(usize, &NodePlan) -> Job + Send + Sync>;

/// What the session was asked to do.
pub(crate) struct SessionSpec {
    pub id: String,
    pub job_namespace: String,
    pub plans: Vec<NodePlan>,
    pub targets: Vec<Target>,
    /// POD and PEER, followed for the whole trace.
    pub sides: Vec<Side>,
    pub jobs: Vec<Job>,
    pub make_job: MakeJob,
    pub image: String,
    pub output: Output,
    pub duration: Option<Duration>,
    pub start_timeout: Duration,
    /// `--write`: where the packets go.
    pub capture: Option<Capture>,
}

/// Why streaming stopped.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    Interrupted,
    Duration,
    RunnerEnded(String),
}

/// One runner (one Job), as far as the session knows. A node has one per
/// session, and one more per pod that joined there during the trace.
struct NodeState {
    node: String,
    /// Its Job's name: the key its log lines come with.
    job: String,
    /// When it must be tracing by (--start-timeout from its creation).
    start_deadline: Instant,
    pod: Option<String>,
    stage: Stage,
    following: bool,
    ready: bool,
    ended: bool,
    summary: Option<Summary>,
    /// Its flows counted from its events, for when `summary` never comes.
    tally: Flows,
    last_lines: VecDeque<String>,
    /// Output that is not a runner message (a diagnostic on its stderr),
    /// held while the runner is not ready: should it exit, the error shows
    /// it among its last lines, so it is said once.
    held_output: Vec<String>,
}

impl NodeState {
    fn new(node: String, job: String, start_deadline: Instant) -> NodeState {
        NodeState {
            node,
            job,
            start_deadline,
            pod: None,
            stage: Stage::Creating,
            following: false,
            ready: false,
            ended: false,
            summary: None,
            tally: Flows::from_packet_events(),
            last_lines: VecDeque::new(),
            held_output: Vec::new(),
        }
    }
}

/// Runs a session to its end. Jobs are deleted on every way out.
pub(crate) async fn run(
    cluster: &Cluster,
    mut spec: SessionSpec,
    mut interrupted: watch::Receiver<u32>,
) -> Result<()> {
    let jobs_api: Api<Job> = Api::namespaced(cluster.client.clone(), &spec.job_namespace);
    let mut created: Vec<String> = Vec::new();
    let mut result = Ok(());
    for job in &spec.jobs {
        if *interrupted.borrow() > 0 {
            break;
        }
        let name = job.metadata.name.clone().unwrap_or_default();
        match jobs_api.create(&PostParams::default(), job).await {
            Ok(_) => created.push(name),
            Err(e) => {
                result = Err(Error::kube(
                    format!("create job {name} in namespace {}", spec.job_namespace),
                    e,
                ));
                break;
            }
        }
    }
    let capture = spec.capture.take();
    let mut session = Session::new(cluster, &spec, capture);
    if result.is_ok() && *interrupted.borrow() == 0 {
        result = session.trace(&mut interrupted).await;
    }
    session.console.clear_progress();
    session.show_held_output();
    created.append(&mut session.added);
    let cleanup = session.stop(&jobs_api, &created, &mut interrupted).await;
    session.show_held_output();
    session.flush(true);
    if result.is_ok() {
        session.print_summary();
    }
    session.finish_capture();
    if let Err(warning) = cleanup {
        eprintln!("warning: {warning}");
    }
    result
}

struct Session<'a> {
    cluster: &'a Cluster,
    spec: &'a SessionSpec,
    nodes: Vec<NodeState>,
    console: Console,
    names: Names,
    explainer: Explainer,
    tx: mpsc::Sender<LogEvent>,
    rx: mpsc::Receiver<LogEvent>,
    pods_api: Api<Pod>,
    capture: Option<Capture>,
    follow: follow::Followed,
    /// Connections through Services, both ends matched.
    svcflows: ServiceFlows,
    /// Jobs created for pods that joined during the trace.
    added: Vec<String>,
    /// The summary's DNS section, from every node's `dns` events.
    dns: podtrace::dns::DnsTally,
}

impl<'a> Session<'a> {
    fn new(cluster: &'a Cluster, spec: &'a SessionSpec, capture: Option<Capture>) -> Self {
        let node_names: Vec<String> = spec.plans.iter().map(|p| p.node.clone()).collect();
        let start_deadline = Instant::now() + spec.start_timeout;
        let nodes = spec
            .plans
            .iter()
            .zip(&spec.jobs)
            .map(|(p, j)| {
                let job = j.metadata.name.clone().unwrap_or_default();
                NodeState::new(p.node.clone(), job, start_deadline)
            })
            .collect();
        let explainer = Explainer::start(&cluster.client);
        let mut names = Names::start(&cluster.client, explainer.services());
        for t in &spec.targets {
            for ip in &t.ips {
                names.insert(*ip, t.id());
            }
        }
        let (tx, rx) = mpsc::channel(4096);
        Session {
            cluster,
            spec,
            nodes,
            console: Console::new(
                spec.output,
                &node_names,
                capture.as_ref().is_some_and(Capture::on_stdout),
            ),
            names,
            explainer,
            tx,
            rx,
            pods_api: Api::namespaced(cluster.client.clone(), &spec.job_namespace),
            capture,
            follow: follow::Followed::new(&spec.sides, spec.jobs.len()),
            svcflows: ServiceFlows::default(),
            added: Vec::new(),
            dns: Default::default(),
        }
    }

    fn all_ready(&self) -> bool {
        self.nodes.iter().all(|n| n.ready)
    }

    /// Waits for every runner, then streams until a stop.
    async fn trace(&mut self, interrupted: &mut watch::Receiver<u32>) -> Result<()> {
        self.names.wait_until_ready().await;
        if let Some(w) = self.names.warning() {
            self.console.warn(&w);
        }
        if let Some(w) = self.explainer.services_ready().await {
            self.console.warn(&w);
        }
        let (pod_tx, mut pod_events) = mpsc::channel(64);
        let _stop_watchers = follow::watch(&self.cluster.client, &self.spec.sides, pod_tx);
        let mut tracing_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(POLL);
        let (snap_tx, mut snaps) = mpsc::channel(4);
        let poller = tokio::spawn(startup::poll(
            self.pods_api.clone(),
            Api::namespaced(self.cluster.client.clone(), &self.spec.job_namespace),
            format!("{SESSION_LABEL}={}", self.spec.id),
            snap_tx,
        ));
        let _stop_poller = AbortOnDrop(poller);
        let stop = loop {
            tokio::select! {
                _ = interrupted.changed() => break Stop::Interrupted,
                Some(ev) = self.rx.recv() => {
                    if let Some(stop) = self.on_log(ev).await? {
                        break stop;
                    }
                }
                Some(snap) = snaps.recv(), if !self.all_ready() => {
                    self.on_snapshot(snap?)?;
                }
                Some(ev) = pod_events.recv() => self.on_pod_event(ev).await?,
                _ = tick.tick() => {
                    self.flush(false);
                    let now = Instant::now();
                    if self.nodes.iter().any(|n| !n.ready && now >= n.start_deadline) {
                        return Err(Error::StartTimeout {
                            timeout: self.spec.start_timeout,
                            waiting: self.waiting_on(),
                        });
                    }
                }
            }
            if self.all_ready() && tracing_since.is_none() {
                tracing_since = Some(Instant::now());
                self.console.clear_progress();
                self.console.header();
            }
            if let (Some(since), Some(d)) = (tracing_since, self.spec.duration) {
                if since.elapsed() >= d {
                    break Stop::Duration;
                }
            }
        };
        tracing::debug!(?stop, "stopping");
        if let Stop::RunnerEnded(why) = &stop {
            self.console.warn(why);
        }
        Ok(())
    }

    fn set_stage(&mut self, i: usize, stage: Stage) {
        if self.nodes[i].stage != stage {
            tracing::info!(node = %self.nodes[i].node, stage = stage.text());
            self.console.set_stage(i, &stage);
            self.nodes[i].stage = stage;
        }
    }

    /// The runner whose Job is `job` (the key of its log lines).
    fn node_index(&self, job: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.job == job)
    }
}

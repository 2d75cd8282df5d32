// SPDX-License-Identifier: Apache-2.0
//! One trace session: create the Jobs, wait for the runners, stream, stop,
//! clean up, summarize.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as K8sEvent, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use tokio::sync::{mpsc, watch};

use podtrace::event::{Message, Summary};

use crate::cli::Output;
use crate::client::Cluster;
use crate::errors::{Error, Result};
use crate::jobspec::{GRACE_PERIOD, SESSION_LABEL};
use crate::names::Names;
use crate::progress::{Progress, Stage};
use crate::render::{self, Style};
use crate::resolve::{NodePlan, Target};
use crate::stream::{self, LogEvent};
use crate::summary::{self, Tally};
use crate::wait::{pod_of_job, pod_state, PodState};

/// How often pod state is polled while the runners start, and while waiting
/// for the Jobs to go.
const POLL: Duration = Duration::from_millis(250);
/// Longest wait for the runners' last lines after the Jobs are deleted.
const DRAIN: Duration = Duration::from_secs(GRACE_PERIOD as u64 + 10);
/// Longest wait for the Jobs and their pods to be gone.
const GONE: Duration = Duration::from_secs(GRACE_PERIOD as u64 + 20);

/// What the session was asked to do.
pub struct SessionSpec {
    pub id: String,
    pub job_namespace: String,
    pub plans: Vec<NodePlan>,
    pub targets: Vec<Target>,
    pub jobs: Vec<Job>,
    pub image: String,
    pub output: Output,
    pub duration: Option<Duration>,
    pub start_timeout: Duration,
}

/// Counts Ctrl-C (and SIGTERM): the first asks for a clean stop, the second
/// exits at once.
pub fn interrupts() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    // Listeners made once, up front: one made after a signal arrived would
    // not see it, and a quick second Ctrl-C (right after "stopping:") went
    // unnoticed when each wait made its own.
    let mut signals = Signals::new();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            signals.next().await;
            count += 1;
            if count >= 2 {
                eprintln!(
                    "\ninterrupted again: exiting now; any trace Jobs left will expire, or run \
                     `kubectl podtrace cleanup`"
                );
                std::process::exit(130);
            }
            eprintln!("\nstopping: deleting the trace Jobs (Ctrl-C again to exit at once)");
            let _ = tx.send(count);
        }
    });
    rx
}

/// Ctrl-C and (on Unix) SIGTERM, as one stream.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => {}
            _ = recv(&mut self.term) => {}
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Why streaming stopped.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    Interrupted,
    Duration,
    RunnerEnded(String),
}

struct NodeState {
    node: String,
    job: String,
    pod: Option<String>,
    stage: Stage,
    following: bool,
    ready: bool,
    ended: bool,
    summary: Option<Summary>,
    tally: Tally,
    last_lines: VecDeque<String>,
}

/// Prints runner lines as text or JSON.
struct Printer {
    output: Output,
    style: Style,
    header_done: bool,
    /// Text lines held briefly to print in event-time order across nodes:
    /// (event time, arrival order, arrival instant, line).
    pending: Vec<(String, u64, Instant, String)>,
    seq: u64,
}

/// How long a text line may wait for earlier events from other nodes.
const REORDER: Duration = Duration::from_millis(300);

/// Runs a session to its end. Jobs are deleted on every way out.
pub async fn run(
    cluster: &Cluster,
    spec: SessionSpec,
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
    let mut session = Session::new(cluster, &spec);
    if result.is_ok() && *interrupted.borrow() == 0 {
        result = session.trace(&mut interrupted).await;
    }
    session.progress.clear();
    let cleanup = session.stop(&jobs_api, &created, &mut interrupted).await;
    session.flush(true);
    if result.is_ok() {
        session.print_summary();
    }
    if let Err(warning) = cleanup {
        eprintln!("warning: {warning}");
    }
    result
}

struct Session<'a> {
    cluster: &'a Cluster,
    spec: &'a SessionSpec,
    nodes: Vec<NodeState>,
    progress: Progress,
    printer: Printer,
    names: Names,
    tx: mpsc::Sender<LogEvent>,
    rx: mpsc::Receiver<LogEvent>,
    pods_api: Api<Pod>,
}

impl<'a> Session<'a> {
    fn new(cluster: &'a Cluster, spec: &'a SessionSpec) -> Self {
        let node_names: Vec<String> = spec.plans.iter().map(|p| p.node.clone()).collect();
        let nodes = spec
            .plans
            .iter()
            .zip(&spec.jobs)
            .map(|(p, j)| NodeState {
                node: p.node.clone(),
                job: j.metadata.name.clone().unwrap_or_default(),
                pod: None,
                stage: Stage::Creating,
                following: false,
                ready: false,
                ended: false,
                summary: None,
                tally: Tally::default(),
                last_lines: VecDeque::new(),
            })
            .collect();
        let mut names = Names::default();
        for t in &spec.targets {
            for ip in &t.ips {
                names.insert(*ip, t.id());
            }
        }
        let (tx, rx) = mpsc::channel(4096);
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Session {
            cluster,
            spec,
            nodes,
            progress: Progress::new(&node_names),
            printer: Printer {
                output: spec.output,
                style: Style {
                    color,
                    node_width: node_names.iter().map(String::len).max().unwrap_or(4),
                },
                header_done: false,
                pending: Vec::new(),
                seq: 0,
            },
            names,
            tx,
            rx,
            pods_api: Api::namespaced(cluster.client.clone(), &spec.job_namespace),
        }
    }

    fn all_ready(&self) -> bool {
        self.nodes.iter().all(|n| n.ready)
    }

    /// Waits for every runner, then streams until a stop.
    async fn trace(&mut self, interrupted: &mut watch::Receiver<u32>) -> Result<()> {
        if let Some(w) = self.names.refresh(&self.cluster.client).await {
            self.warn(&w);
        }
        let start_deadline = Instant::now() + self.spec.start_timeout;
        let mut tracing_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(POLL);
        let (snap_tx, mut snaps) = mpsc::channel(4);
        let poller = tokio::spawn(poll(
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
                _ = tick.tick() => {
                    self.flush(false);
                    if !self.all_ready() && Instant::now() >= start_deadline {
                        return Err(Error::StartTimeout {
                            timeout: self.spec.start_timeout,
                            waiting: self.waiting_on(),
                        });
                    }
                }
            }
            if self.all_ready() && tracing_since.is_none() {
                tracing_since = Some(Instant::now());
                self.progress.clear();
                self.print_header();
            }
            if let (Some(since), Some(d)) = (tracing_since, self.spec.duration) {
                if since.elapsed() >= d {
                    break Stop::Duration;
                }
            }
        };
        tracing::debug!(?stop, "stopping");
        if let Stop::RunnerEnded(why) = &stop {
            self.warn(why);
        }
        Ok(())
    }

    fn waiting_on(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| !n.ready)
            .map(|n| format!("node {} is {}", n.node, n.stage.text()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads one poll of the runners' pods and events while they start;
    /// fails fast on what will not get better by waiting.
    fn on_snapshot(&mut self, snap: Snapshot) -> Result<()> {
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
                        stream::follow(self.pods_api.clone(), pod_name, node, self.tx.clone());
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

    /// The runner's last log lines, for an early exit.
    async fn last_lines(&mut self, i: usize, pod: &str) -> String {
        let lines: Vec<String> = if self.nodes[i].last_lines.is_empty() {
            let lp = LogParams {
                container: Some(crate::jobspec::CONTAINER.into()),
                tail_lines: Some(10),
                ..Default::default()
            };
            self.pods_api
                .logs(pod, &lp)
                .await
                .map(|s| s.lines().map(str::to_string).collect())
                .unwrap_or_default()
        } else {
            self.nodes[i].last_lines.iter().cloned().collect()
        };
        if lines.is_empty() {
            String::new()
        } else {
            format!("; its last log lines:\n  {}", lines.join("\n  "))
        }
    }

    fn set_stage(&mut self, i: usize, stage: Stage) {
        if self.nodes[i].stage != stage {
            tracing::info!(node = %self.nodes[i].node, stage = stage.text());
            self.progress.set(i, &stage);
            self.nodes[i].stage = stage;
        }
    }

    fn node_index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.node == node)
    }

    /// Handles a line or the end of a log stream.
    async fn on_log(&mut self, ev: LogEvent) -> Result<Option<Stop>> {
        match ev {
            LogEvent::Line { node, line } => {
                self.on_line(&node, &line).await;
                Ok(None)
            }
            LogEvent::Reconnected { node } => {
                self.warn(&format!(
                    "the log stream of node {node}'s runner broke; reopened it"
                ));
                Ok(None)
            }
            LogEvent::End { node, error } => {
                let Some(i) = self.node_index(&node) else {
                    return Ok(None);
                };
                self.nodes[i].ended = true;
                if let Some(e) = error {
                    self.warn(&e);
                }
                if !self.nodes[i].ready {
                    // Let the poll report the exit code with the last lines.
                    let pod = self.nodes[i].pod.clone().unwrap_or_default();
                    let code = self.exit_code(&pod).await;
                    let logs = self.last_lines(i, &pod).await;
                    return Err(Error::RunnerExited { node, code, logs });
                }
                // With --duration the runners stop by themselves: expected.
                if self.spec.duration.is_some() {
                    return Ok(Some(Stop::Duration));
                }
                let pod = self.nodes[i].pod.clone().unwrap_or_default();
                let code = self.exit_code(&pod).await;
                Ok(Some(Stop::RunnerEnded(format!(
                    "the runner on node {node} stopped (exit code {code}); stopping the trace"
                ))))
            }
        }
    }

    async fn exit_code(&self, pod: &str) -> i32 {
        for _ in 0..20 {
            if let Ok(Some(p)) = self.pods_api.get_opt(pod).await {
                let code = p
                    .status
                    .and_then(|s| s.container_statuses)
                    .into_iter()
                    .flatten()
                    .find_map(|c| c.state.and_then(|s| s.terminated).map(|t| t.exit_code));
                if let Some(code) = code {
                    return code;
                }
            } else {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        -1
    }

    async fn on_line(&mut self, node: &str, line: &str) {
        let Some(i) = self.node_index(node) else {
            return;
        };
        let n = &mut self.nodes[i];
        n.last_lines.push_back(line.to_string());
        if n.last_lines.len() > 10 {
            n.last_lines.pop_front();
        }
        if line.trim().is_empty() {
            return;
        }
        let msg = match Message::parse(line) {
            Ok(m) => m,
            Err(e) => {
                self.warn(&format!(
                    "node {node}: unexpected runner output ({e}): {line}"
                ));
                return;
            }
        };
        match msg {
            Message::Event(mut e) => {
                if let Some(ip) = self.names.unknown_in(&e) {
                    tracing::debug!(%ip, "unknown IP: refreshing names");
                    if let Some(w) = self.names.refresh(&self.cluster.client).await {
                        self.warn(&w);
                    }
                }
                self.names.annotate(&mut e);
                self.nodes[i].tally.add(&e);
                match self.printer.output {
                    Output::Json => {
                        let line = Message::Event(e).to_line();
                        self.emit(|_| line.clone());
                    }
                    Output::Text => {
                        let line = render::event_line(&e, self.printer.style);
                        self.hold(e.time.clone(), line);
                    }
                }
            }
            Message::Ready(r) => {
                self.nodes[i].ready = true;
                self.set_stage(i, Stage::Attached);
                let body = &r.body;
                let ifaces: Vec<&str> = body.interfaces.iter().map(|f| f.name.as_str()).collect();
                let text = format!(
                    "node {}: tracing on {} ({} hooks, started in {:.0}ms)",
                    body.node,
                    if ifaces.is_empty() {
                        "no interfaces".to_string()
                    } else {
                        ifaces.join(", ")
                    },
                    body.hooks.len(),
                    body.startup_ms
                );
                self.info_or_json(&Message::Ready(r), &text);
            }
            Message::Hello(h) => {
                if h.body.schema != podtrace::event::SCHEMA {
                    self.warn(&format!(
                        "node {node}: the runner speaks schema {} but this plugin speaks {}; \
                         use a runner image matching the plugin (--image)",
                        h.body.schema,
                        podtrace::event::SCHEMA
                    ));
                }
                let text = format!(
                    "node {}: runner {} on kernel {}",
                    h.body.node, h.body.version, h.body.kernel
                );
                self.info_or_json(&Message::Hello(h), &text);
            }
            Message::Lost(l) => match self.printer.output {
                Output::Json => {
                    let line = Message::Lost(l.clone()).to_line();
                    self.emit(|_| line.clone());
                }
                Output::Text => {
                    let line = render::lost_line(&l.body, self.printer.style);
                    self.hold(l.body.time.clone(), line);
                }
            },
            Message::Warning(w) => match self.printer.output {
                Output::Json => self.emit(|_| Message::Warning(w.clone()).to_line()),
                Output::Text => self.warn(&format!("node {}: {}", w.body.node, w.body.message)),
            },
            Message::Summary(_) if self.nodes[i].summary.is_some() => {
                // A runner writes one summary; a repeat is a replayed log.
                tracing::debug!(node, "ignoring a repeated summary line");
            }
            Message::Summary(mut s) => {
                for f in &mut s.body.flows {
                    self.names.annotate_flow(f);
                }
                if self.printer.output == Output::Json {
                    let line = Message::Summary(s.clone()).to_line();
                    self.emit(|_| line.clone());
                }
                self.nodes[i].summary = Some(s.body);
            }
        }
    }

    /// Holds a text line for [`Session::flush`].
    fn hold(&mut self, time: String, line: String) {
        self.printer.seq += 1;
        let seq = self.printer.seq;
        self.printer.pending.push((time, seq, Instant::now(), line));
    }

    /// Prints held lines in event-time order: all of them, or those up to
    /// the newest event time among lines held for [`REORDER`] already. (By
    /// arrival, not by the clock: node clocks and ours may differ.)
    fn flush(&mut self, all: bool) {
        let cutoff = if all {
            None
        } else {
            match self
                .printer
                .pending
                .iter()
                .filter(|p| p.2.elapsed() >= REORDER)
                .map(|p| p.0.clone())
                .max()
            {
                Some(t) => Some(t),
                None => return,
            }
        };
        let mut pending = std::mem::take(&mut self.printer.pending);
        pending.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let (out, keep): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|p| cutoff.as_ref().is_none_or(|c| p.0 <= *c));
        self.printer.pending = keep;
        for (_, _, _, line) in out {
            self.emit(|_| line);
        }
    }

    fn print_header(&mut self) {
        if self.printer.output == Output::Text && !self.printer.header_done {
            self.printer.header_done = true;
            let h = render::header(self.printer.style);
            self.emit(|_| h.clone());
        }
    }

    /// Prints one stdout line without tearing the progress lines.
    fn emit(&mut self, f: impl FnOnce(&Printer) -> String) {
        if !self.printer.header_done && self.printer.output == Output::Text {
            self.print_header();
        }
        let line = f(&self.printer);
        self.progress.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        });
    }

    fn info_or_json(&mut self, msg: &Message, text: &str) {
        match self.printer.output {
            Output::Json => {
                let line = msg.to_line();
                self.emit(|_| line.clone());
            }
            Output::Text => {
                let text = text.to_string();
                self.progress.suspend(|| eprintln!("{text}"));
            }
        }
    }

    fn warn(&self, text: &str) {
        self.progress.suspend(|| eprintln!("warning: {text}"));
    }

    /// Deletes the session's Jobs (their pods with them), keeps reading the
    /// runners' last lines, and waits (bounded) until everything is gone.
    async fn stop(
        &mut self,
        jobs_api: &Api<Job>,
        created: &[String],
        interrupted: &mut watch::Receiver<u32>,
    ) -> std::result::Result<(), String> {
        if created.is_empty() {
            return Ok(());
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let mut problems = Vec::new();
        for name in created {
            match jobs_api.delete(name, &dp).await {
                Ok(_) => {}
                Err(e) if Error::status_code(&e) == Some(404) => {}
                Err(e) => problems.push(crate::errors::describe_kube_error(
                    &format!("delete job {name}"),
                    &e,
                )),
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
                    if let LogEvent::End { node, error } = &ev {
                        if let Some(i) = self.node_index(node) {
                            self.nodes[i].ended = true;
                        }
                        if let Some(e) = error {
                            self.warn(e);
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

    /// The per-flow summary, merged over the nodes.
    fn print_summary(&mut self) {
        if self.printer.output != Output::Text {
            return;
        }
        let mut per_node = Vec::new();
        let mut lost = 0;
        let mut from_events = Vec::new();
        for n in &self.nodes {
            match &n.summary {
                Some(s) => {
                    lost += s.lost;
                    per_node.push((n.node.clone(), s.flows.clone()));
                }
                None if n.ready => {
                    from_events.push(n.node.clone());
                    per_node.push((n.node.clone(), n.tally.flows()));
                }
                None => {}
            }
        }
        if per_node.is_empty() {
            return;
        }
        let local: HashMap<String, Vec<IpAddr>> = self
            .spec
            .plans
            .iter()
            .map(|p| (p.node.clone(), p.pod_ips.clone()))
            .collect();
        let is_local =
            |node: &str, ip: IpAddr| local.get(node).is_some_and(|ips| ips.contains(&ip));
        let mut flows = summary::merge(&per_node, &is_local);
        for f in &mut flows {
            self.names.annotate_flow(f);
        }
        let table = render::summary_table(&flows, lost, self.printer.style);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\nSUMMARY");
        let _ = write!(out, "{table}");
        if !from_events.is_empty() {
            let _ = writeln!(
                out,
                "(no summary came from node {}: its flows are counted from the events shown)",
                from_events.join(", ")
            );
        }
        let _ = out.flush();
    }
}

/// The runner pods and the job namespace's events at one moment.
struct Snapshot {
    pods: Vec<Pod>,
    events: Vec<K8sEvent>,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Consecutive failed polls before giving up (a blip is retried).
const POLL_FAILURES: u32 = 5;

/// Polls the session's pods and the namespace's events in the background, so
/// a slow API server never holds up the log lines.
async fn poll(
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

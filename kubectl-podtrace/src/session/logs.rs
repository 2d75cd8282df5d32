// SPDX-License-Identifier: Apache-2.0
//! The runners' log lines: parse, name the IPs, count, print; and the end of
//! a log stream (a runner that stopped).

use kube::api::LogParams;

use podtrace::event::Message;

use super::console::Held;
use super::{Session, Stop, POLL};
use crate::cli::Output;
use crate::errors::{Error, Result};
use crate::progress::Stage;
use crate::render;
use crate::stream::LogEvent;

/// How many of a runner's last log lines are kept to explain an early exit.
const LAST_LINES: usize = 10;

impl Session<'_> {
    /// Handles a line or the end of a log stream.
    pub(super) async fn on_log(&mut self, ev: LogEvent) -> Result<Option<Stop>> {
        match ev {
            LogEvent::Line { job, line } => {
                self.on_line(&job, &line).await;
                Ok(None)
            }
            LogEvent::Reconnected { job } => {
                let Some(i) = self.node_index(&job) else {
                    return Ok(None);
                };
                let node = &self.nodes[i].node;
                self.console.warn(&format!(
                    "the log stream of node {node}'s runner broke; reopened it"
                ));
                Ok(None)
            }
            LogEvent::End { job, error } => {
                let Some(i) = self.node_index(&job) else {
                    return Ok(None);
                };
                let node = self.nodes[i].node.clone();
                self.nodes[i].ended = true;
                if let Some(e) = error {
                    self.console.warn(&e);
                }
                if !self.nodes[i].ready {
                    // Its held output is among the last lines in the error.
                    self.nodes[i].held_output.clear();
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

    /// Shows the output held from runners that did not get ready and did
    /// not exit (a start timeout, Ctrl-C) as warnings.
    pub(super) fn show_held_output(&mut self) {
        for n in &mut self.nodes {
            for text in std::mem::take(&mut n.held_output) {
                self.console.warn(&text);
            }
        }
    }

    /// The exit code of a runner pod's container, once it has one; -1 when
    /// the pod is gone or does not say in time.
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

    /// The runner's last log lines, for an early exit.
    async fn last_lines(&mut self, i: usize, pod: &str) -> String {
        let lines: Vec<String> = if self.nodes[i].last_lines.is_empty() {
            let lp = LogParams {
                container: Some(crate::jobspec::CONTAINER.into()),
                tail_lines: Some(LAST_LINES as i64),
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

    async fn on_line(&mut self, job: &str, line: &str) {
        let Some(i) = self.node_index(job) else {
            return;
        };
        let node = self.nodes[i].node.clone();
        let node = node.as_str();
        let n = &mut self.nodes[i];
        n.last_lines.push_back(line.to_string());
        if n.last_lines.len() > LAST_LINES {
            n.last_lines.pop_front();
        }
        if line.trim().is_empty() {
            return;
        }
        let msg = match Message::parse(line) {
            Ok(m) => m,
            Err(e) => {
                let text = format!("node {node}: unexpected runner output ({e}): {line}");
                if self.nodes[i].ready {
                    self.console.warn(&text);
                } else {
                    self.nodes[i].held_output.push(text);
                }
                return;
            }
        };
        match msg {
            Message::Event(mut e) => {
                if let Some(w) = self.names.warning() {
                    self.console.warn(&w);
                }
                self.names.annotate(&mut e);
                let service = self.explainer.service_at(e.dst.ip());
                self.svcflows.observe(&e, service.as_deref());
                self.nodes[i].tally.record(&e);
                self.dns.record(&e);
                self.capture_event(&mut e);
                let (verdicts, warnings) = self.explainer.on_event(&e).await;
                for w in warnings {
                    self.console.warn(&w);
                }
                self.console
                    .hold(e.time.clone(), Held::Event(Box::new(e), verdicts));
            }
            Message::Ready(r) => {
                self.nodes[i].ready = true;
                for text in std::mem::take(&mut self.nodes[i].held_output) {
                    self.console.warn(&text);
                }
                self.set_stage(i, Stage::Attached);
                let body = &r.body;
                // One entry per pod address: a dual-stack pod's interface twice.
                let mut ifaces: Vec<&str> = Vec::new();
                for f in &body.interfaces {
                    if !ifaces.contains(&f.name.as_str()) {
                        ifaces.push(&f.name);
                    }
                }
                let mut text = format!(
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
                // What this node's kernel lacks, and what shows instead.
                for note in body.features.map(|f| f.notes()).unwrap_or_default() {
                    text += &format!("\nnode {}: {note}", body.node);
                }
                self.console.info_or_json(&Message::Ready(r), &text);
            }
            Message::Hello(h) => {
                if h.body.schema != podtrace::event::SCHEMA {
                    self.console.warn(&format!(
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
                self.console.info_or_json(&Message::Hello(h), &text);
            }
            Message::Lost(l) => {
                let line = match self.console.output {
                    Output::Json => Message::Lost(l.clone()).to_line(),
                    Output::Text => render::lost_line(&l.body, self.console.style),
                };
                self.console.hold(l.body.time.clone(), Held::Line(line));
            }
            Message::Warning(w) => match self.console.output {
                Output::Json => self.console.line(&Message::Warning(w).to_line()),
                Output::Text => self
                    .console
                    .warn(&format!("node {}: {}", w.body.node, w.body.message)),
            },
            Message::Summary(_) if self.nodes[i].summary.is_some() => {
                // A runner writes one summary; a repeat is a replayed log.
                tracing::debug!(node, "ignoring a repeated summary line");
            }
            Message::Summary(mut s) => {
                for f in &mut s.body.flows {
                    self.names.annotate_flow(f);
                }
                if self.console.output == Output::Json {
                    // After the runner's events still held.
                    let line = Message::Summary(s.clone()).to_line();
                    self.console.hold(s.body.time.clone(), Held::Line(line));
                }
                self.nodes[i].summary = Some(s.body);
            }
            // The plugin's own lines: no runner writes one.
            m @ (Message::SessionSummary(_)
            | Message::Policy(_)
            | Message::Service(_)
            | Message::Target(_)) => self.console.warn(&format!(
                "node {node}: unexpected runner output (a {} line, which only the plugin \
                     writes): {line}",
                m.type_name()
            )),
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
//! One progress line per node on stderr while the runners start; nothing
//! when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a node's runner is on its way to tracing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Creating,
    Scheduled,
    Pulling,
    Running,
    Attached,
}

impl Stage {
    pub fn text(&self) -> &'static str {
        match self {
            Stage::Creating => "creating trace pod",
            Stage::Scheduled => "scheduled",
            Stage::Pulling => "pulling runner image",
            Stage::Running => "running, attaching probes",
            Stage::Attached => "probes attached, tracing",
        }
    }
}

/// The progress lines.
pub struct Progress {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
}

impl Progress {
    /// One line per node name.
    pub fn new(nodes: &[String]) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let width = nodes.iter().map(String::len).max().unwrap_or(4);
        let style = ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = nodes
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("{n:<width$}"));
                bar.set_message(Stage::Creating.text());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .collect();
        Progress { multi, bars }
    }

    pub fn set(&self, index: usize, stage: &Stage) {
        if let Some(bar) = self.bars.get(index) {
            bar.set_message(stage.text());
            if *stage == Stage::Attached {
                bar.finish();
            }
        }
    }

    /// Runs `f` (which prints) without the progress lines getting in the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// Removes the progress lines.
    pub fn clear(&self) {
        for bar in &self.bars {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The terminal during a session: runner lines on stdout (text or JSON;
//! on stderr when the capture has stdout: `--write -`), progress lines and
//! warnings on stderr, without one tearing the other.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use podtrace::event::{Event, Message};

use super::reorder::Reorder;
use crate::cli::Output;
use crate::explain::Explanation;
use crate::progress::{Progress, Stage};
use crate::render::{self, Style};

/// What waits in the reorder window: a line as it will print, or an event
/// with the lines that explain it, printed once it is due (by then what is
/// known of its Service flow is added).
pub(super) enum Held {
    Line(String),
    Event(Box<Event>, Vec<Explanation>),
}

pub(super) struct Console {
    progress: Progress,
    pub(super) output: Output,
    pub(super) style: Style,
    header_done: bool,
    reorder: Reorder<Held>,
    /// The lines go to stderr: stdout carries the capture.
    to_stderr: bool,
}

impl Console {
    /// One progress line per node.
    pub(super) fn new(output: Output, nodes: &[String], to_stderr: bool) -> Self {
        let terminal = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let color = terminal && std::env::var_os("NO_COLOR").is_none();
        Console {
            progress: Progress::new(nodes),
            output,
            style: Style {
                color,
                node_width: nodes.iter().map(String::len).max().unwrap_or(4),
            },
            header_done: false,
            reorder: Reorder::default(),
            to_stderr,
        }
    }

    pub(super) fn set_stage(&self, node: usize, stage: &Stage) {
        self.progress.set(node, stage);
    }

    /// Removes the progress lines.
    pub(super) fn clear_progress(&self) {
        self.progress.clear();
    }

    /// Holds a line or an event at `time` for [`Console::due`].
    pub(super) fn hold(&mut self, time: String, held: Held) {
        self.reorder.hold(time, held, Instant::now());
    }

    /// The held items that are due, or with `all` every one.
    pub(super) fn due(&mut self, all: bool) -> Vec<Held> {
        if all {
            self.reorder.all()
        } else {
            self.reorder.due(Instant::now())
        }
    }

    /// The column header, once, before the first text line.
    pub(super) fn header(&mut self) {
        if self.output == Output::Text && !self.header_done {
            self.header_done = true;
            let h = render::header(self.style);
            self.line(&h);
        }
    }

    /// Prints one output line.
    pub(super) fn line(&mut self, line: &str) {
        self.header();
        self.text(&format!("{line}\n"));
    }

    /// Prints `text` as it is where the output lines go.
    pub(super) fn text(&self, text: &str) {
        self.progress.suspend(|| {
            let mut out: Box<dyn Write> = if self.to_stderr {
                Box::new(std::io::stderr().lock())
            } else {
                Box::new(std::io::stdout().lock())
            };
            let _ = write!(out, "{text}");
            let _ = out.flush();
        });
    }

    /// `msg` as JSON on stdout, or `text` on stderr.
    pub(super) fn info_or_json(&mut self, msg: &Message, text: &str) {
        match self.output {
            Output::Json => self.line(&msg.to_line()),
            Output::Text => self.progress.suspend(|| eprintln!("{text}")),
        }
    }

    pub(super) fn warn(&self, text: &str) {
        self.progress.suspend(|| eprintln!("warning: {text}"));
    }

    /// A line for the person on stderr, in any output format.
    pub(super) fn note(&self, text: &str) {
        self.progress.suspend(|| eprintln!("{text}"));
    }
}

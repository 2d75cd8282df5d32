// SPDX-License-Identifier: Apache-2.0
//! `--write`: the session's packets into the pcapng [`Writer`], from all
//! nodes in event-time order (the same [`Reorder`] window as the text).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use podtrace::event::{Event, EventKind, Payload};

use super::reorder::Reorder;
use super::Session;
use crate::pcapng::{self, Writer};

/// Where the capture goes and what is held for it.
pub(crate) struct Capture {
    writer: Writer<Box<dyn Write + Send>>,
    /// The file, or `stdout`, for messages.
    target: String,
    held: Reorder<Event>,
    /// Set at the first write error: nothing more is written.
    failed: bool,
}

impl Capture {
    /// Creates `path` (`-`: stdout) and writes the section header, so a
    /// file that cannot be written fails the command before any Job exists.
    pub(crate) fn create(path: &Path, session: &pcapng::Session) -> Result<Capture, String> {
        let (out, target): (Box<dyn Write + Send>, String) = if path == Path::new("-") {
            (Box::new(std::io::stdout()), "stdout".into())
        } else {
            let file = std::fs::File::create(path).map_err(|e| {
                format!(
                    "cannot create {} (--write): {e}; give a file in a directory you can write",
                    path.display()
                )
            })?;
            (
                Box::new(std::io::BufWriter::new(file)),
                path.display().to_string(),
            )
        };
        let writer =
            Writer::new(out, session).map_err(|e| format!("{e} to {} (--write)", target))?;
        Ok(Capture {
            writer,
            target,
            held: Reorder::default(),
            failed: false,
        })
    }

    /// Whether the capture replaces the text on stdout.
    pub(crate) fn on_stdout(&self) -> bool {
        self.target == "stdout"
    }

    /// Holds a packet or drop with its bytes.
    fn hold(&mut self, e: Event) {
        if !self.failed {
            self.held.hold(e.time.clone(), e, Instant::now());
        }
    }

    /// Writes the held packets that are due (with `all`, every one) and
    /// hands them on; a warning at the first failure.
    pub(super) fn write_due(&mut self, all: bool) -> Option<String> {
        let due = if all {
            self.held.all()
        } else {
            self.held.due(Instant::now())
        };
        if self.failed || due.is_empty() {
            return None;
        }
        let written = due
            .iter()
            .try_for_each(|e| self.writer.write(e))
            .map_err(|e| e.to_string())
            .and_then(|()| self.writer.flush().map_err(|e| e.to_string()));
        written.err().map(|e| {
            self.failed = true;
            format!(
                "--write {}: {e}; no more packets are written to it",
                self.target
            )
        })
    }
}

/// The bytes field of an event that can carry some.
fn data_of(e: &mut Event) -> Option<&mut Option<Payload>> {
    match &mut e.kind {
        EventKind::Packet { data, .. } | EventKind::Drop { data, .. } => Some(data),
        _ => None,
    }
}

impl Session<'_> {
    /// Hands a packet or drop with bytes to the capture, if there is one:
    /// the event keeps none, so the output is what it is without `--write`.
    pub(super) fn capture_event(&mut self, e: &mut Event) {
        let Some(bytes) = data_of(e).and_then(Option::take) else {
            return;
        };
        if let Some(c) = &mut self.capture {
            let mut kept = e.clone();
            if let Some(data) = data_of(&mut kept) {
                *data = Some(bytes);
            }
            c.hold(kept);
        }
    }

    /// The capture's last words: how many packets went where.
    pub(super) fn finish_capture(&mut self) {
        if let Some(c) = &self.capture {
            if !c.failed {
                let n = c.writer.packets();
                self.console
                    .note(&format!("wrote {n} packets to {} (pcapng)", c.target));
            }
        }
    }
}

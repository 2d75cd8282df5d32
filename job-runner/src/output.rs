// SPDX-License-Identifier: Apache-2.0
//! Writes lines to stdout: JSON (the wire schema) or text for humans.
//! Buffered, flushed once per batch of events.

use std::fmt::Write as _;
use std::io::{self, IsTerminal as _, Stdout, Write as _};

use podtrace::event::{Event, Message};
use podtrace::render::{self, Style};

use crate::cli::Format;

pub struct Output {
    out: Stdout,
    /// Lines not yet written: each is formatted straight into it (one copy
    /// per event fewer than formatting into a line buffer and then into a
    /// `BufWriter`).
    buf: Vec<u8>,
    format: Format,
    text: String,
    style: Style,
}

/// One line of output: events are borrowed from the decoder, which
/// reuses them.
#[derive(Clone, Copy)]
enum Line<'a> {
    Control(&'a Message),
    Event(&'a Event),
}

/// Write to stdout once this much is buffered (and at every flush).
const FLUSH_AT: usize = 64 * 1024;

impl Output {
    /// `node` sizes the node column of text output.
    pub fn new(format: Format, node: &str) -> Self {
        let style = Style {
            color: io::stdout().is_terminal(),
            node_width: node.chars().count(),
        };
        enlarge_stdout_pipe();
        Output {
            out: io::stdout(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            format,
            text: String::new(),
            style,
        }
    }

    /// Writes a control line (or an event).
    pub fn write(&mut self, msg: &Message) -> io::Result<()> {
        match msg {
            Message::Event(e) => self.line(Line::Event(e)),
            m => self.line(Line::Control(m)),
        }
    }

    /// Writes an event without moving it (the decoder keeps it).
    pub fn write_event(&mut self, e: &Event) -> io::Result<()> {
        self.line(Line::Event(e))
    }

    /// Every line goes out here: in the wire format (`podtrace::event`'s
    /// writer) or as text (`podtrace::render`, as the plugin draws it).
    fn line(&mut self, line: Line<'_>) -> io::Result<()> {
        match (self.format, line) {
            (Format::Json, Line::Event(e)) => e.write_json(&mut self.buf),
            (Format::Json, Line::Control(m)) => m.write_json(&mut self.buf),
            (Format::Text, Line::Event(e)) => self
                .buf
                .extend_from_slice(render::event_line(e, self.style).as_bytes()),
            (Format::Text, Line::Control(m)) => {
                self.text.clear();
                control_text(m, &mut self.text, self.style);
                self.buf.extend_from_slice(self.text.as_bytes());
            }
        }
        self.end_line()
    }

    fn end_line(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.write_buf()?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let result = self.out.write_all(&self.buf);
        self.buf.clear();
        result
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_buf()?;
        self.out.flush()
    }
}

/// What stdout's pipe should hold: many of our 64 KiB writes.
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Grows stdout's pipe when it is one (a container's stdout is a FIFO the
/// runtime reads): with the default 64 KiB, each of our writes fills it
/// and the runner sleeps until the reader has drained it, a context switch
/// per write under load. Best effort: the kernel caps the size for
/// unprivileged users (`fs.pipe-max-size`, `fs.pipe-user-pages-soft`) and
/// the default still works.
fn enlarge_stdout_pipe() {
    use std::os::fd::AsRawFd as _;
    let fd = io::stdout().as_raw_fd();
    // SAFETY: fstat and fcntl on our own open stdout; `st` is plain data.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFIFO
            && libc::fcntl(fd, libc::F_GETPIPE_SZ) < PIPE_BYTES
            && libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES) < 0
        {
            tracing::debug!(
                err = %io::Error::last_os_error(),
                "stdout's pipe stays at its size"
            );
        }
    }
}

/// A control line for humans (no newline). `lost` lines and the summary
/// are drawn by the shared core exactly as the plugin draws them.
fn control_text(msg: &Message, out: &mut String, style: Style) {
    match msg {
        Message::Hello(h) => {
            let h = &h.body;
            let _ = write!(
                out,
                "podtrace-runner {} on {} (kernel {})",
                h.version, h.node, h.kernel
            );
        }
        Message::Ready(r) => {
            let r = &r.body;
            let ifaces: Vec<String> = r
                .interfaces
                .iter()
                .map(|i| format!("{} ({})", i.name, i.pod_ip))
                .collect();
            let _ = write!(
                out,
                "ready after {:.1} ms: {} hooks on {}\n{}",
                r.startup_ms,
                r.hooks.len(),
                ifaces.join(", "),
                render::header(style)
            );
        }
        Message::Lost(l) => out.push_str(&render::lost_line(&l.body, style)),
        Message::Warning(w) => {
            let _ = write!(out, "{} WARNING {}", w.body.time, w.body.message);
        }
        Message::Summary(s) => {
            let s = &s.body;
            let _ = write!(
                out,
                "\nSUMMARY ({} events, {} lost, {:.1} s)\n{}",
                s.events,
                s.lost,
                s.duration_s,
                render::summary_table(&s.flows, s.lost, style).trim_end()
            );
        }
        // The plugin's line; a runner never writes one.
        Message::SessionSummary(s) => {
            out.push_str(render::session_summary(&s.body, style).trim_end())
        }
        // The plugin's line (it explains a drop); a runner never writes one.
        Message::Policy(_) => out.push_str(&msg.to_line()),
        // The plugin's line (a Service cannot answer); a runner never writes one.
        Message::Service(_) => out.push_str(&msg.to_line()),
        // The plugin's line (a pod joined or left); a runner never writes one.
        Message::Target(t) => out.push_str(&t.body.text()),
        Message::Event(e) => out.push_str(&render::event_line(e, style)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace::event::{Event, EventKind, Proto};

    #[test]
    fn text_events_are_the_plugins_lines() {
        let e = Event {
            time: "2026-11-25T15:30:44.077653123Z".into(),
            node: "node-2".into(),
            proto: Proto::Tcp,
            src: "10.2.2.2:52954".parse().unwrap(),
            dst: "10.2.1.2:80".parse().unwrap(),
            pid: Some(11079),
            comm: Some("curl".into()),
            src_name: None,
            dst_name: None,
            via: None,
            end: Some(podtrace::event::End::Client),
            kind: EventKind::Established { rtt_us: 68 },
        };
        let style = Style {
            color: false,
            node_width: 6,
        };
        let mut out = String::new();
        control_text(&Message::Event(e.clone()), &mut out, style);
        assert_eq!(out, render::event_line(&e, style));
        assert!(out.contains("rtt=68µs by=client curl[11079]"), "{out}");
    }
}

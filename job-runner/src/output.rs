// SPDX-License-Identifier: Apache-2.0
//! Writes lines to stdout: JSON (the wire schema) or text for humans.
//! Buffered, flushed once per batch of events.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Stdout, Write as _};

use podtrace::event::{EventKind, Message};

use crate::cli::Format;

pub struct Output {
    w: BufWriter<Stdout>,
    format: Format,
    text: String,
}

impl Output {
    pub fn new(format: Format) -> Self {
        Output {
            w: BufWriter::with_capacity(64 * 1024, io::stdout()),
            format,
            text: String::new(),
        }
    }

    pub fn write(&mut self, msg: &Message) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.w, msg).map_err(io::Error::other)?;
            }
            Format::Text => {
                self.text.clear();
                text_line(msg, &mut self.text);
                self.w.write_all(self.text.as_bytes())?;
            }
        }
        self.w.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// One human-readable line (no newline).
pub fn text_line(msg: &Message, out: &mut String) {
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
                "ready after {:.1} ms: {} hooks on {}",
                r.startup_ms,
                r.hooks.len(),
                ifaces.join(", ")
            );
        }
        Message::Lost(l) => {
            let _ = write!(out, "{} LOST {} events", l.body.time, l.body.count);
        }
        Message::Warning(w) => {
            let _ = write!(out, "{} WARNING {}", w.body.time, w.body.message);
        }
        Message::Summary(s) => {
            let s = &s.body;
            let _ = write!(
                out,
                "summary: {} events, {} lost, {:.1} s",
                s.events, s.lost, s.duration_s
            );
            for f in &s.flows {
                let (src, dst) = (
                    f.src.map(|a| a.to_string()).unwrap_or_default(),
                    f.dst.map(|a| a.to_string()).unwrap_or_default(),
                );
                let proto = f.proto.map(|p| p.to_string()).unwrap_or_default();
                let _ = write!(
                    out,
                    "\n  {proto} {src} -> {dst}: {} conns, {} failed, {}/{} pkts, {}/{} bytes, \
                     {} retrans, {} resets, {} drops",
                    f.connections,
                    f.failed,
                    f.packets_sent,
                    f.packets_received,
                    f.bytes_sent,
                    f.bytes_received,
                    f.retransmits,
                    f.resets,
                    f.drops
                );
                if let Some(rtt) = f.rtt {
                    let _ = write!(out, ", rtt avg {} us", rtt.avg_us);
                }
            }
        }
        Message::Event(e) => {
            let time = e.time.get(11..26).unwrap_or(&e.time);
            let _ = write!(
                out,
                "{time} {:<11} {} {} -> {}",
                e.kind.name(),
                e.proto,
                e.src,
                e.dst
            );
            match &e.kind {
                EventKind::Established { rtt_us } => {
                    let _ = write!(out, " rtt={rtt_us}us");
                }
                EventKind::Close {
                    duration_ms,
                    bytes_sent,
                    bytes_received,
                } => {
                    let _ = write!(
                        out,
                        " {duration_ms:.1}ms sent={bytes_sent} received={bytes_received}"
                    );
                }
                EventKind::Failed { error } => {
                    let _ = write!(out, " {error}");
                }
                EventKind::Reset { direction } => {
                    let d = match direction {
                        podtrace::event::ResetDirection::Sent => "sent",
                        podtrace::event::ResetDirection::Received => "received",
                    };
                    let _ = write!(out, " {d}");
                }
                EventKind::Retransmit { state } => {
                    let _ = write!(out, " {}", state.as_deref().unwrap_or(""));
                }
                EventKind::Drop { reason, iface } => {
                    let _ = write!(out, " {reason}");
                    if let Some(i) = iface {
                        let _ = write!(out, " on {i}");
                    }
                }
                EventKind::Packet {
                    iface,
                    direction,
                    flags,
                    len,
                    first,
                } => {
                    let d = match direction {
                        podtrace::event::Direction::Ingress => "ingress",
                        podtrace::event::Direction::Egress => "egress",
                    };
                    let _ = write!(out, " {iface} {d} [{flags}] len={len}");
                    if *first {
                        out.push_str(" first");
                    }
                }
                EventKind::Connect | EventKind::Accept => {}
            }
            if let (Some(pid), Some(comm)) = (e.pid, &e.comm) {
                let _ = write!(out, " ({comm} {pid})");
            }
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
//! Turning runner lines into what people read: aligned text with pod
//! names (colour on a terminal), or JSON lines.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::event::{Backend, Event, EventKind, FlowSummary, Lost, Rtt, SessionSummary};

/// How text is drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
    /// Width of the node column.
    pub node_width: usize,
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const BOLD_RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

fn paint(style: Style, code: &str, text: &str) -> String {
    if style.color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// Width of the address columns.
const ADDR_WIDTH: usize = 30;

/// The header line over events.
pub fn header(style: Style) -> String {
    format!(
        "{:<15}  {:<nw$}  {:<15}  {:<aw$}    {:<aw$}  {}",
        "TIME",
        "NODE",
        "EVENT",
        "SOURCE",
        "DESTINATION",
        "DETAILS",
        nw = style.node_width.max(4),
        aw = ADDR_WIDTH
    )
    .trim_end()
    .to_string()
}

/// `ns/name:port` when the IP is known, else `ip:port`.
pub fn endpoint(addr: &SocketAddr, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{n}:{}", addr.port()),
        None => addr.to_string(),
    }
}

/// `svc/ns/name:port`: a Service as the client addressed it.
pub fn service_endpoint(service: &str, addr: &SocketAddr) -> String {
    format!("svc/{service}:{}", addr.port())
}

/// An event's two ends as text. Through a Service, the ClusterIP shows
/// as `svc/ns/name:80`, and a connection event's backend (its `dst`) as
/// `svc/ns/name:80 -> ns/backend:80`. Packets keep their own addresses, so
/// one at the client's interface shows the Service, one at the backend's
/// the backend.
fn ends_text(e: &Event) -> (String, String) {
    let src = endpoint(&e.src, e.src_name.as_deref());
    let dst = endpoint(&e.dst, e.dst_name.as_deref());
    let Some(via) = &e.via else {
        return (src, dst);
    };
    let svc = service_endpoint(&via.service, &via.service_addr);
    if e.src == via.service_addr {
        (svc, dst)
    } else if e.dst == via.service_addr {
        (src, svc)
    } else if e.kind.is_connection_event() {
        (src, format!("{svc} -> {dst}"))
    } else {
        (src, dst)
    }
}

/// `HH:MM:SS.ffffff` from an RFC 3339 time, or the time as given.
pub fn clock(time: &str) -> String {
    match time.split_once('T') {
        Some((_, rest)) => {
            let rest = rest.trim_end_matches('Z');
            let rest = rest.split(['+', '-']).next().unwrap_or(rest);
            match rest.split_once('.') {
                Some((hms, frac)) => format!("{hms}.{:0<6.6}", frac),
                None => format!("{rest}.000000"),
            }
        }
        None => time.to_string(),
    }
}

/// `52µs`, `1.25ms`, `3.40s`.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// `853B`, `12.3KiB`, `4.0MiB`.
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n}B")
    } else if n < 1024 * 1024 {
        format!("{:.1}KiB", n as f64 / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.1}MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1}GiB", n as f64 / (1024.0 * 1024.0 * 1024.0))
    }
}

/// One event as one aligned line.
pub fn event_line(e: &Event, style: Style) -> String {
    let (color, details) = match &e.kind {
        EventKind::Connect | EventKind::Accept => (CYAN, String::new()),
        EventKind::Established { rtt_us } => (GREEN, format!("rtt={}", micros(*rtt_us))),
        // Bytes per direction of the flow, under its `src -> dst` arrow,
        // whichever end reported them.
        EventKind::Close {
            duration_ms,
            bytes_sent,
            bytes_received,
        } => (
            "",
            format!(
                "duration={duration_ms:.1}ms ->{} <-{}",
                bytes(*bytes_sent),
                bytes(*bytes_received)
            ),
        ),
        EventKind::Failed { error } => (RED, error.clone().unwrap_or_default()),
        EventKind::Reset { direction } => (RED, direction.as_str().into()),
        EventKind::Retransmit { state } => (
            YELLOW,
            state
                .as_ref()
                .map(|s| format!("state={s}"))
                .unwrap_or_default(),
        ),
        // Worded as for packets: `ingress cali1` on its way into the pod
        // behind cali1; `at=` where the kernel freed it.
        EventKind::Drop {
            reason,
            iface,
            direction,
            at,
            ..
        } => {
            let mut d = reason
                .as_ref()
                .map(|r| format!("reason={r}"))
                .unwrap_or_default();
            match (direction, iface) {
                (Some(dir), Some(i)) => {
                    let _ = write!(d, " {} {i}", dir.as_str());
                }
                (None, Some(i)) => {
                    let _ = write!(d, " iface={i}");
                }
                (Some(dir), None) => {
                    let _ = write!(d, " {}", dir.as_str());
                }
                (None, None) => {}
            }
            if let Some(at) = at {
                let _ = write!(d, " at={}", at.as_str());
            }
            (RED, d.trim_start().to_owned())
        }
        EventKind::Packet {
            iface,
            direction,
            flags,
            len,
            first,
            ..
        } => {
            let dir = direction.as_str();
            let mut d = format!("{dir} {iface}");
            if !flags.is_empty() {
                let _ = write!(d, " {flags}");
            }
            let _ = write!(d, " len={len}");
            if *first {
                d.push_str(" first");
            }
            (DIM, d)
        }
        // On the line of the packet it quotes: `port unreachable`,
        // `frag needed mtu=1400`, then who sent it and where it passed.
        EventKind::Icmp {
            error,
            mtu,
            from,
            iface,
            direction,
            ..
        } => {
            let mut d = error.clone();
            if let Some(m) = mtu {
                let _ = write!(d, " mtu={m}");
            }
            let _ = write!(d, " from={from} {} {iface}", direction.as_str());
            (RED, d)
        }
        EventKind::Dns(d) => (
            if crate::dns::render::failed(d) {
                RED
            } else {
                GREEN
            },
            crate::dns::render::details(d),
        ),
    };
    let mut details = details;
    // Which end's socket saw it, where the kind does not say (connect and
    // failed are the client's, accept the server's).
    if let (Some(end), EventKind::Established { .. } | EventKind::Close { .. })
    | (Some(end), EventKind::Reset { .. } | EventKind::Retransmit { .. }) = (e.end, &e.kind)
    {
        if !details.is_empty() {
            details.push(' ');
        }
        let _ = write!(details, "by={}", end.as_str());
    }
    if let Some(comm) = &e.comm {
        let who = match e.pid {
            Some(pid) => format!("{comm}[{pid}]"),
            None => comm.clone(),
        };
        details = if details.is_empty() {
            who
        } else {
            format!("{details} {who}")
        };
    }
    let kind = format!("{} {}", e.proto, e.kind.name());
    let kind = format!("{kind:<15}");
    let (src_text, dst_text) = ends_text(e);
    let line = format!(
        "{:<15}  {:<nw$}  {}  {:<aw$} -> {:<aw$}  {}",
        clock(&e.time),
        e.node,
        if color.is_empty() {
            kind
        } else {
            paint(style, color, &kind)
        },
        src_text,
        dst_text,
        details,
        nw = style.node_width.max(4),
        aw = ADDR_WIDTH
    );
    line.trim_end().to_string()
}

/// A `lost` line, made hard to miss.
pub fn lost_line(l: &Lost, style: Style) -> String {
    paint(
        style,
        BOLD_RED,
        &format!(
            "!!! LOST {} events on node {} ({} since start): the kernel could not hand them over{}; \
             narrow the trace with --port or drop --packets",
            l.count,
            l.node,
            l.total,
            if l.skipped > 0 {
                format!(
                    " ({} of them at most: hook runs the kernel skipped while the hook was busy on that CPU)",
                    l.skipped
                )
            } else {
                String::new()
            }
        ),
    )
}

fn rtt_text(r: &Option<Rtt>) -> String {
    match r {
        Some(r) if r.count > 0 => format!(
            "{}/{}/{}",
            micros(r.min_us),
            micros(r.avg_us()),
            micros(r.max_us)
        ),
        _ => "-".into(),
    }
}

/// A Service flow's destination in the summary: the Service, then each
/// backend it reached with its connections.
fn service_row(service: &str, addr: &SocketAddr, backends: &[Backend]) -> String {
    let mut out = service_endpoint(service, addr);
    for (i, b) in backends.iter().enumerate() {
        out.push_str(if i == 0 { " -> " } else { ", " });
        let _ = write!(
            out,
            "{} ({})",
            endpoint(&b.addr, b.name.as_deref()),
            b.connections
        );
    }
    out
}

/// The per-flow summary table.
pub fn summary_table(flows: &[FlowSummary], lost: u64, style: Style) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "FLOW".into(),
        "CONN".into(),
        "FAILED".into(),
        "PACKETS ->/<-".into(),
        "BYTES ->/<-".into(),
        "RETRANS ->/<-".into(),
        "RESETS ->/<-".into(),
        "DROPS".into(),
        "RTT min/avg/max".into(),
    ]];
    for f in flows {
        let src = match (&f.src_name, f.src) {
            (Some(n), _) => n.clone(),
            (None, Some(ip)) => ip.to_string(),
            _ => "?".into(),
        };
        let dst = match (f.dst, &f.service) {
            (Some(d), Some(svc)) => service_row(svc, &d, &f.backends),
            (Some(d), None) => endpoint(&d, f.dst_name.as_deref()),
            (None, _) => "?".into(),
        };
        let proto = f.proto.map(|p| p.to_string()).unwrap_or_default();
        rows.push([
            format!("{proto} {src} -> {dst}"),
            f.connections.to_string(),
            f.failed.to_string(),
            format!("{}/{}", f.packets_sent, f.packets_received),
            format!("{}/{}", bytes(f.bytes_sent), bytes(f.bytes_received)),
            format!("{}/{}", f.retransmits_sent, f.retransmits_received),
            format!("{}/{}", f.resets_sent, f.resets_received),
            f.drops.to_string(),
            rtt_text(&f.rtt),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, (cell, w)) in row.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if c == 0 || c == 8 {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let line = line.trim_end().to_string();
        let bad = i > 0 && {
            let f = &flows[i - 1];
            f.failed + f.resets() + f.drops > 0
        };
        out.push_str(&if bad { paint(style, RED, &line) } else { line });
        out.push('\n');
    }
    if flows.is_empty() {
        out.push_str("(no flows seen)\n");
    }
    if lost > 0 {
        out.push_str(&paint(
            style,
            BOLD_RED,
            &format!("{lost} events were lost: counts above may be low"),
        ));
        out.push('\n');
    }
    out
}

/// The session's summary as the plugin prints it at the end.
pub fn session_summary(s: &SessionSummary, style: Style) -> String {
    let mut out = format!("\nSUMMARY\n{}", summary_table(&s.flows, s.lost, style));
    let dns = crate::dns::render::table(&s.dns);
    if !dns.is_empty() {
        out.push('\n');
        out.push_str(&dns);
    }
    if !s.counted_from_events.is_empty() {
        let _ = writeln!(
            out,
            "(no summary came from node {}: its flows are counted from the events shown)",
            s.counted_from_events.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Direction, DropSite, Proto};

    fn ev(kind: EventKind) -> Event {
        Event {
            time: "2025-11-25T14:37:18.123456789Z".into(),
            node: "node-1".into(),
            proto: Proto::Tcp,
            src: "10.244.1.2:43210".parse().unwrap(),
            dst: "10.244.2.3:80".parse().unwrap(),
            pid: Some(42),
            comm: Some("curl".into()),
            src_name: Some("default/curl-demo".into()),
            dst_name: Some("default/nginx-demo".into()),
            via: None,
            end: None,
            kind,
        }
    }

    const PLAIN: Style = Style {
        color: false,
        node_width: 6,
    };

    #[test]
    fn events_render_aligned_with_names() {
        assert_eq!(
            event_line(&ev(EventKind::Connect), PLAIN),
            "14:37:18.123456  node-1  tcp connect      default/curl-demo:43210        -> default/nginx-demo:80           curl[42]"
        );
        let mut e = ev(EventKind::Failed {
            error: Some("ECONNREFUSED".into()),
        });
        e.dst_name = None;
        e.pid = None;
        e.comm = None;
        assert_eq!(
            event_line(&e, PLAIN),
            "14:37:18.123456  node-1  tcp failed       default/curl-demo:43210        -> 10.244.2.3:80                   ECONNREFUSED"
        );
        let line = event_line(&ev(EventKind::Established { rtt_us: 52 }), PLAIN);
        assert!(line.contains("rtt=52µs curl[42]"), "{line}");
        let line = event_line(
            &ev(EventKind::Drop {
                reason: Some("NETFILTER_DROP".into()),
                iface: None,
                direction: None,
                at: None,
                data: None,
            }),
            Style {
                color: true,
                node_width: 6,
            },
        );
        assert!(line.contains("\x1b[31mtcp drop"), "{line}");
        assert!(line.ends_with("reason=NETFILTER_DROP curl[42]"), "{line}");
    }

    #[test]
    fn an_icmp_error_shows_on_its_flows_addresses_with_its_sender() {
        let mut e = ev(crate::event::tests::frag_needed());
        (e.pid, e.comm) = (None, None);
        assert_eq!(
            event_line(&e, PLAIN),
            "14:37:18.123456  node-1  tcp icmp         default/curl-demo:43210        -> default/nginx-demo:80           \
             frag needed mtu=1400 from=10.244.1.1 ingress cali1"
        );
    }

    #[test]
    fn a_service_flow_shows_the_service_then_the_backend() {
        let mut e = ev(EventKind::Connect);
        e.dst_name = Some("default/nginx-7d9f-abc".into());
        e.via = Some(crate::event::ServiceHop {
            service: "default/nginx".into(),
            service_addr: "10.96.0.20:80".parse().unwrap(),
        });
        assert_eq!(
            event_line(&e, PLAIN),
            "14:37:18.123456  node-1  tcp connect      default/curl-demo:43210        -> \
             svc/default/nginx:80 -> default/nginx-7d9f-abc:80  curl[42]"
        );
        // The backend not known yet: the Service alone.
        e.dst = "10.96.0.20:80".parse().unwrap();
        e.dst_name = Some("default/nginx".into());
        assert!(event_line(&e, PLAIN).contains("-> svc/default/nginx:80        "));
        let mut row = FlowSummary {
            proto: Some(Proto::Tcp),
            src: Some("10.244.1.2".parse().unwrap()),
            dst: Some("10.96.0.20:80".parse().unwrap()),
            src_name: Some("default/curl-demo".into()),
            service: Some("default/nginx".into()),
            connections: 3,
            ..Default::default()
        };
        for (addr, name, n) in [("10.244.2.3:80", "a", 2), ("10.244.3.3:80", "b", 1)] {
            row.backends.push(Backend {
                addr: addr.parse().unwrap(),
                name: Some(format!("default/nginx-{name}")),
                connections: n,
            });
        }
        let table = summary_table(&[row], 0, PLAIN);
        assert!(
            table.contains(
                "tcp default/curl-demo -> svc/default/nginx:80 -> default/nginx-a:80 (2), \
                 default/nginx-b:80 (1)"
            ),
            "{table}"
        );
    }

    #[test]
    fn drop_says_which_pod_interface_which_way_and_where() {
        let drop = |iface: Option<&str>, direction, at| {
            let mut e = ev(EventKind::Drop {
                reason: Some("NO_SOCKET".into()),
                iface: iface.map(Into::into),
                direction,
                at,
                data: None,
            });
            e.pid = None;
            e.comm = None;
            event_line(&e, PLAIN)
        };
        let line = drop(Some("cali1"), Some(Direction::Ingress), Some(DropSite::Pod));
        assert!(
            line.ends_with("  reason=NO_SOCKET ingress cali1 at=pod"),
            "{line}"
        );
        let line = drop(Some("cni0p"), Some(Direction::Egress), Some(DropSite::Node));
        assert!(
            line.ends_with("  reason=NO_SOCKET egress cni0p at=node"),
            "{line}"
        );
        // What is not known is not printed.
        let line = drop(Some("cali1"), None, Some(DropSite::Pod));
        assert!(
            line.ends_with("  reason=NO_SOCKET iface=cali1 at=pod"),
            "{line}"
        );
    }

    #[test]
    fn close_says_bytes_per_direction_of_the_flow() {
        // The server's socket closed: 73 bytes came from the client, 854
        // went back, under the client -> server arrow.
        let mut e = ev(EventKind::Close {
            duration_ms: 0.43,
            bytes_sent: 73,
            bytes_received: 854,
        });
        e.end = Some(crate::event::End::Server);
        e.comm = None;
        let line = event_line(&e, PLAIN);
        assert!(
            line.ends_with("default/curl-demo:43210        -> default/nginx-demo:80           duration=0.4ms ->73B <-854B by=server"),
            "{line}"
        );
        let mut reset = ev(EventKind::Reset {
            direction: crate::event::ResetDirection::Sent,
        });
        reset.end = Some(crate::event::End::Client);
        assert!(
            event_line(&reset, PLAIN).ends_with("sent by=client curl[42]"),
            "{}",
            event_line(&reset, PLAIN)
        );
    }

    #[test]
    fn session_summary_names_nodes_counted_from_events() {
        let s = SessionSummary {
            time: "t".into(),
            flows: Vec::new(),
            dns: Vec::new(),
            lost: 2,
            nodes: vec!["a".into()],
            counted_from_events: vec!["b".into()],
        };
        let text = session_summary(&s, PLAIN);
        assert!(text.starts_with("\nSUMMARY\nFLOW"), "{text}");
        assert!(text.contains("2 events were lost"), "{text}");
        assert!(
            text.ends_with(
                "(no summary came from node b: its flows are counted from the events shown)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn header_lines_up_with_events() {
        let h = header(PLAIN);
        let e = event_line(&ev(EventKind::Connect), PLAIN);
        assert_eq!(h.find("NODE"), e.find("node-1"));
        assert_eq!(h.find("EVENT"), e.find("tcp connect"));
        assert_eq!(h.find("SOURCE"), e.find("default/curl-demo"));
    }

    #[test]
    fn lost_is_prominent() {
        let l = lost_line(
            &Lost {
                node: "n1".into(),
                time: "t".into(),
                count: 12,
                total: 40,
                skipped: 0,
            },
            PLAIN,
        );
        assert!(
            l.starts_with("!!! LOST 12 events on node n1 (40 since start)"),
            "{l}"
        );
        assert!(!l.contains("skipped"), "{l}");
        let skipped = lost_line(
            &Lost {
                node: "n1".into(),
                time: "t".into(),
                count: 2,
                total: 2,
                skipped: 2,
            },
            PLAIN,
        );
        assert!(
            skipped.contains("over (2 of them at most: hook runs the kernel skipped"),
            "{skipped}"
        );
    }

    #[test]
    fn units() {
        assert_eq!(micros(52), "52µs");
        assert_eq!(micros(1250), "1.25ms");
        assert_eq!(bytes(853), "853B");
        assert_eq!(bytes(2048), "2.0KiB");
        assert_eq!(clock("2025-11-25T14:37:18.1Z"), "14:37:18.100000");
        assert_eq!(clock("2025-11-25T14:37:18Z"), "14:37:18.000000");
    }

    #[test]
    fn summary_table_is_aligned() {
        let mut rtt = Rtt::default();
        rtt.add(52);
        let flows = vec![
            FlowSummary {
                proto: Some(Proto::Tcp),
                src: Some("10.244.1.2".parse().unwrap()),
                dst: Some("10.244.2.3:80".parse().unwrap()),
                src_name: Some("default/curl-demo".into()),
                dst_name: Some("default/nginx-demo".into()),
                connections: 3,
                packets_sent: 18,
                bytes_sent: 1200,
                packets_received: 12,
                bytes_received: 2600,
                rtt: Some(rtt),
                ..Default::default()
            },
            FlowSummary {
                proto: Some(Proto::Tcp),
                src: Some("10.244.1.2".parse().unwrap()),
                dst: Some("10.244.2.3:81".parse().unwrap()),
                connections: 1,
                failed: 1,
                resets_received: 1,
                retransmits_sent: 2,
                ..Default::default()
            },
        ];
        let t = summary_table(&flows, 0, PLAIN);
        let expected = "\
FLOW                                            CONN  FAILED  PACKETS ->/<-    BYTES ->/<-  RETRANS ->/<-  RESETS ->/<-  DROPS  RTT min/avg/max
tcp default/curl-demo -> default/nginx-demo:80     3       0          18/12  1.2KiB/2.5KiB            0/0           0/0      0  52µs/52µs/52µs
tcp 10.244.1.2 -> 10.244.2.3:81                    1       1            0/0          0B/0B            2/0           0/1      0  -
";
        assert_eq!(t, expected);
        assert!(summary_table(&[], 3, PLAIN).contains("3 events were lost"));
    }
}

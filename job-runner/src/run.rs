// SPDX-License-Identifier: Apache-2.0
//! One tracing session, in its steps: find the pods and load and attach
//! the programs ([`start`]), stream events until stopped ([`drain`]), then
//! detach everything and write the summary ([`summarize`]).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use podtrace::abi::ip_from_key;
use podtrace::bpf::types;
use podtrace::decode::{monotonic_ns, Decoder};
use podtrace::discover::{discover, Discovery};
use podtrace::drop_reason::DropReasons;
use podtrace::event::{
    now_rfc3339, Event, Hello, Interface, Lost, Message, Proto, Ready, Summary, SCHEMA,
};
use podtrace::features::Kernel;
use podtrace::flows::{Counters, Flows};
use podtrace::runner_args::snap_bytes;
use podtrace::tracer::{self, Config, Iface, OpenObject, OpenTracepoints, Packets, Stop, Tracer};

use crate::cli::Cli;
use crate::dns::{DnsSink, Packet};
use crate::output::Output;
use crate::signals;

/// How long one ring-buffer poll may block: the kernel only wakes us for a
/// filling buffer, so this bounds how late a quiet event shows up.
const POLL: Duration = Duration::from_millis(50);

pub fn run(cli: &Cli, started: Instant) -> anyhow::Result<()> {
    signals::install().context("install signal handlers")?;
    tracer::set_verbose(cli.verbose);
    tracer::preflight()?;
    let (hostname, kernel) = tracer::node_and_kernel();
    let node = cli.trace.node_name.clone().unwrap_or(hostname);
    let mut out = Output::new(cli.trace.format, &node);
    out.write(&Message::hello(Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        schema: SCHEMA,
        node: node.clone(),
        kernel,
        time: now_rfc3339(),
    }))
    .and_then(|()| out.flush())
    .context("write to stdout")?;

    let (mut tp_storage, mut pk_storage) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let (found, reasons, tracer) = start(cli, started, &mut tp_storage, &mut pk_storage)?;
    if let Some(n) = cli.fail_after_hooks {
        bail!(
            "failing on purpose after {} hooks (at most {n})",
            tracer.hooks().len()
        );
    }
    let trace_start = Instant::now();
    out.write(&ready(cli, &node, &found, &tracer, started))
        .and_then(|()| out.flush())
        .context("write to stdout")?;

    let decoder = Decoder::new(node.clone(), &found, reasons);
    let dns = DnsSink::new(cli.trace.packets, config(cli).snaplen, &node);
    let drained = drain(
        cli,
        &tracer,
        Sink::new(out, decoder, dns),
        &node,
        trace_start,
    )?;
    let counters = tracer.flows();
    // Detach everything before the summary, so a reader that stops at the
    // summary line leaves a clean node.
    drop(tracer);
    summarize(drained, counters, node, trace_start)
}

/// What the filters in the kernel get from the command line.
fn config(cli: &Cli) -> Config {
    Config {
        pod_ips: cli.trace.pod_ips.clone(),
        peer_ips: cli.trace.peer_ips.clone(),
        ports: cli.trace.ports.clone(),
        packets: cli.trace.packets,
        // Absent: no bytes (0 in the kernel's terms).
        snaplen: cli.trace.snaplen.map_or(0, snap_bytes),
        dns: true,
        netns: Vec::new(),
        ring_bytes: cli.ring_buffer_mib << 20,
        ignored_drop_reasons: Vec::new(),
        unnamed_purge_reason: u32::MAX,
        features: Default::default(),
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Discovers the pods, loads and attaches both BPF objects. In parallel as
/// far as the steps allow: finding the pods (netlink, entering namespaces)
/// and reading the drop reasons from the kernel's BTF on their own
/// threads; the tracepoint object (the long pole: CO-RE against the
/// kernel's BTF, the verifier) on this one; and as soon as the pods are
/// found, the packet object and its tc attachments (tcx: each waits for an
/// RCU grace period) on another.
fn start<'obj>(
    cli: &Cli,
    started: Instant,
    tp_storage: &'obj mut MaybeUninit<OpenObject>,
    pk_storage: &'obj mut MaybeUninit<OpenObject>,
) -> anyhow::Result<(Discovery, DropReasons, Tracer<'obj>)> {
    let cfg = config(cli);
    let stop = Stop {
        requested: &signals::stopped,
        max_hooks: cli.fail_after_hooks,
    };
    let mode = cli.tc_mode.into();
    let (found, reasons, tracer) = std::thread::scope(|s| -> anyhow::Result<_> {
        let found = s.spawn(|| {
            let r = discover(&cli.trace.pod_ips);
            tracing::debug!(ms = ms(started), "found the pods' interfaces");
            r
        });
        let kernel = s.spawn(|| {
            let k = Kernel::probe();
            tracing::debug!(ms = ms(started), "probed the kernel's features in its BTF");
            k
        });
        let opened = OpenTracepoints::open(tp_storage, &cfg);
        tracing::debug!(ms = ms(started), "opened the BPF objects, created the maps");
        let found = found.join().expect("the discovery thread panicked")?;
        let (tp, shared) = opened?;
        // A dual-stack pod is found once per address, on one interface:
        // attached once.
        let mut attached = std::collections::HashSet::new();
        let ifaces: Vec<Iface> = found
            .pods
            .iter()
            .filter(|p| attached.insert(p.ifindex))
            .map(|p| Iface {
                name: p.ifname.clone(),
                index: p.ifindex,
            })
            .collect();
        // The tracepoint object holds its own fds of the shared maps.
        let (cfg_ref, stop_ref) = (&cfg, &stop);
        let packets = std::thread::Builder::new()
            .name("packets".into())
            .spawn_scoped(s, move || {
                Packets::start(pk_storage, &shared, cfg_ref, &ifaces, mode, stop_ref)
            })
            .context("start a thread")?;
        let Kernel {
            drop_reasons: reasons,
            features,
        } = kernel.join().expect("the BTF reader thread panicked");
        let mut tp_cfg = cfg.clone();
        tp_cfg.features = features;
        tp_cfg.netns = vec![found.own_netns];
        for p in &found.pods {
            if !tp_cfg.netns.contains(&p.netns) {
                tp_cfg.netns.push(p.netns);
            }
        }
        tp_cfg.ignored_drop_reasons = reasons.ignored();
        tp_cfg.unnamed_purge_reason = reasons.unnamed_purge();
        tracing::debug!(
            ignored = ?tp_cfg.ignored_drop_reasons,
            "drop reasons not reported (QUEUE_PURGE, SKB_CONSUMED)"
        );
        let tp = tp.load(&tp_cfg, &stop);
        let packets = packets.join().expect("the packet thread panicked");
        // On an error, whatever did attach is dropped here: detached.
        let tracer = Tracer::new(tp?, packets?);
        Ok((found, reasons, tracer))
    })?;
    tracing::debug!(ms = ms(started), "attached everything");
    Ok((found, reasons, tracer))
}

/// The `ready` line: what is attached where.
fn ready(
    cli: &Cli,
    node: &str,
    found: &Discovery,
    tracer: &Tracer<'_>,
    started: Instant,
) -> Message {
    Message::ready(Ready {
        node: node.to_owned(),
        time: now_rfc3339(),
        hooks: tracer.hooks().to_vec(),
        interfaces: found
            .pods
            .iter()
            .map(|p| Interface {
                name: p.ifname.clone(),
                ifindex: p.ifindex,
                pod_ip: p.pod_ip,
                kind: p.kind.as_str().into(),
            })
            .collect(),
        pod_ips: cli.trace.pod_ips.clone(),
        peer_ips: cli.trace.peer_ips.clone(),
        ports: cli.trace.ports.clone(),
        startup_ms: ms(started),
        features: Some(tracer.features()),
    })
}

/// What the ring-buffer callback writes into.
struct Sink {
    out: Output,
    decoder: Decoder,
    dns: DnsSink,
    /// `dns` events done, not yet written.
    dns_done: Vec<Event>,
    flows: Flows,
    events: u64,
    error: Option<std::io::Error>,
}

impl Sink {
    fn new(out: Output, decoder: Decoder, dns: DnsSink) -> Sink {
        Sink {
            out,
            decoder,
            dns,
            dns_done: Vec::new(),
            flows: Flows::default(),
            events: 0,
            error: None,
        }
    }

    fn on_event(&mut self, raw: &types::pt_event, payload: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let shown = match self
            .dns
            .packet(raw, payload, &self.decoder, &mut self.dns_done)
        {
            Packet::Other => Some(payload),
            Packet::Shown(p) => Some(p),
            Packet::Hidden => None,
        };
        if let Some(ev) = shown.and_then(|p| self.decoder.decode(raw, p)) {
            self.dns.event(ev);
            self.flows.record(ev);
            self.events += 1;
            if let Err(e) = self.out.write_event(ev) {
                self.error = Some(e);
            }
        }
        self.write_dns();
    }

    /// Writes the queries unanswered by now; with `trace_over`, every
    /// query still waiting.
    fn unanswered_dns(&mut self, trace_over: bool) {
        let (now, out) = (monotonic_ns(), &mut self.dns_done);
        if trace_over {
            self.dns.finish(now, &self.decoder, out);
        } else {
            self.dns.expire(now, &self.decoder, out);
        }
        self.write_dns();
    }

    /// Writes the `dns` events done.
    fn write_dns(&mut self) {
        for ev in std::mem::take(&mut self.dns_done) {
            self.events += 1;
            if let Err(e) = self.out.write_event(&ev) {
                self.error.get_or_insert(e);
            }
        }
    }

    fn write(&mut self, msg: &Message) {
        if let Err(e) = self.out.write(msg) {
            self.error.get_or_insert(e);
        }
    }
}

/// A drained session: the sink and the losses it reported.
struct Drained {
    sink: Sink,
    lost: u64,
}

/// Streams events (and `lost` lines) until a stop request, the deadline or
/// a write error.
fn drain(
    cli: &Cli,
    tracer: &Tracer<'_>,
    sink: Sink,
    node: &str,
    trace_start: Instant,
) -> anyhow::Result<Drained> {
    let sink = Rc::new(RefCell::new(sink));
    let cb_sink = Rc::clone(&sink);
    let rb = tracer.ring_buffer(move |ev, payload| cb_sink.borrow_mut().on_event(ev, payload))?;
    let deadline = cli.trace.duration.map(|d| trace_start + d);
    let (mut lost_reported, mut skipped_reported) = (0u64, 0u64);
    let mut counters_read = Instant::now();
    loop {
        // EINTR from a signal lands here as an error: the stop check follows.
        let _ = rb.poll(POLL);
        let _ = rb.consume();
        let stop = signals::stopped() || deadline.is_some_and(|d| Instant::now() >= d);
        let mut s = sink.borrow_mut();
        s.unanswered_dns(false);
        // The loss counters cost a syscall per hook: read once per poll
        // interval, not at every wake-up of a busy ring, and once more on
        // the way out.
        if stop || counters_read.elapsed() >= POLL {
            counters_read = Instant::now();
            // Skipped hook runs may each have been an event: counted as lost.
            let skipped = tracer.skipped_total();
            let lost = tracer.lost_total() + skipped;
            if lost > lost_reported {
                s.write(&Message::lost(Lost {
                    node: node.to_owned(),
                    time: now_rfc3339(),
                    count: lost - lost_reported,
                    total: lost,
                    skipped: skipped - skipped_reported,
                }));
                lost_reported = lost;
                skipped_reported = skipped;
            }
        }
        if let Err(e) = s.out.flush() {
            s.error.get_or_insert(e);
        }
        if s.error.is_some() || stop {
            break;
        }
    }
    let _ = rb.consume();
    drop(rb);
    let sink = Rc::try_unwrap(sink)
        .ok()
        .expect("the ring buffer, the only other owner, is gone")
        .into_inner();
    Ok(Drained {
        sink,
        lost: lost_reported,
    })
}

/// Writes the summary: the flows from the events, with the kernel's
/// packet, byte and drop counters.
fn summarize(
    drained: Drained,
    counters: Vec<(types::pt_flow_key, types::pt_flow_stats)>,
    node: String,
    trace_start: Instant,
) -> anyhow::Result<()> {
    let Drained { mut sink, lost } = drained;
    sink.unanswered_dns(true);
    let Sink {
        mut out,
        mut flows,
        dns,
        events,
        error,
        ..
    } = sink;
    if let Some(e) = error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // Nobody is reading any more: a clean stop.
            return Ok(());
        }
        return Err(e).context("write to stdout");
    }
    for (k, v) in counters {
        let proto = if i32::from(k.proto) == libc::IPPROTO_UDP {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        flows.add_counters(
            proto,
            ip_from_key(&k.client.addr),
            SocketAddr::new(ip_from_key(&k.server.addr), k.server_port),
            Counters {
                packets_sent: v.packets_sent,
                bytes_sent: v.bytes_sent,
                packets_received: v.packets_received,
                bytes_received: v.bytes_received,
                drops: v.drops,
            },
        );
    }
    out.write(&Message::summary(Summary {
        node,
        time: now_rfc3339(),
        flows: flows.finish(),
        dns: dns.summary(),
        lost,
        events,
        duration_s: trace_start.elapsed().as_secs_f64(),
    }))
    .and_then(|()| out.flush())
    .or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })
    .context("write to stdout")
}

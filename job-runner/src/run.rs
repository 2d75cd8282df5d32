// SPDX-License-Identifier: Apache-2.0
//! One tracing session: find the pods, load and attach, stream events until
//! stopped, then detach everything and write the summary.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use podtrace::decode::Decoder;
use podtrace::discover::discover;
use podtrace::drop_reason::DropReasons;
use podtrace::event::{
    now_rfc3339, Hello, Interface, Lost, Message, Proto, Ready, Summary, SCHEMA,
};
use podtrace::tracer::{self, ip_from_key, Config, Iface, OpenTracepoints, Packets, Stop, Tracer};

use crate::cli::Cli;
use crate::output::Output;
use crate::signals;
use crate::summary::{Counters, Flows};

/// How long one ring-buffer poll may block: the kernel only wakes us for a
/// filling buffer, so this bounds how late a quiet event shows up.
const POLL: Duration = Duration::from_millis(50);

/// What the ring-buffer callback writes into.
struct Sink {
    out: Output,
    decoder: Decoder,
    flows: Flows,
    events: u64,
    error: Option<std::io::Error>,
}

impl Sink {
    fn on_event(&mut self, raw: &podtrace::bpf::types::pt_event) {
        if self.error.is_some() {
            return;
        }
        let Some(ev) = self.decoder.decode(raw) else {
            return;
        };
        self.flows.record(ev);
        self.events += 1;
        if let Err(e) = self.out.write_event(ev) {
            self.error = Some(e);
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn run(cli: &Cli, started: Instant) -> anyhow::Result<()> {
    signals::install().context("install signal handlers")?;
    tracer::set_verbose(cli.verbose);
    tracer::preflight()?;
    let (hostname, kernel) = podtrace::tracer::node_and_kernel();
    let node = cli.node_name.clone().unwrap_or(hostname);
    let mut out = Output::new(cli.format, &node);
    out.write(&Message::hello(Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        schema: SCHEMA,
        node: node.clone(),
        kernel,
        time: now_rfc3339(),
    }))
    .context("write to stdout")?;
    out.flush().context("write to stdout")?;

    let cfg = Config {
        pod_ips: cli.pod_ips.clone(),
        peer_ips: cli.peer_ips.clone(),
        ports: cli.ports.clone(),
        packets: cli.packets,
        netns: Vec::new(),
        ring_bytes: cli.ring_buffer_mib << 20,
        ignored_drop_reasons: Vec::new(),
    };
    // Start-up in parallel, as far as the steps allow: finding the pods
    // (netlink, entering namespaces) and reading the drop reasons from the
    // kernel's BTF on their own threads; the tracepoint object (the long
    // pole: CO-RE against the kernel's BTF, verifier) on this one; and as
    // soon as the pods are found, the packet object and its tc attachments
    // (tcx: each waits for an RCU grace period) on another.
    let stop = Stop {
        requested: &signals::stopped,
        max_hooks: cli.fail_after_hooks,
    };
    let mode = cli.tc_mode.into();
    let (mut tp_storage, mut pk_storage) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let (found, reasons, tracer) = std::thread::scope(|s| -> anyhow::Result<_> {
        let found = s.spawn(|| {
            let r = discover(&cli.pod_ips);
            tracing::debug!(ms = ms(started), "found the pods' interfaces");
            r
        });
        let reasons = s.spawn(|| {
            let r = DropReasons::from_kernel();
            tracing::debug!(ms = ms(started), "read the drop reasons from BTF");
            r
        });
        let opened = OpenTracepoints::open(&mut tp_storage, &cfg);
        tracing::debug!(ms = ms(started), "opened the BPF objects, created the maps");
        let found = found.join().expect("the discovery thread panicked")?;
        let (tp, shared) = opened?;
        let ifaces: Vec<Iface> = found
            .pods
            .iter()
            .map(|p| Iface {
                name: p.ifname.clone(),
                index: p.ifindex,
            })
            .collect();
        // The tracepoint object holds its own fds of the shared maps.
        let (cfg_ref, stop_ref) = (&cfg, &stop);
        let pk_storage = &mut pk_storage;
        let packets = std::thread::Builder::new()
            .name("packets".into())
            .spawn_scoped(s, move || {
                Packets::start(pk_storage, &shared, cfg_ref, &ifaces, mode, stop_ref)
            })
            .context("start a thread")?;
        let reasons = reasons.join().expect("the BTF reader thread panicked");
        let mut tp_cfg = cfg.clone();
        tp_cfg.netns = vec![found.own_netns];
        tp_cfg.netns.extend(found.pods.iter().map(|p| p.netns));
        tp_cfg.ignored_drop_reasons = reasons.ignored();
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
    if let Some(n) = cli.fail_after_hooks.filter(|n| tracer.hooks().len() >= *n) {
        bail!("failing on purpose after {n} hooks");
    }
    let trace_start = Instant::now();
    out.write(&Message::ready(Ready {
        node: node.clone(),
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
        pod_ips: cli.pod_ips.clone(),
        peer_ips: cli.peer_ips.clone(),
        ports: cli.ports.clone(),
        startup_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
    .context("write to stdout")?;
    out.flush().context("write to stdout")?;

    let sink = Rc::new(RefCell::new(Sink {
        out,
        decoder: Decoder::new(node.clone(), found.links.clone(), found.own_netns, reasons),
        flows: Flows::default(),
        events: 0,
        error: None,
    }));
    let cb_sink = Rc::clone(&sink);
    let rb = tracer.ring_buffer(move |ev| cb_sink.borrow_mut().on_event(ev))?;
    let deadline = cli
        .duration
        .map(|s| trace_start + Duration::from_secs_f64(s.max(0.0)));
    let (mut lost_reported, mut skipped_reported) = (0u64, 0u64);
    let mut counters_read = Instant::now();
    loop {
        // EINTR from a signal lands here as an error: the stop check follows.
        let _ = rb.poll(POLL);
        let _ = rb.consume();
        let stop = signals::stopped() || deadline.is_some_and(|d| Instant::now() >= d);
        let mut s = sink.borrow_mut();
        // The loss counters cost a handful of syscalls (one per hook for
        // its skipped runs): read at most once per poll interval, not at
        // every wake-up of a busy ring (7% of the runner's CPU under load),
        // and once more on the way out.
        if stop || counters_read.elapsed() >= POLL {
            counters_read = Instant::now();
            // Skipped hook runs may each have been an event: counted as lost.
            let skipped = tracer.skipped_total();
            let lost = tracer.lost_total() + skipped;
            if lost > lost_reported {
                let msg = Message::lost(Lost {
                    node: node.clone(),
                    time: now_rfc3339(),
                    count: lost - lost_reported,
                    total: lost,
                    skipped: skipped - skipped_reported,
                });
                lost_reported = lost;
                skipped_reported = skipped;
                if let Err(e) = s.out.write(&msg) {
                    s.error.get_or_insert(e);
                }
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
    let counters = tracer.flows();
    // Detach everything before the summary, so a reader that stops at the
    // summary line leaves a clean node.
    drop(tracer);

    let sink = Rc::try_unwrap(sink)
        .ok()
        .expect("the ring buffer, the only other owner, is gone")
        .into_inner();
    let Sink {
        mut out,
        mut flows,
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
        lost: lost_reported,
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

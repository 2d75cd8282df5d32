// SPDX-License-Identifier: Apache-2.0
//! `podtrace-fake-runner`: a stand-in for `podtrace-runner` that the
//! plugin's sandbox tests run in its place, so they exercise the plugin, not
//! the kernel. It reads the runner's own command-line contract
//! ([`RunnerArgs`]) and writes its lines through the wire schema's types:
//! `hello`, a stderr diagnostic, `ready`, one `connect` event and one `lost`
//! line; then it idles until SIGTERM/SIGINT or `--duration`, and writes its
//! `summary`. Its own flags (put before the runner's) make it misbehave.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use podtrace::event::{
    now_rfc3339, End, Event, EventKind, FlowSummary, Hello, Hook, Lost, Message, Proto, Ready,
    Summary, SCHEMA,
};
use podtrace::runner_args::{parse_duration, RunnerArgs};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(name = "podtrace-fake-runner")]
struct Cli {
    #[command(flatten)]
    runner: RunnerArgs,

    /// Take this long to stop after SIGTERM/SIGINT (a runner slow to detach).
    #[arg(long, value_parser = parse_duration)]
    stop_delay: Option<Duration>,

    /// Exit with this code just after the first events, with no summary
    /// (a runner dying mid-trace).
    #[arg(long, value_name = "CODE")]
    die_with: Option<u8>,

    /// After the connect, this many netfilter drops of its SYN (as a
    /// NetworkPolicy drop shows).
    #[arg(long, default_value_t = 0)]
    netfilter_drops: u32,

    /// Every half second until it stops, a `connect` to each IP listed in
    /// this file (one a line; read each time, so a test can add to it).
    #[arg(long, value_name = "PATH")]
    connect_file: Option<std::path::PathBuf>,
}

/// The `connect` events to each IP in `path` now (none while it is absent).
fn connects_to_listed(path: &std::path::Path, node: &str, src: IpAddr) {
    let listed = std::fs::read_to_string(path).unwrap_or_default();
    for ip in listed
        .lines()
        .filter_map(|l| l.trim().parse::<IpAddr>().ok())
    {
        say(Message::Event(Event {
            time: now_rfc3339(),
            node: node.to_owned(),
            proto: Proto::Tcp,
            src: SocketAddr::new(src, 40001),
            dst: SocketAddr::new(ip, 80),
            pid: Some(42),
            comm: Some("curl".into()),
            src_name: None,
            dst_name: None,
            via: None,
            end: Some(End::Client),
            kind: EventKind::Connect,
        }));
    }
}

/// Where the connection goes when the trace has no peer (a cluster IP).
const NO_PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 10));

fn say(message: Message) {
    println!("{}", message.to_line());
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let started = Instant::now();
    let cli: Cli = podtrace::runner_args::parse_or_exit();
    let node = cli
        .runner
        .node_name
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let src = cli.runner.pod_ips[0];
    let dst = SocketAddr::new(cli.runner.peer_ips.first().copied().unwrap_or(NO_PEER), 80);
    // Signals are caught before `ready`, so a stop is never missed.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            eprintln!("fake-runner: cannot catch signals");
            return std::process::ExitCode::FAILURE;
        }
    };

    say(Message::hello(Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        schema: SCHEMA,
        node: node.clone(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default(),
        time: now_rfc3339(),
    }));
    let pods: Vec<String> = cli.runner.pod_ips.iter().map(IpAddr::to_string).collect();
    eprintln!("fake-runner: attaching to {}", pods.join(" "));
    say(Message::ready(Ready {
        node: node.clone(),
        time: now_rfc3339(),
        hooks: vec![Hook {
            kind: "tracepoint/sock/inet_sock_set_state".into(),
            iface: None,
        }],
        interfaces: Vec::new(),
        pod_ips: vec![src],
        peer_ips: Vec::new(),
        ports: Vec::new(),
        startup_ms: 5.0,
        features: None,
    }));
    say(Message::Event(Event {
        time: now_rfc3339(),
        node: node.clone(),
        proto: Proto::Tcp,
        src: SocketAddr::new(src, 40000),
        dst,
        pid: Some(42),
        comm: Some("curl".into()),
        src_name: None,
        dst_name: None,
        via: None,
        end: Some(End::Client),
        kind: EventKind::Connect,
    }));
    for _ in 0..cli.netfilter_drops {
        say(Message::Event(Event {
            time: now_rfc3339(),
            node: node.clone(),
            proto: Proto::Tcp,
            src: SocketAddr::new(src, 40000),
            dst,
            pid: None,
            comm: None,
            src_name: None,
            dst_name: None,
            via: None,
            end: None,
            kind: EventKind::Drop {
                reason: Some("NETFILTER_DROP".into()),
                iface: None,
                direction: None,
                at: None,
                data: None,
            },
        }));
    }
    say(Message::lost(Lost {
        node: node.clone(),
        time: now_rfc3339(),
        count: 2,
        total: 2,
        skipped: 0,
    }));

    if let Some(code) = cli.die_with {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return code.into();
    }
    let deadline = async {
        match cli.runner.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let connects = async {
        let Some(path) = &cli.connect_file else {
            return std::future::pending().await;
        };
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            connects_to_listed(path, &node, src);
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = deadline => {}
        () = connects => {}
    }
    if let Some(delay) = cli.stop_delay {
        tokio::time::sleep(delay).await;
    }
    // One flow with its client on node-1: each node reports its own end of
    // it (the client retransmitted 55 times, the server 3; the server's node
    // missed one packet), so the plugin's merge has something to get wrong.
    let flow = if node == "node-1" {
        FlowSummary {
            src: Some(src),
            dst: Some(dst),
            packets_sent: 6,
            retransmits_sent: 55,
            ..FlowSummary::default()
        }
    } else {
        FlowSummary {
            src: Some(dst.ip()),
            dst: Some(SocketAddr::new(src, dst.port())),
            packets_sent: 5,
            retransmits_received: 3,
            ..FlowSummary::default()
        }
    };
    say(Message::summary(Summary {
        node,
        time: now_rfc3339(),
        flows: vec![FlowSummary {
            proto: Some(Proto::Tcp),
            connections: 1,
            bytes_sent: 400,
            packets_received: 4,
            bytes_received: 900,
            ..flow
        }],
        dns: Vec::new(),
        lost: 2,
        events: 3,
        duration_s: started.elapsed().as_secs_f64(),
    }));
    std::process::ExitCode::SUCCESS
}

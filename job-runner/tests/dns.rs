// SPDX-License-Identifier: Apache-2.0
//! DNS: queries and answers of a traced pod, read from the port-53 packets
//! the kernel copies, against Debian's dnsmasq in another (untraced) pod
//! and glibc's resolver (`getent`) in the traced one. Needs root.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use podtrace::event::{Dns, Event, EventKind, Message, Proto};
use podtrace_netns::{wait_until, Daemon, Node, Pod, Shape};

/// The zone the test's dnsmasq serves: `good.pt.test` has addresses, any
/// other name in it is NXDOMAIN.
const GOOD: &str = "good.pt.test";
const MISSING: &str = "missing.pt.test";
const GOOD_V4: &str = "10.200.0.7";
const GOOD_V6: &str = "fd00:200::7";

/// dnsmasq listening on `ips` port 53 (UDP and TCP) in `pod`.
fn dnsmasq(pod: &Pod, ips: &[IpAddr]) -> Daemon {
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".into(),
        "--pid-file=".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        "--local=/pt.test/".into(),
        format!("--host-record={GOOD},{GOOD_V4},{GOOD_V6}"),
        "--log-facility=/dev/null".into(),
    ];
    args.extend(ips.iter().map(|ip| format!("--listen-address={ip}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = pod.spawn("dnsmasq", &args).expect("start dnsmasq");
    wait_until(Duration::from_secs(10), "dnsmasq listening", || {
        pod.is_listening(53)
    })
    .unwrap();
    d
}

/// The pod's `/etc/resolv.conf` (what `ip netns exec` mounts over it);
/// removed on drop.
struct ResolvConf(PathBuf);

impl ResolvConf {
    fn new(pod: &Pod) -> ResolvConf {
        let dir = PathBuf::from("/etc/netns").join(pod.netns.name());
        std::fs::create_dir_all(&dir).unwrap();
        ResolvConf(dir)
    }

    fn set(&self, server: IpAddr, options: &str) {
        std::fs::write(
            self.0.join("resolv.conf"),
            format!("nameserver {server}\noptions {options}\n"),
        )
        .unwrap();
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `getent ahostsv4|ahostsv6 NAME` in the pod: whether it resolved.
fn lookup(pod: &Pod, family: Family, name: &str) -> bool {
    let db = match family {
        Family::V4 => "ahostsv4",
        Family::V6 => "ahostsv6",
    };
    pod.netns
        .exec("getent", &[db, name])
        .is_ok_and(|o| o.status.success())
}

fn dns_of(e: &Event) -> Option<&Dns> {
    match &e.kind {
        EventKind::Dns(d) => Some(d),
        _ => None,
    }
}

/// A traced client pod and an untraced dnsmasq pod on one node.
struct Setup {
    _cluster: podtrace_netns::Cluster,
    node: std::sync::Arc<Node>,
    server: Pod,
    client: Pod,
    _dnsmasq: Daemon,
    resolv: ResolvConf,
}

fn setup(family: Family) -> Setup {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods_of(family, Shape::Routed, "dns", "cli");
    let mut ips = vec![IpAddr::from(server.ip)];
    if family == Family::V6 {
        ips.push(server.addr(family));
    }
    let dnsmasq = dnsmasq(&server, &ips);
    let resolv = ResolvConf::new(&client);
    Setup {
        _cluster: cluster,
        node,
        server,
        client,
        _dnsmasq: dnsmasq,
        resolv,
    }
}

/// A good name (answered, with latency), a missing one (NXDOMAIN), and a
/// good one over TCP; the server is not a traced pod, and the summary
/// counts them.
fn answers_and_nxdomain(family: Family) {
    let s = setup(family);
    let (server, client) = (s.server.addr(family), s.client.addr(family));
    let cip = client.to_string();
    // Only the client is traced: DNS to a server outside the trace passes.
    let mut runner = Runner::start(&s.node, &["--pod-ip", &cip]);
    runner.ready();
    let (qtype, good_ip) = match family {
        Family::V4 => ("A", GOOD_V4),
        Family::V6 => ("AAAA", GOOD_V6),
    };
    let is_query = |e: &Event, proto: Proto, name: &str| {
        e.proto == proto
            && e.src.ip() == client
            && e.dst.ip() == server
            && e.dst.port() == 53
            && dns_of(e).is_some_and(|d| d.name == name && d.qtype == qtype)
    };

    s.resolv.set(server, "timeout:2 attempts:1");
    assert!(lookup(&s.client, family, GOOD), "{GOOD} resolves");
    let good = runner.expect_event("the good name's answer", |e| is_query(e, Proto::Udp, GOOD));
    let d = dns_of(&good).unwrap();
    assert_eq!(d.rcode.as_deref(), Some("NOERROR"), "{good:?}");
    assert!(
        d.answers
            .iter()
            .any(|a| a.rtype == qtype && a.data == good_ip),
        "{good:?}"
    );
    assert!(d.latency_ms.is_some_and(|ms| ms > 0.0), "{good:?}");
    assert!(!d.unanswered, "{good:?}");

    assert!(!lookup(&s.client, family, MISSING), "{MISSING} does not");
    let missing = runner.expect_event("the missing name's NXDOMAIN", |e| {
        is_query(e, Proto::Udp, MISSING)
    });
    let d = dns_of(&missing).unwrap();
    assert_eq!(d.rcode.as_deref(), Some("NXDOMAIN"), "{missing:?}");
    assert!(d.answers.is_empty(), "{missing:?}");

    // use-vc: glibc asks over TCP.
    s.resolv.set(server, "timeout:2 attempts:1 use-vc");
    assert!(lookup(&s.client, family, GOOD), "{GOOD} resolves over TCP");
    let tcp = runner.expect_event("the answer over TCP", |e| is_query(e, Proto::Tcp, GOOD));
    assert_eq!(dns_of(&tcp).unwrap().rcode.as_deref(), Some("NOERROR"));

    let lines = runner.stop_clean();
    // Without --packets and --snaplen, DNS shows no more packets than
    // before (the first of each UDP flow; SYN, FIN, RST), and no bytes.
    for e in events(&lines) {
        if let EventKind::Packet {
            data, first, flags, ..
        } = &e.kind
        {
            assert!(data.is_none(), "packet bytes nobody asked for: {e:?}");
            assert!(
                *first || !flags.is_empty(),
                "a packet shown only for DNS: {e:?}"
            );
        }
    }
    let summary = summary_of(&lines);
    let row = summary
        .dns
        .iter()
        .find(|r| r.pod == client)
        .unwrap_or_else(|| panic!("no DNS row for the client: {summary:?}"));
    // As many as the events say (getent ahostsv6 asks for A too).
    let dns: Vec<&Dns> = events(&lines).filter_map(dns_of).collect();
    let nxdomain = dns
        .iter()
        .filter(|d| d.rcode.as_deref() == Some("NXDOMAIN"))
        .count() as u64;
    assert!(
        row.queries >= 3 && row.queries == dns.len() as u64,
        "{row:?}"
    );
    assert!(row.nxdomain >= 1 && row.nxdomain == nxdomain, "{row:?}");
    assert_eq!((row.servfail, row.unanswered), (0, 0), "{row:?}");
    assert!(row.p50_ms.is_some_and(|p| p > 0.0), "{row:?}");
    assert!(row.p99_ms >= row.p50_ms, "{row:?}");
}

#[test]
fn dns_good_name_answered_missing_name_nxdomain_ipv4() {
    answers_and_nxdomain(Family::V4);
}

#[test]
fn dns_good_name_answered_missing_name_nxdomain_ipv6() {
    answers_and_nxdomain(Family::V6);
}

/// The node's firewall drops every query to the server: the query is
/// unanswered after 5 s, with the drop's reason.
fn dropped_query_is_unanswered(family: Family) {
    let s = setup(family);
    let (server, client) = (s.server.addr(family), s.client.addr(family));
    let rules = "table inet podtrace_dns_test {\n chain forward {\n  type filter hook forward priority 0;\n  udp dport 53 drop\n }\n}\n";
    let file = std::env::temp_dir().join(format!("{}-dns-drop.nft", s.node.netns.name()));
    std::fs::write(&file, rules).unwrap();
    let loaded = s.node.netns.exec("nft", &["-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    loaded.unwrap();

    let cip = client.to_string();
    let mut runner = Runner::start(&s.node, &["--pod-ip", &cip]);
    let reasons = runner.ready().features.is_some_and(|f| f.drop_reasons);
    s.resolv.set(server, "timeout:1 attempts:1");
    assert!(
        !lookup(&s.client, family, GOOD),
        "no answer through the drop"
    );
    let want = if reasons {
        "NETFILTER_DROP"
    } else {
        "NOT_SPECIFIED"
    };
    let lost = runner
        .wait_event(Duration::from_secs(15), |e| {
            e.src.ip() == client && dns_of(e).is_some_and(|d| d.unanswered && d.name == GOOD)
        })
        .unwrap_or_else(|| panic!("no unanswered query: {}", runner.dump()));
    let d = dns_of(&lost).unwrap();
    assert_eq!(d.drop_reason.as_deref(), Some(want), "{lost:?}");
    assert_eq!((d.rcode.as_ref(), d.latency_ms), (None, None), "{lost:?}");
    assert_eq!(lost.dst.ip(), server, "{lost:?}");
    let lines = runner.stop_clean();
    let row = summary_of(&lines)
        .dns
        .iter()
        .find(|r| r.pod == client)
        .cloned()
        .expect("a DNS row for the client");
    assert_eq!(row.unanswered, row.queries, "{row:?}");
    assert_eq!(row.p50_ms, None, "{row:?}");
    // The text line says it in one line.
    let text = podtrace::render::event_line(&lost, Default::default());
    assert!(
        text.contains(&format!("{GOOD} unanswered (dropped: {want})")),
        "{text}"
    );
    assert!(
        !lines
            .iter()
            .any(|m| matches!(m, Message::Event(e) if dns_of(e).is_some_and(|d| !d.unanswered))),
        "an answer through the drop"
    );
}

#[test]
fn dns_dropped_query_is_unanswered_with_the_reason_ipv4() {
    dropped_query_is_unanswered(Family::V4);
}

#[test]
fn dns_dropped_query_is_unanswered_with_the_reason_ipv6() {
    dropped_query_is_unanswered(Family::V6);
}

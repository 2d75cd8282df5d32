// SPDX-License-Identifier: Apache-2.0
use simple_dns::{RCODE, TYPE};

use super::*;
use crate::dns::parse::tests::{frame, query, reply};

const CLIENT: &str = "10.1.1.3:40000";
const SERVER: &str = "10.1.252.10:53";
const MS: u64 = 1_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ask(t: &mut Tracker, ts_ns: u64, ifindex: u32) -> Option<Done> {
    let q = frame(&query(9, "web.default", TYPE::A), Proto::Udp, false);
    t.packet(ts_ns, Proto::Udp, addr(CLIENT), addr(SERVER), ifindex, &q)
}

fn answer(t: &mut Tracker, ts_ns: u64, rcode: RCODE) -> Option<Done> {
    let r = reply(9, "web.default", TYPE::A, rcode)
        .build_bytes_vec()
        .unwrap();
    let f = frame(&r, Proto::Udp, false);
    t.packet(ts_ns, Proto::Udp, addr(SERVER), addr(CLIENT), 7, &f)
}

fn dns(d: &Done) -> &Dns {
    match &d.event.kind {
        EventKind::Dns(d) => d,
        k => panic!("{k:?}"),
    }
}

#[test]
fn an_answer_times_the_query_from_its_first_sending_and_counts_retries() {
    let mut t = Tracker::default();
    assert!(ask(&mut t, 100 * MS, 7).is_none());
    // The same sending seen entering the server's interface: no retry.
    assert!(ask(&mut t, 100 * MS + 5_000, 8).is_none());
    assert!(ask(&mut t, 1_100 * MS, 7).is_none());
    let done = answer(&mut t, 1_102 * MS, RCODE::NameError).unwrap();
    let d = dns(&done);
    assert_eq!((d.rcode.as_deref(), d.retries), (Some("NXDOMAIN"), 1));
    assert_eq!(d.latency_ms, Some(1002.0));
    assert_eq!(
        (done.event.src, done.event.dst),
        (addr(CLIENT), addr(SERVER))
    );
    assert_eq!(done.ts_ns, 1_102 * MS);
    // Answered: a second copy of the response finds nothing waiting.
    assert!(answer(&mut t, 1_103 * MS, RCODE::NameError).is_none());
    assert!(t.finish(2_000 * MS).is_empty());
}

#[test]
fn no_answer_in_five_seconds_is_unanswered_with_the_drop_reason() {
    let mut t = Tracker::default();
    ask(&mut t, 0, 7);
    // A drop of the query after the Service's address was translated.
    t.dropped(
        Proto::Udp,
        addr(CLIENT),
        addr("10.1.1.9:53"),
        "NETFILTER_DROP",
    );
    // Another socket's drop is not this query's.
    t.dropped(
        Proto::Udp,
        addr("10.1.1.3:40001"),
        addr(SERVER),
        "NO_SOCKET",
    );
    assert!(t.expire(UNANSWERED_AFTER_NS - 1).is_empty());
    let done = t.expire(UNANSWERED_AFTER_NS + 40 * MS);
    assert_eq!(done.len(), 1);
    let d = dns(&done[0]);
    assert!(d.unanswered);
    assert_eq!(d.drop_reason.as_deref(), Some("NETFILTER_DROP"));
    assert_eq!((d.rcode.as_ref(), d.latency_ms), (None, None));
    assert_eq!(done[0].ts_ns, UNANSWERED_AFTER_NS);
    // A late answer is not reported again.
    assert!(answer(&mut t, UNANSWERED_AFTER_NS + 50 * MS, RCODE::NoError).is_none());
}

#[test]
fn what_waits_at_the_end_is_unanswered() {
    let mut t = Tracker::default();
    ask(&mut t, 10 * MS, 7);
    let done = t.finish(20 * MS);
    assert_eq!(done.len(), 1);
    assert!(dns(&done[0]).unanswered);
    assert_eq!(dns(&done[0]).drop_reason, None);
}

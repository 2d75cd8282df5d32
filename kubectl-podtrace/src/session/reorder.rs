// SPDX-License-Identifier: Apache-2.0
//! Lines (or anything else) from several nodes, handed on in event-time
//! order.
//!
//! Each node's lines arrive in order, but one node's may arrive before an
//! earlier event of another's: a line is held for [`REORDER`] so earlier
//! events from other nodes can overtake it.

use std::time::{Duration, Instant};

/// How long a text line may wait for earlier events from other nodes.
pub(super) const REORDER: Duration = Duration::from_millis(300);

/// One held line.
struct Held<T> {
    /// The event's RFC 3339 time (fixed width, so it sorts as text).
    time: String,
    /// Arrival order, to keep equal times in the order they came.
    seq: u64,
    arrived: Instant,
    line: T,
}

/// The held lines.
pub(super) struct Reorder<T> {
    held: Vec<Held<T>>,
    seq: u64,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            held: Vec::new(),
            seq: 0,
        }
    }
}

impl<T> Reorder<T> {
    /// Holds a line of an event that happened at `time`, arriving `now`.
    pub(super) fn hold(&mut self, time: String, line: T, now: Instant) {
        self.seq += 1;
        self.held.push(Held {
            time,
            seq: self.seq,
            arrived: now,
            line,
        });
    }

    /// The lines due at `now`, in event-time order: those up to the newest
    /// event time among lines held for [`REORDER`] already. (By arrival, not
    /// by the clock: node clocks and ours may differ.)
    pub(super) fn due(&mut self, now: Instant) -> Vec<T> {
        let cutoff = self
            .held
            .iter()
            .filter(|h| now.saturating_duration_since(h.arrived) >= REORDER)
            .map(|h| h.time.clone())
            .max();
        match cutoff {
            Some(cutoff) => self.release(Some(&cutoff)),
            None => Vec::new(),
        }
    }

    /// Every held line, in event-time order.
    pub(super) fn all(&mut self) -> Vec<T> {
        self.release(None)
    }

    fn release(&mut self, cutoff: Option<&str>) -> Vec<T> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by(|a, b| (&a.time, a.seq).cmp(&(&b.time, b.seq)));
        let (out, keep): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|h| cutoff.is_none_or(|c| h.time.as_str() <= c));
        self.held = keep;
        out.into_iter().map(|h| h.line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2026-01-01T00:00:01.000000000Z";
    const T2: &str = "2026-01-01T00:00:02.000000000Z";
    const T3: &str = "2026-01-01T00:00:03.000000000Z";

    #[test]
    fn lines_from_two_nodes_come_out_in_event_time_order() {
        let start = Instant::now();
        let mut r = Reorder::<String>::default();
        // node-2's later event arrives before node-1's earlier ones.
        r.hold(T2.into(), "node-2 at 2".into(), start);
        r.hold(T1.into(), "node-1 at 1".into(), start);
        r.hold(T3.into(), "node-1 at 3".into(), start);
        assert_eq!(
            r.due(start + REORDER),
            vec!["node-1 at 1", "node-2 at 2", "node-1 at 3"]
        );
        assert!(r.all().is_empty());
    }

    #[test]
    fn equal_times_keep_their_arrival_order() {
        let start = Instant::now();
        let mut r = Reorder::<String>::default();
        r.hold(T1.into(), "first".into(), start);
        r.hold(T1.into(), "second".into(), start);
        assert_eq!(r.all(), vec!["first", "second"]);
    }

    #[test]
    fn a_line_waits_the_reorder_window_for_earlier_events() {
        let start = Instant::now();
        let mut r = Reorder::<String>::default();
        r.hold(T2.into(), "node-1 at 2".into(), start);
        assert!(r.due(start).is_empty(), "held at first");
        assert!(r.due(start + REORDER / 2).is_empty(), "still held");
        // An earlier event from the other node arrives within the window.
        r.hold(T1.into(), "node-2 at 1".into(), start + REORDER / 2);
        // A later one arriving now must wait its own window.
        r.hold(T3.into(), "node-2 at 3".into(), start + REORDER);
        assert_eq!(r.due(start + REORDER), vec!["node-2 at 1", "node-1 at 2"]);
        assert!(r.due(start + REORDER + REORDER / 2).is_empty());
        assert_eq!(r.due(start + REORDER * 2), vec!["node-2 at 3"]);
    }

    #[test]
    fn a_line_not_yet_due_still_goes_out_before_a_later_due_one() {
        // The cutoff is an event time: a fresh line older than a due one is
        // printed with it, not after it.
        let start = Instant::now();
        let mut r = Reorder::<String>::default();
        r.hold(T2.into(), "old arrival".into(), start);
        r.hold(
            T1.into(),
            "new arrival, earlier event".into(),
            start + REORDER,
        );
        assert_eq!(
            r.due(start + REORDER),
            vec!["new arrival, earlier event", "old arrival"]
        );
    }

    #[test]
    fn flush_all_empties_everything_in_order() {
        let start = Instant::now();
        let mut r = Reorder::<String>::default();
        r.hold(T3.into(), "c".into(), start);
        r.hold(T1.into(), "a".into(), start);
        r.hold(T2.into(), "b".into(), start);
        assert_eq!(r.all(), vec!["a", "b", "c"]);
        assert!(r.all().is_empty());
        assert!(r.due(start + REORDER * 10).is_empty());
    }
}

// SPDX-License-Identifier: Apache-2.0
//! DNS as people read it: the details of a `dns` line and the summary's
//! DNS section.

use std::fmt::Write as _;

use crate::event::{Dns, DnsSummary};

/// `A nginx.default.svc.cluster.local NOERROR 10.1.1.2 1.20ms`, or
/// `A web unanswered (dropped: NETFILTER_DROP) retries=1`.
pub fn details(d: &Dns) -> String {
    let mut s = format!("{} {}", d.qtype, d.name);
    match &d.rcode {
        Some(rcode) => {
            let _ = write!(s, " {rcode}");
            for a in &d.answers {
                match a.rtype.as_str() {
                    "CNAME" => {
                        let _ = write!(s, " CNAME {}", a.data);
                    }
                    _ => {
                        let _ = write!(s, " {}", a.data);
                    }
                }
            }
        }
        None => s.push_str(" unanswered"),
    }
    if let Some(r) = &d.drop_reason {
        let _ = write!(s, " (dropped: {r})");
    }
    if let Some(ms) = d.latency_ms {
        let _ = write!(s, " {}", latency(ms));
    }
    if d.retries > 0 {
        let _ = write!(s, " retries={}", d.retries);
    }
    s
}

/// Whether the line reports a failure.
pub fn failed(d: &Dns) -> bool {
    d.unanswered
        || matches!(
            d.rcode.as_deref(),
            Some("NXDOMAIN" | "SERVFAIL" | "REFUSED")
        )
}

fn latency(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1e3)
    } else {
        format!("{ms:.1}ms")
    }
}

/// The DNS section: one row per asking pod. Empty without DNS.
pub fn table(rows: &[DnsSummary]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut cells: Vec<[String; 7]> = vec![[
        "DNS".into(),
        "QUERIES".into(),
        "NXDOMAIN".into(),
        "SERVFAIL".into(),
        "UNANSWERED".into(),
        "P50".into(),
        "P99".into(),
    ]];
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), latency);
    for r in rows {
        cells.push([
            r.pod_name.clone().unwrap_or_else(|| r.pod.to_string()),
            r.queries.to_string(),
            r.nxdomain.to_string(),
            r.servfail.to_string(),
            r.unanswered.to_string(),
            ms(r.p50_ms),
            ms(r.p99_ms),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if i == 0 {
                let _ = write!(line, "{c}{pad}  ");
            } else {
                let _ = write!(line, "{pad}{c}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DnsAnswer;

    #[test]
    fn lines_and_section_read_as_people_say_it() {
        let mut d = Dns {
            id: 7,
            name: "nginx.default.svc.cluster.local".into(),
            qtype: "A".into(),
            rcode: Some("NXDOMAIN".into()),
            latency_ms: Some(1.234),
            ..Dns::default()
        };
        assert_eq!(
            details(&d),
            "A nginx.default.svc.cluster.local NXDOMAIN 1.2ms"
        );
        assert!(failed(&d));
        d.rcode = Some("NOERROR".into());
        d.answers = vec![DnsAnswer {
            rtype: "A".into(),
            data: "10.1.252.7".into(),
            ttl: 0,
        }];
        d.latency_ms = Some(0.25);
        assert_eq!(
            details(&d),
            "A nginx.default.svc.cluster.local NOERROR 10.1.252.7 250µs"
        );
        assert!(!failed(&d));
        let lost = Dns {
            name: "web".into(),
            qtype: "AAAA".into(),
            unanswered: true,
            retries: 1,
            drop_reason: Some("NETFILTER_DROP".into()),
            ..Dns::default()
        };
        assert_eq!(
            details(&lost),
            "AAAA web unanswered (dropped: NETFILTER_DROP) retries=1"
        );
        let t = table(&[DnsSummary {
            pod: "10.1.1.3".parse().unwrap(),
            pod_name: Some("default/curl-demo".into()),
            queries: 12,
            nxdomain: 4,
            servfail: 0,
            unanswered: 2,
            p50_ms: Some(0.4),
            p99_ms: Some(12.25),
        }]);
        assert_eq!(
            t,
            "DNS                QUERIES  NXDOMAIN  SERVFAIL  UNANSWERED    P50     P99\n\
             default/curl-demo       12         4         0           2  400µs  12.2ms\n"
        );
        assert_eq!(table(&[]), "");
    }
}

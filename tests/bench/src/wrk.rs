// SPDX-License-Identifier: Apache-2.0
//! Saturating load with wrk, and reading its report.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use podtrace_netns::Netns;
use serde::Serialize;

/// The two workloads the issue names.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Many requests per connection: per-packet cost dominates.
    KeepAlive,
    /// `Connection: close`: per-connection cost dominates.
    #[value(name = "new-conn")]
    NewConn,
}

impl Workload {
    pub const ALL: [Workload; 2] = [Workload::KeepAlive, Workload::NewConn];

    pub fn label(self) -> &'static str {
        match self {
            Workload::KeepAlive => "keep-alive",
            Workload::NewConn => "new connection per request",
        }
    }
}

/// What wrk reported.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub req_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Connect/read/write/timeout errors plus non-2xx responses.
    pub errors: u64,
    /// CPU time the whole machine was busy (all CPUs, steal excluded) while
    /// wrk ran, per request, in µs: what a request costs the node, which
    /// unlike req/s does not depend on which CPU the bottleneck is on.
    /// Measured by the bench around wrk, not by wrk.
    pub cpu_us_per_request: f64,
}

/// Seconds all CPUs have spent busy since boot (`/proc/stat`: user, nice,
/// system, irq, softirq; idle, iowait and steal left out).
fn busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // user nice system idle iowait irq softirq steal ...
    Some((f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?) / hz)
}

/// wrk's connections: enough to keep one nginx worker busy, few enough that
/// wrk's single thread is not the bottleneck.
pub const CONNECTIONS: u32 = 16;

/// The wrk command line for a workload (also shown in the report).
pub fn args(workload: Workload, url: &str, seconds: u32) -> Vec<String> {
    let mut a: Vec<String> = [
        "-t1".into(),
        format!("-c{CONNECTIONS}"),
        format!("-d{seconds}s"),
        "--latency".into(),
        "--timeout".into(),
        "2s".into(),
    ]
    .into();
    if workload == Workload::NewConn {
        a.extend(["-H".into(), "Connection: close".into()]);
    }
    a.push(url.into());
    a
}

/// Runs wrk inside `client` against `url`, bounded by its own duration plus
/// a margin.
pub fn run(client: &Netns, workload: Workload, url: &str, seconds: u32) -> Result<WrkResult> {
    let busy_before = busy_seconds();
    let mut child = client
        .command("wrk")
        .args(args(workload, url, seconds))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start wrk (is the Debian wrk package installed?)")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(seconds) + 15);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wrk did not finish within {seconds}s + 15s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut r = parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
    if let (Some(b), Some(a)) = (busy_before, busy_seconds()) {
        if r.requests > 0 {
            r.cpu_us_per_request = (a - b) * 1e6 / r.requests as f64;
        }
    }
    Ok(r)
}

/// Parses wrk's text report (with `--latency`).
pub fn parse(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult {
        requests: 0,
        req_per_s: f64::NAN,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        errors: 0,
        cpu_us_per_request: f64::NAN,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => r.req_per_s = v.parse()?,
            ["50%", v] => r.p50_us = duration_us(v)?,
            ["99%", v] => r.p99_us = duration_us(v)?,
            [n, "requests", "in", ..] => r.requests = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                r.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.errors += n.parse::<u64>()?,
            _ => {}
        }
    }
    if !r.req_per_s.is_finite() {
        bail!("no Requests/sec line");
    }
    Ok(r)
}

/// wrk prints durations as `812.00us`, `1.23ms` or `2.01s`.
fn duration_us(v: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("unknown duration {v:?}");
    };
    Ok(num.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 2s test @ http://10.1.1.2/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   520.12us  100.00us   3.00ms   90.00%
    Req/Sec    30.12k     1.00k   32.00k    70.00%
  Latency Distribution
     50%  500.00us
     75%  600.00us
     90%  700.00us
     99%    1.20ms
  60240 requests in 2.00s, 70.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
Requests/sec:  30120.50
Transfer/sec:     35.00MB
";

    #[test]
    fn parses_wrk_latency_report() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.requests, 60240);
        assert_eq!(r.req_per_s, 30120.5);
        assert_eq!(r.p50_us, 500.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.errors, 4);
    }

    #[test]
    fn new_connection_workload_closes_each_connection() {
        let a = args(Workload::NewConn, "http://x/", 3);
        assert!(a.windows(2).any(|w| w == ["-H", "Connection: close"]));
        assert!(!args(Workload::KeepAlive, "http://x/", 3).contains(&"-H".to_string()));
    }
}

// SPDX-License-Identifier: Apache-2.0
//! A fixed-rate HTTP load generator (open loop), run inside the client pod.
//!
//! wrk only knows "as fast as possible"; to step the rate of new connections
//! (or of packets) and to find the highest rate with nothing lost we need a
//! generator that holds a given rate and says how much it actually achieved.
//! Requests are scheduled on a clock, not after the previous one returns, so
//! a slow server shows up as latency and missed requests rather than as a
//! quietly lower rate. It runs as `podtrace-bench loadgen …` inside the
//! client pod's namespace and prints one JSON line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use crate::stats::quantile_sorted;

/// How requests map onto connections.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One TCP connection per request (`Connection: close`).
    NewConn,
    /// A fixed pool of keep-alive connections sharing the rate.
    KeepAlive,
    /// Connect and close, no request: the most connections per second a
    /// single nginx worker can accept, for the connection-event loss step.
    Connect,
}

/// What to generate.
#[derive(clap::Args, Debug, Clone)]
pub struct Spec {
    /// Server address, `IP:PORT`.
    #[arg(long)]
    pub target: SocketAddr,
    /// Requests per second.
    #[arg(long)]
    pub rate: u32,
    /// Seconds to generate for.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    #[arg(long, value_enum, default_value_t = Mode::NewConn)]
    pub mode: Mode,
    /// Keep-alive connections (keep-alive mode).
    #[arg(long, default_value_t = 16)]
    pub conns: u32,
    /// Requests in flight at most (new-connection mode); a request that
    /// would exceed it is counted as skipped: the generator fell behind.
    #[arg(long, default_value_t = 2000)]
    pub max_inflight: usize,
}

/// What happened, printed as one JSON line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Outcome {
    pub target_rate: u32,
    pub scheduled: u64,
    pub completed: u64,
    pub errors: u64,
    pub skipped: u64,
    pub elapsed_s: f64,
    /// Completed requests per second over the whole run.
    pub achieved_rate: f64,
    pub p50_us: Option<u32>,
    pub p99_us: Option<u32>,
}

/// A request can take at most this long before it counts as an error, so a
/// stuck server cannot make the run unbounded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

struct Counters {
    completed: AtomicU64,
    errors: AtomicU64,
}

/// Runs the generator to completion on a small runtime of its own.
pub fn run(spec: &Spec) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("build tokio runtime")?;
    rt.block_on(generate(spec.clone()))
}

async fn generate(spec: Spec) -> Result<Outcome> {
    let total = (f64::from(spec.rate) * spec.seconds).round() as u64;
    let counters = Arc::new(Counters {
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let collector = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(us) = rx.recv().await {
            v.push(us);
        }
        v
    });
    let start = Instant::now();
    let mut skipped = 0;
    match spec.mode {
        Mode::NewConn | Mode::Connect => {
            let connect_only = spec.mode == Mode::Connect;
            let slots = Arc::new(Semaphore::new(spec.max_inflight));
            let interval = 1.0 / f64::from(spec.rate.max(1));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..total {
                let at = start + Duration::from_secs_f64(i as f64 * interval);
                tokio::time::sleep_until(at.into()).await;
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    skipped += 1;
                    continue;
                };
                let (counters, tx) = (counters.clone(), tx.clone());
                tasks.spawn(async move {
                    let t0 = Instant::now();
                    let ok =
                        tokio::time::timeout(REQUEST_TIMEOUT, one_shot(spec.target, connect_only))
                            .await
                            .is_ok_and(|r| r.is_ok());
                    record(&counters, &tx, ok, t0);
                    drop(permit);
                });
                // Reap finished tasks as we go so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
        Mode::KeepAlive => {
            let conns = spec.conns.max(1);
            let per_conn = total.div_ceil(u64::from(conns));
            let interval = f64::from(conns) / f64::from(spec.rate.max(1));
            let mut tasks = tokio::task::JoinSet::new();
            for c in 0..conns {
                let (counters, tx) = (counters.clone(), tx.clone());
                let offset = interval * f64::from(c) / f64::from(conns);
                tasks.spawn(async move {
                    keep_alive(
                        spec.target,
                        start,
                        offset,
                        interval,
                        per_conn,
                        &counters,
                        &tx,
                    )
                    .await
                });
            }
            while let Some(r) = tasks.join_next().await {
                skipped += r.unwrap_or(0);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(tx);
    let mut lat = collector.await.unwrap_or_default();
    lat.sort_unstable();
    let completed = counters.completed.load(Ordering::Relaxed);
    Ok(Outcome {
        target_rate: spec.rate,
        scheduled: total,
        completed,
        errors: counters.errors.load(Ordering::Relaxed),
        skipped,
        elapsed_s: elapsed,
        achieved_rate: completed as f64 / spec.seconds.max(elapsed),
        p50_us: quantile_sorted(&lat, 0.50),
        p99_us: quantile_sorted(&lat, 0.99),
    })
}

fn record(counters: &Counters, tx: &mpsc::UnboundedSender<u32>, ok: bool, t0: Instant) {
    if ok {
        counters.completed.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
    } else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
}

const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const KEEPALIVE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// One request on a fresh connection; the server closes it. Connect-only:
/// close right after the handshake and wait for the server's FIN, so the
/// connection's whole life happens within the step.
async fn one_shot(target: SocketAddr, connect_only: bool) -> std::io::Result<()> {
    let mut s = TcpStream::connect(target).await?;
    if connect_only {
        s.shutdown().await?;
        let mut buf = [0u8; 64];
        return match s.read(&mut buf).await? {
            0 => Ok(()),
            _ => Err(std::io::Error::other("unexpected data")),
        };
    }
    s.write_all(CLOSE_REQUEST).await?;
    let mut buf = Vec::with_capacity(2048);
    s.read_to_end(&mut buf).await?;
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not a 200 response"))
    }
}

/// `n` requests on one connection at fixed times; returns how many were
/// skipped because the connection broke and could not be reopened.
async fn keep_alive(
    target: SocketAddr,
    start: Instant,
    offset: f64,
    interval: f64,
    n: u64,
    counters: &Counters,
    tx: &mpsc::UnboundedSender<u32>,
) -> u64 {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    for i in 0..n {
        let at = start + Duration::from_secs_f64(offset + i as f64 * interval);
        tokio::time::sleep_until(at.into()).await;
        let t0 = Instant::now();
        if conn.is_none() {
            conn = TcpStream::connect(target).await.ok();
        }
        let Some(s) = conn.as_mut() else {
            return n - i;
        };
        let ok = tokio::time::timeout(REQUEST_TIMEOUT, request(s, &mut buf))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ok {
            conn = None;
        }
        record(counters, tx, ok, t0);
    }
    0
}

/// One keep-alive request: write it, read headers and a `Content-Length` body.
async fn request(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    s.write_all(KEEPALIVE_REQUEST).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(need) = response_len(buf) {
            if buf.len() >= need {
                return if buf.starts_with(b"HTTP/1.1 200") {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a 200 response"))
                };
            }
        }
    }
}

/// Total length of the response in `buf` once its headers are complete.
fn response_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    Some(end + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_length_from_headers() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(response_len(r), Some(r.len() - 3 + 5));
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\nContent-"), None);
    }
}

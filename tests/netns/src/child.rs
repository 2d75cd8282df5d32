// SPDX-License-Identifier: Apache-2.0
//! A child process whose stdout lines are read on a thread and waited for
//! with bounded timeouts; killed on drop, so a failing test leaves no
//! process behind.

use std::io::{self, BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running child and what it wrote so far.
#[derive(Debug)]
pub struct ChildLines {
    pub child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    /// When each line of `seen` was read, from `started`.
    pub seen_at: Vec<Duration>,
    stderr: Arc<Stderr>,
    pub started: Instant,
}

/// What the child wrote on stderr, and whether the pipe reached its end.
/// The end is waited for: a child that exited may still have bytes in the
/// pipe that the reader thread has not copied yet.
#[derive(Debug, Default)]
struct Stderr {
    text: Mutex<(String, bool)>,
    ended: Condvar,
}

impl ChildLines {
    /// Starts `cmd` with stdin closed and stdout and stderr captured.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildLines> {
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Stderr::default());
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.text.lock() {
                    s.0.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
            if let Ok(mut s) = sink.text.lock() {
                s.1 = true;
            }
            sink.ended.notify_all();
        });
        Ok(ChildLines {
            child,
            lines,
            seen: Vec::new(),
            seen_at: Vec::new(),
            stderr,
            started,
        })
    }

    /// Reads the next line, waiting until `deadline`: its index in `seen`,
    /// or `None` when the deadline passed or stdout closed.
    pub fn next_line(&mut self, deadline: Instant) -> Option<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line);
                self.seen_at.push(self.started.elapsed());
                Some(self.seen.len() - 1)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The index of the first line (already read, or arriving within
    /// `timeout`) that `pred` accepts.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<usize> {
        if let Some(i) = self.seen.iter().position(|l| pred(l)) {
            return Some(i);
        }
        let deadline = Instant::now() + timeout;
        while let Some(i) = self.next_line(deadline) {
            if pred(&self.seen[i]) {
                return Some(i);
            }
        }
        None
    }

    /// Waits (bounded) for the child to exit, then reads what stdout still
    /// holds; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().ok().flatten() {
                break s;
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Lines read meanwhile keep the pipe from filling up.
            let _ = self.next_line(Instant::now() + Duration::from_millis(10));
        };
        let drain = Instant::now() + Duration::from_secs(5);
        while self.next_line(drain).is_some() {}
        self.wait_stderr_end(drain);
        Some(status)
    }

    /// Waits until the reader has copied all of stderr (the pipe's end),
    /// at most until `deadline`; call once the child has exited.
    pub fn wait_stderr_end(&self, deadline: Instant) {
        let Ok(mut s) = self.stderr.text.lock() else {
            return;
        };
        while !s.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.stderr.ended.wait_timeout(s, left) {
                Ok((guard, _)) => s = guard,
                Err(_) => return,
            }
        }
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .text
            .lock()
            .map(|s| s.0.clone())
            .unwrap_or_default()
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once the child has exited, all it wrote on stderr is there: the
    /// last bytes may still be in the pipe when the exit is seen.
    #[test]
    fn stderr_is_whole_once_the_child_has_exited() {
        for _ in 0..20 {
            let mut child = ChildLines::spawn(
                Command::new("sh")
                    .args(["-c", "head -c 1000000 /dev/zero | tr '\\0' x >&2; exit 3"]),
            )
            .expect("spawn sh");
            let status = child.wait_exit(Duration::from_secs(20)).expect("sh exits");
            assert_eq!(status.code(), Some(3));
            assert_eq!(child.stderr().len(), 1_000_000);
        }
    }
}

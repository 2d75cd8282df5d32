// SPDX-License-Identifier: Apache-2.0
//! Ctrl-C and SIGTERM: the first asks for a clean stop, the second exits.

use tokio::sync::watch;

/// Counts Ctrl-C (and SIGTERM): the first asks for a clean stop, the second
/// exits at once.
pub(crate) fn interrupts() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    // Listeners made once, up front: one made after a signal arrived would
    // not see it, and a quick second Ctrl-C (right after "stopping:") went
    // unnoticed when each wait made its own.
    let mut signals = Signals::new();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            signals.next().await;
            count += 1;
            if count >= 2 {
                eprintln!(
                    "\ninterrupted again: exiting now; any trace Jobs left will expire, or run \
                     `kubectl podtrace cleanup`"
                );
                std::process::exit(130);
            }
            eprintln!("\nstopping: deleting the trace Jobs (Ctrl-C again to exit at once)");
            let _ = tx.send(count);
        }
    });
    rx
}

/// Ctrl-C and (on Unix) SIGTERM, as one stream.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => {}
            _ = recv(&mut self.term) => {}
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

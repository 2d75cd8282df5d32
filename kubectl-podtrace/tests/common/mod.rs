// SPDX-License-Identifier: Apache-2.0
//! What the plugin's sandbox tests share: stopping the plugin as a user
//! does, with Ctrl-C, and waiting (bounded) for it to exit.

#![allow(dead_code)]

use std::io::Read as _;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sends SIGINT (Ctrl-C) to the plugin.
pub fn ctrl_c(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

/// Ctrl-C, then the plugin's exit status; panics if it is still running
/// 60 s later.
pub fn interrupt_and_wait(child: &mut Child) -> ExitStatus {
    ctrl_c(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the plugin did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ctrl-C to a plugin whose stderr is piped and not yet read: its exit
/// code and all it wrote on stderr; panics if it has not exited 60 s later.
pub fn interrupt_reading_stderr(mut child: Child) -> (Option<i32>, String) {
    ctrl_c(&child);
    let mut err = child.stderr.take().unwrap();
    let (done, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        done.send((child.wait().map(|s| s.code()), text))
    });
    let (code, stderr) = exited
        .recv_timeout(Duration::from_secs(60))
        .expect("the plugin stops within 60 s of Ctrl-C");
    (code.unwrap(), stderr)
}

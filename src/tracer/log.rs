// SPDX-License-Identifier: Apache-2.0
//! libbpf's messages: to stderr with `-v`, else the recent ones kept for
//! the error when a load fails.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libbpf_rs::PrintLevel;

use super::Error;

static VERBOSE: AtomicBool = AtomicBool::new(false);
/// libbpf's recent messages, for the error when a load fails.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());
/// Keep at most this much of libbpf's log (the verifier's tail matters).
const LOG_KEEP: usize = 64 * 1024;

fn libbpf_print(level: PrintLevel, msg: String) {
    if VERBOSE.load(Ordering::Relaxed) {
        eprint!("{msg}");
    } else if level == PrintLevel::Debug {
        return;
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        if log.len() > LOG_KEEP {
            let cut = log.len() - LOG_KEEP / 2;
            let cut = (cut..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(0);
            log.drain(..cut);
        }
        log.push_str(&msg);
    }
}

/// Routes libbpf's messages: everything to stderr when `verbose`, else
/// kept (warnings only) for error reports.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    let level = if verbose {
        PrintLevel::Debug
    } else {
        PrintLevel::Info
    };
    libbpf_rs::set_print(Some((level, libbpf_print)));
}

pub(super) fn clear_log() {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.clear();
    }
}

/// Turns a failed load into the verifier error when that is what it was.
pub(super) fn load_error(e: libbpf_rs::Error) -> Error {
    let log = LIBBPF_LOG.lock().map(|l| l.clone()).unwrap_or_default();
    if let Some(pos) = log.find("failed to load") {
        let before = &log[..pos];
        let prog = before
            .rfind("prog '")
            .map(|i| &before[i + 6..])
            .and_then(|s| s.split('\'').next())
            .unwrap_or("?")
            .to_owned();
        let mut tail = String::new();
        if VERBOSE.load(Ordering::Relaxed) {
            let _ = write!(tail, "\n{log}");
        }
        return Error::Verifier { prog, log: tail };
    }
    Error::Bpf {
        context: "load the BPF programs".into(),
        source: e,
    }
}

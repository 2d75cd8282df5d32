// SPDX-License-Identifier: Apache-2.0
//! The plugin's exit codes, as kubectl's: 0 on success, 1 on any error,
//! usage errors included (clap's own default would be 2). The cluster-side
//! errors (pod not found, API server down…) are in `sandbox.rs`, where every
//! failure goes through `Env::fails`, which asserts 1; 130 (a second
//! Ctrl-C) is `second_ctrl_c_exits_at_once_and_cleanup_removes_the_leftovers`.

use std::process::Command;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");

/// Runs the plugin with `args` and no cluster; its exit code and stderr.
fn plugin(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(PLUGIN)
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("the plugin runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn usage_errors_exit_1_with_one_error_line() {
    for (args, says) in [
        (&["--bogus"][..], "unexpected argument '--bogus'"),
        (&[], "the following required arguments were not provided"),
        (&["a", "-o", "yaml"], "invalid value 'yaml' for '--output"),
        (&["a", "--port", "0"], "port 0 matches no traffic"),
        (&["a", "--duration", "-5s"], "durations cannot be negative"),
        (&["a", "--duration", "99999999999999999h"], "too long"),
        (&["a", "--duration", "18446744073709551615s1s"], "too long"),
        (&["a", "--max-duration", "1e30"], "unknown unit \"e\""),
    ] {
        let (code, _, stderr) = plugin(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_run_time_error_exits_1() {
    let (code, _, stderr) = plugin(&["curl-demo"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot load the kubeconfig"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_exit_0_and_help_lists_every_code() {
    let (code, stdout, stderr) = plugin(&["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
    for line in ["\n  0  ", "\n  1  ", "\n  130  "] {
        assert!(
            stdout.contains(line),
            "{line:?} missing from --help:\n{stdout}"
        );
    }
    let (code, stdout, stderr) = plugin(&["version"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    let (code, _, stderr) = plugin(&["--version"]);
    assert_eq!(code, Some(0), "{stderr}");
}

// SPDX-License-Identifier: Apache-2.0
//! The runner's exit codes: 0 on a clean stop or `--help`, 1 on any error,
//! bad flags and values included (checked here before anything is loaded,
//! so no root is needed). Clean stops are covered in `trace.rs`.

use std::process::Command;

const RUNNER: &str = env!("CARGO_BIN_EXE_podtrace-runner");

fn runner(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(RUNNER)
        .args(args)
        .output()
        .expect("the runner runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn bad_flags_and_values_exit_1_before_tracing() {
    let pod = ["--pod-ip", "127.0.0.1"];
    for (args, says) in [
        (&["--bogus"][..], "unexpected argument '--bogus'"),
        (&[], "the following required arguments were not provided"),
        (
            &["--duration", "inf"],
            "invalid value 'inf' for '--duration <D>'",
        ),
        (&["--duration", "1e30"], "unknown unit \"e\""),
        (&["--duration", "-5s"], "durations cannot be negative"),
        (&["--duration", "99999999999999999h"], "too long"),
        (&["--port", "0"], "port 0 matches no traffic"),
    ] {
        let argv: Vec<&str> = if args.is_empty() {
            Vec::new()
        } else {
            pod.iter().chain(args).copied().collect()
        };
        let (code, _, stderr) = runner(&argv);
        assert_eq!(code, Some(1), "{argv:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(says),
            "{argv:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{argv:?}: {stderr}");
    }
}

#[test]
fn help_exits_0_and_lists_the_exit_codes() {
    let (code, stdout, stderr) = runner(&["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("EXIT STATUS:\n  0  "), "{stdout}");
    assert!(stdout.contains("\n  1  "), "{stdout}");
}

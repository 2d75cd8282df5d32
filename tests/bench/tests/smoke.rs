// SPDX-License-Identifier: Apache-2.0
//! The benchmark's `--quick` mode end to end: proves the machinery works
//! (pods, wrk, every tracer's ready line, memory and loss accounting), not
//! that any target is met — timing on a shared CI machine proves nothing.

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_run_measures_every_arm_it_can() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the benchmark builds network namespaces and loads eBPF: run as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let page = dir.path().join("benchmarks.md");
    let out = Command::new(env!("CARGO_BIN_EXE_podtrace-bench"))
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .arg("--output")
        .arg(&page)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podtrace-bench --quick failed:\n{stderr}"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let arms: Vec<&str> = r["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        arms.contains(&"bpftrace") && arms.contains(&"tcpdump"),
        "{arms:?}"
    );

    // Every arm produced a wrk result under both workloads, and untraced
    // nginx actually served requests.
    let runs = r["overhead"].as_array().unwrap();
    for arm in &arms {
        for workload in ["keep-alive", "new-conn"] {
            let run = runs
                .iter()
                .find(|x| x["arm"] == *arm && x["workload"] == workload)
                .unwrap_or_else(|| panic!("no {arm} {workload} run"));
            assert!(run["error"].is_null(), "{arm} {workload}: {}", run["error"]);
            let rps = run["wrk"]["req_per_s"].as_f64().unwrap();
            assert!(rps > 0.0, "{arm} {workload}: {rps} req/s");
            if *arm != "untraced" {
                let t = &run["tracer"];
                assert!(t["ready_ms"].as_f64().unwrap() > 0.0);
                assert!(
                    t["peak_rss_kib"].as_u64().unwrap() > 0,
                    "{arm}: no RSS read"
                );
            }
        }
    }
    // Tracers saw the traffic: tcpdump captured packets, bpftrace printed
    // connection events under the new-connection load.
    let tracer = |arm: &str, workload: &str| {
        runs.iter()
            .find(|x| x["arm"] == arm && x["workload"] == workload)
            .map(|x| x["tracer"].clone())
            .unwrap()
    };
    assert!(
        tracer("tcpdump", "keep-alive")["counts"]["captured"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        tracer("bpftrace", "new-conn")["counts"]["lines"]
            .as_u64()
            .unwrap()
            > 1
    );

    // Ready lines were seen on every start of every tracer.
    for arm in arms
        .iter()
        .filter(|a| !matches!(**a, "untraced" | "runner-packets" | "runner-write"))
    {
        let ms = r["ready"]["ms"][arm]
            .as_array()
            .unwrap_or_else(|| panic!("no ready times for {arm}"));
        assert_eq!(
            ms.len() as u64,
            r["starts"].as_u64().unwrap(),
            "{arm}: {ms:?}"
        );
        assert!(ms.iter().all(|m| m.as_f64().unwrap() > 0.0));
    }

    if arms.contains(&"runner-write") {
        // The capture arm carried packet bytes; the per-packet arm did not.
        let first_packet = |arm: &str| {
            tracer(arm, "keep-alive")["counts"]["first_by_type"]["packet"]
                .as_str()
                .unwrap_or_else(|| panic!("{arm}: no packet event"))
                .to_owned()
        };
        assert!(first_packet("runner-write").contains("\"data\""));
        assert!(!first_packet("runner-packets").contains("\"data\""));
    }

    if arms.contains(&"runner") {
        let t = tracer("runner", "new-conn");
        assert!(
            t["counts"]["by_type"]["ready"] == 1,
            "runner wrote no ready line: {t}"
        );
        // The loss step counted both sides: the kernel's passive opens and the
        // runner's accept events.
        let step = r["loss"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["arm"] == "runner")
            .expect("a loss step for the runner");
        assert!(step["error"].is_null(), "{}", step["error"]);
        assert!(step["truth"].as_u64().unwrap() > 0, "{step}");
        assert!(step["seen"].as_u64().is_some());
    }

    let md = std::fs::read_to_string(&page).unwrap();
    assert!(
        md.contains("## Targets") && md.contains("| untraced |"),
        "{md}"
    );
    // The page reads the same wherever it was made: no build directory of
    // this machine in it.
    let build_dir = std::path::Path::new(env!("CARGO_BIN_EXE_podtrace-bench"))
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(!md.contains(&build_dir), "{build_dir} in the page:\n{md}");
}

// SPDX-License-Identifier: Apache-2.0
//! The kernel side of a tracer: its BPF programs and maps, their locked
//! memory, and (with `kernel.bpf_stats_enabled`) the time the kernel spent
//! running each program.
//!
//! Debian's bpftool is built without the `pids` feature, so it cannot say
//! which process owns a program. We read the owner's own descriptors
//! instead: every `anon_inode:bpf-prog`/`bpf-map` fd in `/proc/PID/fd` has
//! its id, `memlock` and run-time counters in `/proc/PID/fdinfo`. bpftool
//! only supplies names.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use serde::Serialize;

/// One BPF program or map held by a process.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Object {
    pub id: u64,
    pub name: String,
    pub kind: String,
    pub memlock: u64,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Everything BPF a process holds, deduplicated by id.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Held {
    pub progs: Vec<Object>,
    pub maps: Vec<Object>,
}

impl Held {
    pub fn prog_memlock(&self) -> u64 {
        self.progs.iter().map(|o| o.memlock).sum()
    }
    pub fn map_memlock(&self) -> u64 {
        self.maps.iter().map(|o| o.memlock).sum()
    }
}

/// Reads the BPF objects `pid` holds open.
pub fn held_by(pid: u32) -> Held {
    let mut progs = BTreeMap::new();
    let mut maps = BTreeMap::new();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Held::default();
    };
    for fd in fds.flatten() {
        let Ok(link) = fs::read_link(fd.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        let is_prog = link == "anon_inode:bpf-prog";
        if !is_prog && link != "anon_inode:bpf-map" {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let obj = parse_fdinfo(&info, is_prog);
        if obj.id != 0 {
            if is_prog {
                progs.insert(obj.id, obj);
            } else {
                maps.insert(obj.id, obj);
            }
        }
    }
    let mut held = Held {
        progs: progs.into_values().collect(),
        maps: maps.into_values().collect(),
    };
    name_from_bpftool("prog", &mut held.progs);
    name_from_bpftool("map", &mut held.maps);
    held
}

fn parse_fdinfo(info: &str, is_prog: bool) -> Object {
    let mut o = Object::default();
    for line in info.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let num = || v.parse::<u64>().unwrap_or(0);
        match k {
            "prog_id" if is_prog => o.id = num(),
            "map_id" if !is_prog => o.id = num(),
            "memlock" => o.memlock = num(),
            "run_time_ns" => o.run_time_ns = num(),
            "run_cnt" => o.run_cnt = num(),
            "prog_type" | "map_type" => o.kind = v.to_owned(),
            _ => {}
        }
    }
    o
}

/// Fills in names and type names from `bpftool -j {prog,map} show`.
fn name_from_bpftool(what: &str, objs: &mut [Object]) {
    let Ok(out) = Command::new("bpftool").args(["-j", what, "show"]).output() else {
        return;
    };
    let Ok(all) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) else {
        return;
    };
    for o in objs.iter_mut() {
        if let Some(v) = all.iter().find(|v| v["id"].as_u64() == Some(o.id)) {
            o.name = v["name"].as_str().unwrap_or_default().to_owned();
            if let Some(t) = v["type"].as_str() {
                o.kind = t.to_owned();
            }
        }
    }
}

/// Turns `kernel.bpf_stats_enabled` on for as long as it lives, and back
/// to what it was after (the counters cost a little on every program run,
/// so they stay off for the overhead measurements).
pub struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> std::io::Result<BpfStats> {
        let before = fs::read_to_string(BPF_STATS)?.trim().to_owned();
        fs::write(BPF_STATS, "1")?;
        Ok(BpfStats { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, &self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prog_and_map_fdinfo() {
        let p = parse_fdinfo(
            "pos:\t0\nprog_type:\t5\nmemlock:\t4096\nprog_id:\t131\nrun_time_ns:\t900\nrun_cnt:\t3\n",
            true,
        );
        assert_eq!(
            (p.id, p.memlock, p.run_time_ns, p.run_cnt),
            (131, 4096, 900, 3)
        );
        let m = parse_fdinfo("map_type:\t27\nmemlock:\t266240\nmap_id:\t9\n", false);
        assert_eq!((m.id, m.memlock), (9, 266240));
    }
}

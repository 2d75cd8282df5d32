// SPDX-License-Identifier: Apache-2.0
//! kubectl-podtrace: trace what the kernel sees between two pods.
//!
//! The flow of one run: [`cli`] → [`client`] → [`resolve`] → [`preflight`]
//! → [`jobspec`] → [`session`] (waiting with [`progress`], following logs
//! with [`stream`], naming IPs with [`names`], printing with [`render`],
//! totals with [`summary`]) and [`cleanup`] for leftovers.

// Only the binary uses this library: `cli` (its argument struct) and `run`
// are all it needs.
pub(crate) mod cleanup;
pub mod cli;
pub(crate) mod client;
pub(crate) mod errors;
pub(crate) mod explain;
pub(crate) mod jobspec;
pub(crate) mod names;
pub(crate) mod pcapng;
pub(crate) mod policy;
pub(crate) mod preflight;
pub(crate) mod progress;
pub(crate) mod resolve;
pub(crate) mod session;
pub(crate) mod stream;
pub(crate) mod summary;
pub(crate) mod svcflow;
pub(crate) mod target;
pub(crate) mod wait;
pub(crate) mod workload;

/// Text rendering lives in the shared core, so the runner's `--format text`
/// prints exactly what the plugin does.
pub(crate) use podtrace::render;

use std::hash::{BuildHasher, Hasher};

use cli::{Cli, Command};
use errors::{Error, Result};

/// A fresh session id: six lowercase letters and digits.
fn session_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    let mut n = h.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// What `kubectl podtrace version` prints.
fn version_text() -> String {
    format!(
        "kubectl-podtrace {}\nrunner image: {}\nwire schema: {}\n",
        env!("CARGO_PKG_VERSION"),
        cli::DEFAULT_IMAGE,
        podtrace::event::SCHEMA
    )
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Some(Command::Version) => {
            print!("{}", version_text());
            return Ok(());
        }
        Some(Command::Cleanup(args)) => {
            let cluster = client::connect(&cli.kube).await?;
            let done = cleanup::cleanup(&cluster, &cli.kube.job_namespace, args.all).await?;
            if done.is_empty() {
                println!(
                    "no trace Jobs {}in namespace {}",
                    if args.all { "" } else { "of yours " },
                    cli.kube.job_namespace
                );
            }
            for line in done {
                println!("{line}");
            }
            return Ok(());
        }
        None => {}
    }
    // Catch Ctrl-C from the start, so nothing we create is left behind.
    let interrupted = session::interrupts();
    let trace = &cli.trace;
    let refs = target::from_args(trace).map_err(Error::Usage)?;
    let cluster = client::connect(&cli.kube).await?;
    let job_ns = cli.kube.job_namespace.clone();
    let mut sides = Vec::new();
    for r in &refs {
        let side = match workload::side(
            &cluster.client,
            &cluster.namespace,
            cli.kube.namespace.is_some(),
            r,
        )
        .await
        {
            Err(e) if e.is_forbidden() => {
                let namespaces: Vec<&str> = refs
                    .iter()
                    .map(|r| r.namespace().unwrap_or(&cluster.namespace))
                    .collect();
                return Err(all_missing(&cluster.client, &job_ns, &namespaces, e).await);
            }
            s => s?,
        };
        for t in side.pods.iter().filter(|t| t.host_network) {
            eprintln!(
                "warning: pod {} uses hostNetwork: its traffic is the node {}'s, and tracing it \
                 traces all of that node's traffic on those addresses",
                t.id(),
                t.node
            );
        }
        sides.push(side);
    }
    if let [pod, peer] = sides.as_slice() {
        if let Some(both) = pod.pods.iter().find(|t| peer.pods.contains(t)) {
            return Err(Error::Usage(format!(
                "POD and PEER are the same pod ({}): give one target to trace all its traffic",
                both.id()
            )));
        }
    }
    workload::with_cluster_dns(&cluster.client, &mut sides).await;
    let side_pods: Vec<&[resolve::Target]> = sides.iter().map(|s| s.pods.as_slice()).collect();
    let addressed: Vec<&[std::net::IpAddr]> =
        sides.iter().map(|s| s.addressed.as_slice()).collect();
    let plans = resolve::plan(&side_pods, &addressed);
    let targets: Vec<resolve::Target> = sides.iter().flat_map(|s| s.pods.clone()).collect();
    let snaplen = trace
        .write
        .as_ref()
        .map(|_| trace.snaplen.unwrap_or(cli::DEFAULT_SNAPLEN));
    let id = session_id();
    let target_ids: Vec<String> = targets.iter().map(resolve::Target::id).collect();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let make_job: session::MakeJob = {
        let (id, job_ns, trace, caller, target_ids) = (
            id.clone(),
            job_ns.clone(),
            trace.clone(),
            cluster.caller.clone(),
            target_ids.clone(),
        );
        Box::new(move |index, plan| {
            jobspec::job_spec(&jobspec::JobInput {
                session: &id,
                index,
                namespace: &job_ns,
                plan,
                targets: &target_ids,
                image: &trace.image,
                ports: &trace.ports,
                packets: trace.packets || trace.write.is_some(),
                snaplen,
                duration: trace.duration,
                max_duration: trace.max_duration,
                security: trace.security,
                caller: &caller,
                created: &created,
            })
        })
    };
    let jobs: Vec<_> = plans
        .iter()
        .enumerate()
        .map(|(index, plan)| make_job(index, plan))
        .collect();
    if trace.dry_run {
        print!("{}", jobspec::to_yaml(&jobs));
        return Ok(());
    }
    let target_namespaces: Vec<&str> = sides.iter().map(|s| s.namespace.as_str()).collect();
    preflight::check(&cluster.client, &job_ns, &target_namespaces).await?;
    let capture = match (&trace.write, snaplen) {
        (Some(path), Some(snaplen)) => Some(
            session::Capture::create(
                path,
                &pcapng::Session {
                    targets: target_ids.clone(),
                    started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    snaplen: podtrace::runner_args::snap_bytes(snaplen),
                },
            )
            .map_err(Error::Usage)?,
        ),
        _ => None,
    };
    let spec = session::SessionSpec {
        id,
        job_namespace: job_ns,
        plans,
        targets,
        sides,
        jobs,
        make_job,
        image: trace.image.clone(),
        output: trace.output,
        duration: trace.duration,
        start_timeout: trace.start_timeout,
        capture,
    };
    session::run(&cluster, spec, interrupted).await
}

/// A forbidden lookup of the pods named becomes the complete list of what
/// the caller is missing (as preflight gives it), not the bare 403.
async fn all_missing(
    client: &kube::Client,
    job_namespace: &str,
    targets: &[&str],
    forbidden: Error,
) -> Error {
    match preflight::missing(client, job_namespace, targets).await {
        Ok(missing) if !missing.is_empty() => Error::Forbidden {
            missing: preflight::describe_missing(&missing),
        },
        _ => forbidden,
    }
}

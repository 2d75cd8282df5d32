// SPDX-License-Identifier: Apache-2.0
//! The command line, with kubectl's conventions for the connection flags.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use podtrace::runner_args::{parse_duration, parse_port, parse_snaplen};

/// The runner image this build of the plugin pairs with: a release build
/// pins it by digest (scripts/release.sh sets `PODTRACE_DEFAULT_IMAGE`).
pub const DEFAULT_IMAGE: &str = match option_env!("PODTRACE_DEFAULT_IMAGE") {
    Some(image) => image,
    None => concat!(
        "ghcr.io/podtrace/podtrace-runner:v",
        env!("CARGO_PKG_VERSION")
    ),
};

const EXAMPLES: &str = "\
EXAMPLES:
  # Trace everything between two pods in the current namespace, until Ctrl-C
  kubectl podtrace curl-demo nginx-demo

  # Every pod of a Deployment (followed through scale-ups and rollouts)
  kubectl podtrace deploy/web
  kubectl podtrace curl-demo svc/web      # the Service's backends, one flow each
  kubectl podtrace -l app=web curl-demo   # pods with a label, and a peer

  # All traffic of one pod, only port 80, for 30 seconds
  kubectl podtrace -n web nginx-demo --port 80 --duration 30s

  # Pods in different namespaces, one event per packet, as JSON lines
  kubectl podtrace shop/frontend pod/backend -n shop --packets -o json

  # Also write every packet to a file for Wireshark (or `--write -` to pipe it:
  # `... --write - | wireshark -k -i -`, the text then goes to stderr)
  kubectl podtrace curl-demo nginx-demo --write trace.pcapng

  # Print the trace Job(s) that would be created, and create nothing
  kubectl podtrace curl-demo nginx-demo --dry-run

  # Remove trace Jobs a killed session left behind (yours; --all for everyone's)
  kubectl podtrace cleanup

EXIT STATUS:
  0    the trace ended (Ctrl-C, --duration, or the runners stopped), or --dry-run,
       cleanup, version or --help succeeded
  1    any error, a bad flag or value included (one sentence on stderr)
  130  a second Ctrl-C cut the clean-up short (run `kubectl podtrace cleanup`)";

/// Trace what the kernel sees between two pods: connects, handshake RTTs,
/// refused connections, resets, retransmits, packets and drops with their
/// reason, DNS lookups and ICMP errors, live, labelled with pod names (a
/// connection through a Service shows the Service and the backend it
/// reached); then a per-flow summary.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "kubectl-podtrace",
    bin_name = "kubectl podtrace",
    override_usage = "kubectl podtrace [FLAGS] POD [PEER]\n       \
                      kubectl podtrace [FLAGS] -l SELECTOR [PEER]\n       \
                      kubectl podtrace cleanup [--all] [FLAGS]\n       \
                      kubectl podtrace version",
    disable_help_subcommand = true,
    version,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Subcommands besides tracing.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// Delete trace Jobs left behind by sessions that did not end cleanly.
    Cleanup(CleanupArgs),
    /// Print the plugin's version and the runner image it uses.
    Version,
}

/// Flags of `kubectl podtrace cleanup`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct CleanupArgs {
    /// Delete every user's trace Jobs, not only yours.
    #[arg(long)]
    pub all: bool,
}

/// Which cluster, user and namespace to talk to; the same flags as kubectl.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct KubeArgs {
    /// Namespace of pods given without one (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "CONTEXT")]
    pub context: Option<String>,

    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// The kubeconfig cluster to use.
    #[arg(long, global = true, value_name = "CLUSTER")]
    pub cluster: Option<String>,

    /// The kubeconfig user to use.
    #[arg(long, global = true, value_name = "USER")]
    pub user: Option<String>,

    /// Namespace the trace Jobs run in; it must admit privileged pods.
    #[arg(
        long,
        global = true,
        default_value = "podtrace",
        value_name = "NAMESPACE"
    )]
    pub job_namespace: String,
}

pub use podtrace::runner_args::DEFAULT_SNAPLEN;

/// Output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Aligned columns for people, with pod names.
    #[default]
    Text,
    /// One JSON object per runner line, with `node` and pod names added.
    Json,
}

/// How much the runner's container may do.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// A privileged container: for kernels older than 5.8, which have no
    /// CAP_BPF (the runner says so when it meets one).
    Privileged,
    /// Not privileged, only the capabilities the runner needs
    /// (BPF, PERFMON, NET_ADMIN, SYS_PTRACE), seccomp Unconfined.
    #[default]
    Capabilities,
}

/// What to trace and how.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct TraceArgs {
    /// What to trace: a pod (NAME, NS/NAME, pod/NAME) or every pod of a
    /// workload or Service (deploy/, rs/, sts/, ds/, job/, svc/NAME;
    /// NS/KIND/NAME), followed as pods come and go.
    #[arg(required_unless_present = "selector", value_name = "POD")]
    pub pod: Option<String>,

    /// Trace only the traffic between POD and these pods (same forms as POD).
    #[arg(value_name = "PEER")]
    pub peer: Option<String>,

    /// Trace the pods with these labels in the namespace (instead of POD;
    /// a positional argument is then the PEER), e.g. -l app=web.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Trace only this port (either side); repeat for more ports.
    #[arg(long = "port", value_name = "N", value_parser = parse_port)]
    pub ports: Vec<u16>,

    /// Report every packet (headers only), not just SYN, FIN and RST.
    #[arg(long)]
    pub packets: bool,

    /// Also write every packet the runners capture, from all nodes in time
    /// order, to this pcapng file for Wireshark; `-` writes it to stdout
    /// (the text or JSON then goes to stderr: `--write - | wireshark -k -i -`).
    /// Implies --packets.
    #[arg(long, value_name = "FILE")]
    pub write: Option<std::path::PathBuf>,

    /// With --write: bytes kept of each packet, from its Ethernet header
    /// (default 648: every header and a whole DNS message); 0: whole
    /// packets, up to 16384 bytes.
    #[arg(long, value_name = "N", value_parser = parse_snaplen, requires = "write")]
    pub snaplen: Option<u32>,

    /// Stop by itself after this long, e.g. 30s, 5m (default: until Ctrl-C).
    // Hyphen values reach the parser, which says why `-5s` is wrong.
    #[arg(long, value_parser = parse_duration, value_name = "D", allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// The runner image, e.g. a mirror's REGISTRY/podtrace-runner@sha256:…
    /// (default: $PODTRACE_IMAGE, else the runner release matching this plugin).
    #[arg(long, env = "PODTRACE_IMAGE", default_value = DEFAULT_IMAGE, value_name = "IMAGE")]
    pub image: String,

    /// Server-side deadline: the cluster stops the trace after this long even
    /// if this plugin is gone.
    #[arg(
        long,
        value_parser = parse_duration,
        default_value = "1h",
        value_name = "D",
        allow_hyphen_values = true
    )]
    pub max_duration: Duration,

    /// Give up if the runners are not tracing after this long.
    #[arg(
        long,
        value_parser = parse_duration,
        default_value = "2m",
        value_name = "D",
        allow_hyphen_values = true
    )]
    pub start_timeout: Duration,

    /// Print the trace Job(s) as YAML and create nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Privileges of the runner's container.
    #[arg(long, value_enum, default_value_t = Security::Capabilities)]
    pub security: Security,
}

/// A pod as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The namespace given explicitly as `NS/NAME`.
    pub namespace: Option<String>,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["kubectl-podtrace"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn two_pods_with_defaults() {
        let cli = parse(&["curl-demo", "nginx-demo"]);
        assert_eq!(cli.command, None);
        assert_eq!(cli.trace.pod.as_deref(), Some("curl-demo"));
        assert_eq!(cli.trace.peer.as_deref(), Some("nginx-demo"));
        assert_eq!(cli.trace.output, Output::Text);
        assert_eq!(cli.trace.image, DEFAULT_IMAGE);
        assert!(DEFAULT_IMAGE.contains(concat!(":v", env!("CARGO_PKG_VERSION"))));
        assert_eq!(
            cli.trace.security,
            Security::Capabilities,
            "least privilege"
        );
        assert_eq!(cli.trace.max_duration, Duration::from_secs(3600));
        assert_eq!(cli.trace.start_timeout, Duration::from_secs(120));
        assert_eq!(cli.kube.job_namespace, "podtrace");
        assert_eq!(cli.trace.duration, None);
        assert!(!cli.trace.dry_run && !cli.trace.packets);
    }

    #[test]
    fn every_flag() {
        let cli = parse(&[
            "-n",
            "web",
            "--context",
            "prod",
            "--kubeconfig",
            "/tmp/kc",
            "--cluster",
            "c1",
            "--user",
            "u1",
            "-o",
            "json",
            "--port",
            "80",
            "--port",
            "443",
            "--packets",
            "--write",
            "-",
            "--snaplen",
            "0",
            "--duration",
            "1m30s",
            "--image",
            "img:1",
            "--job-namespace",
            "tracing",
            "--max-duration",
            "10m",
            "--start-timeout",
            "45s",
            "--dry-run",
            "--security",
            "privileged",
            "web/nginx",
            "pod/curl",
        ]);
        assert_eq!(cli.kube.namespace.as_deref(), Some("web"));
        assert_eq!(cli.kube.context.as_deref(), Some("prod"));
        assert_eq!(
            cli.kube.kubeconfig.as_deref(),
            Some(std::path::Path::new("/tmp/kc"))
        );
        assert_eq!(cli.kube.cluster.as_deref(), Some("c1"));
        assert_eq!(cli.kube.user.as_deref(), Some("u1"));
        assert_eq!(cli.kube.job_namespace, "tracing");
        assert_eq!(cli.trace.output, Output::Json);
        assert_eq!(cli.trace.ports, vec![80, 443]);
        assert!(cli.trace.packets && cli.trace.dry_run);
        assert_eq!(cli.trace.write.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(cli.trace.snaplen, Some(0));
        assert_eq!(cli.trace.duration, Some(Duration::from_secs(90)));
        assert_eq!(cli.trace.image, "img:1");
        assert_eq!(cli.trace.max_duration, Duration::from_secs(600));
        assert_eq!(cli.trace.start_timeout, Duration::from_secs(45));
        assert_eq!(cli.trace.security, Security::Privileged);
    }

    #[test]
    fn snaplen_needs_write_and_a_length_it_can_keep() {
        let err = |args: &[&str]| {
            let mut v = vec!["kubectl-podtrace", "a", "b"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap_err().to_string()
        };
        let e = err(&["--snaplen", "100"]);
        assert!(e.contains("--write <FILE>"), "{e}");
        let e = err(&["--write", "t.pcapng", "--snaplen", "99999"]);
        assert!(e.contains("from 1 to 16384, or 0 for whole packets"), "{e}");
        assert_eq!(DEFAULT_SNAPLEN, 648);
    }

    #[test]
    fn podtrace_image_sets_the_default_image() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        let image = cmd.get_arguments().find(|a| a.get_id() == "image").unwrap();
        assert_eq!(
            image.get_env(),
            Some(std::ffi::OsStr::new("PODTRACE_IMAGE"))
        );
    }

    #[test]
    fn subcommands() {
        let cli = parse(&["cleanup", "--all", "-n", "x"]);
        assert_eq!(
            cli.command,
            Some(Command::Cleanup(CleanupArgs { all: true }))
        );
        assert_eq!(cli.kube.namespace.as_deref(), Some("x"));
        assert_eq!(
            parse(&["cleanup"]).command,
            Some(Command::Cleanup(CleanupArgs { all: false }))
        );
        assert_eq!(parse(&["version"]).command, Some(Command::Version));
        let cli = parse(&["--kubeconfig", "/k", "cleanup", "--context", "c"]);
        assert_eq!(
            cli.command,
            Some(Command::Cleanup(CleanupArgs { all: false }))
        );
        assert_eq!(cli.kube.context.as_deref(), Some("c"));
        // A pod named like a subcommand is still reachable.
        assert_eq!(
            parse(&["pod/cleanup"]).trace.pod.as_deref(),
            Some("pod/cleanup")
        );
    }

    #[test]
    fn pod_is_required_and_bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["kubectl-podtrace"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-podtrace", "a", "-o", "yaml"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-podtrace", "a", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-podtrace", "a", "--duration", "5x"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-podtrace", "a", "b", "c"]).is_err());
    }

    #[test]
    fn help_ends_with_examples_and_exit_codes() {
        let help = Cli::try_parse_from(["kubectl-podtrace", "--help"])
            .unwrap_err()
            .to_string();
        assert!(
            help.contains("Usage: kubectl podtrace [FLAGS] POD [PEER]\n"),
            "{help}"
        );
        assert!(
            help.contains("  kubectl podtrace cleanup\n\nEXIT STATUS:\n"),
            "{help}"
        );
        assert!(
            help.trim_end()
                .ends_with("(run `kubectl podtrace cleanup`)"),
            "{help}"
        );
        for flag in [
            "--namespace",
            "--context",
            "--kubeconfig",
            "--dry-run",
            "--job-namespace",
            "--selector",
            "deploy/",
            "svc/",
            "kubectl podtrace [FLAGS] -l SELECTOR [PEER]",
        ] {
            assert!(help.contains(flag), "{flag} missing from help");
        }
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let err = |args: &[&str]| {
            let argv = ["kubectl-podtrace", "a"].iter().chain(args);
            Cli::try_parse_from(argv).unwrap_err().to_string()
        };
        for (args, says) in [
            (&["--duration", "-5s"][..], "durations cannot be negative"),
            (&["--duration", "99999999999999999h"], "too long"),
            (&["--duration", "18446744073709551615s1s"], "too long"),
            (&["--max-duration", "-1h"], "durations cannot be negative"),
            (&["--start-timeout", "0s"], "must be more than zero"),
            (&["--port", "0"], "port 0 matches no traffic"),
        ] {
            let e = err(args);
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}

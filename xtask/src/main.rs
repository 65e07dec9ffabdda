//! Project tasks, run as `cargo xtask <task>` (see README.md).

mod bench;
mod bootstrap;
mod demo;
mod env;
mod soak;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "prober's project tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need (apt packages, eBPF toolchain, bpf-linker).
    Bootstrap,
    /// Bootstrap, then build prober.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Bootstrap, build, run the whole suite as root (privileged tests included), check leftovers.
    Test,
    /// Bootstrap, build (release), and probe a throwaway namespace host.
    Demo {
        /// Instead, run each hping3-compatible case with hping3 and then prober against a host
        /// one router away, to read the outputs side by side.
        #[arg(long)]
        hping3: bool,
    },
    /// Back-to-back full-rate sweeps and one long one-target run, sampling its memory, fds and
    /// BPF handles; fails if any of them grows or a sweep leaves anything behind (needs root).
    Soak {
        /// How long to soak.
        #[arg(long, default_value_t = 10, value_name = "N")]
        minutes: u64,
        /// Seconds between samples of the long run.
        #[arg(long = "sample-seconds", default_value_t = 10, value_name = "S")]
        sample_seconds: u64,
    },
    /// Benchmarks against prober's peers, on throwaway namespace hosts (needs root).
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Sweep all 65535 TCP ports of one host, of 20 routed hosts, of 8 on a directly connected
    /// /24 and of 16 that drop every probe with prober, masscan, nmap and zmap 4.3.4 (built from
    /// ../shared/peers), flood with hping3, measure the packet path with trafgen (bypassing the
    /// qdisc and through it), and print a table per sweep.
    Sweep {
        /// Run only these tools (repeatable): prober, prober-qb, prober-gx, masscan, nmap, zmap-4.3.4,
        /// hping3, trafgen, trafgen-q.
        #[arg(long = "tool", value_name = "NAME")]
        tools: Vec<String>,
        /// Also time each of prober's BPF programs per run (kernel.bpf_stats); the clock reads
        /// that adds slow prober's own rows, so its ratios are for runs without it.
        #[arg(long)]
        bpf_stats: bool,
        /// Run only these sweeps (repeatable): one, many, on-link, unanswered, one6, many6.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Run every tool this many times per sweep, in turn (the order rotates each round),
        /// and table each tool's median run by send rate: on a shared VM one run of each can
        /// be off by tens of percent.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
        rounds: u32,
    },
    /// Hold each probe for 0, 200 µs, 2 ms and 20 ms in a responder that records the true hold
    /// times, probe it with prober, hping3 and nping (TCP SYN and ICMP echo), and print each
    /// tool's RTT error per delay.
    Rtt {
        /// Run only these tools (repeatable): prober, hping3, nping.
        #[arg(long = "tool", value_name = "NAME")]
        tools: Vec<String>,
    },
    /// prober exporter and smokeping_prober, one after the other, each pinging the same 1000
    /// namespace addresses (or --targets) and a delayed responder every second: the CPU and memory of each,
    /// its RTT error on the responder, and its memory per target. With PROBER_BIN set, that
    /// prober is run rather than a release build of this workspace.
    Exporter {
        /// How many namespace addresses each tool probes (besides the responder).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(11..=4096))]
        targets: u32,
        /// How long each tool's measured run lasts.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Run only these tools (repeatable): prober, smokeping.
        #[arg(long = "tool", value_name = "NAME")]
        tools: Vec<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Bootstrap => bootstrap::run(),
        Task::Build { release } => bootstrap::run().and_then(|()| env::build_prober(release)),
        Task::Test => test::run(),
        Task::Demo { hping3 } => demo::run(hping3),
        Task::Soak {
            minutes,
            sample_seconds,
        } => soak::run(minutes, std::time::Duration::from_secs(sample_seconds)),
        Task::Bench {
            bench:
                Bench::Sweep {
                    tools,
                    bpf_stats,
                    scenarios,
                    rounds,
                },
        } => bench::sweep(&tools, &scenarios, rounds, bpf_stats),
        Task::Bench {
            bench: Bench::Rtt { tools },
        } => bench::rtt(&tools),
        Task::Bench {
            bench:
                Bench::Exporter {
                    targets,
                    seconds,
                    tools,
                },
        } => bench::exporter(targets, seconds, &tools),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the context chain joined by ": ".
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! `specmirror`: speculative synchronous storage mirroring.

mod bench;
mod bidir_bench;
mod daemons;
mod demo;
mod goals;
mod hwdev;
mod linkem;
mod load;
mod pair;
mod probe;
mod qemu_mirror;
mod scale;
mod simulate;
mod transport_bench;
mod units;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse. glibc's malloc gives a write's 64 KiB payload buffer back
/// to the kernel when it is freed at the top of its heap, and the next write's buffer faults every
/// page in again: on an NBD server that only writes its volume, that was a third of its CPU per
/// 64 KiB write (BENCHMARKS.md, "What moved it").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "specmirror",
    version,
    about = "Synchronous storage mirroring at one network round trip per write",
    long_about = "specmirror mirrors every write of a source volume to a target volume before the \
                  client is answered. The lock for the target region and the write data travel \
                  together (speculative mode), so a mirrored write costs one round trip; a rollback \
                  log on the source keeps every unconfirmed write until the target confirms it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the protocol on a built-in example: a source and a target, a mixed workload, each
    /// mirroring mode compared, both copies checked identical.
    Demo(demo::DemoArgs),
    /// Serve the target side of a volume pair.
    Target(daemons::TargetArgs),
    /// Serve a source volume to NBD clients, mirroring every write to the target.
    Source(daemons::SourceArgs),
    /// Serve one node of a bidirectional pair: both nodes serve NBD clients on their own copy of
    /// the volume and mirror every write to each other; conflicting writes take one order on both.
    Node(daemons::NodeArgs),
    /// Measure latency and throughput of every mode against the physical floor (and QEMU's
    /// synchronous mirror when installed) over the link emulator, in one run; at zero delay the
    /// floor's server is also reached without the emulator, which shows the emulator's own cost,
    /// and at every RTT through a plain forwarder on loopback, which shows what the client's extra
    /// hop to the source costs. Ends with the goals, each judged met or missed from the run's own
    /// figures; a missed one is split into the stages that cost the difference, with its CPU
    /// ceiling.
    Bench(bench::BenchArgs),
    /// Forward TCP connections with a one-way delay in each direction, and cut the link on demand;
    /// with --udp, forward datagrams and lose, duplicate or reorder some of them.
    Linkem(linkem::LinkemArgs),
    /// Inspect a device for the hardware engine: kernel binding, IOMMU group, BARs, register
    /// blocks, DMA mapping and interrupts, each checked and reported; exits non-zero unless it is
    /// a usable specmirror device.
    Probe(probe::ProbeArgs),
    /// Run the deterministic simulator over many seeded schedules with faults and check every
    /// invariant; exits non-zero on any violation.
    Simulate(simulate::SimulateArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo prints its own report; daemons log what they do.
    let default = match cli.command {
        Command::Demo(_) => "warn",
        // vfio-ioctls warns about interrupt indexes a PCI device does not have.
        Command::Probe(_) => "warn,vfio_ioctls=error",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let ok = match cli.command {
        Command::Demo(a) => demo::demo(a).await?,
        Command::Simulate(a) => simulate::simulate(a)?,
        Command::Probe(a) => probe::probe(a)?,
        Command::Bench(a) => bench::bench(a).await?,
        Command::Linkem(a) => linkem::linkem(a).await.map(|_| true)?,
        Command::Target(a) => daemons::run_target(a).await.map(|_| true)?,
        Command::Source(a) => daemons::run_source(a).await.map(|_| true)?,
        Command::Node(a) => daemons::run_node(a).await.map(|_| true)?,
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

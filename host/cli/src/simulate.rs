//! The `simulate` and `demo` commands: the deterministic simulator from the command line.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use specmirror_abi::ring::Mode;
use specmirror_sim::bidir::{self, BidirConfig};
use specmirror_sim::{run, SimConfig, Summary};

/// Mirroring mode.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// LOCK and DATA sent together, without waiting for the lock (one round trip).
    Speculative,
    /// One DATA frame that carries its own lock request (one round trip, one frame).
    Implicit,
    /// DATA only after LOCK_GRANTED (two round trips): the baseline.
    Conservative,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Speculative => Mode::Speculative,
            ModeArg::Implicit => Mode::Implicit,
            ModeArg::Conservative => Mode::Conservative,
        }
    }
}

#[derive(Args)]
pub struct SimulateArgs {
    /// How many schedules (seeds) to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed; seeds run from here upwards.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Mirroring mode under test.
    #[arg(long, value_enum, default_value = "speculative")]
    mode: ModeArg,
    /// Print the full trace of every schedule (use with --seeds 1 to replay one).
    #[arg(long)]
    trace: bool,
    /// Stop at the first failing seed.
    #[arg(long)]
    fail_fast: bool,
    /// Simulate a bidirectional pair instead: both nodes write and read the same blocks at once;
    /// the client histories of both are checked for linearizability.
    #[arg(long)]
    bidirectional: bool,
    /// With --bidirectional: nodes answer writes while their peer is away (`node --alone serve`);
    /// the copies must still converge, histories are not checked for linearizability.
    #[arg(long, requires = "bidirectional")]
    serve_alone: bool,
}

pub fn simulate(a: SimulateArgs) -> Result<bool> {
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let mode: Mode = a.mode.into();
    if a.bidirectional {
        return simulate_bidirectional(&a, mode);
    }
    let started = Instant::now();
    let mut sum = Summary::default();
    let mut first_failure = None;
    let progress_every = (a.seeds / 20).max(1);
    for seed in a.first_seed..a.first_seed.saturating_add(a.seeds) {
        let mut cfg = SimConfig::for_seed(seed, mode);
        cfg.trace = a.trace;
        let r = run(cfg);
        if a.trace {
            for l in &r.trace {
                println!("{l}");
            }
        }
        sum.add(&r);
        if !r.violations.is_empty() {
            eprintln!("seed {seed}: {} violation(s)", r.violations.len());
            for v in r.violations.iter().take(5) {
                eprintln!("  {v}");
            }
            if first_failure.is_none() {
                first_failure = Some(seed);
            }
            if a.fail_fast {
                break;
            }
        }
        if (seed - a.first_seed + 1).is_multiple_of(progress_every) && a.seeds >= 100 {
            eprint!(
                "\r{:>3}% {} schedules, {} violations",
                (seed - a.first_seed + 1) * 100 / a.seeds,
                seed - a.first_seed + 1,
                sum.failures.len()
            );
            let _ = std::io::stderr().flush();
        }
    }
    if a.seeds >= 100 {
        eprintln!();
    }
    if let Some(seed) = first_failure {
        // Replay the first failing seed with a trace: the run is deterministic.
        let mut cfg = SimConfig::for_seed(seed, mode);
        cfg.trace = true;
        let r = run(cfg);
        let tail = r.trace.len().saturating_sub(60);
        eprintln!(
            "replay of seed {seed} (last {} of {} trace lines; full trace: specmirror simulate --seeds 1 --first-seed {seed} --mode {} --trace):",
            r.trace.len() - tail,
            r.trace.len(),
            mode.name()
        );
        for l in &r.trace[tail..] {
            eprintln!("  {l}");
        }
    }
    eprintln!("elapsed {:.1}s", started.elapsed().as_secs_f64());
    println!("{}", sum.line(mode));
    Ok(sum.failures.is_empty())
}

fn simulate_bidirectional(a: &SimulateArgs, mode: Mode) -> Result<bool> {
    let started = Instant::now();
    let (mut acked, mut failed, mut reads, mut events, mut faults) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for seed in a.first_seed..a.first_seed.saturating_add(a.seeds) {
        let mut cfg = BidirConfig::for_seed(seed, mode);
        cfg.trace = a.trace;
        cfg.serve_alone = a.serve_alone;
        let r = bidir::run(cfg);
        if a.trace {
            for l in &r.trace {
                println!("{l}");
            }
        }
        acked += r.writes_acked;
        failed += r.writes_failed;
        reads += r.reads;
        events += r.events;
        faults += r.drops + r.dups + r.corruptions + r.cuts + r.crashes + r.write_errors;
        if let Some(v) = r.violations.first() {
            eprintln!("seed {seed}: {v}");
            failures.push(seed);
            if a.fail_fast {
                break;
            }
        }
    }
    if let Some(&seed) = failures.first() {
        eprintln!(
            "replay: specmirror simulate --bidirectional --seeds 1 --first-seed {seed} --mode {} --trace",
            mode.name()
        );
    }
    eprintln!("elapsed {:.1}s", started.elapsed().as_secs_f64());
    println!(
        "simulate: bidirectional mode={} schedules={} events={events} writes acked={acked} failed={failed} reads={reads} faults injected={faults} violations={}",
        mode.name(),
        a.seeds,
        failures.len()
    );
    Ok(failures.is_empty())
}

//! The deterministic simulator: seeded, single-threaded, virtual time. Two nodes run the real
//! protocol cores over a network that delays, reorders, drops, duplicates, corrupts and cuts
//! frames, with crashes and restarts of either node (the rollback log survives a crash, volatile
//! state does not), contention from local holders on the target, and a random workload of
//! overlapping, unaligned, multi-region writes and flushes. An independent checker
//! ([`checker::Checker`]) verifies the invariants at every step; a failing seed replays exactly
//! with a readable trace.

pub mod bidir;
pub mod checker;
pub mod config;
pub mod linearize;
pub mod linkem;
pub mod rng;
pub mod udplink;
pub mod world;

pub use config::{Faults, SimConfig};
use specmirror_abi::ring::Mode;
use specmirror_core::{Nanos, US};

/// Faults one schedule injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub drops: u64,
    pub dups: u64,
    pub corruptions: u64,
    pub refused_frames: u64,
    pub cuts: u64,
    pub crashes: u64,
    pub write_errors: u64,
    pub holds: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.drops
            + self.dups
            + self.corruptions
            + self.cuts
            + self.crashes
            + self.write_errors
            + self.holds
    }

    fn add(&mut self, o: &FaultCounts) {
        self.drops += o.drops;
        self.dups += o.dups;
        self.corruptions += o.corruptions;
        self.refused_frames += o.refused_frames;
        self.cuts += o.cuts;
        self.crashes += o.crashes;
        self.write_errors += o.write_errors;
        self.holds += o.holds;
    }
}

/// What one schedule did and found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub events: u64,
    pub faults: FaultCounts,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
    pub acked: u64,
    pub failed: u64,
    pub unknown: u64,
    pub rollbacks: u64,
    pub end_time: Nanos,
    /// Latency of every acknowledged write, submission to acknowledgement.
    pub latencies: Vec<Nanos>,
}

impl Report {
    fn new(seed: u64) -> Report {
        Report {
            seed,
            events: 0,
            faults: FaultCounts::default(),
            violations: Vec::new(),
            trace: Vec::new(),
            acked: 0,
            failed: 0,
            unknown: 0,
            rollbacks: 0,
            end_time: 0,
            latencies: Vec::new(),
        }
    }

    fn merge_checker(&mut self, c: &checker::Checker) {
        let (a, f, u) = c.counts();
        self.acked = a;
        self.failed = f;
        self.unknown = u;
        self.latencies = c.latencies.clone();
    }
}

/// Runs one schedule.
pub fn run(cfg: SimConfig) -> Report {
    world::World::new(cfg).run()
}

/// Totals over many schedules.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub schedules: u64,
    pub events: u64,
    pub faults: FaultCounts,
    pub acked: u64,
    pub failed: u64,
    pub unknown: u64,
    pub rollbacks: u64,
    /// Seeds that violated an invariant, with their first violation.
    pub failures: Vec<(u64, String)>,
}

impl Summary {
    pub fn add(&mut self, r: &Report) {
        self.schedules += 1;
        self.events += r.events;
        self.faults.add(&r.faults);
        self.acked += r.acked;
        self.failed += r.failed;
        self.unknown += r.unknown;
        self.rollbacks += r.rollbacks;
        if let Some(v) = r.violations.first() {
            self.failures.push((r.seed, v.clone()));
        }
    }

    /// The one-line summary the CLI prints last.
    pub fn line(&self, mode: Mode) -> String {
        let f = &self.faults;
        format!(
            "simulate: mode={} schedules={} events={} writes acked={} failed={} unknown={} rollbacks={} faults injected={} (drops={} dups={} corruptions={} cuts={} crashes={} write_errors={} local_holds={}) violations={}",
            mode.name(),
            self.schedules,
            self.events,
            self.acked,
            self.failed,
            self.unknown,
            self.rollbacks,
            f.total(),
            f.drops,
            f.dups,
            f.corruptions,
            f.cuts,
            f.crashes,
            f.write_errors,
            f.holds,
            self.failures.len()
        )
    }
}

/// Latency of an uncontended, fault-free write, and the round-trip time it ran over.
pub fn uncontended_latency(mode: Mode) -> (Nanos, Nanos) {
    let mut cfg = SimConfig::quiet(1, mode);
    cfg.queue_depth = 1;
    cfg.ops = 20;
    cfg.one_way = 250 * US;
    cfg.local_write = 20 * US;
    cfg.target_write = 30 * US;
    cfg.think = 0;
    let r = run(cfg.clone());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let max = r.latencies.iter().copied().max().unwrap_or(0);
    (max, 2 * cfg.one_way)
}

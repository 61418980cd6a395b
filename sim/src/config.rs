//! What one simulated schedule looks like: the geometry, the workload and the faults. Each seed
//! picks its own mix, so a run over many seeds covers clean runs, lossy links, cuts and crashes.

use specmirror_abi::ring::Mode;
use specmirror_core::{Nanos, MS, US};

use crate::rng::Rng;

/// Fault rates and counts for one schedule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that a frame is lost.
    pub drop: f64,
    /// Probability that a frame is delivered twice.
    pub dup: f64,
    /// Probability that a frame arrives with a flipped bit (the decoder must refuse it).
    pub corrupt: f64,
    /// Extra one-way delay, uniform in `[0, jitter]`, per frame: this reorders frames.
    pub jitter: Nanos,
    /// Mean time between link cuts (0: none), and the longest cut.
    pub cut_every: Nanos,
    pub cut_max: Nanos,
    /// Mean time between crashes of either node (0: none), and the longest downtime.
    pub crash_every: Nanos,
    pub down_max: Nanos,
    /// Probability that a target volume write fails (atomically: nothing is written), and that a
    /// target volume sync fails.
    pub target_write_error: f64,
    /// Mean time between local holders taking target regions (0: none), and the longest hold.
    pub hold_every: Nanos,
    pub hold_max: Nanos,
}

impl Faults {
    pub fn none() -> Faults {
        Faults::default()
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub mode: Mode,
    pub volume_size: u64,
    pub region_size: u64,
    /// Client operations in the workload (writes and flushes).
    pub ops: u32,
    /// Client queue depth.
    pub queue_depth: u32,
    /// Longest write, in bytes.
    pub max_write: u64,
    /// Client think time between submissions, uniform in `[0, think]`.
    pub think: Nanos,
    pub one_way: Nanos,
    pub local_write: Nanos,
    pub target_write: Nanos,
    pub write_timeout: Nanos,
    pub retry_budget: Nanos,
    pub faults: Faults,
    /// Record a readable trace of every step.
    pub trace: bool,
    /// Run a target that writes data before its lock is held (the checker must catch it).
    pub broken_target: bool,
    /// Largest DATA payload: longer writes go out in pieces under one lock.
    pub max_data_payload: u32,
    /// A target that announces what a hardware target does (no pieces, no implicit locks):
    /// the largest write it takes under one lock, and the most writes it holds at once.
    pub hardware_target: Option<(u64, u32)>,
}

impl SimConfig {
    /// A schedule with no faults and no contention.
    pub fn quiet(seed: u64, mode: Mode) -> SimConfig {
        SimConfig {
            seed,
            mode,
            volume_size: 64 << 10,
            region_size: 4 << 10,
            ops: 60,
            queue_depth: 8,
            max_write: 10 << 10,
            think: 100 * US,
            one_way: 100 * US,
            local_write: 10 * US,
            target_write: 10 * US,
            write_timeout: 300 * MS,
            retry_budget: 5 * MS,
            faults: Faults::none(),
            trace: false,
            broken_target: false,
            max_data_payload: specmirror_abi::MAX_PAYLOAD,
            hardware_target: None,
        }
    }

    /// The schedule seed `seed` stands for: geometry, workload and fault mix drawn from it.
    pub fn for_seed(seed: u64, mode: Mode) -> SimConfig {
        let mut r = Rng::new(seed ^ 0x5eed_cafe);
        let mut c = SimConfig::quiet(seed, mode);
        c.ops = r.range(20, 80) as u32;
        c.queue_depth = [1, 4, 8, 16, 32][r.below(5) as usize];
        c.region_size = [512, 4096, 8192][r.below(3) as usize];
        c.volume_size = c.region_size * r.range(4, 24);
        c.max_write = (c.region_size * 3).min(c.volume_size);
        c.one_way = r.range(20, 500) * US;
        c.think = r.range(0, 300) * US;
        let profile = r.below(8);
        let f = &mut c.faults;
        // Profile 0 stays clean; the others add faults in growing mixes.
        if profile >= 1 {
            f.jitter = r.range(0, 400) * US;
            f.hold_every = r.range(1, 20) * MS;
            f.hold_max = r.range(1, 12) * MS;
        }
        if profile >= 2 {
            f.drop = [0.0, 0.01, 0.05, 0.2][r.below(4) as usize];
            f.dup = [0.0, 0.01, 0.1][r.below(3) as usize];
            f.corrupt = [0.0, 0.01][r.below(2) as usize];
        }
        if profile >= 3 {
            f.target_write_error = [0.0, 0.01, 0.05][r.below(3) as usize];
        }
        if profile >= 4 {
            f.cut_every = r.range(5, 60) * MS;
            f.cut_max = r.range(1, 400) * MS;
        }
        if profile >= 6 {
            f.crash_every = r.range(10, 80) * MS;
            f.down_max = r.range(1, 400) * MS;
        }
        c.max_data_payload = data_piece_for(seed);
        c.hardware_target = hardware_target_for(seed);
        c
    }
}

/// Whether seed `seed` stands for a target with a hardware target's limits, and which: one seed
/// in four, with writes of at most 2 or 4 KiB under one lock (a write of the longest kind goes in
/// up to a dozen parts) and a window of one to three writes. Drawn on its own, as
/// [`data_piece_for`] is.
pub fn hardware_target_for(seed: u64) -> Option<(u64, u32)> {
    let mut r = Rng::new(seed ^ 0x4a7d_7a26);
    if r.below(4) != 0 {
        return None;
    }
    Some((2048 << r.below(2), r.range(1, 3) as u32))
}

/// The largest DATA payload seed `seed` stands for: the whole write in one frame for most, small
/// pieces (as a datagram transport sends them) for the rest. Drawn on its own so that adding it
/// left every other property of a seed as it was.
pub fn data_piece_for(seed: u64) -> u32 {
    let mut r = Rng::new(seed ^ 0xda7a_91ec);
    [
        specmirror_abi::MAX_PAYLOAD,
        specmirror_abi::MAX_PAYLOAD,
        256,
        1376,
        3000,
    ][r.below(5) as usize]
}

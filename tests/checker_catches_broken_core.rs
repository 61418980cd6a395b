//! The simulator's checker must catch a core that breaks the protocol: a target that writes data
//! before its lock is held (a test-only switch) is found on the first seeds that contend.

use specmirror_abi::ring::Mode;
use specmirror_sim::bidir::{self, BidirConfig};
use specmirror_sim::{run, SimConfig};

#[test]
fn a_target_that_writes_before_locking_is_caught() {
    let mut caught = 0;
    let mut seeds = 0;
    for seed in 1..=200 {
        let mut cfg = SimConfig::for_seed(seed, Mode::Speculative);
        cfg.broken_target = true;
        let r = run(cfg);
        seeds += 1;
        if r.violations
            .iter()
            .any(|v| v.contains("without holding its lock"))
        {
            caught += 1;
        }
    }
    assert!(
        caught >= seeds / 4,
        "the checker caught the broken target in only {caught} of {seeds} schedules"
    );
}

#[test]
fn the_same_seeds_pass_with_the_correct_target() {
    for seed in 1..=200 {
        let r = run(SimConfig::for_seed(seed, Mode::Speculative));
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
    }
}

#[test]
fn a_failing_seed_comes_with_a_readable_trace() {
    let seed = (1..=200)
        .find(|&s| {
            let mut c = SimConfig::for_seed(s, Mode::Speculative);
            c.broken_target = true;
            !run(c).violations.is_empty()
        })
        .expect("some seed fails");
    let mut cfg = SimConfig::for_seed(seed, Mode::Speculative);
    cfg.broken_target = true;
    cfg.trace = true;
    let r = run(cfg);
    assert!(r.trace.iter().any(|l| l.contains("VIOLATION")));
    assert!(r.trace.iter().any(|l| l.contains("source sends LOCK")));
}

#[test]
fn bidirectional_nodes_whose_targets_write_before_locking_are_caught() {
    let mut caught = 0;
    for seed in 1..=100 {
        let mut cfg = BidirConfig::for_seed(seed, Mode::Speculative);
        cfg.broken_target = true;
        let r = bidir::run(cfg);
        if r.violations
            .iter()
            .any(|v| v.contains("without holding its lock"))
        {
            caught += 1;
        }
    }
    assert!(
        caught >= 25,
        "the checker caught the broken nodes in only {caught} of 100 schedules"
    );
}

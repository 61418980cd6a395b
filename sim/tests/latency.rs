//! Invariant 5: with no faults and no contention, a speculative (or implicit) write completes in
//! one round trip of virtual time plus the target's write, a conservative one in two.

use specmirror_abi::ring::Mode;
use specmirror_sim::{run, uncontended_latency, SimConfig};

const TARGET_WRITE: u64 = 30_000; // what uncontended_latency configures

#[test]
fn speculative_write_costs_one_round_trip() {
    let (lat, rtt) = uncontended_latency(Mode::Speculative);
    assert_eq!(lat, rtt + TARGET_WRITE);
}

#[test]
fn implicit_write_costs_one_round_trip() {
    let (lat, rtt) = uncontended_latency(Mode::Implicit);
    assert_eq!(lat, rtt + TARGET_WRITE);
}

#[test]
fn conservative_write_costs_two_round_trips() {
    let (lat, rtt) = uncontended_latency(Mode::Conservative);
    assert_eq!(lat, 2 * rtt + TARGET_WRITE);
}

#[test]
fn every_quiet_write_has_the_same_latency() {
    let mut cfg = SimConfig::quiet(3, Mode::Speculative);
    cfg.queue_depth = 1;
    cfg.think = 0;
    cfg.trace = true;
    let r = run(cfg.clone());
    assert!(r.violations.is_empty());
    let min = r.latencies.iter().min().unwrap();
    let max = r.latencies.iter().max().unwrap();
    assert_eq!(min, max, "{}", r.trace[..60.min(r.trace.len())].join("\n"));
    assert_eq!(*max, 2 * cfg.one_way + cfg.target_write);
}

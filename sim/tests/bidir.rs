//! The bidirectional mode under the deterministic simulator: both nodes write and read the same
//! blocks at once, under every fault the bidirectional world injects.

use specmirror_abi::ring::Mode;
use specmirror_sim::bidir::{run, uncontended_latency, BidirConfig, BidirReport};

fn seeds() -> u64 {
    std::env::var("SPECMIRROR_BIDIR_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn replay(mut cfg: BidirConfig, r: &BidirReport) -> String {
    cfg.trace = true;
    let t = run(cfg);
    let tail = t.trace.len().saturating_sub(80);
    format!(
        "seed {}: {:?}\n{}",
        r.seed,
        r.violations,
        t.trace[tail..].join("\n")
    )
}

fn sweep(mode: Mode) {
    let (mut acked, mut failed, mut reads, mut faults) = (0, 0, 0, 0);
    for seed in 1..=seeds() {
        let cfg = BidirConfig::for_seed(seed, mode);
        let r = run(cfg.clone());
        assert!(r.violations.is_empty(), "{}", replay(cfg, &r));
        acked += r.writes_acked;
        failed += r.writes_failed;
        reads += r.reads;
        faults += r.drops + r.dups + r.corruptions + r.cuts + r.crashes + r.write_errors;
    }
    eprintln!(
        "bidirectional {}: writes acked={acked} failed={failed} reads={reads} faults={faults}",
        mode.name()
    );
    // The sweep must exercise something: writes that complete and faults that bite.
    assert!(acked > 1000, "only {acked} writes acknowledged");
    assert!(faults > 100, "only {faults} faults injected");
}

#[test]
fn speculative_both_ways_under_faults() {
    sweep(Mode::Speculative);
}

#[test]
fn conservative_both_ways_under_faults() {
    sweep(Mode::Conservative);
}

#[test]
fn implicit_both_ways_under_faults() {
    sweep(Mode::Implicit);
}

#[test]
fn serving_alone_through_partitions_still_converges() {
    let (mut alone, mut cuts) = (0, 0);
    for seed in 1..=seeds() / 2 {
        let mut cfg = BidirConfig::for_seed(seed, Mode::Speculative);
        cfg.serve_alone = true;
        let r = run(cfg.clone());
        assert!(r.violations.is_empty(), "{}", replay(cfg, &r));
        alone += r.acked_alone;
        cuts += r.cuts + r.crashes;
    }
    eprintln!(
        "serve policy: {alone} writes answered while the peer was away, {cuts} cuts and crashes"
    );
    assert!(
        alone > 100 && cuts > 100,
        "{alone} writes answered alone, {cuts} cuts and crashes"
    );
}

#[test]
fn contended_writes_without_faults_converge_in_one_order() {
    // Every operation is a write to one of two blocks: conflicts on nearly every write.
    let mut cfg = BidirConfig::quiet(7, Mode::Speculative);
    cfg.blocks = 2;
    cfg.max_blocks = 2;
    cfg.read_share = 0.3;
    cfg.queue_depth = 4;
    cfg.ops = 200;
    let r = run(cfg);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.writes_failed, 0);
    assert!(r.writes_acked > 200, "{}", r.writes_acked);
}

/// What `uncontended_latency` configures for the peer's volume write.
const PEER_WRITE: u64 = 30_000;

fn one_round_trip_on_both_nodes(mode: Mode, trips: u64) {
    let (per, rtt) = uncontended_latency(mode);
    for (n, lats) in per.iter().enumerate() {
        assert!(lats.len() >= 20, "node {}: {} writes", n + 1, lats.len());
        for &l in lats {
            assert_eq!(
                l,
                trips * rtt + PEER_WRITE,
                "node {}: a write took {l} ns over a {rtt} ns round trip",
                n + 1
            );
        }
    }
}

#[test]
fn uncontended_speculative_writes_cost_one_round_trip_on_either_node() {
    one_round_trip_on_both_nodes(Mode::Speculative, 1);
}

#[test]
fn uncontended_implicit_writes_cost_one_round_trip_on_either_node() {
    one_round_trip_on_both_nodes(Mode::Implicit, 1);
}

#[test]
fn uncontended_conservative_writes_cost_two_round_trips_on_either_node() {
    one_round_trip_on_both_nodes(Mode::Conservative, 2);
}

//! LOCK and DATA frames in, answer frames and volume writes out, against the software target fed
//! the same frames: every answer is the very frame the software sends, and the volume ends the
//! same. The host model beside the hardware checks at every clock that no write leaves before its
//! lock is held, and that every write falls inside the regions its lock holds.

use specmirror_abi::FrameType;

use super::host::{assert_same_answers, lock, software, writes, Host, REGIONS};
use super::TargetPath;

/// The target path in rust-hdl's simulation, with the host and source around it.
pub fn host(seed: u64) -> Host<TargetPath<16, 4>> {
    let mut u = super::tests_support::connected::<16, 4>();
    rust_hdl::prelude::Block::connect_all(&mut u);
    Host::new(u, seed)
}

fn ty(f: &[u8]) -> u8 {
    f[5]
}

#[test]
fn answers_every_lock_with_the_software_targets_frame() {
    // Twelve locks on regions of their own (granted), one past the volume's end and one empty
    // (rejected: out of range).
    let mut frames: Vec<Vec<u8>> = (1..=12)
        .map(|i| lock(i, 100 + i, (i * 5) % REGIONS, 1 + i % 3))
        .collect();
    frames.push(lock(13, 113, REGIONS - 1, 2));
    frames.push(lock(14, 114, 7, 0));
    let (sw, _) = software(&frames);
    assert_eq!(sw.len(), 14);
    assert_eq!(
        sw.iter()
            .filter(|f| ty(f) == FrameType::LockGranted as u8)
            .count(),
        12
    );
    let mut h = host(1);
    for f in &frames {
        h.send(f);
    }
    h.settle_down(500);
    assert_eq!(h.out.frames_bad, 0);
    assert_eq!(h.out.lock_drops, 0);
    assert_eq!(h.out.answer_drops, 0);
    assert_same_answers(&h.answers, &sw, "locks alone");
}

#[test]
fn writes_land_as_the_software_targets_do_and_never_before_their_locks() {
    // More seeds and longer runs go through the Verilator model (sim/verilated).
    for seed in [1] {
        let frames = writes(seed, 24);
        let (sw, sw_volume) = software(&frames);
        assert_eq!(
            sw.iter()
                .filter(|f| ty(f) == FrameType::WriteDone as u8)
                .count(),
            24
        );
        let mut h = host(seed);
        for f in &frames {
            h.send(f);
        }
        let rounds = h.retransmit_until_done(&frames, 600);
        assert!(
            rounds < 20,
            "seed {seed}: {rounds} rounds of retransmission"
        );
        assert_eq!(h.writes.len(), 24, "seed {seed}: every write went out once");
        assert_eq!(h.out.answer_drops, 0, "seed {seed}");
        assert_eq!(h.out.data_violations, 0, "seed {seed}");
        assert_same_answers(&h.answers, &sw, &format!("seed {seed}"));
        assert!(h.volume == sw_volume, "seed {seed}: the volumes differ");
        assert_eq!(h.out.held, 0, "seed {seed}: every lock released");
    }
}

#[test]
fn lost_answers_are_repeated_from_the_cache_and_end_as_the_software_targets() {
    let frames = writes(5, 24);
    let (sw, sw_volume) = software(&frames);
    let mut h = host(5);
    h.faults.lose_out = 25;
    for f in &frames {
        h.send(f);
    }
    let rounds = h.retransmit_until_done(&frames, 600);
    assert!(rounds < 50, "{rounds} rounds of retransmission");
    assert!(h.out.lock_repeats > 0, "no lock command was repeated");
    assert!(h.out.answers_repeated > 0, "no answer was repeated");
    assert_same_answers(&h.answers, &sw, "with lost answers");
    assert!(h.volume == sw_volume, "the volumes differ");
    assert_eq!(
        h.writes.len(),
        24,
        "a repeated DATA frame is never written twice"
    );
    assert_eq!(h.out.held, 0, "every lock released");
}

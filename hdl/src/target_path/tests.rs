//! LOCK frames in, answer frames out, against the software target fed the same frames: every
//! answer is the very frame the software sends.

use rust_hdl::prelude::*;
use specmirror_abi::{encode, FrameType, Header, Hello, HelloStatus};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;

use super::TargetPath;
use crate::bench::{cycle, settle};

const REGION: u64 = 4096;
const REGIONS: u64 = 64;
const PAIR: [u8; 16] = *b"hdl-target-path!";
const GENERATION: u32 = 3;

fn lock(lock_id: u64, seq: u64, first: u64, count: u64) -> Vec<u8> {
    let mut h = Header::new(FrameType::Lock);
    h.generation = GENERATION;
    h.lock_id = lock_id;
    h.seq = seq;
    h.offset = first;
    h.arg = count;
    encode(&h, &[])
}

/// The frames the software target answers `frames` with, in session `GENERATION`.
fn software(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut t = Target::new(TargetConfig::new(REGIONS * REGION, REGION, PAIR));
    let hello = Hello::for_pair(REGIONS * REGION, REGION, PAIR, 1, HelloStatus::Ok);
    let mut h = Header::new(FrameType::Hello);
    h.generation = GENERATION;
    t.handle(
        TargetEvent::Frame(Frame::new(h, hello.to_bytes().to_vec())),
        0,
    );
    let mut out = Vec::new();
    for f in frames {
        let (f, _) = Frame::decode(f).unwrap();
        for a in t.handle(TargetEvent::Frame(f), 0) {
            if let TargetAction::Send(s) = a {
                out.push(s.encode());
            }
        }
    }
    out
}

/// The frames the lock path sends for `frames`, each streamed a word per clock with a gap after.
fn hardware(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut u = super::tests_support::connected::<16, 4>();
    u.connect_all();
    u.generation.next = (GENERATION as u64).to_bits();
    u.region_count.next = REGIONS.to_bits();
    u.retry_backoff.next = 8u64.to_bits();
    u.retry_limit.next = 3u64.to_bits();
    u.tx_ready.next = true;
    let mut words: Vec<(u64, bool)> = Vec::new();
    for f in frames {
        let w: Vec<u64> = f
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for (i, x) in w.iter().enumerate() {
            words.push((*x, i + 1 == w.len()));
        }
        // A gap, as between frames on a wire.
        words.extend(std::iter::repeat_n((u64::MAX, false), 24));
    }
    let (mut out, mut cur) = (Vec::new(), Vec::new());
    for t in 0..words.len() + 2000 {
        let w = words.get(t).copied();
        u.rx_valid.next = w.is_some_and(|w| w.0 != u64::MAX || w.1);
        u.rx_data.next = w.map_or(0, |w| w.0).to_bits();
        u.rx_last.next = w.is_some_and(|w| w.1);
        settle(&mut u);
        if u.tx_valid.val() && u.tx_ready.val() {
            cur.extend_from_slice(&u.tx_data.val().to_u64().to_le_bytes());
            if u.tx_last.val() {
                out.push(std::mem::take(&mut cur));
            }
        }
        cycle(&mut u, |u: &mut TargetPath<16, 4>| &mut u.clock);
    }
    assert_eq!(u.frames_bad.val().to_u64(), 0);
    assert_eq!(u.lock_drops.val().to_u64(), 0);
    assert_eq!(u.answer_drops.val().to_u64(), 0);
    out
}

fn by_lock(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.sort_by_key(|f| u64::from_le_bytes(f[24..32].try_into().unwrap()));
    frames
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
    let sw = software(&frames);
    assert_eq!(sw.len(), 14);
    let ty = |f: &Vec<u8>| f[5];
    assert_eq!(
        sw.iter()
            .filter(|f| ty(f) == FrameType::LockGranted as u8)
            .count(),
        12
    );
    let hw = hardware(&frames);
    assert_eq!(by_lock(hw), by_lock(sw), "the same answers, byte for byte");
}

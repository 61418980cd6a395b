//! The parser against the golden frames, corrupted frames, gaps and truncation.

use rust_hdl::prelude::*;
use specmirror_abi::golden::CASES;

use super::FrameParser;
use crate::bench::{cycle, settle, Rng};

fn clock(u: &mut FrameParser) -> &mut Signal<In, Clock> {
    &mut u.clock
}

/// What the parser reported for a stream of frames.
#[derive(Default, Debug)]
struct Seen {
    headers: Vec<(u64, u64, u64, u64)>,
    payload: Vec<u64>,
    ok: usize,
    bad: usize,
    bad_count: u64,
}

/// Feeds `frames` (each a list of words) with `gap(t)` idle cycles, returns what came out.
fn feed(frames: &[Vec<u64>], gap: impl Fn(u64) -> bool) -> Seen {
    let mut u = super::tests_support::connected();
    u.connect_all();
    let mut seen = Seen::default();
    let mut t = 0u64;
    let words: Vec<(u64, bool)> = frames
        .iter()
        .flat_map(|f| {
            f.iter()
                .enumerate()
                .map(move |(i, w)| (*w, i + 1 == f.len()))
        })
        .collect();
    let mut i = 0;
    let mut drain = 0;
    // A few idle clocks after the last word: the last verdict comes a clock after its trailer.
    while i < words.len() || drain < 3 {
        if i >= words.len() {
            drain += 1;
        }
        let idle = i >= words.len() || gap(t);
        u.rx_valid.next = !idle;
        u.rx_data.next = words.get(i).map(|w| w.0).unwrap_or(0).to_bits();
        u.rx_last.next = words.get(i).map(|w| w.1).unwrap_or(false);
        settle(&mut u);
        if u.hdr_valid.val() {
            seen.headers.push((
                u.ty.val().to_u64(),
                u.seq.val().to_u64(),
                u.lock_id.val().to_u64(),
                u.offset.val().to_u64(),
            ));
        }
        if u.pay_valid.val() {
            seen.payload.push(u.pay_data.val().to_u64());
        }
        seen.ok += u.frame_ok.val() as usize;
        seen.bad += u.frame_bad.val() as usize;
        cycle(&mut u, clock);
        if !idle {
            i += 1;
        }
        t += 1;
    }
    settle(&mut u);
    seen.bad_count = u.bad_count.val().to_u64();
    seen
}

fn words_of(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The golden cases split into frames.
fn golden_frames() -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for c in CASES {
        let bytes = c.frames();
        let mut at = 0;
        while at < bytes.len() {
            let (_, _, n) = specmirror_abi::decode(&bytes[at..]).unwrap();
            out.push(words_of(&bytes[at..at + n]));
            at += n;
        }
    }
    out
}

#[test]
fn parses_every_golden_frame() {
    let frames = golden_frames();
    let seen = feed(&frames, |_| false);
    assert_eq!(seen.ok, frames.len());
    assert_eq!((seen.bad, seen.bad_count), (0, 0));
    let mut want_hdr = Vec::new();
    let mut want_pay = Vec::new();
    for f in &frames {
        let bytes: Vec<u8> = f.iter().flat_map(|w| w.to_le_bytes()).collect();
        let (h, p, _) = specmirror_abi::decode(&bytes).unwrap();
        want_hdr.push((h.ty as u64, h.seq, h.lock_id, h.offset));
        let mut padded = p.to_vec();
        padded.resize(p.len().div_ceil(8) * 8, 0);
        want_pay.extend(words_of(&padded));
    }
    assert_eq!(seen.headers, want_hdr);
    assert_eq!(seen.payload, want_pay);
}

#[test]
fn the_same_with_idle_gaps() {
    let frames = golden_frames();
    let seen = feed(&frames, |t| t % 3 == 1 || t % 7 == 0);
    assert_eq!(seen.ok, frames.len());
    assert_eq!(seen.bad, 0);
}

#[test]
fn any_flipped_bit_drops_the_frame_and_the_next_one_parses() {
    let frames = golden_frames();
    let target = &frames[3];
    let mut r = Rng(0x1234_5678_9abc_def1);
    for _ in 0..60 {
        let x = r.next_u64();
        let mut bad = target.clone();
        let w = (x % bad.len() as u64) as usize;
        bad[w] ^= 1 << ((x >> 32) % 64);
        let seen = feed(&[bad.clone(), frames[0].clone()], |_| false);
        assert_eq!(seen.bad, 1, "flip in word {w}: {seen:?}");
        assert_eq!(seen.bad_count, 1);
        assert_eq!(seen.ok, 1, "the frame after a bad one parses (word {w})");
    }
}

#[test]
fn a_truncated_frame_is_dropped() {
    let frames = golden_frames();
    let mut short = frames[1].clone();
    short.truncate(5);
    let seen = feed(&[short, frames[2].clone()], |_| false);
    assert_eq!((seen.bad, seen.ok), (1, 1));
}

#[test]
fn unknown_types_and_flags_are_refused_even_with_a_good_crc() {
    let good = golden_frames()[0].clone();
    let reseal = |mut words: Vec<u64>| {
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let end = bytes.len() - 8;
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        words = words_of(&bytes);
        words
    };
    for (byte, value) in [(5usize, 0u8), (5, 13), (5, 15), (5, 0x20), (7, 0x80)] {
        let mut w = good.clone();
        let mut b = w[0].to_le_bytes();
        b[byte] = value;
        w[0] = u64::from_le_bytes(b);
        let seen = feed(&[reseal(w), good.clone()], |_| false);
        assert_eq!((seen.bad, seen.ok), (1, 1), "byte {byte} = {value:#x}");
    }
}

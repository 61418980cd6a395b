//! The filter under a random mix of frames (every kind, this session's and others', damaged
//! ones, one-word ones) with random gaps, back to back too: what leaves is exactly the frames
//! `for_the_host` names, whole and byte for byte, in their order; with `enable` low, nothing.

use rust_hdl::prelude::*;
use specmirror_abi::{encode, FrameType, Header};

use super::{for_the_host, HostFilter};
use crate::bench::{cycle, settle, Rng};

fn clock(u: &mut HostFilter) -> &mut Signal<In, Clock> {
    &mut u.clock
}

const SESSION: u32 = 7;

/// A random frame: a real one of a random kind and session (this one or another), or one with
/// a bad magic, or a single word.
fn frame(r: &mut Rng) -> Vec<u8> {
    const KINDS: [FrameType; 8] = [
        FrameType::Hello,
        FrameType::Lock,
        FrameType::Data,
        FrameType::Abort,
        FrameType::Flush,
        FrameType::Heartbeat,
        FrameType::LockGranted,
        FrameType::WriteDone,
    ];
    match r.below(10) {
        0 => return (r.next_u64() | 1).to_le_bytes().to_vec(),
        1 => {
            let mut f = encode(&Header::new(FrameType::Hello), &[]);
            f[0] ^= 0x40;
            return f;
        }
        _ => {}
    }
    let mut h = Header::new(KINDS[r.below(KINDS.len() as u64) as usize]);
    h.generation = if r.below(2) == 0 {
        SESSION
    } else {
        1 + r.below(9) as u32
    };
    h.seq = r.next_u64();
    let payload: Vec<u8> = (0..8 * r.below(6)).map(|_| r.below(256) as u8).collect();
    encode(&h, &payload)
}

/// `n` frames through the filter with gaps of none to `gap` clocks; returns the frames sent and
/// the frames that came out.
fn run(seed: u64, n: usize, gap: u64, enable: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut r = Rng(seed);
    let sent: Vec<Vec<u8>> = (0..n).map(|_| frame(&mut r)).collect();
    let mut u = super::tests_support::connected();
    u.connect_all();
    u.enable.next = enable;
    u.generation.next = SESSION.to_bits();
    let words: Vec<(u64, bool)> = sent
        .iter()
        .flat_map(|f| {
            let n = f.len() / 8;
            f.chunks(8).enumerate().map(move |(k, c)| {
                let w = u64::from_le_bytes(c.try_into().expect("whole words"));
                (w, k + 1 == n)
            })
        })
        .collect();
    let (mut at, mut wait) = (0usize, 0u64);
    let (mut got, mut cur) = (Vec::new(), Vec::new());
    for _ in 0..words.len() as u64 * (gap + 2) + 10 {
        u.rx_valid.next = false;
        u.rx_last.next = false;
        if at < words.len() && wait == 0 {
            u.rx_valid.next = true;
            u.rx_data.next = words[at].0.to_bits();
            u.rx_last.next = words[at].1;
        }
        settle(&mut u);
        if u.out_valid.val() {
            cur.extend_from_slice(&u.out_data.val().to_u64().to_le_bytes());
            if u.out_last.val() {
                got.push(std::mem::take(&mut cur));
            }
        }
        cycle(&mut u, clock);
        if wait > 0 {
            wait -= 1;
        } else if at < words.len() {
            at += 1;
            if at < words.len() && words[at - 1].1 {
                wait = r.below(gap + 1);
            }
        }
    }
    assert!(cur.is_empty(), "a frame left without its last word");
    (sent, got)
}

#[test]
fn exactly_the_host_s_frames_leave_whole_and_in_order() {
    for (seed, gap) in [(1, 0), (2, 3), (3, 1)] {
        let (sent, got) = run(seed, 300, gap, true);
        let want: Vec<Vec<u8>> = sent
            .into_iter()
            .filter(|f| for_the_host(f, SESSION))
            .collect();
        assert!(
            want.len() > 60,
            "the mix holds too few of the host's frames"
        );
        assert_eq!(got.len(), want.len(), "seed {seed}: frames out");
        assert!(got == want, "seed {seed}: frames differ from the host's");
    }
}

#[test]
fn the_rule_names_each_kind_as_the_target_device_leaves_it() {
    let f = |ty, generation| {
        let mut h = Header::new(ty);
        h.generation = generation;
        for_the_host(&encode(&h, &[]), SESSION)
    };
    for ty in [FrameType::Hello, FrameType::Flush, FrameType::Heartbeat] {
        assert!(f(ty, SESSION) && f(ty, SESSION + 1), "{ty:?}");
    }
    for ty in [FrameType::Lock, FrameType::Data] {
        assert!(!f(ty, SESSION) && f(ty, SESSION + 1), "{ty:?}");
    }
    for ty in [
        FrameType::Abort,
        FrameType::LockGranted,
        FrameType::WriteDone,
    ] {
        assert!(!f(ty, SESSION) && !f(ty, SESSION + 1), "{ty:?}");
    }
}

#[test]
fn nothing_leaves_while_disabled() {
    let (sent, got) = run(4, 100, 1, false);
    assert!(sent.iter().any(|f| for_the_host(f, SESSION)));
    assert!(got.is_empty(), "{} frames left while disabled", got.len());
}

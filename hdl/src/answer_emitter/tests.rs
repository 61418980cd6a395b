//! The answer path against the software target's encoder: every answer comes out as the very
//! frame the software sends, in order, one word per clock, under back-pressure too.

use rust_hdl::prelude::*;
use specmirror_abi::{encode, FrameType, Header};

use super::AnswerEmitter;
use crate::bench::{cycle, settle, Rng};

fn clock(u: &mut AnswerEmitter) -> &mut Signal<In, Clock> {
    &mut u.clock
}

/// An answer: type, seq, lock id, arg.
type Answer = (FrameType, u64, u64, u64);

/// The frame the software target sends for `a` in session `generation`.
fn software(a: Answer, generation: u32) -> Vec<u8> {
    let mut h = Header::new(a.0);
    h.generation = generation;
    h.seq = a.1;
    h.lock_id = a.2;
    h.arg = a.3;
    encode(&h, &[])
}

fn random_answers(r: &mut Rng, n: usize) -> Vec<Answer> {
    let types = [
        FrameType::LockGranted,
        FrameType::LockRejected,
        FrameType::WriteDone,
        FrameType::WriteFailed,
    ];
    (0..n)
        .map(|_| {
            let ty = types[r.below(4) as usize];
            let arg = match ty {
                FrameType::LockRejected => 1 + r.below(5),
                FrameType::WriteFailed => 1 + r.below(120),
                _ => 0,
            };
            (ty, r.next_u64(), r.next_u64(), arg)
        })
        .collect()
}

/// Offers the answers at the clocks `offer_at` gives (one per clock at most) while the stream is
/// stalled when `stall(t)`; returns each word with its clock and `last`, and the drop count.
fn drive(
    answers: &[Answer],
    offer_gap: impl Fn(usize) -> u64,
    stall: impl Fn(u64) -> bool,
) -> (Vec<(u64, u64, bool)>, u64) {
    let mut u = super::tests_support::connected();
    u.connect_all();
    u.generation.next = 0x0102_0304u64.to_bits();
    let mut out = Vec::new();
    let (mut next, mut at) = (0usize, offer_gap(0));
    let mut frames = 0;
    for t in 0..200_000u64 {
        let offer = next < answers.len() && t >= at;
        u.ans_valid.next = offer;
        if offer {
            let a = answers[next];
            u.ans_ty.next = (a.0 as u64).to_bits();
            u.ans_seq.next = a.1.to_bits();
            u.ans_lock_id.next = a.2.to_bits();
            u.ans_arg.next = a.3.to_bits();
        }
        u.tx_ready.next = !stall(t);
        settle(&mut u);
        if u.tx_valid.val() && u.tx_ready.val() {
            out.push((t, u.tx_data.val().to_u64(), u.tx_last.val()));
            frames += u.tx_last.val() as usize;
        }
        cycle(&mut u, clock);
        if offer {
            next += 1;
            at = t + 1 + offer_gap(next);
        }
        let dropped = u.dropped.val().to_u64();
        if next == answers.len() && frames as u64 + dropped == answers.len() as u64 {
            return (out, dropped);
        }
    }
    panic!("the emitter did not finish");
}

fn bytes(words: &[(u64, u64, bool)]) -> Vec<u8> {
    words.iter().flat_map(|w| w.1.to_le_bytes()).collect()
}

#[test]
fn every_answer_is_the_software_targets_frame_byte_for_byte() {
    let mut r = Rng(0x5eed_0001);
    let answers = random_answers(&mut r, 40);
    let (words, dropped) = drive(&answers, |_| 12, |_| false);
    assert_eq!(dropped, 0);
    let want: Vec<u8> = answers
        .iter()
        .flat_map(|a| software(*a, 0x0102_0304))
        .collect();
    assert_eq!(bytes(&words), want);
    assert_eq!(words.iter().filter(|w| w.2).count(), answers.len());
}

#[test]
fn a_burst_queues_and_leaves_one_word_per_clock_under_back_pressure_too() {
    let mut r = Rng(0x5eed_0002);
    // Sixteen answers on sixteen consecutive clocks: the FIFO takes them all.
    let answers = random_answers(&mut r, 16);
    let (words, dropped) = drive(&answers, |_| 0, |_| false);
    assert_eq!(dropped, 0);
    let want: Vec<u8> = answers
        .iter()
        .flat_map(|a| software(*a, 0x0102_0304))
        .collect();
    assert_eq!(bytes(&words), want);
    // Within a frame, a word every clock.
    for f in words.chunks(9) {
        for w in f.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 1);
        }
    }
    let mut s = Rng(0x5eed_0003);
    let stalls: Vec<bool> = (0..200_000).map(|_| s.below(3) == 0).collect();
    let (words, dropped) = drive(&answers, |_| 0, |t| stalls[t as usize]);
    assert_eq!(dropped, 0);
    assert_eq!(bytes(&words), want, "the same bytes with stalls");
}

#[test]
fn answers_beyond_the_fifo_are_dropped_and_counted_never_garbled() {
    let mut r = Rng(0x5eed_0004);
    let answers = random_answers(&mut r, 40);
    // The stream is stalled for a long while: at most the FIFO's worth (plus the one being
    // emitted) can wait.
    let (words, dropped) = drive(&answers, |_| 0, |t| t < 100);
    assert!(dropped > 0, "nothing dropped");
    let sent = answers.len() as u64 - dropped;
    assert!(sent <= super::DEPTH as u64 + 1, "{sent} sent");
    let want: Vec<u8> = answers[..sent as usize]
        .iter()
        .flat_map(|a| software(*a, 0x0102_0304))
        .collect();
    assert_eq!(bytes(&words), want, "the first ones, intact and in order");
}

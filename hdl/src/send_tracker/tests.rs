//! The tracker against a model of its rules: random descriptors and answers (repeats, answers for
//! locks it never had, back-to-back answers for one lock), every completion the ABI's very entry.

use rust_hdl::prelude::*;
use specmirror_abi::ring::CompletionStatus;
use specmirror_abi::FrameType;

use super::model::Traffic;
use super::{SendTracker8, ENTRIES};
use crate::bench::{cycle, settle};

fn clock(u: &mut SendTracker8) -> &mut Signal<In, Clock> {
    &mut u.clock
}

fn tracker() -> SendTracker8 {
    let mut u = super::tests_support::connected();
    u.connect_all();
    u
}

struct Run {
    completions: Vec<[u8; 32]>,
    want: Vec<[u8; 32]>,
    unmatched: u64,
    model_unmatched: u64,
    drops: u64,
    /// Raw frames' tags, as they were handed in and as `Sent` completions came out.
    raw_in: Vec<u64>,
    raw_out: Vec<u64>,
}

fn completion(u: &SendTracker8) -> [u8; 32] {
    let mut b = [0u8; 32];
    let d = u.cpl_data.val();
    for w in 0..4 {
        let word = d.get_bits::<64>(64 * w).to_u64();
        b[8 * w..8 * w + 8].copy_from_slice(&word.to_le_bytes());
    }
    b
}

/// `steps` clocks of random traffic (answers `gap` clocks apart at least), the completion port
/// ready `ready_percent` of clocks, then a drain. With `raw`, raw frames leave at random too,
/// as the send path lets them (while `raw_room`, two clocks apart at least).
fn random_run(seed: u64, steps: u64, gap: u64, ready_percent: u64) -> Run {
    random_run_with(seed, steps, gap, ready_percent, false)
}

fn random_run_with(seed: u64, steps: u64, gap: u64, ready_percent: u64, raw: bool) -> Run {
    let mut traffic = Traffic::new(seed, gap);
    let mut u = tracker();
    let mut completions = Vec::new();
    let (mut raw_in, mut raw_out, mut raw_last) = (Vec::new(), Vec::new(), 0u64);
    for t in 0..steps + 200 {
        let ready = t >= steps || traffic.below(100) < ready_percent;
        settle(&mut u);
        let pulse =
            raw && t < steps && t > raw_last + 1 && u.raw_room.val() && traffic.below(3) == 0;
        u.raw_valid.next = pulse;
        if pulse {
            raw_last = t;
            raw_in.push(0x5e00 + t);
            u.raw_seq.next = (0x5e00 + t).to_bits();
        }
        let i = if t < steps {
            traffic.next(t, u.room.val())
        } else {
            Default::default()
        };
        u.sent_valid.next = i.sent.is_some();
        if let Some((id, seq)) = i.sent {
            u.sent_lock_id.next = id.to_bits();
            u.sent_seq.next = seq.to_bits();
        }
        u.ans_valid.next = i.answer.is_some();
        if let Some((ty, id, arg)) = i.answer {
            u.ans_ty.next = (ty as u64).to_bits();
            u.ans_lock_id.next = id.to_bits();
            u.ans_arg.next = arg.to_bits();
        }
        u.cpl_ready.next = ready;
        settle(&mut u);
        if u.cpl_valid.val() && u.cpl_ready.val() {
            let c = completion(&u);
            if c[16] == CompletionStatus::Sent as u8 {
                assert_eq!(&c[8..16], &[0; 8], "a raw frame's entry has no lock");
                raw_out.push(u64::from_le_bytes(c[..8].try_into().unwrap()));
            } else {
                completions.push(c);
            }
        }
        cycle(&mut u, clock);
    }
    settle(&mut u);
    assert_eq!(
        u.inflight.val().to_u64().count_ones() as usize,
        traffic.model.entries.len(),
        "entries in use"
    );
    Run {
        completions,
        want: traffic.want.into_iter().collect(),
        unmatched: u.unmatched.val().to_u64(),
        model_unmatched: traffic.model.unmatched,
        drops: u.cpl_drops.val().to_u64(),
        raw_in,
        raw_out,
    }
}

#[test]
fn every_raw_frame_is_reported_sent_once_in_order_among_the_answers() {
    // The port always ready: no answer is dropped, and the answers' entries are the model's.
    let run = random_run_with(0x7ac0_0200, 3000, 3, 100, true);
    assert!(run.raw_in.len() > 300, "{} raw frames", run.raw_in.len());
    assert_eq!(run.raw_out, run.raw_in, "one Sent per raw frame, in order");
    assert_eq!(run.drops, 0);
    assert_eq!(run.completions, run.want);
}

#[test]
fn a_raw_frame_s_sent_entry_waits_for_room_and_is_never_dropped() {
    // The port mostly stalled: the FIFO fills, answers' entries are dropped and counted, and the
    // raw frames wait (`raw_room` low) instead.
    let run = random_run_with(0x7ac0_0300, 3000, 3, 5, true);
    assert!(run.drops > 0, "the FIFO never filled");
    assert!(run.raw_in.len() > 20, "{} raw frames", run.raw_in.len());
    assert_eq!(run.raw_out, run.raw_in, "one Sent per raw frame, in order");
}

#[test]
fn every_answer_becomes_the_abis_completion_entry_as_the_rules_say() {
    for seed in 1..=6u64 {
        let run = random_run(0x7ac0_0000 + seed, 3000, 3, 90);
        assert_eq!(run.drops, 0, "seed {seed}");
        assert_eq!(run.unmatched, run.model_unmatched, "seed {seed}");
        assert!(
            run.want.len() > 100,
            "seed {seed}: {} completions",
            run.want.len()
        );
        assert_eq!(run.completions.len(), run.want.len(), "seed {seed}");
        for (i, (got, want)) in run.completions.iter().zip(&run.want).enumerate() {
            assert_eq!(got, want, "seed {seed}: completion {i}");
        }
    }
}

#[test]
fn back_to_back_answers_for_one_lock_are_taken_in_order() {
    // One answer every clock: a grant repeated, then done, then answers after the entry is gone.
    let run = random_run(0x7ac0_0100, 4000, 1, 100);
    assert_eq!(run.drops, 0);
    assert_eq!(run.unmatched, run.model_unmatched);
    assert_eq!(run.completions, run.want);
}

#[test]
fn a_full_completion_fifo_drops_and_counts() {
    let mut u = tracker();
    u.cpl_ready.next = false;
    cycle(&mut u, clock); // (`room` comes from a register)
                          // Eight descriptors, then a grant and a done for each: sixteen completions fill the FIFO,
                          // and the last answers find it full.
    for i in 0..ENTRIES as u64 {
        u.sent_valid.next = true;
        u.sent_lock_id.next = (10 + i).to_bits();
        u.sent_seq.next = (1 + i).to_bits();
        settle(&mut u);
        assert!(u.room.val());
        cycle(&mut u, clock);
    }
    u.sent_valid.next = false;
    settle(&mut u);
    assert!(!u.room.val(), "eight entries, all in use");
    let mut answers = Vec::new();
    for i in 0..ENTRIES as u64 {
        answers.push((FrameType::LockGranted, 10 + i));
        answers.push((FrameType::WriteDone, 10 + i));
    }
    answers.push((FrameType::LockGranted, 99)); // unknown: counted, not queued
    for (ty, id) in answers {
        u.ans_valid.next = true;
        u.ans_ty.next = (ty as u64).to_bits();
        u.ans_lock_id.next = id.to_bits();
        u.ans_arg.next = 0u64.to_bits();
        cycle(&mut u, clock);
    }
    u.ans_valid.next = false;
    for _ in 0..4 {
        cycle(&mut u, clock);
    }
    settle(&mut u);
    assert_eq!(u.cpl_drops.val().to_u64(), 0, "sixteen fit");
    assert_eq!(u.unmatched.val().to_u64(), 1);
    assert!(u.room.val(), "every entry freed");
    // One more descriptor and its grant: no room in the FIFO.
    u.sent_valid.next = true;
    u.sent_lock_id.next = 50u64.to_bits();
    cycle(&mut u, clock);
    u.sent_valid.next = false;
    u.ans_valid.next = true;
    u.ans_ty.next = (FrameType::LockGranted as u64).to_bits();
    u.ans_lock_id.next = 50u64.to_bits();
    cycle(&mut u, clock);
    u.ans_valid.next = false;
    for _ in 0..4 {
        cycle(&mut u, clock);
    }
    settle(&mut u);
    assert_eq!(u.cpl_drops.val().to_u64(), 1);
}

#[test]
fn the_send_path_hears_its_locks_grant_or_rejection() {
    for (ty, granted, rejected) in [
        (FrameType::LockGranted, true, false),
        (FrameType::LockRejected, false, true),
    ] {
        let mut u = tracker();
        u.cpl_ready.next = true;
        u.wait_lock_id.next = 7u64.to_bits();
        cycle(&mut u, clock); // (`room` comes from a register)
        for (id, seq) in [(6u64, 1u64), (7, 2)] {
            u.sent_valid.next = true;
            u.sent_lock_id.next = id.to_bits();
            u.sent_seq.next = seq.to_bits();
            cycle(&mut u, clock);
        }
        u.sent_valid.next = false;
        // An answer for the other lock first: nothing for the send path.
        let mut pulses = Vec::new();
        for (t, id) in [(0u64, 6u64), (10, 7)] {
            u.ans_valid.next = true;
            u.ans_ty.next = (ty as u64).to_bits();
            u.ans_lock_id.next = id.to_bits();
            u.ans_arg.next = 1u64.to_bits();
            for k in 0..10 {
                settle(&mut u);
                if u.granted.val() || u.rejected.val() {
                    pulses.push((t + k, u.granted.val(), u.rejected.val()));
                }
                cycle(&mut u, clock);
                u.ans_valid.next = false;
            }
        }
        assert_eq!(pulses, vec![(12, granted, rejected)], "{ty:?}");
    }
}

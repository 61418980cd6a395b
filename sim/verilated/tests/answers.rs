//! The verilated answer path against the software target's encoder, on a long random run:
//! answers in bursts and gaps, the stream stalled at random, every frame that leaves byte for byte
//! the frame the software target sends for that answer, in order; dropped answers only when the
//! FIFO was full, and counted.

use specmirror_abi::{encode, FrameType, Header};
use specmirror_hdl::bench::Rng;
use specmirror_verilated::{AnswerPort as P, VerilatedAnswerEmitter};

/// Clocks per run; `SPECMIRROR_HDL_CYCLES` raises it.
fn cycles() -> u64 {
    std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

#[test]
fn a_million_clocks_of_answers_match_the_software_frames() {
    let generation = 0x0000_0007u32;
    let mut m = VerilatedAnswerEmitter::new();
    m.set(P::Generation, generation as u64);
    let mut r = Rng(0xa115_0e75);
    let types = [
        FrameType::LockGranted,
        FrameType::LockRejected,
        FrameType::WriteDone,
        FrameType::WriteFailed,
    ];
    // Answers offered and not dropped, in order; the bytes that left.
    let mut queued: std::collections::VecDeque<Vec<u8>> = Default::default();
    let (mut frame, mut frames, mut offered) = (Vec::new(), 0u64, 0u64);
    let n = cycles();
    for t in 0..n {
        // Phases of bursts (an answer most clocks) and lulls, so the FIFO fills and drains.
        let busy = (t / 5000) % 3 == 0;
        let offer = t < n - 2000 && r.below(if busy { 8 } else { 40 }) == 0;
        let ty = types[r.below(4) as usize];
        let (seq, lock_id) = (r.next_u64(), r.next_u64());
        let arg = match ty {
            FrameType::LockRejected => 1 + r.below(5),
            FrameType::WriteFailed => 1 + r.below(120),
            _ => 0,
        };
        m.set(P::AnsValid, offer as u64);
        m.set(P::AnsTy, ty as u64);
        m.set(P::AnsSeq, seq);
        m.set(P::AnsLockId, lock_id);
        m.set(P::AnsArg, arg);
        m.set(P::TxReady, (r.below(4) != 0) as u64);
        m.eval();
        let dropped_before = m.get(P::Dropped);
        if m.get(P::TxValid) == 1 && m.get(P::TxReady) == 1 {
            frame.extend_from_slice(&m.get(P::TxData).to_le_bytes());
            if m.get(P::TxLast) == 1 {
                let want = queued
                    .pop_front()
                    .expect("a frame for an answer never queued");
                assert_eq!(frame, want, "frame {frames} at clock {t}");
                frame.clear();
                frames += 1;
            }
        }
        m.tick();
        if offer {
            offered += 1;
            if m.get(P::Dropped) == dropped_before {
                let mut h = Header::new(ty);
                h.generation = generation;
                h.seq = seq;
                h.lock_id = lock_id;
                h.arg = arg;
                queued.push_back(encode(&h, &[]));
            }
        }
    }
    let dropped = m.get(P::Dropped);
    assert!(queued.is_empty(), "{} answers never left", queued.len());
    assert_eq!(frames + dropped, offered);
    assert!(frames > 10_000, "{frames} frames");
    assert!(dropped > 0, "the bursts never filled the FIFO");
    eprintln!("{n} clocks: {frames} answer frames, {dropped} dropped while the FIFO was full");
}

/// The rust-hdl simulation and the Verilator model agree on every output, every clock.
#[test]
fn rust_hdl_and_verilator_agree_clock_by_clock() {
    use rust_hdl::prelude::*;
    use specmirror_hdl::bench::{cycle, settle};
    use specmirror_hdl::AnswerEmitter;
    fn clock(u: &mut AnswerEmitter) -> &mut Signal<In, Clock> {
        &mut u.clock
    }
    let mut h = specmirror_hdl::answer_emitter::tests_support::connected();
    h.connect_all();
    let mut v = VerilatedAnswerEmitter::new();
    let mut r = Rng(0x010c_57e9);
    h.generation.next = 9u64.to_bits();
    v.set(P::Generation, 9);
    for t in 0..3000u64 {
        let offer = r.below(3) == 0;
        let ty = 4 + r.below(5);
        let (seq, lock_id, arg) = (r.next_u64(), r.next_u64(), r.next_u64());
        let ready = r.below(4) != 0;
        h.ans_valid.next = offer;
        h.ans_ty.next = ty.to_bits();
        h.ans_seq.next = seq.to_bits();
        h.ans_lock_id.next = lock_id.to_bits();
        h.ans_arg.next = arg.to_bits();
        h.tx_ready.next = ready;
        settle(&mut h);
        for (p, x) in [
            (P::AnsValid, offer as u64),
            (P::AnsTy, ty),
            (P::AnsSeq, seq),
            (P::AnsLockId, lock_id),
            (P::AnsArg, arg),
            (P::TxReady, ready as u64),
        ] {
            v.set(p, x);
        }
        v.eval();
        let hv = [
            h.tx_valid.val() as u64,
            h.tx_data.val().to_u64(),
            h.tx_last.val() as u64,
            h.dropped.val().to_u64(),
        ];
        let vv = [
            v.get(P::TxValid),
            v.get(P::TxData),
            v.get(P::TxLast),
            v.get(P::Dropped),
        ];
        assert_eq!(
            hv, vv,
            "clock {t}: rust-hdl (valid, data, last, dropped) vs Verilator"
        );
        cycle(&mut h, clock);
        v.tick();
    }
}

//! The frame parser in Verilator: cycle-by-cycle agreement with rust-hdl's simulation, and a long
//! random stream in which every good frame parses and every corrupted one is dropped and counted.

use rust_hdl::prelude::*;
use specmirror_abi::{encode, Flags, FrameType, Header};
use specmirror_hdl::bench::{cycle, settle, Rng};
use specmirror_hdl::FrameParser;
use specmirror_verilated::{ParserPort as P, VerilatedParser};

/// A random well-formed frame, as words; its header for checking.
fn random_frame(r: &mut Rng) -> (Vec<u64>, Header) {
    let types = [
        FrameType::Lock,
        FrameType::Data,
        FrameType::LockGranted,
        FrameType::WriteDone,
        FrameType::Heartbeat,
    ];
    let ty = types[(r.next_u64() % types.len() as u64) as usize];
    let mut h = Header::new(ty);
    h.seq = r.next_u64();
    h.lock_id = r.next_u64() >> 3;
    h.offset = r.next_u64() >> 5;
    h.generation = r.next_u64() as u32;
    h.ack_lock = r.next_u64();
    h.ack_seq = r.next_u64();
    let payload: Vec<u8> = if ty == FrameType::Data {
        h.flags = Flags((r.next_u64() & 0b111) as u16);
        (0..1 + r.next_u64() % 300)
            .map(|_| r.next_u64() as u8)
            .collect()
    } else {
        h.arg = r.next_u64() & 0xffff;
        Vec::new()
    };
    let bytes = encode(&h, &payload);
    h.payload_len = payload.len() as u32;
    let words = bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (words, h)
}

/// A stream of frames, about one in eight with one flipped bit; words with their `last` flags.
fn stream(r: &mut Rng, frames: usize) -> (Vec<(u64, bool)>, Vec<Option<Header>>) {
    let mut words = Vec::new();
    let mut expect = Vec::new();
    for _ in 0..frames {
        let (mut f, h) = random_frame(r);
        let corrupt = r.next_u64().is_multiple_of(8);
        if corrupt {
            let w = (r.next_u64() % f.len() as u64) as usize;
            f[w] ^= 1 << (r.next_u64() % 64);
        }
        let n = f.len();
        words.extend(f.into_iter().enumerate().map(|(i, w)| (w, i + 1 == n)));
        expect.push(if corrupt { None } else { Some(h) });
    }
    (words, expect)
}

#[test]
fn rust_hdl_and_verilator_agree_on_the_parser() {
    let mut hdl: FrameParser = {
        let mut u = specmirror_hdl::frame_parser::tests_support::connected();
        u.connect_all();
        u
    };
    let mut ver = VerilatedParser::new();
    let mut r = Rng(0xfeed_beef);
    let (words, _) = stream(&mut r, 300);
    let mut i = 0;
    let mut t = 0u64;
    while i < words.len() {
        let idle = r.next_u64().is_multiple_of(5);
        let (w, last) = words[i];
        hdl.rx_valid.next = !idle;
        hdl.rx_data.next = w.to_bits();
        hdl.rx_last.next = last;
        ver.set(P::RxValid, !idle as u64);
        ver.set(P::RxData, w);
        ver.set(P::RxLast, last as u64);
        settle(&mut hdl);
        ver.eval();
        let pairs = [
            (P::HdrValid, hdl.hdr_valid.val() as u64),
            (P::PayValid, hdl.pay_valid.val() as u64),
            (P::FrameOk, hdl.frame_ok.val() as u64),
            (P::FrameBad, hdl.frame_bad.val() as u64),
            (P::BadCount, hdl.bad_count.val().to_u64()),
            (P::Ty, hdl.ty.val().to_u64()),
            (P::Seq, hdl.seq.val().to_u64()),
            (P::LockId, hdl.lock_id.val().to_u64()),
            (P::PayloadLen, hdl.payload_len.val().to_u64()),
        ];
        for (p, want) in pairs {
            assert_eq!(ver.get(p), want, "cycle {t}: {p:?} (Verilator vs rust-hdl)");
        }
        if hdl.pay_valid.val() {
            assert_eq!(
                ver.get(P::PayData),
                hdl.pay_data.val().to_u64(),
                "cycle {t}"
            );
        }
        cycle(&mut hdl, |u| &mut u.clock);
        ver.tick();
        if !idle {
            i += 1;
        }
        t += 1;
    }
}

#[test]
fn a_million_cycles_of_frames_good_and_corrupted() {
    let cycles: u64 = std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .map(|s| s.parse().expect("SPECMIRROR_HDL_CYCLES is a number"))
        .unwrap_or(1_000_000);
    let mut ver = VerilatedParser::new();
    let mut r = Rng(0x5eed_1234);
    let (mut ok, mut bad, mut frames) = (0u64, 0u64, 0u64);
    // Verdicts come one per frame, in frame order (a broken header is judged before its frame
    // ends, a CRC a clock after it): match them against what was sent, in order.
    let mut pending: std::collections::VecDeque<Option<Header>> = Default::default();
    while ver.cycles() < cycles {
        let (words, expect) = stream(&mut r, 200);
        pending.extend(expect);
        let mut i = 0;
        let mut drain = 0;
        while i < words.len() || drain < 3 {
            let idle = i >= words.len() || r.next_u64().is_multiple_of(9);
            if i >= words.len() {
                drain += 1;
            }
            let (w, last) = words.get(i).copied().unwrap_or((0, false));
            ver.set(P::RxValid, !idle as u64);
            ver.set(P::RxData, w);
            ver.set(P::RxLast, last as u64);
            ver.eval();
            if ver.get(P::FrameOk) == 1 {
                let h = pending
                    .pop_front()
                    .expect("a verdict for a frame")
                    .expect("a frame accepted where a corrupted one was sent");
                assert_eq!(ver.get(P::Seq), h.seq);
                assert_eq!(ver.get(P::LockId), h.lock_id);
                assert_eq!(ver.get(P::Ty), h.ty as u64);
                assert_eq!(ver.get(P::PayloadLen), h.payload_len as u64);
                ok += 1;
            }
            if ver.get(P::FrameBad) == 1 {
                let e = pending.pop_front().expect("a verdict for a frame");
                assert!(e.is_none(), "a good frame was dropped");
                bad += 1;
            }
            if !idle && last {
                frames += 1;
            }
            ver.tick();
            if !idle {
                i += 1;
            }
        }
    }
    assert!(
        pending.is_empty(),
        "{} frames got no verdict",
        pending.len()
    );
    assert_eq!(ok + bad, frames, "every frame got exactly one verdict");
    assert_eq!(ver.get(P::BadCount), bad);
    assert!(bad > 100 && ok > 1000, "ok {ok}, bad {bad}");
    eprintln!(
        "{} cycles: {frames} frames, {ok} accepted, {bad} dropped",
        ver.cycles()
    );
}

//! Answers recorded, then repeated for a repeated lock command or DATA frame exactly as the
//! software target repeats them.

use rust_hdl::prelude::*;
use specmirror_abi::{FrameType, RejectReason};

use super::AnswerCache;
use crate::bench::{cycle, settle};

struct Tb {
    u: AnswerCache,
    out: Vec<(u8, u64, u64, u64)>, // type, seq, lock id, arg
}

impl Tb {
    fn new() -> Tb {
        let mut u = super::tests_support::connected();
        u.connect_all();
        u.generation.next = 7u64.to_bits();
        u.ans_ready.next = true;
        settle(&mut u);
        Tb { u, out: Vec::new() }
    }

    fn tick(&mut self) {
        settle(&mut self.u);
        if self.u.ans_valid.val() && self.u.ans_ready.val() {
            self.out.push((
                self.u.ans_ty.val().to_u64() as u8,
                self.u.ans_seq.val().to_u64(),
                self.u.ans_lock_id.val().to_u64(),
                self.u.ans_arg.val().to_u64(),
            ));
        }
        cycle(&mut self.u, |u| &mut u.clock);
        self.u.rec_valid.next = false;
        self.u.q_valid.next = false;
    }

    fn record(&mut self, ty: FrameType, seq: u64, lock_id: u64, arg: u64) {
        self.u.rec_valid.next = true;
        self.u.rec_ty.next = (ty as u64).to_bits();
        self.u.rec_seq.next = seq.to_bits();
        self.u.rec_lock_id.next = lock_id.to_bits();
        self.u.rec_arg.next = arg.to_bits();
        self.tick();
    }

    /// The answers a query for `lock_id` brings.
    fn query(&mut self, lock_id: u64, data: bool) -> Vec<(u8, u64, u64, u64)> {
        self.out.clear();
        self.u.q_valid.next = true;
        self.u.q_lock_id.next = lock_id.to_bits();
        self.u.q_data.next = data;
        for _ in 0..8 {
            self.tick();
        }
        std::mem::take(&mut self.out)
    }
}

const GRANTED: u8 = FrameType::LockGranted as u8;
const DONE: u8 = FrameType::WriteDone as u8;
const REJECTED: u8 = FrameType::LockRejected as u8;
const FAILED: u8 = FrameType::WriteFailed as u8;

#[test]
fn repeats_each_answer_as_the_software_target_does() {
    let mut t = Tb::new();
    t.record(FrameType::LockGranted, 10, 1, 0);
    t.record(FrameType::LockGranted, 11, 2, 0);
    t.record(FrameType::WriteDone, 11, 2, 0);
    let busy = RejectReason::BusyTimeout as u64;
    t.record(FrameType::LockRejected, 12, 3, busy);
    t.record(FrameType::LockGranted, 13, 4, 0);
    t.record(FrameType::WriteFailed, 13, 4, 5);
    // Held: granted again. Done: granted and done. Rejected, failed: as they were.
    assert_eq!(t.query(1, false), vec![(GRANTED, 10, 1, 0)]);
    assert_eq!(
        t.query(2, false),
        vec![(GRANTED, 11, 2, 0), (DONE, 11, 2, 0)]
    );
    assert_eq!(
        t.query(2, true),
        vec![(GRANTED, 11, 2, 0), (DONE, 11, 2, 0)]
    );
    assert_eq!(t.query(3, false), vec![(REJECTED, 12, 3, busy)]);
    assert_eq!(t.query(4, true), vec![(FAILED, 13, 4, 5)]);
    // A repeated DATA frame for a held lock, and a lock never decided: nothing.
    assert_eq!(t.query(1, true), vec![]);
    assert_eq!(t.query(5, false), vec![]);
    assert_eq!(t.u.repeated.val().to_u64(), 7);
    assert_eq!(t.u.missed.val().to_u64(), 1);
}

#[test]
fn another_lock_or_another_session_is_not_answered() {
    let mut t = Tb::new();
    t.record(FrameType::LockGranted, 10, 1, 0);
    // 257 takes the entry of 1.
    t.record(FrameType::LockGranted, 20, 257, 0);
    assert_eq!(t.query(1, false), vec![]);
    assert_eq!(t.query(257, false), vec![(GRANTED, 20, 257, 0)]);
    // A new session: the old answers are not this session's.
    t.u.generation.next = 8u64.to_bits();
    assert_eq!(t.query(257, false), vec![]);
    assert_eq!(t.u.missed.val().to_u64(), 2);
}

#[test]
fn a_query_while_busy_is_counted_and_the_answer_waits_for_room() {
    let mut t = Tb::new();
    t.record(FrameType::WriteDone, 11, 2, 0);
    t.u.ans_ready.next = false;
    t.u.q_valid.next = true;
    t.u.q_lock_id.next = 2u64.to_bits();
    t.tick();
    t.u.q_valid.next = true; // a second query while the first is looked up
    for _ in 0..10 {
        t.tick();
    }
    assert!(t.out.is_empty());
    t.u.ans_ready.next = true;
    for _ in 0..4 {
        t.tick();
    }
    assert_eq!(t.out, vec![(GRANTED, 11, 2, 0), (DONE, 11, 2, 0)]);
    assert_eq!(t.u.missed.val().to_u64(), 1);
}

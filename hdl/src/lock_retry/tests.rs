//! LOCK frames from the software encoder through the parser into the lock table.

use rust_hdl::prelude::*;
use specmirror_abi::{encode, FrameType, Header, RejectReason};

use super::LockRetry;
use crate::bench::{cycle, settle};

type Rx = LockRetry<16, 4>;

struct Tb {
    u: Rx,
    decs: Vec<(bool, u64, u64, u64)>, // granted, reason, lock id, slot
}

impl Tb {
    fn new() -> Tb {
        let mut u = super::tests_support::connected::<16, 4>();
        u.connect_all();
        u.generation.next = 1u64.to_bits();
        u.region_count.next = 1024u64.to_bits();
        u.retry_backoff.next = 8u64.to_bits();
        u.retry_limit.next = 3u64.to_bits();
        settle(&mut u);
        Tb {
            u,
            decs: Vec::new(),
        }
    }

    fn tick(&mut self) {
        settle(&mut self.u);
        cycle(&mut self.u, |u| &mut u.clock);
        self.u.rel_valid.next = false;
        settle(&mut self.u);
        if self.u.dec_valid.val() {
            self.decs.push((
                self.u.dec_granted.val(),
                self.u.dec_reason.val().to_u64(),
                self.u.dec_lock_id.val().to_u64(),
                self.u.dec_slot.val().to_u64(),
            ));
        }
    }

    /// Streams the words of `frame`, one per clock.
    fn send(&mut self, frame: &[u8]) {
        let words: Vec<u64> = frame
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for (i, w) in words.iter().enumerate() {
            self.u.rx_valid.next = true;
            self.u.rx_data.next = (*w).to_bits();
            self.u.rx_last.next = i + 1 == words.len();
            self.tick();
        }
        self.u.rx_valid.next = false;
        self.u.rx_last.next = false;
    }

    fn idle(&mut self, n: usize) {
        for _ in 0..n {
            self.tick();
        }
    }

    fn decision(&self, lock_id: u64) -> Option<(bool, u64, u64, u64)> {
        self.decs.iter().copied().find(|d| d.2 == lock_id)
    }
}

fn lock(lock_id: u64, seq: u64, first: u64, count: u64) -> Vec<u8> {
    let mut h = Header::new(FrameType::Lock);
    h.generation = 1;
    h.lock_id = lock_id;
    h.seq = seq;
    h.offset = first;
    h.arg = count;
    encode(&h, &[])
}

#[test]
fn lock_frames_from_the_encoder_are_granted_in_order() {
    let mut t = Tb::new();
    t.send(&lock(1, 10, 0, 2));
    t.send(&lock(2, 11, 1, 2));
    t.send(&lock(3, 12, 100, 1));
    t.idle(60);
    let a = t.decision(1).expect("lock 1 decided");
    assert!(a.0, "{a:?}");
    assert!(t.decision(3).expect("lock 3 decided").0);
    assert_eq!(t.decision(2), None, "lock 2 overlaps the held lock 1");
    t.u.rel_valid.next = true;
    t.u.rel_slot.next = a.3.to_bits();
    t.idle(40);
    assert!(t.decision(2).expect("lock 2 decided after the release").0);
    assert_eq!(t.u.frames_bad.val().to_u64(), 0);
    assert_eq!(t.u.lock_drops.val().to_u64(), 0);
}

#[test]
fn a_corrupted_lock_frame_never_reaches_the_table() {
    let mut t = Tb::new();
    let mut bad = lock(1, 70, 5, 1);
    bad[40] ^= 0x10; // the region, under the CRC
    t.send(&bad);
    t.send(&lock(1, 70, 5, 1));
    t.idle(60);
    assert_eq!(t.u.frames_bad.val().to_u64(), 1);
    assert_eq!(t.decs.len(), 1, "{:?}", t.decs);
    assert!(t.decision(1).expect("the good copy after it").0);
}

#[test]
fn other_frames_and_implicit_locks_are_not_lock_requests() {
    let mut t = Tb::new();
    let mut h = Header::new(FrameType::Heartbeat);
    h.lock_id = 5;
    t.send(&encode(&h, &[]));
    let mut d = Header::new(FrameType::Data);
    d.lock_id = 6;
    d.flags = specmirror_abi::Flags::IMPLICIT_LOCK;
    t.send(&encode(&d, &[1u8; 16]));
    t.idle(60);
    assert!(t.decs.is_empty(), "{:?}", t.decs);
}

#[test]
fn regions_beyond_32_bits_are_rejected_as_out_of_range() {
    let mut t = Tb::new();
    t.send(&lock(1, 90, 1 << 32, 1));
    t.send(&lock(2, 91, 0, 1 << 33));
    t.idle(60);
    for id in [1, 2] {
        let d = t.decision(id).expect("decided");
        assert!(!d.0 && d.1 == RejectReason::OutOfRange as u64, "{d:?}");
    }
}

#[test]
fn back_to_back_locks_wait_or_are_counted_never_lost_silently() {
    let mut t = Tb::new();
    // Fill the table with held locks so that the input stalls, then keep sending.
    for i in 0..16u64 {
        t.send(&lock(1 + i, 100 + i, i * 4, 1));
    }
    t.idle(60);
    for i in 0..4u64 {
        t.send(&lock(17 + i, 200 + i, 500 + i, 1));
    }
    t.idle(60);
    let decided = (17..21).filter(|id| t.decision(*id).is_some()).count() as u64;
    assert_eq!(decided, 0, "the table is full of held locks");
    // One waits at the table's input, one in the request register; the third was dropped for
    // want of room and the fourth, now ahead of the lock order, too: both counted.
    assert_eq!(t.u.lock_drops.val().to_u64(), 1);
    assert_eq!(t.u.lock_ahead.val().to_u64(), 1);
    // The source sends them again once the table has room: in order, each taken once.
    for id in 1..=4 {
        t.u.rel_valid.next = true;
        t.u.rel_slot.next = t.decision(id).unwrap().3.to_bits();
        t.tick();
    }
    t.idle(60);
    for i in 0..4u64 {
        t.send(&lock(17 + i, 200 + i, 500 + i, 1));
    }
    t.idle(200);
    for id in 17..21 {
        assert!(t.decision(id).is_some(), "lock {id} decided");
    }
    assert_eq!(
        t.decs.iter().filter(|d| d.2 == 17).count(),
        1,
        "a repeat is not a new lock"
    );
}

#[test]
fn locks_are_taken_in_lock_id_order_and_repeats_are_not_locks() {
    let mut t = Tb::new();
    t.send(&lock(2, 11, 10, 1)); // ahead of lock 1: dropped
    t.send(&lock(1, 10, 0, 1));
    t.send(&lock(1, 10, 0, 1)); // a repeat
    t.send(&lock(3, 12, 20, 1)); // ahead of the missing 2: dropped
    t.idle(60);
    assert_eq!(t.decs.len(), 1, "{:?}", t.decs);
    assert!(t.decision(1).unwrap().0);
    assert_eq!(t.u.lock_ahead.val().to_u64(), 2);
    assert_eq!(t.u.lock_repeats.val().to_u64(), 1);
    t.send(&lock(2, 11, 10, 1));
    t.send(&lock(3, 12, 20, 1));
    t.idle(60);
    assert!(t.decision(2).unwrap().0 && t.decision(3).unwrap().0);
    // The source settled everything below 9 (it gave up on 4..8): lock 9 is next.
    let mut h = Header::decode(&lock(9, 19, 30, 1)).unwrap();
    h.ack_lock = 9;
    t.send(&encode(&h, &[]));
    t.idle(60);
    assert!(t.decision(9).expect("taken after the watermark").0);
    // A new session starts again at lock 1.
    t.u.clear_barriers.next = true;
    t.tick();
    t.u.clear_barriers.next = false;
    t.send(&lock(1, 50, 40, 1));
    t.idle(60);
    assert_eq!(t.decs.iter().filter(|d| d.2 == 1).count(), 2);
}

/// A LOCK frame carrying the source's watermark.
fn lock_acked(lock_id: u64, seq: u64, first: u64, ack_lock: u64) -> Vec<u8> {
    let mut h = Header::decode(&lock(lock_id, seq, first, 1)).unwrap();
    h.ack_lock = ack_lock;
    encode(&h, &[])
}

/// The lock order is compared in 32-bit halves: ids and watermarks on both sides of 2^32.
#[test]
fn the_lock_order_holds_across_the_32_bit_boundary() {
    const B: u64 = 1 << 32;
    let mut t = Tb::new();
    // The watermark moves next_lock to 2^32 - 1; a lock below it is a repeat.
    t.send(&lock_acked(B - 2, 1, 0, B - 1));
    t.send(&lock_acked(B - 1, 2, 1, B - 1));
    // Same high half, low half ahead: dropped. Then 2^32 itself: the increment carried.
    t.send(&lock_acked(B + 1, 3, 2, B - 1));
    t.send(&lock_acked(B, 4, 3, B - 1));
    t.send(&lock_acked(B + 1, 5, 4, 0));
    // A watermark below next_lock changes nothing: 2^32 + 1 is a repeat now.
    t.send(&lock_acked(B + 1, 5, 4, 7));
    t.idle(60);
    let ids: Vec<u64> = t.decs.iter().map(|d| d.2).collect();
    assert_eq!(ids, vec![B - 1, B, B + 1], "{:?}", t.decs);
    assert!(t.decs.iter().all(|d| d.0), "{:?}", t.decs);
    assert_eq!(t.u.lock_ahead.val().to_u64(), 1);
    assert_eq!(t.u.lock_repeats.val().to_u64(), 2);
    // A watermark with a higher high half and a lower low half (2 * 2^32 + 0 against
    // 2^32 + 2): next_lock moves up to it; 2^32 + 2 is settled, so a repeat.
    t.send(&lock_acked(B + 2, 6, 5, 2 * B));
    t.send(&lock_acked(2 * B, 7, 6, 2 * B));
    t.idle(60);
    assert_eq!(
        t.decs.last().map(|d| (d.0, d.2)),
        Some((true, 2 * B)),
        "{:?}",
        t.decs
    );
    assert_eq!(t.decs.len(), 4, "{:?}", t.decs);
    assert_eq!(t.u.lock_repeats.val().to_u64(), 3);
    assert_eq!(t.u.frames_bad.val().to_u64(), 0);
}

//! The data buffer inside the target path (`TargetPath`), driven by frames from the software
//! encoder, with the host model checking at every clock that no write leaves before its lock is
//! held or outside the regions it holds.

use specmirror_abi::{encode, Flags, FrameType, Header, RejectReason};

use crate::target_path::host::{
    abort, assert_same_answers, data, lock, pattern, software, GENERATION, REGION, REGIONS,
};
use crate::target_path::tests::host;

const GRANTED: u8 = FrameType::LockGranted as u8;
const REJECTED: u8 = FrameType::LockRejected as u8;
const DONE: u8 = FrameType::WriteDone as u8;
const FAILED: u8 = FrameType::WriteFailed as u8;

#[test]
fn data_waits_for_its_lock_however_long_the_lock_waits() {
    let mut h = host(1);
    // The target's own user holds regions 2..4: the lock on region 3 waits.
    h.inp.local_hold = true;
    h.inp.local_first = 2;
    h.inp.local_end = 4;
    let bytes = pattern(1, 1000);
    h.send(&data(1, 10, 3 * REGION + 8, &bytes, Flags::NONE));
    h.send(&lock(1, 10, 3, 1));
    h.run(3000);
    assert!(h.writes.is_empty(), "written while the lock waits");
    assert!(h.answers_of(1).is_empty());
    h.inp.local_hold = false;
    h.settle_down(300);
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0), (DONE, 0)]);
    assert_eq!(h.writes.len(), 1);
    assert_eq!(&h.volume[(3 * REGION + 8) as usize..][..1000], &bytes[..]);
}

#[test]
fn data_outside_its_lock_is_never_written_and_its_lock_is_rejected_as_the_software_does() {
    let frames = vec![
        lock(1, 10, 0, 1),
        data(1, 10, REGION - 8, &pattern(2, 16), Flags::NONE), // runs into region 1
        lock(2, 11, 5, 1),
        data(2, 11, 5 * REGION, &pattern(3, 64), Flags::NONE),
    ];
    let (sw, _) = software(&frames);
    let mut h = host(2);
    for f in &frames {
        h.send(f);
    }
    h.settle_down(300);
    assert_same_answers(&h.answers, &sw, "data outside its lock");
    assert_eq!(
        h.answers_of(1),
        vec![(GRANTED, 0), (REJECTED, RejectReason::OutOfRange as u64)]
    );
    assert_eq!(h.out.data_violations, 1);
    assert_eq!(h.writes.len(), 1, "only lock 2's write");
    assert_eq!(h.out.held, 0, "lock 1 released");
}

#[test]
fn data_that_names_another_write_is_dropped_and_the_right_data_is_written() {
    let mut h = host(3);
    h.send(&lock(1, 10, 0, 1));
    h.send(&data(1, 99, 0, &pattern(4, 64), Flags::NONE)); // another write's sequence number
    h.settle_down(300);
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0)]);
    assert_eq!(h.out.data_violations, 1);
    assert!(h.writes.is_empty());
    let bytes = pattern(5, 64);
    h.send(&data(1, 10, 0, &bytes, Flags::NONE));
    h.settle_down(300);
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0), (DONE, 0)]);
    assert_eq!(&h.volume[..64], &bytes[..]);
}

#[test]
fn a_failed_write_answers_write_failed_and_bars_later_writes_until_it_is_reissued() {
    let mut h = host(4);
    // The host completes write 10 late, with EIO; lock 2 (write 11) waits for it meanwhile.
    h.done_delay = 400;
    h.fail_next = 5;
    h.send(&lock(1, 10, 0, 2));
    h.send(&data(1, 10, 0, &pattern(6, 128), Flags::NONE));
    h.send(&lock(2, 11, 1, 1));
    h.settle_down(600);
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0), (FAILED, 5)]);
    assert_eq!(
        h.answers_of(2),
        vec![(REJECTED, RejectReason::Ordering as u64)],
        "write 11 may not land before write 10's retry"
    );
    // Write 10 again (a new lock id, the same sequence number), then 11.
    h.done_delay = 20;
    h.send(&lock(3, 10, 0, 2));
    h.send(&data(3, 10, 0, &pattern(7, 128), Flags::NONE));
    h.send(&lock(4, 11, 1, 1));
    h.send(&data(4, 11, REGION, &pattern(8, 32), Flags::NONE));
    h.settle_down(600);
    assert_eq!(h.answers_of(3), vec![(GRANTED, 0), (DONE, 0)]);
    assert_eq!(h.answers_of(4), vec![(GRANTED, 0), (DONE, 0)]);
}

#[test]
fn a_repeated_data_frame_is_written_once_and_its_answers_repeated() {
    let mut h = host(5);
    let d = data(1, 10, 64, &pattern(9, 200), Flags::FUA);
    h.send(&lock(1, 10, 0, 1));
    h.send(&d);
    h.send(&d);
    h.settle_down(300);
    h.send(&d);
    h.settle_down(300);
    assert_eq!(h.writes.len(), 1);
    assert_eq!(
        h.answers_of(1),
        vec![(GRANTED, 0), (DONE, 0), (GRANTED, 0), (DONE, 0)],
        "the last copy, after the write, is answered from the cache"
    );
    assert!(h.out.data_repeats + h.out.data_expired <= 2);
}

#[test]
fn frames_the_hardware_does_not_take_are_dropped_and_counted_with_nothing_written() {
    let mut h = host(6);
    h.send(&lock(1, 10, 0, 4));
    // An implicit lock, a piece of a longer write, and a write longer than a slot.
    h.send(&data(2, 11, 0, &pattern(10, 64), Flags::IMPLICIT_LOCK));
    let mut piece = Header::decode(&data(1, 10, 0, &pattern(11, 64), Flags::NONE)).unwrap();
    piece.arg = specmirror_abi::data_piece_arg(0, 128);
    h.send(&encode(&piece, &pattern(11, 64)));
    let long = crate::data_buffer::SLOT_BYTES as usize + 8;
    h.send(&data(1, 10, 0, &pattern(12, long), Flags::NONE));
    h.settle_down(300);
    assert_eq!(h.out.data_drops, 3);
    assert!(h.writes.is_empty());
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0)]);
}

#[test]
fn frames_of_another_session_and_data_whose_lock_never_comes_are_dropped() {
    let mut h = host(7);
    h.inp.data_timeout = 500;
    let mut old = Header::decode(&lock(1, 10, 0, 1)).unwrap();
    old.generation = GENERATION - 1;
    h.send(&encode(&old, &[]));
    h.send(&data(9, 19, 0, &pattern(13, 64), Flags::NONE)); // lock 9 never comes
    h.settle_down(1500);
    assert_eq!(h.out.stale, 1);
    assert!(h.answers.is_empty());
    assert_eq!(h.out.data_expired, 1);
    // The buffer is free again: four writes in a row all go through.
    for i in 1..=4 {
        h.send(&lock(i, 10 + i, i, 1));
        h.send(&data(i, 10 + i, i * REGION, &pattern(i, 4096), Flags::NONE));
    }
    h.settle_down(600);
    assert_eq!(h.writes.len(), 4);
}

#[test]
fn a_granted_lock_whose_data_never_comes_is_revoked_and_its_abort_lifts_the_barrier() {
    let mut h = host(8);
    h.inp.grant_timeout = 400;
    h.send(&lock(1, 10, 2, 2));
    h.settle_down(700);
    assert_eq!(
        h.answers_of(1),
        vec![(GRANTED, 0), (REJECTED, RejectReason::BusyTimeout as u64)],
        "revoked, as the software target revokes it"
    );
    assert_eq!(h.out.locks_revoked, 1);
    assert_eq!(h.out.held, 0);
    // Its barrier: a later write over it may not land before write 10 is re-issued...
    h.send(&lock(2, 11, 3, 1));
    h.settle_down(300);
    assert_eq!(
        h.answers_of(2),
        vec![(REJECTED, RejectReason::Ordering as u64)]
    );
    // ...or given up: the source's ABORT lifts it.
    h.send(&abort(1, 10));
    h.send(&lock(3, 11, 3, 1));
    h.send(&data(3, 11, 3 * REGION, &pattern(14, 8), Flags::NONE));
    h.settle_down(300);
    assert_eq!(h.answers_of(3), vec![(GRANTED, 0), (DONE, 0)]);
}

#[test]
fn an_abort_releases_a_lock_held_without_its_data_and_is_not_answered() {
    let mut h = host(9);
    h.send(&lock(1, 10, 0, 2));
    h.send(&lock(2, 11, 1, 1)); // waits for lock 1
    h.settle_down(300);
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0)]);
    assert!(h.answers_of(2).is_empty());
    h.send(&abort(1, 10));
    h.send(&data(2, 11, REGION, &pattern(15, 100), Flags::NONE));
    h.settle_down(300);
    assert_eq!(
        h.answers_of(1),
        vec![(GRANTED, 0)],
        "an ABORT is not answered"
    );
    assert_eq!(h.answers_of(2), vec![(GRANTED, 0), (DONE, 0)]);
    assert_eq!(h.writes.len(), 1);
    assert_eq!(h.out.held, 0);
}

/// A copy of a write's data sent again as the write's WRITE_DONE crossed it on the wire (the
/// source's retransmission timer): answered from the cache, and its slot free again at once, not
/// after `data_timeout` clocks (four such copies would leave no room for fresh data).
#[test]
fn a_copy_sent_again_after_its_write_finished_leaves_its_slot_at_once() {
    let mut h = host(11);
    h.inp.data_timeout = 1_000_000;
    let d = data(1, 10, 0, &pattern(21, 4096), Flags::NONE);
    h.send(&lock(1, 10, 0, 1));
    h.send(&d);
    h.settle_down(300);
    assert_eq!(h.answers_of(1), vec![(GRANTED, 0), (DONE, 0)]);
    h.send(&d);
    h.settle_down(300);
    assert_eq!(
        h.answers_of(1),
        vec![(GRANTED, 0), (DONE, 0), (GRANTED, 0), (DONE, 0)]
    );
    assert_eq!(h.out.data_status & 0xff, 0, "every slot free");
    assert_eq!((h.out.data_repeats, h.out.data_expired), (1, 0));
    assert_eq!(h.writes.len(), 1);
}

/// Data waiting for a lock the table rejects is dropped with the rejection: the source sends it
/// again under the lock id it re-issues the lock with.
#[test]
fn data_waiting_for_a_rejected_lock_leaves_its_slot_at_once() {
    let mut h = host(12);
    h.inp.data_timeout = 1_000_000;
    h.send(&data(1, 10, 0, &pattern(22, 64), Flags::NONE));
    h.send(&lock(1, 10, REGIONS + 5, 1));
    h.settle_down(300);
    assert_eq!(
        h.answers_of(1),
        vec![(REJECTED, RejectReason::OutOfRange as u64)]
    );
    assert_eq!(h.out.data_status & 0xff, 0, "every slot free");
    assert_eq!((h.out.data_expired, h.out.data_repeats), (1, 0));
    assert!(h.writes.is_empty());
}

/// An ABORT reaches the table as a request for lock id 0, which the table rejects: that rejection
/// drops no data, not even data waiting for a lock id whose low 16 bits are 0 (the bits the
/// buffer compares), which is written once its lock is granted.
#[test]
fn an_abort_s_rejection_drops_no_waiting_data() {
    let mut h = host(13);
    let id = 1u64 << 16;
    let bytes = pattern(23, 64);
    // Lock ids below `id` are settled: the table takes `id` next.
    let mut d = Header::decode(&data(id, 10, 0, &bytes, Flags::NONE)).unwrap();
    d.ack_lock = id;
    h.send(&encode(&d, &bytes));
    h.send(&abort(7, 3));
    h.settle_down(300);
    assert_eq!(h.out.data_status & 0xff, 2, "the data waits for its lock");
    let mut l = Header::decode(&lock(id, 10, 0, 1)).unwrap();
    l.ack_lock = id;
    h.send(&encode(&l, &[]));
    h.settle_down(300);
    assert_eq!(h.answers_of(id), vec![(GRANTED, 0), (DONE, 0)]);
    assert_eq!(h.writes.len(), 1);
    assert_eq!((h.out.data_expired, h.out.data_repeats), (0, 0));
}

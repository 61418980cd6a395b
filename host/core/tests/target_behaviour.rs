//! The target side of the protocol, point by point.

mod harness;

use harness::*;
use specmirror_abi::ring::Mode;
use specmirror_abi::{FrameType, Header, RejectReason};
use specmirror_core::target::{TargetAction, TargetEvent};
use specmirror_core::{Frame, Regions};

fn lock_frame(p: &Pair, seq: u64, lock_id: u64, first: u64, count: u64) -> Frame {
    let mut h = Header::new(FrameType::Lock);
    h.generation = p.tgt.generation().unwrap();
    h.seq = seq;
    h.lock_id = lock_id;
    h.offset = first;
    h.arg = count;
    Frame::control(h)
}

fn data_frame(p: &Pair, seq: u64, lock_id: u64, offset: u64, len: usize, fill: u8) -> Frame {
    let mut h = Header::new(FrameType::Data);
    h.generation = p.tgt.generation().unwrap();
    h.seq = seq;
    h.lock_id = lock_id;
    h.offset = offset;
    Frame::new(h, vec![fill; len])
}

fn writes(actions: &[TargetAction]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, TargetAction::WriteVolume { .. }))
        .count()
}

#[test]
fn busy_lock_is_retried_with_growing_backoff_until_held() {
    let mut p = Pair::new(Mode::Speculative);
    assert!(p.tgt.try_lock_local(1, Regions { first: 0, count: 1 }));
    let a = p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    assert!(a
        .iter()
        .all(|x| !matches!(x, TargetAction::LockAcquired { .. })));
    let t1 = p.tgt.poll_timeout().unwrap();
    p.now = t1;
    let a = p.tgt.handle_timeout(p.now);
    assert!(a.is_empty());
    let t2 = p.tgt.poll_timeout().unwrap();
    assert!(t2 - t1 > t1, "backoff grows: {t1} then {}", t2 - t1);
    assert!(p.tgt.stats().lock_retries >= 1);
    p.now = t2;
    let a = p.tgt.unlock_local(1, p.now);
    assert!(a
        .iter()
        .any(|x| matches!(x, TargetAction::LockAcquired { .. })));
    assert!(a
        .iter()
        .any(|x| matches!(x, TargetAction::Send(f) if f.ty() == FrameType::LockGranted)));
}

#[test]
fn busy_lock_is_rejected_once_the_retry_budget_is_spent() {
    let mut p = Pair::new(Mode::Speculative);
    assert!(p.tgt.try_lock_local(1, Regions { first: 2, count: 1 }));
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 2, 1)));
    p.advance_to(5_000_000);
    let r = p.target_sent(FrameType::LockRejected);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].header.arg, RejectReason::BusyTimeout as u64);
    assert_eq!(p.tgt.poll_timeout(), None, "no more retries");
}

#[test]
fn data_never_lands_before_its_lock_is_held() {
    let mut p = Pair::new(Mode::Speculative);
    assert!(p.tgt.try_lock_local(1, Regions { first: 0, count: 1 }));
    // Data first (reordered ahead of its LOCK), then the LOCK, both while the region is busy.
    let a = p.tgt_event(TargetEvent::Frame(data_frame(&p, 1, 1, 10, 20, 7)));
    assert_eq!(writes(&a), 0);
    assert_eq!(p.tgt.buffered_bytes(), 20);
    let a = p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    assert_eq!(writes(&a), 0);
    let a = p.tgt.unlock_local(1, p.now);
    let acquired = a
        .iter()
        .position(|x| matches!(x, TargetAction::LockAcquired { .. }))
        .expect("lock taken");
    let written = a
        .iter()
        .position(|x| matches!(x, TargetAction::WriteVolume { .. }))
        .expect("data written");
    assert!(
        acquired < written,
        "the lock is held before the data goes to the volume"
    );
}

#[test]
fn early_data_beyond_the_buffer_is_dropped_not_written() {
    let mut p = Pair::new(Mode::Speculative);
    let big = (target_config().data_buffer + 1) as usize;
    let a = p.tgt_event(TargetEvent::Frame(data_frame(
        &p,
        1,
        1,
        0,
        big.min(16 << 10) * 3,
        1,
    )));
    assert_eq!(writes(&a), 0);
    assert_eq!(p.tgt.buffered_bytes(), 0);
    assert_eq!(p.tgt.stats().data_dropped, 1);
}

#[test]
fn conflicting_locks_are_granted_in_sequence_order() {
    let mut p = Pair::new(Mode::Speculative);
    // Two writes to region 3; then the first one's data; the second waits for the first.
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 3, 1)));
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 2, 2, 3, 2)));
    assert_eq!(p.target_sent(FrameType::LockGranted).len(), 1);
    p.tgt_event(TargetEvent::Frame(data_frame(&p, 2, 2, 3 * 4096, 10, 2)));
    p.tgt_event(TargetEvent::Frame(data_frame(&p, 1, 1, 3 * 4096, 10, 1)));
    assert_eq!(p.target_written_seqs(), vec![1]);
    p.complete_target_writes();
    assert_eq!(
        p.target_written_seqs(),
        vec![1, 2],
        "seq 2 lands after seq 1"
    );
    assert!(p
        .tgt_log
        .iter()
        .any(|a| matches!(a, TargetAction::LockReleased { .. })));
    p.complete_target_writes();
    assert_eq!(&p.tgt_vol[3 * 4096..3 * 4096 + 10], &[2; 10][..]);
}

#[test]
fn lock_commands_are_processed_in_lock_id_order() {
    let mut p = Pair::new(Mode::Speculative);
    // lock 2 arrives before lock 1; both want region 0. Lock 1 (seq 1) must win.
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 2, 2, 0, 1)));
    assert!(
        p.target_sent(FrameType::LockGranted).is_empty(),
        "waits for lock 1"
    );
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    let g = p.target_sent(FrameType::LockGranted);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].header.seq, 1);
}

#[test]
fn abort_releases_the_lock_and_drops_its_data() {
    let mut p = Pair::new(Mode::Conservative);
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    let mut h = Header::new(FrameType::Abort);
    h.generation = p.tgt.generation().unwrap();
    h.seq = 1;
    h.lock_id = 1;
    let a = p.tgt_event(TargetEvent::Frame(Frame::control(h)));
    assert!(a
        .iter()
        .any(|x| matches!(x, TargetAction::LockReleased { .. })));
    let a = p.tgt_event(TargetEvent::Frame(data_frame(&p, 1, 1, 0, 10, 1)));
    assert_eq!(writes(&a), 0, "data of an aborted lock is never written");
}

#[test]
fn duplicates_are_answered_without_writing_twice() {
    let mut p = Pair::new(Mode::Speculative);
    let lock = lock_frame(&p, 1, 1, 0, 1);
    let data = data_frame(&p, 1, 1, 0, 10, 4);
    p.tgt_event(TargetEvent::Frame(lock.clone()));
    p.tgt_event(TargetEvent::Frame(data.clone()));
    p.complete_target_writes();
    assert_eq!(p.target_sent(FrameType::WriteDone).len(), 1);
    let a = p.tgt_event(TargetEvent::Frame(lock));
    let b = p.tgt_event(TargetEvent::Frame(data));
    assert_eq!(writes(&a) + writes(&b), 0);
    assert_eq!(
        p.target_sent(FrameType::WriteDone).len(),
        3,
        "each copy answered again"
    );
    assert_eq!(p.tgt.stats().writes, 1);
}

#[test]
fn out_of_range_locks_and_data_outside_the_lock_are_refused() {
    let mut p = Pair::new(Mode::Speculative);
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 15, 2)));
    let r = p.target_sent(FrameType::LockRejected);
    assert_eq!(r[0].header.arg, RejectReason::OutOfRange as u64);
    // A lock for region 0 whose DATA claims region 5: refused, nothing written.
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 2, 2, 0, 1)));
    let a = p.tgt_event(TargetEvent::Frame(data_frame(&p, 2, 2, 5 * 4096, 10, 1)));
    assert_eq!(writes(&a), 0);
    assert_eq!(p.target_sent(FrameType::LockRejected).len(), 2);
    assert!(p.tgt_vol.iter().all(|&b| b == 0));
}

#[test]
fn frames_of_an_unknown_session_ask_for_a_new_handshake() {
    let mut p = Pair::new(Mode::Speculative);
    let mut f = lock_frame(&p, 1, 1, 0, 1);
    f.header.generation += 5;
    let a = p.tgt_event(TargetEvent::Frame(f));
    assert_eq!(a.len(), 1);
    let TargetAction::Send(reply) = &a[0] else {
        panic!()
    };
    assert_eq!(reply.ty(), FrameType::HelloAck);
    let h = specmirror_abi::Hello::decode(&reply.payload).unwrap();
    assert_eq!(h.status, specmirror_abi::HelloStatus::UnknownSession);
}

#[test]
fn a_granted_lock_whose_data_never_comes_is_revoked() {
    let mut tc = target_config();
    tc.data_timeout = 500_000;
    let mut p = Pair::with(source_config(Mode::Conservative), tc);
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    assert_eq!(p.target_sent(FrameType::LockGranted).len(), 1);
    p.advance_to(1_000_000);
    let r = p.target_sent(FrameType::LockRejected);
    assert_eq!(r.len(), 1, "revoked");
    assert!(
        p.tgt.try_lock_local(9, Regions { first: 0, count: 1 }),
        "region free again"
    );
}

#[test]
fn a_probe_hello_checks_the_pair_without_touching_the_session() {
    let mut p = Pair::new(Mode::Speculative);
    let g = p.tgt.generation().unwrap();
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    let hello = specmirror_abi::Hello {
        volume_size: VOL,
        region_size: REGION,
        pair_id: PAIR,
        node_id: 1,
        min_version: 1,
        max_version: 1,
        status: specmirror_abi::HelloStatus::Ok,
        capabilities: 0,
    };
    let f = Frame::new(Header::new(FrameType::Hello), hello.to_bytes().to_vec());
    let a = p.tgt_event(TargetEvent::Frame(f));
    let TargetAction::Send(reply) = &a[0] else {
        panic!("{a:?}")
    };
    let ack = specmirror_abi::Hello::decode(&reply.payload).unwrap();
    assert_eq!(
        ack.status,
        specmirror_abi::HelloStatus::Ok,
        "a probe is never stale"
    );
    assert_eq!(p.tgt.generation(), Some(g), "the session is untouched");
    assert!(!p.tgt.is_idle(), "the held lock survives the probe");
}

/// One piece of a write of `total` bytes at `start`: `len` bytes at `at` within it.
fn piece(p: &Pair, lock_id: u64, start: u64, at: u64, len: usize, total: u64, fill: u8) -> Frame {
    let mut f = data_frame(p, lock_id, lock_id, start + at, len, fill);
    f.header.arg = specmirror_abi::data_piece_arg(at, total);
    f
}

fn written(actions: &[TargetAction]) -> Vec<(u64, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            TargetAction::WriteVolume { offset, data, .. } => Some((*offset, data.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_write_in_pieces_lands_whole_once_every_piece_is_in_whatever_the_order() {
    let mut p = Pair::new(Mode::Speculative);
    // Pieces ahead of their LOCK, out of order and one of them twice.
    for (at, len, fill) in [(2000, 500, 3u8), (0, 1000, 1)] {
        let a = p.tgt_event(TargetEvent::Frame(piece(&p, 1, 100, at, len, 2500, fill)));
        assert_eq!(writes(&a), 0);
    }
    let a = p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    assert_eq!(writes(&a), 0, "a piece is missing");
    let a = p.tgt_event(TargetEvent::Frame(piece(&p, 1, 100, 0, 1000, 2500, 9)));
    assert_eq!(writes(&a), 0, "a duplicate piece completes nothing");
    let a = p.tgt_event(TargetEvent::Frame(piece(&p, 1, 100, 1000, 1000, 2500, 2)));
    let w = written(&a);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].0, 100);
    let mut want = vec![1u8; 1000];
    want.extend(vec![2u8; 1000]);
    want.extend(vec![3u8; 500]);
    assert_eq!(w[0].1, want);
    assert_eq!(p.tgt.buffered_bytes(), 2500, "counted once, whole");
}

#[test]
fn pieces_of_a_write_never_land_before_the_lock_is_held() {
    let mut p = Pair::new(Mode::Speculative);
    assert!(p.tgt.try_lock_local(1, Regions { first: 0, count: 1 }));
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    for at in [0, 1000] {
        let a = p.tgt_event(TargetEvent::Frame(piece(&p, 1, 0, at, 1000, 2000, 4)));
        assert_eq!(writes(&a), 0);
    }
    let a = p.tgt.unlock_local(1, p.now);
    assert_eq!(written(&a), vec![(0, vec![4u8; 2000])]);
}

#[test]
fn pieces_that_do_not_fit_their_write_or_their_lock_are_refused() {
    // A piece past its write's end, and pieces whose write leaves the locked region.
    for (at, len, total, start) in [(1500u64, 1000usize, 2000u64, 0u64), (0, 1000, 8192, 0)] {
        let mut p = Pair::new(Mode::Speculative);
        p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
        let a = p.tgt_event(TargetEvent::Frame(piece(&p, 1, start, at, len, total, 5)));
        assert_eq!(writes(&a), 0);
        assert!(
            a.iter().any(|x| matches!(x, TargetAction::Violation(_))),
            "{at} {len} {total}: {a:?}"
        );
    }
    // Two pieces that disagree about their write.
    let mut p = Pair::new(Mode::Speculative);
    p.tgt_event(TargetEvent::Frame(lock_frame(&p, 1, 1, 0, 1)));
    p.tgt_event(TargetEvent::Frame(piece(&p, 1, 0, 0, 1000, 2000, 5)));
    let a = p.tgt_event(TargetEvent::Frame(piece(&p, 1, 0, 1000, 1000, 3000, 5)));
    assert_eq!(writes(&a), 0);
    assert!(a.iter().any(|x| matches!(x, TargetAction::Violation(_))));
    assert_eq!(p.tgt.buffered_bytes(), 0, "the partial write is dropped");
}

#[test]
fn an_abort_that_overtakes_its_lock_command_keeps_the_write_off_the_volume() {
    let mut p = Pair::new(Mode::Implicit);
    // Lock 2 (an implicit write) waits behind lock 1, which is late; the source aborts lock 2.
    let mut early = data_frame(&p, 2, 2, 0, 100, 0xb2);
    early.header.flags = specmirror_abi::Flags::IMPLICIT_LOCK;
    p.tgt_event(TargetEvent::Frame(early.clone()));
    let mut h = Header::new(FrameType::Abort);
    h.generation = p.tgt.generation().unwrap();
    h.seq = 2;
    h.lock_id = 2;
    p.tgt_event(TargetEvent::Frame(Frame::control(h)));
    // Lock 3 (an ABORT for it too arrives before it), then the late lock 1 and a copy of lock 2.
    h.seq = 3;
    h.lock_id = 3;
    p.tgt_event(TargetEvent::Frame(Frame::control(h)));
    let mut three = data_frame(&p, 3, 3, 0, 100, 0xcc);
    three.header.flags = specmirror_abi::Flags::IMPLICIT_LOCK;
    p.tgt_event(TargetEvent::Frame(three));
    let mut one = data_frame(&p, 1, 1, 0, 100, 0x88);
    one.header.flags = specmirror_abi::Flags::IMPLICIT_LOCK;
    let a = p.tgt_event(TargetEvent::Frame(one));
    assert_eq!(written(&a), vec![(0, vec![0x88; 100])]);
    p.complete_target_writes();
    let a = p.tgt_event(TargetEvent::Frame(early));
    assert_eq!(writes(&a), 0, "an aborted write never lands");
    // The next lock command after the aborted ones is processed as usual.
    let mut four = data_frame(&p, 4, 4, 0, 100, 0x44);
    four.header.flags = specmirror_abi::Flags::IMPLICIT_LOCK;
    let a = p.tgt_event(TargetEvent::Frame(four));
    assert_eq!(written(&a), vec![(0, vec![0x44; 100])]);
}

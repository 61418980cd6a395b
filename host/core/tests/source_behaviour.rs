//! The source side of the protocol, point by point.

mod harness;

use harness::*;
use specmirror_abi::ring::Mode;
use specmirror_abi::{Flags, FrameType, RejectReason};
use specmirror_core::errno;
use specmirror_core::source::{SourceAction, SourceEvent};
use specmirror_core::target::TargetEvent;
use specmirror_core::Frame;

#[test]
fn speculative_sends_lock_then_data_without_waiting() {
    let mut p = Pair::new(Mode::Speculative);
    let a = p.write(1, 4096, 100, 0xaa);
    // Into the rollback log first, then the local write, then LOCK and DATA back to back.
    assert!(
        matches!(&a[0], SourceAction::LogAppend(r) if r.lock_pending && r.data_pending && r.before.is_some())
    );
    assert!(matches!(
        &a[1],
        SourceAction::WriteLocal { seq: Some(_), .. }
    ));
    assert_eq!(Pair::sent_types(&a), vec![FrameType::Lock, FrameType::Data]);
    let lock = p.to_tgt[0].header;
    let data = p.to_tgt[1].header;
    assert_eq!((lock.offset, lock.arg), (1, 1), "region 1, one region");
    assert_eq!(lock.lock_id, data.lock_id);
    assert_eq!(lock.seq, data.seq);
    assert!(!data.flags.contains(Flags::IMPLICIT_LOCK));
}

#[test]
fn conservative_waits_for_the_grant() {
    let mut p = Pair::new(Mode::Conservative);
    let a = p.write(1, 0, 10, 1);
    assert_eq!(Pair::sent_types(&a), vec![FrameType::Lock]);
    p.deliver_to_target();
    assert_eq!(p.target_sent(FrameType::LockGranted).len(), 1);
    let before = p.src_log.len();
    p.deliver_to_source();
    assert_eq!(
        Pair::sent_types(&p.src_log[before..]),
        vec![FrameType::Data],
        "DATA follows LOCK_GRANTED"
    );
}

#[test]
fn implicit_sends_one_data_frame_that_asks_for_its_lock() {
    let mut p = Pair::new(Mode::Implicit);
    let a = p.write(1, 0, 10, 1);
    assert_eq!(Pair::sent_types(&a), vec![FrameType::Data]);
    assert!(p.to_tgt[0].header.flags.contains(Flags::IMPLICIT_LOCK));
    p.settle();
    assert_eq!(p.acks, vec![(1, Ok(()))]);
    assert!(p.target_sent(FrameType::LockGranted).is_empty());
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn lock_and_data_leave_the_rollback_log_on_grant_and_on_write() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, 0, 10, 1);
    let seq = p.src.log().first_seq().unwrap();
    p.deliver_to_target();
    // Target granted and started writing; the source hears LOCK_GRANTED first.
    let granted: Vec<Frame> = p.to_src.iter().take(1).cloned().collect();
    p.to_src.clear();
    p.src_event(SourceEvent::Frame(granted[0].clone()));
    assert!(p.src_log.contains(&SourceAction::LogLockGranted { seq }));
    let e = p.src.log().get(seq).unwrap();
    assert!(!e.rec.lock_pending && e.rec.data_pending);
    p.complete_target_writes();
    p.deliver_to_source();
    assert!(p.src_log.contains(&SourceAction::LogDataWritten { seq }));
}

#[test]
fn acknowledged_only_after_local_write_and_write_done() {
    // WRITE_DONE first, local write later.
    let mut p = Pair::new(Mode::Speculative);
    p.write(7, 0, 10, 1);
    p.deliver_all();
    p.complete_target_writes();
    p.deliver_all();
    assert!(p.acks.is_empty(), "local write still pending");
    p.complete_local_writes();
    assert_eq!(p.acks, vec![(7, Ok(()))]);
    // Local write first, WRITE_DONE later.
    let mut p = Pair::new(Mode::Speculative);
    p.write(8, 0, 10, 1);
    p.complete_local_writes();
    p.deliver_all();
    assert!(p.acks.is_empty(), "WRITE_DONE still missing");
    p.complete_target_writes();
    p.deliver_all();
    assert_eq!(p.acks, vec![(8, Ok(()))]);
    assert!(p.src.log().is_empty());
    assert!(
        p.persisted.is_empty(),
        "retired entries leave the persisted log"
    );
}

#[test]
fn rejection_halts_data_and_retransmits_it_after_the_retried_grant() {
    let mut p = Pair::new(Mode::Speculative);
    assert!(p
        .tgt
        .try_lock_local(99, specmirror_core::Regions { first: 0, count: 1 }));
    p.write(1, 0, 100, 5);
    p.deliver_to_target();
    // The target retries until its budget runs out, then rejects.
    p.advance_to(2_000_000);
    let rej = p.target_sent(FrameType::LockRejected);
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].header.arg, RejectReason::BusyTimeout as u64);
    assert!(
        p.tgt_log
            .iter()
            .all(|a| !matches!(a, specmirror_core::target::TargetAction::WriteVolume { .. })),
        "rejected data is never written"
    );
    let mark = p.src_log.len();
    p.deliver_to_source();
    assert!(
        Pair::sent_types(&p.src_log[mark..]).is_empty(),
        "sending halts on rejection"
    );
    // The holder goes away; the retry re-issues LOCK alone, with a new lock id.
    let a = p.tgt.unlock_local(99, p.now);
    p.apply_tgt(a);
    let mark = p.src_log.len();
    p.advance_to(p.now + 1_000_000);
    let retry = Pair::sent_types(&p.src_log[mark..]);
    assert_eq!(retry, vec![FrameType::Lock]);
    let new_lock = p.to_tgt.back().unwrap().header.lock_id;
    assert_ne!(new_lock, rej[0].header.lock_id);
    p.deliver_to_target();
    let mark = p.src_log.len();
    p.deliver_to_source();
    assert_eq!(
        Pair::sent_types(&p.src_log[mark..]),
        vec![FrameType::Data],
        "data retransmitted from the log once granted"
    );
    p.settle();
    assert_eq!(p.acks, vec![(1, Ok(()))]);
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn write_failed_rolls_back_the_source_and_compensates_the_target() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, 0, 100, 0x11);
    p.settle();
    p.write(2, 50, 100, 0x22);
    p.deliver_to_target();
    let (token, _) = p.tgt_inflight.pop().unwrap();
    // The target's disk fails the write (the harness applied it; undo that as a failed write would).
    p.tgt_vol[50..150].copy_from_slice(&[&[0x11u8; 50][..], &[0u8; 50][..]].concat());
    p.tgt_event(TargetEvent::VolumeWriteDone {
        token,
        result: Err(errno::EIO),
    });
    p.deliver_to_source();
    assert!(p.acks.contains(&(2, Err(errno::EIO))));
    assert!(p
        .src_log
        .iter()
        .any(|a| matches!(a, SourceAction::RolledBack { .. })));
    // The source is back to its state before write 2.
    assert_eq!(&p.src_vol[0..100], &[0x11; 100][..]);
    assert_eq!(&p.src_vol[100..150], &[0; 50][..]);
    // A compensation write carrying that content is mirrored.
    let comp = p
        .to_tgt
        .iter()
        .find(|f| f.ty() == FrameType::Data)
        .expect("compensation data");
    assert!(comp.header.flags.contains(Flags::COMPENSATE));
    p.settle();
    assert_eq!(p.src_vol, p.tgt_vol, "a failed write changed neither copy");
    assert!(p.src.log().is_empty());
}

#[test]
fn write_timeout_rolls_back_and_fails_with_eio() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, 4096, 10, 3);
    p.to_tgt.clear(); // the link is gone
    p.complete_local_writes();
    p.advance_to(60_000_000);
    assert_eq!(p.acks, vec![(1, Err(errno::EIO))]);
    assert_eq!(&p.src_vol[4096..4106], &[0; 10][..]);
}

#[test]
fn a_permanent_rejection_fails_the_write_at_once() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, 0, 10, 3);
    p.complete_local_writes();
    let lock = p.to_tgt[0].header;
    p.to_tgt.clear();
    let mut h = specmirror_abi::Header::new(FrameType::LockRejected);
    h.generation = lock.generation;
    h.seq = lock.seq;
    h.lock_id = lock.lock_id;
    h.arg = RejectReason::OutOfRange as u64;
    p.src_event(SourceEvent::Frame(Frame::control(h)));
    assert_eq!(p.acks, vec![(1, Err(errno::EIO))]);
}

#[test]
fn invalid_client_writes_are_refused_without_touching_anything() {
    let mut p = Pair::new(Mode::Speculative);
    let a = p.src_event(SourceEvent::ClientWrite {
        handle: 1,
        offset: VOL - 4,
        data: vec![1; 8],
        before: vec![0; 8],
        fua: false,
    });
    assert_eq!(
        a,
        vec![SourceAction::AckWrite {
            handle: 1,
            result: Err(errno::ENOSPC)
        }]
    );
    let a = p.src_event(SourceEvent::ClientWrite {
        handle: 2,
        offset: 0,
        data: vec![1; 8],
        before: vec![0; 4],
        fua: false,
    });
    assert_eq!(
        a,
        vec![SourceAction::AckWrite {
            handle: 2,
            result: Err(errno::EINVAL)
        }]
    );
    assert!(p.src.log().is_empty());
}

#[test]
fn multi_region_writes_take_one_ascending_lock() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, REGION - 1, (2 * REGION + 2) as usize, 9);
    let lock = p.to_tgt[0].header;
    assert_eq!(
        (lock.offset, lock.arg),
        (0, 4),
        "regions 0..=3 in one ascending run"
    );
    p.settle();
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn flush_reaches_the_target_before_it_is_acknowledged() {
    let mut p = Pair::new(Mode::Speculative);
    let a = p.src_event(SourceEvent::ClientFlush { handle: 5 });
    assert!(a.contains(&SourceAction::SyncLocal { flush: 1 }));
    assert_eq!(Pair::sent_types(&a), vec![FrameType::Flush]);
    p.src_event(SourceEvent::LocalSyncDone {
        flush: 1,
        result: Ok(()),
    });
    assert!(p
        .src_log
        .iter()
        .all(|a| !matches!(a, SourceAction::AckFlush { .. })));
    p.deliver_to_target();
    let sync = p.target_sync_token();
    p.tgt_event(TargetEvent::VolumeSyncDone {
        token: sync,
        result: Ok(()),
    });
    p.deliver_to_source();
    assert!(p.src_log.contains(&SourceAction::AckFlush {
        handle: 5,
        result: Ok(())
    }));
}

#[test]
fn a_local_sync_failure_fails_the_flush() {
    let mut p = Pair::new(Mode::Speculative);
    p.src_event(SourceEvent::ClientFlush { handle: 5 });
    let a = p.src_event(SourceEvent::LocalSyncDone {
        flush: 1,
        result: Err(specmirror_core::errno::EIO),
    });
    assert!(a.contains(&SourceAction::AckFlush {
        handle: 5,
        result: Err(specmirror_core::errno::EIO)
    }));
    // The target's answer arrives later and must not answer the flush a second time.
    p.deliver_to_target();
    let sync = p.target_sync_token();
    p.tgt_event(TargetEvent::VolumeSyncDone {
        token: sync,
        result: Ok(()),
    });
    p.deliver_to_source();
    let acks = p
        .src_log
        .iter()
        .filter(|a| matches!(a, SourceAction::AckFlush { .. }))
        .count();
    assert_eq!(acks, 1);
}

#[test]
fn a_target_sync_failure_fails_the_flush() {
    let mut p = Pair::new(Mode::Speculative);
    p.src_event(SourceEvent::ClientFlush { handle: 5 });
    p.src_event(SourceEvent::LocalSyncDone {
        flush: 1,
        result: Ok(()),
    });
    p.deliver_to_target();
    let sync = p.target_sync_token();
    let a = p.tgt_event(TargetEvent::VolumeSyncDone {
        token: sync,
        result: Err(28),
    });
    let done = a
        .iter()
        .find_map(|a| match a {
            specmirror_core::target::TargetAction::Send(f)
                if f.header.ty == FrameType::FlushDone =>
            {
                Some(f.header.arg)
            }
            _ => None,
        })
        .expect("the target answers the flush");
    assert_eq!(done, 28, "FLUSH_DONE carries the errno");
    p.deliver_to_source();
    assert!(p.src_log.contains(&SourceAction::AckFlush {
        handle: 5,
        result: Err(28)
    }));
    assert!(!p.src_log.contains(&SourceAction::AckFlush {
        handle: 5,
        result: Ok(())
    }));
}

#[test]
fn a_target_that_restarts_gets_the_whole_log_replayed() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, 0, 100, 1);
    p.deliver_to_target();
    // The target dies before writing: a fresh one knows no session.
    p.tgt = specmirror_core::target::Target::new(target_config());
    p.tgt_inflight.clear();
    p.tgt_vol = vec![0; VOL as usize];
    p.to_src.clear();
    p.advance_to(p.now + 2_000_000); // retransmission reaches the new target
    p.deliver_to_target();
    assert!(!p.target_sent(FrameType::HelloAck).is_empty());
    p.settle();
    p.advance_to(p.now + 2_000_000);
    p.settle();
    assert_eq!(p.acks, vec![(1, Ok(()))]);
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn a_restarted_source_replays_its_persisted_log() {
    let mut p = Pair::new(Mode::Speculative);
    p.write(1, 0, 100, 1);
    p.write(2, 50, 100, 2);
    p.to_tgt.clear(); // nothing reached the target before the crash
    let records: Vec<_> = p.persisted.values().cloned().collect();
    assert_eq!(records.len(), 2);
    let (src, actions) =
        specmirror_core::source::Source::recover(source_config(Mode::Speculative), 1, records);
    p.src = src;
    p.local_inflight.clear();
    p.src_vol = vec![0; VOL as usize]; // even a lost local write is redone from the log
    p.apply_src(actions);
    p.src_event(SourceEvent::Connected);
    p.settle();
    assert!(p.src.log().is_empty());
    assert_eq!(&p.src_vol[0..50], &[1; 50][..]);
    assert_eq!(&p.src_vol[50..150], &[2; 100][..]);
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn a_mismatched_target_refuses_the_pair() {
    let mut tc = target_config();
    tc.volume_size = VOL * 2;
    let mut src = specmirror_core::source::Source::new(source_config(Mode::Speculative), 0);
    let mut tgt = specmirror_core::target::Target::new(tc);
    let hello = src.handle(SourceEvent::Connected, 0);
    let SourceAction::Send(f) = &hello[1] else {
        panic!("HELLO expected, got {hello:?}")
    };
    let ack = tgt.handle(TargetEvent::Frame(f.clone()), 0);
    let specmirror_core::target::TargetAction::Send(reply) = &ack[0] else {
        panic!()
    };
    let out = src.handle(SourceEvent::Frame(reply.clone()), 0);
    assert!(out.contains(&SourceAction::Refused(
        specmirror_abi::HelloStatus::VolumeSizeMismatch
    )));
    assert!(!src.is_up());
}

#[test]
fn a_write_longer_than_a_frame_goes_out_in_pieces_under_one_lock() {
    for mode in [Mode::Speculative, Mode::Implicit, Mode::Conservative] {
        let mut sc = source_config(mode);
        sc.max_data_payload = 1000;
        let mut p = Pair::with(sc, target_config());
        p.settle();
        let a = p.write(1, 4096 + 100, 2500, 6);
        p.settle();
        let mut sent: Vec<Frame> = a
            .iter()
            .filter_map(|x| match x {
                SourceAction::Send(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        sent.extend(p.src_log.iter().filter_map(|x| match x {
            SourceAction::Send(f) if f.ty() == FrameType::Data => Some(f.clone()),
            _ => None,
        }));
        let data: Vec<&Frame> = sent.iter().filter(|f| f.ty() == FrameType::Data).collect();
        let places: std::collections::BTreeSet<(u64, u64)> = data
            .iter()
            .map(|f| specmirror_abi::data_piece(f.header.arg).expect("a piece"))
            .collect();
        assert_eq!(
            places.into_iter().collect::<Vec<_>>(),
            vec![(0, 2500), (1000, 2500), (2000, 2500)],
            "{mode:?}"
        );
        assert!(data
            .iter()
            .all(|f| f.header.lock_id == data[0].header.lock_id
                && f.header.offset == 4196 + specmirror_abi::data_piece(f.header.arg).unwrap().0
                && !f
                    .header
                    .flags
                    .contains(specmirror_abi::Flags::IMPLICIT_LOCK)));
        assert!(
            sent.iter().any(|f| f.ty() == FrameType::Lock),
            "{mode:?}: an explicit lock, even in implicit mode"
        );
        assert_eq!(p.acks, vec![(1, Ok(()))], "{mode:?}");
        assert_eq!(p.src_vol, p.tgt_vol, "{mode:?}");
    }
}

#[test]
fn the_retransmission_timeout_follows_the_measured_round_trip() {
    let mut sc = source_config(Mode::Speculative);
    sc.min_rto = 10 * specmirror_core::US;
    let mut p = Pair::with(sc, target_config());
    p.settle();
    assert_eq!(
        p.src.rto(),
        1_000 * specmirror_core::US,
        "configured until measured"
    );
    for (i, rtt) in [300u64, 300, 300].into_iter().enumerate() {
        p.write(i as u64 + 1, 0, 512, 1);
        p.complete_local_writes();
        p.deliver_to_target();
        p.complete_target_writes();
        p.now += rtt * specmirror_core::US;
        p.deliver_to_source();
    }
    // Three samples of 300 µs: srtt 300 µs, deviation 150 → 112.5 → 84.375 µs; rto = srtt +
    // 4 × deviation.
    assert_eq!(p.src.rto(), 637_500, "after three 300 µs round trips");
    assert_eq!(p.acks.len(), 3);
}

/// A write sent while an earlier write to the same region is unanswered is granted only after
/// that one: its answer times the queue, not the link, and gives no round-trip sample (the parts of
/// one long write, each behind the one before, would otherwise raise the timeout to the length of
/// the whole chain). And one slow answer never takes the timeout past `max_rto`.
#[test]
fn a_write_queued_behind_another_gives_no_round_trip_sample_and_the_timeout_has_a_ceiling() {
    const US: u64 = specmirror_core::US;
    let mut sc = source_config(Mode::Speculative);
    sc.min_rto = 10 * US;
    let mut p = Pair::with(sc.clone(), target_config());
    p.settle();
    // Both in region 0: the target takes write 2 only once write 1 is done.
    p.write(1, 0, 512, 1);
    p.write(2, 1024, 512, 2);
    p.complete_local_writes();
    p.deliver_to_target();
    p.complete_target_writes();
    p.now += 300 * US;
    p.deliver_to_source();
    assert_eq!(p.acks, vec![(1, Ok(()))]);
    assert_eq!(p.src.rto(), 900 * US, "one sample of 300 µs: 300 + 4 × 150");
    p.now += 20_000 * US;
    p.complete_target_writes();
    p.deliver_to_source();
    assert_eq!(p.acks.len(), 2);
    assert_eq!(
        p.src.rto(),
        900 * US,
        "write 2 waited behind write 1: no sample"
    );

    sc.max_rto = 5_000 * US;
    let mut p = Pair::with(sc, target_config());
    p.settle();
    p.write(1, 0, 512, 1);
    p.complete_local_writes();
    p.deliver_to_target();
    p.complete_target_writes();
    p.now += 30_000 * US;
    p.deliver_to_source();
    assert_eq!(p.acks, vec![(1, Ok(()))]);
    assert_eq!(p.src.rto(), 5_000 * US, "90 ms measured, 5 ms at most");
}

/// A target that announces what a hardware target does: writes of at most 4 KiB under one lock,
/// each as one DATA frame, and no implicit locks.
fn limited_target() -> specmirror_core::target::TargetConfig {
    let mut tc = target_config();
    tc.write_limit = Some(4096);
    tc.implicit_locks = false;
    tc
}

fn data_frames(p: &Pair) -> Vec<Frame> {
    p.src_log
        .iter()
        .filter_map(|a| match a {
            SourceAction::Send(f) if f.ty() == FrameType::Data => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_target_s_write_limit_splits_longer_writes_and_the_client_hears_once() {
    for mode in [Mode::Speculative, Mode::Implicit, Mode::Conservative] {
        let mut p = Pair::with(source_config(mode), limited_target());
        assert_eq!(p.src.target_limits(), (Some(4096), false, None), "{mode:?}");
        p.write(1, 1000, 10_000, 0x5a);
        p.write(2, 20_000, 100, 0x5b);
        p.settle();
        let mut data = data_frames(&p);
        data.sort_by_key(|f| f.header.offset);
        // 4096 + 4096 + 1808 bytes, then the short write: four writes, each one whole frame
        // under its own lock, none of them an implicit lock.
        let lens: Vec<usize> = data.iter().map(|f| f.payload.len()).collect();
        assert_eq!(lens, vec![4096, 4096, 1808, 100], "{mode:?}");
        let offsets: Vec<u64> = data.iter().map(|f| f.header.offset).collect();
        assert_eq!(offsets, vec![1000, 5096, 9192, 20_000], "{mode:?}");
        assert!(data
            .iter()
            .all(|f| f.header.arg == 0 && !f.header.flags.contains(Flags::IMPLICIT_LOCK)));
        let locks: std::collections::BTreeSet<u64> =
            data.iter().map(|f| f.header.lock_id).collect();
        assert_eq!(locks.len(), 4, "{mode:?}");
        assert_eq!(p.target_sent(FrameType::WriteDone).len(), 4, "{mode:?}");
        p.acks.sort();
        assert_eq!(p.acks, vec![(1, Ok(())), (2, Ok(()))], "{mode:?}");
        assert_eq!(p.src.stats().split, 1);
        assert_eq!(p.src_vol, p.tgt_vol, "{mode:?}");
        assert!(p.src.log().is_empty());
    }
}

#[test]
fn a_failed_part_of_a_split_write_rolls_the_whole_write_back_and_fails_it_once() {
    let mut p = Pair::with(source_config(Mode::Speculative), limited_target());
    // Parts in regions of their own, so the target takes all three at once.
    p.write(7, 4096, 10_000, 0x33);
    p.complete_local_writes();
    p.deliver_to_target();
    assert_eq!(p.tgt_inflight.len(), 3, "three parts reach the volume");
    // The first and last parts are written and confirmed; they stay in the log, unanswered.
    let (token, _) = p.tgt_inflight.remove(1);
    p.complete_target_writes();
    p.deliver_all();
    assert_eq!(p.src.log().len(), 3, "confirmed parts wait for the others");
    assert!(p.acks.is_empty());
    // Then the target's disk fails the middle part (undo what the harness applied).
    p.tgt_vol[8192..12288].fill(0);
    p.tgt_event(TargetEvent::VolumeWriteDone {
        token,
        result: Err(errno::EIO),
    });
    p.deliver_to_source();
    // The other parts are failed with it, and the client hears once, at once.
    assert_eq!(p.acks, vec![(7, Err(errno::EIO))]);
    p.settle();
    assert_eq!(p.acks, vec![(7, Err(errno::EIO))]);
    // The whole client write is rolled back, the parts the target had written too: it lands
    // whole or not at all, on both copies.
    assert!(p.src_vol.iter().all(|&b| b == 0), "the source is as before");
    assert_eq!(p.src_vol, p.tgt_vol, "both copies agree");
    assert!(p.src.log().is_empty());
}

#[test]
fn a_split_write_s_parts_leave_the_log_together_when_one_waits_behind_an_earlier_write() {
    let mut p = Pair::with(source_config(Mode::Speculative), limited_target());
    // An earlier write in region 1, written by the target, whose answers are lost.
    p.write(1, 4096, 100, 0x11);
    p.complete_local_writes();
    p.deliver_to_target();
    p.complete_target_writes();
    p.to_src.clear();
    // A split write of three parts, the first over the earlier write's bytes; all three are
    // confirmed.
    p.write(2, 4096, 10_000, 0x22);
    p.complete_local_writes();
    p.deliver_to_target();
    p.complete_target_writes();
    p.deliver_to_source();
    assert_eq!(p.target_sent(FrameType::WriteDone).len(), 4);
    // The first part waits behind the earlier write, so no part leaves: one left behind could
    // still fail (a new session sends it again under the write timeout) and roll the others
    // back, and parts that had left would stay on both copies of the failed write.
    assert_eq!(
        p.src.log().len(),
        4,
        "the earlier write and all three parts"
    );
    assert!(p.acks.is_empty());
    // The earlier write is confirmed on its retransmission; the parts then leave together.
    p.advance_to(p.now + 20_000_000);
    p.settle();
    assert_eq!(p.acks, vec![(1, Ok(())), (2, Ok(()))]);
    assert!(p.src.log().is_empty());
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn a_write_logged_before_a_smaller_limit_was_announced_fails_rather_than_hangs() {
    // The write goes to a target that takes anything; that target is replaced, before it
    // answers, by one that takes at most 4 KiB under one lock.
    let mut p = Pair::new(Mode::Speculative);
    p.write(3, 0, 10_000, 0x44);
    p.complete_local_writes();
    p.to_tgt.clear();
    p.tgt = specmirror_core::target::Target::new(limited_target());
    p.src_event(SourceEvent::Connected);
    p.settle();
    assert_eq!(p.acks, vec![(3, Err(errno::EINVAL))]);
    assert_eq!(
        p.src_vol, p.tgt_vol,
        "rolled back, and nothing reached the new target"
    );
    assert!(p.src.log().is_empty());
}

#[test]
fn a_recovered_write_longer_than_the_target_takes_stops_mirroring_with_the_reason() {
    // Logged against a target that takes anything; the source restarts, and the target it
    // meets now takes at most 4 KiB under one lock. No client waits for the recovered write:
    // it cannot fail, and the new target would drop every copy.
    let recovered = |limit: Option<u64>| {
        let mut p = Pair::new(Mode::Speculative);
        p.write(1, 0, 10_000, 0x44);
        p.write(2, 20_000, 100, 0x45);
        p.to_tgt.clear();
        let records: Vec<_> = p.persisted.values().cloned().collect();
        let (src, actions) =
            specmirror_core::source::Source::recover(source_config(Mode::Speculative), 1, records);
        p.src = src;
        p.local_inflight.clear();
        p.apply_src(actions);
        let mut tc = limited_target();
        tc.write_limit = limit;
        p.tgt = specmirror_core::target::Target::new(tc);
        p.src_log.clear();
        p.src_event(SourceEvent::Connected);
        p.settle();
        p
    };
    let p = recovered(Some(4096));
    let stopped: Vec<_> = p
        .src_log
        .iter()
        .filter(|a| matches!(a, SourceAction::CannotMirror { .. }))
        .collect();
    assert_eq!(
        stopped,
        vec![&SourceAction::CannotMirror {
            seq: 1,
            len: 10_000,
            limit: 4096
        }]
    );
    assert!(!p.src.is_up());
    assert_eq!(p.src.log().len(), 2, "the log keeps both writes");
    assert!(data_frames(&p).is_empty(), "nothing is sent");
    assert_eq!(p.target_sent(FrameType::WriteDone).len(), 0);
    // A target that takes the write gets both, and the log empties.
    let p = recovered(Some(16_384));
    assert!(p.src.is_up());
    assert!(!p
        .src_log
        .iter()
        .any(|a| matches!(a, SourceAction::CannotMirror { .. })));
    assert!(p.src.log().is_empty());
    assert_eq!(p.src_vol, p.tgt_vol);
}

#[test]
fn a_target_s_window_bounds_the_writes_in_flight_and_the_rest_go_in_order() {
    for mode in [Mode::Speculative, Mode::Conservative] {
        let mut tc = limited_target();
        tc.window = Some(2);
        let mut p = Pair::with(source_config(mode), tc);
        assert_eq!(p.src.target_limits().2, Some(2));
        // Five writes, the last three overlapping the first: all from the client at once.
        for (h, at) in [(1, 0), (2, 8192), (3, 100), (4, 200), (5, 16384)] {
            p.write(h, at, 1000, h as u8);
        }
        p.complete_local_writes();
        let locks = |p: &Pair| -> Vec<u64> {
            p.src_log
                .iter()
                .filter_map(|a| match a {
                    SourceAction::Send(f) if f.ty() == FrameType::Lock => Some(f.header.seq),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            locks(&p),
            vec![1, 2],
            "{mode:?}: two in flight, the earliest"
        );
        // Each answer lets the next waiting write go, earliest first.
        let mut rounds = 0;
        while p.acks.len() < 5 && rounds < 20 {
            p.deliver_all();
            p.complete_target_writes();
            p.deliver_all();
            rounds += 1;
        }
        let sent = locks(&p);
        assert_eq!(
            sent,
            vec![1, 2, 3, 4, 5],
            "{mode:?}: in sequence order, each once"
        );
        p.acks.sort();
        assert_eq!(p.acks, (1..=5).map(|h| (h, Ok(()))).collect::<Vec<_>>());
        assert_eq!(p.src_vol, p.tgt_vol, "{mode:?}");
    }
}

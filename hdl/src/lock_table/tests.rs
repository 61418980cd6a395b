//! The lock table: grants, ordering, retry timing, barriers, range checks, a full table, and a
//! random workload checked every clock against the rules the software target keeps.

use rust_hdl::prelude::*;
use specmirror_abi::RejectReason;

use super::{workload, LockTable, ENTRIES};
use crate::bench::{cycle, settle};

/// The most clocks from a request (or a change that unblocks it) to its decision.
const SCAN: u64 = ENTRIES as u64 + 7;
/// Clocks the input register holds a request before the table can take the next.
const INPUT: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Dec {
    at: u64,
    granted: bool,
    reason: u64,
    lock_id: u64,
    seq: u64,
    slot: usize,
    first: u64,
    end: u64,
}

struct Tb<const N: usize = ENTRIES, const S: usize = 4> {
    u: LockTable<N, S>,
    now: u64,
    decs: Vec<Dec>,
    retries: Vec<u64>,
}

impl<const N: usize, const S: usize> Tb<N, S> {
    fn new(backoff: u64, limit: u64, regions: u64) -> Self {
        let mut u = super::tests_support::connected::<N, S>();
        u.connect_all();
        u.retry_backoff.next = backoff.to_bits();
        u.retry_limit.next = limit.to_bits();
        u.region_count.next = regions.to_bits();
        settle(&mut u);
        Tb {
            u,
            now: 0,
            decs: Vec::new(),
            retries: Vec::new(),
        }
    }

    fn tick(&mut self) {
        settle(&mut self.u);
        cycle(&mut self.u, |u| &mut u.clock);
        self.now += 1;
        self.u.req_valid.next = false;
        self.u.rel_valid.next = false;
        self.u.clear_barriers.next = false;
        settle(&mut self.u);
        if self.u.dec_valid.val() {
            self.decs.push(Dec {
                at: self.now,
                granted: self.u.dec_granted.val(),
                reason: self.u.dec_reason.val().to_u64(),
                lock_id: self.u.dec_lock_id.val().to_u64(),
                seq: self.u.dec_seq.val().to_u64(),
                slot: self.u.dec_slot.val().to_u64() as usize,
                first: self.u.dec_first.val().to_u64(),
                end: self.u.dec_end.val().to_u64(),
            });
        }
        if self.u.retried.val() {
            self.retries.push(self.now);
        }
    }

    fn ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Offers a request until the table takes it (the input register passes one request every
    /// few clocks), for at most `INPUT` clocks; true if it was taken.
    fn request(&mut self, lock_id: u64, seq: u64, first: u64, count: u64) -> bool {
        for _ in 0..INPUT {
            self.u.req_valid.next = true;
            self.u.req_lock_id.next = lock_id.to_bits();
            self.u.req_seq.next = seq.to_bits();
            self.u.req_first.next = first.to_bits();
            self.u.req_count.next = count.to_bits();
            settle(&mut self.u);
            let ready = self.u.req_ready.val();
            self.tick();
            if ready {
                return true;
            }
        }
        false
    }

    fn release(&mut self, slot: usize) {
        self.u.rel_valid.next = true;
        self.u.rel_slot.next = (slot as u64).to_bits();
        self.tick();
    }

    fn local(&mut self, hold: bool, first: u64, end: u64) {
        self.u.local_hold.next = hold;
        self.u.local_first.next = first.to_bits();
        self.u.local_end.next = end.to_bits();
    }

    fn decision(&self, lock_id: u64) -> Option<Dec> {
        self.decs.iter().copied().find(|d| d.lock_id == lock_id)
    }

    /// Clocks until `lock_id` is decided (at most `limit`), then its decision.
    fn until_decided(&mut self, lock_id: u64, limit: u64) -> Dec {
        for _ in 0..limit {
            if let Some(d) = self.decision(lock_id) {
                return d;
            }
            self.tick();
        }
        self.decision(lock_id)
            .unwrap_or_else(|| panic!("lock {lock_id} undecided after {limit} clocks"))
    }
}

#[test]
fn uncontended_locks_are_granted_within_one_table_scan() {
    let mut t = Tb::<16, 4>::new(8, 4, 1 << 20);
    for i in 0..ENTRIES as u64 {
        let at = t.now;
        assert!(t.request(100 + i, 7 + i, i * 10, 3));
        let d = t.until_decided(100 + i, SCAN + 1);
        assert!(d.granted, "{d:?}");
        assert_eq!(d.seq, 7 + i);
        assert!(
            d.at - at <= SCAN,
            "decided {} clocks after the request",
            d.at - at
        );
    }
    assert_eq!(t.u.held.val().to_u64(), 0xffff, "every slot holds its lock");
    assert!(t.retries.is_empty());
}

#[test]
fn an_overlapping_lock_waits_for_the_earlier_one_and_follows_it() {
    let mut t = Tb::<16, 4>::new(1 << 14, 100, 1 << 20);
    assert!(t.request(1, 1, 0, 2));
    let a = t.until_decided(1, SCAN);
    assert!(a.granted);
    assert!(t.request(2, 2, 1, 2));
    t.ticks(10 * SCAN);
    assert_eq!(
        t.decision(2),
        None,
        "granted while the earlier lock is held"
    );
    let released = t.now;
    t.release(a.slot);
    let b = t.until_decided(2, SCAN + 1);
    assert!(b.granted);
    assert!(
        b.at - released <= SCAN,
        "{} clocks after the release",
        b.at - released
    );
}

#[test]
fn conflicting_locks_are_granted_in_arrival_order() {
    let mut t = Tb::<16, 4>::new(1 << 14, 100, 1 << 20);
    assert!(t.request(10, 10, 5, 1));
    let first = t.until_decided(10, SCAN);
    // Arrival order, not slot order: slot 0 is freed and reused by the last arrival.
    assert!(t.request(11, 11, 0, 1));
    let other = t.until_decided(11, SCAN);
    t.release(other.slot);
    t.ticks(2);
    for id in [12, 13, 14] {
        assert!(t.request(id, id, 5, 1));
    }
    let mut slot = first.slot;
    for id in [12, 13, 14] {
        t.ticks(3 * SCAN);
        for later in id..=14 {
            assert_eq!(t.decision(later), None, "{later} granted before its turn");
        }
        t.release(slot);
        let d = t.until_decided(id, SCAN + 1);
        assert!(d.granted);
        slot = d.slot;
    }
}

#[test]
fn a_busy_lock_retries_with_doubling_backoff_then_is_rejected_and_bars_later_writes() {
    let mut t = Tb::<16, 4>::new(32, 3, 1 << 20);
    t.local(true, 4, 8);
    assert!(t.request(1, 50, 6, 1));
    let d = t.until_decided(1, 2000);
    assert!(!d.granted);
    assert_eq!(d.reason, RejectReason::BusyTimeout as u64);
    // Three retries, each after the backoff, doubled every time; the fourth attempt rejects.
    assert_eq!(t.retries.len(), 3, "{:?}", t.retries);
    let gaps: Vec<u64> = t.retries.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, vec![32, 64], "retries at {:?}", t.retries);
    assert_eq!(d.at - t.retries[2], 128);
    t.local(false, 0, 0);
    // Its barrier: a later write to an overlapping region may not land before the retry.
    assert!(t.request(2, 51, 5, 2));
    let later = t.until_decided(2, SCAN + 1);
    assert_eq!(later.reason, RejectReason::Ordering as u64, "{later:?}");
    // A write elsewhere is not held up.
    assert!(t.request(3, 52, 100, 1));
    assert!(t.until_decided(3, SCAN + 1).granted);
    // The re-issue of write 50 lifts its barrier and is granted; so is 51's re-issue after it.
    assert!(t.request(4, 50, 6, 1));
    assert!(t.until_decided(4, SCAN + 1).granted);
    assert!(t.request(5, 51, 5, 2));
    t.ticks(3 * SCAN);
    assert_eq!(t.decision(5), None, "51 must wait for 50's lock");
}

#[test]
fn a_failed_write_leaves_a_barrier_until_it_is_reissued() {
    let mut t = Tb::<16, 4>::new(1 << 14, 100, 1 << 20);
    assert!(t.request(1, 70, 10, 2));
    let a = t.until_decided(1, SCAN);
    assert!(a.granted);
    assert_eq!(a.seq, 70);
    assert!(t.request(2, 71, 11, 1));
    t.ticks(2 * SCAN);
    assert_eq!(t.decision(2), None, "71 waits for 70's write");
    // 70's write fails: 71, waiting behind it, may not land before 70's retry.
    t.u.rel_fail.next = true;
    t.release(a.slot);
    t.u.rel_fail.next = false;
    let b = t.until_decided(2, SCAN + 1);
    assert!(!b.granted);
    assert_eq!(b.reason, RejectReason::Ordering as u64, "{b:?}");
    assert_eq!(t.u.held.val().to_u64(), 0, "the failed write holds nothing");
    // The re-issue of 70 takes its place and is granted; 71's re-issue then waits for it.
    assert!(t.request(3, 70, 10, 2));
    let c = t.until_decided(3, SCAN + 1);
    assert!(c.granted);
    assert!(t.request(4, 71, 11, 1));
    t.ticks(2 * SCAN);
    assert_eq!(t.decision(4), None, "71 must wait for 70's lock");
    t.release(c.slot);
    assert!(t.until_decided(4, SCAN + 1).granted);
}

#[test]
fn decisions_carry_the_locks_regions() {
    let mut t = Tb::<16, 4>::new(8, 4, u32::MAX as u64);
    assert!(t.request(1, 1, 0x1_2345, 7));
    assert!(t.request(2, 2, 0xFFFF_0000, 0x100));
    for (id, first, end) in [(1, 0x1_2345, 0x1_234C), (2, 0xFFFF_0000, 0xFFFF_0100)] {
        let d = t.until_decided(id, 2 * SCAN);
        assert!(d.granted);
        assert_eq!((d.first, d.end), (first, end));
    }
}

#[test]
fn locks_outside_the_volume_are_rejected_and_leave_no_barrier() {
    let mut t = Tb::<16, 4>::new(8, 4, 64);
    for (id, first, count) in [(1, 60, 5), (2, 10, 0), (3, 0xffff_fff0, 0x20)] {
        assert!(t.request(id, id, first, count));
        let d = t.until_decided(id, SCAN + 1);
        assert!(!d.granted);
        assert_eq!(d.reason, RejectReason::OutOfRange as u64, "{d:?}");
    }
    assert!(t.request(9, 9, 60, 4), "the last regions are in range");
    assert!(t.until_decided(9, SCAN + 1).granted);
    assert_eq!(t.u.held.val().to_u64().count_ones(), 1);
}

#[test]
fn a_full_table_holds_requests_back_until_a_slot_frees() {
    let mut t = Tb::<16, 4>::new(8, 4, 1 << 20);
    for i in 0..ENTRIES as u64 {
        assert!(t.request(i, i, i, 1));
    }
    t.ticks(SCAN);
    assert!(
        t.request(99, 99, 500, 1),
        "one request waits in the input register"
    );
    assert!(!t.request(100, 100, 600, 1), "an 18th lock was taken");
    t.ticks(3 * SCAN);
    assert_eq!(t.decision(99), None);
    t.release(3);
    let d = t.until_decided(99, SCAN + 2);
    assert!(d.granted);
    assert_eq!(d.slot, 3);
}

/// Random requests, releases, local holds, re-issues and session resets; at every decision the
/// rules hold (see `workload`, and `workload::Settings` for the variables that change the run).
fn random_workload<const N: usize, const S: usize>() {
    let run = workload::Settings::from_env(20_000, 0x9e37_79b9_7f4a_7c15);
    let mut u = super::tests_support::connected::<N, S>();
    u.connect_all();
    let st = workload::run(&mut u, N, run.cycles, run.seed, &run.trace);
    eprintln!("{N} entries: {st:?}");
}

#[test]
fn random_workload_keeps_every_rule() {
    random_workload::<16, 4>();
}

/// The same on the 8-entry table the iCE40 bitstream carries.
#[test]
fn random_workload_keeps_every_rule_on_eight_entries() {
    random_workload::<8, 3>();
}

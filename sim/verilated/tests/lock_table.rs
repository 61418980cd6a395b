//! The lock table in Verilator: it agrees with rust-hdl's simulation on every output, every clock,
//! and a long random workload keeps every rule at every decision (`workload::run`).

use specmirror_hdl::lock_table::workload::{self, LockIn, LockIo, LockOut};
use specmirror_hdl::lock_table::{tests_support, LockTable16, ENTRIES};
use specmirror_verilated::{LockPort as P, VerilatedLockTable};

struct Ver(VerilatedLockTable);

impl LockIo for Ver {
    fn set(&mut self, i: &LockIn) {
        let m = &mut self.0;
        m.set(P::ReqValid, i.req_valid as u64);
        m.set(P::ReqLockId, i.req_lock_id);
        m.set(P::ReqSeq, i.req_seq);
        m.set(P::ReqFirst, i.req_first);
        m.set(P::ReqCount, i.req_count);
        m.set(P::RegionCount, i.region_count);
        m.set(P::LocalHold, i.local_hold as u64);
        m.set(P::LocalFirst, i.local_first);
        m.set(P::LocalEnd, i.local_end);
        m.set(P::RetryBackoff, i.retry_backoff);
        m.set(P::RetryLimit, i.retry_limit);
        m.set(P::RelValid, i.rel_valid as u64);
        m.set(P::RelSlot, i.rel_slot);
        m.set(P::RelFail, i.rel_fail as u64);
        m.set(P::ClearBarriers, i.clear_barriers as u64);
    }

    fn get(&mut self) -> LockOut {
        let m = &mut self.0;
        m.eval();
        LockOut {
            req_ready: m.get(P::ReqReady) != 0,
            dec_valid: m.get(P::DecValid) != 0,
            dec_granted: m.get(P::DecGranted) != 0,
            dec_reason: m.get(P::DecReason),
            dec_lock_id: m.get(P::DecLockId),
            dec_seq: m.get(P::DecSeq),
            dec_slot: m.get(P::DecSlot),
            dec_first: m.get(P::DecFirst),
            dec_end: m.get(P::DecEnd),
            retried: m.get(P::Retried) != 0,
            held: m.get(P::Held),
            overflow: m.get(P::Overflow) != 0,
        }
    }

    fn tick(&mut self) {
        self.0.eval();
        self.0.tick();
    }
}

/// Both simulators under one workload: every output compared at every read.
struct Both {
    hdl: LockTable16,
    ver: Ver,
    reads: u64,
}

impl LockIo for Both {
    fn set(&mut self, i: &LockIn) {
        self.hdl.set(i);
        self.ver.set(i);
    }

    fn get(&mut self) -> LockOut {
        let (h, v) = (self.hdl.get(), self.ver.get());
        assert_eq!(h, v, "read {}: rust-hdl and Verilator differ", self.reads);
        self.reads += 1;
        h
    }

    fn tick(&mut self) {
        self.hdl.tick();
        self.ver.tick();
    }
}

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle() {
    let mut hdl = tests_support::connected::<16, 4>();
    rust_hdl::prelude::Block::connect_all(&mut hdl);
    let mut both = Both {
        hdl,
        ver: Ver(VerilatedLockTable::new()),
        reads: 0,
    };
    let st = workload::run(&mut both, ENTRIES, 20_000, 0x5eed, &[]);
    assert!(both.reads > 40_000, "{} reads", both.reads);
    eprintln!("lockstep: {st:?}");
}

/// 10^6 clocks in CI; `workload::Settings` names the variables for longer or other runs.
#[test]
fn a_million_random_clocks_keep_every_rule() {
    let run = workload::Settings::from_env(1_000_000, 0x10c4_7ab1e);
    let mut ver = Ver(VerilatedLockTable::new());
    let st = workload::run(&mut ver, ENTRIES, run.cycles, run.seed, &run.trace);
    assert_eq!(st.cycles, run.cycles);
    assert!(
        st.overflow_clocks > 0 && st.retries > 0 && st.rejections > 0,
        "{st:?}"
    );
    eprintln!("verilated lock table: {st:?}");
}

/// Two schedules that once broke a rule (a re-issue passed by, or granted beside, a write that had
/// followed its barrier, when a session reset landed while the re-issue was being taken in),
/// replayed to past the clock where they broke.
#[test]
fn schedules_that_once_broke_a_rule_keep_every_rule() {
    for (seed, cycles) in [(1u64, 4_200_000u64), (3, 3_600_000)] {
        let mut ver = Ver(VerilatedLockTable::new());
        let st = workload::run(&mut ver, ENTRIES, cycles, seed, &[]);
        assert_eq!(st.cycles, cycles);
    }
}

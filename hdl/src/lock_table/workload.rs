//! A random workload for the lock table that runs on any model of it (rust-hdl's simulation or the
//! Verilator model, through [`LockIo`]) and checks, at every decision, the rules the software
//! target keeps: no lock granted over a held one or inside a local hold, none ahead of an earlier
//! overlapping write that is still waiting or rejected and not yet re-issued, every request
//! decided exactly once, in bounded time. Releases, local holds, re-issues of rejected writes and
//! session resets (`clear_barriers`, also the answer to `overflow`) are mixed in.

use std::collections::{BTreeMap, HashSet};

use specmirror_abi::RejectReason;

use crate::bench::Rng;

/// The table's inputs for one clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockIn {
    pub req_valid: bool,
    pub req_lock_id: u64,
    pub req_seq: u64,
    pub req_first: u64,
    pub req_count: u64,
    pub region_count: u64,
    pub local_hold: bool,
    pub local_first: u64,
    pub local_end: u64,
    pub retry_backoff: u64,
    pub retry_limit: u64,
    pub rel_valid: bool,
    pub rel_slot: u64,
    pub rel_fail: bool,
    pub clear_barriers: bool,
}

/// The table's outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockOut {
    pub req_ready: bool,
    pub dec_valid: bool,
    pub dec_granted: bool,
    pub dec_reason: u64,
    pub dec_lock_id: u64,
    pub dec_seq: u64,
    pub dec_slot: u64,
    pub dec_first: u64,
    pub dec_end: u64,
    pub retried: bool,
    pub held: u64,
    pub overflow: bool,
}

/// A model of the table: set the inputs, read the settled outputs, clock it.
pub trait LockIo {
    fn set(&mut self, i: &LockIn);
    fn get(&mut self) -> LockOut;
    fn tick(&mut self);
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cycles: u64,
    pub grants: u64,
    pub rejections: u64,
    pub retries: u64,
    pub overflow_clocks: u64,
    pub failed_writes: u64,
}

#[derive(Clone, Copy, Debug)]
struct Req {
    lock_id: u64,
    seq: u64,
    first: u64,
    end: u64,
    arrived: u64,
}

fn overlap(a: &Req, b: &Req) -> bool {
    a.first < b.end && b.first < a.end
}

/// How long, which stream and what to print: `SPECMIRROR_HDL_CYCLES`, `SPECMIRROR_HDL_SEED` and
/// `SPECMIRROR_HDL_TRACE=seq,seq` (those writes' events, with every release and session reset)
/// override the defaults a test gives.
pub struct Settings {
    pub cycles: u64,
    pub seed: u64,
    pub trace: Vec<u64>,
}

impl Settings {
    pub fn from_env(cycles: u64, seed: u64) -> Settings {
        let var = |k: &str| std::env::var(k).ok();
        Settings {
            cycles: var("SPECMIRROR_HDL_CYCLES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(cycles),
            seed: var("SPECMIRROR_HDL_SEED")
                .and_then(|v| v.parse().ok())
                .unwrap_or(seed),
            trace: var("SPECMIRROR_HDL_TRACE")
                .unwrap_or_default()
                .split(',')
                .filter_map(|v| v.parse().ok())
                .collect(),
        }
    }
}

/// Regions in the workload's volume: few, so that writes collide often.
pub const REGIONS: u64 = 48;

/// Runs `cycles` clocks of the workload on a table of `entries` entries; panics on any broken
/// rule, naming the writes involved. `trace` lists sequence numbers whose events are printed.
pub fn run(io: &mut impl LockIo, entries: usize, cycles: u64, seed: u64, trace: &[u64]) -> Stats {
    let scan = entries as u64 + 7;
    let mut inp = LockIn {
        region_count: REGIONS,
        retry_backoff: 8,
        retry_limit: 4,
        ..LockIn::default()
    };
    let mut rng = Rng(seed | 1);
    let mut now = 0u64;
    let mut next_id = 1u64;
    let mut next_seq = 1u64;
    let mut pending: BTreeMap<u64, Req> = BTreeMap::new();
    let mut held: BTreeMap<u64, (Req, u64)> = BTreeMap::new(); // slot -> (lock, release at)
    let mut barriers: Vec<Req> = Vec::new();
    let mut rejected: Vec<Req> = Vec::new();
    let mut local: Option<(u64, u64, u64)> = None; // first, end, since
                                                   // Writes in flight or rejected at a session reset: the source replays them in a new session,
                                                   // outside the old one's order.
    let mut unordered: HashSet<u64> = HashSet::new();
    let mut st = Stats::default();
    io.set(&inp);
    let mut out = io.get();
    while now < cycles {
        inp.req_valid = false;
        inp.rel_valid = false;
        inp.clear_barriers = false;
        // Local hold: taken over regions no lock holds, kept a while, dropped.
        if rng.below(500) == 0 {
            local = match local {
                Some(_) => None,
                None => {
                    let first = rng.below(REGIONS - 4);
                    let probe = Req {
                        lock_id: 0,
                        seq: 0,
                        first,
                        end: first + 4,
                        arrived: 0,
                    };
                    (!held.values().any(|(h, _)| overlap(h, &probe))).then_some((
                        first,
                        first + 4,
                        now,
                    ))
                }
            };
            inp.local_hold = local.is_some();
            (inp.local_first, inp.local_end) = local.map_or((0, 0), |(f, e, _)| (f, e));
        }
        // A release whose write is done; one in ten writes failed, which leaves a barrier until
        // the write is re-issued, as a rejection does.
        if let Some((&slot, _)) = held.iter().find(|(_, (_, at))| *at <= now) {
            let (r, _) = held.remove(&slot).expect("found");
            inp.rel_valid = true;
            inp.rel_slot = slot;
            inp.rel_fail = rng.below(10) == 0;
            if inp.rel_fail {
                st.failed_writes += 1;
                barriers.push(r);
                rejected.push(r);
            }
        }
        // A new write, or the re-issue of a rejected one (same sequence number).
        let mut offer = None;
        if rng.below(4) == 0 {
            let reissue = !rejected.is_empty() && rng.below(3) == 0;
            let r = if reissue {
                let old = rejected.remove(rng.below(rejected.len() as u64) as usize);
                Req {
                    lock_id: next_id,
                    arrived: now,
                    ..old
                }
            } else {
                let first = rng.below(REGIONS - 2);
                let seq = next_seq;
                next_seq += 1;
                Req {
                    lock_id: next_id,
                    seq,
                    first,
                    end: first + 1 + rng.below(3),
                    arrived: now,
                }
            };
            inp.req_valid = true;
            inp.req_lock_id = r.lock_id;
            inp.req_seq = r.seq;
            inp.req_first = r.first;
            inp.req_count = r.end - r.first;
            offer = Some((r, reissue));
        }
        if out.overflow {
            st.overflow_clocks += 1;
        }
        if rng.below(3000) == 0 || out.overflow {
            inp.clear_barriers = true;
            if !trace.is_empty() {
                eprintln!("{now}: clear barriers (overflow {})", out.overflow);
            }
            unordered.extend(
                rejected
                    .iter()
                    .chain(barriers.iter())
                    .chain(pending.values())
                    .map(|r| r.seq),
            );
            barriers.clear();
        }
        io.set(&inp);
        let ready = io.get().req_ready;
        if inp.rel_valid && !trace.is_empty() {
            eprintln!(
                "{now}: release slot {} (failed {})",
                inp.rel_slot, inp.rel_fail
            );
        }
        let accepted = match offer {
            Some((r, _)) if ready => {
                next_id += 1;
                Some(r)
            }
            Some((r, true)) => {
                rejected.push(r);
                None
            }
            _ => None,
        };
        io.tick();
        now += 1;
        out = io.get();
        if let Some(r) = accepted {
            if trace.contains(&r.seq) {
                eprintln!("{now}: accepted {r:?}");
            }
            barriers.retain(|b| b.seq != r.seq);
            pending.insert(r.lock_id, r);
        }
        if out.retried {
            st.retries += 1;
        }
        if out.dec_valid {
            let r = pending.remove(&out.dec_lock_id).unwrap_or_else(|| {
                panic!("clock {now}: decision for an unknown or decided lock: {out:?}")
            });
            assert_eq!(
                out.dec_seq, r.seq,
                "clock {now}: decision carries another seq"
            );
            assert_eq!(
                (out.dec_first, out.dec_end),
                (r.first, r.end),
                "clock {now}: decision carries other regions"
            );
            if trace.contains(&r.seq) {
                eprintln!("{now}: {out:?}");
            }
            if out.dec_granted {
                st.grants += 1;
                for (h, _) in held.values() {
                    assert!(
                        !overlap(h, &r),
                        "clock {now}: {r:?} granted while {h:?} holds an overlap"
                    );
                }
                // Sequence order: no overlapping write with a lower sequence number is still
                // waiting for its lock, or rejected and not yet re-issued.
                for e in pending.values().chain(barriers.iter()) {
                    if overlap(e, &r)
                        && e.seq < r.seq
                        && !unordered.contains(&e.seq)
                        && !unordered.contains(&r.seq)
                    {
                        panic!("clock {now}: {r:?} granted before the earlier {e:?}");
                    }
                }
                if let Some((f, e, since)) = local {
                    if now - since > scan {
                        assert!(
                            !(r.first < e && f < r.end),
                            "clock {now}: {r:?} granted inside the local hold [{f}, {e})"
                        );
                    }
                }
                held.insert(out.dec_slot, (r, now + 1 + rng.below(40)));
            } else {
                st.rejections += 1;
                if out.dec_reason != RejectReason::OutOfRange as u64 {
                    barriers.push(r);
                    rejected.push(r);
                }
            }
        }
        for r in pending.values() {
            assert!(
                now - r.arrived < 3000,
                "clock {now}: {r:?} undecided for 3000 clocks"
            );
        }
    }
    st.cycles = now;
    assert!(
        st.grants > cycles / 40,
        "only {} grants in {cycles} clocks",
        st.grants
    );
    assert!(
        cycles < 5_000 || st.rejections > 0,
        "no contention reached the retry limit"
    );
    st
}

/// rust-hdl's simulation of the table.
impl<const N: usize, const S: usize> LockIo for super::LockTable<N, S> {
    fn set(&mut self, i: &LockIn) {
        use rust_hdl::prelude::*;
        self.req_valid.next = i.req_valid;
        self.req_lock_id.next = i.req_lock_id.to_bits();
        self.req_seq.next = i.req_seq.to_bits();
        self.req_first.next = i.req_first.to_bits();
        self.req_count.next = i.req_count.to_bits();
        self.region_count.next = i.region_count.to_bits();
        self.local_hold.next = i.local_hold;
        self.local_first.next = i.local_first.to_bits();
        self.local_end.next = i.local_end.to_bits();
        self.retry_backoff.next = i.retry_backoff.to_bits();
        self.retry_limit.next = i.retry_limit.to_bits();
        self.rel_valid.next = i.rel_valid;
        self.rel_slot.next = i.rel_slot.to_bits();
        self.rel_fail.next = i.rel_fail;
        self.clear_barriers.next = i.clear_barriers;
    }

    fn get(&mut self) -> LockOut {
        crate::bench::settle(self);
        LockOut {
            req_ready: self.req_ready.val(),
            dec_valid: self.dec_valid.val(),
            dec_granted: self.dec_granted.val(),
            dec_reason: self.dec_reason.val().to_u64(),
            dec_lock_id: self.dec_lock_id.val().to_u64(),
            dec_seq: self.dec_seq.val().to_u64(),
            dec_slot: self.dec_slot.val().to_u64(),
            dec_first: self.dec_first.val().to_u64(),
            dec_end: self.dec_end.val().to_u64(),
            retried: self.retried.val(),
            held: self.held.val().to_u64(),
            overflow: self.overflow.val(),
        }
    }

    fn tick(&mut self) {
        crate::bench::settle(self);
        crate::bench::cycle(self, |u| &mut u.clock);
    }
}

//! A linearizability checker for client histories, per block as a register (the P-compositional
//! split Porcupine and Knossos use: a history is linearizable iff each block's sub-history is).
//!
//! The search is Wing & Gong's, with Lowe's memoisation of (set of linearized operations, register
//! value): walk the history's call and return events in time order; at a call, try to linearize
//! the operation now (a read must see the current value); at a return whose operation was not
//! linearized yet, undo the last choice. An operation whose outcome is unknown (a failed write, a
//! compensation) returns after everything else, so it may take effect at any time after its call,
//! or, placed last, not at all.

use std::collections::HashSet;

use specmirror_core::Nanos;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Write(u64),
    Read(u64),
}

/// One operation on one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub call: Nanos,
    /// `None`: the outcome is unknown (it may have taken effect at any time after its call).
    pub ret: Option<Nanos>,
    pub kind: Kind,
    /// Who issued it, for messages.
    pub who: u64,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    call: bool,
    /// For a call: the index of its return event.
    other: usize,
}

/// Checks that `ops`, starting from register value `initial`, have a linearization. On failure
/// the error lists the operations (sorted by call) for the trace.
pub fn check_register(initial: u64, all: &[Op]) -> Result<(), String> {
    // A write of unknown outcome whose value no read returned changes nothing if it is placed
    // last (as if it never happened), so it can be left out: the search space stays small
    // however many writes a crash left undecided.
    let seen: HashSet<u64> = all
        .iter()
        .filter_map(|o| match o.kind {
            Kind::Read(v) => Some(v),
            Kind::Write(_) => None,
        })
        .collect();
    let ops: Vec<Op> = all
        .iter()
        .filter(|o| !matches!(o.kind, Kind::Write(v) if o.ret.is_none() && !seen.contains(&v)))
        .copied()
        .collect();
    let ops = &ops[..];
    if ops.is_empty() {
        return Ok(());
    }
    // Events in time order: at equal times calls come first, so operations that touch in time
    // count as concurrent (never a false alarm). Unknown returns go after everything.
    let mut order: Vec<(u128, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call as u128, false, i));
        let r = o.ret.map_or(u128::MAX, |r| r.max(o.call) as u128);
        order.push((r, true, i));
    }
    order.sort();
    let mut events: Vec<Event> = order
        .iter()
        .map(|&(_, is_ret, op)| Event {
            op,
            call: !is_ret,
            other: usize::MAX,
        })
        .collect();
    let mut ret_of = vec![usize::MAX; ops.len()];
    for (i, e) in events.iter().enumerate() {
        if !e.call {
            ret_of[e.op] = i;
        }
    }
    for e in events.iter_mut() {
        if e.call {
            e.other = ret_of[e.op];
        }
    }
    // A doubly linked list over the events, with a sentinel at index n.
    let n = events.len();
    let next_of = |i: usize| if i == n { 0 } else { i + 1 };
    let prev_of = |i: usize| if i == 0 { n } else { i - 1 };
    let mut next: Vec<usize> = (0..=n).map(next_of).collect();
    let mut prev: Vec<usize> = (0..=n).map(prev_of).collect();
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, x) = (prev[i], next[i]);
        next[p] = x;
        prev[x] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, x) = (prev[i], next[i]);
        next[p] = i;
        prev[x] = i;
    };
    let words = ops.len().div_ceil(64);
    let mut done = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, u64)> = HashSet::new();
    let mut stack: Vec<(usize, u64)> = Vec::new();
    let mut state = initial;
    let mut entry = next[n];
    while next[n] != n {
        if entry == n {
            // Cannot happen with a non-empty list: every call's return follows it.
            return Err(describe(initial, all));
        }
        let e = events[entry];
        if e.call {
            let (ok, new_state) = match ops[e.op].kind {
                Kind::Write(v) => (true, v),
                Kind::Read(v) => (v == state, state),
            };
            let mut key = done.clone();
            key[e.op / 64] |= 1 << (e.op % 64);
            if ok && cache.insert((key.clone(), new_state)) {
                stack.push((entry, state));
                state = new_state;
                done = key;
                unlink(&mut next, &mut prev, entry);
                unlink(&mut next, &mut prev, e.other);
                entry = next[n];
            } else {
                entry = next[entry];
            }
        } else {
            // An operation returns that could not be linearized before its return: backtrack.
            let Some((call, s)) = stack.pop() else {
                return Err(describe(initial, all));
            };
            let ce = events[call];
            state = s;
            done[ce.op / 64] &= !(1 << (ce.op % 64));
            relink(&mut next, &mut prev, ce.other);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}

fn describe(initial: u64, ops: &[Op]) -> String {
    let mut v: Vec<&Op> = ops.iter().collect();
    v.sort_by_key(|o| o.call);
    let mut s = format!("initial {initial:#x}; ");
    for o in v.iter().take(40) {
        let ret = o
            .ret
            .map_or("?".to_string(), |r| format!("{:.3}", r as f64 / 1e6));
        let what = match o.kind {
            Kind::Write(x) => format!("write {x:#x}"),
            Kind::Read(x) => format!("read {x:#x}"),
        };
        s += &format!("[{} {what} {:.3}..{ret}ms] ", o.who, o.call as f64 / 1e6);
    }
    if v.len() > 40 {
        s += &format!("... {} more", v.len() - 40);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: u64, call: Nanos, ret: Option<Nanos>) -> Op {
        Op {
            call,
            ret,
            kind: Kind::Write(v),
            who: 0,
        }
    }
    fn r(v: u64, call: Nanos, ret: Nanos) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind: Kind::Read(v),
            who: 0,
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            w(1, 0, Some(10)),
            r(1, 20, 30),
            w(2, 40, Some(50)),
            r(2, 60, 70),
        ];
        assert!(check_register(0, &h).is_ok());
    }

    #[test]
    fn stale_read_after_a_completed_write_is_not() {
        let h = [w(1, 0, Some(10)), r(0, 20, 30)];
        assert!(check_register(0, &h).is_err());
    }

    #[test]
    fn concurrent_writes_may_take_either_order_but_one_for_all_readers() {
        // Writes 1 and 2 overlap; reads agree on 2 last: fine.
        let ok = [
            w(1, 0, Some(100)),
            w(2, 0, Some(100)),
            r(1, 10, 20),
            r(2, 30, 40),
            r(2, 200, 210),
        ];
        assert!(check_register(0, &ok).is_ok());
        // One reader sees 2 and a later reader sees 1 after both writes ended: no single order.
        let bad = [
            w(1, 0, Some(100)),
            w(2, 0, Some(100)),
            r(2, 150, 160),
            r(1, 170, 180),
        ];
        assert!(check_register(0, &bad).is_err());
        // Read 2, then read 1, then read 2 again, all after the writes' calls: 2 cannot take
        // effect twice.
        let flip = [
            w(1, 0, Some(500)),
            w(2, 0, Some(500)),
            r(2, 10, 20),
            r(1, 30, 40),
            r(2, 50, 60),
        ];
        assert!(check_register(0, &flip).is_err());
    }

    #[test]
    fn an_unknown_write_may_or_may_not_take_effect() {
        let never = [w(1, 0, None), r(0, 10, 20), r(0, 30, 40)];
        assert!(check_register(0, &never).is_ok());
        let later = [w(1, 0, None), r(0, 10, 20), r(1, 30, 40)];
        assert!(check_register(0, &later).is_ok());
        // But it cannot be seen before it was called.
        let early = [r(1, 0, 5), w(1, 10, None)];
        assert!(check_register(0, &early).is_err());
    }

    #[test]
    fn many_undecided_writes_nobody_read_cost_nothing() {
        let mut h: Vec<Op> = (1..=5000).map(|v| w(v, v, None)).collect();
        h.push(w(9999, 0, Some(10)));
        h.push(r(9999, 20, 30));
        assert!(check_register(0, &h).is_ok());
        h.push(r(0, 40, 50));
        assert!(check_register(0, &h).is_err());
    }

    #[test]
    fn a_read_of_a_value_nobody_wrote_fails_with_the_history() {
        let h = [w(1, 0, Some(10)), r(7, 20, 30)];
        let e = check_register(0, &h).unwrap_err();
        assert!(e.contains("read 0x7"), "{e}");
    }
}

//! The verilated send tracker: in lockstep with rust-hdl's simulation (every output, every
//! clock), and for 10^6 clocks against the rules in software (`hdl::send_tracker::model`): every
//! completion the ABI's very entry, in order, every unmatched answer counted.

use rust_hdl::prelude::*;
use specmirror_hdl::bench::{cycle, settle};
use specmirror_hdl::send_tracker::model::{Inputs, Traffic};
use specmirror_hdl::SendTracker8;
use specmirror_verilated::{TrackerPort as P, VerilatedTracker};

/// Clocks per run; `SPECMIRROR_HDL_CYCLES` raises it.
fn cycles() -> u64 {
    std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

fn set_ver(m: &mut VerilatedTracker, i: &Inputs, ready: bool, wait: u64) {
    m.set(P::SentValid, i.sent.is_some() as u64);
    let (id, seq) = i.sent.unwrap_or_default();
    m.set(P::SentLockId, id);
    m.set(P::SentSeq, seq);
    m.set(P::AnsValid, i.answer.is_some() as u64);
    if let Some((ty, id, arg)) = i.answer {
        m.set(P::AnsTy, ty as u64);
        m.set(P::AnsLockId, id);
        m.set(P::AnsArg, arg);
    }
    m.set(P::CplReady, ready as u64);
    m.set(P::WaitLockId, wait);
}

fn set_hdl(u: &mut SendTracker8, i: &Inputs, ready: bool, wait: u64) {
    u.sent_valid.next = i.sent.is_some();
    let (id, seq) = i.sent.unwrap_or_default();
    u.sent_lock_id.next = id.to_bits();
    u.sent_seq.next = seq.to_bits();
    u.ans_valid.next = i.answer.is_some();
    if let Some((ty, id, arg)) = i.answer {
        u.ans_ty.next = (ty as u64).to_bits();
        u.ans_lock_id.next = id.to_bits();
        u.ans_arg.next = arg.to_bits();
    }
    u.cpl_ready.next = ready;
    u.wait_lock_id.next = wait.to_bits();
}

fn outputs_ver(m: &VerilatedTracker) -> Vec<u64> {
    [
        P::Room,
        P::Granted,
        P::Rejected,
        P::CplValid,
        P::CplData0,
        P::CplData1,
        P::CplData2,
        P::CplData3,
        P::Inflight,
        P::Unmatched,
        P::CplDrops,
    ]
    .iter()
    .map(|&p| m.get(p))
    .collect()
}

fn outputs_hdl(u: &SendTracker8) -> Vec<u64> {
    let d = u.cpl_data.val();
    vec![
        u.room.val() as u64,
        u.granted.val() as u64,
        u.rejected.val() as u64,
        u.cpl_valid.val() as u64,
        d.get_bits::<64>(0).to_u64(),
        d.get_bits::<64>(64).to_u64(),
        d.get_bits::<64>(128).to_u64(),
        d.get_bits::<64>(192).to_u64(),
        u.inflight.val().to_u64(),
        u.unmatched.val().to_u64(),
        u.cpl_drops.val().to_u64(),
    ]
}

fn clock(u: &mut SendTracker8) -> &mut Signal<In, Clock> {
    &mut u.clock
}

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle() {
    let mut u = specmirror_hdl::send_tracker::tests_support::connected();
    u.connect_all();
    let mut m = VerilatedTracker::new();
    // Answers every clock at times, the completion port often stalled: the FIFO fills and drops.
    let mut traffic = Traffic::new(0x10c5_7e90, 1);
    for t in 0..20_000u64 {
        let ready = traffic.below(100) < 40;
        // The lock the send path waits on: one of the recent ones.
        let wait = 100 + traffic.below(40);
        settle(&mut u);
        m.eval();
        assert_eq!(m.get(P::Room) != 0, u.room.val(), "room at clock {t}");
        let i = traffic.next(t, u.room.val());
        set_hdl(&mut u, &i, ready, wait);
        set_ver(&mut m, &i, ready, wait);
        settle(&mut u);
        m.eval();
        assert_eq!(outputs_ver(&m), outputs_hdl(&u), "clock {t}");
        cycle(&mut u, clock);
        m.tick();
    }
    settle(&mut u);
    assert!(u.cpl_drops.val().to_u64() > 0, "the run filled the FIFO");
}

#[test]
fn a_million_clocks_of_completions_match_the_rules() {
    let mut m = VerilatedTracker::new();
    let mut traffic = Traffic::new(0x10c5_7e91, 2);
    let n = cycles();
    let (mut got, mut answers) = (0u64, 0u64);
    for t in 0..n + 200 {
        m.eval();
        let i = if t < n {
            traffic.next(t, m.get(P::Room) != 0)
        } else {
            Inputs::default()
        };
        answers += i.answer.is_some() as u64;
        let ready = t >= n || traffic.below(100) < 95;
        set_ver(&mut m, &i, ready, 0);
        m.eval();
        if m.get(P::CplValid) != 0 && ready {
            let mut b = [0u8; 32];
            for (w, p) in [P::CplData0, P::CplData1, P::CplData2, P::CplData3]
                .into_iter()
                .enumerate()
            {
                b[8 * w..8 * w + 8].copy_from_slice(&m.get(p).to_le_bytes());
            }
            let want = traffic
                .want
                .pop_front()
                .unwrap_or_else(|| panic!("clock {t}: a completion the rules do not make"));
            assert_eq!(b, want, "completion {got} at clock {t}");
            got += 1;
        }
        m.tick();
    }
    m.eval();
    assert!(
        traffic.want.is_empty(),
        "{} completions missing",
        traffic.want.len()
    );
    assert_eq!(m.get(P::CplDrops), 0);
    assert_eq!(m.get(P::Unmatched), traffic.model.unmatched);
    assert_eq!(
        m.get(P::Inflight).count_ones() as usize,
        traffic.model.entries.len()
    );
    assert!(got > n / 20, "{got} completions from {answers} answers");
    eprintln!(
        "{n} clocks: {answers} answers, {got} completions, {} unmatched",
        traffic.model.unmatched
    );
}

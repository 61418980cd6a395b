//! The verilated target path (frame parser, lock table, data buffer, answer cache, answers)
//! against the software target: it agrees with rust-hdl's simulation on every output, every clock,
//! and long random runs through a network that loses, repeats and corrupts frames both ways end
//! with exactly the software target's answers and volume. The host model checks at every clock
//! that no write leaves before its lock is held, or outside the regions its lock holds.

use specmirror_hdl::target_path::host::{
    assert_same_answers, software, writes, Faults, Host, TargetIo, TpIn, TpOut, MAX_ROUNDS,
};
use specmirror_hdl::target_path::{tests_support, TargetPath};
use specmirror_verilated::{Ver, VerilatedTargetPath};

/// Both simulators under one workload: every output compared at every read.
struct Both {
    hdl: TargetPath<16, 4>,
    ver: Ver,
    reads: u64,
}

impl TargetIo for Both {
    fn set(&mut self, i: &TpIn) {
        self.hdl.set(i);
        self.ver.set(i);
    }

    fn get(&mut self) -> TpOut {
        let (a, b) = (self.hdl.get(), self.ver.get());
        // The data lines are compared while they carry data.
        let quiet = |mut o: TpOut| {
            if !o.wr_valid {
                o.wr_data = 0;
            }
            if !o.tx_valid {
                o.tx_data = 0;
            }
            o
        };
        assert_eq!(
            quiet(a),
            quiet(b),
            "read {}: rust-hdl and Verilator disagree",
            self.reads
        );
        self.reads += 1;
        a
    }

    fn tick(&mut self) {
        self.hdl.tick();
        self.ver.tick();
    }
}

/// Clocks the long runs take at least; `SPECMIRROR_HDL_CYCLES` raises it.
fn cycles() -> u64 {
    std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

const FAULTS: Faults = Faults {
    lose_in: 3,
    repeat_in: 3,
    corrupt_in: 2,
    lose_out: 5,
};

#[test]
fn the_verilated_target_path_agrees_with_rust_hdl_clock_by_clock() {
    let mut hdl = tests_support::connected::<16, 4>();
    rust_hdl::prelude::Block::connect_all(&mut hdl);
    let both = Both {
        hdl,
        ver: Ver(VerilatedTargetPath::new()),
        reads: 0,
    };
    let frames = writes(11, 10);
    let mut h = Host::new(both, 11);
    h.faults = FAULTS;
    for f in &frames {
        h.send(f);
    }
    let rounds = h.retransmit_until_done(&frames, 400);
    assert!(rounds < MAX_ROUNDS);
    let (sw, volume) = software(&frames);
    assert_same_answers(&h.answers, &sw, "lockstep");
    assert!(h.volume == volume, "the volumes differ");
    assert!(h.model.reads > 5_000, "{} reads", h.model.reads);
}

#[test]
fn long_runs_through_a_faulty_network_end_with_the_software_targets_answers_and_volume() {
    let target = cycles();
    let first: u64 = std::env::var("SPECMIRROR_HDL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (mut clocks, mut runs, mut seed) = (0u64, 0u64, first);
    let mut totals = TpOut::default();
    let started = std::time::Instant::now();
    while clocks < target {
        let n = 200;
        if std::env::var("SPECMIRROR_HDL_TRACE").is_ok() {
            eprintln!("seed {seed}");
        }
        let frames = writes(seed, n);
        let mut h = Host::new(Ver(VerilatedTargetPath::new()), seed);
        h.faults = FAULTS;
        for f in &frames {
            h.send(f);
        }
        let rounds = h.retransmit_until_done(&frames, 400);
        assert!(
            rounds < MAX_ROUNDS,
            "seed {seed}: {rounds} rounds of retransmission"
        );
        let (sw, volume) = software(&frames);
        assert_same_answers(&h.answers, &sw, &format!("seed {seed}"));
        assert!(h.volume == volume, "seed {seed}: the volumes differ");
        assert_eq!(
            h.writes.len() as u64,
            n,
            "seed {seed}: every write written exactly once"
        );
        assert_eq!(h.out.held, 0, "seed {seed}: every lock released");
        assert_eq!(h.out.data_violations, 0, "seed {seed}");
        let o = h.out;
        totals.frames_bad += o.frames_bad;
        totals.lock_ahead += o.lock_ahead;
        totals.lock_repeats += o.lock_repeats;
        totals.answers_repeated += o.answers_repeated;
        totals.data_drops += o.data_drops;
        totals.data_expired += o.data_expired;
        totals.data_repeats += o.data_repeats;
        clocks += h.now;
        runs += 1;
        seed += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{runs} runs, {clocks} clocks in {secs:.1} s ({:.0} clocks/s): bad frames {}, locks ahead {}, \
         repeated locks {}, answers repeated {}, data dropped {}, expired {}, repeated {}",
        clocks as f64 / secs,
        totals.frames_bad,
        totals.lock_ahead,
        totals.lock_repeats,
        totals.answers_repeated,
        totals.data_drops,
        totals.data_expired,
        totals.data_repeats
    );
    assert!(totals.frames_bad > 0 && totals.lock_repeats > 0 && totals.answers_repeated > 0);
}

/// Clocks from a frame's last word to what it causes, for an uncontended write (printed, not
/// asserted beyond their order): the LOCK's last word to the first word of LOCK_GRANTED, the
/// DATA's last word to the first word on the volume-write port, the 4 KiB burst, and the host's
/// completion to the first word of WRITE_DONE.
#[test]
fn latency_of_an_uncontended_write_in_clocks() {
    use specmirror_abi::Flags;
    use specmirror_hdl::target_path::host::{data, lock, pattern};
    let mut h = Host::new(Ver(VerilatedTargetPath::new()), 1);
    h.ready_percent = 100;
    h.done_delay = 0;
    h.send(&lock(1, 10, 0, 1));
    h.send(&data(1, 10, 0, &pattern(1, 4096), Flags::NONE));
    let (mut ends, mut tx_starts) = (Vec::new(), Vec::new());
    let (mut wr_first, mut wr_last, mut done_at) = (None, None, None);
    let mut in_tx = false;
    for _ in 0..3000 {
        h.step();
        let t = h.now - 1;
        if h.inp.rx_last {
            ends.push(t);
        }
        if h.out.tx_valid && !in_tx {
            tx_starts.push(t);
        }
        in_tx = h.out.tx_valid && !h.out.tx_last;
        if h.out.wr_valid && wr_first.is_none() {
            wr_first = Some(t);
        }
        if h.out.wr_valid && h.out.wr_last {
            wr_last = Some(t);
        }
        if h.inp.done_valid && h.out.done_ready && done_at.is_none() {
            done_at = Some(t);
        }
    }
    let (lock_end, data_end) = (ends[0], ends[1]);
    let (granted, done) = (tx_starts[0], tx_starts[1]);
    let (wr_first, wr_last, done_at) = (wr_first.unwrap(), wr_last.unwrap(), done_at.unwrap());
    assert!(lock_end < granted && data_end < wr_first && wr_first < wr_last && done_at < done);
    eprintln!(
        "LOCK to LOCK_GRANTED {} clocks; DATA to the write port {} clocks; 4 KiB burst {} clocks; \
         completion to WRITE_DONE {} clocks",
        granted - lock_end,
        wr_first - data_end,
        wr_last - wr_first + 1,
        done - done_at
    );
}

//! The verilated target device (register block, receive rings, target path): in lockstep with
//! rust-hdl's simulation under the host model (every output, every clock), and for 10^6 clocks
//! and more (`SPECMIRROR_HDL_CYCLES`) alone under it: every write reaches host memory whole, every
//! answer comes after the host's outcome and carries it, the counters add up.

use specmirror_hdl::target_device::host::{run, Hdl, Outcome, Params, TdIn, TdIo, TdOut};
use specmirror_verilated::target_device::VerTargetDevice;

/// Clocks the long run takes at least; `SPECMIRROR_HDL_CYCLES` raises it.
fn cycles() -> u64 {
    std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Both models on the same inputs; their outputs must agree every clock.
struct Both {
    hdl: Hdl,
    ver: VerTargetDevice,
    clock: u64,
}

impl TdIo for Both {
    fn set(&mut self, i: &TdIn) {
        self.hdl.set(i);
        self.ver.set(i);
    }

    fn get(&mut self) -> TdOut {
        let (h, v) = (self.hdl.get(), self.ver.get());
        assert_eq!(
            h, v,
            "rust-hdl and Verilator differ at clock {}",
            self.clock
        );
        h
    }

    fn tick(&mut self) {
        self.hdl.tick();
        self.ver.tick();
        self.clock += 1;
    }
}

/// What every run must show: each write answered, one interrupt per write handed over, and the
/// counters (FRAMES_RX: a LOCK and a DATA per write, and an ABORT per failed one; FRAMES_TX: a
/// grant and an outcome per write).
fn check(o: &Outcome, writes: usize, what: &str) {
    assert_eq!(o.done + o.failed, writes, "{what}: {o:?}");
    assert_eq!(o.irqs, writes as u64, "{what}: one interrupt per write");
    let w = writes as u32;
    assert_eq!(
        o.counters,
        [2 * w + o.failed as u32, 2 * w, w, 0],
        "{what}: FRAMES_RX, FRAMES_TX, LOCKS_GRANTED, FRAMES_BAD"
    );
}

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle() {
    // rust-hdl simulates the whole device at a few thousand clocks a second: one short run.
    let mut both = Both {
        hdl: Hdl::new(),
        ver: VerTargetDevice::new(),
        clock: 0,
    };
    let p = Params {
        seed: 4,
        writes: 10,
        window: 3,
        look: 30,
        stall_in: 5,
        stall: 600,
    };
    let o = run(&mut both, &p);
    check(&o, 10, "lockstep");
    assert!(o.failed > 0, "the host failed some writes: {o:?}");
    eprintln!("lockstep: {} clocks, {o:?}", both.clock);
}

#[test]
fn a_million_clocks_of_writes_reach_the_host_and_are_answered() {
    let want = cycles();
    let (mut clocks, mut writes, mut failed) = (0u64, 0usize, 0usize);
    let mut seed = 31u64;
    while clocks < want {
        let n = 400;
        let p = Params {
            seed,
            writes: n,
            window: [1usize, 2, 3][seed as usize % 3],
            look: 60,
            stall_in: 50,
            stall: 5_000,
        };
        let o = run(&mut VerTargetDevice::new(), &p);
        check(&o, n, &format!("seed {seed}"));
        clocks += o.clocks;
        writes += n;
        failed += o.failed;
        seed += 1;
    }
    assert!(failed > 0, "failed writes were seen");
    eprintln!("target device: {clocks} clocks, {writes} writes, {failed} failed by the host");
}

//! The verilated source path (send path, answer parser, send tracker) in a closed loop with the
//! software target core: in lockstep with rust-hdl's simulation (every output, every clock), and
//! for thousands of writes in either explicit-lock mode, every completion as the protocol says.

use specmirror_abi::ring::Mode;
use specmirror_hdl::source_path::host::{check, run, workload, Hdl, SourceIo, SpIn, SpOut};
use specmirror_verilated::{VerSource, VerilatedSourcePath};

/// Both simulators driven alike; every output compared every clock.
struct Both(Hdl, VerSource, u64);

impl SourceIo for Both {
    fn set(&mut self, i: &SpIn) {
        self.0.set(i);
        self.1.set(i);
    }
    fn get(&mut self) -> SpOut {
        let (a, b) = (self.0.get(), self.1.get());
        assert_eq!(a, b, "rust-hdl and Verilator differ at clock {}", self.2);
        a
    }
    fn tick(&mut self) {
        self.0.tick();
        self.1.tick();
        self.2 += 1;
    }
}

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle_in_the_closed_loop() {
    let writes = workload(0x50c0_0101, 30, None);
    let mut both = Both(Hdl::new(), VerSource(VerilatedSourcePath::new()), 0);
    let o = run(&mut both, &writes, 0x50c0_0101);
    check(&writes, &o, "lockstep");
}

/// Writes per run; `SPECMIRROR_HDL_WRITES` raises it.
fn writes() -> u64 {
    std::env::var("SPECMIRROR_HDL_WRITES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn thousands_of_writes_complete_as_the_protocol_says() {
    let n = writes();
    for (mode, seed) in [
        (None, 0x50c0_0201),
        (Some(Mode::Speculative), 0x50c0_0202),
        (Some(Mode::Conservative), 0x50c0_0203),
    ] {
        let writes = workload(seed, n, mode);
        let mut m = VerSource(VerilatedSourcePath::new());
        let o = run(&mut m, &writes, seed);
        check(&writes, &o, &format!("{mode:?}"));
        eprintln!(
            "{mode:?}: {n} writes in {} clocks, {} completions, {} unmatched answers",
            o.clocks,
            o.completions.len(),
            o.out.unmatched
        );
    }
}

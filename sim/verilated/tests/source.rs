//! The verilated source path (send path, answer parser, send tracker) in a closed loop with the
//! software target core: in lockstep with rust-hdl's simulation (every output, every clock), and
//! for thousands of writes in either explicit-lock mode, every completion as the protocol says.
//! And hardware to hardware: the verilated source path mirrors to the verilated target path.

use specmirror_abi::ring::Mode;
use specmirror_hdl::source_path::host::{
    check, run, workload, HardwarePeer, Hdl, SoftwarePeer, SourceIo, SpIn, SpOut,
};
use specmirror_hdl::target_path::host::{Host, REGION, REGIONS};
use specmirror_verilated::{Ver, VerSource, VerilatedSourcePath, VerilatedTargetPath};

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
    let o = run(&mut both, &mut SoftwarePeer::new(), &writes, 8, 0x50c0_0101);
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
        let o = run(&mut m, &mut SoftwarePeer::new(), &writes, 8, seed);
        check(&writes, &o, &format!("{mode:?}"));
        eprintln!(
            "{mode:?}: {n} writes in {} clocks, {} completions, {} unmatched answers",
            o.clocks,
            o.completions.len(),
            o.out.unmatched
        );
    }
}

#[test]
fn the_hardware_source_mirrors_to_the_hardware_target() {
    let n = writes() / 3;
    for (mode, seed) in [
        (None, 0x50c0_0301),
        (Some(Mode::Speculative), 0x50c0_0302),
        (Some(Mode::Conservative), 0x50c0_0303),
    ] {
        let mut writes = workload(seed, n, mode);
        // A write past the volume's end goes in conservative mode here: the hardware target's
        // data buffer keeps data that came for a lock it then rejects until `data_timeout`, and
        // with the buffer full it drops the next write's data, which only a retransmission (the
        // protocol core's timers, not in this loop) would bring back.
        for w in writes.iter_mut().filter(|w| w.offset >= REGIONS * REGION) {
            w.mode = Mode::Conservative;
        }
        let mut source = VerSource(VerilatedSourcePath::new());
        let mut target = HardwarePeer(Host::new(Ver(VerilatedTargetPath::new()), seed));
        // Three writes in flight at most: the target's data buffer (4 slots) never has to drop one,
        // and this loop has no retransmission (the protocol core's timers do that in the product).
        let o = run(&mut source, &mut target, &writes, 3, seed);
        check(&writes, &o, &format!("hardware to hardware, {mode:?}"));
        let c = target.0.out;
        assert_eq!(
            (c.held, c.data_violations, c.frames_bad, c.data_drops),
            (0, 0, 0, 0)
        );
        eprintln!(
            "hardware to hardware, {mode:?}: {n} writes in {} clocks, {} completions",
            o.clocks,
            o.completions.len()
        );
    }
}

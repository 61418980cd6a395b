//! The verilated source device (register block, ring engine, source path) with a host driving
//! its rings through BAR0 and a DMA model serving its reads: in lockstep with rust-hdl's
//! simulation, then for thousands of writes through small rings (many wraps, full rings on both
//! sides) against the software target core, every completion as the protocol says.

use specmirror_abi::ring::Mode;
use specmirror_hdl::mirror_device::host::{
    check, run, with_host_frames, DevIn, DevOut, DeviceIo, Hdl,
};
use specmirror_hdl::source_path::host::{workload, SoftwarePeer};
use specmirror_verilated::device::{VerDevice, VerilatedDevice};

/// Both simulators driven alike; every output compared every clock.
struct Both(Hdl, VerDevice, u64);

impl DeviceIo for Both {
    fn set(&mut self, i: &DevIn) {
        self.0.set(i);
        self.1.set(i);
    }
    fn get(&mut self) -> DevOut {
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
fn rust_hdl_and_verilator_agree_cycle_by_cycle_through_the_rings() {
    let writes = with_host_frames(workload(0xde71_0101, 30, None), 4);
    let mut both = Both(Hdl::new(), VerDevice(VerilatedDevice::new()), 0);
    let d = run(
        &mut both,
        &mut SoftwarePeer::new(),
        &writes,
        2,
        8,
        true,
        0xde71_0101,
    );
    check(&writes, &d, "lockstep");
}

/// Writes per run; `SPECMIRROR_HDL_WRITES` raises it.
fn writes() -> u64 {
    std::env::var("SPECMIRROR_HDL_WRITES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn thousands_of_writes_through_the_rings_complete_as_the_protocol_says() {
    let n = writes();
    for (mode, log2, seed) in [
        (None, 2, 0xde71_0201),
        (Some(Mode::Speculative), 3, 0xde71_0202),
        (Some(Mode::Conservative), 5, 0xde71_0203),
    ] {
        // The mixed run carries the host's own frames too, in ring order with the writes.
        let writes = if mode.is_none() {
            with_host_frames(workload(seed, n, mode), 5)
        } else {
            workload(seed, n, mode)
        };
        let mut m = VerDevice(VerilatedDevice::new());
        let d = run(
            &mut m,
            &mut SoftwarePeer::new(),
            &writes,
            log2,
            8,
            true,
            seed,
        );
        check(&writes, &d, &format!("{mode:?}"));
        eprintln!(
            "{mode:?}: {n} writes through rings of {} in {} clocks ({:.0} per write), {} completions",
            1 << log2,
            d.outcome.clocks,
            d.outcome.clocks as f64 / n as f64,
            d.outcome.completions.len(),
        );
    }
}

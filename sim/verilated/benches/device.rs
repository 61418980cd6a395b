//! What the source device costs and carries: `cargo bench -p specmirror-verilated --bench device`.
//!
//! 1. Clocks per write in simulation: the source path fed directly (descriptors and data on its
//!    ports) against the whole device fed through the rings by DMA (descriptor fetch, data fetch,
//!    completion writes), the same writes, the same target model, 8 writes in flight.
//! 2. The simulated device behind the driver's `Device` seam, mirroring to the software target
//!    engine over loopback TCP: writes per second and post-to-WRITE_DONE latency at 1 and 8 in
//!    flight, and the simulated clock rate.
//!
//! Figures are ratios within one run where they can be; the machine is shared.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use specmirror_abi::ring::Mode;
use specmirror_driver::Device;
use specmirror_hdl::mirror_device::host as dev_host;
use specmirror_hdl::source_path::host::{self as sp_host, workload, SoftwarePeer};
use specmirror_verilated::device::{VerDevice, VerilatedDevice};
use specmirror_verilated::sim_device::{SimConfig, SimDevice, TcpLink};
use specmirror_verilated::{VerSource, VerilatedSourcePath};

fn main() {
    let n = 2000u64;
    println!("== clocks per write, {n} writes of up to 512 bytes, 8 in flight, round trips of 50 to 150 clocks");
    println!(
        "{:<14} {:>12} {:>12} {:>8}",
        "mode", "source path", "device", "ratio"
    );
    for (mode, seed) in [
        (Mode::Speculative, 0xbe7c_0001u64),
        (Mode::Conservative, 0xbe7c_0002),
    ] {
        let writes = workload(seed, n, Some(mode));
        let t = Instant::now();
        let a = sp_host::run(
            &mut VerSource(VerilatedSourcePath::new()),
            &mut SoftwarePeer::new(),
            &writes,
            8,
            seed,
        );
        sp_host::check(&writes, &a, "source path");
        let mut m = VerDevice(VerilatedDevice::new());
        let b = dev_host::run(&mut m, &mut SoftwarePeer::new(), &writes, 5, 8, false, seed);
        dev_host::check(&writes, &b, "device");
        let secs = t.elapsed().as_secs_f64();
        let (ca, cb) = (
            a.clocks as f64 / n as f64,
            b.outcome.clocks as f64 / n as f64,
        );
        println!(
            "{:<14} {:>12.0} {:>12.0} {:>8.2}   ({:.2} M clocks/s simulated)",
            mode.name(),
            ca,
            cb,
            cb / ca,
            (a.clocks + b.outcome.clocks) as f64 / secs / 1e6
        );
    }

    println!();
    println!(
        "== the simulated device behind the Device seam, to the software target over loopback TCP"
    );
    println!(
        "{:<10} {:>6} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "in flight", "bytes", "writes/s", "p50 µs", "p99 µs", "clocks/write", "M clocks/s"
    );
    for (window, max_len, n) in [(1u32, 4096usize, 400u64), (8, 4096, 1500), (8, 65536, 400)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("target.img");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let stream = support::target_and_link(&path, &rt);
        let dev = SimDevice::spawn(TcpLink::new(stream).expect("link"), SimConfig::default())
            .expect("start the device");
        dev.check_identity().expect("a specmirror device");
        let run = support::mirror(&dev, n, window, max_len, 0xbe7c_0100 + window as u64);
        assert!(
            std::fs::read(&path).expect("target volume") == run.volume,
            "the target's volume differs"
        );
        assert_eq!(run.granted, n, "one LOCK_GRANTED per write");
        let st = dev.stop();
        let mut l = run.latencies.clone();
        l.sort();
        let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<10} {:>6} {:>10.0} {:>10.0} {:>10.0} {:>12} {:>14.2}",
            window,
            format!("≤{}K", max_len / 1024),
            n as f64 / run.wall.as_secs_f64(),
            us(l[l.len() / 2]),
            us(l[l.len() * 99 / 100]),
            st.clocks / n,
            st.clocks as f64 / run.wall.as_secs_f64() / 1e6
        );
    }
}

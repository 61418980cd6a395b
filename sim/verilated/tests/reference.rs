//! A long random workload through the verilated send path: random descriptors in every mode,
//! random lengths, random back-pressure and late data, random grant delays. Every frame must be
//! the software encoder's, byte for byte. At least 10^6 cycles; `SPECMIRROR_HDL_CYCLES` raises it.

mod common;

use common::{Driver, Model};
use specmirror_verilated::VerilatedSender;

#[test]
fn a_million_cycles_of_random_descriptors_match_the_reference() {
    let cycles: u64 = std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .map(|s| s.parse().expect("SPECMIRROR_HDL_CYCLES is a number"))
        .unwrap_or(1_000_000);
    for (seed, stall) in [(1u64, 0u64), (2, 20), (3, 50)] {
        let mut m = VerilatedSender::new();
        let mut d = Driver::new(seed * 0x9e37_79b9, stall);
        let t = std::time::Instant::now();
        while d.cycle < cycles / 3 {
            d.drive(&mut m);
            Model::settle(&mut m);
            d.sample_and_tick(&mut m).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        assert!(d.descriptors > 1000, "only {} descriptors", d.descriptors);
        eprintln!(
            "seed {seed}, {stall}% stalls: {} cycles, {} descriptors, {:.1} M cycles/s (driver included)",
            d.cycle,
            d.descriptors,
            d.cycle as f64 / secs / 1e6
        );
    }
}

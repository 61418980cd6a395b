//! Descriptors per second through the rings with the fake device, on one core: the host pushes a
//! batch and rings once, the device consumes and completes, the host polls and releases.
//!   ring-bench [DESCRIPTORS] [RING_ENTRIES] [BATCH]

use std::time::Instant;

use specmirror_abi::ring::{Descriptor, Mode};
use specmirror_driver::fake::FakeDevice;
use specmirror_driver::{ring, Device};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: DESCRIPTORS RING_ENTRIES BATCH"))
        .collect();
    let total = args.first().copied().unwrap_or(10_000_000);
    let entries = args.get(1).copied().unwrap_or(1024) as u32;
    let batch = args.get(2).copied().unwrap_or(32).min(entries as u64);
    let dev = FakeDevice::new();
    let (mut sq, mut cq) = ring::setup(&dev, entries).expect("rings");
    let mut d = Descriptor {
        length: 4096.into(),
        mode: Mode::Speculative as u8,
        ..Default::default()
    };
    let t = Instant::now();
    let (mut sent, mut done) = (0u64, 0u64);
    while done < total {
        let mut n = 0;
        while n < batch && sent < total {
            d.seq = sent.into();
            if sq.push(dev.mmio(), &d).is_err() {
                break;
            }
            sent += 1;
            n += 1;
        }
        sq.doorbell(dev.mmio());
        dev.step();
        while let Some(c) = cq.poll() {
            assert_eq!(c.seq.get(), done, "completions in order");
            done += 1;
        }
        cq.release(dev.mmio());
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"rings_fake_device\",\"descriptors\":{total},\"ring_entries\":{entries},\"batch\":{batch},\"seconds\":{secs:.3},\"descriptors_per_s\":{:.0}}}",
        total as f64 / secs
    );
}

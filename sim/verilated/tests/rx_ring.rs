//! The verilated receive rings: in lockstep with rust-hdl's simulation under the host model
//! (every output, every clock), and for 10^6 clocks and more (`SPECMIRROR_HDL_CYCLES`) alone
//! under it: every write reaches the host whole, no slot is overwritten before its release, every
//! outcome comes back in order.

use specmirror_hdl::rx_ring::host::{run, Hdl, Params, RxIn, RxIo, RxOut};
use specmirror_verilated::{RxRingPort as P, VerilatedRxRing};

/// Clocks the long run takes at least; `SPECMIRROR_HDL_CYCLES` raises it.
fn cycles() -> u64 {
    std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

struct Ver(VerilatedRxRing);

impl RxIo for Ver {
    fn set(&mut self, i: &RxIn) {
        let m = &mut self.0;
        for (p, v) in [
            (P::Enable, i.enable as u64),
            (P::RxBase, i.rx_base),
            (P::RxLog2, i.rx_log2),
            (P::RxHead, i.rx_head),
            (P::BufBase, i.buf_base),
            (P::DoneBase, i.done_base),
            (P::DoneLog2, i.done_log2),
            (P::DoneTail, i.done_tail),
            (P::InValid, i.in_valid as u64),
            (P::InData, i.in_data),
            (P::InLast, i.in_last as u64),
            (P::InOffset, i.in_offset),
            (P::InLen, i.in_len),
            (P::InFua, i.in_fua as u64),
            (P::InFrame, i.in_frame as u64),
            (P::InTag, i.in_tag),
            (P::DoneReady, i.done_ready as u64),
            (P::WrReady, i.wr_ready as u64),
            (P::RdReqReady, i.rd_req_ready as u64),
            (P::RdValid, i.rd_valid as u64),
            (P::RdData, i.rd_data),
        ] {
            m.set(p, v);
        }
        m.eval();
    }

    fn get(&mut self) -> RxOut {
        let m = &self.0;
        RxOut {
            rx_tail: m.get(P::RxTail),
            done_head: m.get(P::DoneHead),
            in_ready: m.get(P::InReady) != 0,
            done_valid: m.get(P::DoneValid) != 0,
            done_tag: m.get(P::DoneTag),
            done_error: m.get(P::DoneError),
            wr_valid: m.get(P::WrValid) != 0,
            wr_addr: m.get(P::WrAddr),
            wr_data: m.get(P::WrData),
            rd_req_valid: m.get(P::RdReqValid) != 0,
            rd_req_addr: m.get(P::RdReqAddr),
            rd_req_words: m.get(P::RdReqWords),
            rd_ready: m.get(P::RdReady) != 0,
            irq: m.get(P::Irq) != 0,
        }
    }

    fn tick(&mut self) {
        self.0.tick();
    }
}

/// Both models on the same inputs; their outputs must agree every clock.
struct Both {
    hdl: Hdl,
    ver: Ver,
    clock: u64,
}

impl RxIo for Both {
    fn set(&mut self, i: &RxIn) {
        self.hdl.set(i);
        self.ver.set(i);
    }

    fn get(&mut self) -> RxOut {
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

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle() {
    for (seed, log2) in [(11u64, 2u32), (12, 4)] {
        let mut both = Both {
            hdl: Hdl::new(),
            ver: Ver(VerilatedRxRing::new()),
            clock: 0,
        };
        let p = Params {
            seed,
            writes: 150,
            log2,
            look: 40,
            stall_in: 15,
            stall: 4000,
        };
        let o = run(&mut both, &p);
        assert_eq!(o.done.len(), 150);
        assert!(o.full_clocks > 0, "seed {seed}: the ring never filled");
    }
}

#[test]
fn a_million_clocks_of_writes_reach_the_host_whole() {
    let want = cycles();
    let (mut clocks, mut writes, mut full, mut failed) = (0u64, 0usize, 0u64, 0usize);
    let mut seed = 21u64;
    while clocks < want {
        let p = Params {
            seed,
            writes: 1000,
            log2: [2u32, 3, 5][seed as usize % 3],
            look: 60,
            stall_in: 100,
            stall: 5_000,
        };
        let o = run(&mut Ver(VerilatedRxRing::new()), &p);
        assert_eq!(o.done.len(), 1000, "seed {seed}");
        assert_eq!(o.irqs, 1000, "seed {seed}: one interrupt per entry");
        clocks += o.clocks;
        writes += o.handed;
        full += o.full_clocks;
        failed += o.done.iter().filter(|d| d.1 != 0).count();
        seed += 1;
    }
    assert!(
        full > 0 && failed > 0,
        "full rings and failed writes were seen"
    );
    eprintln!(
        "receive rings: {clocks} clocks, {writes} writes, {full} clocks full, {failed} failed"
    );
}

/// The driver's side of the receive rings (`specmirror_driver::rx_ring`) takes every write from
/// the verilated rings, through the DMA memory it allocated, and hands the outcomes back: the
/// driver and the device agree on the layouts and the phases, pass after pass.
#[test]
fn the_driver_takes_every_write_from_the_verilated_rings() {
    use specmirror_driver::rx_ring::ReceiveRings;
    use specmirror_driver::{DeviceError, DmaMemory};
    use specmirror_hdl::bench::Rng;
    use std::collections::VecDeque;

    let next_bus = std::cell::Cell::new(0x10_0000u64);
    let mut rings = ReceiveRings::new(8, |n| {
        let bus = next_bus.get();
        next_bus.set(bus + 0x10_0000);
        Ok::<_, DeviceError>(DmaMemory::anonymous(n)?.with_bus_addr(bus))
    })
    .expect("rings");
    // The device's DMA: a bus address into one of the driver's memories.
    fn resolve(rings: &ReceiveRings, bus: u64) -> (&DmaMemory, usize) {
        rings
            .memories()
            .into_iter()
            .find(|m| bus >= m.bus_addr() && bus + 8 <= m.bus_addr() + m.len() as u64)
            .map(|m| (m, (bus - m.bus_addr()) as usize))
            .unwrap_or_else(|| panic!("DMA outside the driver's memory: {bus:#x}"))
    }
    let [rx, bufs, done] = rings.memories().map(|m| m.bus_addr());
    let mut m = Ver(VerilatedRxRing::new());
    let mut rng = Rng(0x5eed_0042);
    let n = 400usize;
    let mut writes: VecDeque<(u64, Vec<u8>, bool, u8)> = (0..n)
        .map(|i| {
            let len = 1 + rng.below(4096) as usize;
            let data = (0..len).map(|_| rng.next_u64() as u8).collect();
            (
                rng.next_u64() >> 24,
                data,
                rng.below(2) == 0,
                (i % 16) as u8,
            )
        })
        .collect();
    let mut sent = VecDeque::new();
    let mut outcomes = VecDeque::new();
    let (mut word, mut reads, mut taken, mut back) = (0usize, VecDeque::new(), 0usize, 0usize);
    let mut clocks = 0u64;
    while back < n {
        clocks += 1;
        assert!(
            clocks < 5_000_000,
            "stuck: {taken} taken, {back} outcomes back"
        );
        let mut i = RxIn {
            enable: true,
            rx_base: rx,
            rx_log2: rings.log2() as u64,
            rx_head: rings.head() as u64,
            buf_base: bufs,
            done_base: done,
            done_log2: rings.log2() as u64,
            done_tail: rings.done_tail() as u64,
            wr_ready: rng.below(4) != 0,
            rd_req_ready: rng.below(2) == 0,
            done_ready: rng.below(2) == 0,
            ..RxIn::default()
        };
        if let Some((offset, data, fua, tag)) = writes.front() {
            let mut b = [0u8; 8];
            let to = (word * 8 + 8).min(data.len());
            b[..to - word * 8].copy_from_slice(&data[word * 8..to]);
            i.in_valid = rng.below(3) != 0;
            i.in_data = u64::from_le_bytes(b);
            i.in_last = to == data.len();
            (i.in_offset, i.in_len, i.in_fua, i.in_tag) =
                (*offset, data.len() as u64, *fua, *tag as u64);
        }
        if let Some(&a) = reads.front() {
            let (mem, at) = resolve(&rings, a);
            let mut b = [0u8; 8];
            mem.read(at, &mut b);
            i.rd_valid = rng.below(2) == 0;
            i.rd_data = u64::from_le_bytes(b);
        }
        m.set(&i);
        let out = m.get();
        if i.in_valid && out.in_ready {
            word += 1;
            if word * 8 >= writes.front().expect("on offer").1.len() {
                sent.push_back(writes.pop_front().expect("on offer"));
                word = 0;
            }
        }
        if out.wr_valid && i.wr_ready {
            let (mem, at) = resolve(&rings, out.wr_addr);
            mem.write(at, &out.wr_data.to_le_bytes());
        }
        if out.rd_req_valid && i.rd_req_ready {
            reads.push_back(out.rd_req_addr);
        }
        if i.rd_valid && out.rd_ready {
            reads.pop_front();
        }
        if out.done_valid && i.done_ready {
            let want = outcomes.pop_front().expect("an outcome the driver posted");
            assert_eq!((out.done_tag as u8, out.done_error as u32), want);
            back += 1;
        }
        // The host: now and then, takes what is there and answers it (some writes fail).
        if rng.below(50) == 0 {
            // An outcome needs room in the done ring: take no more writes than it has.
            while rings.done_tail().wrapping_sub(out.done_head as u32) < 8 {
                let Some(r) = rings.poll().expect("a valid entry") else {
                    break;
                };
                let (offset, data, fua, tag) = sent.pop_front().expect("a write handed over");
                assert_eq!((r.offset, r.fua, r.tag, r.frame), (offset, fua, tag, false));
                assert!(r.data == data, "the data of the write at {offset}");
                let error = if rng.below(6) == 0 { 5 } else { 0 };
                rings
                    .complete(r.tag, error, out.done_head as u32)
                    .expect("room in the done ring");
                outcomes.push_back((r.tag, error));
                taken += 1;
            }
        }
        m.tick();
    }
    assert_eq!(taken, n);
    eprintln!("the driver took {n} writes from the verilated rings in {clocks} clocks");
}

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

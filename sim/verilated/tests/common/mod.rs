//! A stimulus generator for the send path that works on any model of it (verilated or rust-hdl),
//! and a checker that cuts the transmit stream into frames and compares them with the software
//! encoder's.

#![allow(dead_code)]

use specmirror_abi::golden::Case;
use specmirror_abi::ring::Mode;
use specmirror_hdl::bench::Rng;
use specmirror_verilated::Port;

/// What both models offer.
pub trait Model {
    fn set(&mut self, p: Port, v: u64);
    fn get(&self, p: Port) -> u64;
    fn settle(&mut self);
    fn tick(&mut self);
}

impl Model for specmirror_verilated::VerilatedSender {
    fn set(&mut self, p: Port, v: u64) {
        specmirror_verilated::VerilatedSender::set(self, p, v)
    }
    fn get(&self, p: Port) -> u64 {
        specmirror_verilated::VerilatedSender::get(self, p)
    }
    fn settle(&mut self) {
        self.eval()
    }
    fn tick(&mut self) {
        specmirror_verilated::VerilatedSender::tick(self)
    }
}

/// Puts descriptor `c` on the descriptor inputs.
pub fn set_descriptor<M: Model>(m: &mut M, c: &Case) {
    m.set(Port::DescSeq, c.seq);
    m.set(Port::DescLockId, c.lock_id);
    m.set(Port::DescOffset, c.offset);
    m.set(Port::DescLength, c.length as u64);
    m.set(Port::DescMode, c.mode as u64);
    m.set(Port::DescFlags, c.flags as u64);
    m.set(Port::DescGeneration, c.generation as u64);
    m.set(Port::DescFirstRegion, c.first_region());
    m.set(Port::DescRegionCount, c.region_count());
    m.set(Port::AckLock, c.ack_lock);
    m.set(Port::AckSeq, c.ack_seq);
}

/// Random descriptors, random stalls, random grant delays; checks every frame that leaves.
pub struct Driver {
    pub rng: Rng,
    pub case: Option<Case>,
    pub words: Vec<u64>,
    pub next_word: usize,
    pub offered: bool,
    pub frames_seen: usize,
    pub stream: Vec<u8>,
    pub expected: Vec<u8>,
    pub grant_at: u64,
    pub lock_done_at: Option<u64>,
    pub cycle: u64,
    pub descriptors: u64,
    pub stall_pct: u64,
}

impl Driver {
    pub fn new(seed: u64, stall_pct: u64) -> Driver {
        Driver {
            rng: Rng(seed | 1),
            case: None,
            words: Vec::new(),
            next_word: 0,
            offered: false,
            frames_seen: 0,
            stream: Vec::new(),
            expected: Vec::new(),
            grant_at: 0,
            lock_done_at: None,
            cycle: 0,
            descriptors: 0,
            stall_pct,
        }
    }

    fn new_case(&mut self) -> Case {
        let modes = [Mode::Speculative, Mode::Implicit, Mode::Conservative];
        let mode = modes[self.rng.below(3) as usize];
        let region_size = 4096;
        let long = self.rng.below(8) == 0;
        let length = 1 + self.rng.below(if long { 2048 } else { 96 }) as u32;
        let seq = self.rng.next_u64() >> 8;
        Case {
            name: "random",
            mode,
            seq,
            lock_id: self.rng.next_u64() >> 20,
            offset: self.rng.below(1 << 30),
            length,
            flags: (self.rng.below(8) as u16) & 0b110,
            generation: self.rng.next_u64() as u32,
            ack_lock: self.rng.next_u64() >> 24,
            ack_seq: self.rng.next_u64() >> 24,
            region_size,
        }
    }

    /// Sets the inputs for this cycle (call before settling and sampling).
    pub fn drive<M: Model>(&mut self, m: &mut M) {
        if self.case.is_none() {
            let c = self.new_case();
            let data = c.payload();
            self.words = data
                .chunks(8)
                .map(|ch| {
                    let mut w = [0xa5u8; 8];
                    w[..ch.len()].copy_from_slice(ch);
                    u64::from_le_bytes(w)
                })
                .collect();
            self.next_word = 0;
            self.offered = false;
            self.frames_seen = 0;
            self.expected = c.frames();
            self.stream.clear();
            self.lock_done_at = None;
            self.grant_at = self.rng.below(40);
            self.case = Some(c);
        }
        let c = self.case.expect("case");
        m.set(Port::DescValid, (!self.offered) as u64);
        set_descriptor(m, &c);
        let late = self.rng.below(100) < self.stall_pct;
        m.set(
            Port::DataValid,
            (!late && self.next_word < self.words.len()) as u64,
        );
        m.set(
            Port::DataIn,
            self.words.get(self.next_word).copied().unwrap_or(0),
        );
        let stall = self.rng.below(100) < self.stall_pct;
        m.set(Port::TxReady, (!stall) as u64);
        let granted = self
            .lock_done_at
            .is_some_and(|t| self.cycle >= t + self.grant_at);
        m.set(Port::Granted, granted as u64);
    }

    /// Samples the settled outputs, then clocks. Returns an error on a wrong frame.
    pub fn sample_and_tick<M: Model>(&mut self, m: &mut M) -> Result<(), String> {
        let c = self.case.expect("case");
        if m.get(Port::DescValid) == 1 && m.get(Port::DescReady) == 1 {
            self.offered = true;
            self.descriptors += 1;
        }
        if m.get(Port::DataValid) == 1 && m.get(Port::DataReady) == 1 {
            self.next_word += 1;
        }
        let mut finished = false;
        if m.get(Port::TxValid) == 1 && m.get(Port::TxReady) == 1 {
            self.stream
                .extend_from_slice(&m.get(Port::TxData).to_le_bytes());
            if m.get(Port::TxLast) == 1 {
                self.frames_seen += 1;
                if self.frames_seen == 1 && c.mode != Mode::Implicit {
                    self.lock_done_at = Some(self.cycle);
                }
                let want = if c.mode == Mode::Implicit { 1 } else { 2 };
                finished = self.frames_seen == want;
            }
        }
        m.tick();
        self.cycle += 1;
        if finished {
            if self.stream != self.expected {
                return Err(format!(
                    "descriptor {} ({c:?}) at cycle {}: frames differ from the software encoder",
                    self.descriptors, self.cycle
                ));
            }
            self.case = None;
        }
        Ok(())
    }
}

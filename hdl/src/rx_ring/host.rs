//! A host for the receive rings, over any model of the block (rust-hdl's simulation here, the
//! verilated one in `sim/`): random writes (1 byte to a whole buffer, FUA or not) arrive on the
//! volume-write port with gaps, the DMA ports stall at random, and the host reads entries by their
//! phase, checks each write's data and fields in its buffer, poisons the buffer, and hands the
//! outcome back (some failed) after random delays, sometimes leaving the rings full for long
//! stretches. It panics on the first thing that breaks the rings' rules: an entry or a buffer
//! overwritten before the host released it, a DMA access outside the rings, an outcome out of
//! order or never posted.

use std::collections::VecDeque;

use rust_hdl::prelude::*;
use specmirror_abi::le::Le32;
use specmirror_abi::rx_ring::{
    DoneEntry, RxEntry, DONE_ENTRY_LEN, RX_BUFFER_BYTES, RX_ENTRY_LEN, RX_FRAME, RX_FUA, RX_PHASE,
};

use super::RxRing;
use crate::bench::{cycle, settle, Rng};

pub const RX_BASE: u64 = 0x1000;
pub const DONE_BASE: u64 = 0x2000;
pub const BUF_BASE: u64 = 0x10000;

/// The block's inputs for one clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxIn {
    pub enable: bool,
    pub rx_base: u64,
    pub rx_log2: u64,
    pub rx_head: u64,
    pub buf_base: u64,
    pub done_base: u64,
    pub done_log2: u64,
    pub done_tail: u64,
    pub in_valid: bool,
    pub in_data: u64,
    pub in_last: bool,
    pub in_offset: u64,
    pub in_len: u64,
    pub in_fua: bool,
    pub in_frame: bool,
    pub in_tag: u64,
    pub done_ready: bool,
    pub wr_ready: bool,
    pub rd_req_ready: bool,
    pub rd_valid: bool,
    pub rd_data: u64,
}

/// Its outputs, once the inputs settled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxOut {
    pub rx_tail: u64,
    pub done_head: u64,
    pub in_ready: bool,
    pub done_valid: bool,
    pub done_tag: u64,
    pub done_error: u64,
    pub wr_valid: bool,
    pub wr_addr: u64,
    pub wr_data: u64,
    pub rd_req_valid: bool,
    pub rd_req_addr: u64,
    pub rd_req_words: u64,
    pub rd_ready: bool,
    pub irq: bool,
}

/// A model of the block, clock by clock.
pub trait RxIo {
    /// Sets the inputs and settles.
    fn set(&mut self, i: &RxIn);
    fn get(&mut self) -> RxOut;
    /// One rising edge (and the falling one).
    fn tick(&mut self);
}

/// rust-hdl's simulation of the block.
pub struct Hdl(pub RxRing);

impl Hdl {
    pub fn new() -> Hdl {
        let mut u = super::tests_support::connected();
        u.connect_all();
        Hdl(u)
    }
}

impl Default for Hdl {
    fn default() -> Self {
        Hdl::new()
    }
}

fn clock(u: &mut RxRing) -> &mut Signal<In, Clock> {
    &mut u.clock
}

impl RxIo for Hdl {
    fn set(&mut self, i: &RxIn) {
        let u = &mut self.0;
        u.enable.next = i.enable;
        u.rx_base.next = i.rx_base.to_bits();
        u.rx_log2.next = i.rx_log2.to_bits();
        u.rx_head.next = i.rx_head.to_bits();
        u.buf_base.next = i.buf_base.to_bits();
        u.done_base.next = i.done_base.to_bits();
        u.done_log2.next = i.done_log2.to_bits();
        u.done_tail.next = i.done_tail.to_bits();
        u.in_valid.next = i.in_valid;
        u.in_data.next = i.in_data.to_bits();
        u.in_last.next = i.in_last;
        u.in_offset.next = i.in_offset.to_bits();
        u.in_len.next = i.in_len.to_bits();
        u.in_fua.next = i.in_fua;
        u.in_frame.next = i.in_frame;
        u.in_tag.next = i.in_tag.to_bits();
        u.done_ready.next = i.done_ready;
        u.wr_ready.next = i.wr_ready;
        u.rd_req_ready.next = i.rd_req_ready;
        u.rd_valid.next = i.rd_valid;
        u.rd_data.next = i.rd_data.to_bits();
        settle(u);
    }

    fn get(&mut self) -> RxOut {
        let u = &self.0;
        RxOut {
            rx_tail: u.rx_tail.val().to_u64(),
            done_head: u.done_head.val().to_u64(),
            in_ready: u.in_ready.val(),
            done_valid: u.done_valid.val(),
            done_tag: u.done_tag.val().to_u64(),
            done_error: u.done_error.val().to_u64(),
            wr_valid: u.wr_valid.val(),
            wr_addr: u.wr_addr.val().to_u64(),
            wr_data: u.wr_data.val().to_u64(),
            rd_req_valid: u.rd_req_valid.val(),
            rd_req_addr: u.rd_req_addr.val().to_u64(),
            rd_req_words: u.rd_req_words.val().to_u64(),
            rd_ready: u.rd_ready.val(),
            irq: u.irq.val(),
        }
    }

    fn tick(&mut self) {
        cycle(&mut self.0, clock);
    }
}

/// A run's shape: `writes` writes through rings of `1 << log2` entries; the host looks every
/// `look` clocks at most and, one time in `stall_in`, stays away for `stall` clocks.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub seed: u64,
    pub writes: usize,
    pub log2: u32,
    pub look: u64,
    pub stall_in: u64,
    pub stall: u64,
}

/// What a run saw.
#[derive(Debug)]
pub struct Outcome {
    pub handed: usize,
    /// Outcomes as the completion port showed them: (tag, errno).
    pub done: Vec<(u8, u32)>,
    pub irqs: u64,
    /// Clocks the receive ring spent full.
    pub full_clocks: u64,
    pub clocks: u64,
}

#[derive(Clone, Debug)]
struct Write {
    offset: u64,
    data: Vec<u8>,
    fua: bool,
    frame: bool,
    tag: u8,
}

struct Host {
    mem: Vec<u8>,
    log2: u32,
    head: u32,
    done_tail: u32,
    /// Writes handed over and not yet checked, in order.
    sent: VecDeque<Write>,
    /// Outcomes posted, in order, for the completion port to show.
    outcomes: VecDeque<(u8, u32)>,
    next_look: u64,
}

impl Host {
    fn entries(&self) -> u32 {
        1 << self.log2
    }

    /// Takes the entry at its head: checks it and its buffer, posts the outcome, releases the
    /// slot. False when the entry is not there yet or the done ring is full.
    fn take(&mut self, dev_done_head: u32, rng: &mut Rng) -> bool {
        let slot = (self.head & (self.entries() - 1)) as usize;
        let at = RX_BASE as usize + slot * RX_ENTRY_LEN;
        let b: [u8; RX_ENTRY_LEN] = self.mem[at..at + RX_ENTRY_LEN].try_into().expect("entry");
        let e = RxEntry::from_bytes(&b);
        let pass = self.head >> self.log2;
        let want_phase = if pass & 1 == 0 { RX_PHASE } else { 0 };
        if e.phase & RX_PHASE != want_phase {
            return false;
        }
        if self.done_tail.wrapping_sub(dev_done_head) == self.entries() {
            return false;
        }
        let w = self
            .sent
            .pop_front()
            .expect("an entry for a write never sent");
        assert_eq!(e.offset.get(), w.offset, "offset (tag {})", w.tag);
        assert_eq!(
            e.length.get() as usize,
            w.data.len(),
            "length (at {})",
            w.offset
        );
        assert_eq!(e.tag, w.tag, "tag (at {})", w.offset);
        assert_eq!(e.flags & RX_FUA != 0, w.fua, "FUA (at {})", w.offset);
        assert_eq!(e.flags & RX_FRAME != 0, w.frame, "FRAME (at {})", w.offset);
        let buf = BUF_BASE as usize + slot * RX_BUFFER_BYTES;
        assert!(
            self.mem[buf..buf + w.data.len()] == w.data[..],
            "the data of the write at {} in slot {slot}",
            w.offset
        );
        // Poison the buffer: an engine that wrote into a slot before it was released would
        // otherwise go unseen but by luck.
        self.mem[buf..buf + RX_BUFFER_BYTES].fill(0xa5);
        let error = if rng.below(5) == 0 { 5 } else { 0 };
        let d = DoneEntry {
            tag: w.tag,
            reserved: [0; 3],
            error: Le32::new(error),
        };
        let ds = (self.done_tail & (self.entries() - 1)) as usize;
        let da = DONE_BASE as usize + ds * DONE_ENTRY_LEN;
        self.mem[da..da + DONE_ENTRY_LEN].copy_from_slice(&d.to_bytes());
        self.done_tail = self.done_tail.wrapping_add(1);
        self.outcomes.push_back((w.tag, error));
        self.head = self.head.wrapping_add(1);
        true
    }
}

/// Runs `p` through `io`; panics on the first broken rule.
pub fn run(io: &mut impl RxIo, p: &Params) -> Outcome {
    let mut rng = Rng(p.seed);
    let log2 = p.log2;
    let mut host = Host {
        mem: vec![0u8; BUF_BASE as usize + (RX_BUFFER_BYTES << log2)],
        log2,
        head: 0,
        done_tail: 0,
        sent: VecDeque::new(),
        outcomes: VecDeque::new(),
        next_look: 0,
    };
    let mut writes: VecDeque<Write> = (0..p.writes)
        .map(|i| {
            let len = match rng.below(4) {
                0 => 1 + rng.below(8) as usize,
                1 => RX_BUFFER_BYTES,
                _ => 1 + rng.below(RX_BUFFER_BYTES as u64) as usize,
            };
            Write {
                offset: rng.next_u64() >> 20,
                data: (0..len).map(|_| rng.next_u64() as u8).collect(),
                fua: rng.below(3) == 0,
                // Every fourth a frame (the flag the entry carries; the ring treats both alike).
                frame: i % 4 == 3,
                tag: (i % 16) as u8,
            }
        })
        .collect();
    let mut word = 0usize;
    let mut reads: VecDeque<u64> = VecDeque::new();
    let mut o = Outcome {
        handed: 0,
        done: Vec::new(),
        irqs: 0,
        full_clocks: 0,
        clocks: 0,
    };
    let limit = 4_000 * p.writes as u64 + 100_000;
    while o.handed < p.writes || !host.outcomes.is_empty() || !host.sent.is_empty() {
        assert!(
            o.clocks < limit,
            "stuck: {} of {} writes handed over",
            o.handed,
            p.writes
        );
        o.clocks += 1;
        let mut i = RxIn {
            enable: true,
            rx_base: RX_BASE,
            rx_log2: log2 as u64,
            rx_head: host.head as u64,
            buf_base: BUF_BASE,
            done_base: DONE_BASE,
            done_log2: log2 as u64,
            done_tail: host.done_tail as u64,
            ..RxIn::default()
        };
        // The volume-write port: the next write's words, with gaps.
        if let Some(w) = writes.front() {
            let words = w.data.len().div_ceil(8);
            let mut b = [0u8; 8];
            let from = word * 8;
            let to = (from + 8).min(w.data.len());
            b[..to - from].copy_from_slice(&w.data[from..to]);
            i.in_valid = rng.below(4) != 0;
            i.in_data = u64::from_le_bytes(b);
            i.in_last = word + 1 == words;
            i.in_offset = w.offset;
            i.in_len = w.data.len() as u64;
            i.in_fua = w.fua;
            i.in_frame = w.frame;
            i.in_tag = w.tag as u64;
        }
        i.wr_ready = rng.below(5) != 0;
        i.rd_req_ready = rng.below(3) != 0;
        if let Some(&a) = reads.front() {
            i.rd_valid = rng.below(2) == 0;
            let a = a as usize;
            i.rd_data = u64::from_le_bytes(host.mem[a..a + 8].try_into().expect("word"));
        }
        i.done_ready = rng.below(3) != 0;
        io.set(&i);
        let out = io.get();
        if i.in_valid && out.in_ready {
            let w = writes.front().expect("a write on offer");
            word += 1;
            if word == w.data.len().div_ceil(8) {
                host.sent
                    .push_back(writes.pop_front().expect("a write on offer"));
                word = 0;
                o.handed += 1;
            }
        }
        if out.wr_valid && i.wr_ready {
            let a = out.wr_addr as usize;
            let ring_end = RX_BASE as usize + (RX_ENTRY_LEN << log2);
            let in_ring = a >= RX_BASE as usize && a + 8 <= ring_end;
            let in_bufs = a >= BUF_BASE as usize && a + 8 <= host.mem.len();
            assert!(in_ring || in_bufs, "DMA write outside the rings: {a:#x}");
            host.mem[a..a + 8].copy_from_slice(&out.wr_data.to_le_bytes());
        }
        if out.rd_req_valid && i.rd_req_ready {
            let a = out.rd_req_addr;
            assert_eq!(out.rd_req_words, 1, "one done entry per read");
            let end = DONE_BASE + ((DONE_ENTRY_LEN as u64) << log2);
            assert!(
                a >= DONE_BASE && a + 8 <= end,
                "DMA read outside the done ring: {a:#x}"
            );
            reads.push_back(a);
        }
        if i.rd_valid && out.rd_ready {
            reads.pop_front();
        }
        if out.done_valid && i.done_ready {
            let got = (out.done_tag as u8, out.done_error as u32);
            let want = host.outcomes.pop_front().expect("an outcome never posted");
            assert_eq!(got, want, "outcome {}", o.done.len());
            o.done.push(got);
        }
        o.irqs += out.irq as u64;
        if out.rx_tail as u32 == host.head.wrapping_add(host.entries()) {
            o.full_clocks += 1;
        }
        if o.clocks >= host.next_look {
            while host.take(out.done_head as u32, &mut rng) {}
            host.next_look = o.clocks
                + if rng.below(p.stall_in) == 0 {
                    p.stall
                } else {
                    1 + rng.below(p.look)
                };
        }
        io.tick();
    }
    o
}

//! The receive rings against a host model: random writes (1 byte to a whole buffer, FUA or not)
//! arrive on the volume-write port with gaps, the DMA ports stall at random, and the host reads
//! entries by their phase, checks each write's data and fields in its buffer, and hands outcomes
//! back (some failed) after random delays, sometimes leaving the ring full for long stretches.
//! Every outcome reaches the completion port in order, and no entry or buffer is overwritten
//! before the host released it.

use std::collections::VecDeque;

use rust_hdl::prelude::*;
use specmirror_abi::le::Le32;
use specmirror_abi::rx_ring::{
    DoneEntry, RxEntry, DONE_ENTRY_LEN, RX_BUFFER_BYTES, RX_ENTRY_LEN, RX_FUA, RX_PHASE,
};

use super::RxRing;
use crate::bench::{cycle, settle, Rng};

const RX_BASE: u64 = 0x1000;
const DONE_BASE: u64 = 0x2000;
const BUF_BASE: u64 = 0x10000;

fn clock(u: &mut RxRing) -> &mut Signal<In, Clock> {
    &mut u.clock
}

#[derive(Clone, Debug)]
struct Write {
    offset: u64,
    data: Vec<u8>,
    fua: bool,
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
    /// Clock at which the host next looks.
    next_look: u64,
}

impl Host {
    fn entries(&self) -> u32 {
        1 << self.log2
    }

    /// Looks at the entry at its head: checks it and its buffer, posts the outcome, releases the
    /// slot. False when the entry is not there yet or the done ring is full.
    fn take(&mut self, dev_done_head: u32, rng: &mut Rng) -> bool {
        let slot = (self.head & (self.entries() - 1)) as usize;
        let at = RX_BASE as usize + slot * RX_ENTRY_LEN;
        let b: [u8; RX_ENTRY_LEN] = self.mem[at..at + RX_ENTRY_LEN].try_into().unwrap();
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
        assert_eq!(e.tag, w.tag, "tag");
        assert_eq!(e.flags & RX_FUA != 0, w.fua, "FUA");
        let buf = BUF_BASE as usize + slot * RX_BUFFER_BYTES;
        assert!(
            self.mem[buf..buf + w.data.len()] == w.data[..],
            "the data of the write at {} in slot {slot}",
            w.offset
        );
        // Poison the buffer and the entry: an engine that writes into a slot before it is
        // released would go unseen otherwise only by luck.
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

struct Outcome {
    handed: usize,
    done: Vec<(u8, u32)>,
    irqs: u64,
    full_clocks: u64,
}

/// `n` writes through rings of `1 << log2` entries; the host looks every `look` clocks at most
/// and, one time in `stall_in`, stays away for `stall` clocks.
fn run(seed: u64, n: usize, log2: u32, look: u64, stall_in: u64, stall: u64) -> Outcome {
    let mut rng = Rng(seed);
    let mut u = super::tests_support::connected();
    u.connect_all();
    let mut host = Host {
        mem: vec![0u8; BUF_BASE as usize + (RX_BUFFER_BYTES << log2)],
        log2,
        head: 0,
        done_tail: 0,
        sent: VecDeque::new(),
        outcomes: VecDeque::new(),
        next_look: 0,
    };
    let mut writes: VecDeque<Write> = (0..n)
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
                tag: (i % 16) as u8,
            }
        })
        .collect();
    let mut word = 0usize;
    let mut reads: VecDeque<(u64, u64)> = VecDeque::new();
    let mut done = Vec::new();
    let (mut irqs, mut full_clocks, mut handed) = (0, 0, 0);
    let mut t = 0u64;
    while (handed < n || !host.outcomes.is_empty() || !host.sent.is_empty()) && t < 4_000_000 {
        t += 1;
        u.enable.next = true;
        u.rx_base.next = RX_BASE.to_bits();
        u.rx_log2.next = (log2 as u64).to_bits();
        u.buf_base.next = BUF_BASE.to_bits();
        u.done_base.next = DONE_BASE.to_bits();
        u.done_log2.next = (log2 as u64).to_bits();
        u.rx_head.next = (host.head as u64).to_bits();
        u.done_tail.next = (host.done_tail as u64).to_bits();
        // The volume-write port: the next write's words, with gaps.
        let w = writes.front();
        let offer = w.is_some() && rng.below(4) != 0;
        u.in_valid.next = offer;
        if let Some(w) = w {
            let words = w.data.len().div_ceil(8);
            let mut b = [0u8; 8];
            let from = word * 8;
            let to = (from + 8).min(w.data.len());
            b[..to - from].copy_from_slice(&w.data[from..to]);
            u.in_data.next = u64::from_le_bytes(b).to_bits();
            u.in_last.next = word + 1 == words;
            u.in_offset.next = w.offset.to_bits();
            u.in_len.next = (w.data.len() as u64).to_bits();
            u.in_fua.next = w.fua;
            u.in_tag.next = (w.tag as u64).to_bits();
        }
        u.wr_ready.next = rng.below(5) != 0;
        u.rd_req_ready.next = rng.below(3) != 0;
        let front = reads.front().copied();
        u.rd_valid.next = front.is_some() && rng.below(2) == 0;
        if let Some((addr, _)) = front {
            let a = addr as usize;
            let v = u64::from_le_bytes(host.mem[a..a + 8].try_into().unwrap());
            u.rd_data.next = v.to_bits();
        }
        u.done_ready.next = rng.below(3) != 0;
        settle(&mut u);
        if u.in_valid.val() && u.in_ready.val() {
            let w = writes.front().unwrap();
            word += 1;
            if word == w.data.len().div_ceil(8) {
                host.sent.push_back(writes.pop_front().unwrap());
                word = 0;
                handed += 1;
            }
        }
        if u.wr_valid.val() && u.wr_ready.val() {
            let a = u.wr_addr.val().to_u64() as usize;
            let in_ring =
                a >= RX_BASE as usize && a + 8 <= RX_BASE as usize + (RX_ENTRY_LEN << log2);
            let in_bufs = a >= BUF_BASE as usize && a + 8 <= host.mem.len();
            assert!(in_ring || in_bufs, "DMA write outside the rings: {a:#x}");
            let v = u.wr_data.val().to_u64().to_le_bytes();
            host.mem[a..a + 8].copy_from_slice(&v);
        }
        if u.rd_req_valid.val() && u.rd_req_ready.val() {
            let a = u.rd_req_addr.val().to_u64();
            assert_eq!(u.rd_req_words.val().to_u64(), 1, "one done entry per read");
            assert!(
                a >= DONE_BASE && a + 8 <= DONE_BASE + ((DONE_ENTRY_LEN as u64) << log2),
                "DMA read outside the done ring: {a:#x}"
            );
            reads.push_back((a, 1));
        }
        if u.rd_valid.val() && u.rd_ready.val() {
            reads.pop_front();
        }
        if u.done_valid.val() && u.done_ready.val() {
            let got = (
                u.done_tag.val().to_u64() as u8,
                u.done_error.val().to_u64() as u32,
            );
            let want = host.outcomes.pop_front().expect("an outcome never posted");
            assert_eq!(got, want, "outcome {}", done.len());
            done.push(got);
        }
        if u.irq.val() {
            irqs += 1;
        }
        if u.rx_tail.val().to_u64() as u32 == host.head.wrapping_add(host.entries()) {
            full_clocks += 1;
        }
        if t >= host.next_look {
            while host.take(u.done_head.val().to_u64() as u32, &mut rng) {}
            host.next_look = t + if rng.below(stall_in) == 0 {
                stall
            } else {
                1 + rng.below(look)
            };
        }
        cycle(&mut u, clock);
    }
    assert!(t < 4_000_000, "stuck: {handed} of {n} writes handed over");
    Outcome {
        handed,
        done,
        irqs,
        full_clocks,
    }
}

#[test]
fn every_write_reaches_the_host_and_every_outcome_comes_back_in_order() {
    for (seed, log2, stall) in [(1u64, 2u32, 3000), (2, 3, 3000), (3, 5, 15000)] {
        let o = run(seed, 300, log2, 40, 20, stall);
        assert_eq!(o.handed, 300);
        assert_eq!(o.done.len(), 300, "seed {seed}");
        assert!(o.done.iter().any(|d| d.1 != 0), "some writes failed");
        assert_eq!(o.irqs, 300, "one interrupt per entry");
        assert!(
            o.full_clocks > 1000,
            "seed {seed}: the host never left the ring full long ({} clocks)",
            o.full_clocks
        );
    }
}

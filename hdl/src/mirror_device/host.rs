//! A closed loop around a device model (rust-hdl's or Verilator's) as a host driver sees it: the
//! host sets the rings up through BAR0, posts each write as a descriptor on the submission ring
//! with its data in host memory, rings the doorbell, and reaps completion entries by their phase
//! bit, releasing the slots it has read. A DMA model serves the device's reads (after 20 to 60
//! clocks, stalling at random) and takes its completion writes; the frames the device sends go to
//! a target ([`Peer`]) and its answers come back after a round trip. The host reaps completions
//! only now and then, and not at all
//! for stretches, so a small completion ring fills and the device must hold back. A write of
//! `Mode::Raw` is a frame the host made, posted on the same ring: its `Sent` entry finishes it.

use std::collections::VecDeque;

use rust_hdl::prelude::*;
use specmirror_abi::le::{Le32, Le64};
use specmirror_abi::regs;
use specmirror_abi::ring::{
    Completion, CompletionStatus, Descriptor, Mode, COMPLETION_LEN, COMPLETION_PHASE,
    DESCRIPTOR_LEN,
};
use specmirror_abi::rx_ring::{RxEntry, RX_BUFFER_BYTES, RX_ENTRY_LEN, RX_FRAME, RX_PHASE};
use specmirror_abi::{FrameType, Header};

use super::MirrorDevice;
use crate::bench::{cycle, settle, Rng};
use crate::source_path::host::{Link, Outcome, Peer, SpOut, Write};
use crate::target_path::host::{GENERATION, REGION};

/// The device's inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct DevIn {
    pub mmio_addr: u64,
    pub mmio_wdata: u64,
    pub mmio_write: bool,
    pub rd_req_ready: bool,
    pub rd_valid: bool,
    pub rd_data: u64,
    pub wr_ready: bool,
    pub rx_wr_ready: bool,
    pub tx_ready: bool,
    pub rx_data: u64,
    pub rx_valid: bool,
    pub rx_last: bool,
}

/// The device's outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevOut {
    pub mmio_rdata: u64,
    pub rd_req_valid: bool,
    pub rd_req_addr: u64,
    pub rd_req_words: u64,
    pub rd_ready: bool,
    pub wr_valid: bool,
    pub wr_addr: u64,
    pub wr_data: [u64; 4],
    pub rx_wr_valid: bool,
    pub rx_wr_addr: u64,
    pub rx_wr_data: u64,
    pub irq: bool,
    pub rx_irq: bool,
    pub tx_data: u64,
    pub tx_valid: bool,
    pub tx_last: bool,
    pub stale: u64,
    pub unmatched: u64,
    pub cpl_drops: u64,
    pub inflight: u64,
    pub rx_drops: u64,
}

/// A device model, driven clock by clock: set the inputs, read the outputs, tick.
pub trait DeviceIo {
    fn set(&mut self, i: &DevIn);
    fn get(&mut self) -> DevOut;
    fn tick(&mut self);
}

/// rust-hdl's simulation of the device.
pub struct Hdl(pub MirrorDevice);

impl Hdl {
    pub fn new() -> Hdl {
        let mut u = super::tests_support::connected();
        u.connect_all();
        Hdl(u)
    }
}

impl Default for Hdl {
    fn default() -> Self {
        Self::new()
    }
}

fn clock(u: &mut MirrorDevice) -> &mut Signal<In, Clock> {
    &mut u.clock
}

impl DeviceIo for Hdl {
    fn set(&mut self, i: &DevIn) {
        let u = &mut self.0;
        u.mmio_addr.next = i.mmio_addr.to_bits();
        u.mmio_wdata.next = i.mmio_wdata.to_bits();
        u.mmio_write.next = i.mmio_write;
        u.rd_req_ready.next = i.rd_req_ready;
        u.rd_valid.next = i.rd_valid;
        u.rd_data.next = i.rd_data.to_bits();
        u.wr_ready.next = i.wr_ready;
        u.rx_wr_ready.next = i.rx_wr_ready;
        u.tx_ready.next = i.tx_ready;
        u.rx_data.next = i.rx_data.to_bits();
        u.rx_valid.next = i.rx_valid;
        u.rx_last.next = i.rx_last;
    }

    fn get(&mut self) -> DevOut {
        let u = &mut self.0;
        settle(u);
        let d = u.wr_data.val();
        DevOut {
            mmio_rdata: u.mmio_rdata.val().to_u64(),
            rd_req_valid: u.rd_req_valid.val(),
            rd_req_addr: u.rd_req_addr.val().to_u64(),
            rd_req_words: u.rd_req_words.val().to_u64(),
            rd_ready: u.rd_ready.val(),
            wr_valid: u.wr_valid.val(),
            wr_addr: u.wr_addr.val().to_u64(),
            wr_data: [
                d.get_bits::<64>(0).to_u64(),
                d.get_bits::<64>(64).to_u64(),
                d.get_bits::<64>(128).to_u64(),
                d.get_bits::<64>(192).to_u64(),
            ],
            rx_wr_valid: u.rx_wr_valid.val(),
            rx_wr_addr: u.rx_wr_addr.val().to_u64(),
            rx_wr_data: u.rx_wr_data.val().to_u64(),
            irq: u.irq.val(),
            rx_irq: u.rx_irq.val(),
            tx_data: u.tx_data.val().to_u64(),
            tx_valid: u.tx_valid.val(),
            tx_last: u.tx_last.val(),
            stale: u.stale.val().to_u64(),
            unmatched: u.unmatched.val().to_u64(),
            cpl_drops: u.cpl_drops.val().to_u64(),
            inflight: u.inflight.val().to_u64(),
            rx_drops: u.rx_drops.val().to_u64(),
        }
    }

    fn tick(&mut self) {
        cycle(&mut self.0, clock)
    }
}

/// Host memory as the device reaches it: one region at a bus address above 4 GiB, so both halves
/// of every base register matter.
pub struct Memory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

/// Where the host keeps things in [`Memory`].
pub const SQ_AT: u64 = 0;
pub const CQ_AT: u64 = 0x1_0000;
pub const DATA_AT: u64 = 0x10_0000;
/// Data slots: one per write, reused round robin (far more than can be in flight).
pub const DATA_SLOTS: u64 = 256;
pub const DATA_SLOT: u64 = 4096;
/// The receive ring (every frame the device receives) and its slots' buffers.
pub const RX_AT: u64 = 0x2_0000;
pub const RX_LOG2: u32 = 6;
pub const RXBUF_AT: u64 = DATA_AT + DATA_SLOTS * DATA_SLOT;

impl Memory {
    pub fn new() -> Memory {
        Memory {
            base: 0x1_2345_0000_0000,
            bytes: vec![0u8; (RXBUF_AT + (RX_BUFFER_BYTES << RX_LOG2) as u64) as usize],
        }
    }

    fn at(&self, bus: u64, len: u64) -> usize {
        let off = bus
            .checked_sub(self.base)
            .filter(|o| o + len <= self.bytes.len() as u64)
            .unwrap_or_else(|| panic!("device access to unmapped bus address {bus:#x}+{len}"));
        off as usize
    }

    pub fn word(&self, bus: u64) -> u64 {
        let o = self.at(bus, 8);
        u64::from_le_bytes(self.bytes[o..o + 8].try_into().expect("8 bytes"))
    }

    pub fn write(&mut self, bus: u64, b: &[u8]) {
        let o = self.at(bus, b.len() as u64);
        self.bytes[o..o + b.len()].copy_from_slice(b);
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

/// What the host read from the registers at the end of a run.
#[derive(Debug, Default)]
pub struct Registers {
    pub sq_head: u32,
    pub cq_tail: u32,
    pub status: u32,
    pub frames_tx: u32,
    pub frames_rx: u32,
    pub frames_bad: u32,
    pub locks_granted: u32,
    pub locks_rejected: u32,
    pub rx_tail: u32,
}

/// The acknowledgements every descriptor carries.
pub const ACK: u64 = 1;

/// What a device run did: the closed loop's outcome, the registers, the interrupts.
pub struct DeviceOutcome {
    /// The (ack_lock, ack_seq) pairs the LOCK and DATA frames carried.
    pub acks: std::collections::BTreeSet<(u64, u64)>,
    pub outcome: Outcome,
    pub regs: Registers,
    pub irqs: u64,
    pub rx_irqs: u64,
    /// Frames the device sent.
    pub frames: u64,
    /// Every frame's type and the write it belongs to, in the order they left.
    pub order: Vec<(FrameType, u64)>,
    /// The frames of other kinds than LOCK and DATA (the raw writes'), as they left.
    pub others: Vec<Vec<u8>>,
    /// The frames the target sent, and those the host found in the receive ring.
    pub answered: Vec<Vec<u8>>,
    pub received: Vec<Vec<u8>>,
    pub rx_drops: u64,
}

/// Queues a doorbell write; one still waiting takes the newer value (the device needs the last).
fn doorbell(q: &mut VecDeque<(u32, u32)>, reg: u32, v: u32) {
    match q.iter_mut().find(|w| w.0 == reg) {
        Some(w) => w.1 = v,
        None => q.push_back((reg, v)),
    }
}

/// Runs `writes` through the device `io` against `peer`, with rings of `1 << log2` entries and at
/// most `window` writes outstanding (posted and not yet finished by WRITE_DONE or LOCK_REJECTED).
/// With `stall`, the host stops reaping completions for long stretches.
pub fn run<T: DeviceIo, P: Peer>(
    io: &mut T,
    peer: &mut P,
    writes: &[Write],
    log2: u32,
    window: u32,
    stall: bool,
    seed: u64,
) -> DeviceOutcome {
    let mut r = Rng(seed);
    let mut mem = Memory::new();
    let entries = 1u32 << log2;
    let (sq, cq) = (mem.base + SQ_AT, mem.base + CQ_AT);
    // Register writes waiting for the BAR, one per clock.
    let mut mmio: VecDeque<(u32, u32)> = VecDeque::from([
        (regs::SQ_BASE_LO, sq as u32),
        (regs::SQ_BASE_HI, (sq >> 32) as u32),
        (regs::SQ_LOG2_SIZE, log2),
        (regs::CQ_BASE_LO, cq as u32),
        (regs::CQ_BASE_HI, (cq >> 32) as u32),
        (regs::CQ_LOG2_SIZE, log2),
        (regs::GENERATION, GENERATION),
        (regs::REGION_LOG2, REGION.trailing_zeros()),
        (regs::RX_BASE_LO, (mem.base + RX_AT) as u32),
        (regs::RX_BASE_HI, ((mem.base + RX_AT) >> 32) as u32),
        (regs::RX_LOG2_SIZE, RX_LOG2),
        (regs::RX_BUF_LO, (mem.base + RXBUF_AT) as u32),
        (regs::RX_BUF_HI, ((mem.base + RXBUF_AT) >> 32) as u32),
        (regs::CONTROL, 1 | regs::CONTROL_HOST_RX),
    ]);
    let (mut rx_head, mut received, mut rx_irqs) = (0u32, Vec::new(), 0u64);
    let (mut tail, mut sq_head, mut cq_head) = (0u32, 0u32, 0u32);
    let (mut next, mut finished) = (0usize, 0usize);
    // DMA reads in progress: (clock the first word may come, next address, words left).
    let mut reads: VecDeque<(u64, u64, u64)> = VecDeque::new();
    let mut link = Link::default();
    let mut completions = Vec::new();
    let (mut now, mut quiet, mut irqs, mut frames) = (0u64, 0u64, 0u64, 0u64);
    let mut out = DevOut::default();
    while now < 400 * (writes.len() as u64 + 10) * 20 {
        // The host: post what the window and the ring allow.
        let outstanding = next - finished;
        if mmio.len() <= 1
            && next < writes.len()
            && (outstanding as u32) < window
            && tail.wrapping_sub(sq_head) < entries
        {
            let w = &writes[next];
            let data = mem.base + DATA_AT + (next as u64 % DATA_SLOTS) * DATA_SLOT;
            mem.write(data, &w.data);
            let raw = w.mode == Mode::Raw;
            let d = Descriptor {
                seq: Le64::new(w.id),
                lock_id: Le64::new(if raw { 0 } else { w.id }),
                offset: Le64::new(w.offset),
                dma_addr: Le64::new(data),
                length: Le32::new(w.data.len() as u32),
                mode: w.mode as u8,
                // Stamped on the write's frames as they are (ids start at 1: acknowledging
                // lock 1 and write 1 abandons nothing at the target).
                ack_lock: Le64::new(ACK),
                ack_seq: Le64::new(ACK),
                ..Descriptor::default()
            };
            let slot = (tail & (entries - 1)) as u64;
            mem.write(sq + slot * DESCRIPTOR_LEN as u64, &d.to_bytes());
            tail = tail.wrapping_add(1);
            next += 1;
            doorbell(&mut mmio, regs::SQ_TAIL_DOORBELL, tail);
        }
        // The host reaps completions now and then, and for long stretches not at all.
        if (!stall || now % 1024 < 256) && r.below(4) == 0 {
            loop {
                let slot = (cq_head & (entries - 1)) as u64;
                let at = cq + slot * COMPLETION_LEN as u64;
                let o = mem.at(at, COMPLETION_LEN as u64);
                let phase = (((cq_head >> log2) & 1) ^ 1) as u8;
                if mem.bytes[o + 17] & COMPLETION_PHASE != phase {
                    break;
                }
                let b: [u8; COMPLETION_LEN] = mem.bytes[o..o + COMPLETION_LEN]
                    .try_into()
                    .expect("an entry");
                let mut c = Completion::from_bytes(&b);
                c.flags &= !COMPLETION_PHASE;
                if matches!(
                    CompletionStatus::from_u8(c.status),
                    Some(
                        CompletionStatus::WriteDone
                            | CompletionStatus::LockRejected
                            | CompletionStatus::Sent
                    )
                ) {
                    finished += 1;
                }
                completions.push(c);
                cq_head = cq_head.wrapping_add(1);
                doorbell(&mut mmio, regs::CQ_HEAD_DOORBELL, cq_head);
            }
        }
        // The host takes what the receive ring holds, as often, and releases the slots.
        if (!stall || now % 1024 < 256) && r.below(4) == 0 {
            let mut took = false;
            loop {
                let slot = (rx_head & ((1 << RX_LOG2) - 1)) as u64;
                let o = mem.at(
                    mem.base + RX_AT + slot * RX_ENTRY_LEN as u64,
                    RX_ENTRY_LEN as u64,
                );
                let phase = (((rx_head >> RX_LOG2) & 1) ^ 1) as u8;
                if mem.bytes[o + 15] & RX_PHASE != phase {
                    break;
                }
                let e = RxEntry::from_bytes(
                    &mem.bytes[o..o + RX_ENTRY_LEN].try_into().expect("an entry"),
                );
                assert_eq!(
                    (e.offset.get(), e.tag, e.flags),
                    (0, 0, RX_FRAME),
                    "a frame's receive entry"
                );
                let at = mem.at(
                    mem.base + RXBUF_AT + slot * RX_BUFFER_BYTES as u64,
                    e.length.get() as u64,
                );
                received.push(mem.bytes[at..at + e.length.get() as usize].to_vec());
                rx_head = rx_head.wrapping_add(1);
                took = true;
            }
            if took {
                doorbell(&mut mmio, regs::RX_HEAD_DOORBELL, rx_head);
            }
        }
        let mut i = DevIn {
            rd_req_ready: r.below(2) == 0,
            wr_ready: r.below(4) != 0,
            rx_wr_ready: r.below(4) != 0,
            tx_ready: r.below(5) != 0,
            ..DevIn::default()
        };
        // One register access: a write if one waits, else a read of SQ_HEAD.
        match mmio.front() {
            Some(&(reg, v)) => {
                i.mmio_addr = reg as u64;
                i.mmio_wdata = v as u64;
                i.mmio_write = true;
            }
            None => i.mmio_addr = regs::SQ_HEAD as u64,
        }
        if let Some(&(at, addr, _)) = reads.front() {
            if at <= now && r.below(4) != 0 {
                i.rd_valid = true;
                i.rd_data = mem.word(addr);
            }
        }
        let arriving = link.arriving(now);
        if let Some((w, last)) = arriving {
            i.rx_valid = true;
            i.rx_data = w;
            i.rx_last = last;
        }
        io.set(&i);
        out = io.get();
        if i.mmio_write {
            mmio.pop_front();
        } else {
            sq_head = out.mmio_rdata as u32;
        }
        if out.rd_req_valid && i.rd_req_ready {
            reads.push_back((now + 20 + r.below(40), out.rd_req_addr, out.rd_req_words));
        }
        if i.rd_valid && out.rd_ready {
            let f = reads.front_mut().expect("a read in progress");
            f.1 += 8;
            f.2 -= 1;
            if f.2 == 0 {
                reads.pop_front();
            }
        }
        if out.wr_valid && i.wr_ready {
            let mut b = [0u8; COMPLETION_LEN];
            for (k, w) in out.wr_data.iter().enumerate() {
                b[8 * k..8 * k + 8].copy_from_slice(&w.to_le_bytes());
            }
            // The phase byte lands last, as a device's single write would be seen whole.
            let mut first = b;
            first[17] ^= COMPLETION_PHASE;
            mem.write(out.wr_addr, &first);
            mem.write(out.wr_addr, &b);
        }
        if out.rx_wr_valid && i.rx_wr_ready {
            mem.write(out.rx_wr_addr, &out.rx_wr_data.to_le_bytes());
        }
        irqs += out.irq as u64;
        rx_irqs += out.rx_irq as u64;
        let sent = (out.tx_valid && i.tx_ready).then_some((out.tx_data, out.tx_last));
        frames += sent.is_some_and(|s| s.1) as u64;
        link.clock(peer, &mut r, now, sent, arriving.is_some());
        io.tick();
        now += 1;
        let idle = finished == writes.len()
            && link.is_quiet()
            && out.inflight == 0
            && received.len() as u64 + out.rx_drops >= link.answered.len() as u64;
        quiet = if idle { quiet + 1 } else { 0 };
        if quiet > 20 {
            break;
        }
    }
    // The registers, read the way the driver reads them.
    let mut read = |reg: u32| {
        io.set(&DevIn {
            mmio_addr: reg as u64,
            ..DevIn::default()
        });
        io.get().mmio_rdata as u32
    };
    let regs = Registers {
        sq_head: read(regs::SQ_HEAD),
        cq_tail: read(regs::CQ_TAIL),
        status: read(regs::STATUS),
        frames_tx: read(regs::FRAMES_TX),
        frames_rx: read(regs::FRAMES_RX),
        frames_bad: read(regs::FRAMES_BAD),
        locks_granted: read(regs::LOCKS_GRANTED),
        locks_rejected: read(regs::LOCKS_REJECTED),
        rx_tail: read(regs::RX_TAIL),
    };
    let acks = std::mem::take(&mut link.acks);
    DeviceOutcome {
        acks,
        order: std::mem::take(&mut link.order),
        others: std::mem::take(&mut link.others),
        answered: std::mem::take(&mut link.answered),
        received,
        rx_drops: out.rx_drops,
        outcome: Outcome {
            completions,
            volume: peer.volume().to_vec(),
            data_frames: link.data_frames,
            out: SpOut {
                frames_bad: regs.frames_bad as u64,
                stale: out.stale,
                unmatched: out.unmatched,
                cpl_drops: out.cpl_drops,
                inflight: out.inflight,
                ..SpOut::default()
            },
            clocks: now,
        },
        regs,
        irqs,
        rx_irqs,
        frames,
    }
}

/// `writes` with a heartbeat the host made after every `every`-th write, posted as a raw write.
/// Its offset field carries the number of the write before it, so the wire's order can be
/// checked; its sequence number and acknowledgements are the writes' (the target then waits for
/// nothing it does not have), and its tag (1,000,000 up) is its own.
pub fn with_host_frames(writes: Vec<Write>, every: u64) -> Vec<Write> {
    let mut out = Vec::new();
    for w in writes {
        let id = w.id;
        out.push(w);
        if id % every == 0 {
            let mut h = Header::new(FrameType::Heartbeat);
            h.generation = GENERATION;
            h.seq = ACK;
            h.ack_lock = ACK;
            h.ack_seq = ACK;
            h.offset = id;
            out.push(Write {
                id: 1_000_000 + id,
                mode: Mode::Raw,
                offset: 0,
                data: specmirror_abi::encode(&h, &[]),
            });
        }
    }
    out
}

/// Holds a device run to the protocol (`source_path::host::check`) and its registers to what
/// happened; raw writes to leaving as they are, in ring order, each reported `Sent` once.
pub fn check(writes: &[Write], d: &DeviceOutcome, what: &str) {
    let (raw, plain): (Vec<Write>, Vec<Write>) =
        writes.iter().cloned().partition(|w| w.mode == Mode::Raw);
    let sent = |c: &Completion| c.status == CompletionStatus::Sent as u8;
    let o = &d.outcome;
    crate::source_path::host::check(
        &plain,
        &Outcome {
            completions: o.completions.iter().filter(|c| !sent(c)).copied().collect(),
            volume: o.volume.clone(),
            data_frames: o.data_frames.clone(),
            out: o.out,
            clocks: o.clocks,
        },
        what,
    );
    let mut tags: Vec<(u64, u64)> = o
        .completions
        .iter()
        .filter(|c| sent(c))
        .map(|c| (c.seq.get(), c.lock_id.get()))
        .collect();
    tags.sort();
    let want: Vec<(u64, u64)> = raw.iter().map(|w| (w.id, 0)).collect();
    assert_eq!(tags, want, "{what}: one Sent entry per raw write");
    let frames: Vec<&Vec<u8>> = raw.iter().map(|w| &w.data).collect();
    assert_eq!(
        d.others.iter().collect::<Vec<_>>(),
        frames,
        "{what}: the raw writes' frames on the wire, as they are"
    );
    // Writes are numbered in ring order and every frame carries its write's number (a raw
    // write's in its offset field): the wire keeps the ring's order.
    assert!(
        d.order.windows(2).all(|p| p[0].1 <= p[1].1),
        "{what}: frames out of ring order: {:?}",
        d.order
    );
    assert_eq!(d.rx_drops, 0, "{what}: received frames dropped");
    assert!(
        d.received == d.answered,
        "{what}: the receive ring's frames ({}) are not the target's ({})",
        d.received.len(),
        d.answered.len()
    );
    let c = &d.outcome.completions;
    let count = |s: CompletionStatus| c.iter().filter(|x| x.status == s as u8).count() as u32;
    assert_eq!(d.regs.sq_head, writes.len() as u32, "{what}: SQ_HEAD");
    assert_eq!(d.regs.cq_tail, c.len() as u32, "{what}: CQ_TAIL");
    assert_eq!(d.regs.status & 1, 1, "{what}: STATUS running");
    assert_eq!(
        d.irqs,
        c.len() as u64,
        "{what}: one interrupt per completion"
    );
    assert_eq!(
        d.rx_irqs,
        d.received.len() as u64,
        "{what}: one receive-ring interrupt per received frame"
    );
    assert_eq!(d.regs.rx_tail as usize, d.received.len(), "{what}: RX_TAIL");
    assert_eq!(d.regs.frames_tx as u64, d.frames, "{what}: FRAMES_TX");
    assert_eq!(
        d.regs.locks_granted,
        count(CompletionStatus::LockGranted),
        "{what}: LOCKS_GRANTED"
    );
    assert_eq!(
        d.regs.locks_rejected,
        count(CompletionStatus::LockRejected),
        "{what}: LOCKS_REJECTED"
    );
    assert!(c.iter().all(|x| x.flags == 0), "{what}: completion flags");
    assert_eq!(
        d.acks,
        [(ACK, ACK)].into(),
        "{what}: the frames carry the descriptors' acknowledgements"
    );
}

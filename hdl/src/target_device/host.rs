//! A source and a host around any model of the target device (rust-hdl's simulation here; the
//! verilated one can take the same [`TdIo`]): the host sets the receive rings up through BAR0
//! (one access per clock), the source sends LOCK and DATA frames for writes to regions of their
//! own with a window of writes in flight, and the host takes each write from host memory by its
//! entry's phase, checks it, and hands the outcome back (some failed: the source then sends an
//! ABORT, which lifts the ordering barrier the failure left) after random delays. DMA and the
//! transmit stream stall at random.
//!
//! With `host_frames_in`, the source sends now and then a frame the device leaves to the host (a
//! HELLO, FLUSH or HEARTBEAT, a LOCK or DATA of another session) before a write, and the host
//! turns the device's receive ring for frames on: each must come through the ring whole, flagged
//! a frame, in the order sent. The host answers each such frame with one of its own (of random
//! length), posted as a raw descriptor on the submission ring: each must leave on the link whole,
//! in the order posted, between the device's answers, and SQ_HEAD must pass them all.
//!
//! It panics on the first broken rule: a write that reaches host memory other than the source
//! sent it, a frame for the host that does not come or comes changed or out of order, an outcome answered before the host gave it or other than it was given, an answer for
//! no write, a DMA access outside the rings.

use std::collections::{BTreeMap, VecDeque};

use rust_hdl::prelude::*;
use specmirror_abi::le::{Le32, Le64};
use specmirror_abi::regs;
use specmirror_abi::ring::{Descriptor, Mode, DESCRIPTOR_LEN};
use specmirror_abi::rx_ring::{
    DoneEntry, RxEntry, DONE_ENTRY_LEN, RX_BUFFER_BYTES, RX_ENTRY_LEN, RX_FRAME, RX_FUA, RX_PHASE,
};
use specmirror_abi::{encode, Flags, FrameType, Header};
use specmirror_core::Frame;

use super::TargetDevice;
use crate::bench::{cycle, settle, Rng};
use crate::target_path::host::{abort, data, lock, GENERATION};

const RX: u64 = 0x1000;
const DONE: u64 = 0x2000;
/// The submission ring (8 entries) and its slots' frame memory (1 KiB each).
const SQ: u64 = 0x3000;
const SQ_LOG2: u32 = 3;
const SQ_FRAMES: u64 = 0x4000;
const SQ_FRAME_BYTES: usize = 1024;
const BUFS: u64 = 0x10000;
/// Receive ring entries (and done ring entries).
const LOG2: u32 = 2;
const REGION_LOG2: u32 = 12;

/// The device's inputs for one clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TdIn {
    pub mmio_addr: u64,
    pub mmio_wdata: u64,
    pub mmio_write: bool,
    pub rd_req_ready: bool,
    pub rd_valid: bool,
    pub rd_data: u64,
    pub wr_ready: bool,
    pub tx_ready: bool,
    pub rx_data: u64,
    pub rx_valid: bool,
    pub rx_last: bool,
}

/// Its outputs, once the inputs settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TdOut {
    pub mmio_rdata: u64,
    pub rd_req_valid: bool,
    pub rd_req_addr: u64,
    pub rd_req_words: u64,
    pub rd_ready: bool,
    pub wr_valid: bool,
    pub wr_addr: u64,
    pub wr_data: u64,
    pub irq: bool,
    pub tx_data: u64,
    pub tx_valid: bool,
    pub tx_last: bool,
    pub rx_drops: u64,
}

/// A model of the device, clock by clock.
pub trait TdIo {
    /// Sets the inputs and settles.
    fn set(&mut self, i: &TdIn);
    fn get(&mut self) -> TdOut;
    fn tick(&mut self);
}

/// rust-hdl's simulation of the device.
pub struct Hdl(pub TargetDevice);

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

fn clock(u: &mut TargetDevice) -> &mut Signal<In, Clock> {
    &mut u.clock
}

impl TdIo for Hdl {
    fn set(&mut self, i: &TdIn) {
        let u = &mut self.0;
        u.mmio_addr.next = i.mmio_addr.to_bits();
        u.mmio_wdata.next = i.mmio_wdata.to_bits();
        u.mmio_write.next = i.mmio_write;
        u.rd_req_ready.next = i.rd_req_ready;
        u.rd_valid.next = i.rd_valid;
        u.rd_data.next = i.rd_data.to_bits();
        u.wr_ready.next = i.wr_ready;
        u.tx_ready.next = i.tx_ready;
        u.rx_data.next = i.rx_data.to_bits();
        u.rx_valid.next = i.rx_valid;
        u.rx_last.next = i.rx_last;
        settle(u);
    }

    fn get(&mut self) -> TdOut {
        let u = &self.0;
        TdOut {
            mmio_rdata: u.mmio_rdata.val().to_u64(),
            rd_req_valid: u.rd_req_valid.val(),
            rd_req_addr: u.rd_req_addr.val().to_u64(),
            rd_req_words: u.rd_req_words.val().to_u64(),
            rd_ready: u.rd_ready.val(),
            wr_valid: u.wr_valid.val(),
            wr_addr: u.wr_addr.val().to_u64(),
            wr_data: u.wr_data.val().to_u64(),
            irq: u.irq.val(),
            tx_data: u.tx_data.val().to_u64(),
            tx_valid: u.tx_valid.val(),
            tx_last: u.tx_last.val(),
            rx_drops: u.rx_drops.val().to_u64(),
        }
    }

    fn tick(&mut self) {
        cycle(&mut self.0, clock);
    }
}

/// A run's shape: `writes` writes, at most `window` unanswered at a time; the host looks every
/// `look` clocks at most and, one time in `stall_in`, stays away for `stall` clocks.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub seed: u64,
    pub writes: usize,
    pub window: usize,
    pub look: u64,
    pub stall_in: u64,
    pub stall: u64,
    /// Writes that share a region (1: each its own), so locks wait behind earlier ones; when
    /// more than one, the host fails none (a failure would leave a barrier that rejects the
    /// later ones).
    pub per_region: u64,
    /// Clocks after which a write whose lock is not granted has its LOCK sent again, as a
    /// source's retransmission does (0: never).
    pub repeat_lock_after: u64,
    /// One clock in this many, the receive stream has no word for the device, even in the middle
    /// of a frame, as a link that pauses does (0: never).
    pub rx_gap_in: u64,
    /// Every write a whole receive buffer (4 KiB, the longest DATA the device takes), in regions
    /// of 64 KiB that `per_region` writes share, as a long write split by the source arrives.
    pub whole_buffers: bool,
    /// One write in this many has a frame for the host sent before it (0: none, and the
    /// receive ring takes no frames).
    pub host_frames_in: u64,
    /// The link takes a word 2 clocks in 5 instead of 3 in 4: answers wait, the answer queue
    /// fills, and the lock table's grants, which never wait, are dropped and counted
    /// (ANSWER_DROPS). The write's outcome then carries the grant, as the source takes it.
    pub slow_link: bool,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: usize,
    pub failed: usize,
    pub clocks: u64,
    pub irqs: u64,
    /// Registers at the end: FRAMES_RX, FRAMES_TX, LOCKS_GRANTED, FRAMES_BAD.
    pub counters: [u32; 4],
    /// And the drop counters: DATA_DROPS, DATA_EXPIRED, DATA_REPEATS, LOCK_DROPS, LOCK_AHEAD,
    /// ANSWER_DROPS.
    pub drops: [u32; 6],
    /// LOCK frames sent again, and answers repeated for them (a grant, or a finished write's
    /// outcome, from the answer cache).
    pub lock_repeats: u32,
    pub answers_again: u32,
    /// Frames for the host sent, and how many of them were LOCK or DATA of another session.
    pub host_frames: u32,
    pub stale_frames: u32,
    /// The device's count of frames for the host it dropped, at the end.
    pub rx_drops: u64,
    /// The host's own frames that left on the link, and SQ_HEAD at the end.
    pub host_sent: u32,
    pub sq_head: u32,
    /// Outcomes that came without their grant before them (the grant dropped): each one must
    /// be one the device counted in ANSWER_DROPS.
    pub grants_in_outcome: u32,
}

struct Write {
    lock_id: u64,
    seq: u64,
    offset: u64,
    data: Vec<u8>,
    fua: bool,
    granted: bool,
    /// The errno the host gave, once it gave one.
    given: Option<u32>,
    answered: bool,
}

/// Runs `p` through `io`; panics on the first broken rule.
pub fn run(io: &mut impl TdIo, p: &Params) -> Outcome {
    // The source sends each DATA once: as many writes in flight as the data buffer has slots
    // would have some dropped (its last free slot takes only data whose lock is held already), and
    // a real source sends those again.
    assert!(
        p.window < crate::data_buffer::SLOTS,
        "a window of fewer than {} writes",
        crate::data_buffer::SLOTS
    );
    let mut rng = Rng(p.seed);
    let entries = 1u32 << LOG2;
    let mut mem = vec![0u8; BUFS as usize + (RX_BUFFER_BYTES << LOG2)];
    let per = p.per_region.max(1);
    let regions = p.writes as u64 / per + 1;
    let (region_log2, slice) = if p.whole_buffers {
        assert!(per <= 16, "16 whole buffers to a region at most");
        (16, RX_BUFFER_BYTES as u64)
    } else {
        (REGION_LOG2, RX_BUFFER_BYTES as u64 / per)
    };
    let mut bar: VecDeque<(u32, u32)> = [
        (regs::RX_BASE_LO, RX as u32),
        (regs::RX_BUF_LO, BUFS as u32),
        (regs::DONE_BASE_LO, DONE as u32),
        (regs::RX_LOG2_SIZE, LOG2),
        (regs::VOLUME_BYTES_LO, (regions << region_log2) as u32),
        (regs::REGION_LOG2, region_log2),
        (regs::GENERATION, GENERATION),
        (regs::SQ_BASE_LO, SQ as u32),
        (regs::SQ_LOG2_SIZE, SQ_LOG2),
        (
            regs::CONTROL,
            1 | if p.host_frames_in > 0 {
                regs::CONTROL_HOST_RX
            } else {
                0
            },
        ),
    ]
    .into_iter()
    .collect();
    let mut writes: Vec<Write> = (0..p.writes)
        .map(|k| {
            let len = match rng.below(3) {
                _ if p.whole_buffers => slice as usize,
                0 => 1 + rng.below(16) as usize,
                1 => slice as usize,
                _ => 1 + rng.below(slice) as usize,
            };
            // Its own bytes of a region it may share: the offset names the write.
            let offset = ((k as u64 / per) << region_log2)
                + (k as u64 % per) * slice
                + rng.below(slice - len as u64 + 1);
            Write {
                lock_id: k as u64 + 1,
                seq: 1000 + k as u64,
                offset,
                data: (0..len).map(|_| rng.next_u64() as u8).collect(),
                fua: rng.below(4) == 0,
                granted: false,
                given: None,
                answered: false,
            }
        })
        .collect();
    let by_lock: BTreeMap<u64, usize> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| (w.lock_id, i))
        .collect();
    let by_offset: BTreeMap<u64, usize> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| (w.offset, i))
        .collect();
    let mut rx: VecDeque<(u64, bool)> = VecDeque::new();
    // Frames for the host sent and not yet taken from the ring, in order.
    let mut host_sent: VecDeque<Vec<u8>> = VecDeque::new();
    // The host's own frames: to post, and posted and not yet seen on the link, in order; the
    // submission ring's tail and SQ_HEAD as last read.
    let mut to_post: VecDeque<Vec<u8>> = VecDeque::new();
    let mut posted: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut sq_tail, mut sq_head) = (0u32, 0u32);
    let mut aborts: VecDeque<(u64, u64)> = VecDeque::new();
    // When each sent write's LOCK goes again if it is still not granted.
    let mut repeat_at: BTreeMap<usize, u64> = BTreeMap::new();
    let mut tx: Vec<u64> = Vec::new();
    let mut reads: VecDeque<u64> = VecDeque::new();
    let (mut next, mut unanswered) = (0usize, 0usize);
    let (mut head, mut done_tail, mut next_look) = (0u32, 0u32, 200u64);
    let mut dev_done_head = 0u32;
    let mut o = Outcome::default();
    let limit = 20_000 * p.writes as u64 + 100_000;
    while o.done + o.failed < p.writes
        || !bar.is_empty()
        || !aborts.is_empty()
        || !rx.is_empty()
        || !host_sent.is_empty()
        || !to_post.is_empty()
        || !posted.is_empty()
    {
        if o.clocks >= limit {
            let (c, d) = (read_counters(io), read_drops(io));
            eprintln!(
                "at the stall: FRAMES_RX, FRAMES_TX, LOCKS_GRANTED, FRAMES_BAD, LOCKS_REJECTED = \
                 {c:?}; DATA_DROPS, DATA_EXPIRED, DATA_REPEATS, LOCK_DROPS, LOCK_AHEAD, \
                 ANSWER_DROPS = {d:?}"
            );
        }
        assert!(
            o.clocks < limit,
            "stuck: {} of {} writes answered; {next} sent, {unanswered} unanswered, host head \
             {head}, done tail {done_tail}, device done head {dev_done_head}; frames for the host \
             not taken {}, the host's frames to post {} and posted but not seen {} (SQ tail \
             {sq_tail}, SQ_HEAD {sq_head}); granted and not answered: {:?}",
            o.done + o.failed,
            p.writes,
            host_sent.len(),
            to_post.len(),
            posted.len(),
            writes
                .iter()
                .filter(|w| w.granted && !w.answered)
                .map(|w| (w.lock_id, w.given))
                .collect::<Vec<_>>()
        );
        o.clocks += 1;
        // The source, once the BAR is set up: an ABORT for each failed write first (as the
        // source core sends one, lifting the ordering barrier the failure left in the lock
        // table), then the next write's LOCK and DATA, back to back.
        if bar.is_empty() && rx.is_empty() && o.clocks > 20 {
            let due = repeat_at
                .iter()
                .find(|(&k, &t)| t <= o.clocks && !writes[k].granted)
                .map(|(&k, _)| k);
            if let Some((lock_id, seq)) = aborts.pop_front() {
                push_frame(&mut rx, &abort(lock_id, seq));
            } else if let Some(k) = due {
                let w = &writes[k];
                push_frame(&mut rx, &lock(w.lock_id, w.seq, w.offset >> region_log2, 1));
                repeat_at.insert(k, o.clocks + p.repeat_lock_after);
                o.lock_repeats += 1;
            } else if next < p.writes && unanswered < p.window {
                if p.host_frames_in > 0 && rng.below(p.host_frames_in) == 0 {
                    let f = host_frame(&mut rng);
                    o.stale_frames +=
                        (f[5] == FrameType::Lock as u8 || f[5] == FrameType::Data as u8) as u32;
                    o.host_frames += 1;
                    push_frame(&mut rx, &f);
                    host_sent.push_back(f);
                }
                let w = &writes[next];
                let flags = if w.fua { Flags::FUA } else { Flags::NONE };
                push_frame(&mut rx, &lock(w.lock_id, w.seq, w.offset >> region_log2, 1));
                push_frame(&mut rx, &data(w.lock_id, w.seq, w.offset, &w.data, flags));
                if p.repeat_lock_after > 0 {
                    repeat_at.insert(next, o.clocks + p.repeat_lock_after);
                }
                next += 1;
                unanswered += 1;
            }
        }
        let mut i = TdIn {
            rd_req_ready: rng.below(3) != 0,
            wr_ready: rng.below(5) != 0,
            tx_ready: if p.slow_link {
                rng.below(5) < 2
            } else {
                rng.below(4) != 0
            },
            ..TdIn::default()
        };
        if let Some((off, v)) = bar.front() {
            i.mmio_write = true;
            i.mmio_addr = *off as u64;
            i.mmio_wdata = *v as u64;
        } else if o.clocks % 2 == 0 {
            // BAR0 is free: read how far the device has read the done ring, and SQ_HEAD.
            i.mmio_addr = regs::DONE_HEAD as u64;
        } else {
            i.mmio_addr = regs::SQ_HEAD as u64;
        }
        // The link never back-pressures the device: a frame's words come one per clock, or with
        // a pause now and then.
        let gap = p.rx_gap_in > 0 && rng.below(p.rx_gap_in) == 0;
        if let Some((w, last)) = if gap { None } else { rx.pop_front() } {
            i.rx_valid = true;
            i.rx_data = w;
            i.rx_last = last;
        }
        if let Some(&a) = reads.front() {
            i.rd_valid = rng.below(2) == 0;
            let a = a as usize;
            i.rd_data = u64::from_le_bytes(mem[a..a + 8].try_into().expect("word"));
        }
        io.set(&i);
        let out = io.get();
        if i.mmio_write {
            bar.pop_front();
        } else if i.mmio_addr == regs::DONE_HEAD as u64 {
            dev_done_head = out.mmio_rdata as u32;
        } else {
            let h = out.mmio_rdata as u32;
            assert!(
                h.wrapping_sub(sq_head) <= sq_tail.wrapping_sub(sq_head),
                "SQ_HEAD {h} past the tail {sq_tail}"
            );
            sq_head = h;
        }
        if out.wr_valid && i.wr_ready {
            let a = out.wr_addr as usize;
            let in_ring = a >= RX as usize && a + 8 <= RX as usize + (RX_ENTRY_LEN << LOG2);
            let in_bufs = a >= BUFS as usize && a + 8 <= mem.len();
            assert!(in_ring || in_bufs, "DMA write outside the rings: {a:#x}");
            mem[a..a + 8].copy_from_slice(&out.wr_data.to_le_bytes());
        }
        if out.rd_req_valid && i.rd_req_ready {
            let (a, n) = (out.rd_req_addr, out.rd_req_words);
            let within = |base: u64, len: u64| a >= base && a + 8 * n <= base + len;
            assert!(
                n > 0
                    && (within(DONE, (DONE_ENTRY_LEN as u64) << LOG2)
                        || within(SQ, (DESCRIPTOR_LEN as u64) << SQ_LOG2)
                        || within(SQ_FRAMES, (SQ_FRAME_BYTES as u64) << SQ_LOG2)),
                "DMA read outside the rings: {a:#x}, {n} words"
            );
            reads.extend((0..n).map(|k| a + 8 * k));
        }
        if i.rd_valid && out.rd_ready {
            reads.pop_front();
        }
        o.irqs += out.irq as u64;
        if out.tx_valid && i.tx_ready {
            tx.push(out.tx_data);
            let bytes: Vec<u8> = if out.tx_last {
                tx.drain(..).flat_map(|w| w.to_le_bytes()).collect()
            } else {
                Vec::new()
            };
            if out.tx_last && posted.front() == Some(&bytes) {
                // The host's own frame, whole and in its turn.
                posted.pop_front();
                o.host_sent += 1;
            } else if out.tx_last {
                let (f, _) = Frame::decode(&bytes).unwrap_or_else(|_| {
                    panic!("neither an answer nor the host's next frame: {bytes:02x?}")
                });
                let h = f.header;
                let k = *by_lock
                    .get(&h.lock_id)
                    .unwrap_or_else(|| panic!("an answer for no write: {h:?}"));
                let w = &mut writes[k];
                assert_eq!(h.seq, w.seq, "answer's sequence number");
                match h.ty {
                    FrameType::LockGranted => {
                        // A repeated LOCK of a granted lock is answered again (the answer may
                        // have been lost); without repeats there is one grant.
                        assert!(
                            !w.granted || p.repeat_lock_after > 0,
                            "lock {} granted twice",
                            w.lock_id
                        );
                        o.answers_again += w.granted as u32;
                        w.granted = true;
                        repeat_at.remove(&k);
                    }
                    FrameType::WriteDone | FrameType::WriteFailed
                        if w.answered && p.repeat_lock_after > 0 =>
                    {
                        // A repeated LOCK of a finished write: its outcome again, unchanged.
                        let again = if w.given == Some(0) {
                            FrameType::WriteDone
                        } else {
                            FrameType::WriteFailed
                        };
                        assert_eq!(h.ty, again, "lock {} answered again otherwise", w.lock_id);
                        o.answers_again += 1;
                    }
                    FrameType::WriteDone | FrameType::WriteFailed => {
                        let given = w.given.unwrap_or_else(|| {
                            panic!("lock {} answered before the host's outcome", w.lock_id)
                        });
                        assert!(!w.answered, "lock {} answered twice", w.lock_id);
                        if !w.granted {
                            // Its grant was dropped: the outcome says the lock was held.
                            o.grants_in_outcome += 1;
                            w.granted = true;
                            repeat_at.remove(&k);
                        }
                        if given == 0 {
                            assert_eq!(h.ty, FrameType::WriteDone, "lock {}", w.lock_id);
                            o.done += 1;
                        } else {
                            assert_eq!(
                                (h.ty, h.arg),
                                (FrameType::WriteFailed, given as u64),
                                "lock {}",
                                w.lock_id
                            );
                            o.failed += 1;
                            aborts.push_back((w.lock_id, w.seq));
                        }
                        w.answered = true;
                        unanswered -= 1;
                    }
                    other => panic!("lock {}: unexpected answer {other:?}", w.lock_id),
                }
            }
        }
        // The host: takes what is in the receive ring, checks it, gives the outcome back.
        if o.clocks >= next_look && bar.is_empty() {
            let mut took = false;
            loop {
                let slot = (head & (entries - 1)) as usize;
                let at = RX as usize + slot * RX_ENTRY_LEN;
                let e = RxEntry::from_bytes(&mem[at..at + RX_ENTRY_LEN].try_into().expect("entry"));
                let want = if (head >> LOG2) & 1 == 0 { RX_PHASE } else { 0 };
                // The outcome needs room in the done ring: no more outstanding than it holds.
                if e.phase & RX_PHASE != want || done_tail.wrapping_sub(dev_done_head) >= entries {
                    break;
                }
                let buf = BUFS as usize + slot * RX_BUFFER_BYTES;
                if e.flags & RX_FRAME != 0 {
                    // A frame for the host: the next one sent, whole; no outcome for it.
                    let f = host_sent
                        .pop_front()
                        .expect("a frame entry for no frame sent to the host");
                    assert_eq!((e.offset.get(), e.tag), (0, 0), "a frame's entry");
                    assert_eq!(e.length.get() as usize, f.len(), "a frame's length");
                    assert!(mem[buf..buf + f.len()] == f[..], "a frame for the host");
                    mem[buf..buf + RX_BUFFER_BYTES].fill(0xa5);
                    to_post.push_back(host_answer(&mut rng));
                    head = head.wrapping_add(1);
                    took = true;
                    continue;
                }
                let k = *by_offset
                    .get(&e.offset.get())
                    .unwrap_or_else(|| panic!("a write at {} never sent", e.offset.get()));
                let w = &mut writes[k];
                assert!(w.given.is_none(), "write at {} handed over twice", w.offset);
                assert_eq!(
                    e.length.get() as usize,
                    w.data.len(),
                    "length of the write at {}",
                    w.offset
                );
                assert_eq!(
                    e.flags & RX_FUA != 0,
                    w.fua,
                    "FUA of the write at {}",
                    w.offset
                );
                assert!(
                    mem[buf..buf + w.data.len()] == w.data[..],
                    "the data of the write at {}",
                    w.offset
                );
                mem[buf..buf + RX_BUFFER_BYTES].fill(0xa5);
                let error = if per == 1 && rng.below(5) == 0 { 5 } else { 0 };
                let d = DoneEntry {
                    tag: e.tag,
                    reserved: [0; 3],
                    error: Le32::new(error),
                };
                let da = DONE as usize + (done_tail & (entries - 1)) as usize * DONE_ENTRY_LEN;
                mem[da..da + DONE_ENTRY_LEN].copy_from_slice(&d.to_bytes());
                w.given = Some(error);
                done_tail = done_tail.wrapping_add(1);
                head = head.wrapping_add(1);
                took = true;
            }
            if took {
                bar.push_back((regs::DONE_TAIL_DOORBELL, done_tail));
                bar.push_back((regs::RX_HEAD_DOORBELL, head));
            }
            // The host's own frames onto the submission ring, a slot's frame memory reused only
            // once SQ_HEAD has passed it.
            let before = sq_tail;
            while !to_post.is_empty() && sq_tail.wrapping_sub(sq_head) < 1 << SQ_LOG2 {
                let f = to_post.pop_front().expect("a frame to post");
                let slot = (sq_tail & ((1 << SQ_LOG2) - 1)) as u64;
                let buf = SQ_FRAMES + slot * SQ_FRAME_BYTES as u64;
                mem[buf as usize..buf as usize + f.len()].copy_from_slice(&f);
                let d = Descriptor {
                    dma_addr: Le64::new(buf),
                    length: Le32::new(f.len() as u32),
                    mode: Mode::Raw as u8,
                    ..Default::default()
                };
                let at = SQ as usize + slot as usize * DESCRIPTOR_LEN;
                mem[at..at + DESCRIPTOR_LEN].copy_from_slice(&d.to_bytes());
                posted.push_back(f);
                sq_tail = sq_tail.wrapping_add(1);
            }
            if sq_tail != before {
                bar.push_back((regs::SQ_TAIL_DOORBELL, sq_tail));
            }
            next_look = o.clocks
                + if rng.below(p.stall_in) == 0 {
                    p.stall
                } else {
                    1 + rng.below(p.look)
                };
        }
        io.tick();
    }
    // The counters, read through BAR0 after a few quiet clocks.
    for _ in 0..8 {
        io.set(&TdIn::default());
        io.tick();
    }
    let c = read_counters(io);
    o.counters.copy_from_slice(&c[..4]);
    o.drops = read_drops(io);
    assert!(
        o.grants_in_outcome <= o.drops[5],
        "{} outcomes without their grant, {} answers dropped",
        o.grants_in_outcome,
        o.drops[5]
    );
    o.rx_drops = io.get().rx_drops;
    o.sq_head = read_reg(io, regs::SQ_HEAD);
    assert_eq!(o.sq_head, sq_tail, "SQ_HEAD at the end");
    o
}

/// The host's answer to a frame it was handed: a frame of its own, of up to its slot's 1 KiB
/// (the longest the host's software makes, a HELLO_ACK, is 136 bytes: these hold the link
/// longer, and keep the answer queue fuller).
fn host_answer(rng: &mut Rng) -> Vec<u8> {
    let mut h = Header::new(FrameType::HelloAck);
    h.generation = GENERATION;
    h.seq = rng.next_u64();
    let n = rng.below((SQ_FRAME_BYTES - 72) as u64 + 1) as usize;
    encode(
        &h,
        &(0..n).map(|_| rng.next_u64() as u8).collect::<Vec<_>>(),
    )
}

/// A frame the target device leaves to the host: a HELLO, FLUSH or HEARTBEAT of any session, or
/// a LOCK or DATA (with up to 256 bytes) of another one.
fn host_frame(rng: &mut Rng) -> Vec<u8> {
    const KINDS: [FrameType; 5] = [
        FrameType::Hello,
        FrameType::Flush,
        FrameType::Heartbeat,
        FrameType::Lock,
        FrameType::Data,
    ];
    let mut h = Header::new(KINDS[rng.below(5) as usize]);
    h.generation = GENERATION + 1 + rng.below(3) as u32;
    if rng.below(2) == 0
        && matches!(
            h.ty,
            FrameType::Hello | FrameType::Flush | FrameType::Heartbeat
        )
    {
        h.generation = GENERATION;
    }
    h.seq = rng.next_u64();
    h.lock_id = rng.next_u64();
    let payload: Vec<u8> = match h.ty {
        FrameType::Data | FrameType::Hello => (0..1 + rng.below(256))
            .map(|_| rng.next_u64() as u8)
            .collect(),
        _ => Vec::new(),
    };
    encode(&h, &payload)
}

/// The target path's drop counters, read through BAR0: DATA_DROPS, DATA_EXPIRED, DATA_REPEATS,
/// LOCK_DROPS, LOCK_AHEAD, ANSWER_DROPS.
pub fn read_drops(io: &mut impl TdIo) -> [u32; 6] {
    regs::TARGET_DROP_COUNTERS.map(|r| read_reg(io, r))
}

fn read_reg(io: &mut impl TdIo, r: u32) -> u32 {
    io.set(&TdIn {
        mmio_addr: r as u64,
        ..TdIn::default()
    });
    io.get().mmio_rdata as u32
}

/// A frame's 64-bit words onto the receive stream.
fn push_frame(rx: &mut VecDeque<(u64, bool)>, f: &[u8]) {
    let n = f.len().div_ceil(8);
    for (k, c) in f.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        rx.push_back((u64::from_le_bytes(b), k + 1 == n));
    }
}

/// FRAMES_RX, FRAMES_TX, LOCKS_GRANTED, FRAMES_BAD and LOCKS_REJECTED, read through BAR0.
fn read_counters(io: &mut impl TdIo) -> [u32; 5] {
    [
        regs::FRAMES_RX,
        regs::FRAMES_TX,
        regs::LOCKS_GRANTED,
        regs::FRAMES_BAD,
        regs::LOCKS_REJECTED,
    ]
    .map(|r| read_reg(io, r))
}

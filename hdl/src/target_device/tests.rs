//! The target device end to end in rust-hdl's simulation: the host sets the receive rings up
//! through BAR0, LOCK and DATA frames arrive on the link, each write appears in host memory (its
//! data in the slot's buffer, then its entry), and the host's done entries come back as the
//! answers: WRITE_DONE, or WRITE_FAILED with the host's errno. The registers count what happened.

use std::collections::VecDeque;

use rust_hdl::prelude::*;
use specmirror_abi::le::Le32;
use specmirror_abi::regs;
use specmirror_abi::rx_ring::{DoneEntry, RxEntry, DONE_ENTRY_LEN, RX_ENTRY_LEN, RX_FUA, RX_PHASE};
use specmirror_abi::{Flags, FrameType};
use specmirror_core::Frame;

use super::TargetDevice;
use crate::bench::{cycle, settle};
use crate::target_path::host::{data, lock, GENERATION};

const RX: u64 = 0x1000;
const DONE: u64 = 0x2000;
const BUFS: u64 = 0x10000;

fn clock(u: &mut TargetDevice) -> &mut Signal<In, Clock> {
    &mut u.clock
}

struct Bench {
    u: TargetDevice,
    mem: Vec<u8>,
    rx: VecDeque<(u64, bool)>,
    tx: Vec<u64>,
    answers: Vec<Frame>,
    reads: VecDeque<u64>,
}

impl Bench {
    fn new() -> Bench {
        let mut u = super::tests_support::connected();
        u.connect_all();
        Bench {
            u,
            mem: vec![0u8; BUFS as usize + 4 * 4096],
            rx: VecDeque::new(),
            tx: Vec::new(),
            answers: Vec::new(),
            reads: VecDeque::new(),
        }
    }

    /// One clock: a BAR access if any, the next received word, DMA served at once.
    fn step(&mut self, write: Option<(u32, u32)>) {
        let u = &mut self.u;
        u.mmio_write.next = write.is_some();
        if let Some((off, v)) = write {
            u.mmio_addr.next = (off as u64).to_bits();
            u.mmio_wdata.next = (v as u64).to_bits();
        }
        let w = self.rx.pop_front();
        u.rx_valid.next = w.is_some();
        u.rx_data.next = w.map_or(0, |w| w.0).to_bits();
        u.rx_last.next = w.is_some_and(|w| w.1);
        u.tx_ready.next = true;
        u.wr_ready.next = true;
        u.rd_req_ready.next = true;
        u.rd_valid.next = !self.reads.is_empty();
        if let Some(&a) = self.reads.front() {
            let a = a as usize;
            u.rd_data.next =
                u64::from_le_bytes(self.mem[a..a + 8].try_into().expect("word")).to_bits();
        }
        settle(u);
        if u.wr_valid.val() {
            let a = u.wr_addr.val().to_u64() as usize;
            assert!(a + 8 <= self.mem.len(), "DMA write outside memory: {a:#x}");
            self.mem[a..a + 8].copy_from_slice(&u.wr_data.val().to_u64().to_le_bytes());
        }
        if u.rd_req_valid.val() {
            self.reads.push_back(u.rd_req_addr.val().to_u64());
        }
        if u.rd_valid.val() && u.rd_ready.val() {
            self.reads.pop_front();
        }
        if u.tx_valid.val() {
            self.tx.push(u.tx_data.val().to_u64());
            if u.tx_last.val() {
                let bytes: Vec<u8> = self.tx.drain(..).flat_map(|w| w.to_le_bytes()).collect();
                let (f, _) = Frame::decode(&bytes).expect("a well-formed answer");
                self.answers.push(f);
            }
        }
        cycle(u, clock);
    }

    fn write_reg(&mut self, off: u32, v: u32) {
        self.step(Some((off, v)));
    }

    fn read_reg(&mut self, off: u32) -> u32 {
        self.u.mmio_write.next = false;
        self.u.mmio_addr.next = (off as u64).to_bits();
        settle(&mut self.u);
        self.u.mmio_rdata.val().to_u64() as u32
    }

    fn send(&mut self, frame: &[u8]) {
        let words: Vec<u64> = frame
            .chunks(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let n = words.len();
        for (i, w) in words.into_iter().enumerate() {
            self.rx.push_back((w, i + 1 == n));
        }
    }

    fn run(&mut self, clocks: u32) {
        for _ in 0..clocks {
            self.step(None);
        }
    }

    fn entry(&self, slot: usize) -> RxEntry {
        let at = RX as usize + slot * RX_ENTRY_LEN;
        RxEntry::from_bytes(&self.mem[at..at + RX_ENTRY_LEN].try_into().expect("entry"))
    }

    fn post_done(&mut self, index: usize, tag: u8, error: u32) {
        let d = DoneEntry {
            tag,
            reserved: [0; 3],
            error: Le32::new(error),
        };
        let at = DONE as usize + (index % 4) * DONE_ENTRY_LEN;
        self.mem[at..at + DONE_ENTRY_LEN].copy_from_slice(&d.to_bytes());
    }
}

#[test]
fn writes_reach_host_memory_and_the_hosts_outcomes_answer_the_source() {
    let mut b = Bench::new();
    for (off, v) in [
        (regs::RX_BASE_LO, RX as u32),
        (regs::RX_BUF_LO, BUFS as u32),
        (regs::DONE_BASE_LO, DONE as u32),
        (regs::RX_LOG2_SIZE, 2),
        (regs::VOLUME_BYTES_LO, 64 * 4096),
        (regs::REGION_LOG2, 12),
        (regs::GENERATION, GENERATION),
        (regs::CONTROL, 1),
    ] {
        b.write_reg(off, v);
    }
    b.run(4);
    assert_eq!(b.read_reg(regs::STATUS) & 1, 1, "running");
    assert_eq!(b.read_reg(regs::LOCK_TABLE_ENTRIES), 16);
    // Two writes: the first lands, the second fails on the host.
    let one: Vec<u8> = (0..100u32).map(|i| i as u8 ^ 0x5a).collect();
    let two = vec![0xc3u8; 4096];
    b.send(&lock(1, 11, 0, 1));
    b.send(&data(1, 11, 0, &one, Flags::NONE));
    b.send(&lock(2, 12, 3, 1));
    b.send(&data(2, 12, 3 * 4096, &two, Flags::FUA));
    b.run(3000);
    assert_eq!(b.read_reg(regs::RX_TAIL), 2, "two writes handed over");
    let (e1, e2) = (b.entry(0), b.entry(1));
    assert_eq!((e1.offset.get(), e1.length.get()), (0, 100));
    assert_eq!((e2.offset.get(), e2.length.get()), (3 * 4096, 4096));
    assert_eq!(e1.phase & RX_PHASE, RX_PHASE);
    assert_eq!((e1.flags & RX_FUA, e2.flags & RX_FUA), (0, RX_FUA));
    assert!(b.mem[BUFS as usize..BUFS as usize + 100] == one[..]);
    assert!(b.mem[BUFS as usize + 4096..BUFS as usize + 8192] == two[..]);
    // No answer for the writes before the host's outcome.
    let types = |b: &Bench| -> Vec<FrameType> { b.answers.iter().map(|f| f.header.ty).collect() };
    assert_eq!(types(&b), [FrameType::LockGranted, FrameType::LockGranted]);
    b.post_done(0, e1.tag, 0);
    b.post_done(1, e2.tag, 5);
    b.write_reg(regs::DONE_TAIL_DOORBELL, 2);
    b.write_reg(regs::RX_HEAD_DOORBELL, 2);
    b.run(200);
    assert_eq!(b.read_reg(regs::DONE_HEAD), 2, "both outcomes read");
    assert_eq!(
        types(&b),
        [
            FrameType::LockGranted,
            FrameType::LockGranted,
            FrameType::WriteDone,
            FrameType::WriteFailed
        ]
    );
    let (done, failed) = (&b.answers[2].header, &b.answers[3].header);
    assert_eq!((done.lock_id, done.seq), (1, 11));
    assert_eq!((failed.lock_id, failed.seq, failed.arg), (2, 12, 5));
    assert_eq!(b.read_reg(regs::FRAMES_RX), 4);
    assert_eq!(b.read_reg(regs::FRAMES_TX), 4);
    assert_eq!(b.read_reg(regs::LOCKS_GRANTED), 2);
    assert_eq!(b.read_reg(regs::FRAMES_BAD), 0);
}

#[test]
fn random_writes_reach_the_host_whole_and_every_outcome_answers_its_write() {
    use super::host::{run, Hdl, Params};
    // rust-hdl simulates the whole device at a few thousand clocks a second: one short run here.
    let seed = 1u64;
    let p = Params {
        seed,
        writes: 16,
        window: 3,
        look: 30,
        stall_in: 6,
        stall: 800,
        per_region: 1,
        repeat_lock_after: 0,
        rx_gap_in: 0,
        whole_buffers: false,
        host_frames_in: 2,
        slow_link: false,
    };
    let o = run(&mut Hdl::new(), &p);
    assert_eq!(o.done + o.failed, 16, "seed {seed}");
    assert!(o.failed > 0 && o.done > 0, "seed {seed}: {o:?}");
    assert_eq!(
        o.irqs,
        16 + o.host_frames as u64,
        "seed {seed}: one interrupt per write or frame handed over"
    );
    // Frames for the host came through the ring (the run checks each), none dropped.
    assert!(o.host_frames > 0 && o.rx_drops == 0, "seed {seed}: {o:?}");
    // The host answered each on the submission ring, and each answer left on the link.
    assert_eq!(o.host_sent, o.host_frames, "seed {seed}: {o:?}");
    // FRAMES_RX: a LOCK and a DATA per write, an ABORT per failed one, the frames for the host;
    // FRAMES_TX: a grant and an outcome per write.
    assert_eq!(
        o.counters,
        [32 + o.failed as u32 + o.host_frames, 32, 16, 0],
        "seed {seed}: FRAMES_RX, FRAMES_TX, LOCKS_GRANTED, FRAMES_BAD"
    );
}

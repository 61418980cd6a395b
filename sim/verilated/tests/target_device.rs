//! The verilated target device (register block, receive rings, target path): in lockstep with
//! rust-hdl's simulation under the host model (every output, every clock), and for 10^6 clocks
//! and more (`SPECMIRROR_HDL_CYCLES`) alone under it: every write reaches host memory whole, every
//! answer comes after the host's outcome and carries it, the counters add up.

use specmirror_hdl::target_device::host::{run, Hdl, Outcome, Params, TdIn, TdIo, TdOut};
use specmirror_verilated::target_device::VerTargetDevice;

/// Clocks the long run takes at least; `SPECMIRROR_HDL_CYCLES` raises it.
fn cycles() -> u64 {
    std::env::var("SPECMIRROR_HDL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Both models on the same inputs; their outputs must agree every clock.
struct Both {
    hdl: Hdl,
    ver: VerTargetDevice,
    clock: u64,
}

impl TdIo for Both {
    fn set(&mut self, i: &TdIn) {
        self.hdl.set(i);
        self.ver.set(i);
    }

    fn get(&mut self) -> TdOut {
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

/// What every run must show: each write answered, one interrupt per write handed over, the
/// counters (FRAMES_RX: a LOCK and a DATA per write, and an ABORT per failed one; FRAMES_TX: a
/// grant and an outcome per write), and nothing dropped (the window leaves a data slot free, and
/// the host model sends every frame once, in order). With `slow_link`, answers may be dropped:
/// each grant missing on the link is one the run saw its write's outcome carry, and checked
/// among ANSWER_DROPS.
fn check(o: &Outcome, p: &Params, what: &str) {
    let writes = p.writes;
    assert_eq!(o.done + o.failed, writes, "{what}: {o:?}");
    assert_eq!(
        o.irqs,
        (writes + o.host_frames as usize) as u64,
        "{what}: one interrupt per write or frame handed over"
    );
    let w = writes as u32;
    assert_eq!(o.rx_drops, 0, "{what}: frames for the host dropped");
    assert_eq!(
        o.host_sent, o.host_frames,
        "{what}: the host's answers to them, sent from the submission ring"
    );
    assert_eq!(
        o.counters,
        [
            2 * w + o.failed as u32 + o.lock_repeats + o.host_frames,
            2 * w + o.answers_again - o.grants_in_outcome,
            w,
            0
        ],
        "{what}: FRAMES_RX, FRAMES_TX, LOCKS_GRANTED, FRAMES_BAD"
    );
    let answer_drops = if p.slow_link { o.drops[5] } else { 0 };
    assert_eq!(
        o.drops,
        [0, 0, 0, 0, 0, answer_drops],
        "{what}: DATA_DROPS, DATA_EXPIRED, DATA_REPEATS, LOCK_DROPS, LOCK_AHEAD, ANSWER_DROPS"
    );
}

/// The drop counters count what they name, in the registers the host reads: DATA frames the
/// buffer does not take (longer than a slot; an implicit lock), a DATA frame whose lock never
/// comes (after DATA_TIMEOUT clocks), and a LOCK ahead of the lock id the table waits for.
#[test]
fn the_drop_counters_count_what_they_name() {
    use specmirror_abi::{regs, Flags};
    use specmirror_hdl::data_buffer::SLOT_BYTES;
    use specmirror_hdl::target_device::host::read_drops;
    use specmirror_hdl::target_device::DATA_TIMEOUT;
    use specmirror_hdl::target_path::host::{data, lock, pattern, GENERATION};

    let mut m = VerTargetDevice::new();
    let clock = |m: &mut VerTargetDevice, i: TdIn| {
        m.set(&i);
        m.get();
        m.tick();
    };
    for (o, v) in [
        (regs::VOLUME_BYTES_LO, 1 << 20),
        (regs::REGION_LOG2, 12),
        (regs::GENERATION, GENERATION),
        (regs::CONTROL, 1),
    ] {
        let i = TdIn {
            mmio_write: true,
            mmio_addr: o as u64,
            mmio_wdata: v as u64,
            ..TdIn::default()
        };
        clock(&mut m, i);
    }
    assert_eq!(read_drops(&mut m), [0; 6], "nothing dropped yet");
    let frames = [
        // Longer than a slot, and an implicit lock: not taken.
        data(1, 10, 0, &pattern(1, SLOT_BYTES as usize + 8), Flags::NONE),
        data(1, 10, 0, &pattern(2, 64), Flags::IMPLICIT_LOCK),
        // Lock 1 never comes: its data waits, then expires.
        data(1, 10, 0, &pattern(3, 64), Flags::NONE),
        // Lock 5 is ahead of lock 1, the one the table waits for.
        lock(5, 14, 2, 1),
    ];
    for f in &frames {
        let n = f.len().div_ceil(8);
        for (k, c) in f.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            let i = TdIn {
                rx_valid: true,
                rx_data: u64::from_le_bytes(b),
                rx_last: k + 1 == n,
                tx_ready: true,
                ..TdIn::default()
            };
            clock(&mut m, i);
        }
    }
    for _ in 0..64 {
        clock(&mut m, TdIn::default());
    }
    assert_eq!(read_drops(&mut m), [2, 0, 0, 0, 1, 0], "before the timeout");
    for _ in 0..DATA_TIMEOUT + 1024 {
        clock(&mut m, TdIn::default());
    }
    assert_eq!(read_drops(&mut m), [2, 1, 0, 0, 1, 0], "after the timeout");
}

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle() {
    // rust-hdl simulates the whole device at a few thousand clocks a second: one short run.
    let mut both = Both {
        hdl: Hdl::new(),
        ver: VerTargetDevice::new(),
        clock: 0,
    };
    let p = Params {
        seed: 4,
        writes: 10,
        window: 3,
        look: 30,
        stall_in: 5,
        stall: 600,
        per_region: 1,
        repeat_lock_after: 0,
        rx_gap_in: 0,
        whole_buffers: false,
        host_frames_in: 2,
        slow_link: false,
    };
    let o = run(&mut both, &p);
    check(&o, &p, "lockstep");
    assert!(o.failed > 0, "the host failed some writes: {o:?}");
    eprintln!("lockstep: {} clocks, {o:?}", both.clock);
}

#[test]
fn a_million_clocks_of_writes_reach_the_host_and_are_answered() {
    let want = cycles();
    let (mut clocks, mut writes, mut failed) = (0u64, 0usize, 0usize);
    let mut seed = 31u64;
    while clocks < want {
        let n = 400;
        let p = Params {
            seed,
            writes: n,
            window: [1usize, 2, 3][seed as usize % 3],
            look: 60,
            stall_in: 50,
            stall: 5_000,
            per_region: 1,
            repeat_lock_after: 0,
            rx_gap_in: 0,
            whole_buffers: false,
            host_frames_in: [0, 4][seed as usize % 2],
            slow_link: false,
        };
        let o = run(&mut VerTargetDevice::new(), &p);
        check(&o, &p, &format!("seed {seed}"));
        clocks += o.clocks;
        writes += n;
        failed += o.failed;
        seed += 1;
    }
    assert!(failed > 0, "failed writes were seen");
    eprintln!("target device: {clocks} clocks, {writes} writes, {failed} failed by the host");
}

/// Writes that share regions, so each lock waits behind the earlier ones with its DATA already
/// in the buffer, and a LOCK sent again while it waits (as a source retransmits one): every write
/// still reaches host memory once, whole, and is answered once. Also with a link that takes a
/// word only 2 clocks in 5: answers wait, the answer queue fills, and the lock table's answers,
/// which never wait, are dropped and counted; a write whose grant never reached the link has its
/// outcome carry it (the source takes a WRITE_DONE as the grant), and each such grant is among
/// the ANSWER_DROPS the device counted.
#[test]
fn locks_repeated_while_they_wait_behind_overlapping_writes_cost_no_data() {
    let mut carried = 0;
    for (seed, repeat, gaps, whole, slow) in [
        (71u64, 0u64, 0u64, false, false),
        (72, 0, 0, false, false),
        (73, 300, 0, false, false),
        (74, 300, 0, false, false),
        (75, 1500, 0, false, false),
        (76, 40, 0, false, false),
        // The link pausing, mid-frame too.
        (77, 0, 3, false, false),
        (78, 300, 7, false, false),
        // Whole 4 KiB buffers sharing 64 KiB regions: a long write's parts.
        (79, 0, 0, true, false),
        (80, 300, 5, true, false),
        // The slow link.
        (91, 40, 0, false, true),
        (92, 40, 0, false, true),
        (93, 40, 0, false, true),
        (94, 40, 0, false, true),
    ] {
        let n = 200;
        let p = Params {
            seed,
            writes: n,
            window: 3,
            look: 60,
            stall_in: 50,
            stall: 2_000,
            per_region: 4,
            repeat_lock_after: repeat,
            rx_gap_in: gaps,
            whole_buffers: whole,
            host_frames_in: if seed % 2 == 0 { 3 } else { 0 },
            slow_link: slow,
        };
        let o = run(&mut VerTargetDevice::new(), &p);
        check(
            &o,
            &p,
            &format!(
                "seed {seed}, repeats after {repeat} clocks, pauses 1 in {gaps}, whole {whole}, \
                 slow link {slow}"
            ),
        );
        assert_eq!(o.lock_repeats > 0, repeat > 0, "seed {seed}: {o:?}");
        carried += o.grants_in_outcome;
        eprintln!(
            "seed {seed}, LOCK repeated after {repeat} clocks: {} clocks for {n} writes, {} LOCKs \
             repeated, {} grants carried by their outcome",
            o.clocks, o.lock_repeats, o.grants_in_outcome
        );
    }
    assert!(
        carried > 0,
        "the slow link dropped no grant: nothing here was tested"
    );
}

/// One uncontended 4 KiB write through the verilated target device, the host answering at once:
/// the clocks from the LOCK to LOCK_GRANTED, from the DATA to the write in host memory, and from
/// the host's doorbell to WRITE_DONE (`cargo test --release -p specmirror-verilated --test
/// target_device latency -- --nocapture`).
#[test]
fn latency_of_one_write_through_host_memory() {
    use specmirror_abi::le::Le32;
    use specmirror_abi::regs;
    use specmirror_abi::rx_ring::{DoneEntry, RxEntry, RX_ENTRY_LEN, RX_PHASE};
    use specmirror_abi::{Flags, FrameType, Header, HEADER_LEN};
    use specmirror_hdl::target_path::host::{data, lock, pattern, GENERATION};
    use std::collections::VecDeque;

    const RX: u64 = 0x1000;
    const DONE: u64 = 0x2000;
    const BUFS: u64 = 0x10000;
    let mut m = VerTargetDevice::new();
    let mut mem = vec![0u8; 0x20000];
    let mut bar: VecDeque<(u32, u32)> = [
        (regs::RX_BASE_LO, RX as u32),
        (regs::RX_BUF_LO, BUFS as u32),
        (regs::DONE_BASE_LO, DONE as u32),
        (regs::RX_LOG2_SIZE, 2),
        (regs::VOLUME_BYTES_LO, 1 << 20),
        (regs::REGION_LOG2, 12),
        (regs::GENERATION, GENERATION),
        (regs::CONTROL, 1),
    ]
    .into_iter()
    .collect();
    let payload = pattern(9, 4096);
    let frames = [
        lock(1, 100, 3, 1),
        data(1, 100, 3 << 12, &payload, Flags::NONE),
    ];
    let mut rx: VecDeque<(u64, bool, usize)> = VecDeque::new();
    let mut reads: VecDeque<u64> = VecDeque::new();
    let mut tx: Vec<u64> = Vec::new();
    let mut tx_first = 0u64;
    // Clocks of: each frame's last word in, the first data word and the entry's phase word in
    // host memory, the host's doorbell, each answer's first word out.
    let mut last_in = [0u64; 2];
    let (mut first_dma, mut entry_at, mut doorbell_at) = (None, None, None);
    let mut answers: Vec<(FrameType, u64)> = Vec::new();
    let mut clock = 0u64;
    while answers.len() < 2 {
        assert!(
            clock < 100_000,
            "no answers after {clock} clocks: {answers:?}"
        );
        if bar.is_empty() && clock == 20 {
            for (k, f) in frames.iter().enumerate() {
                let n = f.len().div_ceil(8);
                for (j, c) in f.chunks(8).enumerate() {
                    let mut b = [0u8; 8];
                    b[..c.len()].copy_from_slice(c);
                    rx.push_back((u64::from_le_bytes(b), j + 1 == n, k));
                }
            }
        }
        let mut i = TdIn {
            rd_req_ready: true,
            wr_ready: true,
            tx_ready: true,
            ..TdIn::default()
        };
        if let Some(&(off, v)) = bar.front() {
            (i.mmio_write, i.mmio_addr, i.mmio_wdata) = (true, off as u64, v as u64);
        }
        if let Some(&(w, last, _)) = rx.front() {
            (i.rx_valid, i.rx_data, i.rx_last) = (true, w, last);
        }
        if let Some(&a) = reads.front() {
            i.rd_valid = true;
            i.rd_data = u64::from_le_bytes(mem[a as usize..][..8].try_into().unwrap());
        }
        m.set(&i);
        let o = m.get();
        if i.mmio_write {
            bar.pop_front();
        }
        if let Some((_, last, k)) = rx.pop_front() {
            if last {
                last_in[k] = clock;
            }
        }
        if i.rd_valid && o.rd_ready {
            reads.pop_front();
        }
        if o.rd_req_valid {
            reads.push_back(o.rd_req_addr);
        }
        if o.wr_valid {
            let a = o.wr_addr as usize;
            mem[a..a + 8].copy_from_slice(&o.wr_data.to_le_bytes());
            if o.wr_addr >= BUFS && first_dma.is_none() {
                first_dma = Some(clock);
            }
            if o.wr_addr == RX + 8 {
                entry_at = Some(clock);
            }
        }
        if o.tx_valid {
            if tx.is_empty() {
                tx_first = clock;
            }
            tx.push(o.tx_data);
            if o.tx_last {
                let bytes: Vec<u8> = tx.drain(..).flat_map(|w| w.to_le_bytes()).collect();
                let h = Header::decode(&bytes[..HEADER_LEN]).expect("an answer");
                answers.push((h.ty, tx_first));
            }
        }
        // The host, the clock after the entry's phase word: checks the write, hands the outcome
        // back and rings both doorbells.
        if entry_at.is_some_and(|t| t + 1 == clock) {
            let e = RxEntry::from_bytes(&mem[RX as usize..][..RX_ENTRY_LEN].try_into().unwrap());
            assert_eq!(e.phase & RX_PHASE, RX_PHASE);
            assert_eq!((e.offset.get(), e.length.get()), (3 << 12, 4096));
            assert!(
                mem[BUFS as usize..][..4096] == payload[..],
                "the data in host memory"
            );
            let d = DoneEntry {
                tag: e.tag,
                reserved: [0; 3],
                error: Le32::new(0),
            };
            mem[DONE as usize..][..8].copy_from_slice(&d.to_bytes());
            bar.push_back((regs::DONE_TAIL_DOORBELL, 1));
            bar.push_back((regs::RX_HEAD_DOORBELL, 1));
            doorbell_at = Some(clock);
        }
        m.tick();
        clock += 1;
    }
    assert_eq!(
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        [FrameType::LockGranted, FrameType::WriteDone]
    );
    let (first_dma, entry_at, doorbell_at) = (
        first_dma.expect("data in host memory"),
        entry_at.expect("an entry"),
        doorbell_at.expect("a doorbell"),
    );
    let steps = [
        (
            "LOCK's last word to LOCK_GRANTED's first",
            answers[0].1 - last_in[0],
        ),
        (
            "DATA's last word to its first word in host memory",
            first_dma - last_in[1],
        ),
        (
            "DATA's last word to the entry's phase word in host memory",
            entry_at - last_in[1],
        ),
        (
            "the host's doorbell to WRITE_DONE's first word",
            answers[1].1 - doorbell_at,
        ),
    ];
    for (what, clocks) in steps {
        eprintln!("target device latency: {what}: {clocks} clocks");
    }
    // The data's 512 words go out one per clock: the entry follows them.
    assert!(entry_at - first_dma >= 512, "{steps:?}");
}

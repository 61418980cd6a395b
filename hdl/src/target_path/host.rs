//! A host and a source around any model of the target path (rust-hdl's simulation or the Verilator
//! model, through [`TargetIo`]), and the software target as the reference.
//!
//! The host feeds frames in a word per clock with a gap after each, takes the volume-write port's
//! words when it is ready (at random), writes them to its volume and completes each write some
//! clocks later. At every clock it checks that a write leaves only for a table slot that holds its
//! lock, and only inside the regions that lock holds. The network between source and target can
//! lose, repeat and corrupt frames both ways; the source's retransmission timer
//! ([`Host::retransmit_until_done`]) sends again what was not answered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use specmirror_abi::{encode, Flags, FrameType, Header, Hello, HelloStatus};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;

use crate::bench::Rng;

pub const REGION: u64 = 4096;
pub const REGION_SHIFT: u64 = 12;
pub const REGIONS: u64 = 64;
pub const GENERATION: u32 = 3;
/// Writes the source model retransmits for at a time.
pub const RETRANSMIT_WINDOW: usize = 8;
/// Retransmission rounds before the source model gives up.
pub const MAX_ROUNDS: u32 = 1000;
pub const PAIR: [u8; 16] = *b"hdl-target-path!";

/// The target path's inputs for one clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpIn {
    pub rx_data: u64,
    pub rx_valid: bool,
    pub rx_last: bool,
    pub tx_ready: bool,
    pub generation: u64,
    pub region_count: u64,
    pub retry_backoff: u64,
    pub retry_limit: u64,
    pub local_hold: bool,
    pub local_first: u64,
    pub local_end: u64,
    pub clear_barriers: bool,
    pub region_shift: u64,
    pub volume_bytes: u64,
    pub data_timeout: u64,
    pub grant_timeout: u64,
    pub wr_ready: bool,
    pub done_valid: bool,
    pub done_slot: u64,
    pub done_error: u64,
}

/// The target path's outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpOut {
    pub tx_data: u64,
    pub tx_valid: bool,
    pub tx_last: bool,
    pub wr_valid: bool,
    pub wr_data: u64,
    pub wr_last: bool,
    pub wr_offset: u64,
    pub wr_len: u64,
    pub wr_fua: bool,
    pub wr_slot: u64,
    pub done_ready: bool,
    pub dec_valid: bool,
    pub dec_granted: bool,
    pub dec_lock_id: u64,
    pub dec_slot: u64,
    pub held: u64,
    pub frames_bad: u64,
    pub lock_drops: u64,
    pub answer_drops: u64,
    pub data_drops: u64,
    pub data_expired: u64,
    pub data_repeats: u64,
    pub data_violations: u64,
    pub locks_revoked: u64,
    pub lock_ahead: u64,
    pub lock_repeats: u64,
    pub stale: u64,
    pub answers_repeated: u64,
    pub repeats_missed: u64,
    pub data_status: u64,
    pub grants_taken: u64,
}

/// A model of the target path: set the inputs, read the settled outputs, clock it.
pub trait TargetIo {
    fn set(&mut self, i: &TpIn);
    fn get(&mut self) -> TpOut;
    fn tick(&mut self);
}

pub fn lock(lock_id: u64, seq: u64, first: u64, count: u64) -> Vec<u8> {
    let mut h = Header::new(FrameType::Lock);
    h.generation = GENERATION;
    h.lock_id = lock_id;
    h.seq = seq;
    h.offset = first;
    h.arg = count;
    encode(&h, &[])
}

pub fn data(lock_id: u64, seq: u64, offset: u64, bytes: &[u8], flags: Flags) -> Vec<u8> {
    let mut h = Header::new(FrameType::Data);
    h.generation = GENERATION;
    h.lock_id = lock_id;
    h.seq = seq;
    h.offset = offset;
    h.flags = flags;
    encode(&h, bytes)
}

pub fn abort(lock_id: u64, seq: u64) -> Vec<u8> {
    let mut h = Header::new(FrameType::Abort);
    h.generation = GENERATION;
    h.lock_id = lock_id;
    h.seq = seq;
    encode(&h, &[])
}

/// Bytes that differ from write to write.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len).map(|_| r.next_u64() as u8).collect()
}

/// Speculative writes (LOCK, then DATA right behind it), some with their DATA ahead of the LOCK,
/// many overlapping earlier ones (they wait for the earlier write), lengths from 1 byte to a
/// whole buffer slot, some with FUA.
pub fn writes(seed: u64, n: u64) -> Vec<Vec<u8>> {
    let mut r = Rng(seed * 2 + 1);
    let mut frames = Vec::new();
    for i in 1..=n {
        let len = match r.below(4) {
            0 => 1 + r.below(64),
            1 => 4096,
            _ => 8 * (1 + r.below(300)) + r.below(8),
        };
        let len = len.min(crate::data_buffer::SLOT_BYTES);
        // Few regions, so that writes collide.
        let offset = r.below(8 * REGION - len);
        let first = offset / REGION;
        let count = (offset + len - 1) / REGION - first + 1 + r.below(2);
        let flags = if r.below(4) == 0 {
            Flags::FUA
        } else {
            Flags::NONE
        };
        let l = lock(i, 1000 + i, first, count);
        let d = data(
            i,
            1000 + i,
            offset,
            &pattern(seed << 20 | i, len as usize),
            flags,
        );
        if r.below(5) == 0 {
            frames.push(d);
            frames.push(l);
        } else {
            frames.push(l);
            frames.push(d);
        }
    }
    frames
}

/// The frames the software target answers `frames` with, in session `GENERATION`, every volume
/// write completing at once; and its volume afterwards.
pub fn software(frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut t = Target::new(TargetConfig::new(REGIONS * REGION, REGION, PAIR));
    let hello = Hello::for_pair(REGIONS * REGION, REGION, PAIR, 1, HelloStatus::Ok);
    let mut h = Header::new(FrameType::Hello);
    h.generation = GENERATION;
    t.handle(
        TargetEvent::Frame(Frame::new(h, hello.to_bytes().to_vec())),
        0,
    );
    let mut volume = vec![0u8; (REGIONS * REGION) as usize];
    let mut out = Vec::new();
    let mut events: VecDeque<TargetEvent> = VecDeque::new();
    for f in frames {
        let (f, _) = Frame::decode(f).expect("a well-formed frame");
        events.push_back(TargetEvent::Frame(f));
        while let Some(e) = events.pop_front() {
            for a in t.handle(e, 0) {
                match a {
                    TargetAction::Send(s) => out.push(s.encode()),
                    TargetAction::WriteVolume {
                        token,
                        offset,
                        data,
                        ..
                    } => {
                        volume[offset as usize..][..data.len()].copy_from_slice(&data);
                        events.push_back(TargetEvent::VolumeWriteDone {
                            token,
                            result: Ok(()),
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    (out, volume)
}

fn lock_id_of(f: &[u8]) -> u64 {
    u64::from_le_bytes(f[24..32].try_into().expect("a header"))
}

pub fn by_lock(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.sort_by_key(|f| (lock_id_of(f), f[5]));
    frames
}

/// The answers the source holds (repeats folded) are exactly `want`, byte for byte.
pub fn assert_same_answers(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    let mut got = by_lock(got.to_vec());
    got.dedup();
    let want = by_lock(want.to_vec());
    if got != want {
        let brief =
            |v: &[Vec<u8>]| -> Vec<(u64, u8)> { v.iter().map(|f| (lock_id_of(f), f[5])).collect() };
        panic!(
            "{what}: the answers differ from the software target's (lock id, type):\n got {:?}\nwant {:?}",
            brief(&got),
            brief(&want)
        );
    }
}

/// What the network between source and target does to frames, in percent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Frames to the target lost, repeated, or with a bit flipped.
    pub lose_in: u64,
    pub repeat_in: u64,
    pub corrupt_in: u64,
    /// Answers lost on their way to the source.
    pub lose_out: u64,
}

pub struct Host<T: TargetIo> {
    pub model: T,
    pub inp: TpIn,
    pub out: TpOut,
    pub now: u64,
    rng: Rng,
    words: VecDeque<(u64, bool)>,
    /// The answers that reached the source.
    pub answers: Vec<Vec<u8>>,
    cur: Vec<u8>,
    pub volume: Vec<u8>,
    /// Every write the port sent: offset, length, table slot, lock id.
    pub writes: Vec<(u64, usize, u64, u64)>,
    burst: Vec<u8>,
    dones: VecDeque<(u64, u64)>,
    /// The errno the next completion reports (0: success), consumed by it.
    pub fail_next: u64,
    /// Lock id to regions `[first, end)`, from the LOCK frames sent.
    locks: BTreeMap<u64, (u64, u64)>,
    /// The lock each table slot was last granted to.
    granted: [Option<u64>; 16],
    /// Percent of clocks the host takes a word.
    pub ready_percent: u64,
    /// Most clocks from a write's last word to its completion.
    pub done_delay: u64,
    pub faults: Faults,
    /// Answer frames sent, lost ones included.
    pub sent: u64,
    /// Every answer frame sent, lost ones included, with its clock.
    pub sent_log: Vec<(u64, Vec<u8>)>,
    /// Every grant, write and completion, with its clock: (clock, table slot, lock id; with bit
    /// 62 set for a grant, u64::MAX for a completion).
    pub port_log: Vec<(u64, u64, u64)>,
    /// Whether the two logs are kept (a long-running host turns them off).
    pub logs: bool,
}

impl<T: TargetIo> Host<T> {
    pub fn new(model: T, seed: u64) -> Host<T> {
        let inp = TpIn {
            tx_ready: true,
            generation: GENERATION as u64,
            region_count: REGIONS,
            // Generous retries: a lock waiting for an earlier write is not rejected while the
            // host takes its time (the software target's retry budget is time, and its time
            // stands still).
            retry_backoff: 64,
            retry_limit: 1000,
            region_shift: REGION_SHIFT,
            volume_bytes: REGIONS * REGION,
            data_timeout: 20_000,
            grant_timeout: 1 << 30,
            ..TpIn::default()
        };
        let mut h = Host {
            model,
            inp,
            out: TpOut::default(),
            now: 0,
            rng: Rng(seed * 2 + 1),
            words: VecDeque::new(),
            answers: Vec::new(),
            cur: Vec::new(),
            volume: vec![0u8; (REGIONS * REGION) as usize],
            writes: Vec::new(),
            burst: Vec::new(),
            dones: VecDeque::new(),
            fail_next: 0,
            locks: BTreeMap::new(),
            granted: [None; 16],
            ready_percent: 70,
            done_delay: 40,
            faults: Faults::default(),
            sent: 0,
            sent_log: Vec::new(),
            port_log: Vec::new(),
            logs: true,
        };
        h.model.set(&h.inp);
        h.out = h.model.get();
        h
    }

    /// Sizes the host's volume and the target's geometry (regions of `1 << region_shift` bytes).
    pub fn set_geometry(&mut self, volume_bytes: u64, region_shift: u64) {
        self.volume = vec![0u8; volume_bytes as usize];
        self.inp.volume_bytes = volume_bytes;
        self.inp.region_shift = region_shift;
        self.inp.region_count = volume_bytes.div_ceil(1 << region_shift);
    }

    fn log_port(&mut self, e: (u64, u64, u64)) {
        if self.logs {
            self.port_log.push(e);
        }
    }

    /// Frames still going in, or a write going out or waiting for its completion.
    pub fn busy(&self) -> bool {
        !self.words.is_empty()
            || !self.dones.is_empty()
            || !self.burst.is_empty()
            || self.out.wr_valid
    }

    /// Queues a frame for the receive stream, through the network's faults. Bytes that are not a
    /// frame go in too (the target drops and counts them).
    pub fn send(&mut self, frame: &[u8]) {
        if let Ok(h) = Header::decode(frame) {
            if h.ty == FrameType::Lock {
                self.locks
                    .insert(h.lock_id, (h.offset, h.offset.saturating_add(h.arg)));
            }
        }
        let f = self.faults;
        if self.rng.below(100) < f.lose_in {
            return;
        }
        let copies = if self.rng.below(100) < f.repeat_in {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut frame = frame.to_vec();
            if self.rng.below(100) < f.corrupt_in {
                let bit = self.rng.below(frame.len() as u64 * 8);
                frame[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            let w: Vec<u64> = frame
                .chunks(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..c.len()].copy_from_slice(c);
                    u64::from_le_bytes(b)
                })
                .collect();
            for (i, x) in w.iter().enumerate() {
                self.words.push_back((*x, i + 1 == w.len()));
            }
            self.words
                .extend(std::iter::repeat_n((u64::MAX, false), 24));
        }
    }

    pub fn step(&mut self) {
        let w = self.words.pop_front();
        self.inp.rx_valid = w.is_some_and(|w| w.0 != u64::MAX || w.1);
        self.inp.rx_data = w.map_or(0, |w| w.0);
        self.inp.rx_last = w.is_some_and(|w| w.1);
        self.inp.wr_ready = self.rng.below(100) < self.ready_percent;
        let due = self.dones.front().is_some_and(|d| d.0 <= self.now);
        self.inp.done_valid = due;
        if let Some(&(_, slot)) = self.dones.front() {
            self.inp.done_slot = slot;
        }
        self.inp.done_error = self.fail_next;
        self.model.set(&self.inp);
        let o = self.model.get();
        self.out = o;
        if o.wr_valid {
            let slot = o.wr_slot;
            assert!(
                o.held >> slot & 1 == 1,
                "clock {}: a write leaves for table slot {slot}, which holds no lock",
                self.now
            );
            let lock_id = self.granted[slot as usize].expect("a slot granted before");
            let (first, end) = self.locks[&lock_id];
            let region_shift = self.inp.region_shift;
            let (off, len) = (o.wr_offset, o.wr_len);
            assert!(
                off >> region_shift >= first && (off + len - 1) >> region_shift < end,
                "clock {}: write [{off}, +{len}) outside lock {lock_id}'s regions [{first}, {end})",
                self.now
            );
            if self.inp.wr_ready {
                self.burst.extend_from_slice(&o.wr_data.to_le_bytes());
                if o.wr_last {
                    let len = len as usize;
                    assert!(self.burst.len() >= len && self.burst.len() < len + 8);
                    self.volume[off as usize..][..len].copy_from_slice(&self.burst[..len]);
                    self.burst.clear();
                    self.writes.push((off, len, slot, lock_id));
                    self.log_port((self.now, slot, lock_id));
                    let at = self.now + self.rng.below(self.done_delay + 1);
                    self.dones.push_back((at, slot));
                }
            }
        }
        if due && o.done_ready {
            self.log_port((self.now, self.inp.done_slot, u64::MAX));
            self.dones.pop_front();
            self.fail_next = 0;
        }
        if o.dec_valid && o.dec_granted {
            self.granted[o.dec_slot as usize] = Some(o.dec_lock_id);
            self.port_log
                .push((self.now, o.dec_slot, o.dec_lock_id | 1 << 62));
        }
        if o.tx_valid && self.inp.tx_ready {
            self.cur.extend_from_slice(&o.tx_data.to_le_bytes());
            if o.tx_last {
                let f = std::mem::take(&mut self.cur);
                self.sent += 1;
                if self.logs {
                    self.sent_log.push((self.now, f.clone()));
                }
                if self.rng.below(100) >= self.faults.lose_out {
                    self.answers.push(f);
                }
            }
        }
        self.model.tick();
        self.now += 1;
        self.inp.clear_barriers = false;
    }

    pub fn run(&mut self, clocks: u64) {
        for _ in 0..clocks {
            self.step();
        }
    }

    /// Runs until every frame went in, every write went out and was completed, and nothing
    /// moved for `quiet` clocks.
    pub fn settle_down(&mut self, quiet: u64) {
        let mut still = 0;
        while still < quiet {
            let before = (self.sent, self.writes.len());
            self.step();
            let busy = !self.words.is_empty()
                || !self.dones.is_empty()
                || !self.burst.is_empty()
                || self.out.wr_valid;
            if busy || (self.sent, self.writes.len()) != before {
                still = 0;
            } else {
                still += 1;
            }
        }
    }

    /// The answers the source holds for `lock_id`: type and arg.
    pub fn answers_of(&self, lock_id: u64) -> Vec<(u8, u64)> {
        self.answers
            .iter()
            .filter(|f| lock_id_of(f) == lock_id)
            .map(|f| {
                (
                    f[5],
                    u64::from_le_bytes(f[40..48].try_into().expect("a header")),
                )
            })
            .collect()
    }

    /// Plays the source's retransmission timer: once the target is quiet, the LOCK of every lock
    /// not yet decided goes again (lost, corrupted, or the table's input was busy), and the DATA
    /// of every lock not yet answered WRITE_DONE nor rejected (lost, or the buffer had no room),
    /// in lock-id order, for the oldest `RETRANSMIT_WINDOW` writes not yet settled (the locks
    /// after them wait behind them anyway). Returns the rounds it took (at most
    /// `MAX_ROUNDS`).
    pub fn retransmit_until_done(&mut self, frames: &[Vec<u8>], quiet: u64) -> u32 {
        let mut rounds = 0;
        loop {
            self.settle_down(quiet);
            let answered = |t: FrameType| -> BTreeSet<u64> {
                self.answers
                    .iter()
                    .filter(|f| f[5] == t as u8)
                    .map(|f| lock_id_of(f))
                    .collect()
            };
            let granted = answered(FrameType::LockGranted);
            let rejected = answered(FrameType::LockRejected);
            let done = answered(FrameType::WriteDone);
            let mut again: Vec<Vec<u8>> = frames
                .iter()
                .filter(|f| {
                    let h = Header::decode(f).expect("a well-formed header");
                    let decided = granted.contains(&h.lock_id) || rejected.contains(&h.lock_id);
                    match h.ty {
                        FrameType::Lock => !decided,
                        FrameType::Data => {
                            !done.contains(&h.lock_id) && !rejected.contains(&h.lock_id)
                        }
                        _ => false,
                    }
                })
                .cloned()
                .collect();
            again.sort_by_key(|f| (lock_id_of(f), f[5] != FrameType::Lock as u8));
            if again.is_empty() || rounds == MAX_ROUNDS {
                return rounds;
            }
            let oldest: BTreeSet<u64> = again
                .iter()
                .map(|f| lock_id_of(f))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .take(RETRANSMIT_WINDOW)
                .collect();
            again.retain(|f| oldest.contains(&lock_id_of(f)));
            for f in &again {
                self.send(f);
            }
            rounds += 1;
        }
    }
}

/// rust-hdl's simulation of the target path.
impl TargetIo for super::TargetPath<16, 4> {
    fn set(&mut self, i: &TpIn) {
        use rust_hdl::prelude::*;
        self.rx_data.next = i.rx_data.to_bits();
        self.rx_valid.next = i.rx_valid;
        self.rx_last.next = i.rx_last;
        self.tx_ready.next = i.tx_ready;
        self.generation.next = i.generation.to_bits();
        self.region_count.next = i.region_count.to_bits();
        self.retry_backoff.next = i.retry_backoff.to_bits();
        self.retry_limit.next = i.retry_limit.to_bits();
        self.local_hold.next = i.local_hold;
        self.local_first.next = i.local_first.to_bits();
        self.local_end.next = i.local_end.to_bits();
        self.clear_barriers.next = i.clear_barriers;
        self.region_shift.next = i.region_shift.to_bits();
        self.volume_bytes.next = i.volume_bytes.to_bits();
        self.data_timeout.next = i.data_timeout.to_bits();
        self.grant_timeout.next = i.grant_timeout.to_bits();
        self.wr_ready.next = i.wr_ready;
        self.done_valid.next = i.done_valid;
        self.done_slot.next = i.done_slot.to_bits();
        self.done_error.next = i.done_error.to_bits();
    }

    fn get(&mut self) -> TpOut {
        crate::bench::settle(self);
        TpOut {
            tx_data: self.tx_data.val().to_u64(),
            tx_valid: self.tx_valid.val(),
            tx_last: self.tx_last.val(),
            wr_valid: self.wr_valid.val(),
            wr_data: self.wr_data.val().to_u64(),
            wr_last: self.wr_last.val(),
            wr_offset: self.wr_offset.val().to_u64(),
            wr_len: self.wr_len.val().to_u64(),
            wr_fua: self.wr_fua.val(),
            wr_slot: self.wr_slot.val().to_u64(),
            done_ready: self.done_ready.val(),
            dec_valid: self.dec_valid.val(),
            dec_granted: self.dec_granted.val(),
            dec_lock_id: self.dec_lock_id.val().to_u64(),
            dec_slot: self.dec_slot.val().to_u64(),
            held: self.held.val().to_u64(),
            frames_bad: self.frames_bad.val().to_u64(),
            lock_drops: self.lock_drops.val().to_u64(),
            answer_drops: self.answer_drops.val().to_u64(),
            data_drops: self.data_drops.val().to_u64(),
            data_expired: self.data_expired.val().to_u64(),
            data_repeats: self.data_repeats.val().to_u64(),
            data_violations: self.data_violations.val().to_u64(),
            locks_revoked: self.locks_revoked.val().to_u64(),
            lock_ahead: self.lock_ahead.val().to_u64(),
            lock_repeats: self.lock_repeats.val().to_u64(),
            stale: self.stale.val().to_u64(),
            answers_repeated: self.answers_repeated.val().to_u64(),
            repeats_missed: self.repeats_missed.val().to_u64(),
            data_status: self.data_status.val().to_u64(),
            grants_taken: self.grants_taken.val().to_u64(),
        }
    }

    fn tick(&mut self) {
        crate::bench::settle(self);
        crate::bench::cycle(self, |u| &mut u.clock);
    }
}

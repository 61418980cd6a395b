//! A closed loop around a source path model (rust-hdl's or Verilator's): descriptors and their
//! data go in, the frames that leave are handed to the software target core (which writes its
//! volume and answers after a round trip), its answers come back in, and [`check`] holds every
//! descriptor's completions to the protocol: LOCK_GRANTED then WRITE_DONE for a write the target
//! took, LOCK_REJECTED (out of range) for one past the volume's end, its data held back in
//! conservative mode; and the target's volume as the writes left it.

use std::collections::VecDeque;

use rust_hdl::prelude::*;
use specmirror_abi::ring::{Completion, CompletionStatus, Mode};
use specmirror_abi::{FrameType, Header, Hello, HelloStatus, RejectReason};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;

use super::SourcePath;
use crate::bench::{cycle, settle, Rng};
use crate::target_path::host::{Host as TargetHost, TargetIo, GENERATION, PAIR, REGION, REGIONS};

/// The source path's inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpIn {
    pub desc_valid: bool,
    pub desc_seq: u64,
    pub desc_lock_id: u64,
    pub desc_offset: u64,
    pub desc_length: u64,
    pub desc_mode: u64,
    pub desc_first_region: u64,
    pub desc_region_count: u64,
    pub generation: u64,
    pub data_in: u64,
    pub data_valid: bool,
    pub tx_ready: bool,
    pub rx_data: u64,
    pub rx_valid: bool,
    pub rx_last: bool,
    pub cpl_ready: bool,
}

/// The source path's outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpOut {
    pub desc_ready: bool,
    pub data_ready: bool,
    pub tx_data: u64,
    pub tx_valid: bool,
    pub tx_last: bool,
    pub cpl_valid: bool,
    pub cpl_data: [u64; 4],
    pub frames_bad: u64,
    pub stale: u64,
    pub unmatched: u64,
    pub cpl_drops: u64,
    pub inflight: u64,
}

/// A model of the source path: set the inputs, read the settled outputs, clock it.
pub trait SourceIo {
    fn set(&mut self, i: &SpIn);
    fn get(&mut self) -> SpOut;
    fn tick(&mut self);
}

/// rust-hdl's simulation of the source path.
pub struct Hdl(pub SourcePath);

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

fn clock(u: &mut SourcePath) -> &mut Signal<In, Clock> {
    &mut u.clock
}

impl SourceIo for Hdl {
    fn set(&mut self, i: &SpIn) {
        let u = &mut self.0;
        u.desc_valid.next = i.desc_valid;
        u.desc_seq.next = i.desc_seq.to_bits();
        u.desc_lock_id.next = i.desc_lock_id.to_bits();
        u.desc_offset.next = i.desc_offset.to_bits();
        u.desc_length.next = i.desc_length.to_bits();
        u.desc_mode.next = i.desc_mode.to_bits();
        u.desc_flags.next = 0u64.to_bits();
        u.desc_first_region.next = i.desc_first_region.to_bits();
        u.desc_region_count.next = i.desc_region_count.to_bits();
        u.generation.next = i.generation.to_bits();
        u.ack_lock.next = 0u64.to_bits();
        u.ack_seq.next = 0u64.to_bits();
        u.data_in.next = i.data_in.to_bits();
        u.data_valid.next = i.data_valid;
        u.tx_ready.next = i.tx_ready;
        u.rx_data.next = i.rx_data.to_bits();
        u.rx_valid.next = i.rx_valid;
        u.rx_last.next = i.rx_last;
        u.cpl_ready.next = i.cpl_ready;
    }

    fn get(&mut self) -> SpOut {
        let u = &mut self.0;
        settle(u);
        let d = u.cpl_data.val();
        SpOut {
            desc_ready: u.desc_ready.val(),
            data_ready: u.data_ready.val(),
            tx_data: u.tx_data.val().to_u64(),
            tx_valid: u.tx_valid.val(),
            tx_last: u.tx_last.val(),
            cpl_valid: u.cpl_valid.val(),
            cpl_data: [
                d.get_bits::<64>(0).to_u64(),
                d.get_bits::<64>(64).to_u64(),
                d.get_bits::<64>(128).to_u64(),
                d.get_bits::<64>(192).to_u64(),
            ],
            frames_bad: u.frames_bad.val().to_u64(),
            stale: u.stale.val().to_u64(),
            unmatched: u.unmatched.val().to_u64(),
            cpl_drops: u.cpl_drops.val().to_u64(),
            inflight: u.inflight.val().to_u64(),
        }
    }

    fn tick(&mut self) {
        cycle(&mut self.0, clock)
    }
}

/// The target at the other end of the loop.
pub trait Peer {
    /// A whole frame from the source, at clock `now`.
    fn take(&mut self, frame: &[u8], now: u64);
    /// One clock; the answer frames the target sends in it.
    fn step(&mut self, now: u64) -> Vec<Vec<u8>>;
    fn volume(&self) -> &[u8];
}

/// The software target core, its volume writes completing at once.
pub struct SoftwarePeer {
    target: Target,
    volume: Vec<u8>,
    out: Vec<Vec<u8>>,
}

impl SoftwarePeer {
    pub fn new() -> SoftwarePeer {
        let mut target = Target::new(TargetConfig::new(REGIONS * REGION, REGION, PAIR));
        let hello = Hello::for_pair(REGIONS * REGION, REGION, PAIR, 1, HelloStatus::Ok);
        let mut h = Header::new(FrameType::Hello);
        h.generation = GENERATION;
        target.handle(
            TargetEvent::Frame(Frame::new(h, hello.to_bytes().to_vec())),
            0,
        );
        SoftwarePeer {
            target,
            volume: vec![0u8; (REGIONS * REGION) as usize],
            out: Vec::new(),
        }
    }
}

impl Default for SoftwarePeer {
    fn default() -> Self {
        Self::new()
    }
}

impl Peer for SoftwarePeer {
    fn take(&mut self, frame: &[u8], now: u64) {
        let (f, _) = Frame::decode(frame).expect("a well-formed frame");
        let mut events = VecDeque::from([TargetEvent::Frame(f)]);
        while let Some(e) = events.pop_front() {
            for a in self.target.handle(e, now) {
                match a {
                    TargetAction::Send(s) => self.out.push(s.encode()),
                    TargetAction::WriteVolume {
                        token,
                        offset,
                        data,
                        ..
                    } => {
                        self.volume[offset as usize..][..data.len()].copy_from_slice(&data);
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

    fn step(&mut self, _now: u64) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out)
    }

    fn volume(&self) -> &[u8] {
        &self.volume
    }
}

/// The hardware target path (any [`TargetIo`] model), with its host model writing the volume.
pub struct HardwarePeer<T: TargetIo>(pub TargetHost<T>);

impl<T: TargetIo> Peer for HardwarePeer<T> {
    fn take(&mut self, frame: &[u8], _now: u64) {
        self.0.send(frame);
    }

    fn step(&mut self, _now: u64) -> Vec<Vec<u8>> {
        self.0.step();
        std::mem::take(&mut self.0.answers)
    }

    fn volume(&self) -> &[u8] {
        &self.0.volume
    }
}

/// A write: its sequence number and lock id, its mode, where, and what.
#[derive(Clone)]
pub struct Write {
    pub id: u64,
    pub mode: Mode,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// `n` writes of up to 512 bytes at random places, every ninth past the volume's end; each in
/// `mode`, or in a random explicit-lock mode when `mode` is `None`.
pub fn workload(seed: u64, n: u64, mode: Option<Mode>) -> Vec<Write> {
    let mut r = Rng(seed);
    (1..=n)
        .map(|id| {
            let past = id % 9 == 0;
            let len = 8 * (1 + r.below(64)) as usize - r.below(8) as usize;
            let offset = if past {
                REGIONS * REGION + r.below(4) * REGION
            } else {
                r.below(REGIONS * REGION - len as u64)
            };
            let data = (0..len).map(|_| r.below(256) as u8).collect();
            let mode = mode.unwrap_or(if r.below(2) == 0 {
                Mode::Speculative
            } else {
                Mode::Conservative
            });
            Write {
                id,
                mode,
                offset,
                data,
            }
        })
        .collect()
}

/// The link between a source model and its target: the frame leaving, word by word, and the
/// target's answers coming back after a round trip of 50 to 150 clocks.
#[derive(Default)]
pub struct Link {
    frame: Vec<u8>,
    /// Answer words on their way back, each with the clock it arrives.
    answers: VecDeque<(u64, u64, bool)>,
    /// The lock ids of the DATA frames the target got.
    pub data_frames: Vec<u64>,
    /// The acknowledgements (ack_lock, ack_seq) the LOCK and DATA frames carried.
    pub acks: std::collections::BTreeSet<(u64, u64)>,
    /// Every frame's type and the write it belongs to, in the order they left: a LOCK's or a
    /// DATA's sequence number; for other frames their offset field, where a bench numbers them.
    pub order: Vec<(FrameType, u64)>,
    /// The frames of other kinds than LOCK and DATA, as they left.
    pub others: Vec<Vec<u8>>,
    /// The target's frames, as it sent them.
    pub answered: Vec<Vec<u8>>,
}

impl Link {
    /// The answer word (data, last) that arrives in clock `now`, if any.
    pub fn arriving(&self, now: u64) -> Option<(u64, bool)> {
        self.answers
            .front()
            .filter(|a| a.0 <= now)
            .map(|&(_, w, last)| (w, last))
    }

    /// The end of clock `now`: `sent` is the word the source handed over (data, last), if any;
    /// `delivered` whether the arriving answer word went in. Collects the target's answers.
    pub fn clock<P: Peer>(
        &mut self,
        peer: &mut P,
        r: &mut Rng,
        now: u64,
        sent: Option<(u64, bool)>,
        delivered: bool,
    ) {
        if delivered {
            self.answers.pop_front();
        }
        if let Some((w, last)) = sent {
            self.frame.extend_from_slice(&w.to_le_bytes());
            if last {
                let f = std::mem::take(&mut self.frame);
                let h = Header::decode(&f).expect("a well-formed header");
                if h.ty == FrameType::Data {
                    self.data_frames.push(h.lock_id);
                }
                if matches!(h.ty, FrameType::Lock | FrameType::Data) {
                    self.acks.insert((h.ack_lock, h.ack_seq));
                    self.order.push((h.ty, h.seq));
                } else {
                    self.others.push(f.clone());
                    self.order.push((h.ty, h.offset));
                }
                peer.take(&f, now);
            }
        }
        for b in peer.step(now) {
            self.answered.push(b.clone());
            let at = (now + 50 + r.below(100)).max(self.answers.back().map_or(0, |x| x.0));
            let n = b.len() / 8;
            for (k, c) in b.chunks(8).enumerate() {
                let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                self.answers.push_back((at, w, k + 1 == n));
            }
        }
    }

    /// Nothing on its way back.
    pub fn is_quiet(&self) -> bool {
        self.answers.is_empty()
    }
}

/// What a closed-loop run did.
pub struct Outcome {
    pub completions: Vec<Completion>,
    pub volume: Vec<u8>,
    /// The lock ids of the DATA frames the target got.
    pub data_frames: Vec<u64>,
    pub out: SpOut,
    pub clocks: u64,
}

/// Runs `writes` through `io` against `peer`, at most `window` of them in flight (the host's
/// part: it knows how much data the target can hold), with round trips of 50 to 150 clocks, the
/// transmit stream, the data port and the completion port stalling at random.
pub fn run<T: SourceIo, P: Peer>(
    io: &mut T,
    peer: &mut P,
    writes: &[Write],
    window: u32,
    seed: u64,
) -> Outcome {
    let mut r = Rng(seed);
    let mut next = 0usize;
    let mut words: VecDeque<u64> = VecDeque::new();
    let mut link = Link::default();
    let mut completions = Vec::new();
    let (mut now, mut quiet) = (0u64, 0u64);
    let mut out = SpOut::default();
    while now < 200 * (writes.len() as u64 + 10) * 20 {
        let mut i = SpIn {
            generation: GENERATION as u64,
            ..SpIn::default()
        };
        // The next descriptor, and its data words once taken.
        i.desc_valid =
            next < writes.len() && words.is_empty() && out.inflight.count_ones() < window;
        if i.desc_valid {
            let w = &writes[next];
            let first = w.offset / REGION;
            let end = (w.offset + w.data.len() as u64).div_ceil(REGION);
            i.desc_seq = w.id;
            i.desc_lock_id = w.id;
            i.desc_offset = w.offset;
            i.desc_length = w.data.len() as u64;
            i.desc_mode = w.mode as u64;
            i.desc_first_region = first;
            i.desc_region_count = end - first;
        }
        i.data_valid = !words.is_empty() && r.below(4) != 0;
        i.data_in = words.front().copied().unwrap_or(0);
        i.tx_ready = r.below(5) != 0;
        i.cpl_ready = r.below(3) != 0;
        let arriving = link.arriving(now);
        if let Some((w, last)) = arriving {
            i.rx_valid = true;
            i.rx_data = w;
            i.rx_last = last;
        }
        io.set(&i);
        out = io.get();
        if i.desc_valid && out.desc_ready {
            words.extend(writes[next].data.chunks(8).map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(b)
            }));
            next += 1;
        }
        if i.data_valid && out.data_ready {
            words.pop_front();
        }
        if out.cpl_valid && i.cpl_ready {
            let mut b = [0u8; 32];
            for (k, w) in out.cpl_data.iter().enumerate() {
                b[8 * k..8 * k + 8].copy_from_slice(&w.to_le_bytes());
            }
            completions.push(Completion::from_bytes(&b));
        }
        let sent = (out.tx_valid && i.tx_ready).then_some((out.tx_data, out.tx_last));
        link.clock(peer, &mut r, now, sent, arriving.is_some());
        io.tick();
        now += 1;
        // Done when nothing has moved for a while (a completion may wait a clock behind a pop).
        let idle = next == writes.len()
            && words.is_empty()
            && link.is_quiet()
            && out.inflight == 0
            && !out.cpl_valid;
        quiet = if idle { quiet + 1 } else { 0 };
        if quiet > 20 {
            break;
        }
    }
    Outcome {
        completions,
        volume: peer.volume().to_vec(),
        data_frames: link.data_frames,
        out,
        clocks: now,
    }
}

/// Holds a run's outcome to the protocol (see the module's comment).
pub fn check(writes: &[Write], o: &Outcome, what: &str) {
    assert_eq!(o.out.frames_bad, 0, "{what}");
    assert_eq!(o.out.cpl_drops, 0, "{what}");
    let mut volume = vec![0u8; (REGIONS * REGION) as usize];
    let mut by_lock: std::collections::BTreeMap<u64, Vec<(CompletionStatus, u16)>> =
        Default::default();
    for c in &o.completions {
        assert_eq!(c.seq.get(), c.lock_id.get(), "{what}: a completion's seq");
        let status = CompletionStatus::from_u8(c.status).expect("a status");
        by_lock
            .entry(c.lock_id.get())
            .or_default()
            .push((status, c.reason.get()));
    }
    let mut speculative_rejected = 0;
    for w in writes {
        let got = by_lock.remove(&w.id).unwrap_or_default();
        if w.offset >= REGIONS * REGION {
            assert_eq!(
                got,
                vec![(
                    CompletionStatus::LockRejected,
                    RejectReason::OutOfRange as u16
                )],
                "{what}: write {}",
                w.id
            );
            // Conservative mode held its data back; speculative mode had sent it already.
            let sent = o.data_frames.contains(&w.id);
            assert_eq!(
                sent,
                w.mode == Mode::Speculative,
                "{what}: write {}'s data ({:?})",
                w.id,
                w.mode
            );
            speculative_rejected += sent as u64;
        } else {
            assert_eq!(
                got,
                vec![
                    (CompletionStatus::LockGranted, 0),
                    (CompletionStatus::WriteDone, 0)
                ],
                "{what}: write {}",
                w.id
            );
            volume[w.offset as usize..][..w.data.len()].copy_from_slice(&w.data);
        }
    }
    assert!(by_lock.is_empty(), "{what}: completions for no write");
    assert!(o.volume == volume, "{what}: the target's volume");
    // The target answers a rejected lock's data with the rejection again: by then its entry is
    // gone, so the answer is unmatched.
    assert_eq!(o.out.unmatched, speculative_rejected, "{what}");
}

//! The tracker's rules in software: what the tests hold the hardware to.

use specmirror_abi::ring::{Completion, CompletionStatus};
use specmirror_abi::FrameType;

/// Clocks from an answer's header to its completion: the completion's timestamp is the answer's
/// clock plus this.
pub const LATENCY: u64 = 2;

/// The rules, in software: entries by lock id, each remembering whether its grant was reported.
#[derive(Default)]
pub struct Model {
    /// (lock id, seq, grant reported), in the order they were taken.
    pub entries: Vec<(u64, u64, bool)>,
    pub unmatched: u64,
}

impl Model {
    /// The completion an answer makes (timestamp left to the caller).
    pub fn answer(&mut self, ty: FrameType, lock_id: u64, arg: u64) -> Option<Completion> {
        let Some(k) = self.entries.iter().position(|e| e.0 == lock_id) else {
            self.unmatched += 1;
            return None;
        };
        let (id, seq, granted) = self.entries[k];
        let (status, reason) = match ty {
            FrameType::LockGranted if granted => return None,
            FrameType::LockGranted => {
                self.entries[k].2 = true;
                (CompletionStatus::LockGranted, 0)
            }
            FrameType::LockRejected => (CompletionStatus::LockRejected, arg as u16),
            FrameType::WriteDone => (CompletionStatus::WriteDone, 0),
            _ => (CompletionStatus::WriteFailed, arg as u16),
        };
        if ty != FrameType::LockGranted {
            self.entries.remove(k);
        }
        Some(Completion {
            seq: seq.into(),
            lock_id: id.into(),
            status: status as u8,
            reason: reason.into(),
            ..Completion::default()
        })
    }
}

impl Model {
    /// A descriptor the send path took.
    pub fn sent(&mut self, lock_id: u64, seq: u64) {
        self.entries.push((lock_id, seq, false));
    }
}

/// Random traffic for a tracker, clock by clock, with the model kept alongside: descriptors when
/// there is room, answers at least `gap` clocks apart (mostly for locks in the table, some
/// repeated, some for locks it never had), and the completion entries the rules make of them.
pub struct Traffic {
    r: crate::bench::Rng,
    pub model: Model,
    gap: u64,
    next_id: u64,
    next_seq: u64,
    last_answer: u64,
    last_id: u64,
    /// The completion entries expected so far, in order.
    pub want: std::collections::VecDeque<[u8; 32]>,
}

/// One clock's inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs {
    /// A descriptor taken: (lock id, seq).
    pub sent: Option<(u64, u64)>,
    /// An answer: (type, lock id, arg).
    pub answer: Option<(FrameType, u64, u64)>,
}

impl Traffic {
    pub fn new(seed: u64, gap: u64) -> Traffic {
        Traffic {
            r: crate::bench::Rng(seed),
            model: Model::default(),
            gap,
            next_id: 100,
            next_seq: 1,
            last_answer: 0,
            last_id: 0,
            want: Default::default(),
        }
    }

    /// A random draw, for the caller's own dice (the completion port's readiness).
    pub fn below(&mut self, n: u64) -> u64 {
        self.r.below(n)
    }

    /// The inputs at clock `t`, when the tracker shows `room`.
    pub fn next(&mut self, t: u64, room: bool) -> Inputs {
        let r = &mut self.r;
        let mut i = Inputs::default();
        // Answers only for entries taken before this clock.
        let live = self.model.entries.len();
        if room && r.below(3) == 0 {
            i.sent = Some((self.next_id, self.next_seq));
            self.next_id += 1 + r.below(3);
            self.next_seq += 1;
        }
        if t >= self.last_answer + self.gap && r.below(2) == 0 {
            let lock_id = if self.last_id != 0 && r.below(5) == 0 {
                // The last answer's lock again: a repeated answer, maybe for a freed entry.
                self.last_id
            } else if live > 0 && r.below(10) != 0 {
                self.model.entries[r.below(live as u64) as usize].0
            } else {
                r.next_u64() | 1 << 63
            };
            let (ty, arg) = match r.below(8) {
                0..=3 => (FrameType::LockGranted, 0),
                4 => (FrameType::LockRejected, 1 + r.below(4)),
                5 => (FrameType::WriteFailed, 1 + r.below(120)),
                _ => (FrameType::WriteDone, 0),
            };
            i.answer = Some((ty, lock_id, arg));
            if let Some(mut c) = self.model.answer(ty, lock_id, arg) {
                c.timestamp = ((t + LATENCY) as u32).into();
                self.want.push_back(c.to_bytes());
            }
            self.last_answer = t;
            self.last_id = lock_id;
        }
        if let Some((id, seq)) = i.sent {
            self.model.sent(id, seq);
        }
        i
    }
}

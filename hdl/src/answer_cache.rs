//! The target's memory of its answers, so that a repeated lock command or DATA frame (the source
//! retransmits when an answer is lost) is answered again, as the software target does: a lock
//! that is held gets LOCK_GRANTED again, a finished write LOCK_GRANTED and WRITE_DONE, a rejected
//! lock LOCK_REJECTED with its reason, a failed write WRITE_FAILED. A lock still waiting gets
//! nothing (its answer comes when it is decided), and neither does a repeated DATA frame whose
//! lock is held (the data buffer takes it, or drops it if it already has the write).
//!
//! Every answer the target sends (not the repeats) is recorded in block RAM at its lock id modulo
//! `ENTRIES`, with the session's generation; a later answer for the same lock replaces the
//! earlier one (WRITE_DONE replaces LOCK_GRANTED). A query finds the entry, checks lock id and
//! generation, and repeats the answer: one query at a time, two clocks to look it up. A query that
//! comes while one is being answered, or finds another lock's entry (a lock id `ENTRIES` or more
//! before the newest), is counted (`missed`); the source asks again, or settles the write itself.

use rust_hdl::prelude::*;
use specmirror_abi::FrameType;

/// Answers remembered: the last `ENTRIES` lock ids.
pub const ENTRIES: usize = 256;
/// Bits of an entry's index: the low bits of the lock id.
pub const INDEX_BITS: usize = 8;
// The kernel spells the index bits out as 8.
const _: () = assert!(1 << INDEX_BITS == ENTRIES && INDEX_BITS == 8);

/// An entry: answer type (bits 0..8), generation (32..64), seq (64..128), lock id (128..192),
/// arg (192..256).
type Entry = Bits<256>;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum CacheState {
    Idle,
    Check,
    Granted,
    Answer,
}

#[derive(LogicBlock)]
pub struct AnswerCache {
    pub clock: Signal<In, Clock>,
    /// An answer leaving for the wire (not a repeat).
    pub rec_valid: Signal<In, Bit>,
    pub rec_ty: Signal<In, Bits<8>>,
    pub rec_seq: Signal<In, Bits<64>>,
    pub rec_lock_id: Signal<In, Bits<64>>,
    pub rec_arg: Signal<In, Bits<64>>,
    /// The session's generation.
    pub generation: Signal<In, Bits<32>>,
    /// A repeated lock command (or, with `q_data`, DATA frame) for lock `q_lock_id`.
    pub q_valid: Signal<In, Bit>,
    pub q_lock_id: Signal<In, Bits<64>>,
    pub q_data: Signal<In, Bit>,
    /// The repeated answers, held until `ans_ready`.
    pub ans_valid: Signal<Out, Bit>,
    pub ans_ready: Signal<In, Bit>,
    pub ans_ty: Signal<Out, Bits<8>>,
    pub ans_seq: Signal<Out, Bits<64>>,
    pub ans_lock_id: Signal<Out, Bits<64>>,
    pub ans_arg: Signal<Out, Bits<64>>,
    /// One clock: a repeated DATA frame's lock is finished (its entry is not LOCK_GRANTED), so
    /// the copy of the data waiting in the buffer (`settled_lock_id`) is never needed.
    pub settled: Signal<Out, Bit>,
    pub settled_lock_id: Signal<Out, Bits<64>>,
    /// Answers repeated, and queries that found nothing to repeat or came while busy.
    pub repeated: Signal<Out, Bits<32>>,
    pub missed: Signal<Out, Bits<32>>,
    ram: RAM<Entry, INDEX_BITS>,
    state: DFF<CacheState>,
    q_id: DFF<Bits<64>>,
    q_is_data: DFF<Bit>,
    e_ty: DFF<Bits<8>>,
    e_seq: DFF<Bits<64>>,
    e_arg: DFF<Bits<64>>,
    n_repeated: DFF<Bits<32>>,
    n_missed: DFF<Bits<32>>,
    entry: Signal<Local, Entry>,
    found: Signal<Local, Bit>,
    ty_granted: Constant<Bits<8>>,
    ty_done: Constant<Bits<8>>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            rec_valid: Default::default(),
            rec_ty: Default::default(),
            rec_seq: Default::default(),
            rec_lock_id: Default::default(),
            rec_arg: Default::default(),
            generation: Default::default(),
            q_valid: Default::default(),
            q_lock_id: Default::default(),
            q_data: Default::default(),
            ans_valid: Default::default(),
            ans_ready: Default::default(),
            ans_ty: Default::default(),
            ans_seq: Default::default(),
            ans_lock_id: Default::default(),
            ans_arg: Default::default(),
            settled: Default::default(),
            settled_lock_id: Default::default(),
            repeated: Default::default(),
            missed: Default::default(),
            ram: Default::default(),
            state: Default::default(),
            q_id: Default::default(),
            q_is_data: Default::default(),
            e_ty: Default::default(),
            e_seq: Default::default(),
            e_arg: Default::default(),
            n_repeated: Default::default(),
            n_missed: Default::default(),
            entry: Default::default(),
            found: Default::default(),
            ty_granted: Constant::new((FrameType::LockGranted as u64).to_bits()),
            ty_done: Constant::new((FrameType::WriteDone as u64).to_bits()),
        }
    }
}

impl Logic for AnswerCache {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, state, q_id, q_is_data, e_ty, e_seq, e_arg, n_repeated, n_missed);
        self.ram.read_clock.next = self.clock.val();
        self.ram.write_clock.next = self.clock.val();
        // Record every answer at its lock id.
        self.ram.write_address.next = self.rec_lock_id.val().get_bits::<8>(0);
        self.ram.write_enable.next = self.rec_valid.val();
        self.ram.write_data.next = bit_cast::<256, 8>(self.rec_ty.val())
            | (bit_cast::<256, 32>(self.generation.val()) << 32)
            | (bit_cast::<256, 64>(self.rec_seq.val()) << 64)
            | (bit_cast::<256, 64>(self.rec_lock_id.val()) << 128)
            | (bit_cast::<256, 64>(self.rec_arg.val()) << 192);
        self.ram.read_address.next = self.q_lock_id.val().get_bits::<8>(0);
        self.entry.next = self.ram.read_data.val();
        self.found.next = (self.entry.val().get_bits::<64>(128) == self.q_id.q.val())
            & (self.entry.val().get_bits::<32>(32) == self.generation.val())
            & self.entry.val().get_bits::<8>(0).any();
        self.ans_valid.next = false;
        self.ans_ty.next = self.e_ty.q.val();
        self.ans_seq.next = self.e_seq.q.val();
        self.ans_lock_id.next = self.q_id.q.val();
        self.ans_arg.next = self.e_arg.q.val();
        self.settled.next = false;
        self.settled_lock_id.next = self.q_id.q.val();
        if self.q_valid.val() & (self.state.q.val() != CacheState::Idle) {
            self.n_missed.d.next = self.n_missed.q.val() + 1;
        }
        match self.state.q.val() {
            CacheState::Idle => {
                if self.q_valid.val() {
                    self.q_id.d.next = self.q_lock_id.val();
                    self.q_is_data.d.next = self.q_data.val();
                    self.state.d.next = CacheState::Check;
                }
            }
            CacheState::Check => {
                self.e_ty.d.next = self.entry.val().get_bits::<8>(0);
                self.e_seq.d.next = self.entry.val().get_bits::<64>(64);
                self.e_arg.d.next = self.entry.val().get_bits::<64>(192);
                self.state.d.next = CacheState::Idle;
                self.settled.next = self.found.val()
                    & self.q_is_data.q.val()
                    & (self.entry.val().get_bits::<8>(0) != self.ty_granted.val());
                if !self.found.val() {
                    self.n_missed.d.next = self.n_missed.q.val() + 1;
                } else if self.entry.val().get_bits::<8>(0) == self.ty_done.val() {
                    self.state.d.next = CacheState::Granted;
                } else if !((self.entry.val().get_bits::<8>(0) == self.ty_granted.val())
                    & self.q_is_data.q.val())
                {
                    self.state.d.next = CacheState::Answer;
                }
            }
            CacheState::Granted => {
                // A finished write: LOCK_GRANTED first, then WRITE_DONE.
                self.ans_valid.next = true;
                self.ans_ty.next = self.ty_granted.val();
                self.ans_arg.next = 0.into();
                if self.ans_ready.val() {
                    self.state.d.next = CacheState::Answer;
                    self.n_repeated.d.next = self.n_repeated.q.val() + 1;
                }
            }
            _ => {
                self.ans_valid.next = true;
                if self.ans_ready.val() {
                    self.state.d.next = CacheState::Idle;
                    self.n_repeated.d.next = self.n_repeated.q.val() + 1;
                }
            }
        }
        self.repeated.next = self.n_repeated.q.val();
        self.missed.next = self.n_missed.q.val();
    }
}

/// An answer cache with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::AnswerCache {
        let mut u = super::AnswerCache::default();
        u.clock.connect();
        u.rec_valid.connect();
        u.rec_ty.connect();
        u.rec_seq.connect();
        u.rec_lock_id.connect();
        u.rec_arg.connect();
        u.generation.connect();
        u.q_valid.connect();
        u.q_lock_id.connect();
        u.q_data.connect();
        u.ans_ready.connect();
        u
    }
}

#[cfg(test)]
mod tests;

//! The source's side of the answers: every descriptor the send path takes holds an entry (its lock
//! id and sequence number) until its outcome is known, and every answer from the target
//! (LOCK_GRANTED, LOCK_REJECTED, WRITE_DONE, WRITE_FAILED) for a lock in the table becomes a
//! completion entry, byte for byte the ABI's `ring::Completion` (phase bit clear: the ring engine
//! sets it as it writes the entry). LOCK_GRANTED completes once (a repeated grant, from a
//! retransmitted lock, is not reported again); LOCK_REJECTED, WRITE_DONE and WRITE_FAILED free
//! the entry. An answer for no lock in the table (late, repeated after the entry was freed, or
//! from a peer that lies) is dropped and counted.
//!
//! A rejected lock halts its write's data: when the send path waits for that lock's grant
//! (conservative mode, which is also how a rejected write is re-issued), `rejected` tells it to
//! give the descriptor up without sending its data. When to re-issue the write, under which new
//! lock id and after which backoff is the protocol core's decision, as in the software engine: the
//! host reads the LOCK_REJECTED completion and posts the write again, in conservative mode, with
//! its data still in the rollback log; the device sends the lock and, once granted, the data.
//!
//! A raw descriptor's frame (the host's own, `Mode::Raw`) holds no entry: once it has left, its
//! tag comes in on `raw_valid` and becomes a `Sent` completion, written into the FIFO in the
//! first clock no answer's completion takes. That completion is never dropped: `raw_room` is low
//! while one waits, and the source path takes no raw descriptor meanwhile.
//!
//! The answer is registered, then compared with every entry's lock id, then acted on: a
//! completion comes three clocks after the answer's header. Completions wait in a block-RAM FIFO of
//! 16 (answers are never back-pressured; a completion that finds the FIFO full is dropped and
//! counted) and leave one per two clocks at most.

use rust_hdl::prelude::*;
use specmirror_abi::ring::{CompletionStatus, COMPLETION_LEN};
use specmirror_abi::FrameType;

use crate::lock_table::arr;

pub const ENTRIES: usize = 8;
pub const SLOT_BITS: usize = 3;
const _: () = assert!(1 << SLOT_BITS == ENTRIES);
// A completion entry is four little-endian words: seq, lock id, (status, flags, reason,
// timestamp), reserved. The packing below assumes it.
const _: () = assert!(COMPLETION_LEN == 32);

pub type SendTracker8 = SendTracker<ENTRIES, SLOT_BITS>;

#[derive(LogicBlock)]
pub struct SendTracker<const N: usize, const S: usize> {
    pub clock: Signal<In, Clock>,
    /// A descriptor the send path took (only while `room`): its lock takes an entry.
    pub sent_valid: Signal<In, Bit>,
    pub sent_lock_id: Signal<In, Bits<64>>,
    pub sent_seq: Signal<In, Bits<64>>,
    /// An entry is free: the send path may take a descriptor (from a register: low for the
    /// first clock after reset).
    pub room: Signal<Out, Bit>,
    /// An answer's header, from the receive path's frame parser (one per frame at most).
    pub ans_valid: Signal<In, Bit>,
    pub ans_ty: Signal<In, Bits<8>>,
    pub ans_lock_id: Signal<In, Bits<64>>,
    pub ans_arg: Signal<In, Bits<64>>,
    /// The lock the send path waits on, and its grant or rejection (a one-clock pulse).
    pub wait_lock_id: Signal<In, Bits<64>>,
    pub granted: Signal<Out, Bit>,
    pub rejected: Signal<Out, Bit>,
    /// Completion entries, in the ABI's layout.
    pub cpl_valid: Signal<Out, Bit>,
    pub cpl_ready: Signal<In, Bit>,
    pub cpl_data: Signal<Out, Bits<256>>,
    /// A raw descriptor's frame has left (one pulse), and its tag.
    pub raw_valid: Signal<In, Bit>,
    pub raw_seq: Signal<In, Bits<64>>,
    /// No `Sent` completion waits: a raw descriptor may be taken.
    pub raw_room: Signal<Out, Bit>,
    /// Entries in use.
    pub inflight: Signal<Out, Bits<N>>,
    /// Answers for no lock in the table.
    pub unmatched: Signal<Out, Bits<32>>,
    /// Completions dropped on a full FIFO.
    pub cpl_drops: Signal<Out, Bits<32>>,
    used: [DFF<Bit>; N],
    got_grant: [DFF<Bit>; N],
    id: [DFF<Bits<64>>; N],
    seq: [DFF<Bits<64>>; N],
    // Stage 1: the answer, registered.
    a_valid: DFF<Bit>,
    a_ty: DFF<Bits<8>>,
    a_lock_id: DFF<Bits<64>>,
    a_arg: DFF<Bits<64>>,
    // Stage 2: the entries it matches.
    m_valid: DFF<Bit>,
    m_ty: DFF<Bits<8>>,
    m_lock_id: DFF<Bits<64>>,
    m_arg: DFF<Bits<64>>,
    m_hit: DFF<Bits<N>>,
    m_wait: DFF<Bit>,
    /// Clocks since reset: a completion's timestamp.
    now: DFF<Bits<32>>,
    fifo: SynchronousFIFO<Bits<256>, 4, 5, 1>,
    /// Pops the FIFO's head the clock after it was taken (from a register: no loop through the
    /// FIFO's `empty` and `read`).
    pop: DFF<Bit>,
    /// Completions in the FIFO.
    count: DFF<Bits<5>>,
    unmatched_q: DFF<Bits<32>>,
    drops_q: DFF<Bits<32>>,
    /// A `Sent` completion waiting for the FIFO, and its tag.
    raw_pend: DFF<Bit>,
    raw_pend_seq: DFF<Bits<64>>,
    hits: Signal<Local, Bits<N>>,
    free_n: Signal<Local, Bits<4>>,
    taking: Signal<Local, Bit>,
    freeing: Signal<Local, Bit>,
    room_q: DFF<Bit>,
    free_found: Signal<Local, Bit>,
    free_slot: Signal<Local, Bits<S>>,
    hit_found: Signal<Local, Bit>,
    hit_slot: Signal<Local, Bits<S>>,
    hit_seq: Signal<Local, Bits<64>>,
    hit_granted: Signal<Local, Bit>,
    status: Signal<Local, Bits<8>>,
    reason: Signal<Local, Bits<16>>,
    emit: Signal<Local, Bit>,
    ty_granted: Constant<Bits<8>>,
    ty_rejected: Constant<Bits<8>>,
    ty_done: Constant<Bits<8>>,
    ty_failed: Constant<Bits<8>>,
    st_granted: Constant<Bits<8>>,
    st_rejected: Constant<Bits<8>>,
    st_done: Constant<Bits<8>>,
    st_failed: Constant<Bits<8>>,
    st_sent: Constant<Bits<8>>,
}

impl<const N: usize, const S: usize> Default for SendTracker<N, S> {
    fn default() -> Self {
        assert!(
            1 << S == N && N < 16,
            "N entries (under 16) with S-bit slot numbers"
        );
        let ty = |t: FrameType| Constant::new((t as u64).to_bits());
        let st = |s: CompletionStatus| Constant::new((s as u64).to_bits());
        Self {
            clock: Default::default(),
            sent_valid: Default::default(),
            sent_lock_id: Default::default(),
            sent_seq: Default::default(),
            room: Default::default(),
            ans_valid: Default::default(),
            ans_ty: Default::default(),
            ans_lock_id: Default::default(),
            ans_arg: Default::default(),
            wait_lock_id: Default::default(),
            granted: Default::default(),
            rejected: Default::default(),
            cpl_valid: Default::default(),
            cpl_ready: Default::default(),
            cpl_data: Default::default(),
            raw_valid: Default::default(),
            raw_seq: Default::default(),
            raw_room: Default::default(),
            inflight: Default::default(),
            unmatched: Default::default(),
            cpl_drops: Default::default(),
            used: arr(),
            got_grant: arr(),
            id: arr(),
            seq: arr(),
            a_valid: Default::default(),
            a_ty: Default::default(),
            a_lock_id: Default::default(),
            a_arg: Default::default(),
            m_valid: Default::default(),
            m_ty: Default::default(),
            m_lock_id: Default::default(),
            m_arg: Default::default(),
            m_hit: Default::default(),
            m_wait: Default::default(),
            now: Default::default(),
            fifo: Default::default(),
            pop: Default::default(),
            count: Default::default(),
            unmatched_q: Default::default(),
            drops_q: Default::default(),
            raw_pend: Default::default(),
            raw_pend_seq: Default::default(),
            hits: Default::default(),
            free_n: Default::default(),
            taking: Default::default(),
            freeing: Default::default(),
            room_q: Default::default(),
            free_found: Default::default(),
            free_slot: Default::default(),
            hit_found: Default::default(),
            hit_slot: Default::default(),
            hit_seq: Default::default(),
            hit_granted: Default::default(),
            status: Default::default(),
            reason: Default::default(),
            emit: Default::default(),
            ty_granted: ty(FrameType::LockGranted),
            ty_rejected: ty(FrameType::LockRejected),
            ty_done: ty(FrameType::WriteDone),
            ty_failed: ty(FrameType::WriteFailed),
            st_granted: st(CompletionStatus::LockGranted),
            st_rejected: st(CompletionStatus::LockRejected),
            st_done: st(CompletionStatus::WriteDone),
            st_failed: st(CompletionStatus::WriteFailed),
            st_sent: st(CompletionStatus::Sent),
        }
    }
}

impl<const N: usize, const S: usize> Logic for SendTracker<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            a_valid,
            a_ty,
            a_lock_id,
            a_arg,
            m_valid,
            m_ty,
            m_lock_id,
            m_arg,
            m_hit,
            m_wait,
            now,
            pop,
            count,
            room_q,
            unmatched_q,
            drops_q,
            raw_pend,
            raw_pend_seq
        );
        clock!(self, clock, fifo);
        for i in 0..N {
            self.used[i].clock.next = self.clock.val();
            self.got_grant[i].clock.next = self.clock.val();
            self.id[i].clock.next = self.clock.val();
            self.seq[i].clock.next = self.clock.val();
            self.used[i].d.next = self.used[i].q.val();
            self.got_grant[i].d.next = self.got_grant[i].q.val();
            self.id[i].d.next = self.id[i].q.val();
            self.seq[i].d.next = self.seq[i].q.val();
        }
        self.now.d.next = self.now.q.val() + 1;

        // A free entry for the next descriptor: the lowest.
        self.free_found.next = false;
        self.free_slot.next = 0.into();
        self.inflight.next = 0.into();
        for i in 0..N {
            if self.used[i].q.val() {
                self.inflight.next = self.inflight.val().replace_bit(i, true);
            } else if !self.free_found.val() {
                self.free_found.next = true;
                self.free_slot.next = i.to_bits();
            }
        }
        self.free_n.next = 0.into();
        for i in 0..N {
            if !self.used[i].q.val() {
                self.free_n.next = self.free_n.val() + 1;
            }
        }
        // `room` comes from a register (so no combinational path runs from `sent_valid` back to
        // it): whether an entry is free after this clock's take and release.
        self.room.next = self.room_q.q.val();

        // Stage 1: register the answers (other frame types are not the tracker's).
        self.a_valid.d.next = self.ans_valid.val()
            & ((self.ans_ty.val() == self.ty_granted.val())
                | (self.ans_ty.val() == self.ty_rejected.val())
                | (self.ans_ty.val() == self.ty_done.val())
                | (self.ans_ty.val() == self.ty_failed.val()));
        self.a_ty.d.next = self.ans_ty.val();
        self.a_lock_id.d.next = self.ans_lock_id.val();
        self.a_arg.d.next = self.ans_arg.val();

        // Stage 2: which entries hold its lock, and whether the send path waits on it.
        self.m_valid.d.next = self.a_valid.q.val();
        self.m_ty.d.next = self.a_ty.q.val();
        self.m_lock_id.d.next = self.a_lock_id.q.val();
        self.m_arg.d.next = self.a_arg.q.val();
        self.m_wait.d.next = self.a_lock_id.q.val() == self.wait_lock_id.val();
        self.hits.next = 0.into();
        for i in 0..N {
            if self.used[i].q.val() & (self.id[i].q.val() == self.a_lock_id.q.val()) {
                self.hits.next = self.hits.val().replace_bit(i, true);
            }
        }
        self.m_hit.d.next = self.hits.val();

        // Stage 3: act on the entry it matched.
        self.hit_found.next = false;
        self.hit_slot.next = 0.into();
        self.hit_seq.next = 0.into();
        self.hit_granted.next = false;
        for i in 0..N {
            // (The entry is looked at again: an answer just before this one may have freed it.)
            if !self.hit_found.val() & self.m_hit.q.val().get_bit(i) & self.used[i].q.val() {
                self.hit_found.next = true;
                self.hit_slot.next = i.to_bits();
                self.hit_seq.next = self.seq[i].q.val();
                self.hit_granted.next = self.got_grant[i].q.val();
            }
        }
        self.emit.next = false;
        self.status.next = 0.into();
        self.reason.next = 0.into();
        self.granted.next = false;
        self.rejected.next = false;
        if self.m_valid.q.val() {
            if !self.hit_found.val() {
                self.unmatched_q.d.next = self.unmatched_q.q.val() + 1;
            } else if self.m_ty.q.val() == self.ty_granted.val() {
                self.granted.next = self.m_wait.q.val();
                if !self.hit_granted.val() {
                    self.emit.next = true;
                    self.status.next = self.st_granted.val();
                }
            } else if self.m_ty.q.val() == self.ty_rejected.val() {
                self.rejected.next = self.m_wait.q.val();
                self.emit.next = true;
                self.status.next = self.st_rejected.val();
                self.reason.next = self.m_arg.q.val().get_bits::<16>(0);
            } else if self.m_ty.q.val() == self.ty_done.val() {
                self.emit.next = true;
                self.status.next = self.st_done.val();
            } else {
                self.emit.next = true;
                self.status.next = self.st_failed.val();
                self.reason.next = self.m_arg.q.val().get_bits::<16>(0);
            }
        }
        self.taking.next = self.sent_valid.val() & self.free_found.val();
        self.freeing.next = self.m_valid.q.val()
            & self.hit_found.val()
            & (self.m_ty.q.val() != self.ty_granted.val());
        if self.taking.val() & !self.freeing.val() {
            self.room_q.d.next = self.free_n.val() > 1;
        } else if !self.taking.val() & self.freeing.val() {
            self.room_q.d.next = true;
        } else {
            self.room_q.d.next = self.free_n.val() > 0;
        }
        for i in 0..N {
            if self.m_valid.q.val() & self.hit_found.val() & (self.hit_slot.val().index() == i) {
                if self.m_ty.q.val() == self.ty_granted.val() {
                    self.got_grant[i].d.next = true;
                } else {
                    self.used[i].d.next = false;
                }
            }
            // A new descriptor takes the free entry (never the one acted on: that one is used).
            if self.sent_valid.val() & self.free_found.val() & (self.free_slot.val().index() == i) {
                self.used[i].d.next = true;
                self.got_grant[i].d.next = false;
                self.id[i].d.next = self.sent_lock_id.val();
                self.seq[i].d.next = self.sent_seq.val();
            }
        }

        // The completion entry: seq, lock id, (status, flags 0, reason, timestamp), reserved 0.
        self.fifo.data_in.next = bit_cast::<256, 64>(self.hit_seq.val())
            | (bit_cast::<256, 64>(self.m_lock_id.q.val()) << 64)
            | (bit_cast::<256, 8>(self.status.val()) << 128)
            | (bit_cast::<256, 16>(self.reason.val()) << 144)
            | (bit_cast::<256, 32>(self.now.q.val()) << 160);
        // The FIFO's fill is counted here, so nothing reads its `full` in the clock it is written
        // (a combinational loop through the FIFO's write logic otherwise).
        self.fifo.write.next = false;
        if self.emit.val() {
            if self.count.q.val() == 16 {
                self.drops_q.d.next = self.drops_q.q.val() + 1;
            } else {
                self.fifo.write.next = true;
            }
        } else if self.raw_pend.q.val() & (self.count.q.val() != 16) {
            // A raw frame's `Sent`: its tag, lock id 0, no reason.
            self.fifo.data_in.next = bit_cast::<256, 64>(self.raw_pend_seq.q.val())
                | (bit_cast::<256, 8>(self.st_sent.val()) << 128)
                | (bit_cast::<256, 32>(self.now.q.val()) << 160);
            self.fifo.write.next = true;
            self.raw_pend.d.next = false;
        }
        // No frame leaves while one waits: the source path takes no raw descriptor meanwhile.
        if self.raw_valid.val() {
            self.raw_pend.d.next = true;
            self.raw_pend_seq.d.next = self.raw_seq.val();
        }
        self.raw_room.next = !self.raw_pend.q.val();
        if self.fifo.write.val() & !self.pop.q.val() {
            self.count.d.next = self.count.q.val() + 1;
        } else if !self.fifo.write.val() & self.pop.q.val() {
            self.count.d.next = self.count.q.val() - 1;
        }
        self.fifo.read.next = self.pop.q.val();
        self.pop.d.next = false;
        self.cpl_valid.next = !self.fifo.empty.val() & !self.pop.q.val();
        self.cpl_data.next = self.fifo.data_out.val();
        if !self.fifo.empty.val() & !self.pop.q.val() & self.cpl_ready.val() {
            self.pop.d.next = true;
        }
        self.unmatched.next = self.unmatched_q.q.val();
        self.cpl_drops.next = self.drops_q.q.val();
    }
}

/// A tracker with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::SendTracker8 {
        let mut u = super::SendTracker8::default();
        u.clock.connect();
        u.sent_valid.connect();
        u.sent_lock_id.connect();
        u.sent_seq.connect();
        u.ans_valid.connect();
        u.ans_ty.connect();
        u.ans_lock_id.connect();
        u.ans_arg.connect();
        u.wait_lock_id.connect();
        u.cpl_ready.connect();
        u.raw_valid.connect();
        u.raw_seq.connect();
        u
    }
}

pub mod model;

#[cfg(test)]
mod tests;

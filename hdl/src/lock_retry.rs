//! The target's receive side as far as locks go: the frame parser feeding the lock table. Every
//! LOCK frame that passes the parser's checks (magic, version, type, flags, length, CRC) becomes a
//! lock request for regions `[offset, offset + arg)`; bad frames are dropped and counted by the
//! parser and never reach the table. A region number beyond 32 bits becomes an empty request,
//! which the table rejects as out of range.
//!
//! Lock commands are taken strictly in lock-id order, as the software target takes them: only
//! the LOCK whose id is `next_lock` enters the table. One with a later id is dropped and counted
//! (`lock_ahead`; the source's retransmission sends it again once the gap is filled, go-back-N),
//! one with an earlier id is a repeat (`lock_repeats`, and `dup_valid` so that the answer can be
//! repeated). Every checked frame carries the source's `ack_lock`: lock ids below it are settled,
//! so `next_lock` moves up to it (a lock the source gave up on never blocks the ones after it).
//! A new session (`clear_barriers`) starts again at lock id 1. Frames of another session (their
//! generation is not `generation`) are late copies from an old session: dropped and counted
//! (`stale`), and passed on as bad frames.
//!
//! The parser never back-pressures (a NIC's receive path must not stall), so a LOCK that arrives
//! while the previous one still waits for the table's input is dropped and counted (`lock_drops`);
//! the source's retransmission timer recovers it.
//!
//! `next_lock` and the frame's ids are compared in the clocks between the header and the verdict
//! (the parser's fields are registered and the shortest frame has its trailer between), so the
//! verdict clock only picks a result.
//!
//! The parser's view of every frame is passed on for the data path (`DataBuffer`), which the
//! target's full path (`TargetPath`) puts beside this block.

use rust_hdl::prelude::*;
use specmirror_abi::{Flags, FrameType};

use crate::frame_parser::FrameParser;
use crate::lock_table::LockTable;

#[derive(LogicBlock)]
pub struct LockRetry<const N: usize, const S: usize> {
    pub clock: Signal<In, Clock>,
    /// The receive stream, one 64-bit word per clock.
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    /// The session's generation.
    pub generation: Signal<In, Bits<32>>,
    /// Configuration and the host's side of the table (see `LockTable`).
    pub region_count: Signal<In, Bits<32>>,
    pub retry_backoff: Signal<In, Bits<16>>,
    pub retry_limit: Signal<In, Bits<16>>,
    pub local_hold: Signal<In, Bit>,
    pub local_first: Signal<In, Bits<32>>,
    pub local_end: Signal<In, Bits<32>>,
    pub rel_valid: Signal<In, Bit>,
    pub rel_slot: Signal<In, Bits<S>>,
    pub rel_fail: Signal<In, Bit>,
    pub clear_barriers: Signal<In, Bit>,
    /// The table's decisions.
    pub dec_valid: Signal<Out, Bit>,
    pub dec_granted: Signal<Out, Bit>,
    pub dec_reason: Signal<Out, Bits<8>>,
    pub dec_lock_id: Signal<Out, Bits<64>>,
    pub dec_seq: Signal<Out, Bits<64>>,
    pub dec_slot: Signal<Out, Bits<S>>,
    pub dec_first: Signal<Out, Bits<32>>,
    pub dec_end: Signal<Out, Bits<32>>,
    pub retried: Signal<Out, Bit>,
    pub held: Signal<Out, Bits<N>>,
    pub overflow: Signal<Out, Bit>,
    /// Frames the parser dropped, and LOCK frames dropped for want of room at the table's input.
    pub frames_bad: Signal<Out, Bits<32>>,
    pub lock_drops: Signal<Out, Bits<32>>,
    /// LOCK frames ahead of `next_lock` (dropped), and repeats of earlier ones.
    pub lock_ahead: Signal<Out, Bits<32>>,
    pub lock_repeats: Signal<Out, Bits<32>>,
    /// Checked frames of another session.
    pub stale: Signal<Out, Bits<32>>,
    /// One clock: a checked LOCK or DATA frame for a lock id before `next_lock` (`f_lock_id`,
    /// `f_ty`): its answer may be repeated.
    pub dup_valid: Signal<Out, Bit>,
    /// One clock: a checked ABORT of this session (`f_lock_id`, `f_seq`).
    pub abort_valid: Signal<Out, Bit>,
    /// The parser's view of the frame being received, for the data path (see `FrameParser`).
    pub f_hdr_valid: Signal<Out, Bit>,
    pub f_ty: Signal<Out, Bits<8>>,
    pub f_flags: Signal<Out, Bits<16>>,
    pub f_len: Signal<Out, Bits<32>>,
    pub f_seq: Signal<Out, Bits<64>>,
    pub f_lock_id: Signal<Out, Bits<64>>,
    pub f_offset: Signal<Out, Bits<64>>,
    pub f_arg: Signal<Out, Bits<64>>,
    pub f_pay_data: Signal<Out, Bits<64>>,
    pub f_pay_valid: Signal<Out, Bit>,
    pub f_frame_ok: Signal<Out, Bit>,
    pub f_frame_bad: Signal<Out, Bit>,
    parser: FrameParser,
    locks: LockTable<N, S>,
    p_valid: DFF<Bit>,
    p_lock_id: DFF<Bits<64>>,
    p_seq: DFF<Bits<64>>,
    p_first: DFF<Bits<32>>,
    p_count: DFF<Bits<32>>,
    drops: DFF<Bits<32>>,
    ahead: DFF<Bits<32>>,
    repeats: DFF<Bits<32>>,
    stale_count: DFF<Bits<32>>,
    /// The lock id expected next, once a frame has set it (`nl_set`; until then, 1).
    nl_q: DFF<Bits<64>>,
    nl_set: DFF<Bit>,
    /// `max(next_lock, ack_lock)` of the frame being received, and its lock id compared with it.
    nl_pre: DFF<Bits<64>>,
    /// `nl_pre + 1`, for a LOCK taken in.
    nl_inc: DFF<Bits<64>>,
    id_eq: DFF<Bit>,
    id_lt: DFF<Bit>,
    is_lock: Signal<Local, Bit>,
    is_data: Signal<Local, Bit>,
    nl_eff: Signal<Local, Bits<64>>,
    is_abort: Signal<Local, Bit>,
    /// The parser's verdict for a frame of this session.
    frame_ok: Signal<Local, Bit>,
    ty_lock: Constant<Bits<8>>,
    ty_data: Constant<Bits<8>>,
    ty_abort: Constant<Bits<8>>,
    implicit: Constant<Bits<16>>,
    no_flags: Constant<Bits<16>>,
}

impl<const N: usize, const S: usize> Default for LockRetry<N, S> {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
            generation: Default::default(),
            region_count: Default::default(),
            retry_backoff: Default::default(),
            retry_limit: Default::default(),
            local_hold: Default::default(),
            local_first: Default::default(),
            local_end: Default::default(),
            rel_valid: Default::default(),
            rel_slot: Default::default(),
            rel_fail: Default::default(),
            clear_barriers: Default::default(),
            dec_valid: Default::default(),
            dec_granted: Default::default(),
            dec_reason: Default::default(),
            dec_lock_id: Default::default(),
            dec_seq: Default::default(),
            dec_slot: Default::default(),
            dec_first: Default::default(),
            dec_end: Default::default(),
            retried: Default::default(),
            held: Default::default(),
            overflow: Default::default(),
            frames_bad: Default::default(),
            lock_drops: Default::default(),
            lock_ahead: Default::default(),
            lock_repeats: Default::default(),
            stale: Default::default(),
            dup_valid: Default::default(),
            abort_valid: Default::default(),
            f_hdr_valid: Default::default(),
            f_ty: Default::default(),
            f_flags: Default::default(),
            f_len: Default::default(),
            f_seq: Default::default(),
            f_lock_id: Default::default(),
            f_offset: Default::default(),
            f_arg: Default::default(),
            f_pay_data: Default::default(),
            f_pay_valid: Default::default(),
            f_frame_ok: Default::default(),
            f_frame_bad: Default::default(),
            parser: Default::default(),
            locks: Default::default(),
            p_valid: Default::default(),
            p_lock_id: Default::default(),
            p_seq: Default::default(),
            p_first: Default::default(),
            p_count: Default::default(),
            drops: Default::default(),
            ahead: Default::default(),
            repeats: Default::default(),
            stale_count: Default::default(),
            nl_q: Default::default(),
            nl_set: Default::default(),
            nl_inc: Default::default(),
            nl_eff: Default::default(),
            nl_pre: Default::default(),
            id_eq: Default::default(),
            id_lt: Default::default(),
            is_lock: Default::default(),
            is_data: Default::default(),
            is_abort: Default::default(),
            frame_ok: Default::default(),
            ty_lock: Constant::new((FrameType::Lock as u64).to_bits()),
            ty_data: Constant::new((FrameType::Data as u64).to_bits()),
            ty_abort: Constant::new((FrameType::Abort as u64).to_bits()),
            implicit: Constant::new((Flags::IMPLICIT_LOCK.0 as u64).to_bits()),
            no_flags: Constant::new((Flags::NONE.0 as u64).to_bits()),
        }
    }
}

impl<const N: usize, const S: usize> Logic for LockRetry<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            p_valid,
            p_lock_id,
            p_seq,
            p_first,
            p_count,
            drops,
            ahead,
            repeats,
            stale_count,
            nl_q,
            nl_set,
            nl_inc,
            nl_pre,
            id_eq,
            id_lt
        );
        self.parser.clock.next = self.clock.val();
        self.parser.rx_data.next = self.rx_data.val();
        self.parser.rx_valid.next = self.rx_valid.val();
        self.parser.rx_last.next = self.rx_last.val();
        self.locks.clock.next = self.clock.val();
        self.locks.region_count.next = self.region_count.val();
        self.locks.retry_backoff.next = self.retry_backoff.val();
        self.locks.retry_limit.next = self.retry_limit.val();
        self.locks.local_hold.next = self.local_hold.val();
        self.locks.local_first.next = self.local_first.val();
        self.locks.local_end.next = self.local_end.val();
        self.locks.rel_valid.next = self.rel_valid.val();
        self.locks.rel_slot.next = self.rel_slot.val();
        self.locks.rel_fail.next = self.rel_fail.val();
        self.locks.clear_barriers.next = self.clear_barriers.val();

        // A checked LOCK frame (an explicit lock: no flags) waits here for the table's input.
        self.locks.req_valid.next = self.p_valid.q.val();
        self.locks.req_lock_id.next = self.p_lock_id.q.val();
        self.locks.req_seq.next = self.p_seq.q.val();
        self.locks.req_first.next = self.p_first.q.val();
        self.locks.req_count.next = self.p_count.q.val();
        self.p_valid.d.next = self.p_valid.q.val() & !self.locks.req_ready.val();
        self.frame_ok.next =
            self.parser.frame_ok.val() & (self.parser.generation.val() == self.generation.val());
        if self.parser.frame_ok.val() & !self.frame_ok.val() {
            self.stale_count.d.next = self.stale_count.q.val() + 1;
        }
        self.is_lock.next = self.frame_ok.val()
            & (self.parser.ty.val() == self.ty_lock.val())
            & (self.parser.flags.val() == self.no_flags.val());
        // The frame's place in the lock order, ready by its verdict.
        // One 64-bit carry chain per clock: the watermark comparison, then the lock id's, and the
        // increment from a register.
        self.nl_eff.next = self.nl_q.q.val();
        if !self.nl_set.q.val() {
            self.nl_eff.next = 1.into();
        }
        self.nl_pre.d.next = self.nl_eff.val();
        if self.parser.ack_lock.val() > self.nl_eff.val() {
            self.nl_pre.d.next = self.parser.ack_lock.val();
        }
        self.nl_inc.d.next = self.nl_pre.q.val() + 1;
        self.id_eq.d.next = self.parser.lock_id.val() == self.nl_pre.q.val();
        self.id_lt.d.next = self.parser.lock_id.val() < self.nl_pre.q.val();
        self.is_data.next = self.frame_ok.val()
            & (self.parser.ty.val() == self.ty_data.val())
            & !(self.parser.flags.val() & self.implicit.val()).any();
        self.dup_valid.next = (self.is_lock.val() | self.is_data.val()) & self.id_lt.q.val();
        if self.frame_ok.val() {
            self.nl_q.d.next = self.nl_pre.q.val();
            self.nl_set.d.next = true;
        }
        if self.is_lock.val() & self.id_lt.q.val() {
            self.repeats.d.next = self.repeats.q.val() + 1;
        }
        if self.is_lock.val() & !self.id_lt.q.val() & !self.id_eq.q.val() {
            self.ahead.d.next = self.ahead.q.val() + 1;
        }
        // An ABORT lifts the ordering barrier of its write, if one stands: it goes to the table as
        // an empty request with the write's sequence number and lock id 0, which frees the barrier
        // as a re-issue would and is then rejected as out of range (and not answered).
        self.is_abort.next = self.frame_ok.val() & (self.parser.ty.val() == self.ty_abort.val());
        self.abort_valid.next = self.is_abort.val();
        if self.is_abort.val() {
            if self.p_valid.q.val() & !self.locks.req_ready.val() {
                self.drops.d.next = self.drops.q.val() + 1;
            } else {
                self.p_valid.d.next = true;
                self.p_lock_id.d.next = 0.into();
                self.p_seq.d.next = self.parser.seq.val();
                self.p_first.d.next = 0.into();
                self.p_count.d.next = 0.into();
            }
        }
        if self.is_lock.val() & self.id_eq.q.val() {
            if self.p_valid.q.val() & !self.locks.req_ready.val() {
                self.drops.d.next = self.drops.q.val() + 1;
            } else {
                self.nl_q.d.next = self.nl_inc.q.val();
                self.p_valid.d.next = true;
                self.p_lock_id.d.next = self.parser.lock_id.val();
                self.p_seq.d.next = self.parser.seq.val();
                self.p_first.d.next = self.parser.offset.val().get_bits::<32>(0);
                self.p_count.d.next = self.parser.arg.val().get_bits::<32>(0);
                // Regions beyond 32 bits: an empty request, rejected as out of range.
                if self.parser.offset.val().get_bits::<32>(32).any()
                    | self.parser.arg.val().get_bits::<32>(32).any()
                {
                    self.p_count.d.next = 0.into();
                }
            }
        }

        self.dec_valid.next = self.locks.dec_valid.val();
        self.dec_granted.next = self.locks.dec_granted.val();
        self.dec_reason.next = self.locks.dec_reason.val();
        self.dec_lock_id.next = self.locks.dec_lock_id.val();
        self.dec_seq.next = self.locks.dec_seq.val();
        self.dec_slot.next = self.locks.dec_slot.val();
        self.dec_first.next = self.locks.dec_first.val();
        self.dec_end.next = self.locks.dec_end.val();
        self.retried.next = self.locks.retried.val();
        self.held.next = self.locks.held.val();
        self.overflow.next = self.locks.overflow.val();
        self.frames_bad.next = self.parser.bad_count.val();
        if self.clear_barriers.val() {
            self.nl_set.d.next = false;
        }
        self.lock_drops.next = self.drops.q.val();
        self.lock_ahead.next = self.ahead.q.val();
        self.lock_repeats.next = self.repeats.q.val();
        self.stale.next = self.stale_count.q.val();
        self.f_hdr_valid.next = self.parser.hdr_valid.val();
        self.f_ty.next = self.parser.ty.val();
        self.f_flags.next = self.parser.flags.val();
        self.f_len.next = self.parser.payload_len.val();
        self.f_seq.next = self.parser.seq.val();
        self.f_lock_id.next = self.parser.lock_id.val();
        self.f_offset.next = self.parser.offset.val();
        self.f_arg.next = self.parser.arg.val();
        self.f_pay_data.next = self.parser.pay_data.val();
        self.f_pay_valid.next = self.parser.pay_valid.val();
        self.f_frame_ok.next = self.frame_ok.val();
        self.f_frame_bad.next =
            self.parser.frame_bad.val() | (self.parser.frame_ok.val() & !self.frame_ok.val());
    }
}

/// A receive side with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected<const N: usize, const S: usize>() -> super::LockRetry<N, S> {
        let mut u = super::LockRetry::<N, S>::default();
        u.clock.connect();
        u.rx_data.connect();
        u.rx_valid.connect();
        u.rx_last.connect();
        u.generation.connect();
        u.region_count.connect();
        u.retry_backoff.connect();
        u.retry_limit.connect();
        u.local_hold.connect();
        u.local_first.connect();
        u.local_end.connect();
        u.rel_valid.connect();
        u.rel_slot.connect();
        u.rel_fail.connect();
        u.clear_barriers.connect();
        u
    }
}

#[cfg(test)]
mod tests;

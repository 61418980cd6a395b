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
//! `next_lock` and the frame's ids are compared in the clocks between the header and the verdict,
//! so the verdict clock only picks a result. The watermark (`ack_lock`, header word 6) is known
//! two clocks before the verdict of the shortest frame. No 64-bit carry chain fits one clock of an
//! iCE40 at 100 MHz, so every comparison is made of 32-bit halves: the first clock compares the
//! halves of the lock id against both candidates for `next_lock` (the watermark and the current
//! `next_lock`), and of the watermark against `next_lock`; the second picks the candidate and
//! joins the halves. The increment a taken LOCK moves `next_lock` to is its own lock id plus one,
//! also in two halves, from the lock id (header word 3).
//!
//! What a verdict sets going (the request to the table, `next_lock`, the counters) happens the
//! clock after it, from the frame's fields, which stay in the parser's registers that long even
//! when the next frame starts at once. So the verdict drives a handful of flip-flops, not the
//! request's 190; the type and generation tests are registered from the header before it.
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
    /// The frame's lock id plus one, for a LOCK taken in (its id is then `nl_pre`).
    nl_inc: DFF<Bits<64>>,
    id_eq: DFF<Bit>,
    id_lt: DFF<Bit>,
    /// First clock, in 32-bit halves (`_h` high, `_l` low): the watermark against `next_lock`
    /// (`wm_`), the lock id against the watermark (`la_`) and against `next_lock` (`ln_`).
    wm_gt_h: DFF<Bit>,
    wm_eq_h: DFF<Bit>,
    wm_gt_l: DFF<Bit>,
    la_lt_h: DFF<Bit>,
    la_eq_h: DFF<Bit>,
    la_lt_l: DFF<Bit>,
    la_eq_l: DFF<Bit>,
    ln_lt_h: DFF<Bit>,
    ln_eq_h: DFF<Bit>,
    ln_lt_l: DFF<Bit>,
    ln_eq_l: DFF<Bit>,
    /// The lock id's low half plus one, and whether that carries into the high half.
    inc_l: DFF<Bits<32>>,
    inc_c: DFF<Bit>,
    /// The watermark is above `next_lock`.
    wm_above: Signal<Local, Bit>,
    /// Known from the header before the verdict: the frame is of this session, and a LOCK (no
    /// flags), a DATA (explicit lock) or an ABORT.
    gen_ok: DFF<Bit>,
    cand_lock: DFF<Bit>,
    cand_data: DFF<Bit>,
    cand_abort: DFF<Bit>,
    /// The verdict's consequences, acted on the clock after it (the frame's lock id, sequence,
    /// offset and count are still in the parser then): a checked frame of this session, a LOCK
    /// to take, an ABORT to pass on, a repeated LOCK, one ahead, a frame of another session.
    v_ok: DFF<Bit>,
    v_take: DFF<Bit>,
    v_abort: DFF<Bit>,
    v_repeat: DFF<Bit>,
    v_ahead: DFF<Bit>,
    v_stale: DFF<Bit>,
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
            wm_gt_h: Default::default(),
            wm_eq_h: Default::default(),
            wm_gt_l: Default::default(),
            la_lt_h: Default::default(),
            la_eq_h: Default::default(),
            la_lt_l: Default::default(),
            la_eq_l: Default::default(),
            ln_lt_h: Default::default(),
            ln_eq_h: Default::default(),
            ln_lt_l: Default::default(),
            ln_eq_l: Default::default(),
            inc_l: Default::default(),
            inc_c: Default::default(),
            wm_above: Default::default(),
            gen_ok: Default::default(),
            cand_lock: Default::default(),
            cand_data: Default::default(),
            cand_abort: Default::default(),
            v_ok: Default::default(),
            v_take: Default::default(),
            v_abort: Default::default(),
            v_repeat: Default::default(),
            v_ahead: Default::default(),
            v_stale: Default::default(),
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
            id_lt,
            wm_gt_h,
            wm_eq_h,
            wm_gt_l,
            la_lt_h,
            la_eq_h,
            la_lt_l,
            la_eq_l,
            ln_lt_h,
            ln_eq_h,
            ln_lt_l,
            ln_eq_l,
            inc_l,
            inc_c,
            gen_ok,
            cand_lock,
            cand_data,
            cand_abort,
            v_ok,
            v_take,
            v_abort,
            v_repeat,
            v_ahead,
            v_stale
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
        // What the header says, registered before the verdict (the header's first words are in
        // the parser's registers until the clock after the verdict).
        self.gen_ok.d.next = self.parser.generation.val() == self.generation.val();
        self.cand_lock.d.next = (self.parser.ty.val() == self.ty_lock.val())
            & (self.parser.flags.val() == self.no_flags.val());
        self.cand_data.d.next = (self.parser.ty.val() == self.ty_data.val())
            & !(self.parser.flags.val() & self.implicit.val()).any();
        self.cand_abort.d.next = self.parser.ty.val() == self.ty_abort.val();
        self.frame_ok.next = self.parser.frame_ok.val() & self.gen_ok.q.val();
        self.is_lock.next = self.frame_ok.val() & self.cand_lock.q.val();
        self.is_data.next = self.frame_ok.val() & self.cand_data.q.val();
        self.is_abort.next = self.frame_ok.val() & self.cand_abort.q.val();
        self.v_stale.d.next = self.parser.frame_ok.val() & !self.gen_ok.q.val();
        self.v_ok.d.next = self.frame_ok.val();
        self.v_take.d.next = self.is_lock.val() & self.id_eq.q.val();
        self.v_abort.d.next = self.is_abort.val();
        self.v_repeat.d.next = self.is_lock.val() & self.id_lt.q.val();
        self.v_ahead.d.next = self.is_lock.val() & !self.id_lt.q.val() & !self.id_eq.q.val();
        if self.v_stale.q.val() {
            self.stale_count.d.next = self.stale_count.q.val() + 1;
        }
        // The frame's place in the lock order, ready by its verdict: halves in the first clock,
        // joined in the second.
        self.nl_eff.next = self.nl_q.q.val();
        if !self.nl_set.q.val() {
            self.nl_eff.next = 1.into();
        }
        self.wm_gt_h.d.next =
            self.parser.ack_lock.val().get_bits::<32>(32) > self.nl_eff.val().get_bits::<32>(32);
        self.wm_eq_h.d.next =
            self.parser.ack_lock.val().get_bits::<32>(32) == self.nl_eff.val().get_bits::<32>(32);
        self.wm_gt_l.d.next =
            self.parser.ack_lock.val().get_bits::<32>(0) > self.nl_eff.val().get_bits::<32>(0);
        self.la_lt_h.d.next = self.parser.lock_id.val().get_bits::<32>(32)
            < self.parser.ack_lock.val().get_bits::<32>(32);
        self.la_eq_h.d.next = self.parser.lock_id.val().get_bits::<32>(32)
            == self.parser.ack_lock.val().get_bits::<32>(32);
        self.la_lt_l.d.next = self.parser.lock_id.val().get_bits::<32>(0)
            < self.parser.ack_lock.val().get_bits::<32>(0);
        self.la_eq_l.d.next = self.parser.lock_id.val().get_bits::<32>(0)
            == self.parser.ack_lock.val().get_bits::<32>(0);
        self.ln_lt_h.d.next =
            self.parser.lock_id.val().get_bits::<32>(32) < self.nl_eff.val().get_bits::<32>(32);
        self.ln_eq_h.d.next =
            self.parser.lock_id.val().get_bits::<32>(32) == self.nl_eff.val().get_bits::<32>(32);
        self.ln_lt_l.d.next =
            self.parser.lock_id.val().get_bits::<32>(0) < self.nl_eff.val().get_bits::<32>(0);
        self.ln_eq_l.d.next =
            self.parser.lock_id.val().get_bits::<32>(0) == self.nl_eff.val().get_bits::<32>(0);
        self.inc_l.d.next = self.parser.lock_id.val().get_bits::<32>(0) + 1;
        self.inc_c.d.next = self.parser.lock_id.val().get_bits::<32>(0).all();
        self.wm_above.next = self.wm_gt_h.q.val() | (self.wm_eq_h.q.val() & self.wm_gt_l.q.val());
        self.nl_pre.d.next = self.nl_eff.val();
        self.id_eq.d.next = self.ln_eq_h.q.val() & self.ln_eq_l.q.val();
        self.id_lt.d.next = self.ln_lt_h.q.val() | (self.ln_eq_h.q.val() & self.ln_lt_l.q.val());
        if self.wm_above.val() {
            self.nl_pre.d.next = self.parser.ack_lock.val();
            self.id_eq.d.next = self.la_eq_h.q.val() & self.la_eq_l.q.val();
            self.id_lt.d.next =
                self.la_lt_h.q.val() | (self.la_eq_h.q.val() & self.la_lt_l.q.val());
        }
        self.nl_inc.d.next = (bit_cast::<64, 32>(
            self.parser.lock_id.val().get_bits::<32>(32)
                + bit_cast::<32, 1>(self.inc_c.q.val().into()),
        ) << 32)
            | bit_cast::<64, 32>(self.inc_l.q.val());
        self.dup_valid.next = (self.is_lock.val() | self.is_data.val()) & self.id_lt.q.val();
        // The clock after the verdict. `nl_pre` and `nl_inc` still hold this frame's values: the
        // next frame's watermark and lock id come in later.
        if self.v_ok.q.val() {
            self.nl_q.d.next = self.nl_pre.q.val();
            self.nl_set.d.next = true;
        }
        if self.v_repeat.q.val() {
            self.repeats.d.next = self.repeats.q.val() + 1;
        }
        if self.v_ahead.q.val() {
            self.ahead.d.next = self.ahead.q.val() + 1;
        }
        // An ABORT lifts the ordering barrier of its write, if one stands: it goes to the table as
        // an empty request with the write's sequence number and lock id 0, which frees the barrier
        // as a re-issue would and is then rejected as out of range (and not answered).
        self.abort_valid.next = self.is_abort.val();
        if self.v_abort.q.val() {
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
        if self.v_take.q.val() {
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

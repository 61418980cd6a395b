//! The target from wire to wire: LOCK frames from the receive stream through the frame parser into
//! the lock table (`LockRetry`), every decision out as a LOCK_GRANTED or LOCK_REJECTED frame on the
//! transmit stream (`AnswerEmitter`), stamped with the session's generation; DATA frames into the
//! data buffer (`DataBuffer`), out on the volume-write port once their lock is held, and the
//! host's completion back as the lock's release and a WRITE_DONE (or WRITE_FAILED) frame.
//!
//! Lock commands are taken in lock-id order, frames of another session are dropped, and a
//! repeated lock command or DATA frame is answered again from the answer cache (`AnswerCache`).
//!
//! The table's decisions go to the answer path first (they are never back-pressured); the data
//! path's answers take the clocks between them, the cache's repeats the clocks left, and both
//! wait while the answer FIFO is full. The host's
//! side of the table (local holds, clearing barriers at a new session) and the decisions stay
//! visible.

use rust_hdl::prelude::*;
use specmirror_abi::FrameType;

use crate::answer_cache::AnswerCache;
use crate::answer_emitter::AnswerEmitter;
use crate::data_buffer::DataBuffer;
use crate::lock_retry::LockRetry;

#[derive(LogicBlock)]
pub struct TargetPath<const N: usize, const S: usize> {
    pub clock: Signal<In, Clock>,
    /// The receive stream, one 64-bit word per clock.
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    /// The transmit stream: the answers.
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    /// The session's generation (from the register block).
    pub generation: Signal<In, Bits<32>>,
    /// Configuration and the host's side of the table (see `LockTable`).
    pub region_count: Signal<In, Bits<32>>,
    pub retry_backoff: Signal<In, Bits<16>>,
    pub retry_limit: Signal<In, Bits<16>>,
    pub local_hold: Signal<In, Bit>,
    pub local_first: Signal<In, Bits<32>>,
    pub local_end: Signal<In, Bits<32>>,
    pub clear_barriers: Signal<In, Bit>,
    /// The volume's geometry and how long data waits for its lock (see `DataBuffer`).
    pub region_shift: Signal<In, Bits<8>>,
    pub volume_bytes: Signal<In, Bits<64>>,
    pub data_timeout: Signal<In, Bits<32>>,
    pub grant_timeout: Signal<In, Bits<32>>,
    /// The volume-write port and the host's completions (see `DataBuffer`).
    pub wr_valid: Signal<Out, Bit>,
    pub wr_ready: Signal<In, Bit>,
    pub wr_data: Signal<Out, Bits<64>>,
    pub wr_last: Signal<Out, Bit>,
    pub wr_offset: Signal<Out, Bits<64>>,
    pub wr_len: Signal<Out, Bits<32>>,
    pub wr_fua: Signal<Out, Bit>,
    pub wr_slot: Signal<Out, Bits<S>>,
    pub done_valid: Signal<In, Bit>,
    pub done_ready: Signal<Out, Bit>,
    pub done_slot: Signal<In, Bits<S>>,
    pub done_error: Signal<In, Bits<32>>,
    /// The table's decisions, for the data path.
    pub dec_valid: Signal<Out, Bit>,
    pub dec_granted: Signal<Out, Bit>,
    pub dec_lock_id: Signal<Out, Bits<64>>,
    pub dec_slot: Signal<Out, Bits<S>>,
    pub held: Signal<Out, Bits<N>>,
    /// Counters: bad frames, LOCK frames dropped at the table's input, answers dropped.
    pub frames_bad: Signal<Out, Bits<32>>,
    pub lock_drops: Signal<Out, Bits<32>>,
    pub answer_drops: Signal<Out, Bits<32>>,
    /// The data buffer's counters: frames not taken, expired, repeated, breaking the protocol.
    pub data_drops: Signal<Out, Bits<32>>,
    pub data_expired: Signal<Out, Bits<32>>,
    pub data_repeats: Signal<Out, Bits<32>>,
    pub data_violations: Signal<Out, Bits<32>>,
    pub locks_revoked: Signal<Out, Bits<32>>,
    /// The data buffer's status word and its grant records' taken bits (see `DataBuffer`).
    pub data_status: Signal<Out, Bits<32>>,
    pub grants_taken: Signal<Out, Bits<N>>,
    /// Lock commands ahead of the lock order (dropped), repeated, frames of another session, and
    /// the answer cache's repeats and misses.
    pub lock_ahead: Signal<Out, Bits<32>>,
    pub lock_repeats: Signal<Out, Bits<32>>,
    pub stale: Signal<Out, Bits<32>>,
    pub answers_repeated: Signal<Out, Bits<32>>,
    pub repeats_missed: Signal<Out, Bits<32>>,
    rx: LockRetry<N, S>,
    cache: AnswerCache,
    data: DataBuffer<N, S>,
    answers: AnswerEmitter,
    ty_granted: Constant<Bits<8>>,
    ty_rejected: Constant<Bits<8>>,
    ty_lock: Constant<Bits<8>>,
    dec_answer: Signal<Local, Bit>,
    nearly_full: DFF<Bit>,
    rec_valid: DFF<Bit>,
    rec_ty: DFF<Bits<8>>,
    rec_seq: DFF<Bits<64>>,
    rec_lock_id: DFF<Bits<64>>,
    rec_arg: DFF<Bits<64>>,
}

impl<const N: usize, const S: usize> Default for TargetPath<N, S> {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            generation: Default::default(),
            region_count: Default::default(),
            retry_backoff: Default::default(),
            retry_limit: Default::default(),
            local_hold: Default::default(),
            local_first: Default::default(),
            local_end: Default::default(),
            clear_barriers: Default::default(),
            region_shift: Default::default(),
            volume_bytes: Default::default(),
            data_timeout: Default::default(),
            grant_timeout: Default::default(),
            wr_valid: Default::default(),
            wr_ready: Default::default(),
            wr_data: Default::default(),
            wr_last: Default::default(),
            wr_offset: Default::default(),
            wr_len: Default::default(),
            wr_fua: Default::default(),
            wr_slot: Default::default(),
            done_valid: Default::default(),
            done_ready: Default::default(),
            done_slot: Default::default(),
            done_error: Default::default(),
            dec_valid: Default::default(),
            dec_granted: Default::default(),
            dec_lock_id: Default::default(),
            dec_slot: Default::default(),
            held: Default::default(),
            frames_bad: Default::default(),
            lock_drops: Default::default(),
            answer_drops: Default::default(),
            data_drops: Default::default(),
            data_expired: Default::default(),
            data_repeats: Default::default(),
            data_violations: Default::default(),
            locks_revoked: Default::default(),
            data_status: Default::default(),
            grants_taken: Default::default(),
            lock_ahead: Default::default(),
            lock_repeats: Default::default(),
            stale: Default::default(),
            answers_repeated: Default::default(),
            repeats_missed: Default::default(),
            rx: Default::default(),
            cache: Default::default(),
            data: Default::default(),
            answers: Default::default(),
            ty_granted: Constant::new((FrameType::LockGranted as u64).to_bits()),
            ty_rejected: Constant::new((FrameType::LockRejected as u64).to_bits()),
            ty_lock: Constant::new((FrameType::Lock as u64).to_bits()),
            dec_answer: Default::default(),
            nearly_full: Default::default(),
            rec_valid: Default::default(),
            rec_ty: Default::default(),
            rec_seq: Default::default(),
            rec_lock_id: Default::default(),
            rec_arg: Default::default(),
        }
    }
}

impl<const N: usize, const S: usize> Logic for TargetPath<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            nearly_full,
            rec_valid,
            rec_ty,
            rec_seq,
            rec_lock_id,
            rec_arg
        );
        self.rx.clock.next = self.clock.val();
        self.rx.rx_data.next = self.rx_data.val();
        self.rx.rx_valid.next = self.rx_valid.val();
        self.rx.rx_last.next = self.rx_last.val();
        self.rx.generation.next = self.generation.val();
        self.rx.region_count.next = self.region_count.val();
        self.rx.retry_backoff.next = self.retry_backoff.val();
        self.rx.retry_limit.next = self.retry_limit.val();
        self.rx.local_hold.next = self.local_hold.val();
        self.rx.local_first.next = self.local_first.val();
        self.rx.local_end.next = self.local_end.val();
        self.rx.rel_valid.next = self.data.rel_valid.val();
        self.rx.rel_slot.next = self.data.rel_slot.val();
        self.rx.rel_fail.next = self.data.rel_fail.val();
        self.rx.clear_barriers.next = self.clear_barriers.val();
        // The data path sees every frame the parser sees and every decision the table makes.
        self.data.clock.next = self.clock.val();
        self.data.hdr_valid.next = self.rx.f_hdr_valid.val();
        self.data.ty.next = self.rx.f_ty.val();
        self.data.flags.next = self.rx.f_flags.val();
        self.data.payload_len.next = self.rx.f_len.val();
        self.data.seq.next = self.rx.f_seq.val();
        self.data.lock_id.next = self.rx.f_lock_id.val();
        self.data.offset.next = self.rx.f_offset.val();
        self.data.arg.next = self.rx.f_arg.val();
        self.data.pay_data.next = self.rx.f_pay_data.val();
        self.data.pay_valid.next = self.rx.f_pay_valid.val();
        self.data.frame_ok.next = self.rx.f_frame_ok.val();
        self.data.frame_bad.next = self.rx.f_frame_bad.val();
        self.data.dec_valid.next = self.rx.dec_valid.val();
        self.data.dec_granted.next = self.rx.dec_granted.val();
        self.data.dec_lock_id.next = self.rx.dec_lock_id.val();
        self.data.dec_seq.next = self.rx.dec_seq.val();
        self.data.dec_slot.next = self.rx.dec_slot.val();
        self.data.dec_first.next = self.rx.dec_first.val();
        self.data.dec_end.next = self.rx.dec_end.val();
        self.data.region_shift.next = self.region_shift.val();
        self.data.volume_bytes.next = self.volume_bytes.val();
        self.data.data_timeout.next = self.data_timeout.val();
        self.data.grant_timeout.next = self.grant_timeout.val();
        self.data.abort_valid.next = self.rx.abort_valid.val();
        self.data.settled_valid.next = self.cache.settled.val();
        self.data.settled_lock_id.next = self.cache.settled_lock_id.val();
        self.data.wr_ready.next = self.wr_ready.val();
        self.data.done_valid.next = self.done_valid.val();
        self.data.done_slot.next = self.done_slot.val();
        self.data.done_error.next = self.done_error.val();
        self.wr_valid.next = self.data.wr_valid.val();
        self.wr_data.next = self.data.wr_data.val();
        self.wr_last.next = self.data.wr_last.val();
        self.wr_offset.next = self.data.wr_offset.val();
        self.wr_len.next = self.data.wr_len.val();
        self.wr_fua.next = self.data.wr_fua.val();
        self.wr_slot.next = self.data.wr_slot.val();
        self.done_ready.next = self.data.done_ready.val();
        // Every decision becomes an answer on the wire: granted, or rejected with its reason. The
        // data path's answers take the other clocks.
        self.answers.clock.next = self.clock.val();
        self.answers.generation.next = self.generation.val();
        self.answers.tx_ready.next = self.tx_ready.val();
        // The FIFO's fill, through a register: answers that can wait never see its `full`
        // within the clock they are offered (no combinational path back into the emitter).
        self.nearly_full.d.next = self.answers.almost_full.val();
        // (A decision for lock id 0 is an ABORT's request: nobody to answer.)
        self.dec_answer.next = self.rx.dec_valid.val() & self.rx.dec_lock_id.val().any();
        self.data.ans_ready.next = !self.dec_answer.val() & !self.nearly_full.q.val();
        self.cache.ans_ready.next =
            !self.dec_answer.val() & !self.data.ans_valid.val() & !self.nearly_full.q.val();
        // An answer enters the emitter once, in the clock its source is ready: one that waits
        // (the FIFO nearly full) must not enter every clock it waits, or its copies would keep
        // the FIFO full and it would wait for ever.
        self.answers.ans_valid.next = self.dec_answer.val()
            | (self.data.ans_valid.val() & self.data.ans_ready.val())
            | (self.cache.ans_valid.val() & self.cache.ans_ready.val());
        self.answers.ans_seq.next = self.rx.dec_seq.val();
        self.answers.ans_lock_id.next = self.rx.dec_lock_id.val();
        if self.dec_answer.val() {
            if self.rx.dec_granted.val() {
                self.answers.ans_ty.next = self.ty_granted.val();
                self.answers.ans_arg.next = 0.into();
            } else {
                self.answers.ans_ty.next = self.ty_rejected.val();
                self.answers.ans_arg.next = bit_cast::<64, 8>(self.rx.dec_reason.val());
            }
        } else if self.data.ans_valid.val() {
            self.answers.ans_ty.next = self.data.ans_ty.val();
            self.answers.ans_seq.next = self.data.ans_seq.val();
            self.answers.ans_lock_id.next = self.data.ans_lock_id.val();
            self.answers.ans_arg.next = self.data.ans_arg.val();
        } else {
            self.answers.ans_ty.next = self.cache.ans_ty.val();
            self.answers.ans_seq.next = self.cache.ans_seq.val();
            self.answers.ans_lock_id.next = self.cache.ans_lock_id.val();
            self.answers.ans_arg.next = self.cache.ans_arg.val();
        }
        // The cache records the decisions and the data path's answers (not its own repeats), and
        // looks up repeated lock commands and DATA frames.
        self.cache.clock.next = self.clock.val();
        self.cache.generation.next = self.generation.val();
        // The record goes through registers: the cache's inputs never depend, within a clock,
        // on its outputs.
        self.rec_valid.d.next =
            self.dec_answer.val() | (self.data.ans_valid.val() & !self.nearly_full.q.val());
        self.rec_ty.d.next = self.answers.ans_ty.val();
        self.rec_seq.d.next = self.answers.ans_seq.val();
        self.rec_lock_id.d.next = self.answers.ans_lock_id.val();
        self.rec_arg.d.next = self.answers.ans_arg.val();
        self.cache.rec_valid.next = self.rec_valid.q.val();
        self.cache.rec_ty.next = self.rec_ty.q.val();
        self.cache.rec_seq.next = self.rec_seq.q.val();
        self.cache.rec_lock_id.next = self.rec_lock_id.q.val();
        self.cache.rec_arg.next = self.rec_arg.q.val();
        self.cache.q_valid.next = self.rx.dup_valid.val();
        self.cache.q_lock_id.next = self.rx.f_lock_id.val();
        self.cache.q_data.next = self.rx.f_ty.val() != self.ty_lock.val();
        self.tx_data.next = self.answers.tx_data.val();
        self.tx_valid.next = self.answers.tx_valid.val();
        self.tx_last.next = self.answers.tx_last.val();
        self.dec_valid.next = self.rx.dec_valid.val();
        self.dec_granted.next = self.rx.dec_granted.val();
        self.dec_lock_id.next = self.rx.dec_lock_id.val();
        self.dec_slot.next = self.rx.dec_slot.val();
        self.held.next = self.rx.held.val();
        self.frames_bad.next = self.rx.frames_bad.val();
        self.lock_drops.next = self.rx.lock_drops.val();
        self.answer_drops.next = self.answers.dropped.val();
        self.data_drops.next = self.data.drops.val();
        self.data_expired.next = self.data.expired.val();
        self.data_repeats.next = self.data.repeats.val();
        self.data_violations.next = self.data.violations.val();
        self.locks_revoked.next = self.data.revoked.val();
        self.data_status.next = self.data.status.val();
        self.grants_taken.next = self.data.taken.val();
        self.lock_ahead.next = self.rx.lock_ahead.val();
        self.lock_repeats.next = self.rx.lock_repeats.val();
        self.stale.next = self.rx.stale.val();
        self.answers_repeated.next = self.cache.repeated.val();
        self.repeats_missed.next = self.cache.missed.val();
    }
}

/// A lock path with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected<const N: usize, const S: usize>() -> super::TargetPath<N, S> {
        let mut u = super::TargetPath::<N, S>::default();
        u.clock.connect();
        u.rx_data.connect();
        u.rx_valid.connect();
        u.rx_last.connect();
        u.tx_ready.connect();
        u.generation.connect();
        u.region_count.connect();
        u.retry_backoff.connect();
        u.retry_limit.connect();
        u.local_hold.connect();
        u.local_first.connect();
        u.local_end.connect();
        u.clear_barriers.connect();
        u.region_shift.connect();
        u.volume_bytes.connect();
        u.data_timeout.connect();
        u.grant_timeout.connect();
        u.wr_ready.connect();
        u.done_valid.connect();
        u.done_slot.connect();
        u.done_error.connect();
        u
    }
}

pub mod host;

#[cfg(test)]
pub(crate) mod tests;

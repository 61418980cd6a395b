//! The target's lock path from wire to wire: LOCK frames from the receive stream through the frame
//! parser into the lock table (`LockRetry`), and every decision out as a LOCK_GRANTED or
//! LOCK_REJECTED frame on the transmit stream (`AnswerEmitter`), stamped with the session's
//! generation. The host's side of the table (local holds, releases when a write is done, clearing
//! barriers) and the decisions themselves stay visible for the data path.
//!
//! Not here yet: the buffer that holds early DATA until its lock is held and the port that writes
//! it to the volume, whose WRITE_DONE the emitter would also carry.

use rust_hdl::prelude::*;
use specmirror_abi::FrameType;

use crate::answer_emitter::AnswerEmitter;
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
    pub rel_valid: Signal<In, Bit>,
    pub rel_slot: Signal<In, Bits<S>>,
    pub clear_barriers: Signal<In, Bit>,
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
    rx: LockRetry<N, S>,
    answers: AnswerEmitter,
    ty_granted: Constant<Bits<8>>,
    ty_rejected: Constant<Bits<8>>,
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
            rel_valid: Default::default(),
            rel_slot: Default::default(),
            clear_barriers: Default::default(),
            dec_valid: Default::default(),
            dec_granted: Default::default(),
            dec_lock_id: Default::default(),
            dec_slot: Default::default(),
            held: Default::default(),
            frames_bad: Default::default(),
            lock_drops: Default::default(),
            answer_drops: Default::default(),
            rx: Default::default(),
            answers: Default::default(),
            ty_granted: Constant::new((FrameType::LockGranted as u64).to_bits()),
            ty_rejected: Constant::new((FrameType::LockRejected as u64).to_bits()),
        }
    }
}

impl<const N: usize, const S: usize> Logic for TargetPath<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        self.rx.clock.next = self.clock.val();
        self.rx.rx_data.next = self.rx_data.val();
        self.rx.rx_valid.next = self.rx_valid.val();
        self.rx.rx_last.next = self.rx_last.val();
        self.rx.region_count.next = self.region_count.val();
        self.rx.retry_backoff.next = self.retry_backoff.val();
        self.rx.retry_limit.next = self.retry_limit.val();
        self.rx.local_hold.next = self.local_hold.val();
        self.rx.local_first.next = self.local_first.val();
        self.rx.local_end.next = self.local_end.val();
        self.rx.rel_valid.next = self.rel_valid.val();
        self.rx.rel_slot.next = self.rel_slot.val();
        self.rx.clear_barriers.next = self.clear_barriers.val();
        // Every decision becomes an answer on the wire: granted, or rejected with its reason.
        self.answers.clock.next = self.clock.val();
        self.answers.generation.next = self.generation.val();
        self.answers.tx_ready.next = self.tx_ready.val();
        self.answers.ans_valid.next = self.rx.dec_valid.val();
        self.answers.ans_seq.next = self.rx.dec_seq.val();
        self.answers.ans_lock_id.next = self.rx.dec_lock_id.val();
        if self.rx.dec_granted.val() {
            self.answers.ans_ty.next = self.ty_granted.val();
            self.answers.ans_arg.next = 0.into();
        } else {
            self.answers.ans_ty.next = self.ty_rejected.val();
            self.answers.ans_arg.next = bit_cast::<64, 8>(self.rx.dec_reason.val());
        }
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
        u.rel_valid.connect();
        u.rel_slot.connect();
        u.clear_barriers.connect();
        u
    }
}

#[cfg(test)]
mod tests;

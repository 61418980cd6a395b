//! The target's receive side as far as locks go: the frame parser feeding the lock table. Every
//! LOCK frame that passes the parser's checks (magic, version, type, flags, length, CRC) becomes a
//! lock request for regions `[offset, offset + arg)`; bad frames are dropped and counted by the
//! parser and never reach the table. The parser never back-pressures (a NIC's receive path must
//! not stall), so a LOCK that arrives while the previous one still waits for the table's input is
//! dropped and counted (`lock_drops`); the source's retransmission timer recovers it. A region
//! number beyond 32 bits becomes an empty request, which the table rejects as out of range.
//!
//! Not here yet: the bounded buffer that holds early DATA until its lock is held, the port that
//! writes it to the volume, and the emitter of LOCK_GRANTED / LOCK_REJECTED / WRITE_DONE frames.

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
    /// The table's decisions.
    pub dec_valid: Signal<Out, Bit>,
    pub dec_granted: Signal<Out, Bit>,
    pub dec_reason: Signal<Out, Bits<8>>,
    pub dec_lock_id: Signal<Out, Bits<64>>,
    pub dec_seq: Signal<Out, Bits<64>>,
    pub dec_slot: Signal<Out, Bits<S>>,
    pub retried: Signal<Out, Bit>,
    pub held: Signal<Out, Bits<N>>,
    pub overflow: Signal<Out, Bit>,
    /// Frames the parser dropped, and LOCK frames dropped for want of room at the table's input.
    pub frames_bad: Signal<Out, Bits<32>>,
    pub lock_drops: Signal<Out, Bits<32>>,
    parser: FrameParser,
    locks: LockTable<N, S>,
    p_valid: DFF<Bit>,
    p_lock_id: DFF<Bits<64>>,
    p_seq: DFF<Bits<64>>,
    p_first: DFF<Bits<32>>,
    p_count: DFF<Bits<32>>,
    drops: DFF<Bits<32>>,
    is_lock: Signal<Local, Bit>,
    ty_lock: Constant<Bits<8>>,
    no_flags: Constant<Bits<16>>,
}

impl<const N: usize, const S: usize> Default for LockRetry<N, S> {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
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
            dec_reason: Default::default(),
            dec_lock_id: Default::default(),
            dec_seq: Default::default(),
            dec_slot: Default::default(),
            retried: Default::default(),
            held: Default::default(),
            overflow: Default::default(),
            frames_bad: Default::default(),
            lock_drops: Default::default(),
            parser: Default::default(),
            locks: Default::default(),
            p_valid: Default::default(),
            p_lock_id: Default::default(),
            p_seq: Default::default(),
            p_first: Default::default(),
            p_count: Default::default(),
            drops: Default::default(),
            is_lock: Default::default(),
            ty_lock: Constant::new((FrameType::Lock as u64).to_bits()),
            no_flags: Constant::new((Flags::NONE.0 as u64).to_bits()),
        }
    }
}

impl<const N: usize, const S: usize> Logic for LockRetry<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, p_valid, p_lock_id, p_seq, p_first, p_count, drops);
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
        self.locks.clear_barriers.next = self.clear_barriers.val();

        // A checked LOCK frame (an explicit lock: no flags) waits here for the table's input.
        self.locks.req_valid.next = self.p_valid.q.val();
        self.locks.req_lock_id.next = self.p_lock_id.q.val();
        self.locks.req_seq.next = self.p_seq.q.val();
        self.locks.req_first.next = self.p_first.q.val();
        self.locks.req_count.next = self.p_count.q.val();
        self.p_valid.d.next = self.p_valid.q.val() & !self.locks.req_ready.val();
        self.is_lock.next = self.parser.frame_ok.val()
            & (self.parser.ty.val() == self.ty_lock.val())
            & (self.parser.flags.val() == self.no_flags.val());
        if self.is_lock.val() {
            if self.p_valid.q.val() & !self.locks.req_ready.val() {
                self.drops.d.next = self.drops.q.val() + 1;
            } else {
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
        self.retried.next = self.locks.retried.val();
        self.held.next = self.locks.held.val();
        self.overflow.next = self.locks.overflow.val();
        self.frames_bad.next = self.parser.bad_count.val();
        self.lock_drops.next = self.drops.q.val();
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

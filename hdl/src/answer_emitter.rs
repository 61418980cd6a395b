//! The target's answer path: turns answers (LOCK_GRANTED, LOCK_REJECTED, WRITE_DONE,
//! WRITE_FAILED: a type, the write's sequence number and lock id, and `arg`) into frames on a
//! 64-bit valid/ready/last transmit stream, one word per clock: eight header words and the CRC32C
//! trailer, exactly as the software target encodes them (no payload; offset, flags and the ack
//! watermarks zero; the session's generation from the register block).
//!
//! Answers wait in a block-RAM FIFO of 16, so the lock table's decisions (one per clock at most,
//! never back-pressured) are never lost while a frame of nine words goes out. When the FIFO is
//! full an answer is dropped and counted; the source's retransmission asks again, and the target
//! answers a repeated lock command with its current state.
//!
//! The CRC runs one word behind the stream, as in the send path, so the header multiplexer and the
//! CRC's XOR tree never share a clock.

use rust_hdl::prelude::*;
use specmirror_abi::{MAGIC, VERSION};

use crate::crc32c_word::Crc32cWord;

/// Answers queued at most.
pub const DEPTH: usize = 16;

/// An answer packed for the FIFO: type (bits 0..8), seq (64..128), lock id (128..192), arg
/// (192..256).
type Packed = Bits<256>;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum EmitState {
    Idle,
    Header,
    Trailer,
}

#[derive(LogicBlock)]
pub struct AnswerEmitter {
    pub clock: Signal<In, Clock>,
    /// One answer per clock at most; never back-pressured.
    pub ans_valid: Signal<In, Bit>,
    pub ans_ty: Signal<In, Bits<8>>,
    pub ans_seq: Signal<In, Bits<64>>,
    pub ans_lock_id: Signal<In, Bits<64>>,
    pub ans_arg: Signal<In, Bits<64>>,
    /// The session's generation, stamped on every answer.
    pub generation: Signal<In, Bits<32>>,
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    /// Answers dropped because the FIFO was full.
    pub dropped: Signal<Out, Bits<32>>,
    /// At most two places left in the FIFO, as the FIFO counts them. A sender that can wait, and
    /// looks at this through a register, never has its answer dropped. The FIFO counts its fill
    /// from a write address one clock old, so the flag seen through the register leaves out the
    /// answers of the last two clocks; with the sender's own, three may enter, and there is room
    /// for them.
    pub almost_full: Signal<Out, Bit>,
    fifo: SynchronousFIFO<Packed, 4, 5, 2>,
    state: DFF<EmitState>,
    index: DFF<Bits<3>>,
    ty: DFF<Bits<8>>,
    seq: DFF<Bits<64>>,
    lock_id: DFF<Bits<64>>,
    arg: DFF<Bits<64>>,
    crc: DFF<Bits<32>>,
    pend: DFF<Bits<64>>,
    pend_valid: DFF<Bit>,
    /// Pops the FIFO's head the clock after it was taken: the pop comes from a register, so the
    /// FIFO's `empty` and its `read` are never in one combinational loop.
    pop: DFF<Bit>,
    drops: DFF<Bits<32>>,
    crc_step: Crc32cWord,
    header: Signal<Local, Bits<64>>,
    trailer: Signal<Local, Bits<32>>,
    word0: Constant<Bits<64>>,
    crc_init: Constant<Bits<32>>,
}

impl Default for AnswerEmitter {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            ans_valid: Default::default(),
            ans_ty: Default::default(),
            ans_seq: Default::default(),
            ans_lock_id: Default::default(),
            ans_arg: Default::default(),
            generation: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            dropped: Default::default(),
            almost_full: Default::default(),
            fifo: Default::default(),
            state: Default::default(),
            index: Default::default(),
            ty: Default::default(),
            seq: Default::default(),
            lock_id: Default::default(),
            arg: Default::default(),
            crc: Default::default(),
            pend: Default::default(),
            pend_valid: Default::default(),
            pop: Default::default(),
            drops: Default::default(),
            crc_step: Default::default(),
            header: Default::default(),
            trailer: Default::default(),
            // Magic and version; the type goes in bits 40..48.
            word0: Constant::new((MAGIC as u64 | (VERSION as u64) << 32).to_bits()),
            crc_init: Constant::new(0xFFFF_FFFFu64.to_bits()),
        }
    }
}

impl Logic for AnswerEmitter {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, state, index, ty, seq, lock_id, arg, crc, pend, pend_valid, pop, drops
        );
        clock!(self, clock, fifo);
        // Queue every answer; a full FIFO drops it and counts.
        self.fifo.data_in.next = bit_cast::<256, 8>(self.ans_ty.val())
            | (bit_cast::<256, 64>(self.ans_seq.val()) << 64)
            | (bit_cast::<256, 64>(self.ans_lock_id.val()) << 128)
            | (bit_cast::<256, 64>(self.ans_arg.val()) << 192);
        // (The FIFO itself ignores a write while full.)
        self.fifo.write.next = self.ans_valid.val();
        if self.ans_valid.val() & self.fifo.full.val() {
            self.drops.d.next = self.drops.q.val() + 1;
        }
        self.dropped.next = self.drops.q.val();
        self.almost_full.next = self.fifo.almost_full.val();
        self.fifo.read.next = self.pop.q.val();
        self.pop.d.next = false;
        // Defaults: nothing offered.
        self.tx_valid.next = false;
        self.tx_last.next = false;
        self.tx_data.next = 0.into();
        // The CRC folds in the pending word every clock; the trailer takes the fold of the last
        // word directly.
        self.crc_step.crc_in.next = self.crc.q.val();
        self.crc_step.data.next = self.pend.q.val();
        if self.pend_valid.q.val() {
            self.crc.d.next = self.crc_step.crc_out.val();
            self.pend_valid.d.next = false;
            self.trailer.next = self.crc_step.crc_out.val() ^ self.crc_init.val();
        } else {
            self.trailer.next = self.crc.q.val() ^ self.crc_init.val();
        }
        self.header.next = 0.into();
        match self.index.q.val().index() {
            0 => {
                self.header.next = self.word0.val() | (bit_cast::<64, 8>(self.ty.q.val()) << 40);
            }
            1 => {
                self.header.next = bit_cast::<64, 32>(self.generation.val()) << 32;
            }
            2 => {
                self.header.next = self.seq.q.val();
            }
            3 => {
                self.header.next = self.lock_id.q.val();
            }
            5 => {
                self.header.next = self.arg.q.val();
            }
            _ => {}
        }
        match self.state.q.val() {
            EmitState::Idle => {
                if !self.fifo.empty.val() {
                    self.ty.d.next = self.fifo.data_out.val().get_bits::<8>(0);
                    self.seq.d.next = self.fifo.data_out.val().get_bits::<64>(64);
                    self.lock_id.d.next = self.fifo.data_out.val().get_bits::<64>(128);
                    self.arg.d.next = self.fifo.data_out.val().get_bits::<64>(192);
                    self.pop.d.next = true;
                    self.index.d.next = 0.into();
                    self.crc.d.next = self.crc_init.val();
                    self.pend_valid.d.next = false;
                    self.state.d.next = EmitState::Header;
                }
            }
            EmitState::Header => {
                self.tx_valid.next = true;
                self.tx_data.next = self.header.val();
                if self.tx_ready.val() {
                    self.pend.d.next = self.header.val();
                    self.pend_valid.d.next = true;
                    self.index.d.next = self.index.q.val() + 1;
                    if self.index.q.val() == 7 {
                        self.state.d.next = EmitState::Trailer;
                    }
                }
            }
            EmitState::Trailer => {
                self.tx_valid.next = true;
                self.tx_last.next = true;
                self.tx_data.next = bit_cast::<64, 32>(self.trailer.val());
                if self.tx_ready.val() {
                    self.pend_valid.d.next = false;
                    self.state.d.next = EmitState::Idle;
                }
            }
            _ => {
                self.state.d.next = EmitState::Idle;
            }
        }
    }
}

/// An emitter with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::AnswerEmitter {
        let mut u = super::AnswerEmitter::default();
        u.clock.connect();
        u.ans_valid.connect();
        u.ans_ty.connect();
        u.ans_seq.connect();
        u.ans_lock_id.connect();
        u.ans_arg.connect();
        u.generation.connect();
        u.tx_ready.connect();
        u
    }
}

#[cfg(test)]
mod tests;

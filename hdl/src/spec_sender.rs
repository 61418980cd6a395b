//! The speculative send path: takes a rollback-log descriptor and its data words and emits the
//! LOCK frame and, in the very next clock, the DATA frame (header, payload, CRC32C trailer) on a
//! 64-bit valid/ready/last transmit stream, one word per clock.
//!
//! Modes (the ABI's `ring::Mode`): speculative sends LOCK then DATA back to back; implicit sends one
//! DATA frame flagged IMPLICIT_LOCK; conservative sends LOCK, then waits for `granted` before DATA,
//! and on `rejected` gives the descriptor up with its data unsent: its data words are read and
//! dropped, so the next descriptor's data lines up (the send tracker reports the rejection; the
//! host re-issues the write, in conservative mode).
//! A raw descriptor (`Mode::Raw`) carries a whole frame the host made: its words go out as they
//! are, `last` on the last, and `raw_done` pulses with the descriptor's tag (its `seq`) as the
//! last word leaves, so the host hears its memory is free.
//! The CRC is computed on the fly as words leave, so the data is read once and never buffered.
//!
//! Mind Verilog's widths: an operator inside a wider expression works at the wider width, so the
//! CRC's final inversion is an XOR with a 32-bit constant, never `!crc` in the 64-bit trailer
//! (that would set the trailer's upper half; the Verilator tests catch it, rust-hdl's own
//! simulator does not).

use rust_hdl::prelude::*;
use specmirror_abi::frame::field;
use specmirror_abi::{Flags, FrameType, HEADER_LEN, MAGIC, TRAILER_LEN, VERSION};

use crate::crc32c_word::Crc32cWord;

// The header is packed as eight little-endian words; these are the positions the packing below
// assumes. If the ABI moves a field, this crate stops compiling.
const _: () = {
    assert!(HEADER_LEN == 64 && TRAILER_LEN == 8);
    assert!(field::MAGIC == 0 && field::VERSION == 4 && field::TYPE == 5 && field::FLAGS == 6);
    assert!(field::PAYLOAD_LEN == 8 && field::GENERATION == 12);
    assert!(field::SEQ == 16 && field::LOCK_ID == 24 && field::OFFSET == 32);
    assert!(field::ARG == 40 && field::ACK_LOCK == 48 && field::ACK_SEQ == 56);
};

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum SendState {
    Idle,
    LockHeader,
    LockTrailer,
    WaitGrant,
    DataHeader,
    DataPayload,
    DataTrailer,
    /// A rejected lock's data words, read and dropped, so the next descriptor's data lines up.
    Drain,
    /// A host frame's words, out as they are.
    Raw,
}

#[derive(LogicBlock)]
pub struct SpecSender {
    pub clock: Signal<In, Clock>,
    // Descriptor (valid/ready): fields as in `specmirror_abi::ring::Descriptor`.
    pub desc_valid: Signal<In, Bit>,
    pub desc_ready: Signal<Out, Bit>,
    pub desc_seq: Signal<In, Bits<64>>,
    pub desc_lock_id: Signal<In, Bits<64>>,
    pub desc_offset: Signal<In, Bits<64>>,
    pub desc_length: Signal<In, Bits<32>>,
    pub desc_mode: Signal<In, Bits<2>>,
    pub desc_flags: Signal<In, Bits<16>>,
    pub desc_generation: Signal<In, Bits<32>>,
    pub desc_first_region: Signal<In, Bits<64>>,
    pub desc_region_count: Signal<In, Bits<64>>,
    /// The acknowledgements stamped on the frames, read as each header goes out: the source
    /// holds them for a descriptor until its frames have left (the ring engine holds the
    /// descriptor's own until its data has been taken, which is after both headers).
    pub ack_lock: Signal<In, Bits<64>>,
    pub ack_seq: Signal<In, Bits<64>>,
    /// Data words of the descriptor, in order (from the DMA read port).
    pub data_in: Signal<In, Bits<64>>,
    pub data_valid: Signal<In, Bit>,
    pub data_ready: Signal<Out, Bit>,
    /// The receive path saw LOCK_GRANTED for the current lock (conservative mode waits for it).
    pub granted: Signal<In, Bit>,
    /// The receive path saw LOCK_REJECTED for the current lock: while waiting for the grant, the
    /// sender gives the descriptor up without its data (the host re-issues the write).
    pub rejected: Signal<In, Bit>,
    // Transmit stream.
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    /// High while a frame is being emitted or awaited.
    pub busy: Signal<Out, Bit>,
    /// The lock id of the descriptor being sent (the one conservative mode waits on).
    pub lock_id_out: Signal<Out, Bits<64>>,
    /// A raw descriptor's frame has left (one pulse, as its last word goes), and its tag.
    pub raw_done: Signal<Out, Bit>,
    pub raw_seq: Signal<Out, Bits<64>>,

    state: DFF<SendState>,
    index: DFF<Bits<3>>,
    words_left: DFF<Bits<32>>,
    /// `words_left == 1`, kept beside it: the last word's mask and `last` come from a flip-flop,
    /// not from a 32-bit compare in front of the transmit and CRC multiplexers.
    one_left: DFF<Bit>,
    crc: DFF<Bits<32>>,
    /// The last word sent, not yet folded into `crc`: the CRC runs one word behind the stream so
    /// the header multiplexer and the CRC's XOR tree are never in one clock's path.
    pend: DFF<Bits<64>>,
    pend_valid: DFF<Bit>,
    trailer: Signal<Local, Bits<32>>,
    seq: DFF<Bits<64>>,
    lock_id: DFF<Bits<64>>,
    offset: DFF<Bits<64>>,
    length: DFF<Bits<32>>,
    mode: DFF<Bits<2>>,
    flags: DFF<Bits<16>>,
    generation: DFF<Bits<32>>,
    first_region: DFF<Bits<64>>,
    region_count: DFF<Bits<64>>,
    crc_step: Crc32cWord,
    header: Signal<Local, Bits<64>>,
    word0_lock: Constant<Bits<64>>,
    word0_data: Constant<Bits<64>>,
    implicit_flag: Constant<Bits<16>>,
    crc_init: Constant<Bits<32>>,
    mode_implicit: Constant<Bits<2>>,
    mode_conservative: Constant<Bits<2>>,
    mode_raw: Constant<Bits<2>>,
    tail_mask: Signal<Local, Bits<64>>,
}

fn word0(ty: FrameType) -> u64 {
    MAGIC as u64 | (VERSION as u64) << 32 | (ty as u64) << 40
}

impl Default for SpecSender {
    fn default() -> Self {
        use specmirror_abi::ring::Mode;
        Self {
            clock: Default::default(),
            desc_valid: Default::default(),
            desc_ready: Default::default(),
            desc_seq: Default::default(),
            desc_lock_id: Default::default(),
            desc_offset: Default::default(),
            desc_length: Default::default(),
            desc_mode: Default::default(),
            desc_flags: Default::default(),
            desc_generation: Default::default(),
            desc_first_region: Default::default(),
            desc_region_count: Default::default(),
            ack_lock: Default::default(),
            ack_seq: Default::default(),
            data_in: Default::default(),
            data_valid: Default::default(),
            data_ready: Default::default(),
            granted: Default::default(),
            rejected: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            busy: Default::default(),
            lock_id_out: Default::default(),
            raw_done: Default::default(),
            raw_seq: Default::default(),
            state: Default::default(),
            index: Default::default(),
            words_left: Default::default(),
            one_left: Default::default(),
            crc: Default::default(),
            pend: Default::default(),
            pend_valid: Default::default(),
            trailer: Default::default(),
            seq: Default::default(),
            lock_id: Default::default(),
            offset: Default::default(),
            length: Default::default(),
            mode: Default::default(),
            flags: Default::default(),
            generation: Default::default(),
            first_region: Default::default(),
            region_count: Default::default(),
            crc_step: Default::default(),
            header: Default::default(),
            word0_lock: Constant::new(word0(FrameType::Lock).to_bits()),
            word0_data: Constant::new(word0(FrameType::Data).to_bits()),
            implicit_flag: Constant::new((Flags::IMPLICIT_LOCK.0 as u64).to_bits()),
            crc_init: Constant::new(0xFFFF_FFFFu64.to_bits()),
            mode_implicit: Constant::new((Mode::Implicit as u64).to_bits()),
            mode_conservative: Constant::new((Mode::Conservative as u64).to_bits()),
            mode_raw: Constant::new((Mode::Raw as u64).to_bits()),
            tail_mask: Default::default(),
        }
    }
}

impl Logic for SpecSender {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            state,
            index,
            words_left,
            one_left,
            crc,
            pend,
            pend_valid,
            seq,
            lock_id,
            offset,
            length,
            mode,
            flags,
            generation,
            first_region,
            region_count
        );
        // Defaults: nothing offered, nothing accepted.
        self.desc_ready.next = false;
        self.data_ready.next = false;
        self.tx_valid.next = false;
        self.tx_last.next = false;
        self.tx_data.next = 0.into();
        self.busy.next = true;
        self.lock_id_out.next = self.lock_id.q.val();
        self.raw_done.next = false;
        self.raw_seq.next = self.seq.q.val();
        // The CRC folds in the pending word every clock; the trailer takes the fold of the last
        // word directly, so no clock is lost waiting for the CRC.
        self.crc_step.crc_in.next = self.crc.q.val();
        self.crc_step.data.next = self.pend.q.val();
        if self.pend_valid.q.val() {
            self.crc.d.next = self.crc_step.crc_out.val();
            self.pend_valid.d.next = false;
            self.trailer.next = self.crc_step.crc_out.val() ^ self.crc_init.val();
        } else {
            self.trailer.next = self.crc.q.val() ^ self.crc_init.val();
        }
        // The header word at `index` of the frame being sent (LOCK or DATA).
        self.header.next = 0.into();
        match self.index.q.val().index() {
            0 => {
                if self.state.q.val() == SendState::LockHeader {
                    self.header.next = self.word0_lock.val();
                } else {
                    self.header.next =
                        self.word0_data.val() | (bit_cast::<64, 16>(self.flags.q.val()) << 48);
                }
            }
            1 => {
                if self.state.q.val() == SendState::LockHeader {
                    self.header.next = bit_cast::<64, 32>(self.generation.q.val()) << 32;
                } else {
                    self.header.next = bit_cast::<64, 32>(self.length.q.val())
                        | (bit_cast::<64, 32>(self.generation.q.val()) << 32);
                }
            }
            2 => {
                self.header.next = self.seq.q.val();
            }
            3 => {
                self.header.next = self.lock_id.q.val();
            }
            4 => {
                if self.state.q.val() == SendState::LockHeader {
                    self.header.next = self.first_region.q.val();
                } else {
                    self.header.next = self.offset.q.val();
                }
            }
            5 => {
                if self.state.q.val() == SendState::LockHeader {
                    self.header.next = self.region_count.q.val();
                }
            }
            6 => {
                self.header.next = self.ack_lock.val();
            }
            _ => {
                self.header.next = self.ack_seq.val();
            }
        }
        // The last payload word keeps only the bytes the write has: padding is zero on the wire.
        self.tail_mask.next = 0xFFFF_FFFF_FFFF_FFFF_u64.into();
        if self.one_left.q.val() {
            match self.length.q.val().get_bits::<3>(0).index() {
                1 => self.tail_mask.next = 0xFF_u64.into(),
                2 => self.tail_mask.next = 0xFFFF_u64.into(),
                3 => self.tail_mask.next = 0xFF_FFFF_u64.into(),
                4 => self.tail_mask.next = 0xFFFF_FFFF_u64.into(),
                5 => self.tail_mask.next = 0xFF_FFFF_FFFF_u64.into(),
                6 => self.tail_mask.next = 0xFFFF_FFFF_FFFF_u64.into(),
                7 => self.tail_mask.next = 0xFF_FFFF_FFFF_FFFF_u64.into(),
                _ => {}
            }
        }
        match self.state.q.val() {
            SendState::Idle => {
                self.busy.next = false;
                self.desc_ready.next = true;
                if self.desc_valid.val() {
                    self.seq.d.next = self.desc_seq.val();
                    self.lock_id.d.next = self.desc_lock_id.val();
                    self.offset.d.next = self.desc_offset.val();
                    self.length.d.next = self.desc_length.val();
                    self.mode.d.next = self.desc_mode.val();
                    self.generation.d.next = self.desc_generation.val();
                    self.first_region.d.next = self.desc_first_region.val();
                    self.region_count.d.next = self.desc_region_count.val();
                    self.words_left.d.next = (self.desc_length.val() + 7) >> 3;
                    self.one_left.d.next =
                        (self.desc_length.val() != 0) & (self.desc_length.val() <= 8);
                    self.index.d.next = 0.into();
                    self.crc.d.next = self.crc_init.val();
                    self.pend_valid.d.next = false;
                    if self.desc_mode.val() == self.mode_raw.val() {
                        self.flags.d.next = self.desc_flags.val();
                        if self.desc_length.val() == 0 {
                            // Nothing to send: done at once.
                            self.raw_done.next = true;
                            self.raw_seq.next = self.desc_seq.val();
                        } else {
                            self.state.d.next = SendState::Raw;
                        }
                    } else if self.desc_mode.val() == self.mode_implicit.val() {
                        self.flags.d.next = self.desc_flags.val() | self.implicit_flag.val();
                        self.state.d.next = SendState::DataHeader;
                    } else {
                        self.flags.d.next = self.desc_flags.val();
                        self.state.d.next = SendState::LockHeader;
                    }
                }
            }
            SendState::LockHeader => {
                self.tx_valid.next = true;
                self.tx_data.next = self.header.val();
                if self.tx_ready.val() {
                    self.pend.d.next = self.header.val();
                    self.pend_valid.d.next = true;
                    self.index.d.next = self.index.q.val() + 1;
                    if self.index.q.val() == 7 {
                        self.state.d.next = SendState::LockTrailer;
                    }
                }
            }
            SendState::LockTrailer => {
                self.tx_valid.next = true;
                self.tx_last.next = true;
                self.tx_data.next = bit_cast::<64, 32>(self.trailer.val());
                if self.tx_ready.val() {
                    self.crc.d.next = self.crc_init.val();
                    self.pend_valid.d.next = false;
                    self.index.d.next = 0.into();
                    if self.mode.q.val() == self.mode_conservative.val() {
                        self.state.d.next = SendState::WaitGrant;
                    } else {
                        self.state.d.next = SendState::DataHeader;
                    }
                }
            }
            SendState::WaitGrant => {
                if self.rejected.val() {
                    if self.words_left.q.val() == 0 {
                        self.state.d.next = SendState::Idle;
                    } else {
                        self.state.d.next = SendState::Drain;
                    }
                } else if self.granted.val() {
                    self.state.d.next = SendState::DataHeader;
                }
            }
            SendState::DataHeader => {
                self.tx_valid.next = true;
                self.tx_data.next = self.header.val();
                if self.tx_ready.val() {
                    self.pend.d.next = self.header.val();
                    self.pend_valid.d.next = true;
                    self.index.d.next = self.index.q.val() + 1;
                    if self.index.q.val() == 7 {
                        if self.words_left.q.val() == 0 {
                            self.state.d.next = SendState::DataTrailer;
                        } else {
                            self.state.d.next = SendState::DataPayload;
                        }
                    }
                }
            }
            SendState::DataPayload => {
                self.tx_valid.next = self.data_valid.val();
                self.tx_data.next = self.data_in.val() & self.tail_mask.val();
                self.data_ready.next = self.tx_ready.val();
                if self.tx_ready.val() & self.data_valid.val() {
                    self.pend.d.next = self.data_in.val() & self.tail_mask.val();
                    self.pend_valid.d.next = true;
                    self.words_left.d.next = self.words_left.q.val() - 1;
                    self.one_left.d.next = self.words_left.q.val() == 2;
                    if self.one_left.q.val() {
                        self.state.d.next = SendState::DataTrailer;
                    }
                }
            }
            SendState::DataTrailer => {
                self.tx_valid.next = true;
                self.tx_last.next = true;
                self.tx_data.next = bit_cast::<64, 32>(self.trailer.val());
                if self.tx_ready.val() {
                    self.pend_valid.d.next = false;
                    self.state.d.next = SendState::Idle;
                }
            }
            SendState::Drain => {
                self.data_ready.next = true;
                if self.data_valid.val() {
                    self.words_left.d.next = self.words_left.q.val() - 1;
                    self.one_left.d.next = self.words_left.q.val() == 2;
                    if self.one_left.q.val() {
                        self.state.d.next = SendState::Idle;
                    }
                }
            }
            SendState::Raw => {
                self.tx_valid.next = self.data_valid.val();
                self.tx_last.next = self.one_left.q.val();
                self.tx_data.next = self.data_in.val();
                self.data_ready.next = self.tx_ready.val();
                if self.tx_ready.val() & self.data_valid.val() {
                    self.words_left.d.next = self.words_left.q.val() - 1;
                    self.one_left.d.next = self.words_left.q.val() == 2;
                    if self.one_left.q.val() {
                        self.raw_done.next = true;
                        self.state.d.next = SendState::Idle;
                    }
                }
            }
            _ => {
                self.state.d.next = SendState::Idle;
            }
        }
    }
}

/// A sender with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::SpecSender {
        let mut u = super::SpecSender::default();
        u.clock.connect();
        u.desc_valid.connect();
        u.desc_seq.connect();
        u.desc_lock_id.connect();
        u.desc_offset.connect();
        u.desc_length.connect();
        u.desc_mode.connect();
        u.desc_flags.connect();
        u.desc_generation.connect();
        u.desc_first_region.connect();
        u.desc_region_count.connect();
        u.ack_lock.connect();
        u.ack_seq.connect();
        u.data_in.connect();
        u.data_valid.connect();
        u.granted.connect();
        u.rejected.connect();
        u.tx_ready.connect();
        u
    }
}

#[cfg(test)]
mod tests;

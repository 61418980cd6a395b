//! The receive side of the wire format: parses frames from a 64-bit valid/last stream, one word per
//! clock, never back-pressuring (a NIC's receive path must not stall). It checks magic, version,
//! type, flags and length from the header words, checks the CRC32C trailer, streams the payload
//! out as it arrives, and gives a verdict at the trailer. A bad frame is dropped and counted; the
//! parser finds the next frame at the word after `last`. Consumers hold the payload until the
//! verdict (the CRC is only known at the end). Every frame's verdict comes exactly one clock after
//! its last word, whatever was wrong with it: frames end at most one per clock, so verdicts never
//! collide, and the CRC comparison is between registers (the CRC's XOR tree and the 32-bit compare
//! never share a clock). The next frame may start in the verdict's clock.

use rust_hdl::prelude::*;
use specmirror_abi::frame::field;
use specmirror_abi::{Flags, FrameType, MAGIC, MAX_PAYLOAD, VERSION};

use crate::crc32c_word::Crc32cWord;

/// log2 of the payload bound: `len > MAX_PAYLOAD` is then two equality tests, no carry chain.
const MAX_PAYLOAD_LOG2: usize = MAX_PAYLOAD.trailing_zeros() as usize;

const _: () = {
    assert!(MAX_PAYLOAD.is_power_of_two() && MAX_PAYLOAD_LOG2 == 22);
    // Frame types are exactly 1..=12, so "known type" is a 4-bit pattern test (below).
    let mut i = 0;
    while i < FrameType::ALL.len() {
        assert!(FrameType::ALL[i] as usize == i + 1);
        i += 1;
    }
    assert!(FrameType::ALL.len() == 12);
    assert!(field::MAGIC == 0 && field::VERSION == 4 && field::TYPE == 5 && field::FLAGS == 6);
    assert!(field::PAYLOAD_LEN == 8 && field::GENERATION == 12 && field::SEQ == 16);
    assert!(field::ACK_SEQ == 56);
};

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum ParseState {
    Header,
    Payload,
    Trailer,
    Discard,
}

#[derive(LogicBlock)]
pub struct FrameParser {
    pub clock: Signal<In, Clock>,
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    /// Header fields of the frame being received; stable from `hdr_valid` to the verdict.
    pub ty: Signal<Out, Bits<8>>,
    pub flags: Signal<Out, Bits<16>>,
    pub payload_len: Signal<Out, Bits<32>>,
    pub generation: Signal<Out, Bits<32>>,
    pub seq: Signal<Out, Bits<64>>,
    pub lock_id: Signal<Out, Bits<64>>,
    pub offset: Signal<Out, Bits<64>>,
    pub arg: Signal<Out, Bits<64>>,
    pub ack_lock: Signal<Out, Bits<64>>,
    pub ack_seq: Signal<Out, Bits<64>>,
    /// One clock: the header is complete and well formed.
    pub hdr_valid: Signal<Out, Bit>,
    /// A payload word (zero padding included), as it arrives.
    pub pay_data: Signal<Out, Bits<64>>,
    pub pay_valid: Signal<Out, Bit>,
    /// One clock at the trailer: the frame checked out, or it is dropped.
    pub frame_ok: Signal<Out, Bit>,
    pub frame_bad: Signal<Out, Bit>,
    /// Frames dropped so far.
    pub bad_count: Signal<Out, Bits<32>>,

    state: DFF<ParseState>,
    index: DFF<Bits<3>>,
    words_left: DFF<Bits<32>>,
    crc: DFF<Bits<32>>,
    pend: DFF<Bits<64>>,
    pend_valid: DFF<Bit>,
    /// The trailer's CRC, waiting for its comparison the clock after the trailer.
    check: DFF<Bit>,
    trailer_crc: DFF<Bits<32>>,
    /// The frame that just ended was broken (header, length, truncation, trailer).
    fail: DFF<Bit>,
    bad: DFF<Bits<32>>,
    ty_r: DFF<Bits<8>>,
    flags_r: DFF<Bits<16>>,
    len_r: DFF<Bits<32>>,
    generation_r: DFF<Bits<32>>,
    seq_r: DFF<Bits<64>>,
    lock_id_r: DFF<Bits<64>>,
    offset_r: DFF<Bits<64>>,
    arg_r: DFF<Bits<64>>,
    ack_lock_r: DFF<Bits<64>>,
    ack_seq_r: DFF<Bits<64>>,
    crc_step: Crc32cWord,
    word0_bad: Signal<Local, Bit>,
    len_bad: Signal<Local, Bit>,
    magic_version: Constant<Bits<40>>,
    unknown_flags: Constant<Bits<16>>,
    crc_init: Constant<Bits<32>>,
}

impl Default for FrameParser {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
            ty: Default::default(),
            flags: Default::default(),
            payload_len: Default::default(),
            generation: Default::default(),
            seq: Default::default(),
            lock_id: Default::default(),
            offset: Default::default(),
            arg: Default::default(),
            ack_lock: Default::default(),
            ack_seq: Default::default(),
            hdr_valid: Default::default(),
            pay_data: Default::default(),
            pay_valid: Default::default(),
            frame_ok: Default::default(),
            frame_bad: Default::default(),
            bad_count: Default::default(),
            state: Default::default(),
            index: Default::default(),
            words_left: Default::default(),
            crc: Default::default(),
            pend: Default::default(),
            pend_valid: Default::default(),
            check: Default::default(),
            trailer_crc: Default::default(),
            fail: Default::default(),
            bad: Default::default(),
            ty_r: Default::default(),
            flags_r: Default::default(),
            len_r: Default::default(),
            generation_r: Default::default(),
            seq_r: Default::default(),
            lock_id_r: Default::default(),
            offset_r: Default::default(),
            arg_r: Default::default(),
            ack_lock_r: Default::default(),
            ack_seq_r: Default::default(),
            crc_step: Default::default(),
            word0_bad: Default::default(),
            len_bad: Default::default(),
            magic_version: Constant::new((MAGIC as u64 | (VERSION as u64) << 32).to_bits()),
            unknown_flags: Constant::new(((!Flags::KNOWN) as u64).to_bits()),
            crc_init: Constant::new(0xFFFF_FFFFu64.to_bits()),
        }
    }
}

impl Logic for FrameParser {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            state,
            index,
            words_left,
            crc,
            pend,
            pend_valid,
            check,
            trailer_crc,
            fail,
            bad,
            ty_r,
            flags_r,
            len_r,
            generation_r,
            seq_r,
            lock_id_r,
            offset_r,
            arg_r,
            ack_lock_r,
            ack_seq_r
        );
        self.ty.next = self.ty_r.q.val();
        self.flags.next = self.flags_r.q.val();
        self.payload_len.next = self.len_r.q.val();
        self.generation.next = self.generation_r.q.val();
        self.seq.next = self.seq_r.q.val();
        self.lock_id.next = self.lock_id_r.q.val();
        self.offset.next = self.offset_r.q.val();
        self.arg.next = self.arg_r.q.val();
        self.ack_lock.next = self.ack_lock_r.q.val();
        self.ack_seq.next = self.ack_seq_r.q.val();
        self.bad_count.next = self.bad.q.val();
        self.hdr_valid.next = false;
        self.pay_valid.next = false;
        self.pay_data.next = self.rx_data.val();
        self.frame_ok.next = false;
        self.frame_bad.next = false;
        // The CRC runs one word behind, as in the send path.
        self.crc_step.crc_in.next = self.crc.q.val();
        self.crc_step.data.next = self.pend.q.val();
        if self.pend_valid.q.val() {
            self.crc.d.next = self.crc_step.crc_out.val();
            self.pend_valid.d.next = false;
        }
        // The CRC verdict of the frame whose trailer came last clock. `crc` holds every word of it
        // by now (the last one was folded in at the trailer).
        self.check.d.next = false;
        self.fail.d.next = false;
        if self.fail.q.val() {
            self.frame_bad.next = true;
            self.bad.d.next = self.bad.q.val() + 1;
        } else if self.check.q.val() {
            if self.trailer_crc.q.val() == (self.crc.q.val() ^ self.crc_init.val()) {
                self.frame_ok.next = true;
            } else {
                self.frame_bad.next = true;
                self.bad.d.next = self.bad.q.val() + 1;
            }
        }
        // What makes a first or second header word unacceptable.
        // Known types are 1..=12: high nibble zero, low nibble neither 0 nor 13..15.
        self.word0_bad.next = (self.rx_data.val().get_bits::<40>(0) != self.magic_version.val())
            | (self.rx_data.val().get_bits::<4>(44) != 0)
            | (self.rx_data.val().get_bits::<4>(40) == 0)
            | (self.rx_data.val().get_bit(43)
                & self.rx_data.val().get_bit(42)
                & (self.rx_data.val().get_bit(41) | self.rx_data.val().get_bit(40)))
            | ((self.rx_data.val().get_bits::<16>(48) & self.unknown_flags.val()) != 0);
        // len > 2^22  <=>  some bit above 22 is set, or bit 22 is set with any bit below it.
        self.len_bad.next = (self.rx_data.val().get_bits::<9>(23) != 0)
            | (self.rx_data.val().get_bit(22) & (self.rx_data.val().get_bits::<22>(0) != 0));
        if self.rx_valid.val() {
            match self.state.q.val() {
                ParseState::Header => {
                    self.pend.d.next = self.rx_data.val();
                    self.pend_valid.d.next = true;
                    self.index.d.next = self.index.q.val() + 1;
                    match self.index.q.val().index() {
                        0 => {
                            self.crc.d.next = self.crc_init.val();
                            self.pend_valid.d.next = true;
                            self.ty_r.d.next = self.rx_data.val().get_bits::<8>(40);
                            self.flags_r.d.next = self.rx_data.val().get_bits::<16>(48);
                            if self.word0_bad.val() {
                                self.state.d.next = ParseState::Discard;
                            }
                        }
                        1 => {
                            self.len_r.d.next = self.rx_data.val().get_bits::<32>(0);
                            self.generation_r.d.next = self.rx_data.val().get_bits::<32>(32);
                            if self.len_bad.val() {
                                self.state.d.next = ParseState::Discard;
                            }
                        }
                        2 => self.seq_r.d.next = self.rx_data.val(),
                        3 => self.lock_id_r.d.next = self.rx_data.val(),
                        4 => self.offset_r.d.next = self.rx_data.val(),
                        5 => self.arg_r.d.next = self.rx_data.val(),
                        6 => self.ack_lock_r.d.next = self.rx_data.val(),
                        _ => {
                            self.ack_seq_r.d.next = self.rx_data.val();
                            self.hdr_valid.next = true;
                            self.words_left.d.next = (self.len_r.q.val() + 7) >> 3;
                            if self.len_r.q.val() == 0 {
                                self.state.d.next = ParseState::Trailer;
                            } else {
                                self.state.d.next = ParseState::Payload;
                            }
                        }
                    }
                    if self.rx_last.val() {
                        // A frame cannot end inside its header.
                        self.fail.d.next = true;
                        self.index.d.next = 0.into();
                        self.state.d.next = ParseState::Header;
                    }
                }
                ParseState::Payload => {
                    self.pend.d.next = self.rx_data.val();
                    self.pend_valid.d.next = true;
                    self.pay_valid.next = true;
                    self.words_left.d.next = self.words_left.q.val() - 1;
                    if self.rx_last.val() {
                        self.fail.d.next = true;
                        self.index.d.next = 0.into();
                        self.state.d.next = ParseState::Header;
                    } else if self.words_left.q.val() == 1 {
                        self.state.d.next = ParseState::Trailer;
                    }
                }
                ParseState::Trailer => {
                    self.index.d.next = 0.into();
                    if self.rx_last.val() & (self.rx_data.val().get_bits::<32>(32) == 0) {
                        self.check.d.next = true;
                        self.trailer_crc.d.next = self.rx_data.val().get_bits::<32>(0);
                        self.state.d.next = ParseState::Header;
                    } else if self.rx_last.val() {
                        self.fail.d.next = true;
                        self.state.d.next = ParseState::Header;
                    } else {
                        self.state.d.next = ParseState::Discard;
                    }
                }
                _ => {
                    // Discard until the end of the broken frame, then judge it.
                    self.index.d.next = 0.into();
                    if self.rx_last.val() {
                        self.fail.d.next = true;
                        self.state.d.next = ParseState::Header;
                    }
                }
            }
        }
    }
}

/// A parser with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::FrameParser {
        let mut u = super::FrameParser::default();
        u.clock.connect();
        u.rx_data.connect();
        u.rx_valid.connect();
        u.rx_last.connect();
        u
    }
}

#[cfg(test)]
mod tests;

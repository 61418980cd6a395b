//! The target device's side of the receive rings (layouts in `specmirror_abi::rx_ring`): each
//! write the target path releases on its volume-write port (its lock held, its data checked) goes
//! into host memory by DMA, the data into the buffer of the receive ring's tail slot and then the
//! slot's entry, its phase byte in the last word, and `irq` pulses; the host's done entries come
//! back through the DMA read port, one at a time, and go to the target path's completion port,
//! which releases the lock and answers the source.
//!
//! The engine never writes into a slot (or its buffer) the host has not released: with the
//! receive ring full, the volume-write port waits. While `enable` is low the engine idles and its
//! counters return to zero.
//!
//! The DMA write port takes one 64-bit word per beat at its bus address, in order (posted
//! writes: the host never sees an entry's phase before the data and the entry's first word); the
//! read port takes a request (bus address, count of words) and answers with that many words.

use rust_hdl::prelude::*;
use specmirror_abi::rx_ring::{DONE_ENTRY_LEN, RX_BUFFER_BYTES, RX_ENTRY_LEN};

// The shifts below turn slots into byte offsets; the entry words follow the ABI's layouts.
const _: () = assert!(RX_ENTRY_LEN == 16 && DONE_ENTRY_LEN == 8 && RX_BUFFER_BYTES == 4096);

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum RxState {
    Idle,
    /// The write's data words, into the slot's buffer.
    Data,
    /// The entry's first word (the volume offset).
    Entry0,
    /// Its second word: length, tag, flags and the phase byte.
    Entry1,
}

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum DoneState {
    Idle,
    /// Asking for the done entry at the head.
    Req,
    /// Its word arriving.
    Wait,
    /// Offered to the target path.
    Present,
}

#[derive(LogicBlock)]
pub struct RxRing {
    pub clock: Signal<In, Clock>,
    pub enable: Signal<In, Bit>,
    // Ring geometry and the host's counters, from the register block.
    pub rx_base: Signal<In, Bits<64>>,
    pub rx_log2: Signal<In, Bits<5>>,
    pub rx_head: Signal<In, Bits<32>>,
    pub buf_base: Signal<In, Bits<64>>,
    pub done_base: Signal<In, Bits<64>>,
    pub done_log2: Signal<In, Bits<5>>,
    pub done_tail: Signal<In, Bits<32>>,
    /// Receive entries written, and done entries taken (free-running).
    pub rx_tail: Signal<Out, Bits<32>>,
    pub done_head: Signal<Out, Bits<32>>,
    // The target path's volume-write port: a burst of data words, the write's fields held
    // steady while it lasts.
    pub in_valid: Signal<In, Bit>,
    pub in_ready: Signal<Out, Bit>,
    pub in_data: Signal<In, Bits<64>>,
    pub in_last: Signal<In, Bit>,
    pub in_offset: Signal<In, Bits<64>>,
    pub in_len: Signal<In, Bits<32>>,
    pub in_fua: Signal<In, Bit>,
    /// The entry is a frame the device received, not a write (`RX_FRAME`).
    pub in_frame: Signal<In, Bit>,
    pub in_tag: Signal<In, Bits<8>>,
    // The host's outcomes, to the target path's completion port.
    pub done_valid: Signal<Out, Bit>,
    pub done_ready: Signal<In, Bit>,
    pub done_tag: Signal<Out, Bits<8>>,
    pub done_error: Signal<Out, Bits<32>>,
    // DMA writes: one word per beat.
    pub wr_valid: Signal<Out, Bit>,
    pub wr_ready: Signal<In, Bit>,
    pub wr_addr: Signal<Out, Bits<64>>,
    pub wr_data: Signal<Out, Bits<64>>,
    // DMA reads: a request, then its words in order.
    pub rd_req_valid: Signal<Out, Bit>,
    pub rd_req_ready: Signal<In, Bit>,
    pub rd_req_addr: Signal<Out, Bits<64>>,
    pub rd_req_words: Signal<Out, Bits<32>>,
    pub rd_valid: Signal<In, Bit>,
    pub rd_data: Signal<In, Bits<64>>,
    pub rd_ready: Signal<Out, Bit>,
    /// One pulse per receive entry written.
    pub irq: Signal<Out, Bit>,
    state: DFF<RxState>,
    tail: DFF<Bits<32>>,
    /// The next data word's bus address.
    at: DFF<Bits<64>>,
    offset: DFF<Bits<64>>,
    len: DFF<Bits<32>>,
    fua: DFF<Bit>,
    frame: DFF<Bit>,
    tag: DFF<Bits<8>>,
    dstate: DFF<DoneState>,
    dhead: DFF<Bits<32>>,
    dtag: DFF<Bits<8>>,
    derr: DFF<Bits<32>>,
    irq_q: DFF<Bit>,
    one: Constant<Bits<32>>,
    rx_entries: Signal<Local, Bits<32>>,
    rx_slot: Signal<Local, Bits<32>>,
    rx_pass: Signal<Local, Bits<32>>,
    room: Signal<Local, Bit>,
    entry_addr: Signal<Local, Bits<64>>,
    word1: Signal<Local, Bits<64>>,
    d_slot: Signal<Local, Bits<32>>,
}

impl Default for RxRing {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            enable: Default::default(),
            rx_base: Default::default(),
            rx_log2: Default::default(),
            rx_head: Default::default(),
            buf_base: Default::default(),
            done_base: Default::default(),
            done_log2: Default::default(),
            done_tail: Default::default(),
            rx_tail: Default::default(),
            done_head: Default::default(),
            in_valid: Default::default(),
            in_ready: Default::default(),
            in_data: Default::default(),
            in_last: Default::default(),
            in_offset: Default::default(),
            in_len: Default::default(),
            in_fua: Default::default(),
            in_frame: Default::default(),
            in_tag: Default::default(),
            done_valid: Default::default(),
            done_ready: Default::default(),
            done_tag: Default::default(),
            done_error: Default::default(),
            wr_valid: Default::default(),
            wr_ready: Default::default(),
            wr_addr: Default::default(),
            wr_data: Default::default(),
            rd_req_valid: Default::default(),
            rd_req_ready: Default::default(),
            rd_req_addr: Default::default(),
            rd_req_words: Default::default(),
            rd_valid: Default::default(),
            rd_data: Default::default(),
            rd_ready: Default::default(),
            irq: Default::default(),
            state: Default::default(),
            tail: Default::default(),
            at: Default::default(),
            offset: Default::default(),
            len: Default::default(),
            fua: Default::default(),
            frame: Default::default(),
            tag: Default::default(),
            dstate: Default::default(),
            dhead: Default::default(),
            dtag: Default::default(),
            derr: Default::default(),
            irq_q: Default::default(),
            one: Constant::new(1.into()),
            rx_entries: Default::default(),
            rx_slot: Default::default(),
            rx_pass: Default::default(),
            room: Default::default(),
            entry_addr: Default::default(),
            word1: Default::default(),
            d_slot: Default::default(),
        }
    }
}

impl Logic for RxRing {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, state, tail, at, offset, len, fua, frame, tag, dstate, dhead, dtag, derr,
            irq_q
        );
        // The receive ring's tail slot, its pass (the phase), and whether the host released it.
        self.rx_entries.next = self.one.val() << self.rx_log2.val();
        self.rx_slot.next = self.tail.q.val() & (self.rx_entries.val() - self.one.val());
        self.rx_pass.next = self.tail.q.val() >> self.rx_log2.val();
        self.room.next = (self.tail.q.val() - self.rx_head.val()) != self.rx_entries.val();
        self.entry_addr.next = self.rx_base.val() + (bit_cast::<64, 32>(self.rx_slot.val()) << 4);
        // Length (bytes 8..12), tag (12), flags (13: FUA, FRAME), phase (15: set on even passes).
        self.word1.next =
            bit_cast::<64, 32>(self.len.q.val()) | (bit_cast::<64, 8>(self.tag.q.val()) << 32);
        if self.fua.q.val() {
            self.word1.next = self.word1.val().replace_bit(40, true);
        }
        if self.frame.q.val() {
            self.word1.next = self.word1.val().replace_bit(41, true);
        }
        if !self.rx_pass.val().get_bit(0) {
            self.word1.next = self.word1.val().replace_bit(56, true);
        }
        self.rx_tail.next = self.tail.q.val();
        self.done_head.next = self.dhead.q.val();
        self.in_ready.next = false;
        self.wr_valid.next = false;
        self.wr_addr.next = self.at.q.val();
        self.wr_data.next = self.in_data.val();
        self.irq_q.d.next = false;
        match self.state.q.val() {
            RxState::Idle => {
                if self.enable.val() & self.in_valid.val() & self.room.val() {
                    self.offset.d.next = self.in_offset.val();
                    self.len.d.next = self.in_len.val();
                    self.fua.d.next = self.in_fua.val();
                    self.frame.d.next = self.in_frame.val();
                    self.tag.d.next = self.in_tag.val();
                    self.at.d.next =
                        self.buf_base.val() + (bit_cast::<64, 32>(self.rx_slot.val()) << 12);
                    self.state.d.next = RxState::Data;
                }
            }
            RxState::Data => {
                self.wr_valid.next = self.in_valid.val();
                self.in_ready.next = self.wr_ready.val();
                if self.in_valid.val() & self.wr_ready.val() {
                    self.at.d.next = self.at.q.val() + 8;
                    if self.in_last.val() {
                        self.state.d.next = RxState::Entry0;
                    }
                }
            }
            RxState::Entry0 => {
                self.wr_valid.next = true;
                self.wr_addr.next = self.entry_addr.val();
                self.wr_data.next = self.offset.q.val();
                if self.wr_ready.val() {
                    self.state.d.next = RxState::Entry1;
                }
            }
            RxState::Entry1 => {
                self.wr_valid.next = true;
                self.wr_addr.next = self.entry_addr.val() + 8;
                self.wr_data.next = self.word1.val();
                if self.wr_ready.val() {
                    self.tail.d.next = self.tail.q.val() + 1;
                    self.irq_q.d.next = true;
                    self.state.d.next = RxState::Idle;
                }
            }
            _ => {
                self.state.d.next = RxState::Idle;
            }
        }
        self.irq.next = self.irq_q.q.val();
        // Done entries: one word each (tag in byte 0, errno in bytes 4..8), in ring order.
        self.d_slot.next =
            self.dhead.q.val() & ((self.one.val() << self.done_log2.val()) - self.one.val());
        self.rd_req_valid.next = false;
        self.rd_req_addr.next = self.done_base.val() + (bit_cast::<64, 32>(self.d_slot.val()) << 3);
        self.rd_req_words.next = 1.into();
        self.rd_ready.next = false;
        self.done_valid.next = false;
        self.done_tag.next = self.dtag.q.val();
        self.done_error.next = self.derr.q.val();
        match self.dstate.q.val() {
            DoneState::Idle => {
                if self.enable.val() & (self.dhead.q.val() != self.done_tail.val()) {
                    self.dstate.d.next = DoneState::Req;
                }
            }
            DoneState::Req => {
                self.rd_req_valid.next = true;
                if self.rd_req_ready.val() {
                    self.dstate.d.next = DoneState::Wait;
                }
            }
            DoneState::Wait => {
                self.rd_ready.next = true;
                if self.rd_valid.val() {
                    self.dtag.d.next = self.rd_data.val().get_bits::<8>(0);
                    self.derr.d.next = self.rd_data.val().get_bits::<32>(32);
                    self.dstate.d.next = DoneState::Present;
                }
            }
            DoneState::Present => {
                self.done_valid.next = true;
                if self.done_ready.val() {
                    self.dhead.d.next = self.dhead.q.val() + 1;
                    self.dstate.d.next = DoneState::Idle;
                }
            }
            _ => {
                self.dstate.d.next = DoneState::Idle;
            }
        }
        if !self.enable.val() {
            self.state.d.next = RxState::Idle;
            self.tail.d.next = 0.into();
            self.dstate.d.next = DoneState::Idle;
            self.dhead.d.next = 0.into();
        }
    }
}

/// An engine with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::RxRing {
        let mut u = super::RxRing::default();
        u.clock.connect();
        u.enable.connect();
        u.rx_base.connect();
        u.rx_log2.connect();
        u.rx_head.connect();
        u.buf_base.connect();
        u.done_base.connect();
        u.done_log2.connect();
        u.done_tail.connect();
        u.in_valid.connect();
        u.in_data.connect();
        u.in_last.connect();
        u.in_offset.connect();
        u.in_len.connect();
        u.in_fua.connect();
        u.in_tag.connect();
        u.done_ready.connect();
        u.wr_ready.connect();
        u.rd_req_ready.connect();
        u.rd_valid.connect();
        u.rd_data.connect();
        u
    }
}

pub mod host;

#[cfg(test)]
mod tests;

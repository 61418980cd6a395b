//! The target device's sender of the host's own frames (its handshake answers, flush and
//! heartbeat answers, answers to frames of another session): the host posts each frame as a raw
//! descriptor (`ring::Mode::Raw`: the frame's bus address and its length in bytes) on the
//! submission ring and rings SQ_TAIL_DOORBELL; the sender fetches the descriptor's address and
//! length words through the DMA read port, reads the frame behind them and puts it on its transmit
//! stream as it is, `last` on its last word. SQ_HEAD counts the descriptors done: it moves past a
//! frame once its last word has left, so the host may reuse the frame's memory then. No
//! completion entries: the target device has no completion ring.
//!
//! A descriptor that is not raw, or whose length is zero, not whole words or longer than
//! [`MAX_BYTES`], is skipped and counted (`refused`): bad host input never hangs the device or
//! sends a part of a frame. While `enable` is low the sender idles and SQ_HEAD returns to zero.

use rust_hdl::prelude::*;
use specmirror_abi::ring::{Mode, DESCRIPTOR_LEN, TARGET_RAW_MAX};

/// The longest frame the sender takes.
pub const MAX_BYTES: u64 = TARGET_RAW_MAX as u64;

// The literals below: the descriptor's size and where `dma_addr` (word 3) and `length` and
// `mode` (word 4: bits 0..32 and 32..40) lie, and the raw mode's number.
const _: () = {
    assert!(DESCRIPTOR_LEN == 64 && Mode::Raw as u8 == 3);
    assert!(std::mem::offset_of!(specmirror_abi::ring::Descriptor, dma_addr) == 24);
    assert!(std::mem::offset_of!(specmirror_abi::ring::Descriptor, length) == 32);
    assert!(std::mem::offset_of!(specmirror_abi::ring::Descriptor, mode) == 36);
};

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum HostTxState {
    Idle,
    /// Asking for the descriptor's address and length words.
    ReqDesc,
    /// They arrive.
    FetchDesc,
    /// Raw, and a length the sender takes?
    Check,
    /// Asking for the frame.
    ReqData,
    /// Its words going out.
    Data,
}

#[derive(LogicBlock)]
pub struct HostTx {
    pub clock: Signal<In, Clock>,
    pub enable: Signal<In, Bit>,
    pub sq_base: Signal<In, Bits<64>>,
    pub sq_log2: Signal<In, Bits<5>>,
    pub sq_tail: Signal<In, Bits<32>>,
    pub sq_head: Signal<Out, Bits<32>>,
    // DMA reads: a request, then its words in order.
    pub rd_req_valid: Signal<Out, Bit>,
    pub rd_req_ready: Signal<In, Bit>,
    pub rd_req_addr: Signal<Out, Bits<64>>,
    pub rd_req_words: Signal<Out, Bits<32>>,
    pub rd_valid: Signal<In, Bit>,
    pub rd_data: Signal<In, Bits<64>>,
    pub rd_ready: Signal<Out, Bit>,
    // The frames.
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    /// Descriptors skipped.
    pub refused: Signal<Out, Bits<32>>,
    state: DFF<HostTxState>,
    head: DFF<Bits<32>>,
    /// The descriptor word that comes next (0: the address).
    second: DFF<Bit>,
    addr: DFF<Bits<64>>,
    length: DFF<Bits<32>>,
    mode: DFF<Bits<8>>,
    /// Words of the frame still to go.
    left: DFF<Bits<32>>,
    refused_q: DFF<Bits<32>>,
    one: Constant<Bits<32>>,
    max_bytes: Constant<Bits<32>>,
    slot: Signal<Local, Bits<32>>,
}

impl Default for HostTx {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            enable: Default::default(),
            sq_base: Default::default(),
            sq_log2: Default::default(),
            sq_tail: Default::default(),
            sq_head: Default::default(),
            rd_req_valid: Default::default(),
            rd_req_ready: Default::default(),
            rd_req_addr: Default::default(),
            rd_req_words: Default::default(),
            rd_valid: Default::default(),
            rd_data: Default::default(),
            rd_ready: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            refused: Default::default(),
            state: Default::default(),
            head: Default::default(),
            second: Default::default(),
            addr: Default::default(),
            length: Default::default(),
            mode: Default::default(),
            left: Default::default(),
            refused_q: Default::default(),
            one: Constant::new(1.into()),
            max_bytes: Constant::new(MAX_BYTES.to_bits()),
            slot: Default::default(),
        }
    }
}

impl Logic for HostTx {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, state, head, second, addr, length, mode, left, refused_q);
        self.slot.next =
            self.head.q.val() & ((self.one.val() << self.sq_log2.val()) - self.one.val());
        self.sq_head.next = self.head.q.val();
        self.refused.next = self.refused_q.q.val();
        self.rd_req_valid.next = false;
        self.rd_req_addr.next =
            self.sq_base.val() + (bit_cast::<64, 32>(self.slot.val()) << 6) + 24;
        self.rd_req_words.next = 2.into();
        self.rd_ready.next = false;
        self.tx_data.next = self.rd_data.val();
        self.tx_valid.next = false;
        self.tx_last.next = self.left.q.val() == 1;
        match self.state.q.val() {
            HostTxState::Idle => {
                if self.head.q.val() != self.sq_tail.val() {
                    self.state.d.next = HostTxState::ReqDesc;
                }
            }
            HostTxState::ReqDesc => {
                self.rd_req_valid.next = true;
                if self.rd_req_ready.val() {
                    self.second.d.next = false;
                    self.state.d.next = HostTxState::FetchDesc;
                }
            }
            HostTxState::FetchDesc => {
                self.rd_ready.next = true;
                if self.rd_valid.val() {
                    self.second.d.next = true;
                    if self.second.q.val() {
                        self.length.d.next = self.rd_data.val().get_bits::<32>(0);
                        self.mode.d.next = self.rd_data.val().get_bits::<8>(32);
                        self.state.d.next = HostTxState::Check;
                    } else {
                        self.addr.d.next = self.rd_data.val();
                    }
                }
            }
            HostTxState::Check => {
                if (self.mode.q.val() == 3)
                    & (self.length.q.val() != 0)
                    & (self.length.q.val().get_bits::<3>(0) == 0)
                    & (self.length.q.val() <= self.max_bytes.val())
                {
                    self.left.d.next = self.length.q.val() >> 3;
                    self.state.d.next = HostTxState::ReqData;
                } else {
                    self.refused_q.d.next = self.refused_q.q.val() + 1;
                    self.head.d.next = self.head.q.val() + 1;
                    self.state.d.next = HostTxState::Idle;
                }
            }
            HostTxState::ReqData => {
                self.rd_req_valid.next = true;
                self.rd_req_addr.next = self.addr.q.val();
                self.rd_req_words.next = self.left.q.val();
                if self.rd_req_ready.val() {
                    self.state.d.next = HostTxState::Data;
                }
            }
            HostTxState::Data => {
                self.tx_valid.next = self.rd_valid.val();
                self.rd_ready.next = self.tx_ready.val();
                if self.rd_valid.val() & self.tx_ready.val() {
                    self.left.d.next = self.left.q.val() - 1;
                    if self.left.q.val() == 1 {
                        self.head.d.next = self.head.q.val() + 1;
                        self.state.d.next = HostTxState::Idle;
                    }
                }
            }
            _ => {
                self.state.d.next = HostTxState::Idle;
            }
        }
        if !self.enable.val() {
            self.state.d.next = HostTxState::Idle;
            self.head.d.next = 0.into();
        }
    }
}

/// A sender with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::HostTx {
        let mut u = super::HostTx::default();
        u.clock.connect();
        u.enable.connect();
        u.sq_base.connect();
        u.sq_log2.connect();
        u.sq_tail.connect();
        u.rd_req_ready.connect();
        u.rd_valid.connect();
        u.rd_data.connect();
        u.tx_ready.connect();
        u
    }
}

#[cfg(test)]
mod tests;

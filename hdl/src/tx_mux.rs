//! Two frame streams onto one transmit stream, a whole frame at a time: the device's own frames
//! and the host's (raw descriptors) share a link without a frame of one cutting into the other's.
//! Between frames the streams take turns when both have one waiting; a frame that starts goes
//! out to its last word, and a stream's frames keep their order. Valid/ready/last on all three
//! sides; the choice between frames passes straight through, so no clock is lost between them.
//!
//! Stream A's ready never depends on what A makes (the choice, `TxTurn`, reads B's valid and
//! registers only), so A may be a block that reads its ready in the same logic that makes its
//! valid and data, as the target path's answer emitter does, without a combinational loop
//! through the mux. B's valid must not depend on B's ready.

use rust_hdl::prelude::*;

pub use turn::TxTurn;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum TxOwner {
    /// Between frames.
    Free,
    /// Stream A's frame is going out.
    A,
    /// Stream B's frame is going out.
    B,
}

#[derive(LogicBlock, Default)]
pub struct TxMux {
    pub clock: Signal<In, Clock>,
    pub a_data: Signal<In, Bits<64>>,
    pub a_valid: Signal<In, Bit>,
    pub a_last: Signal<In, Bit>,
    pub a_ready: Signal<Out, Bit>,
    pub b_data: Signal<In, Bits<64>>,
    pub b_valid: Signal<In, Bit>,
    pub b_last: Signal<In, Bit>,
    pub b_ready: Signal<Out, Bit>,
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    owner: DFF<TxOwner>,
    /// A goes first the next time both wait (B's frame went last while A waited).
    a_turn: DFF<Bit>,
    turn: TxTurn,
}

impl Logic for TxMux {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, owner, a_turn);
        self.turn.owner.next = self.owner.q.val();
        self.turn.a_turn.next = self.a_turn.q.val();
        self.turn.b_valid.next = self.b_valid.val();
        self.turn.tx_ready.next = self.tx_ready.val();
        self.a_ready.next = self.turn.a_ready.val();
        self.b_ready.next = self.turn.b_ready.val();
        self.tx_data.next = self.a_data.val();
        self.tx_valid.next = self.a_valid.val();
        self.tx_last.next = self.a_last.val();
        if self.turn.pick_b.val() {
            self.tx_data.next = self.b_data.val();
            self.tx_valid.next = self.b_valid.val();
            self.tx_last.next = self.b_last.val();
        }
        // A frame holds the link to its last word. A waiting for it takes the next turn; A with
        // nothing waiting leaves the turn to B.
        if !self.a_valid.val() {
            self.a_turn.d.next = false;
        }
        if self.tx_valid.val() & self.tx_ready.val() {
            if self.tx_last.val() {
                self.owner.d.next = TxOwner::Free;
                self.a_turn.d.next = self.turn.pick_b.val() & self.a_valid.val();
            } else if self.turn.pick_b.val() {
                self.owner.d.next = TxOwner::B;
            } else {
                self.owner.d.next = TxOwner::A;
            }
        }
    }
}

/// A mux with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::TxMux {
        let mut u = super::TxMux::default();
        u.clock.connect();
        u.a_data.connect();
        u.a_valid.connect();
        u.a_last.connect();
        u.b_data.connect();
        u.b_valid.connect();
        u.b_last.connect();
        u.tx_ready.connect();
        u
    }
}

mod turn;

#[cfg(test)]
mod tests;

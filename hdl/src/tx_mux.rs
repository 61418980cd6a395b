//! Two frame streams onto one transmit stream, a whole frame at a time: the device's own frames
//! and the host's (raw descriptors) share a link without a frame of one cutting into the other's.
//! Between frames the streams take turns when both have one waiting; a frame that starts goes
//! out to its last word, and a stream's frames keep their order. Valid/ready/last on all three
//! sides; the choice between frames passes straight through, so no clock is lost between them.

use rust_hdl::prelude::*;

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
    /// B goes first the next time both wait (A's frame went last).
    b_turn: DFF<Bit>,
    pick_b: Signal<Local, Bit>,
}

impl Logic for TxMux {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, owner, b_turn);
        // Whose word goes out this clock.
        self.pick_b.next = false;
        match self.owner.q.val() {
            TxOwner::A => self.pick_b.next = false,
            TxOwner::B => self.pick_b.next = true,
            _ => {
                self.pick_b.next = self.b_valid.val() & (!self.a_valid.val() | self.b_turn.q.val());
            }
        }
        if self.pick_b.val() {
            self.tx_data.next = self.b_data.val();
            self.tx_valid.next = self.b_valid.val();
            self.tx_last.next = self.b_last.val();
            self.a_ready.next = false;
            self.b_ready.next = self.tx_ready.val();
        } else {
            self.tx_data.next = self.a_data.val();
            self.tx_valid.next = self.a_valid.val();
            self.tx_last.next = self.a_last.val();
            self.a_ready.next = self.tx_ready.val();
            self.b_ready.next = false;
        }
        // A frame holds the link to its last word; then the other stream has the next turn.
        if self.tx_valid.val() & self.tx_ready.val() {
            if self.tx_last.val() {
                self.owner.d.next = TxOwner::Free;
                self.b_turn.d.next = !self.pick_b.val();
            } else if self.pick_b.val() {
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

#[cfg(test)]
mod tests;

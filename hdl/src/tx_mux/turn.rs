//! The frame mux's choice between frames (`TxMux`), a block of its own.

use rust_hdl::prelude::*;

use super::TxOwner;

/// The choice, in a block of its own that reads none of stream A's signals (only B's valid, the
/// link's ready and the mux's registers): so A's ready depends on no signal A makes, even to a
/// simulator that orders whole blocks.
#[derive(LogicBlock, Default)]
pub struct TxTurn {
    pub owner: Signal<In, TxOwner>,
    pub a_turn: Signal<In, Bit>,
    pub b_valid: Signal<In, Bit>,
    pub tx_ready: Signal<In, Bit>,
    pub pick_b: Signal<Out, Bit>,
    pub a_ready: Signal<Out, Bit>,
    pub b_ready: Signal<Out, Bit>,
}

impl Logic for TxTurn {
    #[hdl_gen]
    fn update(&mut self) {
        // Between frames, B's frame when it has one and it is not A's turn.
        self.pick_b.next = (self.owner.val() == TxOwner::B)
            | ((self.owner.val() == TxOwner::Free) & self.b_valid.val() & !self.a_turn.val());
        self.a_ready.next = self.tx_ready.val() & !self.pick_b.val();
        self.b_ready.next = self.tx_ready.val() & self.pick_b.val();
    }
}

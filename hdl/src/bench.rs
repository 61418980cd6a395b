//! A cycle-stepping bench for rust-hdl blocks: settle combinational logic after inputs change,
//! and clock the block one rising edge at a time. Deterministic and single-threaded.

use rust_hdl::prelude::*;

/// Propagates changes until the circuit is stable; panics if it oscillates.
pub fn settle<B: Block>(uut: &mut B) {
    assert!(
        simulate(uut, 1000),
        "circuit failed to settle (combinational loop?)"
    );
}

/// One full clock cycle on `clock`: rising edge, then falling edge, settling after each.
pub fn cycle<B: Block>(uut: &mut B, clock: fn(&mut B) -> &mut Signal<In, Clock>) {
    clock(uut).next = Clock { clk: true };
    settle(uut);
    clock(uut).next = Clock { clk: false };
    settle(uut);
}

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

/// xorshift64, the one random stream of the benches and tests: the same seed gives the same
/// stream on every model. The seed must not be zero.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

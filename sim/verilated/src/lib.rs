//! The send path as Verilator compiled it, driven from Rust one clock at a time. This is the model
//! the long random runs use (rust-hdl's own simulator is for unit tests); the tests check the two
//! agree cycle by cycle and that both emit the software encoder's bytes.

use std::ffi::c_void;

extern "C" {
    fn vsender_new() -> *mut c_void;
    fn vsender_free(p: *mut c_void);
    fn vsender_eval(p: *mut c_void);
    fn vsender_set(p: *mut c_void, port: i32, v: u64);
    fn vsender_get(p: *mut c_void, port: i32) -> u64;
}

/// Ports, numbered as the shim numbers them (see build.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Port {
    Clock = 0,
    DescValid,
    DescReady,
    DescSeq,
    DescLockId,
    DescOffset,
    DescLength,
    DescMode,
    DescFlags,
    DescGeneration,
    DescFirstRegion,
    DescRegionCount,
    AckLock,
    AckSeq,
    DataIn,
    DataValid,
    DataReady,
    Granted,
    TxData,
    TxValid,
    TxLast,
    TxReady,
    Busy,
}

/// One verilated send path. Not `Send`: a Verilator model lives on the thread that made it.
pub struct VerilatedSender {
    model: *mut c_void,
    cycles: u64,
}

impl VerilatedSender {
    pub fn new() -> VerilatedSender {
        // SAFETY: `vsender_new` allocates a fresh model with `new` and never returns null (it
        // throws on allocation failure, which aborts); we own it until `Drop`.
        let model = unsafe { vsender_new() };
        assert!(!model.is_null(), "Verilator model allocation failed");
        let mut s = VerilatedSender { model, cycles: 0 };
        s.set(Port::Clock, 0);
        s.eval();
        s
    }

    pub fn set(&mut self, port: Port, value: u64) {
        // SAFETY: `self.model` is a live model we own; the shim ignores unknown port numbers and
        // the model truncates the value to the port's width.
        unsafe { vsender_set(self.model, port as i32, value) }
    }

    pub fn get(&self, port: Port) -> u64 {
        // SAFETY: `self.model` is a live model we own; reading a port has no side effect.
        unsafe { vsender_get(self.model, port as i32) }
    }

    /// Settles combinational logic after inputs changed.
    pub fn eval(&mut self) {
        // SAFETY: `self.model` is a live model we own and only this thread touches it.
        unsafe { vsender_eval(self.model) }
    }

    /// One clock: rising edge, then falling edge.
    pub fn tick(&mut self) {
        self.set(Port::Clock, 1);
        self.eval();
        self.set(Port::Clock, 0);
        self.eval();
        self.cycles += 1;
    }

    pub fn cycles(&self) -> u64 {
        self.cycles
    }
}

impl Default for VerilatedSender {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for VerilatedSender {
    fn drop(&mut self) {
        // SAFETY: the model came from `vsender_new` and is freed exactly once, here.
        unsafe { vsender_free(self.model) }
    }
}

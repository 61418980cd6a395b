//! The device's self-describing register block, built from the ABI's register map: every offset,
//! access kind and reset value comes from `specmirror_abi::regs::REGISTERS`, so the driver and the
//! hardware cannot disagree. One 32-bit host access per clock.
//!
//! Read-write registers hold what the host wrote (from their reset value). Write-only registers
//! (doorbells) hold the last value written and pulse `written` for one clock. Read-only registers
//! read their reset value ORed with what the hardware drives on `hw_in` (constants such as the
//! block id have the hardware drive zero). Counters count the hardware's `hw_inc` pulses. Reads of
//! any other offset return zero; writes to them, or to read-only registers, change nothing.

use rust_hdl::prelude::*;
use specmirror_abi::regs::{Access, BAR0_LEN, REGISTERS};

/// Registers in the block.
pub const NREGS: usize = REGISTERS.len();
const _: () = assert!(NREGS == 48 && BAR0_LEN == 8192);

const KIND_RO: u64 = 0;
const KIND_RW: u64 = 1;
const KIND_WO: u64 = 2;
const KIND_COUNTER: u64 = 3;

#[derive(LogicBlock)]
pub struct RegisterFile {
    pub clock: Signal<In, Clock>,
    /// Byte offset in BAR0 of this clock's access.
    pub addr: Signal<In, Bits<13>>,
    pub wdata: Signal<In, Bits<32>>,
    pub write: Signal<In, Bit>,
    /// The register at `addr` (combinational: valid in the same clock).
    pub rdata: Signal<Out, Bits<32>>,
    /// Every register's current value, for the hardware.
    pub value: [Signal<Out, Bits<32>>; NREGS],
    /// What the hardware reports in read-only registers (status, head, tail, sizes).
    pub hw_in: [Signal<In, Bits<32>>; NREGS],
    /// One pulse per event a counter counts.
    pub hw_inc: [Signal<In, Bit>; NREGS],
    /// The host wrote this register in the last clock.
    pub written: [Signal<Out, Bit>; NREGS],
    regs: [DFFWithInit<Bits<32>>; NREGS],
    pulse: [DFF<Bit>; NREGS],
    offset: [Constant<Bits<13>>; NREGS],
    kind: [Constant<Bits<2>>; NREGS],
    reset: [Constant<Bits<32>>; NREGS],
    // The kind codes as constants of the block (a Rust `const` would not reach the Verilog).
    kind_ro: Constant<Bits<2>>,
    kind_rw: Constant<Bits<2>>,
    kind_wo: Constant<Bits<2>>,
    kind_counter: Constant<Bits<2>>,
    hit: Signal<Local, Bits<32>>,
}

impl Default for RegisterFile {
    fn default() -> Self {
        let kind = |a: Access| match a {
            Access::ReadOnly => KIND_RO,
            Access::ReadWrite => KIND_RW,
            Access::WriteOnly => KIND_WO,
            Access::Counter => KIND_COUNTER,
        };
        Self {
            clock: Default::default(),
            addr: Default::default(),
            wdata: Default::default(),
            write: Default::default(),
            rdata: Default::default(),
            value: array_init::array_init(|_| Default::default()),
            hw_in: array_init::array_init(|_| Default::default()),
            hw_inc: array_init::array_init(|_| Default::default()),
            written: array_init::array_init(|_| Default::default()),
            regs: array_init::array_init(|i| {
                // Read-write registers start at their reset value; the others start at zero.
                let r = &REGISTERS[i];
                let init = if r.access == Access::ReadWrite {
                    r.reset
                } else {
                    0
                };
                DFFWithInit::new((init as u64).to_bits())
            }),
            pulse: array_init::array_init(|_| Default::default()),
            offset: array_init::array_init(|i| {
                Constant::new((REGISTERS[i].offset as u64).to_bits())
            }),
            kind: array_init::array_init(|i| Constant::new(kind(REGISTERS[i].access).to_bits())),
            reset: array_init::array_init(|i| Constant::new((REGISTERS[i].reset as u64).to_bits())),
            kind_ro: Constant::new(KIND_RO.to_bits()),
            kind_rw: Constant::new(KIND_RW.to_bits()),
            kind_wo: Constant::new(KIND_WO.to_bits()),
            kind_counter: Constant::new(KIND_COUNTER.to_bits()),
            hit: Default::default(),
        }
    }
}

impl Logic for RegisterFile {
    #[hdl_gen]
    fn update(&mut self) {
        self.hit.next = 0.into();
        for i in 0..NREGS {
            self.regs[i].clock.next = self.clock.val();
            self.pulse[i].clock.next = self.clock.val();
            self.regs[i].d.next = self.regs[i].q.val();
            self.pulse[i].d.next = false;
            self.written[i].next = self.pulse[i].q.val();
            // What the register reads as.
            if self.kind[i].val() == self.kind_ro.val() {
                self.value[i].next = self.reset[i].val() | self.hw_in[i].val();
            } else {
                self.value[i].next = self.regs[i].q.val();
            }
            if (self.kind[i].val() == self.kind_counter.val()) & self.hw_inc[i].val() {
                self.regs[i].d.next = self.regs[i].q.val() + 1;
            }
            if self.addr.val() == self.offset[i].val() {
                if self.kind[i].val() != self.kind_wo.val() {
                    self.hit.next = self.value[i].val();
                }
                if self.write.val()
                    & ((self.kind[i].val() == self.kind_rw.val())
                        | (self.kind[i].val() == self.kind_wo.val()))
                {
                    self.regs[i].d.next = self.wdata.val();
                    self.pulse[i].d.next = true;
                }
            }
        }
        self.rdata.next = self.hit.val();
    }
}

/// A register file with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::RegisterFile {
        let mut u = super::RegisterFile::default();
        u.clock.connect();
        u.addr.connect();
        u.wdata.connect();
        u.write.connect();
        for i in 0..super::NREGS {
            u.hw_in[i].connect();
            u.hw_inc[i].connect();
        }
        u
    }
}

#[cfg(test)]
mod tests;

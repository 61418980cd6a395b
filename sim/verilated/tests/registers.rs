//! The register block in Verilator agrees with rust-hdl's simulation, cycle by cycle, under random
//! host accesses (offsets of the ABI map and holes between them) and random hardware inputs.

use rust_hdl::prelude::*;
use specmirror_abi::regs::REGISTERS;
use specmirror_hdl::bench::{cycle, settle, Rng};
use specmirror_hdl::register_file::NREGS;
use specmirror_verilated::{reg_port, RegArray, RegPort, VerilatedRegisters};

#[test]
fn rust_hdl_and_verilator_agree_on_the_register_block() {
    let mut hdl = {
        let mut u = specmirror_hdl::register_file::tests_support::connected();
        u.connect_all();
        u
    };
    let mut ver = VerilatedRegisters::new();
    let mut r = Rng(0x0bad_cafe);
    let mut next = || r.next_u64();
    for t in 0..5000u64 {
        let addr = if next().is_multiple_of(4) {
            (next() % 2048) as u32 * 4
        } else {
            REGISTERS[(next() % NREGS as u64) as usize].offset
        };
        let wdata = next() as u32;
        let write = next().is_multiple_of(2);
        hdl.addr.next = (addr as u64).to_bits();
        hdl.wdata.next = (wdata as u64).to_bits();
        hdl.write.next = write;
        ver.set(RegPort::Addr, addr as u64);
        ver.set(RegPort::Wdata, wdata as u64);
        ver.set(RegPort::Write, write as u64);
        for i in 0..NREGS {
            let hw = if next().is_multiple_of(8) {
                next() as u32
            } else {
                0
            };
            let inc = next().is_multiple_of(3);
            hdl.hw_in[i].next = (hw as u64).to_bits();
            hdl.hw_inc[i].next = inc;
            ver.set_raw(reg_port(RegArray::HwIn, i), hw as u64);
            ver.set_raw(reg_port(RegArray::HwInc, i), inc as u64);
        }
        settle(&mut hdl);
        ver.eval();
        assert_eq!(
            ver.get(RegPort::Rdata),
            hdl.rdata.val().to_u64(),
            "cycle {t}: read of {addr:#x}"
        );
        for (i, r) in REGISTERS.iter().enumerate() {
            assert_eq!(
                ver.get_raw(reg_port(RegArray::Value, i)),
                hdl.value[i].val().to_u64(),
                "cycle {t}: value of {}",
                r.name
            );
            assert_eq!(
                ver.get_raw(reg_port(RegArray::Written, i)),
                hdl.written[i].val() as u64,
                "cycle {t}: written {}",
                r.name
            );
        }
        cycle(&mut hdl, |u| &mut u.clock);
        ver.tick();
    }
}

//! The register block against the ABI's register map.

use rust_hdl::prelude::*;
use specmirror_abi::regs::{self, Access, REGISTERS};

use super::{RegisterFile, NREGS};
use crate::bench::{cycle, settle};

fn new() -> RegisterFile {
    let mut u = super::tests_support::connected();
    u.connect_all();
    settle(&mut u);
    u
}

fn read(u: &mut RegisterFile, off: u32) -> u32 {
    u.write.next = false;
    u.addr.next = (off as u64).to_bits();
    settle(u);
    u.rdata.val().to_u64() as u32
}

fn write(u: &mut RegisterFile, off: u32, v: u32) {
    u.addr.next = (off as u64).to_bits();
    u.wdata.next = (v as u64).to_bits();
    u.write.next = true;
    settle(u);
    cycle(u, |u| &mut u.clock);
    u.write.next = false;
    settle(u);
}

fn index(off: u32) -> usize {
    REGISTERS.iter().position(|r| r.offset == off).unwrap()
}

#[test]
fn every_register_reads_its_reset_value_and_the_block_identifies_itself() {
    let mut u = new();
    for r in REGISTERS {
        let want = if r.access == Access::WriteOnly || r.access == Access::Counter {
            0
        } else {
            r.reset
        };
        assert_eq!(read(&mut u, r.offset), want, "{}", r.name);
    }
    assert_eq!(read(&mut u, regs::BLOCK_ID), regs::BLOCK_ID_MIRROR);
    assert_eq!(
        read(&mut u, regs::BLOCK_VERSION),
        regs::BLOCK_VERSION_MIRROR
    );
    assert_eq!(read(&mut u, 0x7c), 0, "a hole in the map reads zero");
}

#[test]
fn writes_land_only_where_the_map_allows() {
    let mut u = new();
    write(&mut u, regs::SQ_BASE_LO, 0xdead_b000);
    write(&mut u, regs::RETRY_LIMIT, 77);
    write(&mut u, regs::BLOCK_ID, 0x1111_1111);
    write(&mut u, regs::FRAMES_TX, 5);
    write(&mut u, 0x7c, 9);
    assert_eq!(read(&mut u, regs::SQ_BASE_LO), 0xdead_b000);
    assert_eq!(read(&mut u, regs::RETRY_LIMIT), 77);
    assert_eq!(
        read(&mut u, regs::BLOCK_ID),
        regs::BLOCK_ID_MIRROR,
        "read-only"
    );
    assert_eq!(
        read(&mut u, regs::FRAMES_TX),
        0,
        "counters are the hardware's"
    );
    assert_eq!(u.value[index(regs::SQ_BASE_LO)].val().to_u64(), 0xdead_b000);
    for i in 0..NREGS {
        assert!(!u.written[i].val(), "pulses last one clock");
    }
}

#[test]
fn doorbells_pulse_once_and_keep_their_value() {
    let mut u = new();
    let db = index(regs::SQ_TAIL_DOORBELL);
    u.addr.next = (regs::SQ_TAIL_DOORBELL as u64).to_bits();
    u.wdata.next = 42u64.to_bits();
    u.write.next = true;
    settle(&mut u);
    cycle(&mut u, |u| &mut u.clock);
    u.write.next = false;
    settle(&mut u);
    assert!(u.written[db].val(), "the hardware sees the doorbell");
    assert_eq!(u.value[db].val().to_u64(), 42);
    assert_eq!(
        read(&mut u, regs::SQ_TAIL_DOORBELL),
        0,
        "doorbells read as zero"
    );
    cycle(&mut u, |u| &mut u.clock);
    settle(&mut u);
    assert!(!u.written[db].val());
}

#[test]
fn read_only_registers_show_the_hardware_and_counters_count() {
    let mut u = new();
    let head = index(regs::SQ_HEAD);
    let tx = index(regs::FRAMES_TX);
    u.hw_in[head].next = 9u64.to_bits();
    for _ in 0..5 {
        u.hw_inc[tx].next = true;
        settle(&mut u);
        cycle(&mut u, |u| &mut u.clock);
    }
    u.hw_inc[tx].next = false;
    settle(&mut u);
    assert_eq!(read(&mut u, regs::SQ_HEAD), 9);
    assert_eq!(read(&mut u, regs::FRAMES_TX), 5);
}

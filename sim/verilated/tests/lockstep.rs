//! The rust-hdl simulation and the Verilator model of the send path agree on every output, every
//! cycle, under the same random stimulus.

mod common;

use common::{Driver, Model};
use rust_hdl::prelude::*;
use specmirror_hdl::bench::{cycle, settle};
use specmirror_hdl::SpecSender;
use specmirror_verilated::{Port, VerilatedSender};

struct HdlModel(SpecSender);

fn clock(u: &mut SpecSender) -> &mut Signal<In, Clock> {
    &mut u.clock
}

impl Model for HdlModel {
    fn set(&mut self, p: Port, v: u64) {
        let u = &mut self.0;
        match p {
            Port::DescValid => u.desc_valid.next = v != 0,
            Port::DescSeq => u.desc_seq.next = v.to_bits(),
            Port::DescLockId => u.desc_lock_id.next = v.to_bits(),
            Port::DescOffset => u.desc_offset.next = v.to_bits(),
            Port::DescLength => u.desc_length.next = v.to_bits(),
            Port::DescMode => u.desc_mode.next = v.to_bits(),
            Port::DescFlags => u.desc_flags.next = v.to_bits(),
            Port::DescGeneration => u.desc_generation.next = v.to_bits(),
            Port::DescFirstRegion => u.desc_first_region.next = v.to_bits(),
            Port::DescRegionCount => u.desc_region_count.next = v.to_bits(),
            Port::AckLock => u.ack_lock.next = v.to_bits(),
            Port::AckSeq => u.ack_seq.next = v.to_bits(),
            Port::DataIn => u.data_in.next = v.to_bits(),
            Port::DataValid => u.data_valid.next = v != 0,
            Port::Granted => u.granted.next = v != 0,
            Port::TxReady => u.tx_ready.next = v != 0,
            other => panic!("{other:?} is not an input"),
        }
    }
    fn get(&self, p: Port) -> u64 {
        let u = &self.0;
        match p {
            Port::DescValid => u.desc_valid.val() as u64,
            Port::DescReady => u.desc_ready.val() as u64,
            Port::DataValid => u.data_valid.val() as u64,
            Port::DataReady => u.data_ready.val() as u64,
            Port::TxData => u.tx_data.val().to_u64(),
            Port::TxValid => u.tx_valid.val() as u64,
            Port::TxLast => u.tx_last.val() as u64,
            Port::TxReady => u.tx_ready.val() as u64,
            Port::Busy => u.busy.val() as u64,
            other => panic!("{other:?} is not sampled"),
        }
    }
    fn settle(&mut self) {
        settle(&mut self.0)
    }
    fn tick(&mut self) {
        cycle(&mut self.0, clock)
    }
}

#[test]
fn rust_hdl_and_verilator_agree_cycle_by_cycle() {
    let mut hdl = HdlModel({
        let mut u = specmirror_hdl::spec_sender::tests_support::connected();
        u.connect_all();
        u
    });
    let mut ver = VerilatedSender::new();
    // The same seed drives both, so both see the same stimulus while they agree.
    let mut dh = Driver::new(77, 25);
    let mut dv = Driver::new(77, 25);
    let outputs = [
        Port::DescReady,
        Port::DataReady,
        Port::TxData,
        Port::TxValid,
        Port::TxLast,
        Port::Busy,
    ];
    for t in 0..20_000u64 {
        dh.drive(&mut hdl);
        dv.drive(&mut ver);
        hdl.settle();
        Model::settle(&mut ver);
        for p in outputs {
            assert_eq!(
                hdl.get(p),
                ver.get(p),
                "cycle {t}: {p:?} differs (rust-hdl vs Verilator)"
            );
        }
        dh.sample_and_tick(&mut hdl).unwrap();
        dv.sample_and_tick(&mut ver).unwrap();
    }
    assert!(dh.descriptors > 50);
}

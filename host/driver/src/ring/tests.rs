//! The ring logic against the fake device.

use specmirror_abi::regs;
use specmirror_abi::ring::{Descriptor, Mode, COMPLETION_PHASE};

use super::*;
use crate::fake::FakeDevice;

fn desc(seq: u64) -> Descriptor {
    Descriptor {
        seq: seq.into(),
        lock_id: (seq + 100).into(),
        offset: (seq * 4096).into(),
        length: 4096.into(),
        mode: Mode::Speculative as u8,
        ..Default::default()
    }
}

#[test]
fn descriptors_complete_in_order_across_wrap_around() {
    let dev = FakeDevice::new();
    let (mut sq, mut cq) = setup(&dev, 8).unwrap();
    for seq in 0..(3 * 8 + 3) {
        sq.push(dev.mmio(), &desc(seq)).unwrap();
        sq.doorbell(dev.mmio());
        assert_eq!(dev.step(), 1);
        let c = cq.poll().expect("a completion");
        assert_eq!(c.seq.get(), seq);
        assert_eq!(c.lock_id.get(), seq + 100);
        assert_eq!(status(&c), Some(CompletionStatus::WriteDone));
        cq.release(dev.mmio());
        assert!(cq.poll().is_none(), "no phantom completion after {seq}");
    }
    assert_eq!(sq.tail(), 27);
    assert_eq!(dev.mmio().read(regs::SQ_HEAD), 27);
}

#[test]
fn a_full_ring_refuses_until_the_device_catches_up() {
    let dev = FakeDevice::new();
    let (mut sq, mut cq) = setup(&dev, 8).unwrap();
    dev.hold.set(true);
    for seq in 0..8 {
        sq.push(dev.mmio(), &desc(seq)).unwrap();
    }
    sq.doorbell(dev.mmio());
    dev.step();
    assert_eq!(sq.push(dev.mmio(), &desc(8)), Err(RingError::Full(8)));
    dev.hold.set(false);
    assert_eq!(dev.step(), 8);
    sq.push(dev.mmio(), &desc(8)).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| cq.poll())
        .map(|c| c.seq.get())
        .collect();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
}

#[test]
fn the_phase_bit_flips_on_every_pass() {
    let dev = FakeDevice::new();
    let (mut sq, mut cq) = setup(&dev, 4).unwrap();
    let mut phases = Vec::new();
    for seq in 0..12 {
        sq.push(dev.mmio(), &desc(seq)).unwrap();
        sq.doorbell(dev.mmio());
        dev.step();
        let c = cq.poll().unwrap();
        phases.push(c.flags & COMPLETION_PHASE);
        cq.release(dev.mmio());
    }
    assert_eq!(phases, [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
}

#[test]
fn a_lost_doorbell_is_recovered_by_ringing_again() {
    let dev = FakeDevice::new();
    let (mut sq, mut cq) = setup(&dev, 8).unwrap();
    dev.lose_doorbells(1);
    sq.push(dev.mmio(), &desc(1)).unwrap();
    sq.doorbell(dev.mmio());
    assert_eq!(dev.step(), 0, "the doorbell never arrived");
    assert!(cq.poll().is_none());
    sq.kick(dev.mmio());
    assert_eq!(dev.step(), 1);
    assert_eq!(cq.poll().unwrap().seq.get(), 1);
}

#[test]
fn a_full_completion_ring_holds_the_device_back() {
    let dev = FakeDevice::new();
    let (mut sq, mut cq) = setup(&dev, 4).unwrap();
    for seq in 0..4 {
        sq.push(dev.mmio(), &desc(seq)).unwrap();
    }
    sq.doorbell(dev.mmio());
    assert_eq!(dev.step(), 4);
    for seq in 4..8 {
        sq.push(dev.mmio(), &desc(seq)).unwrap();
    }
    sq.doorbell(dev.mmio());
    assert_eq!(dev.step(), 0, "no room until the host releases completions");
    for _ in 0..4 {
        cq.poll().unwrap();
    }
    cq.release(dev.mmio());
    assert_eq!(dev.step(), 4);
    assert_eq!(cq.poll().unwrap().seq.get(), 4);
}

#[test]
fn only_a_specmirror_device_of_this_major_version_is_accepted() {
    let dev = FakeDevice::new();
    dev.check_identity().unwrap();
    dev.mmio().write(regs::BLOCK_VERSION, 2 << 16);
    assert!(matches!(
        dev.check_identity(),
        Err(DeviceError::Version { .. })
    ));
    dev.mmio().write(regs::BLOCK_ID, 0x1234_5678);
    assert!(matches!(
        dev.check_identity(),
        Err(DeviceError::NotSpecmirror { found: 0x1234_5678 })
    ));
}

#[test]
fn bad_ring_sizes_are_refused() {
    let dev = FakeDevice::new();
    assert!(setup(&dev, 6).is_err());
    assert!(setup(&dev, 1).is_err());
}

#[test]
fn a_submission_ring_alone_is_set_up_without_starting_the_device_and_follows_sq_head() {
    let dev = FakeDevice::new();
    let mut sq = setup_submission(&dev, 4).unwrap();
    let m = dev.mmio();
    assert_eq!(m.read(regs::CONTROL), 0, "the device is not started");
    assert_eq!(m.read(regs::SQ_LOG2_SIZE), 2);
    let base = (m.read(regs::SQ_BASE_HI) as u64) << 32 | m.read(regs::SQ_BASE_LO) as u64;
    assert_eq!(base, sq.mem.bus_addr());
    for seq in 0..4 {
        assert!(sq.has_room(m));
        assert_eq!(sq.next_slot(), seq as u32);
        sq.push(m, &desc(seq)).unwrap();
    }
    assert!(!sq.has_room(m), "four in flight");
    // The device has taken one: its slot (and what the host tied to it) is free again.
    m.write(regs::SQ_HEAD, 1);
    assert!(sq.has_room(m));
    assert_eq!(sq.next_slot(), 0);
}

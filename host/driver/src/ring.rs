//! The rollback-log rings. The host posts fixed-size descriptors on the submission ring and rings
//! the doorbell with its free-running tail; the device answers on the completion ring, each entry
//! carrying a phase bit that flips on every pass, so the host knows a new entry without reading
//! a device register (NVMe style). Release before every doorbell, Acquire after every phase bit.

use specmirror_abi::regs;
use specmirror_abi::ring::{
    Completion, CompletionStatus, Descriptor, COMPLETION_LEN, COMPLETION_PHASE, DESCRIPTOR_LEN,
};

use crate::device::{Device, DeviceError};
use crate::dma::DmaMemory;
use crate::mmio::Mmio;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("submission ring full ({0} descriptors in flight)")]
    Full(u32),
    #[error("ring size {0} is not a power of two between 2 and 65536")]
    Size(u32),
}

/// Host side of the submission ring.
pub struct SubmissionRing {
    mem: DmaMemory,
    log2: u32,
    tail: u32,
    head: u32,
}

/// Host side of the completion ring.
pub struct CompletionRing {
    mem: DmaMemory,
    log2: u32,
    head: u32,
}

/// The phase bit a valid entry at free-running index `index` carries in a ring of `1 << log2`
/// entries: 1 on the first pass, then alternating. Every ring the device writes uses it.
pub fn phase_of(index: u32, log2: u32) -> u8 {
    (((index >> log2) & 1) ^ 1) as u8
}

fn log2_of(entries: u32) -> Result<u32, RingError> {
    if !entries.is_power_of_two() || !(2..=65536).contains(&entries) {
        return Err(RingError::Size(entries));
    }
    Ok(entries.trailing_zeros())
}

/// Allocates both rings, tells the device where they are, and starts it (CONTROL bit 0).
pub fn setup<D: Device + ?Sized>(
    dev: &D,
    entries: u32,
) -> Result<(SubmissionRing, CompletionRing), DeviceError> {
    let sq = setup_submission(dev, entries)?;
    let cq = dev.alloc_dma(entries as usize * COMPLETION_LEN)?;
    let m = dev.mmio();
    m.write(regs::CQ_BASE_LO, cq.bus_addr() as u32);
    m.write(regs::CQ_BASE_HI, (cq.bus_addr() >> 32) as u32);
    m.write(regs::CQ_LOG2_SIZE, sq.log2);
    DmaMemory::release();
    m.write(regs::CONTROL, 1);
    let log2 = sq.log2;
    Ok((
        sq,
        CompletionRing {
            mem: cq,
            log2,
            head: 0,
        },
    ))
}

/// Allocates the submission ring alone and tells the device where it is: for a device that
/// reports its progress by SQ_HEAD only (the target device's raw frames).
pub fn setup_submission<D: Device + ?Sized>(
    dev: &D,
    entries: u32,
) -> Result<SubmissionRing, DeviceError> {
    let log2 = log2_of(entries).map_err(|e| DeviceError::Dma(std::io::Error::other(e)))?;
    let sq = dev.alloc_dma(entries as usize * DESCRIPTOR_LEN)?;
    let m = dev.mmio();
    m.write(regs::SQ_BASE_LO, sq.bus_addr() as u32);
    m.write(regs::SQ_BASE_HI, (sq.bus_addr() >> 32) as u32);
    m.write(regs::SQ_LOG2_SIZE, log2);
    Ok(SubmissionRing {
        mem: sq,
        log2,
        tail: 0,
        head: 0,
    })
}

impl SubmissionRing {
    pub fn entries(&self) -> u32 {
        1 << self.log2
    }

    /// Descriptors posted and not yet consumed by the device, as last seen.
    pub fn in_flight(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    /// Whether the next slot is free, reading SQ_HEAD when it was not as last seen. Once it is,
    /// whatever the host tied to that slot (a frame's memory) is the host's again.
    pub fn has_room(&mut self, mmio: &Mmio) -> bool {
        if self.in_flight() == self.entries() {
            self.head = mmio.read(regs::SQ_HEAD);
        }
        self.in_flight() < self.entries()
    }

    /// The slot the next descriptor goes into.
    pub fn next_slot(&self) -> u32 {
        self.tail & (self.entries() - 1)
    }

    /// Writes a descriptor into the next slot; the device sees it after the next doorbell.
    pub fn push(&mut self, mmio: &Mmio, d: &Descriptor) -> Result<(), RingError> {
        if !self.has_room(mmio) {
            return Err(RingError::Full(self.entries()));
        }
        let slot = self.next_slot() as usize;
        self.mem.write(slot * DESCRIPTOR_LEN, &d.to_bytes());
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Publishes everything pushed so far.
    pub fn doorbell(&self, mmio: &Mmio) {
        DmaMemory::release();
        mmio.write(regs::SQ_TAIL_DOORBELL, self.tail);
    }

    /// Rings again with the same tail: what to do when a doorbell may have been lost (no progress
    /// within a timeout). Harmless when it was not.
    pub fn kick(&self, mmio: &Mmio) {
        self.doorbell(mmio)
    }

    pub fn tail(&self) -> u32 {
        self.tail
    }
}

impl CompletionRing {
    pub fn entries(&self) -> u32 {
        1 << self.log2
    }

    /// The next completion, if the device has written it.
    pub fn poll(&mut self) -> Option<Completion> {
        let slot = (self.head & (self.entries() - 1)) as usize;
        let flags = self.mem.read_u8_acquire(slot * COMPLETION_LEN + 17);
        if flags & COMPLETION_PHASE != phase_of(self.head, self.log2) {
            return None;
        }
        let mut b = [0u8; COMPLETION_LEN];
        self.mem.read(slot * COMPLETION_LEN, &mut b);
        self.head = self.head.wrapping_add(1);
        Some(Completion::from_bytes(&b))
    }

    /// Tells the device how far the host has read, so it may reuse the slots.
    pub fn release(&self, mmio: &Mmio) {
        mmio.write(regs::CQ_HEAD_DOORBELL, self.head);
    }

    pub fn head(&self) -> u32 {
        self.head
    }
}

/// A completion's status, if it is one this driver knows.
pub fn status(c: &Completion) -> Option<CompletionStatus> {
    CompletionStatus::from_u8(c.status)
}

#[cfg(test)]
mod tests;

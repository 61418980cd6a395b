//! A fake device for the ring tests and the ring benchmark: it plays the hardware side over the
//! same memory a real device would use (a register page, rings by bus address), completing each
//! descriptor with WRITE_DONE. Knobs let tests lose doorbells and hold completions back.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::MmapMut;
use specmirror_abi::regs;
use specmirror_abi::ring::{CompletionStatus, COMPLETION_LEN, COMPLETION_PHASE, DESCRIPTOR_LEN};

use crate::device::{Device, DeviceError};
use crate::dma::DmaMemory;
use crate::mmio::Mmio;

pub struct FakeDevice {
    _bar: MmapMut,
    mmio: Mmio,
    /// (bus address, host pointer, length) of every DMA allocation.
    dma: RefCell<Vec<(u64, NonNull<u8>, usize)>>,
    sq_head: Cell<u32>,
    cq_tail: Cell<u32>,
    seen_tail: Cell<u32>,
    lose: Cell<u32>,
    /// Completions stay back while set (the host sees a full completion ring or a slow device).
    pub hold: Cell<bool>,
}

impl FakeDevice {
    pub fn new() -> FakeDevice {
        let mut bar = MmapMut::map_anon(regs::BAR0_LEN as usize).expect("map BAR page");
        let base = NonNull::new(bar.as_mut_ptr()).expect("mapped");
        // SAFETY: `bar` is a live, page-aligned mapping of BAR0_LEN bytes owned by this struct
        // for as long as `mmio` exists; it is only accessed through volatile operations.
        let mmio = unsafe { Mmio::new(base) };
        for r in regs::REGISTERS {
            mmio.write(r.offset, r.reset);
        }
        FakeDevice {
            _bar: bar,
            mmio,
            dma: RefCell::new(Vec::new()),
            sq_head: Cell::new(0),
            cq_tail: Cell::new(0),
            seen_tail: Cell::new(0),
            lose: Cell::new(0),
            hold: Cell::new(false),
        }
    }

    /// The next `n` doorbell writes never reach the device.
    pub fn lose_doorbells(&self, n: u32) {
        self.lose.set(n);
    }

    fn resolve(&self, bus: u64, len: usize) -> NonNull<u8> {
        for (b, p, l) in self.dma.borrow().iter() {
            if bus >= *b && bus + len as u64 <= b + *l as u64 {
                // SAFETY: `bus - b` is within the allocation per the check above.
                return unsafe { NonNull::new_unchecked(p.as_ptr().add((bus - b) as usize)) };
            }
        }
        panic!("device access to unmapped bus address {bus:#x}");
    }

    /// Does what the hardware would do until it has nothing left to do; returns the completions
    /// written.
    pub fn step(&self) -> u32 {
        let m = &self.mmio;
        if m.read(regs::CONTROL) & 1 == 0 {
            return 0;
        }
        let db = m.read(regs::SQ_TAIL_DOORBELL);
        if db != self.seen_tail.get() {
            if self.lose.get() > 0 {
                // The write never arrived: the register still holds what the device last saw.
                self.lose.set(self.lose.get() - 1);
                m.write(regs::SQ_TAIL_DOORBELL, self.seen_tail.get());
            } else {
                self.seen_tail.set(db);
            }
        }
        if self.hold.get() {
            return 0;
        }
        let log2 = m.read(regs::SQ_LOG2_SIZE);
        let entries = 1u32 << log2;
        let sq = (m.read(regs::SQ_BASE_HI) as u64) << 32 | m.read(regs::SQ_BASE_LO) as u64;
        let cq = (m.read(regs::CQ_BASE_HI) as u64) << 32 | m.read(regs::CQ_BASE_LO) as u64;
        let sq_p = self.resolve(sq, entries as usize * DESCRIPTOR_LEN);
        let cq_p = self.resolve(cq, entries as usize * COMPLETION_LEN);
        let mut done = 0;
        loop {
            let (head, tail) = (self.sq_head.get(), self.seen_tail.get());
            let cq_head = m.read(regs::CQ_HEAD_DOORBELL);
            let cq_tail = self.cq_tail.get();
            if head == tail || cq_tail.wrapping_sub(cq_head) == entries {
                break;
            }
            let slot = (head & (entries - 1)) as usize;
            let mut d = [0u8; DESCRIPTOR_LEN];
            for (i, b) in d.iter_mut().enumerate() {
                // SAFETY: `slot * DESCRIPTOR_LEN + i` lies within the submission ring resolved above.
                *b = unsafe { sq_p.as_ptr().add(slot * DESCRIPTOR_LEN + i).read_volatile() };
            }
            let cslot = (cq_tail & (entries - 1)) as usize;
            let phase = crate::ring::phase_of(cq_tail, log2) & COMPLETION_PHASE;
            let mut c = [0u8; COMPLETION_LEN];
            c[0..16].copy_from_slice(&d[0..16]); // seq and lock id
            c[16] = CompletionStatus::WriteDone as u8;
            c[20..24].copy_from_slice(&cq_tail.to_le_bytes());
            // The phase byte goes last, after a Release fence: the host must never see a phase
            // bit before the entry it guards.
            for (i, b) in c.iter().enumerate() {
                if i != 17 {
                    // SAFETY: within the completion ring resolved above.
                    unsafe {
                        cq_p.as_ptr()
                            .add(cslot * COMPLETION_LEN + i)
                            .write_volatile(*b)
                    };
                }
            }
            DmaMemory::release();
            // SAFETY: within the completion ring resolved above.
            unsafe {
                cq_p.as_ptr()
                    .add(cslot * COMPLETION_LEN + 17)
                    .write_volatile(phase)
            };
            self.sq_head.set(head.wrapping_add(1));
            self.cq_tail.set(cq_tail.wrapping_add(1));
            done += 1;
        }
        m.write(regs::SQ_HEAD, self.sq_head.get());
        m.write(regs::CQ_TAIL, self.cq_tail.get());
        done
    }
}

impl Default for FakeDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl Device for FakeDevice {
    fn mmio(&self) -> &Mmio {
        &self.mmio
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaMemory, DeviceError> {
        let m = DmaMemory::anonymous(len)?;
        self.dma
            .borrow_mut()
            .push((m.bus_addr(), m.as_ptr(), m.len()));
        Ok(m)
    }

    fn wait_interrupt(&self, _timeout: Duration) -> bool {
        self.step() > 0
    }
}

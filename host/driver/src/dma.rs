//! DMA memory: page-aligned mappings the device reads and writes by bus address. The CPU touches
//! them only through raw volatile or atomic accesses (never a Rust reference into bytes a device
//! may change under it).

use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

use memmap2::MmapMut;

/// A DMA-able region and the address the device uses for it.
pub struct DmaMemory {
    map: MmapMut,
    bus_addr: u64,
    /// Undoes the backend's mapping (an IOMMU unmap) before the memory goes back to the system.
    unmap: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        if let Some(unmap) = self.unmap.take() {
            unmap();
        }
    }
}

impl DmaMemory {
    /// Anonymous, zeroed, page-aligned memory of `len` bytes (rounded up to pages); `bus_addr` is
    /// what the backend mapped it to (an IOVA under VFIO, the host address for a model).
    pub fn anonymous(len: usize) -> std::io::Result<DmaMemory> {
        let len = len.div_ceil(4096).max(1) * 4096;
        let map = MmapMut::map_anon(len)?;
        let bus_addr = map.as_ptr() as u64;
        Ok(DmaMemory {
            map,
            bus_addr,
            unmap: None,
        })
    }

    /// The same memory, known to the device under another bus address (after an IOMMU mapping).
    pub fn with_bus_addr(mut self, bus_addr: u64) -> DmaMemory {
        self.bus_addr = bus_addr;
        self
    }

    /// Runs `unmap` when the memory is dropped, before it is unmapped from the process.
    pub fn on_drop(mut self, unmap: impl FnOnce() + Send + Sync + 'static) -> DmaMemory {
        self.unmap = Some(Box::new(unmap));
        self
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bus_addr(&self) -> u64 {
        self.bus_addr
    }

    /// The base pointer, for a device model that resolves bus addresses to memory.
    pub fn as_ptr(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_ptr() as *mut u8).expect("mapped memory is never null")
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|e| e <= self.map.len()),
            "DMA access {offset}+{len} outside a {}-byte region",
            self.map.len()
        );
    }

    /// Copies `src` in with volatile byte writes.
    pub fn write(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        let p = self.as_ptr().as_ptr();
        for (i, b) in src.iter().enumerate() {
            // SAFETY: in bounds per `check`; the mapping lives as long as `self`; volatile so the
            // device sees every byte and the compiler keeps the stores.
            unsafe { p.add(offset + i).write_volatile(*b) }
        }
    }

    /// Copies bytes out with volatile reads.
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        let p = self.as_ptr().as_ptr();
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds per `check`; volatile because the device may write these bytes.
            *b = unsafe { p.add(offset + i).read_volatile() };
        }
    }

    /// One byte, read volatile (a phase bit), then an Acquire fence so the rest of the entry is
    /// read only after it.
    pub fn read_u8_acquire(&self, offset: usize) -> u8 {
        self.check(offset, 1);
        // SAFETY: in bounds per `check`; volatile read of device-written memory.
        let v = unsafe { self.as_ptr().as_ptr().add(offset).read_volatile() };
        fence(Ordering::Acquire);
        v
    }

    /// A Release fence: everything written before is visible before the doorbell that follows.
    pub fn release() {
        fence(Ordering::Release);
    }
}

//! The one seam between the driver and a device: registers, DMA memory, interrupts. Implemented by
//! the VFIO backend, the Verilator model, and the fake the ring tests use.

use std::time::Duration;

use crate::dma::DmaMemory;
use crate::mmio::Mmio;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "not a specmirror device: the register block at BAR0 has id {found:#010x}, a specmirror \
         device {:#010x} (\"SMRE\")",
        specmirror_abi::regs::BLOCK_ID_MIRROR
    )]
    NotSpecmirror { found: u32 },
    #[error(
        "the device's register block is version {}.{}, this driver speaks {}.x: update the driver \
         or load a matching bitstream",
        found >> 16, found & 0xffff, wanted >> 16
    )]
    Version { found: u32, wanted: u32 },
    #[error("DMA allocation failed: {0}")]
    Dma(#[from] std::io::Error),
}

pub trait Device {
    /// The register block (BAR0).
    fn mmio(&self) -> &Mmio;
    /// Memory the device can reach by bus address.
    fn alloc_dma(&self, len: usize) -> Result<DmaMemory, DeviceError>;
    /// Waits for an interrupt (or the timeout); true if one came.
    fn wait_interrupt(&self, timeout: Duration) -> bool;

    /// Checks the block id and major version before anything else touches the device.
    fn check_identity(&self) -> Result<(), DeviceError> {
        check_identity(self.mmio())
    }
}

/// The identity check on a register block alone, before a backend wraps it into a `Device`.
pub fn check_identity(mmio: &Mmio) -> Result<(), DeviceError> {
    use specmirror_abi::regs;
    let id = mmio.read(regs::BLOCK_ID);
    if id != regs::BLOCK_ID_MIRROR {
        return Err(DeviceError::NotSpecmirror { found: id });
    }
    let v = mmio.read(regs::BLOCK_VERSION);
    if v >> 16 != regs::BLOCK_VERSION_MIRROR >> 16 {
        return Err(DeviceError::Version {
            found: v,
            wanted: regs::BLOCK_VERSION_MIRROR,
        });
    }
    Ok(())
}

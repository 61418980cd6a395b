//! The specmirror device over VFIO: BAR0 is the register block, checked for the specmirror block
//! id and version before anything else is touched; DMA memory goes through the IOMMU; the
//! completion interrupt is MSI vector 0.

use std::time::Duration;

use specmirror_abi::regs;

use super::pci::{Bar, Interrupt, VfioPci, VfioPciError};
use super::sysfs::{PciAddress, Sysfs};
use crate::device::{check_identity, Device, DeviceError};
use crate::dma::DmaMemory;
use crate::mmio::Mmio;

#[derive(Debug, thiserror::Error)]
pub enum VfioMirrorError {
    #[error(transparent)]
    Pci(#[from] VfioPciError),
    #[error("BAR0 is {len} bytes, the register block needs {wanted}")]
    BarTooSmall { len: usize, wanted: u64 },
    #[error("{addr}: {source}")]
    Identity {
        addr: PciAddress,
        source: DeviceError,
    },
}

pub struct VfioMirror {
    // Field order is drop order: the register view and interrupt go before the device is reset.
    mmio: Mmio,
    irq: Interrupt,
    _bar: Bar,
    pci: VfioPci,
}

impl VfioMirror {
    pub fn open(sysfs: &Sysfs, addr: PciAddress) -> Result<VfioMirror, VfioMirrorError> {
        let pci = VfioPci::open(sysfs, addr)?;
        let bar = pci.map_bar(0)?;
        if (bar.len() as u64) < regs::BAR0_LEN {
            return Err(VfioMirrorError::BarTooSmall {
                len: bar.len(),
                wanted: regs::BAR0_LEN,
            });
        }
        // SAFETY: `bar` is a live shared mapping of BAR0, at least BAR0_LEN bytes and page
        // aligned, kept in this struct for as long as `mmio`; it is only accessed volatile.
        let mmio = unsafe { Mmio::new(bar.as_ptr()) };
        check_identity(&mmio).map_err(|source| VfioMirrorError::Identity { addr, source })?;
        pci.enable_bus_master()?;
        let irq = pci.enable_msi(1)?.remove(0);
        Ok(VfioMirror {
            mmio,
            irq,
            _bar: bar,
            pci,
        })
    }

    pub fn pci(&self) -> &VfioPci {
        &self.pci
    }
}

impl Device for VfioMirror {
    fn mmio(&self) -> &Mmio {
        &self.mmio
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaMemory, DeviceError> {
        self.pci
            .alloc_dma(len)
            .map_err(|e| DeviceError::Dma(std::io::Error::other(e.to_string())))
    }

    fn wait_interrupt(&self, timeout: Duration) -> bool {
        self.irq.wait(timeout)
    }
}

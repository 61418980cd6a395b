//! A PCI device opened through VFIO, whatever device it is: its BARs mapped, its config space, DMA
//! memory mapped through the IOMMU to bus addresses, MSI vectors delivered to eventfds, reset on
//! open and on close. The specmirror device sits on top of this (`mirror`); so does the self-test
//! that proves it on QEMU's `edu` device.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioError, VfioOps};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::sysfs::{PciAddress, PciInfo, PreflightError, Sysfs};
use crate::dma::DmaMemory;

/// Bus addresses handed out for DMA memory start here (low enough for devices with a narrow DMA
/// mask) and stay below the limit.
const IOVA_BASE: u64 = 0x10_0000;
const IOVA_LIMIT: u64 = 1 << 32;

const CONFIG_COMMAND: u64 = 0x04;

vmm_sys_util::ioctl_io_nr!(
    VFIO_DEVICE_RESET,
    vfio_bindings::bindings::vfio::VFIO_TYPE as u32,
    vfio_bindings::bindings::vfio::VFIO_BASE + 11
);
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;

#[derive(Debug, thiserror::Error)]
pub enum VfioPciError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("{what}: {source}")]
    Vfio {
        what: String,
        #[source]
        source: VfioError,
    },
    #[error("BAR{index} is not implemented by the device")]
    NoBar { index: u32 },
    #[error("BAR{index} cannot be memory-mapped (an I/O-port BAR, or the kernel refuses mmap)")]
    BarNotMappable { index: u32 },
    #[error("mmap of BAR{index}: {source}")]
    MapBar { index: u32, source: io::Error },
    #[error(
        "DMA map of {len} bytes at bus address {iova:#x}: {source} (a non-root user needs a \
         memory-lock limit of at least the rings' size: ulimit -l)"
    )]
    DmaMap {
        len: usize,
        iova: u64,
        source: VfioError,
    },
    #[error("no bus addresses left for {len} more bytes of DMA memory")]
    IovaExhausted { len: usize },
    #[error("DMA memory: {0}")]
    Alloc(io::Error),
    #[error("the bus-master bit did not stick in the command register (read back {0:#06x})")]
    BusMaster(u16),
    #[error("the device offers {available} {kind} vector(s), {wanted} wanted")]
    Vectors {
        kind: &'static str,
        available: u32,
        wanted: u32,
    },
    #[error("eventfd: {0}")]
    EventFd(io::Error),
    #[error("reset: {0} (reset methods the kernel offers for the device: {1})")]
    Reset(io::Error, String),
}

/// Bus addresses for DMA memory: a bump pointer and the ranges given back, reused for allocations
/// of the same size (rings and buffers come in a few fixed sizes).
struct IovaSpace {
    next: u64,
    free: Vec<(u64, usize)>,
}

impl IovaSpace {
    fn take(&mut self, size: usize) -> Option<u64> {
        // The most recently freed range first.
        if let Some(i) = self.free.iter().rposition(|&(_, s)| s == size) {
            return Some(self.free.remove(i).0);
        }
        let iova = self.next;
        (iova + size as u64 <= IOVA_LIMIT).then(|| {
            self.next += size as u64;
            iova
        })
    }

    fn give(&mut self, iova: u64, size: usize) {
        self.free.push((iova, size));
    }
}

/// One BAR as VFIO reports it.
#[derive(Clone, Copy, Debug)]
pub struct BarInfo {
    pub index: u32,
    pub size: u64,
    pub mappable: bool,
}

/// A BAR mapped into this process. Accessed only through volatile reads and writes.
pub struct Bar {
    map: MmapRaw,
    index: u32,
}

impl Bar {
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The start of the mapping, for a register block laid over it.
    pub fn as_ptr(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_mut_ptr()).expect("mapped memory is never null")
    }

    fn at(&self, offset: usize) -> *mut u32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len(),
            "BAR{} access at {offset:#x} outside its {} bytes",
            self.index,
            self.len()
        );
        // SAFETY: in bounds and aligned per the assert; computing the address reads nothing.
        unsafe { self.map.as_mut_ptr().add(offset).cast() }
    }

    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `at` gives an aligned address inside the live mapping; MMIO wants volatile.
        unsafe { self.at(offset).read_volatile() }
    }

    pub fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as for `read32`.
        unsafe { self.at(offset).write_volatile(value) }
    }

    /// A 64-bit register written as two 32-bit halves, low first.
    pub fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    pub fn read64(&self, offset: usize) -> u64 {
        self.read32(offset) as u64 | (self.read32(offset + 4) as u64) << 32
    }
}

/// An interrupt vector delivered to an eventfd.
pub struct Interrupt {
    fd: EventFd,
}

impl Interrupt {
    /// Waits up to `timeout` for the vector to fire; true if it did (and the count is consumed).
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is a valid pollfd for the length of the call; nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n == 1 && self.fd.read().is_ok()
    }
}

/// A PCI device owned through VFIO. Dropping it disables its interrupts and resets it.
pub struct VfioPci {
    info: PciInfo,
    device: VfioDevice,
    container: Arc<VfioContainer>,
    iova: Arc<Mutex<IovaSpace>>,
    irq_enabled: Mutex<Vec<u32>>,
}

impl VfioPci {
    /// Checks the device (see `Sysfs::preflight`), opens its container and group, and resets it.
    pub fn open(sysfs: &Sysfs, addr: PciAddress) -> Result<VfioPci, VfioPciError> {
        let info = sysfs.preflight(addr)?;
        let vfio = |what: &str| {
            let what = what.to_string();
            move |source| VfioPciError::Vfio { what, source }
        };
        let container = Arc::new(VfioContainer::new(None).map_err(vfio("open /dev/vfio/vfio"))?);
        let ops: Arc<dyn VfioOps> = container.clone();
        let device = VfioDevice::new(&info.sysfs_path, ops, false).map_err(vfio(&format!(
            "open {addr} in IOMMU group {} ({})",
            info.group,
            info.group_node.display()
        )))?;
        let pci = VfioPci {
            info,
            device,
            container,
            iova: Arc::new(Mutex::new(IovaSpace {
                next: IOVA_BASE,
                free: Vec::new(),
            })),
            irq_enabled: Mutex::new(Vec::new()),
        };
        if let Err(e) = pci.reset() {
            tracing::debug!(%addr, "no reset on open: {e}");
        }
        tracing::debug!(%addr, group = pci.info.group, "VFIO device open");
        Ok(pci)
    }

    pub fn info(&self) -> &PciInfo {
        &self.info
    }

    /// BAR0..BAR5 as the kernel reports them (size 0: not implemented).
    pub fn bars(&self) -> Vec<BarInfo> {
        (0..6)
            .map(|index| BarInfo {
                index,
                size: self.device.get_region_size(index),
                mappable: self.device.get_region_flags(index) & VFIO_REGION_INFO_FLAG_MMAP != 0,
            })
            .collect()
    }

    pub fn map_bar(&self, index: u32) -> Result<Bar, VfioPciError> {
        let size = self.device.get_region_size(index);
        if size == 0 {
            return Err(VfioPciError::NoBar { index });
        }
        if self.device.get_region_flags(index) & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(VfioPciError::BarNotMappable { index });
        }
        let map = MmapOptions::new()
            .offset(self.device.get_region_offset(index))
            .len(size as usize)
            .map_raw(self.device.as_raw_fd())
            .map_err(|source| VfioPciError::MapBar { index, source })?;
        Ok(Bar { map, index })
    }

    pub fn config_read_u16(&self, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        self.device
            .region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut b, offset);
        u16::from_le_bytes(b)
    }

    pub fn config_write_u16(&self, offset: u64, value: u16) {
        self.device
            .region_write(VFIO_PCI_CONFIG_REGION_INDEX, &value.to_le_bytes(), offset);
    }

    /// Lets the device reach memory (memory space and bus master on), checked by reading back.
    pub fn enable_bus_master(&self) -> Result<(), VfioPciError> {
        let cmd = self.config_read_u16(CONFIG_COMMAND);
        self.config_write_u16(CONFIG_COMMAND, cmd | COMMAND_MEMORY | COMMAND_BUS_MASTER);
        let back = self.config_read_u16(CONFIG_COMMAND);
        if back & COMMAND_BUS_MASTER == 0 {
            return Err(VfioPciError::BusMaster(back));
        }
        Ok(())
    }

    /// Zeroed, page-aligned memory mapped through the IOMMU; its bus address is the IOVA. The
    /// mapping is undone when the memory is dropped.
    pub fn alloc_dma(&self, len: usize) -> Result<DmaMemory, VfioPciError> {
        let mem = DmaMemory::anonymous(len).map_err(VfioPciError::Alloc)?;
        let size = mem.len();
        let iova = self
            .iova
            .lock()
            .expect("IOVA allocator")
            .take(size)
            .ok_or(VfioPciError::IovaExhausted { len: size })?;
        // SAFETY: `mem` is a fresh anonymous mapping of `size` bytes that this process reaches
        // only through raw volatile accesses (`DmaMemory` never hands out references), and the
        // `on_drop` hook below unmaps it from the IOMMU before the memory itself is unmapped.
        unsafe {
            self.container
                .vfio_dma_map(iova, size, mem.as_ptr().as_ptr())
                .map_err(|source| {
                    self.iova.lock().expect("IOVA allocator").give(iova, size);
                    VfioPciError::DmaMap {
                        len: size,
                        iova,
                        source,
                    }
                })?;
        }
        let container = self.container.clone();
        let space = self.iova.clone();
        Ok(mem.with_bus_addr(iova).on_drop(move || {
            match container.vfio_dma_unmap(iova, size) {
                // Only an address range known to be unmapped is handed out again.
                Ok(()) => space.lock().expect("IOVA allocator").give(iova, size),
                Err(e) => tracing::warn!(iova, size, "DMA unmap: {e}"),
            }
        }))
    }

    /// How many vectors the device offers for MSI and MSI-X.
    pub fn vectors(&self) -> (u32, u32) {
        let n = |i| self.device.get_irq_info(i).map_or(0, |q| q.count);
        (n(VFIO_PCI_MSI_IRQ_INDEX), n(VFIO_PCI_MSIX_IRQ_INDEX))
    }

    fn enable(
        &self,
        index: u32,
        kind: &'static str,
        n: u32,
    ) -> Result<Vec<Interrupt>, VfioPciError> {
        let available = self.device.get_irq_info(index).map_or(0, |q| q.count);
        if n == 0 || n > available {
            return Err(VfioPciError::Vectors {
                kind,
                available,
                wanted: n,
            });
        }
        let fds = (0..n)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(VfioPciError::EventFd)?;
        self.device
            .enable_irq(index, fds.iter().collect())
            .map_err(|source| VfioPciError::Vfio {
                what: format!("enable {n} {kind} vector(s)"),
                source,
            })?;
        self.irq_enabled.lock().expect("irq list").push(index);
        Ok(fds.into_iter().map(|fd| Interrupt { fd }).collect())
    }

    /// Routes `n` MSI vectors to eventfds.
    pub fn enable_msi(&self, n: u32) -> Result<Vec<Interrupt>, VfioPciError> {
        self.enable(VFIO_PCI_MSI_IRQ_INDEX, "MSI", n)
    }

    /// Routes `n` MSI-X vectors to eventfds.
    pub fn enable_msix(&self, n: u32) -> Result<Vec<Interrupt>, VfioPciError> {
        self.enable(VFIO_PCI_MSIX_IRQ_INDEX, "MSI-X", n)
    }

    pub fn disable_interrupts(&self) {
        for index in self.irq_enabled.lock().expect("irq list").drain(..) {
            if let Err(e) = self.device.disable_irq(index) {
                tracing::warn!(index, "disable interrupts: {e}");
            }
        }
    }

    /// The reset methods the kernel found for the device (`flr`, `pm`, `bus`, ...), empty if none.
    pub fn reset_methods(&self) -> String {
        std::fs::read_to_string(self.info.sysfs_path.join("reset_method"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// A function-level, power-management or bus reset, whichever the kernel has for the device.
    pub fn reset(&self) -> Result<(), VfioPciError> {
        // SAFETY: the descriptor is this device's VFIO fd, open while `self` lives; the ioctl
        // takes no argument and touches no memory of this process.
        let rc = unsafe { vmm_sys_util::ioctl::ioctl(&self.device, VFIO_DEVICE_RESET()) };
        if rc < 0 {
            let methods = self.reset_methods();
            let methods = if methods.is_empty() {
                "none".to_string()
            } else {
                methods
            };
            return Err(VfioPciError::Reset(io::Error::last_os_error(), methods));
        }
        Ok(())
    }
}

impl Drop for VfioPci {
    fn drop(&mut self) {
        self.disable_interrupts();
        if let Err(e) = self.reset() {
            tracing::debug!(addr = %self.info.addr, "no reset on close: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_addresses_are_reused_last_freed_first_and_bounded() {
        let mut s = IovaSpace {
            next: IOVA_BASE,
            free: Vec::new(),
        };
        let a = s.take(4096).unwrap();
        let b = s.take(8192).unwrap();
        let c = s.take(4096).unwrap();
        assert_eq!(
            (a, b, c),
            (IOVA_BASE, IOVA_BASE + 4096, IOVA_BASE + 3 * 4096)
        );
        s.give(a, 4096);
        s.give(c, 4096);
        assert_eq!(s.take(4096), Some(c));
        // Only a range of the same size is reused; others come from fresh space.
        assert_eq!(s.take(8192), Some(IOVA_BASE + 4 * 4096));
        assert_eq!(s.take(4096), Some(a));
        assert_eq!(
            s.take(IOVA_LIMIT as usize),
            None,
            "beyond the bus-address limit"
        );
    }
}

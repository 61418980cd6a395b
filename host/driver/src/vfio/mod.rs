//! The VFIO backend: a PCI device owned by user space through the kernel's vfio-pci driver and an
//! IOMMU. `sysfs` checks the kernel's view first and turns every problem into an instruction,
//! `pci` is the generic layer (BARs, config space, IOMMU-mapped DMA, MSI/MSI-X, reset), `mirror`
//! the specmirror device on top, `probe` the report `specmirror probe` prints.

pub mod mirror;
pub mod pci;
pub mod probe;
pub mod sysfs;

pub use mirror::{VfioMirror, VfioMirrorError};
pub use pci::{Bar, BarInfo, Interrupt, VfioPci, VfioPciError};
pub use probe::{probe, ProbeReport};
pub use sysfs::{PciAddress, PciInfo, PreflightError, Sysfs};

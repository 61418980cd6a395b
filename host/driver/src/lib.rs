//! The host driver for the specmirror device, small enough to read in one sitting: the register
//! block (`mmio`), DMA memory (`dma`), the rollback-log submission and completion rings (`ring`),
//! and the one seam every backend implements (`device`): a VFIO-mapped NIC (`vfio`), the Verilator model,
//! or the fake in `fake` that the ring tests run against.
//!
//! `unsafe` lives only where memory is shared with a device: the register mapping and DMA memory.

pub mod device;
pub mod dma;
pub mod fake;
pub mod mmio;
pub mod ring;
pub mod rx_ring;
pub mod vfio;

pub use device::{Device, DeviceError};
pub use dma::DmaMemory;
pub use ring::{CompletionRing, RingError, SubmissionRing};

//! `specmirror probe --device vfio:0000:01:00.0`.

use anyhow::{bail, Context, Result};
use clap::Args;
use specmirror_driver::vfio::{probe as run_probe, PciAddress, Sysfs};

#[derive(Args)]
pub struct ProbeArgs {
    /// The device: its PCI address, `vfio:DDDD:BB:DD.F` or `DDDD:BB:DD.F` (`lspci -D` lists
    /// them). It must be bound to vfio-pci, in a viable IOMMU group, with /dev/vfio/N open to
    /// this user; when it is not, the report says what to run. For its checks the probe turns on
    /// bus mastering, maps and unmaps 64 KiB of DMA memory, routes and releases one interrupt,
    /// and resets the device at the end; it leaves nothing else changed.
    #[arg(long, value_name = "DEVICE")]
    device: String,
}

/// Parses `vfio:ADDR` or a bare PCI address.
pub fn vfio_address(spec: &str) -> Result<PciAddress> {
    let addr = match spec.split_once(':') {
        Some(("vfio", rest)) => rest,
        Some(("sim", _)) | None if spec == "sim" || spec.starts_with("sim:") => {
            bail!(
                "--device {spec}: probe inspects VFIO devices; the simulated device needs no probe"
            )
        }
        _ => spec,
    };
    addr.parse::<PciAddress>()
        .with_context(|| format!("--device {spec}"))
}

pub fn probe(a: ProbeArgs) -> Result<bool> {
    let addr = vfio_address(&a.device)?;
    let report = run_probe(&Sysfs::default(), addr);
    println!("{report}");
    Ok(report.passed())
}

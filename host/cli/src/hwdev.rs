//! `--engine hw --device ...`: the device the hardware engine runs its hot path on.

use anyhow::{bail, Result};
use specmirror_engine::hw::HwDevice;

/// Which engine carries the protocol's hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// The software engine: the host sends every frame.
    Soft,
    /// The hardware engine: the device sends each write's LOCK and DATA from the rollback-log
    /// rings (`--device`); the host keeps the rollback log and sends the rest.
    Hw,
}

/// The device for `--engine hw`, from `--device`.
pub fn device(engine: EngineArg, spec: Option<&str>) -> Result<Option<HwDevice>> {
    match (engine, spec) {
        (EngineArg::Soft, None) => Ok(None),
        (EngineArg::Soft, Some(d)) => {
            bail!("--device {d} needs --engine hw (the software engine uses no device)")
        }
        (EngineArg::Hw, None) => {
            bail!("--engine hw needs --device: sim (the verilated device) or vfio:DDDD:BB:DD.F")
        }
        (EngineArg::Hw, Some("sim")) => sim(),
        (EngineArg::Hw, Some(d)) if d.starts_with("vfio:") => bail!(
            "--device {d}: the VFIO backend maps the device (see `specmirror probe`), but no \
             specmirror bitstream with the ring engine and a host queue exists for a NIC yet; \
             use --device sim"
        ),
        (EngineArg::Hw, Some(d)) => {
            bail!("--device {d}: unknown device; use sim or vfio:DDDD:BB:DD.F")
        }
    }
}

#[cfg(feature = "sim-device")]
fn sim() -> Result<Option<HwDevice>> {
    use specmirror_driver::{Device, DeviceError, DmaMemory};
    use specmirror_engine::hw::HwPort;
    use specmirror_verilated::sim_device::{SimConfig, SimDevice, TcpLink};
    use std::sync::Arc;
    use std::time::Duration;

    struct Port(SimDevice);

    impl Device for Port {
        fn mmio(&self) -> &specmirror_driver::mmio::Mmio {
            self.0.mmio()
        }
        fn alloc_dma(&self, len: usize) -> Result<DmaMemory, DeviceError> {
            self.0.alloc_dma(len)
        }
        fn wait_interrupt(&self, timeout: Duration) -> bool {
            self.0.wait_interrupt(timeout)
        }
    }

    impl HwPort for Port {
        fn host_send(&self, frame: Vec<u8>) -> Result<(), String> {
            self.0.host_send(frame)
        }
        fn host_recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
            self.0.host_recv(timeout)
        }
    }

    Ok(Some(HwDevice {
        name: "simulated".into(),
        open: Arc::new(|s| {
            let link = TcpLink::new(s).map_err(|e| e.to_string())?;
            let dev = SimDevice::spawn(link, SimConfig::default()).map_err(|e| e.to_string())?;
            Ok(Box::new(Port(dev)) as Box<dyn HwPort>)
        }),
    }))
}

#[cfg(not(feature = "sim-device"))]
fn sim() -> Result<Option<HwDevice>> {
    bail!(
        "--device sim: this build has no simulated device; build with \
         `cargo build --release --features sim-device` (needs the Debian package verilator)"
    )
}

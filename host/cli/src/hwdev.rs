//! `--engine hw --device ...`: the device the hardware engine runs its hot path on.

use anyhow::{bail, Result};
use specmirror_engine::hw::HwDevice;
use specmirror_engine::volume::Volume;

/// Which engine carries the protocol's hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// The software engine: the host sends every frame.
    Soft,
    /// The hardware engine: the device sends each write's LOCK and DATA from the rollback-log
    /// rings (`--device`); the host keeps the rollback log and sends the rest.
    Hw,
}

/// Checks `--engine` and `--device` together; true for the simulated device.
pub fn simulated(engine: EngineArg, spec: Option<&str>) -> Result<bool> {
    match (engine, spec) {
        (EngineArg::Soft, None) => Ok(false),
        (EngineArg::Soft, Some(d)) => {
            bail!("--device {d} needs --engine hw (the software engine uses no device)")
        }
        (EngineArg::Hw, None) => {
            bail!("--engine hw needs --device: sim (the verilated device) or vfio:DDDD:BB:DD.F")
        }
        (EngineArg::Hw, Some(d)) if d == "sim" || d.starts_with("sim:") => {
            sim_dma_latency(d).map(|_| true)
        }
        (EngineArg::Hw, Some(d)) if d.starts_with("vfio:") => vfio(d),
        (EngineArg::Hw, Some(d)) => {
            bail!("--device {d}: unknown device; use sim or vfio:DDDD:BB:DD.F")
        }
    }
}

/// The simulated device's DMA read latency in clocks, from `sim` (the default) or
/// `sim:dma-latency=CLOCKS`: how long the device waits for host memory, as a slower bus would
/// make it.
fn sim_dma_latency(spec: &str) -> Result<Option<u64>> {
    let Some(opts) = spec.strip_prefix("sim:") else {
        return Ok(None);
    };
    let Some(v) = opts.strip_prefix("dma-latency=") else {
        bail!("--device {spec}: the simulated device takes one option, dma-latency=CLOCKS");
    };
    match v.parse::<u64>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
        _ => bail!("--device {spec}: dma-latency is a number of clocks from 1 to 1000000"),
    }
}

/// The device for `source --engine hw`, from `--device`.
pub fn device(engine: EngineArg, spec: Option<&str>) -> Result<Option<HwDevice>> {
    if simulated(engine, spec)? {
        sim(sim_dma_latency(spec.unwrap_or("sim"))?)
    } else {
        Ok(None)
    }
}

/// Checks `--engine` and `--device` for the target: the simulated target takes no options.
pub fn simulated_target(engine: EngineArg, spec: Option<&str>) -> Result<bool> {
    let hw = simulated(engine, spec)?;
    if hw && spec != Some("sim") {
        bail!(
            "--device {}: the simulated target takes no options; use sim",
            spec.unwrap_or("")
        );
    }
    Ok(hw)
}

/// Hands an authenticated connection to the target's device.
pub type Attach = Box<dyn Fn(std::net::TcpStream) -> Result<()> + Send + Sync>;

/// The simulated target device for `target --engine hw --device sim`, writing `volume`: the
/// verilated target device in its thread, the driver's receive rings and the host's loop
/// (`specmirror_engine::hw_target`) in another.
#[cfg(feature = "sim-device")]
pub fn sim_target(volume: Volume, region_size: u64, pair_id: [u8; 16]) -> Result<Attach> {
    use specmirror_engine::hw_target::{self, HwTargetOptions};
    use specmirror_verilated::sim_device::{SimConfig, SimDevice};
    use specmirror_verilated::sim_target::Attached;
    use std::sync::Mutex;

    let (link, conns) = Attached::new();
    let dev = SimDevice::spawn_target(link, SimConfig::default())?;
    hw_target::start(
        Box::new(Port(dev)),
        HwTargetOptions {
            volume,
            region_size,
            pair_id,
        },
    )?;
    let conns = Mutex::new(conns);
    Ok(Box::new(move |s| {
        conns
            .lock()
            .expect("connections")
            .send(s)
            .map_err(|_| anyhow::anyhow!("the simulated target device stopped"))
    }))
}

#[cfg(not(feature = "sim-device"))]
pub fn sim_target(_: Volume, _: u64, _: [u8; 16]) -> Result<Attach> {
    no_sim()
}

/// `--device vfio:ADDR`: opens the device through VFIO and checks its register block (the errors
/// say what to run when the kernel's side is not ready, or that the device is not a specmirror
/// device). Both devices' rings carry every frame both ways, but no NIC bitstream carries the
/// devices and their links yet; so even a specmirror device is refused, after those checks.
fn vfio(spec: &str) -> Result<bool> {
    use anyhow::Context;
    use specmirror_driver::vfio::{Sysfs, VfioMirror};
    let addr = crate::probe::vfio_address(spec)?;
    let dev =
        VfioMirror::open(&Sysfs::default(), addr).with_context(|| format!("--device {spec}"))?;
    drop(dev);
    bail!(
        "--device {spec}: a specmirror device, but no NIC bitstream carries the mirror devices \
         and their links yet; use --device sim"
    )
}

/// The simulated device (source or target) behind the hardware engine's seam.
#[cfg(feature = "sim-device")]
struct Port(specmirror_verilated::sim_device::SimDevice);

#[cfg(feature = "sim-device")]
impl specmirror_driver::Device for Port {
    fn mmio(&self) -> &specmirror_driver::mmio::Mmio {
        self.0.mmio()
    }
    fn alloc_dma(
        &self,
        len: usize,
    ) -> Result<specmirror_driver::DmaMemory, specmirror_driver::DeviceError> {
        self.0.alloc_dma(len)
    }
    fn wait_interrupt(&self, timeout: std::time::Duration) -> bool {
        self.0.wait_interrupt(timeout)
    }
}

#[cfg(feature = "sim-device")]
impl specmirror_engine::hw::HwPort for Port {
    fn host_send(&self, frame: Vec<u8>) -> Result<(), String> {
        self.0.host_send(frame)
    }
    fn host_recv(&self, timeout: std::time::Duration) -> Result<Option<Vec<u8>>, String> {
        self.0.host_recv(timeout)
    }
}

#[cfg(feature = "sim-device")]
fn sim(dma_latency: Option<u64>) -> Result<Option<HwDevice>> {
    use specmirror_engine::hw::HwPort;
    use specmirror_verilated::sim_device::{SimConfig, SimDevice, TcpLink};
    use std::sync::Arc;

    Ok(Some(HwDevice {
        name: "simulated".into(),
        open: Arc::new(move |s| {
            let link = TcpLink::new(s).map_err(|e| e.to_string())?;
            let mut cfg = SimConfig::default();
            cfg.dma_latency = dma_latency.unwrap_or(cfg.dma_latency);
            let dev = SimDevice::spawn(link, cfg).map_err(|e| e.to_string())?;
            Ok(Box::new(Port(dev)) as Box<dyn HwPort>)
        }),
    }))
}

#[cfg(not(feature = "sim-device"))]
fn sim(_: Option<u64>) -> Result<Option<HwDevice>> {
    no_sim()
}

#[cfg(not(feature = "sim-device"))]
fn no_sim<T>() -> Result<T> {
    bail!(
        "--device sim: this build has no simulated device; build with \
         `cargo build --release --features sim-device` (needs the Debian package verilator)"
    )
}

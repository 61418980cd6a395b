//! The simulated target device behind the driver's `Device` seam: the verilated target device
//! (`hdl::TargetDevice`: register block, receive rings, target path) in the device thread of
//! [`crate::sim_device`], so the driver's receive-ring code runs over it exactly as over a VFIO
//! BAR.
//!
//! Once the host sets CONTROL_HOST_RX, every frame goes into the device, and those it leaves to
//! the host's software (the handshake, flushes, heartbeats, and LOCK and DATA frames of a session
//! it does not hold: `HostFilter`'s rule) reach the host on its receive ring. Before that, those
//! go to the host queue instead, and the rest into the device. The host's software answers them
//! with raw descriptors on the device's submission ring, which the device reads by DMA and sends
//! between its own answers (`host_send`, beside the device, serves a host without that ring). The device hands each locked write to host memory and answers WRITE_DONE or
//! WRITE_FAILED once the host gave the outcome.
//!
//! The link is a connection the target daemon hands over after its handshake check
//! ([`Attached`]); a new connection replaces the one before, and the device keeps running between
//! connections.

use std::net::TcpStream;
use std::sync::mpsc::{Receiver, Sender};

use specmirror_abi::regs;

use crate::served::for_the_host;
use crate::sim_device::{Link, Model, Route, SimConfig, SimDevice, TcpLink};
use crate::target_device::{TargetDevicePort as P, VerilatedTargetDevice};

/// The target device and the session it holds (the last value the host wrote to GENERATION:
/// frames the host sends after that write meet the device with it).
pub(crate) struct TargetModel {
    m: VerilatedTargetDevice,
    generation: u64,
}

impl TargetModel {
    fn new() -> TargetModel {
        TargetModel {
            m: VerilatedTargetDevice::new(),
            generation: 0,
        }
    }
}

impl Model for TargetModel {
    /// The last byte of a receive entry's second word.
    const PHASE_BYTE: usize = 7;
    const WRITE_LEN: usize = 8;

    fn read_reg(&mut self, offset: u32) -> u32 {
        self.m.set(P::MmioAddr, offset as u64);
        self.m.set(P::MmioWrite, 0);
        self.m.eval();
        self.m.get(P::MmioRdata) as u32
    }

    fn write_reg(&mut self, w: Option<(u32, u32)>) {
        match w {
            Some((o, v)) => {
                self.m.set(P::MmioAddr, o as u64);
                self.m.set(P::MmioWdata, v as u64);
                self.m.set(P::MmioWrite, 1);
            }
            None => self.m.set(P::MmioWrite, 0),
        }
    }

    fn route(&self, frame: &[u8]) -> Route {
        // A frame whose header does not decode goes to the device, which counts it bad.
        let host = for_the_host(frame, self.generation as u32);
        Route {
            device: !host,
            host,
        }
    }

    /// With CONTROL_HOST_RX set the device hands the host its frames on the receive ring.
    fn host_rx(&self, control: u32) -> bool {
        control & regs::CONTROL_HOST_RX != 0
    }

    fn host_wrote(&mut self, offset: u32, value: u32) {
        if offset == regs::GENERATION {
            self.generation = value as u64;
        }
    }

    fn set_inputs(&mut self, rx: Option<(u64, bool)>, rd: Option<u64>) {
        let m = &mut self.m;
        let (rw, rl) = rx.unwrap_or((0, false));
        m.set(P::RxValid, rx.is_some() as u64);
        m.set(P::RxData, rw);
        m.set(P::RxLast, rl as u64);
        m.set(P::TxReady, 1);
        m.set(P::RdReqReady, 1);
        m.set(P::WrReady, 1);
        m.set(P::RdValid, rd.is_some() as u64);
        m.set(P::RdData, rd.unwrap_or(0));
    }

    fn eval(&mut self) {
        self.m.eval();
    }

    fn tx(&self) -> Option<(u64, bool)> {
        let m = &self.m;
        (m.get(P::TxValid) != 0).then(|| (m.get(P::TxData), m.get(P::TxLast) != 0))
    }

    fn rd_req(&self) -> Option<(u64, u64)> {
        let m = &self.m;
        (m.get(P::RdReqValid) != 0).then(|| (m.get(P::RdReqAddr), m.get(P::RdReqWords)))
    }

    fn rd_ready(&self) -> bool {
        self.m.get(P::RdReady) != 0
    }

    fn wr(&self) -> Option<(u64, [u8; 32])> {
        let m = &self.m;
        if m.get(P::WrValid) == 0 {
            return None;
        }
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&m.get(P::WrData).to_le_bytes());
        Some((m.get(P::WrAddr), b))
    }

    fn irq(&self) -> bool {
        self.m.get(P::Irq) != 0
    }

    fn tick(&mut self) {
        self.m.tick();
    }
}

/// A link whose connection the daemon hands over: a new one replaces the one before; while there
/// is none, or after it broke, frames to send are dropped (the source sends them again on its
/// next connection).
pub struct Attached {
    conns: Receiver<TcpStream>,
    link: Option<TcpLink>,
}

impl Attached {
    /// The link, and where the daemon hands connections over.
    pub fn new() -> (Attached, Sender<TcpStream>) {
        let (tx, conns) = std::sync::mpsc::channel();
        (Attached { conns, link: None }, tx)
    }

    fn take_new(&mut self) {
        while let Ok(s) = self.conns.try_recv() {
            match TcpLink::new(s) {
                Ok(l) => {
                    tracing::info!("simulated target device: connection attached");
                    self.link = Some(l);
                }
                Err(e) => tracing::warn!("simulated target device: unusable connection: {e}"),
            }
        }
    }
}

impl Link for Attached {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        if let Some(l) = self.link.as_mut() {
            if let Err(e) = l.send(frame) {
                tracing::warn!("simulated target device: connection lost: {e}");
                self.link = None;
            }
        }
        Ok(())
    }

    fn recv(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        self.take_new();
        let Some(l) = self.link.as_mut() else {
            return Ok(None);
        };
        match l.recv() {
            Ok(f) => Ok(f),
            Err(e) => {
                tracing::warn!("simulated target device: connection lost: {e}");
                self.link = None;
                Ok(None)
            }
        }
    }
}

impl SimDevice {
    /// Starts the target device's thread on `link`.
    pub fn spawn_target(link: impl Link, cfg: SimConfig) -> std::io::Result<SimDevice> {
        SimDevice::spawn_model(TargetModel::new, link, cfg)
    }
}

//! What the simulated FPGA targets on a UDP socket share: the thread that runs a model behind the
//! socket, the socket's inbox, and the host's software (the handshake, flushes and heartbeats,
//! answered by the software target core, as a NIC's host answers them on a server).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;
use specmirror_hdl::target_path::host::Host;

use crate::{Ver, VerilatedTargetPath};

#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the volume size {0} is not a whole number of 8-byte words, or is zero")]
    VolumeSize(u64),
    #[error("the region size {0} is not a power of two of at least 512 bytes")]
    RegionSize(u64),
    #[error("the simulation thread failed: {0}")]
    Thread(String),
}

/// The target's geometry and pair, as the source must see them.
#[derive(Clone, Debug)]
pub struct ServedConfig {
    pub volume_size: u64,
    pub region_size: u64,
    pub pair_id: [u8; 16],
}

impl ServedConfig {
    /// Whether the target path can serve this geometry.
    pub(crate) fn check(&self) -> Result<(), ServedError> {
        if self.volume_size == 0 || !self.volume_size.is_multiple_of(8) {
            return Err(ServedError::VolumeSize(self.volume_size));
        }
        if !self.region_size.is_power_of_two() || self.region_size < 512 {
            return Err(ServedError::RegionSize(self.region_size));
        }
        Ok(())
    }
}

/// A model running in its own thread behind a UDP socket (a Verilator model stays on the thread
/// that made it); `stop` ends it and returns its report.
pub struct Served<R> {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<R>,
}

impl<R: Send + 'static> Served<R> {
    /// Binds `listen` and runs `run` on the socket in a new thread until `stop`.
    pub(crate) fn spawn(
        listen: &str,
        cfg: ServedConfig,
        run: fn(UdpSocket, ServedConfig, Arc<AtomicBool>) -> R,
    ) -> Result<Served<R>, ServedError> {
        cfg.check()?;
        let bind = |e| ServedError::Bind {
            addr: listen.to_string(),
            source: e,
        };
        let socket = UdpSocket::bind(listen).map_err(bind)?;
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .map_err(bind)?;
        let addr = socket.local_addr().map_err(bind)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(socket, cfg, flag));
        Ok(Served { addr, stop, thread })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the simulation and returns what it did.
    pub fn stop(self) -> Result<R, ServedError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|e| {
            ServedError::Thread(
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            )
        })
    }
}

/// The socket's side of a simulation loop: datagrams in, waiting a little (the socket's read
/// timeout) only when the model is idle. The socket's mode changes only when it must (a system
/// call each time).
pub(crate) struct Inbox {
    pub socket: UdpSocket,
    blocking: bool,
    buf: Vec<u8>,
}

impl Inbox {
    pub fn new(socket: UdpSocket) -> Inbox {
        Inbox {
            socket,
            blocking: true,
            buf: vec![0u8; 65536],
        }
    }

    /// The next datagram: waits for one when `wait`, else takes only what is there.
    pub fn next(&mut self, wait: bool) -> Option<(&[u8], SocketAddr)> {
        if wait != self.blocking {
            self.socket.set_nonblocking(!wait).expect("socket mode");
            self.blocking = wait;
        }
        let (n, from) = self.socket.recv_from(&mut self.buf).ok()?;
        Some((&self.buf[..n], from))
    }
}

/// The host model around a fresh verilated target path: the volume's geometry, a generation no
/// session has (nothing goes to the hardware before a handshake), every word taken at once and
/// each write completed right after it, no logs kept.
pub(crate) fn target_host(cfg: &ServedConfig) -> Host<Ver> {
    let mut h = Host::new(Ver(VerilatedTargetPath::new()), 1);
    h.set_geometry(cfg.volume_size, cfg.region_size.trailing_zeros() as u64);
    h.inp.generation = 0;
    h.ready_percent = 100;
    h.done_delay = 0;
    h.logs = false;
    h
}

/// Frames the hardware leaves to the host's software: the handshake, flushes, heartbeats, and
/// locks and data of a session the hardware does not hold (the software answers them so that
/// the source handshakes again). The target device's own rule (`HostFilter`), on the bytes.
pub(crate) use specmirror_hdl::host_filter::for_the_host;

/// The host's software: the software target core for the frames the hardware leaves to it.
pub(crate) struct HostSoftware {
    core: Target,
    started: Instant,
    /// Frames it answered.
    pub frames: u64,
}

/// What the host's software made of a frame.
#[derive(Default)]
pub(crate) struct HostAnswer {
    /// Frames to send to the frame's sender.
    pub send: Vec<Vec<u8>>,
    /// A new session: the hardware takes this generation from now on, barriers cleared.
    pub session: Option<u32>,
}

impl HostSoftware {
    pub fn new(cfg: &ServedConfig) -> HostSoftware {
        HostSoftware {
            core: Target::new(TargetConfig::hardware(
                cfg.volume_size,
                cfg.region_size,
                cfg.pair_id,
                // As the target device's host announces it, from the same target path.
                specmirror_driver::rx_ring::window(
                    specmirror_hdl::target_device::BUFFER_WORDS as u32,
                    specmirror_hdl::target_device::TABLE_ENTRIES as u32,
                )
                .expect("the target path holds writes"),
            )),
            started: Instant::now(),
            frames: 0,
        }
    }

    /// Takes a datagram if it is the host's (see [`for_the_host`]), and answers it; `sync` makes
    /// the volume durable before a flush is answered (an errno fails the flush).
    pub fn take(
        &mut self,
        datagram: &[u8],
        generation: u64,
        sync: &mut dyn FnMut() -> Result<(), i32>,
    ) -> Option<HostAnswer> {
        if !for_the_host(datagram, generation as u32) {
            return None;
        }
        self.frames += 1;
        let mut answer = HostAnswer::default();
        let Ok((frame, _)) = Frame::decode(datagram) else {
            return Some(answer); // damaged: the source sends it again
        };
        let now = self.started.elapsed().as_nanos() as u64;
        let mut actions = self.core.handle(TargetEvent::Frame(frame), now);
        let mut i = 0;
        while i < actions.len() {
            match &actions[i] {
                TargetAction::Send(f) => answer.send.push(f.encode()),
                TargetAction::SessionStarted { generation } => {
                    tracing::info!(generation, "simulated FPGA target: new session");
                    answer.session = Some(*generation);
                }
                TargetAction::SyncVolume { token } => {
                    let more = self.core.handle(
                        TargetEvent::VolumeSyncDone {
                            token: *token,
                            result: sync(),
                        },
                        now,
                    );
                    actions.extend(more);
                }
                _ => {}
            }
            i += 1;
        }
        Some(answer)
    }
}

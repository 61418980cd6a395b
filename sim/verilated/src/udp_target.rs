//! A simulated FPGA target on a UDP socket: the verilated target path (`hdl::TargetPath`) takes
//! every LOCK, DATA and ABORT datagram word by word, and its answers go back as datagrams, one
//! frame each, to the last sender; its volume-write port writes a volume in memory. What a NIC's
//! host does stays in software here, as it would on a server: the handshake (HELLO, which also
//! sets the hardware's generation and starts its new session), flushes (the memory volume is
//! durable at once) and heartbeats are answered by the software target core, as are frames of a
//! session the target does not hold (so the source handshakes again).
//!
//! It runs in its own thread (a Verilator model stays on the thread that made it); `stop` ends it
//! and returns the volume and the figures.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use specmirror_abi::{FrameType, Header};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;
use specmirror_hdl::target_path::host::{Host, TpOut};

use crate::{Ver, VerilatedTargetPath};

#[derive(Debug, thiserror::Error)]
pub enum UdpTargetError {
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
pub struct UdpTargetConfig {
    pub volume_size: u64,
    pub region_size: u64,
    pub pair_id: [u8; 16],
}

/// What a run did.
#[derive(Debug)]
pub struct UdpTargetReport {
    pub volume: Vec<u8>,
    pub clocks: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Writes that went out on the volume-write port.
    pub writes: u64,
    /// Handshakes, flushes and heartbeats the host's software answered.
    pub host_frames: u64,
    /// The target path's counters at the end.
    pub counters: TpOut,
}

pub struct UdpTarget {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<UdpTargetReport>,
}

/// Clocks the model runs between looks at the socket while it has work.
const BATCH: u64 = 256;

impl UdpTarget {
    pub fn start(listen: &str, cfg: UdpTargetConfig) -> Result<UdpTarget, UdpTargetError> {
        if cfg.volume_size == 0 || !cfg.volume_size.is_multiple_of(8) {
            return Err(UdpTargetError::VolumeSize(cfg.volume_size));
        }
        if !cfg.region_size.is_power_of_two() || cfg.region_size < 512 {
            return Err(UdpTargetError::RegionSize(cfg.region_size));
        }
        let bind = |e| UdpTargetError::Bind {
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
        Ok(UdpTarget { addr, stop, thread })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the simulation and returns what it did.
    pub fn stop(self) -> Result<UdpTargetReport, UdpTargetError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|e| {
            UdpTargetError::Thread(
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            )
        })
    }
}

/// Frames the hardware leaves to the host's software.
pub(crate) fn for_the_host(h: &Header, generation: u64) -> bool {
    match h.ty {
        FrameType::Hello | FrameType::Flush | FrameType::Heartbeat => true,
        FrameType::Lock | FrameType::Data => h.generation as u64 != generation,
        _ => false,
    }
}

fn run(socket: UdpSocket, cfg: UdpTargetConfig, stop: Arc<AtomicBool>) -> UdpTargetReport {
    let started = Instant::now();
    let mut core = Target::new(TargetConfig::new(
        cfg.volume_size,
        cfg.region_size,
        cfg.pair_id,
    ));
    let mut h = Host::new(Ver(VerilatedTargetPath::new()), 1);
    h.set_geometry(cfg.volume_size, cfg.region_size.trailing_zeros() as u64);
    // A generation no session has: nothing goes to the hardware before a handshake.
    h.inp.generation = 0;
    // The host takes every word at once and completes each write right after it.
    h.ready_percent = 100;
    h.done_delay = 0;
    h.logs = false;
    let mut peer: Option<SocketAddr> = None;
    let (mut datagrams_in, mut datagrams_out, mut host_frames) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    // The socket's mode, changed only when it must be (a system call each time).
    let mut blocking = true;
    while !stop.load(Ordering::Relaxed) {
        // Take what the socket has; wait a little (its read timeout) only when the model is idle.
        let mut waited = false;
        loop {
            let wait = !h.busy() && !waited;
            if wait != blocking {
                socket.set_nonblocking(!wait).expect("socket mode");
                blocking = wait;
            }
            waited = true;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(_) => break,
            };
            datagrams_in += 1;
            peer = Some(from);
            let d = &buf[..n];
            let host_frame = Header::decode(d)
                .ok()
                .filter(|hd| for_the_host(hd, h.inp.generation));
            if host_frame.is_none() {
                h.send(d);
                continue;
            }
            host_frames += 1;
            let Ok((frame, _)) = Frame::decode(d) else {
                continue; // damaged: the source sends it again
            };
            let now = started.elapsed().as_nanos() as u64;
            let mut actions = core.handle(TargetEvent::Frame(frame), now);
            let mut i = 0;
            while i < actions.len() {
                match &actions[i] {
                    TargetAction::Send(f) if socket.send_to(&f.encode(), from).is_ok() => {
                        datagrams_out += 1;
                    }
                    TargetAction::SessionStarted { generation } => {
                        tracing::info!(generation, "simulated FPGA target: new session");
                        h.inp.generation = *generation as u64;
                        h.inp.clear_barriers = true;
                    }
                    TargetAction::SyncVolume { token } => {
                        // The volume is memory: durable as soon as written.
                        let more = core.handle(
                            TargetEvent::VolumeSyncDone {
                                token: *token,
                                result: Ok(()),
                            },
                            now,
                        );
                        actions.extend(more);
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        for _ in 0..BATCH {
            h.step();
        }
        for f in std::mem::take(&mut h.answers) {
            if let Some(p) = peer {
                if socket.send_to(&f, p).is_ok() {
                    datagrams_out += 1;
                }
            }
        }
    }
    UdpTargetReport {
        volume: std::mem::take(&mut h.volume),
        clocks: h.now,
        datagrams_in,
        datagrams_out,
        writes: h.writes.len() as u64,
        host_frames,
        counters: h.out,
    }
}

//! A simulated FPGA target on a UDP socket: the verilated target path (`hdl::TargetPath`) takes
//! every LOCK, DATA and ABORT datagram word by word, and its answers go back as datagrams, one
//! frame each, to the last sender; its volume-write port writes a volume in memory. What a NIC's
//! host does stays in software here, as it would on a server: the handshake (HELLO, which also
//! sets the hardware's generation and starts its new session), flushes (the memory volume is
//! durable at once) and heartbeats are answered by the software target core, as are frames of a
//! session the target does not hold (so the source handshakes again).
//!
//! It runs in its own thread ([`Served`]); `stop` ends it and returns the volume and the figures.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use specmirror_hdl::target_path::host::TpOut;

use crate::served::{target_host, HostSoftware, Inbox, Served};
pub use crate::served::{ServedConfig as UdpTargetConfig, ServedError as UdpTargetError};

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

pub type UdpTarget = Served<UdpTargetReport>;

impl Served<UdpTargetReport> {
    pub fn start(listen: &str, cfg: UdpTargetConfig) -> Result<UdpTarget, UdpTargetError> {
        Served::spawn(listen, cfg, run)
    }
}

/// Clocks the model runs between looks at the socket while it has work.
const BATCH: u64 = 256;

fn run(socket: UdpSocket, cfg: UdpTargetConfig, stop: Arc<AtomicBool>) -> UdpTargetReport {
    let mut host = HostSoftware::new(&cfg);
    let mut h = target_host(&cfg);
    let mut peer: Option<SocketAddr> = None;
    let (mut datagrams_in, mut datagrams_out) = (0u64, 0u64);
    let mut inbox = Inbox::new(socket);
    while !stop.load(Ordering::Relaxed) {
        let mut wait = !h.busy();
        while let Some((d, from)) = inbox.next(wait) {
            wait = false;
            datagrams_in += 1;
            peer = Some(from);
            let Some(answer) = host.take(d, h.inp.generation, &mut || Ok(())) else {
                h.send(d);
                continue;
            };
            for f in &answer.send {
                if inbox.socket.send_to(f, from).is_ok() {
                    datagrams_out += 1;
                }
            }
            if let Some(generation) = answer.session {
                h.inp.generation = generation as u64;
                h.inp.clear_barriers = true;
            }
        }
        for _ in 0..BATCH {
            h.step();
        }
        for f in std::mem::take(&mut h.answers) {
            if let Some(p) = peer {
                if inbox.socket.send_to(&f, p).is_ok() {
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
        host_frames: host.frames,
        counters: h.out,
    }
}

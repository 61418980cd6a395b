//! A simulated FPGA NIC on a UDP socket: every datagram that comes to the socket goes to the
//! verilated NIC ([`crate::nic`]) as an Ethernet frame from the link's host, and every UDP
//! datagram the NIC sends to that host goes back out of the socket to the last sender. The NIC's
//! ARP requests are answered on the link. What a NIC's host does is done here in software, as on
//! a server, and through the NIC's host path: it reads the copy of each datagram, answers the
//! handshake (which also sets the hardware's generation), flushes and heartbeats with the
//! software target core, and sends the answers out through the NIC.
//!
//! It runs in its own thread (a Verilator model stays on the thread that made it); `stop` ends it
//! and returns the volume and the figures.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use specmirror_abi::Header;
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;

use crate::nic::{Nic, NicCounters, NicParams, HOST_IP, NIC_PORT};
use crate::udp_target::{for_the_host, UdpTargetConfig, UdpTargetError};

/// The UDP port the link's host sends from (the bridge's peer, whatever its real port).
const PEER_PORT: u16 = 40000;
/// Clocks the model runs between looks at the socket while it has work.
const BATCH: u64 = 512;

/// What a run did.
#[derive(Debug)]
pub struct NicTargetReport {
    pub volume: Vec<u8>,
    pub clocks: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Writes that went out on the volume-write port.
    pub writes: u64,
    /// Handshakes, flushes and heartbeats the host's software answered.
    pub host_frames: u64,
    /// ARP requests the NIC sent for the host.
    pub arp_requests: u64,
    /// Frames from the NIC that failed a check (CRC, lengths, checksums): a NIC bug if not zero.
    pub malformed: u64,
    pub counters: NicCounters,
    /// Clocks per second of wall time the simulation ran at.
    pub clocks_per_s: f64,
}

pub struct NicTarget {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<NicTargetReport>,
}

impl NicTarget {
    pub fn start(listen: &str, cfg: UdpTargetConfig) -> Result<NicTarget, UdpTargetError> {
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
        Ok(NicTarget { addr, stop, thread })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the simulation and returns what it did.
    pub fn stop(self) -> Result<NicTargetReport, UdpTargetError> {
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

fn run(socket: UdpSocket, cfg: UdpTargetConfig, stop: Arc<AtomicBool>) -> NicTargetReport {
    let started = Instant::now();
    let mut core = Target::new(TargetConfig::new(
        cfg.volume_size,
        cfg.region_size,
        cfg.pair_id,
    ));
    // Generation 0: no session has it, so nothing reaches the target path before a handshake.
    let mut nic = Nic::new(NicParams::new(
        0,
        cfg.volume_size,
        cfg.region_size.trailing_zeros(),
    ));
    let mut peer: Option<SocketAddr> = None;
    let (mut datagrams_in, mut datagrams_out, mut host_frames) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    let mut blocking = true;
    while !stop.load(Ordering::Relaxed) {
        let mut waited = false;
        loop {
            let wait = !nic.busy() && !waited;
            if wait != blocking {
                socket.set_nonblocking(!wait).expect("socket mode");
                blocking = wait;
            }
            waited = true;
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            datagrams_in += 1;
            peer = Some(from);
            nic.send_datagram(PEER_PORT, NIC_PORT, &buf[..n]);
        }
        nic.run(BATCH);
        while let Some(d) = nic.datagrams.pop_front() {
            if let Some(p) = peer {
                if d.dst.1 == PEER_PORT && socket.send_to(&d.data, p).is_ok() {
                    datagrams_out += 1;
                }
            }
        }
        // The host's software: frames the hardware leaves to it.
        while let Some(d) = nic.host_in.pop_front() {
            let for_host = !d.flagged
                && Header::decode(&d.data)
                    .is_ok_and(|h| for_the_host(&h, nic.params.generation as u64));
            if !for_host {
                continue;
            }
            host_frames += 1;
            let Ok((frame, _)) = Frame::decode(&d.data) else {
                continue; // damaged: the source sends it again
            };
            let now = started.elapsed().as_nanos() as u64;
            let mut actions = core.handle(TargetEvent::Frame(frame), now);
            let mut i = 0;
            while i < actions.len() {
                match &actions[i] {
                    TargetAction::Send(f) => nic.host_send(d.from, &f.encode()),
                    TargetAction::SessionStarted { generation } => {
                        tracing::info!(generation, "simulated FPGA NIC: new session");
                        nic.new_session(*generation);
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
    }
    let secs = started.elapsed().as_secs_f64();
    NicTargetReport {
        clocks: nic.now,
        clocks_per_s: nic.now as f64 / secs.max(1e-9),
        datagrams_in,
        datagrams_out,
        writes: nic.writes.len() as u64,
        host_frames,
        arp_requests: nic
            .arps
            .iter()
            .filter(|a| a.op == crate::ether::ARP_REQUEST && a.target_ip == HOST_IP)
            .count() as u64,
        malformed: nic.malformed.len() as u64,
        counters: nic.counters(),
        volume: std::mem::take(&mut nic.volume),
    }
}

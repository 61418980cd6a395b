//! A simulated FPGA NIC on a UDP socket: every datagram that comes to the socket goes to the
//! verilated NIC ([`crate::nic`]) as an Ethernet frame from the link's host, and every UDP
//! datagram the NIC sends to that host goes back out of the socket to the last sender. The NIC's
//! ARP requests are answered on the link. What a NIC's host does is done here in software, as on
//! a server, and through the NIC's host path: it reads the copy of each datagram, answers the
//! handshake (which also sets the hardware's generation), flushes and heartbeats with the
//! software target core, and sends the answers out through the NIC.
//!
//! It runs in its own thread ([`Served`]); `stop` ends it and returns the volume and the figures.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::nic::{Nic, NicCounters, NicParams, HOST_IP, NIC_PORT};
use crate::served::{HostSoftware, Inbox, Served, ServedConfig, ServedError};

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

pub type NicTarget = Served<NicTargetReport>;

impl Served<NicTargetReport> {
    pub fn start(listen: &str, cfg: ServedConfig) -> Result<NicTarget, ServedError> {
        Served::spawn(listen, cfg, run)
    }
}

fn run(socket: UdpSocket, cfg: ServedConfig, stop: Arc<AtomicBool>) -> NicTargetReport {
    let started = Instant::now();
    let mut host = HostSoftware::new(&cfg);
    // Generation 0: no session has it, so nothing reaches the target path before a handshake.
    let mut nic = Nic::new(NicParams::new(
        0,
        cfg.volume_size,
        cfg.region_size.trailing_zeros(),
    ));
    let mut peer: Option<SocketAddr> = None;
    let (mut datagrams_in, mut datagrams_out) = (0u64, 0u64);
    let mut inbox = Inbox::new(socket);
    while !stop.load(Ordering::Relaxed) {
        let mut wait = !nic.busy();
        while let Some((d, from)) = inbox.next(wait) {
            wait = false;
            datagrams_in += 1;
            peer = Some(from);
            nic.send_datagram(PEER_PORT, NIC_PORT, d);
        }
        nic.run(BATCH);
        while let Some(d) = nic.datagrams.pop_front() {
            if let Some(p) = peer {
                if d.dst.1 == PEER_PORT && inbox.socket.send_to(&d.data, p).is_ok() {
                    datagrams_out += 1;
                }
            }
        }
        // The host's software reads the NIC's copy of each datagram and answers through the NIC.
        while let Some(d) = nic.host_in.pop_front() {
            if d.flagged {
                continue;
            }
            let Some(answer) = host.take(&d.data, nic.params.generation as u64, &mut || Ok(()))
            else {
                continue;
            };
            for f in &answer.send {
                nic.host_send(d.from, f);
            }
            if let Some(generation) = answer.session {
                nic.new_session(generation);
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
        host_frames: host.frames,
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

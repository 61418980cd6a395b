//! The simulated NIC: the ECP5 board's datapath (bitstreams/ecp5/nic.py: LiteEth's MAC, ARP,
//! IPv4 and UDP around the target path) verilated with LiteEth's PHY model, on a link with one
//! host that this harness plays. Whole Ethernet frames go in and out a byte per clock, with their
//! preamble and CRC; the harness answers the NIC's ARP requests, checks every frame the NIC sends
//! (CRC, lengths, IPv4 checksum) and keeps the volume the write port writes. The NIC's host path
//! (every datagram to the target's port copied out, datagrams from the host's software sent) is
//! there for what a NIC's host does: the handshake, flushes and heartbeats.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::net::Ipv4Addr;

use crate::ether::{self, Arp, Datagram, EtherError, Mac};
pub use crate::NicPort;

verilated_model!(
    /// The verilated NIC (`nic_sim`: LiteEth and the target path).
    VerilatedNic,
    NicPort,
    vnic_new,
    vnic_free,
    vnic_eval,
    vnic_set,
    vnic_get
);

/// The NIC's addresses (bitstreams/ecp5/nic.py).
pub const NIC_MAC: Mac = [0x10, 0xe2, 0xd5, 0x00, 0x00, 0x50];
pub const NIC_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 50);
/// The UDP port the target path listens on.
pub const NIC_PORT: u16 = 7800;
/// The host on the other end of the link, which the harness plays.
pub const HOST_MAC: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// Idle clocks between frames on the link (the inter-frame gap).
const GAP: usize = 12;
/// The NIC counts as busy for this many clocks after anything moved (its pipelines drain).
const SETTLE: u64 = 4096;

/// The target path's parameters, as a host sets them.
#[derive(Clone, Copy, Debug)]
pub struct NicParams {
    pub generation: u32,
    pub volume_bytes: u64,
    pub region_shift: u32,
    pub retry_backoff: u64,
    pub retry_limit: u64,
    pub data_timeout: u64,
    pub grant_timeout: u64,
}

impl NicParams {
    pub fn new(generation: u32, volume_bytes: u64, region_shift: u32) -> NicParams {
        NicParams {
            generation,
            volume_bytes,
            region_shift,
            retry_backoff: 64,
            retry_limit: 1000,
            data_timeout: 200_000,
            grant_timeout: 1 << 30,
        }
    }
}

/// A datagram to the target's port, as the NIC's host path copied it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDatagram {
    pub from: (Ipv4Addr, u16),
    pub data: Vec<u8>,
    /// The MAC flagged it (a bad Ethernet CRC).
    pub flagged: bool,
}

/// The NIC's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Datagrams that reached the target's port.
    pub datagrams: u64,
    /// Of those, the ones the MAC flagged.
    pub flagged: u64,
    pub held: u64,
    pub frames_bad: u64,
    pub lock_drops: u64,
    pub answer_drops: u64,
    pub data_drops: u64,
    pub stale: u64,
}

/// The NIC on its link, clocked by [`Nic::step`].
pub struct Nic {
    m: VerilatedNic,
    pub params: NicParams,
    /// Clocks so far.
    pub now: u64,
    /// Bytes for the PHY's receive side; `None` is an idle clock.
    wire_in: VecDeque<Option<u8>>,
    wire_out: Vec<u8>,
    /// UDP datagrams the NIC sent to the host.
    pub datagrams: VecDeque<Datagram>,
    /// ARP packets the NIC sent (its requests, its replies).
    pub arps: Vec<Arp>,
    /// Frames from the NIC that failed a check: a NIC bug.
    pub malformed: Vec<EtherError>,
    /// Frames from the NIC that were neither ARP nor UDP to the host.
    pub foreign: u64,
    /// Frames the NIC sent, of any kind.
    pub frames_out: u64,
    pub volume: Vec<u8>,
    burst: Vec<u8>,
    /// Writes through the volume-write port: (offset, length).
    pub writes: Vec<(u64, u64)>,
    dones: VecDeque<u64>,
    host_word: Vec<u8>,
    pub host_in: VecDeque<HostDatagram>,
    host_out: VecDeque<(Ipv4Addr, u16, Vec<u8>)>,
    host_out_word: usize,
    clear_barriers: bool,
    last_activity: u64,
    /// While set, the host's ARP replies wait here (a slow host), and go when it is cleared.
    pub hold_arp_replies: bool,
    held_arp_replies: Vec<Vec<u8>>,
    /// The clock each frame from the NIC started on, in order.
    pub frame_starts: Vec<u64>,
}

impl Nic {
    pub fn new(params: NicParams) -> Nic {
        let mut n = Nic {
            m: VerilatedNic::new(),
            params,
            now: 0,
            wire_in: VecDeque::new(),
            wire_out: Vec::new(),
            datagrams: VecDeque::new(),
            arps: Vec::new(),
            malformed: Vec::new(),
            foreign: 0,
            frames_out: 0,
            volume: vec![0; params.volume_bytes as usize],
            burst: Vec::new(),
            writes: Vec::new(),
            dones: VecDeque::new(),
            host_word: Vec::new(),
            host_in: VecDeque::new(),
            host_out: VecDeque::new(),
            host_out_word: 0,
            clear_barriers: false,
            last_activity: 0,
            hold_arp_replies: false,
            held_arp_replies: Vec::new(),
            frame_starts: Vec::new(),
        };
        n.m.set(NicPort::Rst, 1);
        for _ in 0..8 {
            n.m.tick();
        }
        n.m.set(NicPort::Rst, 0);
        n
    }

    /// Starts a new session: the generation the hardware takes frames of, barriers cleared.
    pub fn new_session(&mut self, generation: u32) {
        self.params.generation = generation;
        self.clear_barriers = true;
    }

    /// Puts a whole frame (preamble to CRC) on the link towards the NIC.
    pub fn send_wire(&mut self, wire: &[u8]) {
        self.wire_in.extend(wire.iter().map(|&b| Some(b)));
        self.wire_in.extend(std::iter::repeat_n(None, GAP));
    }

    /// Sends a UDP datagram from the host to the NIC.
    pub fn send_datagram(&mut self, src_port: u16, dst_port: u16, data: &[u8]) {
        let p = ether::udp_packet((HOST_IP, src_port), (NIC_IP, dst_port), data);
        self.send_wire(&ether::wire_frame(
            NIC_MAC,
            HOST_MAC,
            ether::ETHERTYPE_IPV4,
            &p,
        ));
    }

    /// Asks the NIC for its MAC address.
    pub fn send_arp_request(&mut self) {
        let a = Arp {
            op: ether::ARP_REQUEST,
            sender_mac: HOST_MAC,
            sender_ip: HOST_IP,
            target_mac: [0; 6],
            target_ip: NIC_IP,
        };
        self.send_wire(&ether::wire_frame(
            ether::BROADCAST,
            HOST_MAC,
            ether::ETHERTYPE_ARP,
            &a.encode(),
        ));
    }

    /// Queues a datagram from the host's software on the NIC's host path.
    pub fn host_send(&mut self, to: (Ipv4Addr, u16), data: &[u8]) {
        assert!(
            !data.is_empty() && data.len() <= 9000,
            "a host datagram of {} bytes",
            data.len()
        );
        self.host_out.push_back((to.0, to.1, data.to_vec()));
    }

    /// Clocks of link bytes (and gaps) queued towards the NIC.
    pub fn busy_bytes(&self) -> usize {
        self.wire_in.len()
    }

    /// Something is on its way in, out or to the volume, or moved lately.
    pub fn busy(&self) -> bool {
        !self.wire_in.is_empty()
            || (!self.hold_arp_replies && !self.held_arp_replies.is_empty())
            || !self.wire_out.is_empty()
            || !self.dones.is_empty()
            || !self.burst.is_empty()
            || !self.host_out.is_empty()
            || self.now < self.last_activity + SETTLE
    }

    pub fn counters(&self) -> NicCounters {
        let g = |p| self.m.get(p);
        NicCounters {
            datagrams: g(NicPort::Datagrams),
            flagged: g(NicPort::Flagged),
            held: g(NicPort::Held),
            frames_bad: g(NicPort::FramesBad),
            lock_drops: g(NicPort::LockDrops),
            answer_drops: g(NicPort::AnswerDrops),
            data_drops: g(NicPort::DataDrops),
            stale: g(NicPort::Stale),
        }
    }

    /// Runs `clocks` clocks.
    pub fn run(&mut self, clocks: u64) {
        for _ in 0..clocks {
            self.step();
        }
    }

    /// Runs until the NIC has settled, at most `limit` clocks; returns whether it settled.
    pub fn settle(&mut self, limit: u64) -> bool {
        let end = self.now + limit;
        while self.busy() {
            if self.now >= end {
                return false;
            }
            self.step();
        }
        true
    }

    /// One clock.
    pub fn step(&mut self) {
        if !self.hold_arp_replies {
            for r in std::mem::take(&mut self.held_arp_replies) {
                self.send_wire(&r);
            }
        }
        let p = self.params;
        let m = &mut self.m;
        m.set(NicPort::Generation, p.generation as u64);
        m.set(NicPort::RegionShift, p.region_shift as u64);
        m.set(NicPort::VolumeBytes, p.volume_bytes);
        m.set(
            NicPort::RegionCount,
            p.volume_bytes.div_ceil(1 << p.region_shift),
        );
        m.set(NicPort::RetryBackoff, p.retry_backoff);
        m.set(NicPort::RetryLimit, p.retry_limit);
        m.set(NicPort::DataTimeout, p.data_timeout);
        m.set(NicPort::GrantTimeout, p.grant_timeout);
        m.set(NicPort::ClearBarriers, self.clear_barriers as u64);
        self.clear_barriers = false;

        // The link into the NIC.
        let byte = self.wire_in.pop_front().flatten();
        m.set(NicPort::PhyRxValid, byte.is_some() as u64);
        m.set(NicPort::PhyRxData, byte.unwrap_or(0) as u64);
        if byte.is_some() {
            self.last_activity = self.now;
        }
        // The volume takes every word; a write completes the clock after its last word.
        m.set(NicPort::WrReady, 1);
        let done_offered = !self.dones.is_empty();
        m.set(NicPort::DoneValid, done_offered as u64);
        m.set(NicPort::DoneSlot, self.dones.front().copied().unwrap_or(0));
        m.set(NicPort::DoneError, 0);
        // The host path out.
        let host_word = self.host_out.front().map(|(ip, port, d)| {
            let at = self.host_out_word * 8;
            let mut w = [0u8; 8];
            let n = (d.len() - at).min(8);
            w[..n].copy_from_slice(&d[at..at + n]);
            let last = at + 8 >= d.len();
            (u64::from_le_bytes(w), last, n, *ip, *port, d.len())
        });
        m.set(NicPort::HostTxValid, host_word.is_some() as u64);
        if let Some((w, last, n, ip, port, len)) = host_word {
            m.set(NicPort::HostTxData, w);
            m.set(NicPort::HostTxLast, last as u64);
            m.set(NicPort::HostTxLastBe, if last { 1 << (n - 1) } else { 0 });
            m.set(NicPort::HostTxLength, len as u64);
            m.set(NicPort::HostTxIp, u32::from(ip) as u64);
            m.set(NicPort::HostTxPort, port as u64);
        }
        m.eval();

        // The link out of the NIC.
        if m.get(NicPort::PhyTxValid) != 0 {
            if self.wire_out.is_empty() {
                self.frame_starts.push(self.now);
            }
            self.wire_out.push(m.get(NicPort::PhyTxData) as u8);
            self.last_activity = self.now;
        } else if !self.wire_out.is_empty() {
            let w = std::mem::take(&mut self.wire_out);
            self.frame_from_nic(&w);
        }
        // The volume-write port.
        let m = &mut self.m;
        if m.get(NicPort::WrValid) != 0 {
            self.last_activity = self.now;
            self.burst
                .extend_from_slice(&m.get(NicPort::WrData).to_le_bytes());
            if m.get(NicPort::WrLast) != 0 {
                let (off, len) = (m.get(NicPort::WrOffset), m.get(NicPort::WrLen));
                let (o, l) = (off as usize, len as usize);
                assert!(
                    self.burst.len() >= l && self.burst.len() < l + 8,
                    "a write of {l} bytes came in {} bytes of words",
                    self.burst.len()
                );
                assert!(
                    off + len <= self.params.volume_bytes,
                    "a write at {off}+{len} past the volume's end"
                );
                self.volume[o..o + l].copy_from_slice(&self.burst[..l]);
                self.burst.clear();
                self.writes.push((off, len));
                self.dones.push_back(m.get(NicPort::WrSlot));
            }
        }
        if done_offered && m.get(NicPort::DoneReady) != 0 {
            self.dones.pop_front();
        }
        // The host path in: a copy of every datagram to the target's port.
        if m.get(NicPort::HostRxValid) != 0 {
            self.last_activity = self.now;
            let w = m.get(NicPort::HostRxData).to_le_bytes();
            if m.get(NicPort::HostRxLast) != 0 {
                let be = m.get(NicPort::HostRxLastBe) as u8;
                let n = if be == 0 {
                    8
                } else {
                    8 - be.leading_zeros() as usize
                };
                self.host_word.extend_from_slice(&w[..n]);
                let ip = Ipv4Addr::from(m.get(NicPort::HostRxIp) as u32);
                self.host_in.push_back(HostDatagram {
                    from: (ip, m.get(NicPort::HostRxPort) as u16),
                    data: std::mem::take(&mut self.host_word),
                    flagged: m.get(NicPort::HostRxError) != 0,
                });
            } else {
                self.host_word.extend_from_slice(&w);
            }
        }
        if let Some((_, last, ..)) = host_word.filter(|_| m.get(NicPort::HostTxReady) != 0) {
            self.last_activity = self.now;
            if last {
                self.host_out.pop_front();
                self.host_out_word = 0;
            } else {
                self.host_out_word += 1;
            }
        }
        self.m.tick();
        self.now += 1;
    }

    /// A frame the NIC sent: checked, ARP requests for the host answered, datagrams kept.
    fn frame_from_nic(&mut self, wire: &[u8]) {
        self.frames_out += 1;
        let f = match ether::parse_wire_frame(wire) {
            Ok(f) => f,
            Err(e) => {
                self.malformed.push(e);
                return;
            }
        };
        match f.ethertype {
            ether::ETHERTYPE_ARP => match Arp::decode(&f.payload) {
                Ok(a) => {
                    self.arps.push(a);
                    if a.op == ether::ARP_REQUEST && a.target_ip == HOST_IP {
                        let r = Arp {
                            op: ether::ARP_REPLY,
                            sender_mac: HOST_MAC,
                            sender_ip: HOST_IP,
                            target_mac: a.sender_mac,
                            target_ip: a.sender_ip,
                        };
                        let w = ether::wire_frame(
                            a.sender_mac,
                            HOST_MAC,
                            ether::ETHERTYPE_ARP,
                            &r.encode(),
                        );
                        if self.hold_arp_replies {
                            self.held_arp_replies.push(w);
                        } else {
                            self.send_wire(&w);
                        }
                    }
                }
                Err(e) => self.malformed.push(e),
            },
            ether::ETHERTYPE_IPV4 if f.dst == HOST_MAC => match ether::parse_udp_packet(&f.payload)
            {
                Ok(d) if d.dst.0 == HOST_IP && d.src == (NIC_IP, NIC_PORT) => {
                    self.datagrams.push_back(d)
                }
                Ok(_) => self.foreign += 1,
                Err(e) => self.malformed.push(e),
            },
            _ => self.foreign += 1,
        }
    }
}

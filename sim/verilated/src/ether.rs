//! Ethernet II, ARP, IPv4 and UDP, as much as a harness needs to talk to the simulated NIC: it
//! builds the frames a host on the link would send (with the preamble and the Ethernet CRC the
//! PHY carries) and takes apart the frames the NIC sends, checking every length, checksum and CRC
//! on the way, so a NIC that sends a malformed frame fails the test that caught it.

use std::net::Ipv4Addr;

pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const PROTO_UDP: u8 = 17;
/// Seven preamble bytes and the start-of-frame delimiter.
pub const PREAMBLE: [u8; 8] = [0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0xd5];
/// Shortest Ethernet frame without its CRC; shorter ones are padded with zeros.
pub const MIN_FRAME: usize = 60;
const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EtherError {
    #[error("frame of {0} bytes does not start with the preamble and start-of-frame delimiter")]
    Preamble(usize),
    #[error("frame of {0} bytes is shorter than the 64 bytes Ethernet requires")]
    Short(usize),
    #[error("Ethernet CRC {got:#010x}, computed {want:#010x}")]
    Crc { got: u32, want: u32 },
    #[error("IPv4 header: {0}")]
    Ipv4(&'static str),
    #[error("UDP header: {0}")]
    Udp(&'static str),
    #[error("ARP: {0}")]
    Arp(&'static str),
}

/// CRC-32 of IEEE 802.3 (reflected, polynomial 0x04c11db7), as the Ethernet FCS carries it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn ip_checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame as the PHY carries it: preamble, header, payload padded to the minimum
/// length, CRC.
pub fn wire_frame(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(PREAMBLE.len() + ETH_HEADER + payload.len() + 4 + MIN_FRAME);
    f.extend_from_slice(&PREAMBLE);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < PREAMBLE.len() + MIN_FRAME {
        f.push(0);
    }
    let crc = crc32(&f[PREAMBLE.len()..]);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// An Ethernet frame taken off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthFrame {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    /// Everything after the header, padding included.
    pub payload: Vec<u8>,
}

/// Checks a frame as the PHY delivered it (preamble, CRC, length) and takes it apart.
pub fn parse_wire_frame(w: &[u8]) -> Result<EthFrame, EtherError> {
    if w.len() < PREAMBLE.len() || w[..PREAMBLE.len()] != PREAMBLE {
        return Err(EtherError::Preamble(w.len()));
    }
    let f = &w[PREAMBLE.len()..];
    if f.len() < MIN_FRAME + 4 {
        return Err(EtherError::Short(f.len()));
    }
    let (body, fcs) = f.split_at(f.len() - 4);
    let got = u32::from_le_bytes(fcs.try_into().expect("4 bytes"));
    let want = crc32(body);
    if got != want {
        return Err(EtherError::Crc { got, want });
    }
    Ok(EthFrame {
        dst: body[0..6].try_into().expect("6 bytes"),
        src: body[6..12].try_into().expect("6 bytes"),
        ethertype: u16::from_be_bytes([body[12], body[13]]),
        payload: body[ETH_HEADER..].to_vec(),
    })
}

/// An IPv4 packet holding one UDP datagram (UDP checksum 0: none, as IPv4 allows).
pub fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), data: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER + UDP_HEADER + data.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    p.extend_from_slice(&[64, PROTO_UDP, 0, 0]);
    p.extend_from_slice(&src.0.octets());
    p.extend_from_slice(&dst.0.octets());
    let sum = ip_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&((UDP_HEADER + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

/// A UDP datagram taken out of an IPv4 packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub data: Vec<u8>,
}

/// Checks an IPv4 packet (version, header length, total length, header checksum, protocol) and
/// the UDP header in it, and returns the datagram. Bytes past the IPv4 total length (Ethernet
/// padding) are ignored.
pub fn parse_udp_packet(p: &[u8]) -> Result<Datagram, EtherError> {
    if p.len() < IPV4_HEADER {
        return Err(EtherError::Ipv4("shorter than a header"));
    }
    if p[0] != 0x45 {
        return Err(EtherError::Ipv4("not version 4 with a 20-byte header"));
    }
    let total = u16::from_be_bytes([p[2], p[3]]) as usize;
    if total < IPV4_HEADER + UDP_HEADER || total > p.len() {
        return Err(EtherError::Ipv4("total length outside the frame"));
    }
    if ip_checksum(&p[..IPV4_HEADER]) != 0 {
        return Err(EtherError::Ipv4("header checksum wrong"));
    }
    if p[9] != PROTO_UDP {
        return Err(EtherError::Ipv4("not UDP"));
    }
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    let u = &p[IPV4_HEADER..total];
    let len = u16::from_be_bytes([u[4], u[5]]) as usize;
    if len != u.len() {
        return Err(EtherError::Udp(
            "length disagrees with the IPv4 total length",
        ));
    }
    Ok(Datagram {
        src: (ip(12), u16::from_be_bytes([u[0], u[1]])),
        dst: (ip(16), u16::from_be_bytes([u[2], u[3]])),
        data: u[UDP_HEADER..].to_vec(),
    })
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

impl Arp {
    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&self.op.to_be_bytes());
        p.extend_from_slice(&self.sender_mac);
        p.extend_from_slice(&self.sender_ip.octets());
        p.extend_from_slice(&self.target_mac);
        p.extend_from_slice(&self.target_ip.octets());
        p
    }

    pub fn decode(p: &[u8]) -> Result<Arp, EtherError> {
        if p.len() < 28 {
            return Err(EtherError::Arp("shorter than 28 bytes"));
        }
        if p[..6] != [0, 1, 8, 0, 6, 4] {
            return Err(EtherError::Arp("not IPv4 over Ethernet"));
        }
        let op = u16::from_be_bytes([p[6], p[7]]);
        if op != ARP_REQUEST && op != ARP_REPLY {
            return Err(EtherError::Arp("neither request nor reply"));
        }
        let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
        Ok(Arp {
            op,
            sender_mac: p[8..14].try_into().expect("6 bytes"),
            sender_ip: ip(14),
            target_mac: p[18..24].try_into().expect("6 bytes"),
            target_ip: ip(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value() {
        // The CRC-32 catalogue's check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn a_wire_frame_parses_back_and_a_flipped_bit_fails_its_crc() {
        let mac = [2, 0, 0, 0, 0, 1];
        let w = wire_frame(BROADCAST, mac, ETHERTYPE_ARP, &[1, 2, 3]);
        assert_eq!(w.len(), 8 + 60 + 4);
        let f = parse_wire_frame(&w).unwrap();
        assert_eq!((f.dst, f.src, f.ethertype), (BROADCAST, mac, ETHERTYPE_ARP));
        assert_eq!(&f.payload[..3], &[1, 2, 3]);
        let mut bad = w.clone();
        bad[20] ^= 4;
        assert!(matches!(
            parse_wire_frame(&bad),
            Err(EtherError::Crc { .. })
        ));
        assert!(matches!(
            parse_wire_frame(&w[1..]),
            Err(EtherError::Preamble(_))
        ));
    }

    #[test]
    fn a_udp_packet_parses_back_and_its_checksum_is_checked() {
        let a = (Ipv4Addr::new(192, 168, 1, 1), 4000);
        let b = (Ipv4Addr::new(192, 168, 1, 50), 7800);
        let mut p = udp_packet(a, b, b"hello");
        let d = parse_udp_packet(&p).unwrap();
        assert_eq!((d.src, d.dst, d.data.as_slice()), (a, b, &b"hello"[..]));
        // Ethernet padding after the packet is ignored.
        p.extend_from_slice(&[0; 9]);
        assert_eq!(parse_udp_packet(&p).unwrap().data, b"hello");
        p[8] ^= 1; // TTL: the header checksum no longer holds
        assert_eq!(
            parse_udp_packet(&p),
            Err(EtherError::Ipv4("header checksum wrong"))
        );
    }

    #[test]
    fn arp_round_trips() {
        let a = Arp {
            op: ARP_REQUEST,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: Ipv4Addr::new(192, 168, 1, 1),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(192, 168, 1, 50),
        };
        assert_eq!(Arp::decode(&a.encode()).unwrap(), a);
        assert!(Arp::decode(&a.encode()[..27]).is_err());
    }
}

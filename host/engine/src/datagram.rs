//! Frames over UDP: one protocol frame per datagram, no stream underneath.
//!
//! The protocol already survives a lossy network on its own: every lock and every write carries a
//! sequence number, the target processes lock commands in order through its reorder window and
//! answers duplicates again, and the source retransmits from its rollback log on a timer. So a
//! datagram that is lost, duplicated, reordered or corrupted (the frame's CRC32C catches that) is
//! dropped or answered like any frame over a broken stream, and nothing acknowledged depends on
//! the network delivering it.
//!
//! A frame must fit one datagram of the path MTU: the source sends a longer write's DATA in pieces
//! of at most [`Transport::max_payload`] bytes under its one lock, and the target puts them
//! together before the write lands (see `docs/protocol.md`).

use std::net::SocketAddr;

use specmirror_abi::{frame_len, FrameError, Header, HEADER_LEN, MAX_PAYLOAD, TRAILER_LEN};
use specmirror_core::Frame;

/// IPv6 header plus UDP header.
const IPV6_UDP_OVERHEAD: u32 = 48;
/// Smallest MTU accepted: IPv6's minimum link MTU.
pub const MIN_MTU: u32 = 1280;
/// Largest MTU accepted: a jumbo frame.
pub const MAX_MTU: u32 = 9000;
/// The MTU assumed unless told otherwise: plain Ethernet.
pub const DEFAULT_MTU: u32 = 1500;
/// Socket buffers asked for; the kernel caps them at `net.core.{r,w}mem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

/// How frames travel between the two ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection: frames back to back in a byte stream.
    Tcp,
    /// UDP datagrams of at most `mtu` bytes of IP packet, one frame each.
    Udp { mtu: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    #[error("MTU {0} is outside {MIN_MTU}..={MAX_MTU}")]
    Mtu(u32),
    #[error("datagram of {got} bytes, but the frame in it is {want} bytes")]
    Length { got: usize, want: usize },
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
}

impl Transport {
    /// Checks the MTU of a UDP transport.
    pub fn udp(mtu: u32) -> Result<Transport, DatagramError> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(DatagramError::Mtu(mtu));
        }
        Ok(Transport::Udp { mtu })
    }

    /// The largest DATA payload one frame may carry on this transport, a multiple of 8 bytes so
    /// the frame needs no padding. Over UDP it is what an IPv6 packet of the MTU leaves, so one
    /// figure serves both address families.
    pub fn max_payload(self) -> u32 {
        match self {
            Transport::Tcp => MAX_PAYLOAD,
            Transport::Udp { mtu } => {
                (mtu - IPV6_UDP_OVERHEAD - HEADER_LEN as u32 - TRAILER_LEN as u32) / 8 * 8
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp { .. } => "udp",
        }
    }
}

/// The frame a datagram holds; anything but exactly one well-formed frame is refused.
pub fn decode(d: &[u8]) -> Result<Frame, DatagramError> {
    let h = Header::decode(d)?;
    let want = frame_len(h.payload_len);
    if d.len() != want {
        return Err(DatagramError::Length { got: d.len(), want });
    }
    let (f, _) = Frame::decode(d)?;
    Ok(f)
}

/// Splits a batch of encoded frames (as the cores' send queues hold them) into one slice per
/// frame. The batch comes from this process's own encoder, so a frame boundary it cannot find is
/// a bug: the rest of the batch is dropped and the protocol retransmits.
pub fn frames(mut batch: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let h = Header::decode(batch).ok()?;
        let n = frame_len(h.payload_len);
        if n > batch.len() {
            return None;
        }
        let (f, rest) = batch.split_at(n);
        batch = rest;
        Some(f)
    })
}

/// A UDP socket bound to `addr`, with large buffers: a burst of queued writes is many datagrams.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    let s = tokio::net::UdpSocket::from_std(s)?;
    grow_buffers(&s);
    Ok(s)
}

/// Largest datagram ever received: a frame of the largest MTU, with room to spare.
pub const RECV_BUFFER: usize = 64 << 10;

/// A UDP socket of the family of `peer`, on an ephemeral port.
pub fn bind_for(peer: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let any: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    bind(any)
}

/// Sends queued frames one datagram each, to `to` or (with `None`) to the socket's connected
/// peer, until the core drops the link. A send the kernel refuses (the peer's port closed, no
/// route) loses that datagram only: the protocol retransmits.
pub(crate) async fn send_queued(
    mut q: crate::source::LinkReceiver,
    sock: std::sync::Arc<tokio::net::UdpSocket>,
    to: Option<SocketAddr>,
) {
    while let Some(batch) = q.recv().await {
        for f in frames(&batch) {
            let r = match to {
                Some(a) => sock.send_to(f, a).await,
                None => sock.send(f).await,
            };
            if let Err(e) = r {
                tracing::trace!("datagram not sent: {e}");
            }
        }
    }
}

fn grow_buffers(s: &tokio::net::UdpSocket) {
    let r = socket2::SockRef::from(s);
    for (what, res) in [
        ("receive", r.set_recv_buffer_size(SOCKET_BUFFER)),
        ("send", r.set_send_buffer_size(SOCKET_BUFFER)),
    ] {
        if let Err(e) = res {
            tracing::debug!("cannot grow the UDP {what} buffer: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use specmirror_abi::FrameType;

    /// IPv4 header plus UDP header.
    const IPV4_UDP_OVERHEAD: u32 = 28;

    #[test]
    fn payload_fits_the_mtu_in_both_families() {
        for mtu in [MIN_MTU, DEFAULT_MTU, 4000, MAX_MTU] {
            let t = Transport::udp(mtu).unwrap();
            let p = t.max_payload();
            assert_eq!(p % 8, 0);
            let packet = frame_len(p) as u32 + IPV6_UDP_OVERHEAD;
            assert!(packet <= mtu, "{mtu}: {packet}");
            assert!(packet + 8 > mtu, "{mtu}: room for 8 more bytes left unused");
            assert!(frame_len(p) as u32 + IPV4_UDP_OVERHEAD <= mtu);
        }
        assert_eq!(Transport::udp(DEFAULT_MTU).unwrap().max_payload(), 1376);
        assert!(Transport::udp(MAX_MTU).unwrap().max_payload() >= 4096);
        assert!(matches!(
            Transport::udp(1000),
            Err(DatagramError::Mtu(1000))
        ));
        assert!(matches!(
            Transport::udp(9001),
            Err(DatagramError::Mtu(9001))
        ));
    }

    #[test]
    fn one_frame_per_datagram_exactly() {
        let mut h = Header::new(FrameType::Data);
        h.seq = 9;
        let f = Frame::new(h, vec![7; 1000]).encode();
        assert_eq!(decode(&f).unwrap().payload, vec![7; 1000]);
        let mut two = f.clone();
        two.extend_from_slice(&f);
        assert!(matches!(
            decode(&two),
            Err(DatagramError::Length { got, want }) if got == 2 * want
        ));
        assert!(matches!(
            decode(&f[..f.len() - 8]),
            Err(DatagramError::Length { .. })
        ));
        let mut bad = f.clone();
        bad[100] ^= 1;
        assert!(matches!(
            decode(&bad),
            Err(DatagramError::Frame(FrameError::BadCrc { .. }))
        ));
        assert!(decode(&[0u8; 10]).is_err());
    }

    #[test]
    fn splits_a_batch_into_its_frames() {
        let a = Frame::new(Header::new(FrameType::Data), vec![1; 13]).encode();
        let b = Frame::control(Header::new(FrameType::Heartbeat)).encode();
        let mut batch = a.clone();
        batch.extend_from_slice(&b);
        batch.extend_from_slice(&a);
        let got: Vec<&[u8]> = frames(&batch).collect();
        assert_eq!(got, vec![&a[..], &b[..], &a[..]]);
        batch.truncate(batch.len() - 1);
        assert_eq!(frames(&batch).count(), 2, "a cut frame is not sent");
    }
}

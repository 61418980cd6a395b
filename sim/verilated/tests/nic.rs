//! The simulated NIC (LiteEth's MAC, ARP, IPv4 and UDP around the target path, verilated with
//! LiteEth's PHY model): whole Ethernet frames in and out. It answers ARP; LOCK and DATA in UDP
//! datagrams are answered with LOCK_GRANTED and WRITE_DONE and the data lands in the volume;
//! bad frames (Ethernet CRC, truncated, IPv4 checksum, foreign port, a lock out of range) are
//! dropped and counted, and write nothing.

use specmirror_abi::{FrameType, Header, RejectReason};
use specmirror_core::Frame;
use specmirror_hdl::target_path::host::{self as tp, GENERATION};
use specmirror_verilated::ether::{self, Arp, ARP_REPLY, ARP_REQUEST};
use specmirror_verilated::nic::{Nic, NicParams, HOST_IP, HOST_MAC, NIC_IP, NIC_MAC, NIC_PORT};

const VOLUME: u64 = 256 << 10;
const SHIFT: u32 = 12;
const PEER: u16 = 40000;
/// Clocks enough for any one exchange here (a 4 KiB frame is about 4,200 clocks on the link).
const LIMIT: u64 = 200_000;

fn nic() -> Nic {
    Nic::new(NicParams::new(GENERATION, VOLUME, SHIFT))
}

/// The frames the NIC sent to the host since the last call, decoded.
fn answers(n: &mut Nic) -> Vec<Header> {
    assert!(n.settle(LIMIT), "the NIC did not settle in {LIMIT} clocks");
    assert!(
        n.malformed.is_empty(),
        "the NIC sent malformed frames: {:?}",
        n.malformed
    );
    n.datagrams
        .drain(..)
        .map(|d| {
            assert_eq!(d.dst, (HOST_IP, PEER), "answered to the sender");
            let (f, _) = Frame::decode(&d.data).expect("a whole frame in a datagram");
            f.header
        })
        .collect()
}

#[test]
fn the_nic_answers_arp_with_its_address() {
    let mut n = nic();
    n.send_arp_request();
    assert!(n.settle(LIMIT));
    assert!(n.malformed.is_empty(), "{:?}", n.malformed);
    let reply = n
        .arps
        .iter()
        .find(|a| a.op == ARP_REPLY)
        .expect("an ARP reply");
    assert_eq!(
        (
            reply.sender_mac,
            reply.sender_ip,
            reply.target_mac,
            reply.target_ip
        ),
        (NIC_MAC, NIC_IP, HOST_MAC, HOST_IP)
    );
    // A request for another address is not answered.
    n.arps.clear();
    let other = Arp {
        op: ARP_REQUEST,
        sender_mac: HOST_MAC,
        sender_ip: HOST_IP,
        target_mac: [0; 6],
        target_ip: std::net::Ipv4Addr::new(192, 168, 1, 51),
    };
    n.send_wire(&ether::wire_frame(
        ether::BROADCAST,
        HOST_MAC,
        ether::ETHERTYPE_ARP,
        &other.encode(),
    ));
    assert!(n.settle(LIMIT));
    assert!(n.arps.is_empty(), "{:?}", n.arps);
}

#[test]
fn a_lock_and_its_data_in_udp_are_granted_written_and_done() {
    let mut n = nic();
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    // Speculative: the data right behind its lock.
    n.send_datagram(PEER, NIC_PORT, &tp::lock(1, 1, 2, 1));
    n.send_datagram(
        PEER,
        NIC_PORT,
        &tp::data(1, 1, 2 << SHIFT, &payload, Default::default()),
    );
    let a = answers(&mut n);
    let kinds: Vec<_> = a.iter().map(|h| (h.ty, h.lock_id)).collect();
    assert_eq!(
        kinds,
        vec![(FrameType::LockGranted, 1), (FrameType::WriteDone, 1)]
    );
    // The NIC asked for the host's address before its first answer.
    assert!(n
        .arps
        .iter()
        .any(|a| a.op == ARP_REQUEST && a.target_ip == HOST_IP && a.sender_ip == NIC_IP));
    assert_eq!(n.writes, vec![(2 << SHIFT, 4096)]);
    assert_eq!(&n.volume[2 << SHIFT..3 << SHIFT], &payload[..]);
    let c = n.counters();
    assert_eq!((c.datagrams, c.flagged, c.frames_bad, c.held), (2, 0, 0, 0));
    // The host path saw both datagrams, whole.
    let host: Vec<_> = n.host_in.drain(..).collect();
    assert_eq!(host.len(), 2);
    assert_eq!(host[0].data, tp::lock(1, 1, 2, 1));
    assert_eq!(host[0].from, (HOST_IP, PEER));
    assert!(!host[1].flagged);
}

#[test]
fn bad_frames_are_dropped_counted_and_write_nothing() {
    let mut n = nic();
    let lock = tp::lock(1, 1, 0, 1);
    let packet = ether::udp_packet((HOST_IP, PEER), (NIC_IP, NIC_PORT), &lock);

    // A wrong Ethernet CRC: the MAC flags it, the target path drops it.
    let mut w = ether::wire_frame(NIC_MAC, HOST_MAC, ether::ETHERTYPE_IPV4, &packet);
    let end = w.len() - 1;
    w[end] ^= 0x40;
    n.send_wire(&w);
    assert!(answers(&mut n).is_empty(), "Ethernet CRC");
    let c = n.counters();
    assert_eq!((c.datagrams, c.flagged, c.frames_bad), (1, 1, 1), "{c:?}");
    assert!(n.host_in.pop_front().is_some_and(|d| d.flagged));

    // Truncated: a datagram whose frame lost its last 16 bytes (the IPv4 and UDP lengths say so).
    n.send_datagram(PEER, NIC_PORT, &lock[..lock.len() - 16]);
    assert!(answers(&mut n).is_empty(), "truncated");
    assert_eq!(n.counters().frames_bad, 2);

    // A wrong IPv4 header checksum: IP drops it before UDP.
    let mut bad_ip = packet.clone();
    bad_ip[10] ^= 0x01;
    n.send_wire(&ether::wire_frame(
        NIC_MAC,
        HOST_MAC,
        ether::ETHERTYPE_IPV4,
        &bad_ip,
    ));
    assert!(answers(&mut n).is_empty(), "IPv4 checksum");
    // A foreign UDP port: no port takes it.
    n.send_datagram(PEER, NIC_PORT + 1, &lock);
    assert!(answers(&mut n).is_empty(), "foreign port");
    // Another host's IP address.
    let other = ether::udp_packet(
        (HOST_IP, PEER),
        (std::net::Ipv4Addr::new(192, 168, 1, 51), NIC_PORT),
        &lock,
    );
    n.send_wire(&ether::wire_frame(
        NIC_MAC,
        HOST_MAC,
        ether::ETHERTYPE_IPV4,
        &other,
    ));
    assert!(answers(&mut n).is_empty(), "another IP address");
    assert_eq!(n.counters().datagrams, 2, "none of these reached the port");

    // A lock past the volume's end is rejected; its data writes nothing.
    let regions = VOLUME >> SHIFT;
    n.send_datagram(PEER, NIC_PORT, &tp::lock(1, 1, regions, 1));
    n.send_datagram(
        PEER,
        NIC_PORT,
        &tp::data(1, 1, regions << SHIFT, &[9u8; 512], Default::default()),
    );
    // The lock's rejection, and again for its data (as the software target answers it).
    let a = answers(&mut n);
    assert_eq!(a.len(), 2, "{a:?}");
    for h in &a {
        assert_eq!((h.ty, h.lock_id), (FrameType::LockRejected, 1));
        assert_eq!(h.arg, RejectReason::OutOfRange as u64);
    }

    assert!(n.writes.is_empty(), "{:?}", n.writes);
    assert!(n.volume.iter().all(|&b| b == 0));
    assert_eq!(n.counters().held, 0);

    // And the NIC still works: the next lock in order and its data.
    n.send_datagram(PEER, NIC_PORT, &tp::lock(2, 2, 0, 1));
    n.send_datagram(
        PEER,
        NIC_PORT,
        &tp::data(2, 2, 0, &[5u8; 512], Default::default()),
    );
    let a = answers(&mut n);
    assert_eq!(
        a.iter().map(|h| h.ty).collect::<Vec<_>>(),
        vec![FrameType::LockGranted, FrameType::WriteDone]
    );
    assert_eq!(n.writes, vec![(0, 512)]);
}

#[test]
fn the_host_path_sends_datagrams_through_the_nic() {
    let mut n = nic();
    let mut h = Header::new(FrameType::Heartbeat);
    h.generation = GENERATION;
    let f = specmirror_abi::frame::encode(&h, &[]);
    n.host_send((HOST_IP, PEER), &f);
    let a = answers(&mut n);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].ty, FrameType::Heartbeat);
    // Nothing went to the target path.
    assert_eq!(n.counters().datagrams, 0);
}

#[test]
fn receive_goes_on_while_answers_wait_for_arp() {
    let mut n = nic();
    n.hold_arp_replies = true;
    // Three locks and their data while the NIC cannot send: it waits for the host's address.
    for i in 1..=3u64 {
        n.send_datagram(PEER, NIC_PORT, &tp::lock(i, i, i, 1));
        n.send_datagram(
            PEER,
            NIC_PORT,
            &tp::data(i, i, i << SHIFT, &[i as u8; 1024], Default::default()),
        );
    }
    n.run(40_000);
    assert!(n.datagrams.is_empty(), "no answer can leave before ARP");
    assert!(n.arps.iter().any(|a| a.op == ARP_REQUEST));
    // Every datagram was taken and every write made: receive did not wait for transmit.
    assert_eq!(n.counters().datagrams, 6);
    assert_eq!(n.writes.len(), 3, "{:?}", n.writes);
    // The host answers ARP at last, and every answer goes out.
    n.hold_arp_replies = false;
    let a = answers(&mut n);
    let mut got: Vec<_> = a.iter().map(|h| (h.lock_id, h.ty)).collect();
    got.sort_by_key(|&(id, ty)| (id, ty as u8));
    let want: Vec<_> = (1..=3u64)
        .flat_map(|i| [(i, FrameType::LockGranted), (i, FrameType::WriteDone)])
        .collect();
    assert_eq!(got, want);
    assert_eq!(n.counters().answer_drops, 0);
}

/// Clocks through the NIC for one lock and one 4 KiB write, once the host's address is known.
/// Printed (`--nocapture`), not asserted: figures, not a timed test.
#[test]
fn latency_through_the_nic() {
    let mut n = nic();
    n.send_datagram(PEER, NIC_PORT, &tp::lock(1, 1, 0, 1));
    n.send_datagram(
        PEER,
        NIC_PORT,
        &tp::data(1, 1, 0, &[1; 4096], Default::default()),
    );
    assert_eq!(answers(&mut n).len(), 2);

    let lock = tp::lock(2, 2, 1, 1);
    let start = n.now;
    let out_before = n.frame_starts.len();
    n.send_datagram(PEER, NIC_PORT, &lock);
    let lock_wire = n.busy_bytes();
    n.send_datagram(
        PEER,
        NIC_PORT,
        &tp::data(2, 2, 1 << SHIFT, &[2; 4096], Default::default()),
    );
    let both_wire = n.busy_bytes();
    let a = answers(&mut n);
    assert_eq!(
        a.iter().map(|h| h.ty).collect::<Vec<_>>(),
        vec![FrameType::LockGranted, FrameType::WriteDone]
    );
    let starts = &n.frame_starts[out_before..];
    assert_eq!(starts.len(), 2);
    eprintln!(
        "NIC latency (clocks, a byte per clock on the PHY model): LOCK frame {lock_wire} bytes on the wire; \
         LOCK's first byte in to LOCK_GRANTED's first byte out {}; LOCK + 4 KiB DATA {both_wire} bytes on the wire; \
         LOCK's first byte in to WRITE_DONE's first byte out {}",
        starts[0] - start,
        starts[1] - start
    );
    // The answer cannot start before the lock frame is in (its CRC decides), nor WRITE_DONE
    // before the data frame is.
    assert!(starts[0] - start >= lock_wire as u64);
    assert!(starts[1] - start >= both_wire as u64);
}

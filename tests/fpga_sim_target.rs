//! The software source mirrors over UDP to a simulated FPGA target: the verilated target path
//! (`hdl::TargetPath`: frame parser, lock table, data buffer, answer cache, answers) takes every
//! LOCK, DATA and ABORT word by word and writes a volume in memory; the host's part of a NIC (the
//! handshake, flushes, heartbeats) is the software target core. qemu-io writes through the
//! source's NBD export, and the target's volume ends identical to the source's. The last test runs
//! the whole simulated NIC instead: every datagram crosses LiteEth's PHY model, MAC, IPv4 and UDP
//! as an Ethernet frame, and the NIC resolves the source's address with ARP.

mod common;

use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};
use specmirror_verilated::nic_target::NicTarget;
use specmirror_verilated::udp_target::{UdpTarget, UdpTargetConfig};

const SIZE: u64 = 4 << 20;

/// The simulated FPGA: the target path alone behind the socket, or the whole NIC (LiteEth's MAC,
/// ARP, IPv4 and UDP around it) with Ethernet frames between the socket and its PHY.
enum Sim {
    Path(UdpTarget),
    Nic(NicTarget),
}

/// What every simulated target reports.
struct Ended {
    volume: Vec<u8>,
    writes: u64,
    held: u64,
    host_frames: u64,
    summary: String,
}

impl Sim {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Sim::Path(t) => t.addr(),
            Sim::Nic(t) => t.addr(),
        }
    }

    fn stop(self) -> Ended {
        match self {
            Sim::Path(t) => {
                let r = t.stop().unwrap();
                let c = r.counters;
                assert_eq!(c.data_violations, 0);
                let summary = format!(
                    "{} clocks, {} datagrams in, {} out, {} writes, {} frames for the host; bad {}, \
                     locks ahead {}, repeated {}, data dropped {}",
                    r.clocks,
                    r.datagrams_in,
                    r.datagrams_out,
                    r.writes,
                    r.host_frames,
                    c.frames_bad,
                    c.lock_ahead,
                    c.lock_repeats,
                    c.data_drops
                );
                Ended {
                    volume: r.volume,
                    writes: r.writes,
                    held: c.held,
                    host_frames: r.host_frames,
                    summary,
                }
            }
            Sim::Nic(t) => {
                let r = t.stop().unwrap();
                assert_eq!(r.malformed, 0, "the NIC sent malformed Ethernet frames");
                assert!(r.arp_requests > 0, "the NIC resolved the host's address");
                let c = r.counters;
                let summary = format!(
                    "NIC: {} clocks ({:.0} clocks/s), {} datagrams in, {} out, {} at the target's port, \
                     {} writes, {} frames for the host, {} ARP requests; bad {}, data dropped {}",
                    r.clocks,
                    r.clocks_per_s,
                    r.datagrams_in,
                    r.datagrams_out,
                    c.datagrams,
                    r.writes,
                    r.host_frames,
                    r.arp_requests,
                    c.frames_bad,
                    c.data_drops
                );
                Ended {
                    volume: r.volume,
                    writes: r.writes,
                    held: c.held,
                    host_frames: r.host_frames,
                    summary,
                }
            }
        }
    }
}

fn mirror_to_the_simulated_fpga(mode: &str, lossy: bool) {
    mirror_to(mode, lossy, false);
}

fn mirror_to(mode: &str, lossy: bool, nic: bool) {
    need("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair_id: [u8; 16] = Sha256::digest(b"specmirror")[..16].try_into().unwrap();
    let cfg = UdpTargetConfig {
        volume_size: SIZE,
        region_size: 64 << 10,
        pair_id,
    };
    let target = if nic {
        Sim::Nic(NicTarget::start("127.0.0.1:0", cfg).unwrap())
    } else {
        Sim::Path(UdpTarget::start("127.0.0.1:0", cfg).unwrap())
    };
    let link = lossy.then(|| udp_lossy_link(d, &target.addr().to_string(), "0.01", "300us", "21"));
    let to = link
        .as_ref()
        .map_or(target.addr().to_string(), |l| l.field("listen"));
    // Jumbo frames: a 4 KiB write goes in one DATA frame, as the hardware takes it.
    let source = start_source(
        d,
        &to,
        mode,
        &SIZE.to_string(),
        &["--transport", "udp", "--mtu", "9000"],
    );
    let port = port_of(&source.field("nbd"));
    // Many writes in flight over a few regions.
    let cmds = small_writes(SIZE, 96, 6 * 65536);
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    qemu_ok(
        &port,
        // (The first regions were written over since; the volumes are compared below.)
        &["read -P 0x77 3M 4k", "read -P 0x88 4190208 4096"],
    );
    // Every write was acknowledged after the target's WRITE_DONE: the target has them all.
    std::thread::sleep(Duration::from_millis(200));
    let report = target.stop();
    let src = std::fs::read(d.join("source.img")).unwrap();
    assert_eq!(src.len() as u64, SIZE);
    if src != report.volume {
        let at = src.iter().zip(&report.volume).position(|(a, b)| a != b);
        panic!(
            "{mode}: the simulated FPGA target's volume differs at byte {at:?}; {}\nsource log:\n{}",
            report.summary,
            source.log_text()
        );
    }
    assert!(report.writes >= 104, "{} writes", report.writes);
    assert_eq!(report.held, 0, "every lock released");
    assert!(report.host_frames > 0, "the handshake went to the host");
    eprintln!("{mode} (lossy link: {lossy}): {}", report.summary);
}

#[test]
fn speculative_mode_mirrors_to_the_simulated_fpga_target() {
    mirror_to_the_simulated_fpga("speculative", false);
}

#[test]
fn conservative_mode_mirrors_to_the_simulated_fpga_target() {
    mirror_to_the_simulated_fpga("conservative", false);
}

#[test]
fn speculative_mode_mirrors_to_the_simulated_fpga_target_through_a_lossy_link() {
    mirror_to_the_simulated_fpga("speculative", true);
}

#[test]
fn speculative_mode_mirrors_to_the_simulated_fpga_nic() {
    mirror_to("speculative", false, true);
}

#[test]
fn speculative_mode_mirrors_to_the_simulated_fpga_nic_through_a_lossy_link() {
    mirror_to("speculative", true, true);
}

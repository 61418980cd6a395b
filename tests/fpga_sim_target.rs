//! The software source mirrors over UDP to a simulated FPGA target: the verilated target path
//! (`hdl::TargetPath`: frame parser, lock table, data buffer, answer cache, answers) takes every
//! LOCK, DATA and ABORT word by word and writes a volume in memory; the host's part of a NIC (the
//! handshake, flushes, heartbeats) is the software target core. qemu-io writes through the
//! source's NBD export, and the target's volume ends identical to the source's.

mod common;

use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};
use specmirror_verilated::udp_target::{UdpTarget, UdpTargetConfig};

const SIZE: u64 = 4 << 20;

fn mirror_to_the_simulated_fpga(mode: &str, lossy: bool) {
    need("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair_id: [u8; 16] = Sha256::digest(b"specmirror")[..16].try_into().unwrap();
    let target = UdpTarget::start(
        "127.0.0.1:0",
        UdpTargetConfig {
            volume_size: SIZE,
            region_size: 64 << 10,
            pair_id,
        },
    )
    .unwrap();
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
    let mut cmds: Vec<String> = vec![
        "write -P 0x11 0 4k".into(),
        "write -P 0x22 4095 1".into(),
        "write -P 0x33 8192 4096".into(),
        // Overlapping writes in flight together: the later ones wait for the earlier locks.
        "aio_write -P 0x44 65536 4096".into(),
        "aio_write -P 0x55 66000 2000".into(),
        "aio_write -P 0x66 65600 512".into(),
        "aio_flush".into(),
        "write -P 0x77 3M 4k".into(),
        "write -P 0x88 4190208 4096".into(),
    ];
    // Many writes in flight over a few regions.
    for i in 0..96u64 {
        cmds.push(format!(
            "aio_write -P 0x{:02x} {} {}",
            0x90 + i % 0x60,
            (i * 7919) % (6 * 65536),
            512 * (1 + i % 8)
        ));
    }
    cmds.push("aio_flush".into());
    cmds.push("flush".into());
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    qemu_ok(
        &port,
        // (The first regions were written over since; the volumes are compared below.)
        &["read -P 0x77 3M 4k", "read -P 0x88 4190208 4096"],
    );
    // Every write was acknowledged after the target's WRITE_DONE: the target has them all.
    std::thread::sleep(Duration::from_millis(200));
    let report = target.stop().unwrap();
    let src = std::fs::read(d.join("source.img")).unwrap();
    assert_eq!(src.len() as u64, SIZE);
    if src != report.volume {
        let at = src.iter().zip(&report.volume).position(|(a, b)| a != b);
        panic!(
            "{mode}: the simulated FPGA target's volume differs at byte {at:?}; {report:?}\nsource log:\n{}",
            source.log_text()
        );
    }
    let c = &report.counters;
    assert!(report.writes >= 104, "{} writes", report.writes);
    assert_eq!(c.data_violations, 0);
    assert_eq!(c.held, 0, "every lock released");
    assert!(report.host_frames > 0, "the handshake went to the host");
    eprintln!(
        "{mode} (lossy link: {lossy}): {} clocks, {} datagrams in, {} out, {} writes, {} frames for the host; bad {}, \
         locks ahead {}, repeated {}, data dropped {}",
        report.clocks,
        report.datagrams_in,
        report.datagrams_out,
        report.writes,
        report.host_frames,
        c.frames_bad,
        c.lock_ahead,
        c.lock_repeats,
        c.data_drops
    );
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

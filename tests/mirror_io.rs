//! qemu-io writes through the source's NBD port, in each mode: afterwards the two volume files are
//! byte-identical and read back the expected patterns.

mod common;

use common::*;

fn patterns(mode: &str) {
    let p = Pair::start(mode, "32MiB", &["--region-size", "64KiB"]);
    let port = p.nbd_port();
    qemu_ok(
        &port,
        &[
            "write -P 0x11 0 4M",
            "write -P 0x22 4095 1",
            "write -P 0x33 5000 70000",
            // Overlapping writes in flight together.
            "aio_write -P 0x44 262144 131072",
            "aio_write -P 0x55 300000 100000",
            "aio_write -P 0x66 350000 512",
            "aio_flush",
            "write -P 0x77 16M 4M",
            "write -z 17M 1M",
            "discard 19M 64k",
            "write -P 0x88 33553920 512",
            "flush",
        ],
    );
    // What no overlap decides must read back exactly.
    qemu_ok(
        &port,
        &[
            "read -P 0x11 0 4095",
            "read -P 0x22 4095 1",
            "read -P 0x11 4096 904",
            "read -P 0x33 5000 70000",
            "read -P 0x11 75000 187144",
            "read -P 0x77 16M 1M",
            "read -P 0x00 17M 1M",
            "read -P 0x77 18M 2M",
            "read -P 0x88 33553920 512",
        ],
    );
    assert!(
        same_files(&p.src_img(), &p.tgt_img()),
        "{mode}: copies differ at byte {:?}\nsource log:\n{}",
        first_difference(&p.src_img(), &p.tgt_img()),
        p.source.log_text()
    );
}

#[test]
fn speculative_mode_mirrors_every_pattern() {
    patterns("speculative");
}

#[test]
fn implicit_mode_mirrors_every_pattern() {
    patterns("implicit");
}

#[test]
fn conservative_mode_mirrors_every_pattern() {
    patterns("conservative");
}

#[test]
fn requests_past_the_end_fail_and_change_nothing() {
    let p = Pair::start("speculative", "4MiB", &[]);
    let port = p.nbd_port();
    qemu_ok(&port, &["write -P 0x5a 0 4M"]);
    let before = std::fs::read(p.src_img()).unwrap();
    // qemu-io checks bounds itself for raw images, so speak NBD directly for this one.
    let reply = raw_nbd_write(&port, 4 * 1024 * 1024 - 2, &[1, 2, 3, 4]);
    assert_eq!(reply, 28, "ENOSPC for a write past the end");
    assert_eq!(std::fs::read(p.src_img()).unwrap(), before);
    assert!(same_files(&p.src_img(), &p.tgt_img()));
}

#[test]
fn several_clients_at_once() {
    let p = Pair::start("speculative", "16MiB", &[]);
    let port = p.nbd_port();
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let port = port.clone();
            std::thread::spawn(move || {
                let off = i * 4 * 1024 * 1024;
                qemu_ok(
                    &port,
                    &[
                        &format!("write -P {} {off} 4M", 0x10 + i),
                        &format!("read -P {} {off} 4M", 0x10 + i),
                    ],
                );
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(same_files(&p.src_img(), &p.tgt_img()));
}

/// Fixed-newstyle handshake with GO, then one WRITE; returns the reply's error code.
fn raw_nbd_write(port: &str, offset: u64, data: &[u8]) -> u32 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&3u32.to_be_bytes()).unwrap();
    let mut opt = Vec::new();
    opt.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    opt.extend_from_slice(&7u32.to_be_bytes());
    opt.extend_from_slice(&6u32.to_be_bytes());
    opt.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    s.write_all(&opt).unwrap();
    // INFO (export), INFO (block size), ACK.
    for _ in 0..3 {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).unwrap();
        let n = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        let mut d = vec![0u8; n];
        s.read_exact(&mut d).unwrap();
    }
    let mut req = Vec::new();
    req.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    req.extend_from_slice(&0u16.to_be_bytes());
    req.extend_from_slice(&1u16.to_be_bytes());
    req.extend_from_slice(&42u64.to_be_bytes());
    req.extend_from_slice(&offset.to_be_bytes());
    req.extend_from_slice(&(data.len() as u32).to_be_bytes());
    req.extend_from_slice(data);
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 16];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(u64::from_be_bytes(rep[8..16].try_into().unwrap()), 42);
    u32::from_be_bytes(rep[4..8].try_into().unwrap())
}

#[test]
fn log_sync_mode_mirrors_every_write() {
    let p = Pair::start("speculative", "8MiB", &["--log-sync"]);
    let port = p.nbd_port();
    qemu_ok(
        &port,
        &[
            "write -P 0x21 0 1M",
            "write -P 0x22 4095 3",
            "flush",
            "read -P 0x21 0 4095",
        ],
    );
    assert!(same_files(&p.src_img(), &p.tgt_img()));
    // Every write confirmed: nothing is left to replay (the header and generation remain).
    let log = std::fs::metadata(p.dir.path().join("source.log"))
        .unwrap()
        .len();
    assert!(log > 0);
    let text = std::fs::read(p.dir.path().join("source.log")).unwrap();
    assert_eq!(&text[..8], b"SMLOG001");
}

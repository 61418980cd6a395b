//! Hostile and broken peers: each gets an error naming the cause and is disconnected; the target
//! stays up, its volume unchanged, and it keeps serving its legitimate source.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use specmirror_abi::{encode, FrameType, Header, Hello, HelloStatus};

/// Connects to the target and completes the authentication preamble without a secret.
fn attacker(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c = [0u8; 48];
    s.read_exact(&mut c).unwrap();
    assert_eq!(&c[..8], b"SMAUTH01");
    let mut r = [0u8; 80];
    r[..8].copy_from_slice(b"SMAUTH01");
    s.write_all(&r).unwrap();
    let mut v = [0u8; 48];
    s.read_exact(&mut v).unwrap();
    assert_eq!(v[8], 0, "accepted without a secret");
    s
}

/// Whether the target closed the connection (reads hit EOF or a reset).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

fn hello(generation: u32) -> Vec<u8> {
    let h = Hello {
        volume_size: 16 << 20,
        region_size: 64 << 10,
        pair_id: pair_id("specmirror"),
        node_id: 9,
        min_version: 1,
        max_version: 1,
        status: HelloStatus::Ok,
        capabilities: 0,
    };
    let mut hd = Header::new(FrameType::Hello);
    hd.generation = generation;
    encode(&hd, &h.to_bytes())
}

fn pair_id(name: &str) -> [u8; 16] {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes())[..16]
        .try_into()
        .unwrap()
}

#[test]
fn malformed_frames_get_the_peer_disconnected_and_change_nothing() {
    let mut p = Pair::start("speculative", "16MiB", &[]);
    let port = p.nbd_port();
    qemu_ok(&port, &["write -P 0x42 0 1M"]);
    let addr = p.target.field("listen");
    let before = std::fs::read(p.tgt_img()).unwrap();

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("bad magic", vec![0x5a; 200]));
    let mut data = Header::new(FrameType::Data);
    data.generation = 1;
    data.offset = 0;
    let mut bad_crc = encode(&data, &[9u8; 4096]);
    bad_crc[100] ^= 1;
    cases.push(("CRC32C mismatch", bad_crc));
    let mut unknown = encode(&Header::new(FrameType::Heartbeat), &[]);
    unknown[5] = 99;
    cases.push(("unknown frame type 99", unknown));
    let mut huge = Header::new(FrameType::Data).to_bytes().to_vec();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("exceeds the maximum", huge));
    for (cause, bytes) in cases {
        let mut s = attacker(&addr);
        s.write_all(&bytes).unwrap();
        assert!(closed(&mut s), "{cause}: connection left open");
        assert!(
            p.target.wait_log(cause, Duration::from_secs(5)),
            "{cause}: not in the log:\n{}",
            p.target.log_text()
        );
        assert!(p.target.alive());
    }
    assert_eq!(
        std::fs::read(p.tgt_img()).unwrap(),
        before,
        "nothing written"
    );
    // The legitimate source carries on.
    qemu_ok(&port, &["write -P 0x43 1M 1M", "read -P 0x43 1M 1M"]);
    assert!(wait_identical(
        &p.src_img(),
        &p.tgt_img(),
        Duration::from_secs(5)
    ));
}

#[test]
fn a_lock_outside_the_volume_disconnects_the_peer() {
    let mut p = Pair::start("speculative", "16MiB", &[]);
    let port = p.nbd_port();
    qemu_ok(&port, &["write -P 0x42 0 1M"]);
    let addr = p.target.field("listen");
    let before = std::fs::read(p.tgt_img()).unwrap();
    let mut s = attacker(&addr);
    s.write_all(&hello(1000)).unwrap();
    let mut lock = Header::new(FrameType::Lock);
    lock.generation = 1000;
    lock.seq = 1;
    lock.lock_id = 1;
    lock.offset = 10_000;
    lock.arg = 4;
    s.write_all(&encode(&lock, &[])).unwrap();
    let mut data = Header::new(FrameType::Data);
    data.generation = 1000;
    data.seq = 1;
    data.lock_id = 1;
    data.offset = 10_000 * 65536;
    s.write_all(&encode(&data, &[7u8; 512])).unwrap();
    assert!(closed(&mut s));
    assert!(p
        .target
        .wait_log("lock outside the target volume", Duration::from_secs(5)));
    assert!(p.target.alive());
    assert_eq!(std::fs::read(p.tgt_img()).unwrap(), before);
    // The source opens a new session past the intruder's and carries on.
    qemu_ok(&port, &["write -P 0x44 2M 1M", "read -P 0x44 2M 1M"]);
    assert!(wait_identical(
        &p.src_img(),
        &p.tgt_img(),
        Duration::from_secs(10)
    ));
}

#[test]
fn frames_from_a_connection_without_a_session_are_ignored() {
    let p = Pair::start("speculative", "16MiB", &[]);
    let port = p.nbd_port();
    qemu_ok(&port, &["write -P 0x42 0 1M"]);
    let before = std::fs::read(p.tgt_img()).unwrap();
    let mut s = attacker(&p.target.field("listen"));
    // Guessing the live session's generation is not enough to write.
    for (ty, off) in [(FrameType::Lock, 0u64), (FrameType::Data, 0)] {
        let mut h = Header::new(ty);
        h.generation = 1;
        h.seq = 999;
        h.lock_id = 999;
        h.offset = off;
        h.arg = 1;
        let payload = if ty == FrameType::Data {
            vec![0xee; 512]
        } else {
            vec![]
        };
        h.flags = if ty == FrameType::Data {
            specmirror_abi::Flags::IMPLICIT_LOCK
        } else {
            specmirror_abi::Flags::NONE
        };
        s.write_all(&encode(&h, &payload)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read(p.tgt_img()).unwrap(), before);
}

#[test]
fn a_silent_peer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = start_target(dir.path(), "16MiB", &["--peer-timeout", "1s"]);
    let addr = target.field("listen");
    // Silent before authenticating...
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(closed(&mut s));
    assert!(target.wait_log("did not complete authentication", Duration::from_secs(5)));
    // ...and after.
    let mut s = attacker(&addr);
    assert!(closed(&mut s));
    assert!(target.wait_log("silent for", Duration::from_secs(5)));
    assert!(target.alive());
}

#[test]
fn only_a_source_with_the_secret_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let wrong = dir.path().join("wrong");
    std::fs::write(&secret, "correct horse battery staple\n").unwrap();
    std::fs::write(&wrong, "incorrect\n").unwrap();
    let sarg = ["--secret-file", secret.to_str().unwrap()];
    let mut target = start_target(dir.path(), "16MiB", &sarg);
    let taddr = target.field("listen");
    let source = start_source(dir.path(), &taddr, "speculative", "16MiB", &sarg);
    let port = port_of(&source.field("nbd"));
    qemu_ok(&port, &["write -P 0x51 0 1M"]);

    let other = tempfile::tempdir().unwrap();
    let v = other.path().join("v.img");
    let l = other.path().join("v.log");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "source",
            "--volume",
            v.to_str().unwrap(),
            "--size",
            "16MiB",
            "--target",
            &taddr,
            "--nbd",
            "127.0.0.1:0",
            "--log",
            l.to_str().unwrap(),
            "--link-timeout",
            "2s",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let no_secret = base(&[]);
    let o = run(&no_secret.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("peer requires a secret"),
        "{}",
        stderr(&o)
    );
    let wrong_secret = base(&["--secret-file", wrong.to_str().unwrap()]);
    let o = run(&wrong_secret.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refused our authentication"));
    assert!(target.wait_log("wrong secret", Duration::from_secs(5)));
    assert!(target.wait_log("peer has no secret", Duration::from_secs(5)));
    assert!(
        !v.exists() && !l.exists(),
        "a refused source changes nothing on disk"
    );
    // The legitimate source is still served.
    assert!(target.alive());
    qemu_ok(&port, &["write -P 0x52 1M 1M", "read -P 0x52 1M 1M"]);
    assert!(wait_identical(
        &dir.path().join("source.img"),
        &dir.path().join("target.img"),
        Duration::from_secs(5)
    ));
}

//! The UDP transport: one frame per datagram, no TCP underneath. Through a link emulator that
//! loses, duplicates and reorders datagrams the copies end identical and every acknowledged write
//! is there; bad datagrams are dropped and counted; settings UDP cannot honour are refused before
//! anything is touched.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn udp_target(dir: &Path, size: &str) -> Daemon {
    start_target(dir, size, &["--transport", "udp"])
}

/// Stops a daemon with SIGTERM (so it logs its final figures) and returns its log.
fn stop(mut d: Daemon) -> String {
    Command::new("kill")
        .arg(d.child.id().to_string())
        .status()
        .unwrap();
    let _ = d.child.wait();
    d.log_text()
}

/// The `name=N` figure of a log line containing `line`.
fn figure(log: &str, line: &str, name: &str) -> u64 {
    let l = log
        .lines()
        .rfind(|l| l.contains(line))
        .unwrap_or_else(|| panic!("no {line:?} in:\n{log}"));
    l.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {l}"))
        .parse()
        .unwrap()
}

fn mirror_through_loss(mode: &str, seed: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = udp_target(d, "32MiB");
    let link = udp_lossy_link(d, &target.field("listen"), "0.01", "400us", seed);
    let source = start_source(
        d,
        &link.field("listen"),
        mode,
        "32MiB",
        &["--transport", "udp", "--link-timeout", "60s"],
    );
    let port = port_of(&source.field("nbd"));
    qemu_ok(
        &port,
        &[
            "write -P 0x11 0 2M",
            "write -P 0x22 4095 1",
            "write -P 0x33 5000 70000",
            // Overlapping writes in flight together, their datagrams mixed on the link.
            "aio_write -P 0x44 262144 131072",
            "aio_write -P 0x55 300000 100000",
            "aio_write -P 0x66 350000 512",
            "aio_flush",
            "write -P 0x77 16M 1M",
            "write -z 17M 64k",
            "write -P 0x88 33553920 512",
            "flush",
        ],
    );
    qemu_ok(
        &port,
        &[
            "read -P 0x11 0 4095",
            "read -P 0x22 4095 1",
            "read -P 0x33 5000 70000",
            "read -P 0x77 16M 1M",
            "read -P 0x00 17M 64k",
            "read -P 0x88 33553920 512",
        ],
    );
    let (src, tgt) = (d.join("source.img"), d.join("target.img"));
    assert_converge(&src, &tgt, Duration::from_secs(10), || {
        format!("{mode}; source log:\n{}", source.log_text())
    });
    let log = stop(link);
    let lost = figure(&log, "stopping", "lost");
    let dup = figure(&log, "stopping", "duplicated");
    assert!(
        lost > 0 && dup > 0,
        "the link lost {lost} and duplicated {dup}"
    );
}

#[test]
fn speculative_mode_over_a_lossy_udp_link() {
    mirror_through_loss("speculative", "11");
}

#[test]
fn implicit_mode_over_a_lossy_udp_link() {
    mirror_through_loss("implicit", "12");
}

#[test]
fn conservative_mode_over_a_lossy_udp_link() {
    mirror_through_loss("conservative", "13");
}

#[test]
fn bad_datagrams_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = udp_target(d, "4MiB");
    let before = std::fs::read(d.join("target.img")).unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = target.field("listen");
    // Garbage, a header cut short, and a DATA frame with its CRC broken: none may land.
    s.send_to(&[0x41; 300], &to).unwrap();
    s.send_to(b"SMIR\x01\x06", &to).unwrap();
    let mut data = vec![0u8; 64 + 512 + 8];
    data[..4].copy_from_slice(b"SMIR");
    data[4] = 1;
    data[5] = 6;
    data[6] = 1; // implicit lock
    data[8..12].copy_from_slice(&512u32.to_le_bytes());
    data[64..576].fill(0xee);
    s.send_to(&data, &to).unwrap();
    assert!(
        target.wait_log("dropped a bad datagram", Duration::from_secs(5)),
        "{}",
        target.log_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read(d.join("target.img")).unwrap(), before);
    // The target still serves a real source.
    let source = start_source(d, &to, "speculative", "4MiB", &["--transport", "udp"]);
    qemu_ok(&port_of(&source.field("nbd")), &["write -P 0x5a 0 64k"]);
    assert!(wait_identical(
        &d.join("source.img"),
        &d.join("target.img"),
        Duration::from_secs(5)
    ));
}

#[test]
fn udp_settings_it_cannot_honour_are_refused_before_anything_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = d.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let vol = d.join("v.img");
    let log = d.join("v.log");
    let base = [
        "source",
        "--volume",
        vol.to_str().unwrap(),
        "--size",
        "4MiB",
        "--target",
        "127.0.0.1:9",
        "--nbd",
        "127.0.0.1:0",
        "--log",
        log.to_str().unwrap(),
        "--transport",
        "udp",
    ];
    let mut a = base.to_vec();
    a.extend(["--secret-file", secret.to_str().unwrap()]);
    let o = run(&a);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not authenticate"),
        "{}",
        stderr(&o)
    );
    let mut a = base.to_vec();
    a.extend(["--mtu", "600"]);
    let o = run(&a);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("MTU 600"), "{}", stderr(&o));
    let o = run(&[
        "target",
        "--listen",
        "127.0.0.1:0",
        "--volume",
        vol.to_str().unwrap(),
        "--size",
        "4MiB",
        "--transport",
        "udp",
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not authenticate"),
        "{}",
        stderr(&o)
    );
    assert!(!vol.exists() && !log.exists(), "nothing created");
}

#[test]
fn a_log_written_over_tcp_is_replayed_over_udp_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut target = start_target(d, "8MiB", &[]);
    let mut source = start_source(d, &target.field("listen"), "speculative", "8MiB", &[]);
    let port = port_of(&source.field("nbd"));
    target.kill9();
    // A 1 MiB write waits for the target in the rollback log; the source dies with it there.
    let mut client = Command::new("qemu-io")
        .args(["-f", "raw", &format!("nbd://127.0.0.1:{port}")])
        .args(["-c", "write -P 0x3c 1M 1M"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    let log = d.join("source.log");
    let t = std::time::Instant::now();
    while std::fs::metadata(&log).unwrap().len() < 1 << 20 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the write never reached the log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    source.kill9();
    let _ = client.kill();
    let _ = client.wait();
    // Both come back over UDP: the logged write is re-sent as DATA pieces of a datagram each.
    let target = udp_target(d, "8MiB");
    let source = start_source(
        d,
        &target.field("listen"),
        "speculative",
        "8MiB",
        &["--transport", "udp"],
    );
    let (src, tgt) = (d.join("source.img"), d.join("target.img"));
    assert_converge(&src, &tgt, Duration::from_secs(20), || {
        format!("source log:\n{}", source.log_text())
    });
    let t = std::fs::read(&tgt).unwrap();
    assert!(
        t[1 << 20..2 << 20].iter().all(|b| *b == 0x3c),
        "the logged write landed"
    );
}

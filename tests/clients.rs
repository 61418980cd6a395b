//! Real NBD clients other than qemu-io against the source: qemu-img convert and bench, and a Unix
//! socket front end.

mod common;

use std::process::Command;

use common::*;

#[test]
fn qemu_img_convert_and_bench_through_the_source() {
    need("qemu-img", "qemu-utils");
    let p = Pair::start("speculative", "16MiB", &[]);
    let port = p.nbd_port();
    let img = p.dir.path().join("pattern.raw");
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i / 4096 % 251) as u8).collect();
    std::fs::write(&img, &data).unwrap();
    let url = format!("nbd://127.0.0.1:{port}");
    let o = Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&img)
        .arg(&url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(p.src_img()).unwrap(), data);
    assert!(wait_identical(
        &p.src_img(),
        &p.tgt_img(),
        std::time::Duration::from_secs(5)
    ));
    let o = Command::new("qemu-img")
        .args([
            "bench", "-w", "-f", "raw", "-c", "2000", "-d", "16", "-s", "4k", &url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(text.contains("Run completed"), "{text}");
    assert!(same_files(&p.src_img(), &p.tgt_img()));
}

#[test]
fn nbd_over_a_unix_socket() {
    need("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let target = start_target(dir.path(), "8MiB", &[]);
    let sock = dir.path().join("nbd.sock");
    let vol = dir.path().join("source.img");
    let log = dir.path().join("source.log");
    let _source = Daemon::start(
        dir.path(),
        "source",
        &[
            "source",
            "--volume",
            vol.to_str().unwrap(),
            "--size",
            "8MiB",
            "--target",
            &target.field("listen"),
            "--nbd",
            sock.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let url = format!("nbd+unix:///?socket={}", sock.display());
    let o = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            &url,
            "-c",
            "write -P 0x3c 0 1M",
            "-c",
            "read -P 0x3c 0 1M",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && !text.contains("failed"), "{text}");
    assert!(same_files(&vol, &dir.path().join("target.img")));
}

#[test]
fn fio_nbd_engine_writes_and_verifies() {
    need("fio", "fio");
    let p = Pair::start("speculative", "32MiB", &[]);
    let uri = format!("nbd://127.0.0.1:{}", p.nbd_port());
    let o = Command::new("fio")
        .args([
            "--name=mirror",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=16M",
            "--iodepth=16",
            "--verify=crc32c",
            "--do_verify=1",
            // fio would otherwise leave a verify-state file in the working directory.
            "--verify_state_save=0",
            "--output-format=terse",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(!text.contains("verify: bad"), "{text}");
    assert!(same_files(&p.src_img(), &p.tgt_img()));
}

//! Crashes and link failures under load: nothing acknowledged is lost, and the copies converge.

mod common;

use std::time::Duration;

use common::*;

const CHUNK: u64 = 256 * 1024;

/// `write -P pat off CHUNK` commands over distinct chunks, so every acknowledged one can be checked.
fn chunk_writes(n: u64, salt: u64) -> Vec<String> {
    (0..n)
        .map(|i| format!("write -P {} {} {CHUNK}", pattern(i, salt), i * CHUNK))
        .collect()
}

fn pattern(i: u64, salt: u64) -> u64 {
    (i * 7 + salt) % 250 + 1
}

/// Offsets that qemu-io reports as written (acknowledged).
fn acknowledged(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix(&format!("wrote {CHUNK}/{CHUNK} bytes at offset ")))
        .map(|o| o.trim().parse().unwrap())
        .collect()
}

fn verify_acknowledged(port: &str, acked: &[u64], salt: u64) {
    let cmds: Vec<String> = acked
        .iter()
        .map(|&o| format!("read -P {} {o} {CHUNK}", pattern(o / CHUNK, salt)))
        .collect();
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    for part in refs.chunks(32) {
        qemu_ok(port, part);
    }
}

/// Waits (up to 20 s) until `bytes` of the image at `path` have been written: the load is under
/// way, whatever the machine's speed. The images start sparse.
fn wait_allocated(path: &std::path::Path, bytes: u64) {
    use std::os::unix::fs::MetadataExt;
    let started = std::time::Instant::now();
    while std::fs::metadata(path).map_or(0, |m| m.blocks() * 512) < bytes {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no writes reached {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn background_writes(port: String, n: u64, salt: u64) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let cmds = chunk_writes(n, salt);
        let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
        qemu_io(&port, &refs).1
    })
}

#[test]
fn target_killed_under_load_and_restarted() {
    let mut p = Pair::start("speculative", "64MiB", &[]);
    let port = p.nbd_port();
    let taddr = p.target.field("listen");
    let load = background_writes(port.clone(), 128, 3);
    wait_allocated(&p.tgt_img(), 8 * CHUNK);
    p.target.kill9();
    std::thread::sleep(Duration::from_millis(1000));
    p.target = restart_target_at(p.dir.path(), &taddr, &[]);
    let out = load.join().unwrap();
    let acked = acknowledged(&out);
    assert_eq!(
        acked.len(),
        128,
        "every write completes once the target is back:\n{out}"
    );
    verify_acknowledged(&port, &acked, 3);
    assert_converge(
        &p.src_img(),
        &p.tgt_img(),
        Duration::from_secs(10),
        String::new,
    );
}

#[test]
fn source_killed_under_load_and_restarted_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target(dir.path(), "64MiB", &[]);
    let taddr = target.field("listen");
    let mut source = start_source(dir.path(), &taddr, "speculative", "64MiB", &[]);
    let port = port_of(&source.field("nbd"));
    let load = background_writes(port, 200, 5);
    // Killed once a few chunks have reached the target, well before the 200th.
    wait_allocated(&dir.path().join("target.img"), 8 * CHUNK);
    source.kill9();
    let out = load.join().unwrap();
    let acked = acknowledged(&out);
    assert!(
        !acked.is_empty() && acked.len() < 200,
        "the kill landed mid-load: {} acked",
        acked.len()
    );
    // Same flags, same log: unconfirmed writes are re-sent before new I/O.
    let source = start_source(dir.path(), &taddr, "speculative", "64MiB", &[]);
    let port = port_of(&source.field("nbd"));
    verify_acknowledged(&port, &acked, 5);
    let (s, t) = (dir.path().join("source.img"), dir.path().join("target.img"));
    assert_converge(&s, &t, Duration::from_secs(10), || source.log_text());
    drop(target);
}

/// Writes the source logged and wrote locally while the target was away, then the source killed:
/// restarted with its log, it sends the target those writes' data, read back from its volume.
#[test]
fn writes_logged_while_the_target_is_away_reach_it_after_a_source_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = start_target(dir.path(), "16MiB", &[]);
    let taddr = target.field("listen");
    let extra = ["--link-timeout", "60s"];
    let mut source = start_source(dir.path(), &taddr, "speculative", "16MiB", &extra);
    let port = port_of(&source.field("nbd"));
    target.kill9();
    let load = std::thread::spawn(move || {
        qemu_io(
            &port,
            &[
                "aio_write -P 0x5a 0 1M",
                "aio_write -P 0x5b 4M 1M",
                "aio_flush",
            ],
        )
    });
    // Both written locally (so both logged before): nothing of them has reached the target.
    wait_allocated(&dir.path().join("source.img"), 2 << 20);
    source.kill9();
    let (ok, _) = load.join().unwrap();
    assert!(!ok, "nothing was acknowledged without the target");
    let _target = restart_target_at(dir.path(), &taddr, &[]);
    let source = start_source(dir.path(), &taddr, "speculative", "16MiB", &extra);
    let (s, t) = (dir.path().join("source.img"), dir.path().join("target.img"));
    assert_converge(&s, &t, Duration::from_secs(10), || source.log_text());
    let img = std::fs::read(&t).unwrap();
    assert!(img[..1 << 20].iter().all(|&b| b == 0x5a));
    assert!(img[4 << 20..5 << 20].iter().all(|&b| b == 0x5b));
}

#[test]
fn link_cut_and_healed_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target(dir.path(), "64MiB", &[]);
    let proxy = Proxy::start(&target.field("listen"));
    let source = start_source(dir.path(), &proxy.addr, "speculative", "64MiB", &[]);
    let port = port_of(&source.field("nbd"));
    let load = background_writes(port.clone(), 128, 9);
    wait_allocated(&dir.path().join("target.img"), 8 * CHUNK);
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1500));
    proxy.heal();
    let out = load.join().unwrap();
    let acked = acknowledged(&out);
    assert_eq!(acked.len(), 128, "writes wait out the cut:\n{out}");
    verify_acknowledged(&port, &acked, 9);
    let (s, t) = (dir.path().join("source.img"), dir.path().join("target.img"));
    assert!(wait_identical(&s, &t, Duration::from_secs(10)));
    assert!(source.log_text().contains("link to target down"));
    drop(target);
}

#[test]
fn past_the_link_timeout_writes_fail_rolled_back_then_converge() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target(dir.path(), "16MiB", &[]);
    let taddr = target.field("listen");
    let source = start_source(
        dir.path(),
        &taddr,
        "speculative",
        "16MiB",
        &["--link-timeout", "2s"],
    );
    let port = port_of(&source.field("nbd"));
    qemu_ok(&port, &["write -P 0x61 0 1M"]);
    let mut target = target;
    target.kill9();
    let started = std::time::Instant::now();
    let (ok, out) = qemu_io(&port, &["write -P 0x62 0 64k"]);
    assert!(!ok, "a write the target never confirmed must fail:\n{out}");
    assert!(out.contains("Input/output error"), "{out}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "not acknowledged early"
    );
    assert!(source.wait_log("write timeout", Duration::from_secs(5)));
    // Rolled back: the source holds what it held before the failed write.
    qemu_ok(&port, &["read -P 0x61 0 1M"]);
    let target = restart_target_at(dir.path(), &taddr, &[]);
    let (s, t) = (dir.path().join("source.img"), dir.path().join("target.img"));
    assert!(
        wait_identical(&s, &t, Duration::from_secs(10)),
        "copies converge after the target returns"
    );
    qemu_ok(&port, &["write -P 0x63 2M 64k", "read -P 0x63 2M 64k"]);
    drop(target);
}

#[test]
fn writes_in_flight_and_the_log_are_bounded_while_the_target_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = start_target(dir.path(), "64MiB", &[]);
    let taddr = target.field("listen");
    let source = start_source(
        dir.path(),
        &taddr,
        "speculative",
        "64MiB",
        &["--max-inflight", "4MiB", "--link-timeout", "60s"],
    );
    let port = port_of(&source.field("nbd"));
    target.kill9();
    // 48 MiB of writes pipelined by one client while the target is gone.
    let load = std::thread::spawn(move || {
        let cmds: Vec<String> = (0..48)
            .map(|i| format!("aio_write -P {} {}M 1M", i + 1, i))
            .chain(["aio_flush".to_string()])
            .collect();
        let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
        qemu_io(&port, &refs)
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = std::fs::metadata(dir.path().join("source.log"))
        .unwrap()
        .len();
    // Each write in flight costs its before-image (its data is on the volume): about the budget.
    assert!(
        log < 6 << 20,
        "rollback log grew to {log} bytes with a 4 MiB budget"
    );
    let _target = restart_target_at(dir.path(), &taddr, &[]);
    let (ok, out) = load.join().unwrap();
    assert!(ok, "every write completes once the target is back:\n{out}");
    let (s, t) = (dir.path().join("source.img"), dir.path().join("target.img"));
    assert!(wait_identical(&s, &t, Duration::from_secs(10)));
}

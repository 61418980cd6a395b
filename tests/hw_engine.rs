//! The hardware engine: `specmirror source --engine hw --device sim` (the verilated source device
//! in the source daemon, its DMA port on the driver's rings) and `specmirror target --engine hw
//! --device sim` (the verilated target path in the target daemon, writing the volume file through
//! the host) mirror qemu-io workloads, hardware or software at either end; the volumes end
//! identical, and the device, not the host, sent the writes; the hardware source's frames are the
//! software source's, byte for byte. Needs a build with `--features sim-device` (./test.sh builds
//! it) and qemu-io.

mod common;

use specmirror_abi::FrameType;
use std::time::Duration;

use common::*;

const SIZE: &str = "16MiB";

fn workload() -> Vec<String> {
    let mut cmds: Vec<String> = vec![
        "write -P 0x11 0 4k".into(),
        "write -P 0x22 4095 1".into(),
        "write -P 0x33 8192 64k".into(),
        // Overlapping writes in flight together: the later ones wait for the earlier locks.
        "aio_write -P 0x44 65536 4096".into(),
        "aio_write -P 0x55 66000 2000".into(),
        "aio_write -P 0x66 65600 512".into(),
        "aio_flush".into(),
        // Larger than a data slot: as the host's frames.
        "write -P 0x77 3M 2M".into(),
        "write -P 0x88 16773120 4096".into(),
    ];
    for i in 0..200u64 {
        cmds.push(format!(
            "aio_write -P 0x{:02x} {} {}",
            0x90 + i % 0x60,
            (i * 7919 * 512) % (2 << 20),
            512 * (1 + i % 16)
        ));
    }
    cmds.push("aio_flush".into());
    cmds.push("flush".into());
    cmds
}

fn start_hw_source(d: &std::path::Path, target: &str, mode: &str) -> Daemon {
    // Without the simulated device in the build, the start fails with a message that says so.
    start_source(
        d,
        target,
        mode,
        SIZE,
        &["--engine", "hw", "--device", "sim"],
    )
}

/// A field of a daemon's last report whose line holds `line`, and that report. (The engines
/// report once a second while their figures change: this waits for the last one.)
fn last_report(d: &Daemon, line: &str, field: &str) -> (u64, String) {
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        d.wait_log(line, Duration::from_secs(5)),
        "no report {line:?}\n{}",
        d.log_text()
    );
    let log = d.log_text();
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains(line))
        .expect("a report")
        .to_string();
    (report_field(&last, field), last)
}

/// The writes the source's device sent, from the engine's last report, and that report.
fn device_writes(source: &Daemon) -> (u64, String) {
    last_report(
        source,
        "hardware engine: writes the device sent",
        "device_writes",
    )
}

fn mirror_through_the_device(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = start_target(d, SIZE, &[]);
    let source = start_hw_source(d, &target.field("listen"), mode);
    let port = port_of(&source.field("nbd"));
    let cmds = workload();
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    // Three more writes larger than a data slot, one after another: their frames reuse the long
    // frames' memory the first one took.
    qemu_ok(
        &port,
        &[
            "write -P 0x99 5M 1536k",
            "write -P 0x9a 7M 1536k",
            "write -P 0x9b 9M 1536k",
        ],
    );
    qemu_ok(&port, &["read -P 0x77 3M 2M", "read -P 0x88 16773120 4096"]);
    volumes_match(d, mode, &[&source]);
    // The device sent the writes; the host's frames are only the rest.
    let (device_writes, last) = device_writes(&source);
    let log = source.log_text();
    assert!(
        device_writes >= 150,
        "{mode}: only {device_writes} writes went through the device: {last}\nsource log:\n{}",
        log.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    // The target's answers came to the host through the device's receive ring: a WRITE_DONE
    // per write at least, besides the grants, the handshake and heartbeats.
    let ring = report_field(&last, "ring_frames");
    assert!(
        ring > device_writes,
        "{mode}: only {ring} frames from the receive ring for {device_writes} writes: {last}"
    );
    let (large, allocs) = (
        report_field(&last, "large_frames"),
        report_field(&last, "large_allocs"),
    );
    assert!(
        large >= 4 && allocs < large,
        "{mode}: {large} long frames took {allocs} allocations: {last}"
    );
    eprintln!("{mode}: {last}");
}

/// The software source or the hardware one, to the hardware target (`target --engine hw --device
/// sim`: the verilated target device hands each locked write to the host through the receive
/// rings in DMA memory; the host writes the volume file and hands the outcome back).
fn mirror_to_the_simulated_target(hw_source: bool, mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = start_target(d, SIZE, &["--engine", "hw", "--device", "sim"]);
    let source = if hw_source {
        start_hw_source(d, &target.field("listen"), mode)
    } else {
        start_source(d, &target.field("listen"), mode, SIZE, &[])
    };
    let port = port_of(&source.field("nbd"));
    // Writes up to 2 MiB: the target announces that it takes at most 4 KiB under one lock and
    // no implicit locks, and the source sends longer writes split, each with its own lock.
    let cmds = workload();
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    qemu_ok(&port, &["read -P 0x77 3M 2M", "read -P 0x88 16773120 4096"]);
    volumes_match(d, mode, &[&source, &target]);
    let log = target.log_text();
    assert!(
        log.contains("source attached to the device") && log.contains("target device: new session"),
        "{log}"
    );
    let slog = source.log_text();
    assert!(
        slog.contains("write_limit=4096 implicit_locks=false window=3"),
        "the source heard the target's limits:\n{slog}"
    );
    // Every small write went through the target device's receive rings.
    let (n, last) = last_report(
        &target,
        "target device: writes the device handed over",
        "writes",
    );
    assert!(
        n >= 150,
        "{mode}: only {n} writes through the target's device: {last}"
    );
    assert_eq!(report_field(&last, "write_errors"), 0, "{last}");
    assert_eq!(report_field(&last, "frames_bad"), 0, "{last}");
    // The handshake and the heartbeats came to the host on the device's receive ring, none by
    // the host queue, and the host's answers left by its submission ring, none beside it.
    let (frames, ring) = (
        report_field(&last, "host_frames"),
        report_field(&last, "ring_frames"),
    );
    assert!(frames > 0 && ring == frames, "{mode}: {last}");
    let (sent, ring_sent) = (
        report_field(&last, "sent"),
        report_field(&last, "ring_sent"),
    );
    assert!(sent > 0 && ring_sent == sent, "{mode}: {last}");
    if hw_source {
        let (n, last) = device_writes(&source);
        assert!(
            n >= 100,
            "{mode}: only {n} writes through the source's device: {last}"
        );
    }
}

/// The target's device takes a volume past 4 GiB (VOLUME_BYTES_HI, 64-bit offsets in the receive
/// entries): writes at its start, across the 4 GiB mark and at its end land on both sides.
#[test]
fn the_hardware_target_serves_a_volume_past_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let size: u64 = 5 << 30;
    let target = start_target(d, "5GiB", &["--engine", "hw", "--device", "sim"]);
    let source = start_source(d, &target.field("listen"), "speculative", "5GiB", &[]);
    let port = port_of(&source.field("nbd"));
    let four = 4u64 << 30;
    let cmds = [
        "write -P 0x5a 0 4k".to_string(),
        format!("write -P 0x6b {} 4096", four - 2048),
        format!("write -P 0x7c {} 4096", size - 4096),
        format!("read -P 0x6b {} 4096", four - 2048),
    ];
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    let (n, last) = last_report(
        &target,
        "target device: writes the device handed over",
        "writes",
    );
    assert!(n >= 3, "{n} writes through the target's device: {last}");
    // The written ranges, on both sides (the rest is sparse: reading 10 GiB proves nothing more).
    use std::os::unix::fs::FileExt;
    for (at, byte) in [(0, 0x5a), (four - 2048, 0x6b), (size - 4096, 0x7c)] {
        for side in ["source.img", "target.img"] {
            let f = std::fs::File::open(d.join(side)).unwrap();
            let mut b = vec![0u8; 4096];
            f.read_exact_at(&mut b, at).unwrap();
            assert!(
                b.iter().all(|&x| x == byte),
                "{side} at {at}: not {byte:#x}\n{}",
                target.log_text()
            );
        }
    }
}

#[test]
fn the_software_source_mirrors_to_the_simulated_hardware_target() {
    mirror_to_the_simulated_target(false, "speculative");
}

#[test]
fn conservative_writes_mirror_to_the_simulated_hardware_target() {
    mirror_to_the_simulated_target(false, "conservative");
}

#[test]
fn implicit_writes_mirror_to_the_simulated_hardware_target() {
    mirror_to_the_simulated_target(false, "implicit");
}

#[test]
fn hardware_source_to_hardware_target() {
    mirror_to_the_simulated_target(true, "speculative");
}

#[test]
fn speculative_writes_go_through_the_simulated_device() {
    mirror_through_the_device("speculative");
}

#[test]
fn implicit_writes_go_through_the_simulated_device() {
    mirror_through_the_device("implicit");
}

/// Waits for the target volume to equal the source volume in `d`; the daemons' logs when not.
fn volumes_match(d: &std::path::Path, what: &str, logs: &[&Daemon]) {
    let (src, tgt) = (d.join("source.img"), d.join("target.img"));
    if !wait_identical(&src, &tgt, Duration::from_secs(10)) {
        let logs: Vec<String> = logs.iter().map(|l| l.log_text()).collect();
        panic!(
            "{what}: the volumes differ at byte {:?}\n{}",
            first_difference(&src, &tgt),
            logs.join("\n----\n")
        );
    }
}

/// A field of the engine's last report.
fn report_field(last: &str, name: &str) -> u64 {
    last.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {last}"))
}

/// A device slow to fetch from host memory holds writes long after the core sent them, and the
/// core's retransmissions of those writes come due meanwhile. A copy that left before the device
/// sent its write could be answered first, and the device would then wait for an answer the
/// target never sends again, until no write could enter it. The copies go on the same ring as
/// the writes, as the host's frames, so they leave behind them: every write the device takes
/// gets its outcome, and the device never has to be reset.
#[test]
fn retransmissions_never_overtake_the_writes_a_slow_device_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = start_target(d, SIZE, &[]);
    let source = start_source(
        d,
        &target.field("listen"),
        "speculative",
        SIZE,
        &["--engine", "hw", "--device", "sim:dma-latency=3000"],
    );
    let port = port_of(&source.field("nbd"));
    let cmds = small_writes(16 << 20, 600, 2 << 20);
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    volumes_match(d, "after the run", &[&source]);
    let (n, last) = device_writes(&source);
    let log = source.log_text();
    assert!(n >= 500, "only {n} writes through the device: {last}");
    assert!(
        report_field(&last, "copies") > 0,
        "no retransmission came due while the device held its write: the device was not slow \
         enough to test anything: {last}"
    );
    assert!(
        !log.contains("link to target down"),
        "the device lost track of a write and was reset:\n{log}"
    );
    eprintln!("slow device: {last}");
}

#[test]
fn engine_and_device_flags_that_do_not_fit_are_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vol = d.join("source.img");
    let log = d.join("source.log");
    for (extra, says) in [
        (&["--device", "sim"][..], "needs --engine hw"),
        (&["--engine", "hw"][..], "--engine hw needs --device"),
        (
            // No such device on this machine: the VFIO backend says so (tests/vfio/run.sh sees
            // it refuse a device that is there but not a specmirror device).
            &["--engine", "hw", "--device", "vfio:0000:7f:1f.7"][..],
            "no PCI device 0000:7f:1f.7",
        ),
        (
            &["--engine", "hw", "--device", "fpga0"][..],
            "unknown device",
        ),
        (
            &["--engine", "hw", "--device", "sim:dma-latency=0"][..],
            "from 1 to 1000000",
        ),
        (
            &["--engine", "hw", "--device", "sim:fast"][..],
            "one option, dma-latency",
        ),
        (
            &["--engine", "hw", "--device", "sim", "--transport", "udp"][..],
            "runs over TCP",
        ),
    ] {
        let mut args = vec![
            "source",
            "--volume",
            vol.to_str().unwrap(),
            "--size",
            SIZE,
            "--target",
            "127.0.0.1:9",
            "--nbd",
            "127.0.0.1:0",
            "--log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{extra:?} was accepted");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!vol.exists() && !log.exists(), "{extra:?} changed the disk");
    }
}

#[test]
fn target_engine_flags_that_do_not_fit_are_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("target.img");
    for (extra, says) in [
        (
            &["--size", SIZE, "--device", "sim"][..],
            "needs --engine hw",
        ),
        (
            &["--size", SIZE, "--engine", "hw"][..],
            "--engine hw needs --device",
        ),
        (
            &[
                "--size",
                SIZE,
                "--engine",
                "hw",
                "--device",
                "sim",
                "--transport",
                "udp",
            ][..],
            "runs over TCP",
        ),
        (
            &[
                "--size",
                SIZE,
                "--engine",
                "hw",
                "--device",
                "sim:dma-latency=9",
            ][..],
            "takes no options",
        ),
    ] {
        let mut args = vec![
            "target",
            "--listen",
            "127.0.0.1:0",
            "--volume",
            vol.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{extra:?} was accepted");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!vol.exists(), "{extra:?} changed the disk");
    }
}

#[test]
fn a_link_cut_resets_the_device_and_every_acknowledged_write_reaches_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = start_target(d, SIZE, &[]);
    let proxy = Proxy::start(&target.field("listen"));
    let source = start_hw_source(d, &proxy.addr, "speculative");
    let port = port_of(&source.field("nbd"));
    let load = std::thread::spawn(move || {
        let cmds: Vec<String> = (0..600u64)
            .map(|i| format!("write -P 0x{:02x} {} 4k", 1 + i % 250, (i % 1024) * 4096))
            .collect();
        let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
        qemu_io(&port, &refs)
    });
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1500));
    proxy.heal();
    let (ok, out) = load.join().unwrap();
    assert!(ok, "writes wait out the cut:\n{out}");
    volumes_match(d, "after the run", &[&source]);
    let log = source.log_text();
    assert!(log.contains("link to target down"), "{log}");
    assert!(
        log.matches("link to target up (hardware engine)").count() >= 2,
        "the device was opened again on the new connection:\n{log}"
    );
}

/// A TCP forwarder that keeps the bytes the source sent on its first connection.
/// What a forwarder in front of the target saw on the first connection: what the source sent,
/// and what the target answered.
type Kept = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn capture(upstream: &str) -> (String, Kept, Kept) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let kept = Kept::default();
    let answered = Kept::default();
    let (k, a, up) = (kept.clone(), answered.clone(), upstream.to_string());
    std::thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(mut down) = s else { continue };
            let Ok(mut upc) = TcpStream::connect(&up) else {
                continue;
            };
            let (mut d2, mut u2) = (down.try_clone().unwrap(), upc.try_clone().unwrap());
            let a = a.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 65536];
                while let Ok(m) = u2.read(&mut b) {
                    if m == 0 {
                        break;
                    }
                    if n == 0 {
                        a.lock().unwrap().extend_from_slice(&b[..m]);
                    }
                    if d2.write_all(&b[..m]).is_err() {
                        break;
                    }
                }
            });
            let k = k.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 65536];
                while let Ok(m) = down.read(&mut b) {
                    if m == 0 {
                        break;
                    }
                    if n == 0 {
                        k.lock().unwrap().extend_from_slice(&b[..m]);
                    }
                    if upc.write_all(&b[..m]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, kept, answered)
}

/// The frames of the types `keep` in what one side sent, after its `skip` bytes of authentication
/// (80 from the source, 96 from the target), each once: a retransmission (the target's FUA writes
/// may outlast the first timeout) repeats a frame whichever engine sends it.
fn frames_in(bytes: &[u8], skip: usize, keep: &[specmirror_abi::FrameType]) -> Vec<Vec<u8>> {
    let mut at = skip;
    let (mut out, mut seen) = (Vec::new(), std::collections::HashSet::new());
    while at < bytes.len() {
        let (f, n) = specmirror_core::Frame::decode(&bytes[at..]).expect("a well-formed frame");
        let h = f.header;
        if keep.contains(&h.ty) && seen.insert((h.ty as u8, h.seq, h.lock_id)) {
            out.push(bytes[at..at + n].to_vec());
        }
        at += n;
    }
    out
}

/// A fixed workload of 40 writes, one at a time, their sizes taken in turn from `sizes`.
fn one_at_a_time(sizes: &[u64]) -> Vec<String> {
    (0..40u64)
        .map(|i| {
            format!(
                "write -P 0x{:02x} {} {}",
                1 + i,
                (i * 104_729) % (8 << 20),
                sizes[i as usize % sizes.len()]
            )
        })
        .collect()
}

/// Two runs' frames, the same bytes one by one, `n` of them.
fn assert_same_frames(soft: &[Vec<u8>], hw: &[Vec<u8>], n: usize, what: &str) {
    assert_eq!(soft.len(), n, "{what}");
    assert_eq!(hw.len(), soft.len(), "{what}");
    for (k, (a, b)) in soft.iter().zip(hw).enumerate() {
        assert!(
            a == b,
            "{what}: frame {k} differs:\nsoftware {:?}\nhardware {:?}",
            specmirror_abi::Header::decode(a),
            specmirror_abi::Header::decode(b)
        );
    }
}

/// The frames a fixed workload puts on the wire, with the software or the hardware engine.
fn frames_of(engine: &str) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = start_target(d, SIZE, &[]);
    let (addr, sent, _) = capture(&target.field("listen"));
    let source = if engine == "hw" {
        start_hw_source(d, &addr, "speculative")
    } else {
        start_source(d, &addr, "speculative", SIZE, &[])
    };
    let port = port_of(&source.field("nbd"));
    // One write at a time: each frame's acknowledgements are the same whichever engine sends it.
    let cmds = one_at_a_time(&[512, 4096, 1, 65536, 3000, 131_072]);
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    let (src, tgt) = (d.join("source.img"), d.join("target.img"));
    assert!(
        wait_identical(&src, &tgt, Duration::from_secs(10)),
        "{engine}"
    );
    if engine == "hw" {
        let (n, last) = device_writes(&source);
        assert_eq!(
            n, 40,
            "every write's first transmission left through the device: {last}"
        );
    }
    drop(source);
    let frames = frames_in(
        &sent.lock().unwrap(),
        80,
        &[FrameType::Lock, FrameType::Data],
    );
    frames
}

#[test]
fn the_hardware_engine_puts_the_very_bytes_of_the_software_engine_on_the_wire() {
    let (soft, hw) = (frames_of("soft"), frames_of("hw"));
    assert_same_frames(&soft, &hw, 80, "40 writes, a LOCK and a DATA each");
}

/// What the software or the hardware target answers to a fixed workload of the software source.
fn answers_of(target_engine: &str) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let extra: &[&str] = if target_engine == "hw" {
        &["--engine", "hw", "--device", "sim"]
    } else {
        &[]
    };
    let target = start_target(d, SIZE, extra);
    let (addr, _, answered) = capture(&target.field("listen"));
    let source = start_source(d, &addr, "speculative", SIZE, &[]);
    let port = port_of(&source.field("nbd"));
    // One write at a time, none longer than 4 KiB: the hardware target announces that it takes
    // at most 4 KiB under one lock, so the source would split a longer write for it alone, and
    // the two targets would be sent different writes.
    let cmds = one_at_a_time(&[512, 4096, 1, 3000, 2048]);
    let refs: Vec<&str> = cmds.iter().map(|s| s.as_str()).collect();
    qemu_ok(&port, &refs);
    let (src, tgt) = (d.join("source.img"), d.join("target.img"));
    assert!(
        wait_identical(&src, &tgt, Duration::from_secs(10)),
        "{target_engine}"
    );
    drop(source);
    let answers = frames_in(
        &answered.lock().unwrap(),
        96,
        &[
            FrameType::LockGranted,
            FrameType::LockRejected,
            FrameType::WriteDone,
            FrameType::WriteFailed,
        ],
    );
    answers
}

#[test]
fn the_hardware_target_answers_with_the_very_bytes_of_the_software_target() {
    let (soft, hw) = (answers_of("soft"), answers_of("hw"));
    assert_same_frames(&soft, &hw, 80, "40 writes, a grant and a WRITE_DONE each");
}

/// A write the source logged against the software target and never saw confirmed (the target
/// went away, then the source was killed) is 64 KiB; the hardware target the source meets on
/// restart takes 4 KiB under one lock. No client waits for the write, so it cannot fail, and the
/// hardware target would drop every copy: the source stops at once with a message that names
/// the write and the limit, and keeps the write in its log for a target that takes it.
#[test]
fn a_restarted_source_whose_log_holds_a_write_too_long_for_the_hardware_target_stops_and_says_why()
{
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut target = start_target(d, SIZE, &[]);
    let addr = target.field("listen");
    let mut source = start_source(d, &addr, "speculative", SIZE, &["--link-timeout", "60s"]);
    let port = port_of(&source.field("nbd"));
    target.kill9();
    let write = std::thread::spawn(move || qemu_io(&port, &["write -P 0x5c 1M 64k"]));
    // The write is in the log once the source has written it locally; give it a moment.
    std::thread::sleep(Duration::from_millis(1500));
    source.kill9();
    let (ok, _) = write.join().unwrap();
    assert!(!ok, "the write was never confirmed");
    let log_len = std::fs::metadata(d.join("source.log")).unwrap().len();
    assert!(log_len > 65536, "the write is in the log: {log_len} bytes");

    let _hw = restart_target_at(d, &addr, &["--engine", "hw", "--device", "sim"]);
    let args: Vec<&str> = source.args.iter().map(|s| s.as_str()).collect();
    let err = match Spawned::new(d, "source", &args).ready() {
        Ok(_) => panic!("the source started against a target that cannot take its log"),
        Err(e) => e,
    };
    assert!(
        err.contains("(65536 bytes, with no client waiting")
            && err.contains("longer than the target takes under one lock (4096 bytes)"),
        "{err}"
    );
    assert!(
        std::fs::metadata(d.join("source.log")).unwrap().len() >= log_len,
        "the log keeps the write"
    );
}

//! Start-up refusals: each says what is wrong and changes nothing on disk.

mod common;

use common::*;

#[test]
fn a_volume_size_mismatch_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_target(dir.path(), "32MiB", &[]);
    let v = dir.path().join("source.img");
    let l = dir.path().join("source.log");
    let o = run(&[
        "source",
        "--volume",
        v.to_str().unwrap(),
        "--size",
        "64MiB",
        "--target",
        &target.field("listen"),
        "--nbd",
        "127.0.0.1:0",
        "--log",
        l.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("target volume is 33554432 bytes, source volume is 67108864 bytes"),
        "{}",
        stderr(&o)
    );
    assert!(!v.exists() && !l.exists());
}

#[test]
fn bad_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&[
        "target",
        "--listen",
        "127.0.0.1:0",
        "--volume",
        d,
        "--size",
        "1MiB",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    let missing = dir.path().join("missing.img");
    let o = run(&[
        "target",
        "--listen",
        "127.0.0.1:0",
        "--volume",
        missing.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("does not exist; pass --size"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists());
    let o = run(&[
        "target",
        "--listen",
        "127.0.0.1:0",
        "--volume",
        "/no/such/dir/v.img",
        "--size",
        "1MiB",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/no/such/dir/v.img"), "{}", stderr(&o));
    let odd = dir.path().join("odd.img");
    let o = run(&[
        "target",
        "--listen",
        "127.0.0.1:0",
        "--volume",
        odd.to_str().unwrap(),
        "--size",
        "1000",
    ]);
    assert!(stderr(&o).contains("multiple of 512"), "{}", stderr(&o));
    assert!(!odd.exists());
    let o = run(&[
        "source",
        "--volume",
        d,
        "--size",
        "1MiB",
        "--target",
        "127.0.0.1:1",
        "--nbd",
        "127.0.0.1:0",
        "--log",
        "/tmp/x.log",
    ]);
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
}

#[test]
fn a_log_of_another_pair_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p_target = start_target(dir.path(), "16MiB", &[]);
        let s = start_source(
            dir.path(),
            &p_target.field("listen"),
            "speculative",
            "16MiB",
            &[],
        );
        qemu_ok(&port_of(&s.field("nbd")), &["write -P 1 0 64k"]);
    }
    let log = dir.path().join("source.log");
    let before = std::fs::read(&log).unwrap();
    let other = tempfile::tempdir().unwrap();
    let t = start_target(other.path(), "32MiB", &[]);
    let o = run(&[
        "source",
        "--volume",
        other.path().join("s.img").to_str().unwrap(),
        "--size",
        "32MiB",
        "--target",
        &t.field("listen"),
        "--nbd",
        "127.0.0.1:0",
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("belongs to another volume pair"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&log).unwrap(), before);
    assert!(!other.path().join("s.img").exists());
}

#[test]
fn an_unreachable_target_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let o = run(&[
        "source",
        "--volume",
        dir.path().join("s.img").to_str().unwrap(),
        "--size",
        "1MiB",
        "--target",
        &dead,
        "--nbd",
        "127.0.0.1:0",
        "--log",
        dir.path().join("s.log").to_str().unwrap(),
        "--link-timeout",
        "1s",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
    assert!(!dir.path().join("s.img").exists());
}

#[test]
fn help_explains_every_command() {
    for cmd in ["source", "target", "simulate", "demo", "probe"] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.len() > 300, "{cmd} --help is too thin:\n{text}");
    }
    let o = run(&["source", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--log-sync",
        "--link-timeout",
        "--secret-file",
        "--mode",
        "--region-size",
    ] {
        assert!(text.contains(flag), "source --help lacks {flag}");
    }
}

#[test]
fn sigterm_stops_both_daemons_cleanly() {
    let mut p = Pair::start("speculative", "8MiB", &[]);
    qemu_ok(&p.nbd_port(), &["write -P 7 0 1M"]);
    for d in [&mut p.source, &mut p.target] {
        let pid = d.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = d.child.wait().unwrap();
        assert!(status.success(), "exit after SIGTERM: {status:?}");
        assert!(
            d.log_text().contains("stopping on a signal"),
            "{}",
            d.log_text()
        );
    }
    assert!(same_files(&p.src_img(), &p.tgt_img()));
}

#[test]
fn probe_names_a_bad_or_missing_device() {
    let o = run(&["probe", "--device", "vfio:00:1f"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad PCI address"), "{}", stderr(&o));
    let o = run(&["probe", "--device", "vfio:fffe:ff:1f.7"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAIL kernel") && out.contains("no PCI device fffe:ff:1f.7"),
        "{out}"
    );
    assert!(out.contains("result: not usable"), "{out}");
}

//! `specmirror bench --quick` and `specmirror linkem` as a user runs them: the bench runs and its
//! output parses. No timing is asserted here; figures come from full runs (BENCHMARKS.md).

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let start = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

#[test]
fn quick_bench_runs_and_its_output_parses() {
    let o = run(&["bench", "--quick", "--qd1-ops", "50", "--qd32-ops", "400"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
    // floor, floor through a forwarder, floor without the link emulator, three modes; three
    // measurements each.
    assert_eq!(lines.len(), 18, "{out}");
    for l in &lines {
        for k in [
            "engine", "mode", "rtt_us", "qd", "bs", "p50_us", "p99_us", "iops", "mb_s",
        ] {
            field(l, k);
        }
        let iops: f64 = field(l, "iops").parse().unwrap();
        let p50: f64 = field(l, "p50_us").parse().unwrap();
        assert!(iops > 0.0 && p50 > 0.0, "{l}");
        // The bench's own CPU time per write (ticks of 10 ms: a short run may show 0).
        let cpu: f64 = field(l, "cpu_us_per_write").parse().unwrap();
        assert!(cpu >= 0.0, "{l}");
    }
    for m in [
        "floor",
        "relayed",
        "direct",
        "speculative",
        "implicit",
        "conservative",
    ] {
        assert!(lines.iter().any(|l| field(l, "mode") == m), "no {m} rows");
    }
    assert!(out.contains("spec/cons p50"), "ratios printed:\n{out}");
    // The emulator's own cost at zero delay: the floor through it against the server directly.
    let cost = out
        .lines()
        .find(|l| l.contains("the link emulator's own cost"))
        .unwrap_or_else(|| panic!("no emulator cost:\n{out}"));
    let plus: f64 = cost
        .split("QD1 p50 +")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{cost}"));
    assert!(plus.is_finite(), "{cost}");
    // The client's extra hop: the floor through a forwarder against the floor, and the
    // speculative mode against the floor with that hop.
    let hop = out
        .lines()
        .find(|l| l.contains("the client's extra hop"))
        .unwrap_or_else(|| panic!("no extra hop:\n{out}"));
    let spec: Vec<f64> = hop
        .split("spec against it: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{hop}"))
        .split(", ")
        .map(|p| {
            p.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{hop}"))
        })
        .collect();
    assert!(spec.len() == 3 && spec.iter().all(|v| *v > 0.0), "{hop}");
    // The stage tables: at QD1 a row per mode, at QD32 one per mode and block size; the disk's
    // calls a part of the core task's time.
    let between = |from: &str, to: &str| -> String {
        out.split(from)
            .nth(1)
            .and_then(|t| t.split(to).next())
            .unwrap_or_else(|| panic!("no table after {from:?}:\n{out}"))
            .to_string()
    };
    let qd1 = between(
        "where a QD1 write's time goes",
        "where a QD32 write's time goes",
    );
    let qd32 = between("where a QD32 write's time goes", "CPU per QD32 write");
    for (table, sizes) in [(&qd1, &[4096.0][..]), (&qd32, &[4096.0, 65536.0][..])] {
        for m in ["speculative", "implicit", "conservative"] {
            let rows: Vec<Vec<f64>> = table
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some(m))
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .collect();
            let got: Vec<f64> = rows.iter().map(|r| r[1]).collect();
            assert_eq!(got, sizes, "{m}'s rows by block size:\n{table}");
            for row in rows {
                // rtt, bs, total, front, queued, core, disk, target, floor
                assert_eq!(row.len(), 9, "{m}: {row:?}");
                let (core, disk) = (row[5], row[6]);
                assert!(disk > 0.0 && disk <= core, "{m}: core {core}, disk {disk}");
            }
        }
    }
    // The goals, judged from this run's own rows. At zero delay three are judged; the two that
    // need a round trip say so.
    let goals: Vec<&str> = out
        .split("goals, judged from this run")
        .nth(1)
        .unwrap_or_else(|| panic!("no goals:\n{out}"))
        .lines()
        .filter(|l| l.starts_with("  ["))
        .collect();
    assert_eq!(goals.len(), 5, "{goals:#?}");
    let row = |mode: &str, qd: &str, bs: &str| {
        *lines
            .iter()
            .find(|l| field(l, "mode") == mode && field(l, "qd") == qd && field(l, "bs") == bs)
            .unwrap_or_else(|| panic!("no {mode} row at QD{qd} {bs}"))
    };
    let num = |l: &str, k: &str| -> f64 { field(l, k).parse().unwrap() };
    for (text, qd, bs, key, limit, at_most) in [
        (
            "QD1 p50 <= 1.2 x the floor",
            "1",
            "4096",
            "p50_us",
            1.2,
            true,
        ),
        ("QD32 4 KiB IOPS >= 0.9", "32", "4096", "iops", 0.9, false),
        ("QD32 64 KiB MB/s >= 0.9", "32", "65536", "mb_s", 0.9, false),
    ] {
        let l = goals
            .iter()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no goal {text:?}: {goals:#?}"));
        let v: f64 = l
            .split("RTT: ")
            .nth(1)
            .and_then(|t| t.split(';').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {l}"));
        let want = num(row("speculative", qd, bs), key) / num(row("floor", qd, bs), key);
        assert!((v - want).abs() <= 0.011, "{l}: the rows give {want:.3}");
        let met = if at_most { v <= limit } else { v >= limit };
        assert_eq!(l.starts_with("  [met]"), met, "{l}");
        assert_eq!(l.starts_with("  [missed]"), !met, "{l}");
        if met {
            continue;
        }
        // A missed goal's split into stages adds up to the difference of the means.
        let split = l
            .split("the mean write is ")
            .nth(1)
            .unwrap_or_else(|| panic!("no split in {l}"));
        let excess: f64 = split.split(' ').next().unwrap().parse().unwrap();
        let parts: Vec<(&str, f64)> = split
            .split(" over the floor's: ")
            .nth(1)
            .and_then(|t| t.split("; largest: ").next())
            .unwrap_or_else(|| panic!("no parts in {l}"))
            .split(", ")
            .map(|p| {
                let v = p
                    .split(' ')
                    .find_map(|w| w.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("no figure in {p:?}"));
                (p, v)
            })
            .collect();
        assert_eq!(parts.len(), 4, "{l}");
        let sum: f64 = parts.iter().map(|p| p.1).sum();
        assert!((sum - excess).abs() < 0.3, "{l}: the parts add up to {sum}");
        let largest = parts.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        let named = split
            .split("; largest: ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        assert!(
            largest.starts_with(named),
            "{l}: the largest is {largest:?}"
        );
    }
    for text in ["speculative / conservative", "QD1 p50 <= 1.02"] {
        assert!(
            goals
                .iter()
                .any(|l| l.starts_with("  [not measured]") && l.contains(text)),
            "{text} is judged at an RTT the quick run does not have: {goals:#?}"
        );
    }
    // The CPU table: a row for the floor and each mode.
    let cpu_table = out
        .split("CPU per QD32 write")
        .nth(1)
        .unwrap_or_else(|| panic!("no CPU table:\n{out}"));
    for m in ["floor", "speculative", "implicit", "conservative"] {
        assert!(
            cpu_table
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some(m)),
            "no {m} row in the CPU table:\n{cpu_table}"
        );
    }
}

#[test]
fn quick_bidirectional_bench_runs_and_its_output_parses() {
    let o = run(&["bench", "--bidirectional", "--quick", "--qd1-ops", "50"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (l, node) in lines.iter().zip(["node1", "node2"]) {
        assert_eq!(field(l, "engine"), node);
        assert_eq!(field(l, "mode"), "bidirectional");
        let p50: f64 = field(l, "p50_us").parse().unwrap();
        assert!(p50 > 0.0, "{l}");
    }
    assert!(out.contains("node/floor"), "{out}");
}

#[test]
fn quick_transports_bench_runs_and_its_output_parses() {
    let o = run(&[
        "bench",
        "--transports",
        "--quick",
        "--qd1-ops",
        "50",
        "--qd32-ops",
        "200",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
    // floor, tcp, udp at 0 and at 1 % loss; three measurements each.
    assert_eq!(lines.len(), 12, "{out}");
    for (engine, transport, loss) in [
        ("floor", "tcp", "0"),
        ("software", "tcp", "0"),
        ("software", "udp", "0"),
        ("software", "udp", "0.01"),
    ] {
        let rows: Vec<&&str> = lines
            .iter()
            .filter(|l| {
                field(l, "engine") == engine
                    && field(l, "transport") == transport
                    && field(l, "loss") == loss
            })
            .collect();
        assert_eq!(rows.len(), 3, "{transport} {loss}: {out}");
        for l in rows {
            let p50: f64 = field(l, "p50_us").parse().unwrap();
            assert!(p50 > 0.0, "{l}");
        }
    }
    assert!(out.contains("p50/floor"), "{out}");
}

#[test]
fn udp_linkem_forwards_and_loses() {
    let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let eaddr = echo.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut b) {
            echo.send_to(&b[..n], from).ok();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let l = Daemon::start(
        dir.path(),
        "linkem",
        &[
            "linkem",
            "--udp",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &eaddr,
            "--delay",
            "5ms",
            "--loss",
            "0.5",
        ],
    );
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(l.field("listen")).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut back = 0;
    let mut b = [0u8; 8];
    for i in 0..40u8 {
        c.send(&[i]).unwrap();
        if c.recv(&mut b).is_ok() {
            back += 1;
        }
    }
    // Each echo survives two crossings at 0.5: about a quarter come back.
    assert!((2..=25).contains(&back), "{back} of 40 came back");
}

#[test]
fn linkem_delays_and_forwards() {
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let eaddr = echo.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut b = [0u8; 64];
        while let Ok(n) = s.read(&mut b) {
            if n == 0 || s.write_all(&b[..n]).is_err() {
                break;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let l = Daemon::start(
        dir.path(),
        "linkem",
        &[
            "linkem",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &eaddr,
            "--delay",
            "25ms",
        ],
    );
    let mut c = std::net::TcpStream::connect(l.field("listen")).unwrap();
    let t = Instant::now();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    assert!(
        t.elapsed() >= Duration::from_millis(50),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn quick_scale_run_covers_every_size_and_depth() {
    let o = run(&["bench", "--scale", "--quick"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| r.len() == 7)
        .collect();
    assert_eq!(rows.len(), 9, "{out}");
    for r in &rows {
        assert!(["1GiB", "100GiB", "1TiB"].contains(&r[0]), "{r:?}");
        // qd, writes, cpu_us/write, rss_MiB, peak_MiB, iops: CPU time comes in ticks of 10 ms,
        // which a quick run's 500 writes may not fill; the rest must be there.
        let v: Vec<f64> = r[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert!(v[2] >= 0.0, "{r:?}");
        for x in [v[0], v[1], v[3], v[4], v[5]] {
            assert!(x > 0.0, "{r:?}");
        }
    }
}

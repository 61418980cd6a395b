//! Two `specmirror node` processes, each serving NBD clients on its own copy and mirroring to the
//! other: clients on both nodes write and read the same blocks at once. Afterwards the copies are
//! byte-identical, and the clients' histories are linearizable per block.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use specmirror_engine::nbd_client::NbdClient;
use specmirror_sim::linearize::{check_register, Kind, Op};

struct Nodes {
    dir: tempfile::TempDir,
    one: Daemon,
    two: Daemon,
    /// Node 2's link address, and the flags both nodes share.
    link: String,
    common: Vec<String>,
}

impl Nodes {
    fn start(mode: &str, size: &str, region: &str) -> Nodes {
        Self::start_with(&["--mode", mode, "--size", size, "--region-size", region])
    }

    fn start_with(common: &[&str]) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let common: Vec<String> = common.iter().map(|s| s.to_string()).collect();
        let (two, link) = Self::spawn_two(dir.path(), &common, "127.0.0.1:0");
        let d = dir.path();
        let arg = |p: &str| d.join(p).display().to_string();
        let (v1, l1) = (arg("n1.img"), arg("n1.log"));
        let mut args = vec![
            "node",
            "--node-id",
            "1",
            "--volume",
            &v1,
            "--peer",
            &link,
            "--nbd",
            "127.0.0.1:0",
            "--log",
            &l1,
        ];
        args.extend(common.iter().map(|s| s.as_str()));
        let one = Daemon::start(d, "node1", &args);
        let two = two.ready().unwrap_or_else(|e| panic!("node 2: {e}"));
        Nodes {
            dir,
            one,
            two,
            link,
            common,
        }
    }

    /// Starts node 2 and reads its link address.
    fn spawn_two(d: &Path, common: &[String], listen: &str) -> (Spawned, String) {
        let arg = |p: &str| d.join(p).display().to_string();
        let (v2, l2) = (arg("n2.img"), arg("n2.log"));
        let mut args = vec![
            "node",
            "--node-id",
            "2",
            "--volume",
            &v2,
            "--listen",
            listen,
            "--nbd",
            "127.0.0.1:0",
            "--log",
            &l2,
        ];
        args.extend(common.iter().map(|s| s.as_str()));
        let mut two = Spawned::new(d, "node2", &args);
        let link = two
            .line("listening link=")
            .unwrap_or_else(|e| panic!("{e}"));
        let link = link.trim_start_matches("listening link=").to_string();
        (two, link)
    }

    /// Node 2 comes back at the same link address.
    fn restart_two(&mut self) {
        let (two, _) = Self::spawn_two(self.dir.path(), &self.common, &self.link);
        self.two = two.ready().unwrap_or_else(|e| panic!("node 2 again: {e}"));
    }

    fn img(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("n{n}.img"))
    }

    fn nbd(&self, n: u32) -> String {
        if n == 1 { &self.one } else { &self.two }.field("nbd")
    }

    fn logs(&self) -> String {
        format!(
            "node 1:\n{}\nnode 2:\n{}",
            self.one.log_text(),
            self.two.log_text()
        )
    }
}

fn identical_or_panic(n: &Nodes, a: &Path, b: &Path) {
    assert!(
        wait_identical(a, b, Duration::from_secs(20)),
        "copies differ at byte {:?}\n{}",
        first_difference(a, b),
        n.logs()
    );
}

const BLOCK: u64 = 512;
const BLOCKS: u64 = 8;

/// Clients on both nodes hammer `BLOCKS` blocks with tagged writes and reads, recording when
/// each operation was called and answered, and what each read saw.
async fn contend(addrs: [String; 2], per_client: usize) -> Vec<(u64, Op)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (n, addr) in addrs.iter().enumerate() {
        for c in 0..3u64 {
            let client = NbdClient::connect_export(addr, "specmirror").await.unwrap();
            let who = (n as u64 + 1) * 100 + c;
            tasks.push(tokio::spawn(client_ops(client, who, start, per_client)));
        }
    }
    let mut ops = Vec::new();
    for t in tasks {
        ops.extend(t.await.unwrap());
    }
    ops
}

async fn client_ops(c: Arc<NbdClient>, who: u64, start: Instant, n: usize) -> Vec<(u64, Op)> {
    let mut x = who.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let at = |t: Instant| t.duration_since(start).as_nanos() as u64;
    let mut ops = Vec::new();
    for i in 0..n as u64 {
        let first = rnd() % BLOCKS;
        let count = (1 + rnd() % 2).min(BLOCKS - first);
        let call = Instant::now();
        if rnd() % 5 < 2 {
            let data = c.read(first * BLOCK, (count * BLOCK) as u32).await.unwrap();
            let ret = Instant::now();
            for (k, b) in data.chunks(BLOCK as usize).enumerate() {
                let v = u64::from_le_bytes(b[..8].try_into().unwrap());
                assert!(
                    b.chunks(8)
                        .all(|w| u64::from_le_bytes(w.try_into().unwrap()) == v),
                    "client {who} read a torn block {}",
                    first + k as u64
                );
                ops.push((
                    first + k as u64,
                    Op {
                        call: at(call),
                        ret: Some(at(ret)),
                        kind: Kind::Read(v),
                        who,
                    },
                ));
            }
        } else {
            let tag = (who << 32) | (i + 1);
            let data: Vec<u8> = (0..count * BLOCK / 8)
                .flat_map(|_| tag.to_le_bytes())
                .collect();
            let r = c.write(first * BLOCK, &data, false).await;
            let ret = r.is_ok().then(|| at(Instant::now()));
            for b in first..first + count {
                ops.push((
                    b,
                    Op {
                        call: at(call),
                        ret,
                        kind: Kind::Write(tag),
                        who,
                    },
                ));
            }
        }
    }
    ops
}

fn contended_blocks(mode: &str) {
    let n = Nodes::start(mode, "1MiB", "512");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ops = rt.block_on(contend([n.nbd(1), n.nbd(2)], 150));
    identical_or_panic(&n, &n.img(1), &n.img(2));
    // The final content closes each block's history.
    let fin = std::fs::read(n.img(1)).unwrap();
    let mut per_block: Vec<Vec<Op>> = vec![Vec::new(); BLOCKS as usize];
    let mut writes = 0;
    for (b, op) in ops {
        writes += matches!(op.kind, Kind::Write(_)) as usize;
        per_block[b as usize].push(op);
    }
    assert!(writes > 300, "only {writes} block writes");
    for (b, h) in per_block.iter_mut().enumerate() {
        let end = h.iter().filter_map(|o| o.ret).max().unwrap_or(0) + 1;
        let o = b * BLOCK as usize;
        let v = u64::from_le_bytes(fin[o..o + 8].try_into().unwrap());
        h.push(Op {
            call: end,
            ret: Some(end),
            kind: Kind::Read(v),
            who: 0,
        });
        if let Err(e) = check_register(0, h) {
            panic!("{mode}: block {b} is not linearizable: {e}\n{}", n.logs());
        }
    }
}

#[test]
fn speculative_nodes_contending_stay_identical_and_linearizable() {
    contended_blocks("speculative");
}

#[test]
fn conservative_nodes_contending_stay_identical_and_linearizable() {
    contended_blocks("conservative");
}

#[test]
fn qemu_io_writing_overlapping_patterns_on_both_nodes_at_once() {
    let n = Nodes::start("speculative", "8MiB", "64KiB");
    let (p1, p2) = (n.nbd(1), n.nbd(2));
    let (port1, port2) = (port_of(&p1), port_of(&p2));
    let a = std::thread::spawn(move || {
        qemu_ok(
            &port1,
            &[
                "write -P 0x11 0 2M",
                "aio_write -P 0x12 1M 1M",
                "aio_write -P 0x13 3M 100000",
                "aio_flush",
                "write -P 0x14 5000 70000",
            ],
        )
    });
    let b = std::thread::spawn(move || {
        qemu_ok(
            &port2,
            &[
                "write -P 0x21 1536K 2M",
                "aio_write -P 0x22 0 1M",
                "aio_write -P 0x23 3050000 100000",
                "aio_flush",
                "write -P 0x24 40000 5000",
            ],
        )
    });
    a.join().unwrap();
    b.join().unwrap();
    identical_or_panic(&n, &n.img(1), &n.img(2));
    // Outside every overlap each pattern reads back where it was written, through either node.
    for port in [port_of(&n.nbd(1)), port_of(&n.nbd(2))] {
        qemu_ok(&port, &["read -P 0x21 2M 952848", "read -P 0x00 4M 4M"]);
    }
}

#[test]
fn a_bad_node_invocation_changes_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = d.join("v.img").display().to_string();
    let l = d.join("v.log").display().to_string();
    let base = [
        "node",
        "--volume",
        &v,
        "--size",
        "1MiB",
        "--nbd",
        "127.0.0.1:0",
    ];
    for (extra, says) in [
        (
            vec!["--node-id", "3", "--log", &l, "--peer", "127.0.0.1:1"],
            "--node-id",
        ),
        (vec!["--node-id", "1", "--log", &l], "--peer"),
        (vec!["--node-id", "2", "--log", &l], "--listen"),
        (
            vec!["--node-id", "2", "--log", &l, "--listen", "not-an-address"],
            "not-an-address",
        ),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra);
        let o = run(&args);
        assert!(!o.status.success(), "{args:?} was accepted");
        let e = stderr(&o);
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(!d.join("v.img").exists(), "{args:?} created the volume");
        assert!(!d.join("v.log").exists(), "{args:?} created the log");
    }
}

/// Node 2 is killed; node 1's client writes while it is away; node 2 comes back.
fn peer_away(alone: &str) -> (Nodes, bool, String) {
    let mut n = Nodes::start_with(&[
        "--size",
        "4MiB",
        "--region-size",
        "4KiB",
        "--link-timeout",
        "1s",
        "--alone",
        alone,
    ]);
    qemu_ok(&port_of(&n.nbd(1)), &["write -P 0x11 0 64k"]);
    identical_or_panic(&n, &n.img(1), &n.img(2));
    n.two.kill9();
    let started = Instant::now();
    let (ok, out) = qemu_io(&port_of(&n.nbd(1)), &["write -P 0x22 0 4k"]);
    let waited = started.elapsed();
    n.restart_two();
    identical_or_panic(&n, &n.img(1), &n.img(2));
    (n, ok, format!("{out} (answered after {waited:?})"))
}

#[test]
fn by_default_a_node_refuses_writes_while_its_peer_is_away() {
    let (n, ok, out) = peer_away("refuse");
    assert!(!ok, "the write succeeded without the peer: {out}");
    assert!(
        out.contains("Input/output error"),
        "not refused with EIO: {out}"
    );
    // The refused write left no trace on either copy once the peer was back.
    for port in [port_of(&n.nbd(1)), port_of(&n.nbd(2))] {
        qemu_ok(&port, &["read -P 0x11 0 64k"]);
    }
}

#[test]
fn serving_alone_answers_and_the_peer_catches_up_from_the_log() {
    let (n, ok, out) = peer_away("serve");
    assert!(ok, "the write failed: {out}");
    for port in [port_of(&n.nbd(1)), port_of(&n.nbd(2))] {
        qemu_ok(&port, &["read -P 0x22 0 4k", "read -P 0x11 4k 60k"]);
    }
}

#[test]
fn a_node_refuses_a_one_way_target_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = start_target(d, "1MiB", &[]);
    let v = d.join("n1.img").display().to_string();
    let l = d.join("n1.log").display().to_string();
    let o = run(&[
        "node",
        "--node-id",
        "1",
        "--volume",
        &v,
        "--size",
        "1MiB",
        "--peer",
        &target.field("listen"),
        "--nbd",
        "127.0.0.1:0",
        "--log",
        &l,
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("not this pair's other node"), "{e}");
    assert!(!d.join("n1.img").exists() && !d.join("n1.log").exists());
}

#[test]
fn node_1_checks_the_pair_with_node_2_before_touching_its_disk() {
    let n = Nodes::start("speculative", "1MiB", "4KiB");
    let d = n.dir.path();
    let v = d.join("other.img").display().to_string();
    let l = d.join("other.log").display().to_string();
    for (size, region, says) in [
        ("2MiB", "4KiB", "volume is 1048576 bytes"),
        ("1MiB", "8KiB", "4096-byte regions"),
    ] {
        let o = run(&[
            "node",
            "--node-id",
            "1",
            "--volume",
            &v,
            "--size",
            size,
            "--region-size",
            region,
            "--peer",
            &n.link,
            "--nbd",
            "127.0.0.1:0",
            "--log",
            &l,
        ]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(says), "{e}");
        assert!(!d.join("other.img").exists() && !d.join("other.log").exists());
    }
}

#[test]
fn node_2_touches_its_disk_only_once_the_right_node_1_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let common: Vec<String> = ["--size", "1MiB", "--region-size", "4KiB"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (two, link) = Nodes::spawn_two(d, &common, "127.0.0.1:0");
    let one = |size: &str| {
        let v = d.join("n1.img").display().to_string();
        let l = d.join("n1.log").display().to_string();
        vec![
            "node".to_string(),
            "--node-id".into(),
            "1".into(),
            "--volume".into(),
            v,
            "--log".into(),
            l,
            "--size".into(),
            size.into(),
            "--region-size".into(),
            "4KiB".into(),
            "--peer".into(),
            link.clone(),
            "--nbd".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let wrong = one("2MiB");
    let o = run(&wrong.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(!o.status.success(), "a node 1 of another size was accepted");
    assert!(
        !d.join("n2.img").exists() && !d.join("n2.log").exists(),
        "node 2 changed its disk for a peer it refused"
    );
    let right = one("1MiB");
    let _one = Daemon::start(
        d,
        "node1",
        &right.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    let two = two.ready().unwrap_or_else(|e| panic!("node 2: {e}"));
    assert!(d.join("n2.img").exists());
    assert!(
        two.log_text().contains("refused a peer"),
        "{}",
        two.log_text()
    );
}

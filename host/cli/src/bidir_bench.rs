//! `specmirror bench --bidirectional`: both nodes of a bidirectional pair write at once, each to
//! its own half of the volume, over the link emulator; their QD1 latency next to the physical
//! floor and a one-way speculative pair at the same round-trip time, measured in one run.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use specmirror_abi::ring::Mode;
use specmirror_engine::nbd_client::NbdClient;
use specmirror_engine::node::{self, NodeOptions};
use specmirror_engine::source::NbdListen;
use specmirror_sim::linkem::{Link, LinkConfig};

use crate::load::{random_writes, random_writes_at, LoadResult};
use crate::pair::{runtime, Floor, Pair};

const SIZE: u64 = 64 << 20;

/// Two nodes on runtimes of their own, node 1 reaching node 2 through the link emulator.
struct Nodes {
    nbd: [String; 2],
    _link: Link,
    rts: Vec<tokio::runtime::Runtime>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for rt in self.rts.drain(..) {
            rt.shutdown_background();
        }
    }
}

fn options(dir: &Path, id: u32) -> NodeOptions {
    NodeOptions {
        node_id: id,
        volume: dir.join(format!("n{id}.img")),
        size: Some(SIZE),
        listen: (id == 2).then(|| "127.0.0.1:0".to_string()),
        peer: None,
        nbd: NbdListen::Tcp("127.0.0.1:0".into()),
        log: dir.join(format!("n{id}.log")),
        mode: Mode::Speculative,
        region_size: 64 << 10,
        pair_id: [9u8; 16],
        secret: None,
        link_timeout: Duration::from_secs(30),
        log_sync: false,
        peer_timeout: Duration::from_secs(10),
        export_name: "specmirror".into(),
        max_inflight: 256 << 20,
        serve_alone: false,
    }
}

impl Nodes {
    async fn start(dir: &Path, delay: Duration) -> Result<Nodes> {
        let (rt1, rt2) = (runtime("node-1")?, runtime("node-2")?);
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let two = rt2.spawn(node::start(options(dir, 2), move |a| {
            tx.send(a.to_string()).ok();
        }));
        let link_addr = rx.await.context("node 2 did not bind its link")?;
        let link = Link::start(
            "127.0.0.1:0",
            &link_addr,
            LinkConfig {
                delay,
                ..Default::default()
            },
        )?;
        let mut o1 = options(dir, 1);
        o1.peer = Some(link.addr.clone());
        let one = rt1.spawn(node::start(o1, |_| {})).await??;
        let two = two.await??;
        Ok(Nodes {
            nbd: [one.nbd_addr, two.nbd_addr],
            _link: link,
            rts: vec![rt1, rt2],
        })
    }
}

/// QD1 4 KiB writes on both nodes at once, each on its own half: (node 1, node 2).
async fn both(n: &Nodes, ops: u64) -> Result<(LoadResult, LoadResult)> {
    let c1 = NbdClient::connect_export(&n.nbd[0], "specmirror").await?;
    let c2 = NbdClient::connect_export(&n.nbd[1], "specmirror").await?;
    let half = SIZE / 2;
    let (a, b) = tokio::join!(
        random_writes_at(&c1, 1, 4096, ops, 0, half),
        random_writes_at(&c2, 1, 4096, ops, half, half),
    );
    Ok((a?, b?))
}

pub async fn bidirectional(rtts: &[Duration], ops: u64) -> Result<bool> {
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>12}",
        "rtt_us", "n1_p50", "n1_p99", "n2_p50", "n2_p99", "oneway_p50", "floor_p50", "node/floor"
    );
    let mut ok = true;
    for &rtt in rtts {
        let delay = rtt / 2;
        eprint!("measuring at {:>6.0} us RTT ... ", rtt.as_secs_f64() * 1e6);
        let dir = tempfile::tempdir()?;
        let floor = {
            let f = Floor::start(dir.path(), SIZE, delay).await?;
            let c = NbdClient::connect_export(&f.nbd_addr, "").await?;
            random_writes(&c, 1, 4096, ops, SIZE).await?
        };
        let oneway = {
            let d = dir.path().join("oneway");
            std::fs::create_dir_all(&d)?;
            let p = Pair::start(&d, Mode::Speculative, SIZE, delay).await?;
            let c = NbdClient::connect_export(&p.nbd_addr, "specmirror").await?;
            random_writes(&c, 1, 4096, ops, SIZE).await?
        };
        let (n1, n2) = {
            let d = dir.path().join("nodes");
            std::fs::create_dir_all(&d)?;
            let n = Nodes::start(&d, delay).await?;
            both(&n, ops).await?
        };
        eprintln!("done");
        let us = rtt.as_secs_f64() * 1e6;
        for (name, r) in [("node1", &n1), ("node2", &n2)] {
            println!(
                "{{\"engine\":\"{name}\",\"mode\":\"bidirectional\",\"rtt_us\":{us:.0},\"qd\":1,\"bs\":4096,\"p50_us\":{:.1},\"p99_us\":{:.1},\"iops\":{:.0},\"mb_s\":{:.1}}}",
                r.percentile(0.5),
                r.percentile(0.99),
                r.iops(),
                r.mb_s()
            );
        }
        let worst = n1.percentile(0.5).max(n2.percentile(0.5));
        println!(
            "{us:>8.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>10.1} {:>12.2}",
            n1.percentile(0.5),
            n1.percentile(0.99),
            n2.percentile(0.5),
            n2.percentile(0.99),
            oneway.percentile(0.5),
            floor.percentile(0.5),
            worst / floor.percentile(0.5).max(1.0),
        );
        ok &= n1.ops == ops && n2.ops == ops;
    }
    println!(
        "node/floor: the slower node's QD1 p50 over the floor's (one round trip and a pwrite)."
    );
    Ok(ok)
}

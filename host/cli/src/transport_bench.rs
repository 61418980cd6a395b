//! `specmirror bench --transports`: the speculative mirror over TCP and over UDP datagrams (at
//! each loss rate the datagram link emulator is told to apply), next to the physical floor, at
//! each round-trip time, in one run. QD1 4 KiB p50/p99, QD32 4 KiB IOPS and QD32 64 KiB MB/s.
//!
//! The stream emulator cannot lose packets (it forwards a byte stream; kernel netem is not
//! available), so TCP is measured on a clean link only.

use std::time::Duration;

use anyhow::{bail, Result};
use specmirror_abi::ring::Mode;
use specmirror_engine::datagram::Transport;

use crate::bench::{measure, Row};
use crate::pair::{Floor, Pair, PairLink};

const SIZE: u64 = 256 << 20;

/// What to measure.
pub struct Plan<'a> {
    pub rtts: &'a [Duration],
    pub losses: &'a [f64],
    pub mtu: u32,
    pub qd1_ops: u64,
    pub qd32_ops: u64,
}

pub async fn transports(p: Plan<'_>) -> Result<bool> {
    if p.rtts.is_empty() {
        bail!("--rtt needs at least one value");
    }
    if let Some(l) = p.losses.iter().find(|l| !(0.0..1.0).contains(*l)) {
        bail!("--loss {l} is not a probability below 1");
    }
    let piece = Transport::udp(p.mtu)?.max_payload();
    let ops = (p.qd1_ops, p.qd32_ops);
    let mut table = Vec::new();
    let mut ok = true;
    for &rtt in p.rtts {
        let delay = rtt / 2;
        let us = rtt.as_secs_f64() * 1e6;
        // (what the table calls it, loss, how the pair talks; none for the floor, which crosses
        // the stream emulator)
        let mut runs: Vec<(&str, f64, Option<PairLink>)> = vec![("floor", 0.0, None)];
        runs.push(("tcp", 0.0, Some(PairLink::Tcp)));
        for &loss in p.losses {
            runs.push(("udp", loss, Some(PairLink::Udp { mtu: p.mtu, loss })));
        }
        let mut floor_p50 = 0.0;
        for (transport, loss, how) in runs {
            eprint!(
                "measuring {transport:<5} loss {:>4.1} % at {us:>6.0} us RTT ... ",
                loss * 100.0
            );
            let dir = tempfile::tempdir()?;
            let (rows, link) = match how {
                None => {
                    let f = Floor::start(dir.path(), SIZE, delay).await?;
                    (
                        measure(&f.nbd_addr, "floor", "floor", rtt, ops).await?,
                        "tcp",
                    )
                }
                Some(how) => {
                    let pair =
                        Pair::start_over(dir.path(), Mode::Speculative, SIZE, delay, how).await?;
                    let addr = format!("{}#specmirror", pair.nbd_addr);
                    let rows = measure(&addr, "software", "speculative", rtt, ops).await?;
                    (rows, transport)
                }
            };
            eprintln!("done");
            ok &= rows[0].r.ops == p.qd1_ops;
            let mtu = if transport == "udp" { p.mtu } else { 0 };
            for r in &rows {
                println!(
                    "{}",
                    r.json_with(&format!(
                        ",\"transport\":\"{link}\",\"loss\":{loss},\"mtu\":{mtu}"
                    ))
                );
            }
            if how.is_none() {
                floor_p50 = rows[0].r.percentile(0.5);
            }
            table.push((transport, loss, floor_p50, rows));
        }
    }
    print_table(&table);
    println!(
        "udp: one frame per datagram of MTU {}; a 4 KiB write is {} DATA piece(s) under its one lock, a 64 KiB one {}.",
        p.mtu,
        4096u32.div_ceil(piece),
        65536u32.div_ceil(piece),
    );
    Ok(ok)
}

/// One line per run: (what the table calls it, loss, the floor's QD1 p50, its three rows).
fn print_table(table: &[(&str, f64, f64, Vec<Row>)]) {
    println!();
    println!(
        "{:>8} {:<6} {:>6} {:>9} {:>9} {:>12} {:>13} {:>11}",
        "rtt_us",
        "link",
        "loss%",
        "qd1_p50",
        "qd1_p99",
        "qd32_4k_iops",
        "qd32_64k_MB/s",
        "p50/floor"
    );
    for (transport, loss, floor, rows) in table {
        let (qd1, qd32, qd32_64k) = (&rows[0].r, &rows[1].r, &rows[2].r);
        println!(
            "{:>8.0} {transport:<6} {:>6.1} {:>9.1} {:>9.1} {:>12.0} {:>13.1} {:>11.2}",
            rows[0].rtt_us,
            loss * 100.0,
            qd1.percentile(0.5),
            qd1.percentile(0.99),
            qd32.iops(),
            qd32_64k.mb_s(),
            qd1.percentile(0.5) / floor.max(1.0),
        );
    }
}

//! `specmirror bench --transports`: the speculative mirror over TCP and over UDP datagrams (at
//! each loss rate the datagram link emulator is told to apply), next to the physical floor, at
//! each round-trip time, in one run. QD1 4 KiB p50/p99, QD32 4 KiB IOPS and QD32 64 KiB MB/s.
//!
//! The stream emulator cannot lose packets (it forwards a byte stream; kernel netem is not
//! available), so TCP is measured on a clean link only.

use std::time::Duration;

use anyhow::{bail, Result};
use specmirror_abi::ring::Mode;
use specmirror_engine::nbd_client::NbdClient;

use crate::load::{random_writes, LoadResult};
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

struct Measured {
    qd1: LoadResult,
    qd32: LoadResult,
    qd32_64k: LoadResult,
}

async fn measure(addr: &str, export: &str, p: &Plan<'_>) -> Result<Measured> {
    let c = NbdClient::connect_export(addr, export).await?;
    Ok(Measured {
        qd1: random_writes(&c, 1, 4096, p.qd1_ops, SIZE).await?,
        qd32: random_writes(&c, 32, 4096, p.qd32_ops.max(32), SIZE).await?,
        qd32_64k: random_writes(&c, 32, 65536, (p.qd32_ops / 4).max(32), SIZE).await?,
    })
}

pub async fn transports(p: Plan<'_>) -> Result<bool> {
    if p.rtts.is_empty() {
        bail!("--rtt needs at least one value");
    }
    if let Some(l) = p.losses.iter().find(|l| !(0.0..1.0).contains(*l)) {
        bail!("--loss {l} is not a probability below 1");
    }
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
            let m = match how {
                None => {
                    let f = Floor::start(dir.path(), SIZE, delay).await?;
                    measure(&f.nbd_addr, "", &p).await?
                }
                Some(how) => {
                    let pair =
                        Pair::start_over(dir.path(), Mode::Speculative, SIZE, delay, how).await?;
                    measure(&pair.nbd_addr, "specmirror", &p).await?
                }
            };
            eprintln!("done");
            ok &= m.qd1.ops == p.qd1_ops;
            let (engine, mode, link) = match how {
                None => ("floor", "floor", "tcp"),
                Some(_) => ("software", "speculative", transport),
            };
            for (qd, bs, r) in [
                (1, 4096, &m.qd1),
                (32, 4096, &m.qd32),
                (32, 65536, &m.qd32_64k),
            ] {
                println!(
                    "{{\"engine\":\"{engine}\",\"mode\":\"{mode}\",\"transport\":\"{link}\",\"loss\":{loss},\"mtu\":{},\"rtt_us\":{us:.0},\"qd\":{qd},\"bs\":{bs},\"p50_us\":{:.1},\"p99_us\":{:.1},\"iops\":{:.0},\"mb_s\":{:.1}}}",
                    if transport == "udp" { p.mtu } else { 0 },
                    r.percentile(0.5),
                    r.percentile(0.99),
                    r.iops(),
                    r.mb_s()
                );
            }
            if how.is_none() {
                floor_p50 = m.qd1.percentile(0.5);
            }
            table.push((us, transport, loss, floor_p50, m));
        }
    }
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
    for (us, transport, loss, floor, m) in &table {
        println!(
            "{us:>8.0} {transport:<6} {:>6.1} {:>9.1} {:>9.1} {:>12.0} {:>13.1} {:>11.2}",
            loss * 100.0,
            m.qd1.percentile(0.5),
            m.qd1.percentile(0.99),
            m.qd32.iops(),
            m.qd32_64k.mb_s(),
            m.qd1.percentile(0.5) / floor.max(1.0),
        );
    }
    println!(
        "udp: one frame per datagram of MTU {}; a 4 KiB write is {} DATA piece(s) under its one lock, a 64 KiB one {}.",
        p.mtu,
        4096u32.div_ceil(
            specmirror_engine::datagram::Transport::udp(p.mtu)?.max_payload()
        ),
        65536u32.div_ceil(
            specmirror_engine::datagram::Transport::udp(p.mtu)?.max_payload()
        ),
    );
    Ok(ok)
}

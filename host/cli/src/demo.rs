//! `specmirror demo`: the main job on a built-in example. A target and a source on temporary
//! files, mirrored over an emulated link, driven through the NBD front end; each mode's write
//! latency is measured and both copies are compared at the end.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use specmirror_abi::ring::Mode;
use specmirror_engine::nbd_client::NbdClient;

use crate::pair::Pair;

use crate::units::parse_duration;

const SIZE: u64 = 64 << 20;

#[derive(Args)]
pub struct DemoArgs {
    /// One-way delay of the emulated link between source and target.
    #[arg(long, default_value = "1ms", value_parser = parse_duration, value_name = "DUR")]
    delay: Duration,
    /// Writes of the mixed workload per mode.
    #[arg(long, default_value_t = 2000)]
    writes: u64,
    /// QD1 4 KiB writes timed per mode.
    #[arg(long, default_value_t = 200)]
    samples: u64,
}

struct Outcome {
    p50: Duration,
    p99: Duration,
    mb_s: f64,
    identical: bool,
}

pub async fn demo(a: DemoArgs) -> Result<bool> {
    if a.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let rtt = a.delay * 2;
    println!(
        "specmirror demo: a source and a target volume ({} MiB temporary files) over a link with {:?} one-way delay ({:?} round trip)",
        SIZE >> 20,
        a.delay,
        rtt
    );
    let mut results = Vec::new();
    for mode in [Mode::Speculative, Mode::Implicit, Mode::Conservative] {
        let dir = tempfile::tempdir().context("creating a temporary folder")?;
        let o = run_mode(mode, &a, dir.path()).await?;
        println!(
            "  {:<13} QD1 4 KiB write p50 {:>7.3} ms ({:.2} round trips), p99 {:>7.3} ms; mixed workload {:>6.1} MB/s; copies {}",
            mode.name(),
            o.p50.as_secs_f64() * 1e3,
            o.p50.as_secs_f64() / rtt.as_secs_f64(),
            o.p99.as_secs_f64() * 1e3,
            o.mb_s,
            if o.identical { "identical (sha256)" } else { "DIFFER" }
        );
        results.push(o);
    }
    let ratio = results[0].p50.as_secs_f64() / results[2].p50.as_secs_f64();
    println!("  speculative / conservative p50 = {ratio:.2}");
    Ok(results.iter().all(|o| o.identical))
}

async fn run_mode(mode: Mode, a: &DemoArgs, dir: &Path) -> Result<Outcome> {
    let pair = Pair::start(dir, mode, SIZE, a.delay).await?;
    let client = NbdClient::connect(&pair.nbd_addr).await?;

    let mut lat = Vec::with_capacity(a.samples as usize);
    let block = vec![0x5au8; 4096];
    for i in 0..a.samples {
        let t = Instant::now();
        client.write((i * 4096) % SIZE, &block, false).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];

    let mb_s = mixed_workload(&client, mode, a.writes).await?;
    drop(client);
    drop(pair);
    let identical = digest(&dir.join("source.img"))? == digest(&dir.join("target.img"))?;
    Ok(Outcome {
        p50,
        p99,
        mb_s,
        identical,
    })
}

/// Overlapping writes of 512 B to 256 KiB at queue depth 16, a flush every 100.
async fn mixed_workload(client: &Arc<NbdClient>, mode: Mode, writes: u64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..16u64)
        .map(|w| {
            let (c, done, bytes) = (client.clone(), done.clone(), bytes.clone());
            tokio::spawn(async move {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w + 1);
                let mut next = || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                loop {
                    let i = done.fetch_add(1, Ordering::SeqCst);
                    if i >= writes {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let len = 512 * (1 + next() % 512);
                    let off = (next() % (SIZE - len)) & !511;
                    let data = vec![(i % 251) as u8; len as usize];
                    c.write(off, &data, i % 50 == 0).await?;
                    bytes.fetch_add(len, Ordering::Relaxed);
                    if i % 100 == 99 {
                        c.flush().await?;
                    }
                }
            })
        })
        .collect();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = {
        let (done, bytes) = (done.clone(), bytes.clone());
        tokio::spawn(async move {
            if !tty {
                return;
            }
            loop {
                let d = done.load(Ordering::SeqCst).min(writes);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let filled = (d * 30 / writes.max(1)) as usize;
                eprint!(
                    "\r  {:<13} [{}{}] {:>5}/{} writes {:>6.1} MB/s",
                    mode.name(),
                    "#".repeat(filled),
                    ".".repeat(30 - filled),
                    d,
                    writes,
                    bytes.load(Ordering::Relaxed) as f64 / secs / 1e6
                );
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for w in workers {
        w.await??;
    }
    client.flush().await?;
    progress.abort();
    if tty {
        eprint!("\r{}\r", " ".repeat(80));
    }
    Ok(bytes.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn digest(p: &Path) -> Result<Vec<u8>> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_vec())
}

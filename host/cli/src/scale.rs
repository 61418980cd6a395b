//! `specmirror bench --scale`: how the source daemon's cost grows. The target and source run as
//! processes of this binary on sparse volumes; the bench drives random 4 KiB writes over the whole
//! volume at several queue depths and reads the source's CPU time and memory from /proc.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use specmirror_engine::nbd_client::NbdClient;

use crate::load::random_writes;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `specmirror ARGS` and returns it with the value of `key=` on its ready line.
fn start(args: &[String], key: &str) -> Result<(Proc, String)> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(c.stdout.take().expect("stdout")).read_line(&mut line)?;
    let Some(v) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
    else {
        let _ = c.kill();
        bail!("{args:?} did not start: {line:?}");
    };
    Ok((Proc(c), v))
}

/// (CPU seconds used, resident KiB, peak resident KiB) of a process.
pub(crate) fn usage(pid: u32) -> Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat format")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Linux reports CPU time in clock ticks of 100 per second (USER_HZ).
    Ok((ticks / 100.0, kib("VmRSS:"), kib("VmHWM:")))
}

pub async fn scale(writes: u64) -> Result<()> {
    println!(
        "{:>10} {:>5} {:>8} {:>12} {:>12} {:>12} {:>9}",
        "volume", "qd", "writes", "cpu_us/write", "rss_MiB", "peak_MiB", "iops"
    );
    for (label, size) in [
        ("1GiB", 1u64 << 30),
        ("100GiB", 100 << 30),
        ("1TiB", 1 << 40),
    ] {
        let dir = tempfile::tempdir()?;
        let d = |n: &str| dir.path().join(n).display().to_string();
        let s = |v: &str| v.to_string();
        let (_t, taddr) = start(
            &[
                s("target"),
                s("--listen"),
                s("127.0.0.1:0"),
                s("--volume"),
                d("t.img"),
                s("--size"),
                s(label),
            ],
            "listen",
        )?;
        let (src, nbd) = start(
            &[
                s("source"),
                s("--volume"),
                d("s.img"),
                s("--size"),
                s(label),
                s("--target"),
                taddr,
                s("--nbd"),
                s("127.0.0.1:0"),
                s("--log"),
                d("s.log"),
            ],
            "nbd",
        )?;
        let pid = src.0.id();
        let client = NbdClient::connect(&nbd).await?;
        for qd in [1u64, 32, 256] {
            let (c0, _, _) = usage(pid)?;
            let r = random_writes(&client, qd, 4096, writes.max(qd), size).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (c1, rss, peak) = usage(pid)?;
            println!(
                "{:>10} {:>5} {:>8} {:>12.1} {:>12.1} {:>12.1} {:>9.0}",
                label,
                qd,
                r.ops,
                (c1 - c0) * 1e6 / r.ops as f64,
                rss as f64 / 1024.0,
                peak as f64 / 1024.0,
                r.iops()
            );
        }
        drop(client);
        assert_sparse(Path::new(&d("s.img")), size, 3 * writes.max(256) * 4096)?;
    }
    Ok(())
}

/// The volume stays sparse: what is allocated grows with the data written, not the volume size.
fn assert_sparse(p: &Path, size: u64, written: u64) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p)?;
    if m.len() != size {
        bail!("{} is {} bytes, expected {size}", p.display(), m.len());
    }
    let allocated = m.blocks() * 512;
    if allocated > 2 * written + (16 << 20) {
        bail!(
            "{} has {allocated} bytes allocated after {written} bytes of writes",
            p.display()
        );
    }
    Ok(())
}

//! A load generator on the built-in NBD client: random writes of one size at one queue depth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use specmirror_engine::nbd_client::NbdClient;

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub ops: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub lat_us: Vec<f64>,
    pub bytes: u64,
}

impl LoadResult {
    pub fn percentile(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i.min(self.lat_us.len() - 1)]
    }

    pub fn mean_us(&self) -> f64 {
        self.lat_us.iter().sum::<f64>() / self.lat_us.len().max(1) as f64
    }

    pub fn iops(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    /// This run and `other` as one: their writes, their time and their latencies together.
    pub fn merged(mut self, other: LoadResult) -> LoadResult {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.bytes += other.bytes;
        self.lat_us.extend(other.lat_us);
        self.lat_us
            .sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        self
    }
}

/// `ops` random `bs`-byte writes (aligned to `bs`) over `span` bytes, `qd` at a time.
pub async fn random_writes(
    client: &Arc<NbdClient>,
    qd: u64,
    bs: u64,
    ops: u64,
    span: u64,
) -> Result<LoadResult> {
    random_writes_at(client, qd, bs, ops, 0, span).await
}

/// Like [`random_writes`], over `span` bytes from `base`.
pub async fn random_writes_at(
    client: &Arc<NbdClient>,
    qd: u64,
    bs: u64,
    ops: u64,
    base: u64,
    span: u64,
) -> Result<LoadResult> {
    anyhow::ensure!(
        bs > 0 && base.is_multiple_of(bs) && span >= bs,
        "writes of {bs} bytes over {span} bytes from {base} would not stay aligned"
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..qd)
        .map(|w| {
            let (c, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut x = 0x2545_f491_4f6c_dd1du64 ^ (w + 1).wrapping_mul(0x9e37_79b9);
                let data = vec![(w as u8).wrapping_add(1); bs as usize];
                let mut lat = Vec::new();
                loop {
                    if next.fetch_add(1, Ordering::Relaxed) >= ops {
                        return Ok::<Vec<f64>, anyhow::Error>(lat);
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = base + (x % (span / bs)) * bs;
                    let t = Instant::now();
                    c.write(off, &data, false).await?;
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            })
        })
        .collect();
    let mut lat_us = Vec::with_capacity(ops as usize);
    for w in workers {
        lat_us.extend(w.await??);
    }
    let elapsed = started.elapsed();
    lat_us.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    Ok(LoadResult {
        ops,
        elapsed,
        lat_us,
        bytes: ops * bs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ops: u64, ms: u64, lat: &[f64]) -> LoadResult {
        LoadResult {
            ops,
            elapsed: Duration::from_millis(ms),
            lat_us: lat.to_vec(),
            bytes: ops * 4096,
        }
    }

    #[test]
    fn merged_runs_count_as_one() {
        let m = run(2, 10, &[5.0, 9.0]).merged(run(3, 30, &[1.0, 7.0, 8.0]));
        assert_eq!((m.ops, m.bytes), (5, 5 * 4096));
        assert_eq!(m.elapsed, Duration::from_millis(40));
        assert_eq!(m.lat_us, vec![1.0, 5.0, 7.0, 8.0, 9.0]);
        assert_eq!(m.percentile(0.5), 7.0);
        assert_eq!(m.iops(), 125.0);
    }
}

//! `specmirror bench`: latency and throughput of every mode against the physical floor (and QEMU's
//! synchronous mirror when qemu-storage-daemon is installed), in one run, over the link emulator.
//! Prints a table, one JSON line per result, and the ratios that matter.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use specmirror_abi::ring::Mode;
use specmirror_engine::nbd_client::NbdClient;

use crate::load::{random_writes_at, LoadResult};
use crate::pair::{Floor, Pair};
use crate::simulate::ModeArg;
use crate::units::parse_duration;

const SIZE: u64 = 256 << 20;

#[derive(Args)]
pub struct BenchArgs {
    /// Round-trip times of the emulated link (comma separated; each is split evenly both ways).
    #[arg(long, value_delimiter = ',', default_value = "0,200us,1ms,2ms", value_parser = parse_duration)]
    rtt: Vec<Duration>,
    /// Mirroring modes to measure (comma separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "speculative,implicit,conservative"
    )]
    modes: Vec<ModeArg>,
    /// QD1 4 KiB writes timed per engine (p50, p99). The engines of one RTT are all up and
    /// take turns, ten turns each, so that the machine's slow moments weigh on them alike.
    #[arg(long, default_value_t = 2000)]
    qd1_ops: u64,
    /// Writes per QD32 run (4 KiB for IOPS, 64 KiB for MB/s).
    #[arg(long, default_value_t = 20000)]
    qd32_ops: u64,
    /// A smoke run: zero delay only, few operations, no QEMU. Checks the bench works, not speed.
    #[arg(long)]
    quick: bool,
    /// Leave QEMU's active mirror out even if qemu-storage-daemon is installed.
    #[arg(long)]
    no_qemu: bool,
    /// Also write the JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Instead: how the source's CPU per write and memory grow with writes in flight (1, 32, 256)
    /// and volume size (1 GiB, 100 GiB, 1 TiB sparse), with daemons as real processes.
    #[arg(long)]
    scale: bool,
    /// Writes per scale measurement.
    #[arg(long, default_value_t = 20000)]
    scale_writes: u64,
    /// Instead: both nodes of a bidirectional pair writing at once (QD1 4 KiB, each on its own
    /// half), next to the floor and a one-way pair at each --rtt.
    #[arg(long)]
    bidirectional: bool,
    /// Instead: the speculative mirror over TCP and over UDP datagrams (at each --loss) next to
    /// the floor, at each --rtt.
    #[arg(long)]
    transports: bool,
    /// With --transports: shares of datagrams the link loses (comma separated, 0 to below 1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.01",
        value_name = "P"
    )]
    loss: Vec<f64>,
    /// With --transports: the UDP path MTU.
    #[arg(long, default_value_t = specmirror_engine::datagram::DEFAULT_MTU, value_name = "BYTES")]
    mtu: u32,
}

/// One measured configuration.
#[derive(Clone, Debug)]
pub struct Row {
    pub engine: &'static str,
    pub mode: String,
    pub rtt_us: f64,
    pub qd: u64,
    pub bs: u64,
    pub r: LoadResult,
    /// For the software engine at QD1: mean microseconds queued, in the source's core task, and
    /// waiting for the target.
    pub stages: Option<(f64, f64, f64, f64)>,
    /// CPU time this process spent per write during the run, µs: the client, the link emulator
    /// and the engine under test, when they all run in it (`None` for QEMU, which runs apart).
    pub cpu_us: Option<f64>,
}

impl Row {
    pub fn json(&self) -> String {
        match self.cpu_us {
            Some(c) => self.json_with(&format!(",\"cpu_us_per_write\":{c:.1}")),
            None => self.json_with(""),
        }
    }

    /// Cores kept busy by this process during the run: CPU per write times writes per second.
    pub fn cores_busy(&self) -> Option<f64> {
        self.cpu_us.map(|c| c * self.r.iops() / 1e6)
    }

    /// The JSON line with `extra` fields (each `,"key":value`) after the mode.
    pub fn json_with(&self, extra: &str) -> String {
        format!(
            "{{\"engine\":\"{}\",\"mode\":\"{}\"{extra},\"rtt_us\":{:.0},\"qd\":{},\"bs\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"iops\":{:.0},\"mb_s\":{:.1}}}",
            self.engine,
            self.mode,
            self.rtt_us,
            self.qd,
            self.bs,
            self.r.percentile(0.5),
            self.r.percentile(0.99),
            self.r.iops(),
            self.r.mb_s()
        )
    }
}

/// QD1 4 KiB, QD32 4 KiB and QD32 64 KiB against one NBD address, in that order: `qd1_ops`
/// writes at QD1, `qd32_ops` at QD32 of 4 KiB and a quarter of that of 64 KiB.
pub(crate) async fn measure(
    addr: &str,
    engine: &'static str,
    mode: &str,
    rtt: Duration,
    (qd1_ops, qd32_ops): (u64, u64),
) -> Result<Vec<Row>> {
    let p = Probe::connect(addr, engine, mode, None).await?;
    let mut rows = vec![p.run(rtt, 1, 4096, qd1_ops).await?];
    rows.extend(p.qd32(rtt, qd32_ops).await?);
    Ok(rows)
}

/// A client of the engine at `addr` (`host:port#export` names an export; otherwise the default).
async fn connect(addr: &str, engine: &str) -> Result<Arc<NbdClient>> {
    let (host, export) = addr.split_once('#').unwrap_or((addr, ""));
    NbdClient::connect_export(host, export)
        .await
        .with_context(|| format!("connecting to {engine} at {addr}"))
}

/// `ops` random writes over `span` bytes from `base`; with the CPU time this process spent per
/// write meanwhile, µs.
async fn timed_writes(
    client: &Arc<NbdClient>,
    qd: u64,
    bs: u64,
    ops: u64,
    base: u64,
    span: u64,
) -> Result<(LoadResult, f64)> {
    let cpu_before = crate::scale::usage(std::process::id())?.0;
    let r = random_writes_at(client, qd, bs, ops, base, span).await?;
    let cpu = crate::scale::usage(std::process::id())?.0 - cpu_before;
    Ok((r, cpu * 1e6 / ops as f64))
}

/// The floor's mode when its client reaches the server without the link emulator.
const DIRECT: &str = "direct";
/// The floor's mode when its client reaches the emulated link through a plain forwarder on
/// loopback: the extra hop a client of the source makes, without the source's work.
pub(crate) const RELAYED: &str = "relayed";

/// QD1 runs are cut in this many turns, the engines of one RTT taking turns, so that a slow
/// moment of the machine falls on all of them alike.
const QD1_TURNS: u64 = 10;

/// How many QD1 writes each turn makes: `ops` (at least one) over at most QD1_TURNS turns.
fn turn_shares(ops: u64) -> Vec<u64> {
    let ops = ops.max(1);
    let turns = QD1_TURNS.min(ops);
    (0..turns)
        .map(|k| ops / turns + u64::from(k < ops % turns))
        .collect()
}

/// The part of the volume each of `turns` turns writes in: whole 4 KiB blocks, so that every
/// write stays aligned.
fn turn_span(turns: u64) -> u64 {
    SIZE / turns.max(1) / 4096 * 4096
}

/// A client of one engine, and the software engine's stage figures when there are some.
struct Probe {
    engine: &'static str,
    mode: String,
    client: Arc<NbdClient>,
    stages: Option<Arc<specmirror_engine::source::StageStats>>,
}

impl Probe {
    async fn connect(
        addr: &str,
        engine: &'static str,
        mode: &str,
        stages: Option<Arc<specmirror_engine::source::StageStats>>,
    ) -> Result<Probe> {
        Ok(Probe {
            engine,
            mode: mode.to_string(),
            client: connect(addr, engine).await?,
            stages,
        })
    }

    fn row(&self, rtt: Duration, qd: u64, bs: u64, r: LoadResult, cpu_us: f64) -> Row {
        Row {
            engine: self.engine,
            mode: self.mode.clone(),
            rtt_us: rtt.as_secs_f64() * 1e6,
            qd,
            bs,
            r,
            stages: self.stages.as_ref().map(|s| s.means_us()),
            // QEMU's work is in its own processes, not in this one's CPU time.
            cpu_us: (self.engine != "qemu").then_some(cpu_us),
        }
    }

    /// `ops` (at least `qd`) random writes of `bs` bytes at queue depth `qd` over the volume.
    async fn run(&self, rtt: Duration, qd: u64, bs: u64, ops: u64) -> Result<Row> {
        if let Some(s) = &self.stages {
            s.reset();
        }
        let (r, cpu) = timed_writes(&self.client, qd, bs, ops.max(qd), 0, SIZE).await?;
        Ok(self.row(rtt, qd, bs, r, cpu))
    }

    /// The QD32 runs: `qd32_ops` writes of 4 KiB, then a quarter of that of 64 KiB.
    async fn qd32(&self, rtt: Duration, qd32_ops: u64) -> Result<Vec<Row>> {
        Ok(vec![
            self.run(rtt, 32, 4096, qd32_ops).await?,
            self.run(rtt, 32, 65536, qd32_ops / 4).await?,
        ])
    }
}

/// An engine started for one RTT, with its client.
struct Subject {
    probe: Probe,
    /// The running engine (floor, pair or QEMU); dropped before its files.
    _running: Box<dyn std::any::Any + Send>,
    _dir: tempfile::TempDir,
}

impl Subject {
    async fn start(engine: &'static str, mode: &str, delay: Duration) -> Result<Subject> {
        let dir = tempfile::tempdir()?;
        let (addr, stages, running): (String, _, Box<dyn std::any::Any + Send>) = match engine {
            "floor" => {
                let mut f = Floor::start(dir.path(), SIZE, delay).await?;
                let addr = match mode {
                    DIRECT => f.direct_addr.clone(),
                    RELAYED => f.relayed_addr()?,
                    _ => f.nbd_addr.clone(),
                };
                (addr, None, Box::new(f))
            }
            "qemu" => {
                let q = crate::qemu_mirror::QemuMirror::start(dir.path(), SIZE, delay).await?;
                (q.nbd_addr.clone(), None, Box::new(q))
            }
            _ => {
                let m = match mode {
                    "implicit" => Mode::Implicit,
                    "conservative" => Mode::Conservative,
                    _ => Mode::Speculative,
                };
                let p = Pair::start(dir.path(), m, SIZE, delay).await?;
                (p.nbd_addr.clone(), Some(p.stages.clone()), Box::new(p))
            }
        };
        Ok(Subject {
            probe: Probe::connect(&addr, engine, mode, stages).await?,
            _running: running,
            _dir: dir,
        })
    }
}

/// `ops` QD1 4 KiB writes on each subject, in turns: each turn writes its share on every subject
/// in a fresh part of the volume.
async fn qd1_in_turns(subjects: &[Subject], rtt: Duration, ops: u64) -> Result<Vec<Row>> {
    for s in subjects {
        if let Some(st) = &s.probe.stages {
            st.reset();
        }
    }
    let shares = turn_shares(ops);
    let span = turn_span(shares.len() as u64);
    let mut runs: Vec<(Option<LoadResult>, f64)> = subjects.iter().map(|_| (None, 0.0)).collect();
    for (k, &share) in (0u64..).zip(&shares) {
        for (s, (run, cpu)) in subjects.iter().zip(runs.iter_mut()) {
            let (r, c) = timed_writes(&s.probe.client, 1, 4096, share, k * span, span).await?;
            *cpu += c * share as f64;
            *run = Some(match run.take() {
                Some(before) => before.merged(r),
                None => r,
            });
        }
    }
    Ok(subjects
        .iter()
        .zip(runs)
        .map(|(s, (r, cpu))| {
            let r = r.expect("at least one turn");
            let cpu = cpu / r.ops as f64;
            s.probe.row(rtt, 1, 4096, r, cpu)
        })
        .collect())
}

pub async fn bench(mut a: BenchArgs) -> Result<bool> {
    if a.scale {
        crate::scale::scale(if a.quick { 500 } else { a.scale_writes }).await?;
        return Ok(true);
    }
    if a.quick {
        a.rtt = vec![Duration::ZERO];
        a.qd1_ops = a.qd1_ops.min(200);
        a.qd32_ops = a.qd32_ops.min(2000);
        a.no_qemu = true;
    }
    if a.bidirectional {
        return crate::bidir_bench::bidirectional(&a.rtt, a.qd1_ops).await;
    }
    if a.transports {
        return crate::transport_bench::transports(crate::transport_bench::Plan {
            rtts: &a.rtt,
            losses: &a.loss,
            mtu: a.mtu,
            qd1_ops: a.qd1_ops,
            qd32_ops: a.qd32_ops,
        })
        .await;
    }
    if a.rtt.is_empty() || a.modes.is_empty() {
        bail!("--rtt and --modes need at least one value");
    }
    let qemu = !a.no_qemu && crate::qemu_mirror::available();
    let mut rows: Vec<Row> = Vec::new();
    let mut json_out = match &a.json {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    for &rtt in &a.rtt {
        let delay = rtt / 2;
        let mut engines: Vec<(&'static str, String)> =
            vec![("floor", "floor".into()), ("floor", RELAYED.into())];
        if rtt.is_zero() {
            // The link emulator's own cost: the floor's server without it.
            engines.push(("floor", DIRECT.into()));
        }
        engines.extend(
            a.modes
                .iter()
                .map(|m| ("software", Mode::from(*m).name().to_string())),
        );
        if qemu {
            engines.push(("qemu", "write-blocking".into()));
        }
        // Every engine of this RTT is up at once: their QD1 runs take turns.
        let mut subjects = Vec::new();
        for (engine, mode) in engines {
            eprint!(
                "starting {engine:<8} {mode:<14} at {:>6.0} us RTT ... ",
                rtt.as_secs_f64() * 1e6
            );
            let _ = std::io::stderr().flush();
            subjects.push(Subject::start(engine, &mode, delay).await?);
            eprintln!("up");
        }
        eprint!(
            "measuring QD1 at {:>6.0} us RTT, the engines taking turns ... ",
            rtt.as_secs_f64() * 1e6
        );
        let _ = std::io::stderr().flush();
        let qd1 = qd1_in_turns(&subjects, rtt, a.qd1_ops).await?;
        eprintln!("done");
        for (s, first) in subjects.into_iter().zip(qd1) {
            eprint!(
                "measuring {:<8} {:<14} at {:>6.0} us RTT, QD32 ... ",
                s.probe.engine,
                s.probe.mode,
                rtt.as_secs_f64() * 1e6
            );
            let _ = std::io::stderr().flush();
            let mut got = vec![first];
            got.extend(s.probe.qd32(rtt, a.qd32_ops).await?);
            eprintln!("done");
            for r in &got {
                println!("{}", r.json());
                if let Some(f) = json_out.as_mut() {
                    writeln!(f, "{}", r.json())?;
                }
            }
            rows.extend(got);
        }
    }
    print_table(&rows);
    print_ratios(&rows, &a.rtt);
    print_stages(&rows);
    print_cpu(&rows);
    crate::goals::print_goals(&rows, &a.rtt);
    Ok(true)
}

/// What a QD32 write costs in CPU, next to the floor's, and how many cores the run kept busy: on a
/// machine with few cores, QD32 throughput is bounded by CPU per write.
fn print_cpu(rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("CPU per QD32 write (µs of this process: client, link emulator and engine) and the");
    println!("cores kept busy (CPU per write × writes per second; this machine has {cores}):");
    println!(
        "{:>8} {:<9} {:<14} {:>10} {:>8} {:>11} {:>9} {:>12}",
        "rtt_us", "engine", "mode", "cpu_us_4k", "cores", "cpu_us_64k", "cores", "cpu/floor_4k"
    );
    for chunk in rows.chunks(3) {
        let (i, t) = (&chunk[1], &chunk[2]);
        let (Some(ci), Some(ct)) = (i.cpu_us, t.cpu_us) else {
            continue;
        };
        let rtt = Duration::from_secs_f64(i.rtt_us / 1e6);
        let floor = find(rows, rtt, "floor", 32, 4096)
            .and_then(|f| f.cpu_us)
            .filter(|&f| f > 0.0);
        println!(
            "{:>8.0} {:<9} {:<14} {:>10.1} {:>8.2} {:>11.1} {:>9.2} {:>12}",
            i.rtt_us,
            i.engine,
            i.mode,
            ci,
            i.cores_busy().unwrap_or(0.0),
            ct,
            t.cores_busy().unwrap_or(0.0),
            floor.map_or("-".to_string(), |f| format!("{:.2}", ci / f))
        );
    }
}

/// Where a write's time goes in the software engine, next to the floor at the same RTT: at QD1,
/// then at QD32 (where a write also waits behind the others of its burst).
fn print_stages(rows: &[Row]) {
    println!();
    println!(
        "where a QD1 write's time goes (means, µs): client-observed total = front end and client"
    );
    println!(
        "+ queued for the source's core task + in it until the frames are out (before-image read,"
    );
    println!(
        "log append; of it the disk's calls) + waiting for the target (link both ways, target's"
    );
    println!(
        "tasks and write; the local write is made meanwhile); the floor is one trip and a pwrite."
    );
    print_stage_rows(rows, 1);
    println!();
    println!(
        "where a QD32 write's time goes (means, µs; the same columns): 32 writes in flight move"
    );
    println!(
        "as a burst, so every stage's time includes waiting behind the burst's other writes, and"
    );
    println!(
        "the target column above the RTT is the target's and the link's work for the whole burst."
    );
    print_stage_rows(rows, 32);
}

fn print_stage_rows(rows: &[Row], qd: u64) {
    println!(
        "{:>8} {:<14} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "rtt_us", "mode", "bs", "total", "front", "queued", "core", "disk", "target", "floor"
    );
    for r in rows.iter().filter(|r| r.stages.is_some() && r.qd == qd) {
        let (q, p, d, m) = r.stages.expect("filtered");
        let total = r.r.mean_us();
        let floor = rows
            .iter()
            .find(|f| {
                f.mode == "floor" && f.qd == qd && f.bs == r.bs && (f.rtt_us - r.rtt_us).abs() < 0.5
            })
            .map(|f| f.r.mean_us())
            .unwrap_or(0.0);
        println!(
            "{:>8.0} {:<14} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            r.rtt_us,
            r.mode,
            r.bs,
            total,
            (total - q - p - m).max(0.0),
            q,
            p,
            d,
            m,
            floor
        );
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:>8} {:<9} {:<14} {:>9} {:>9} {:>11} {:>10}",
        "rtt_us", "engine", "mode", "qd1_p50", "qd1_p99", "qd32_4k_iops", "qd32_64k_MB/s"
    );
    for chunk in rows.chunks(3) {
        let (l, i, t) = (&chunk[0], &chunk[1], &chunk[2]);
        println!(
            "{:>8.0} {:<9} {:<14} {:>9.1} {:>9.1} {:>11.0} {:>10.1}",
            l.rtt_us,
            l.engine,
            l.mode,
            l.r.percentile(0.5),
            l.r.percentile(0.99),
            i.r.iops(),
            t.r.mb_s()
        );
    }
}

/// The row of `mode` at this RTT, queue depth and block size.
pub(crate) fn find<'a>(
    rows: &'a [Row],
    rtt: Duration,
    mode: &str,
    qd: u64,
    bs: u64,
) -> Option<&'a Row> {
    let us = rtt.as_secs_f64() * 1e6;
    rows.iter()
        .find(|r| (r.rtt_us - us).abs() < 0.5 && r.mode == mode && r.qd == qd && r.bs == bs)
}

fn print_ratios(rows: &[Row], rtts: &[Duration]) {
    println!();
    println!("ratios measured in this run (lower is better for latency, higher for throughput):");
    for &rtt in rtts {
        let us = rtt.as_secs_f64() * 1e6;
        let p50 = |m: &str| find(rows, rtt, m, 1, 4096).map(|r| r.r.percentile(0.5));
        let iops = |m: &str| find(rows, rtt, m, 32, 4096).map(|r| r.r.iops());
        let mbs = |m: &str| find(rows, rtt, m, 32, 65536).map(|r| r.r.mb_s());
        let mut parts = Vec::new();
        if let (Some(s), Some(c)) = (p50("speculative"), p50("conservative")) {
            parts.push(format!("spec/cons p50 {:.2}", s / c));
        }
        if let (Some(s), Some(f)) = (p50("speculative"), p50("floor")) {
            parts.push(format!("spec/floor p50 {:.2}", s / f));
        }
        if let (Some(s), Some(f)) = (iops("speculative"), iops("floor")) {
            parts.push(format!("spec/floor QD32 IOPS {:.2}", s / f));
        }
        if let (Some(s), Some(f)) = (mbs("speculative"), mbs("floor")) {
            parts.push(format!("spec/floor 64k MB/s {:.2}", s / f));
        }
        if let (Some(s), Some(q)) = (p50("speculative"), p50("write-blocking")) {
            parts.push(format!("spec/qemu p50 {:.2}", s / q));
        }
        if let (Some(s), Some(q)) = (iops("speculative"), iops("write-blocking")) {
            parts.push(format!("spec/qemu QD32 IOPS {:.2}", s / q));
        }
        println!("  rtt {us:>6.0} us: {}", parts.join(", "));
        let ratio = |a: Option<f64>, b: Option<f64>| {
            a.zip(b)
                .map_or("-".to_string(), |(a, b)| format!("{:.2}", a / b))
        };
        if let (Some(f), Some(r)) = (p50("floor"), p50(RELAYED)) {
            println!(
                "  rtt {us:>6.0} us: the client's extra hop (the floor through a plain forwarder \
                 on loopback, against the floor): QD1 p50 +{:.1} us ({:.2}), QD32 IOPS {}, 64k \
                 MB/s {}; spec against it: p50 {}, QD32 IOPS {}, 64k MB/s {}",
                r - f,
                r / f,
                ratio(iops(RELAYED), iops("floor")),
                ratio(mbs(RELAYED), mbs("floor")),
                ratio(p50("speculative"), Some(r)),
                ratio(iops("speculative"), iops(RELAYED)),
                ratio(mbs("speculative"), mbs(RELAYED)),
            );
        }
        let direct = find(rows, Duration::ZERO, DIRECT, 1, 4096).map(|r| r.r.percentile(0.5));
        match (p50("floor"), direct) {
            (Some(f), Some(d)) if rtt.is_zero() => {
                println!(
                    "  rtt {us:>6.0} us: the link emulator's own cost (the floor through it \
                     against the same server reached directly): QD1 p50 +{:.1} us ({:.2}), \
                     QD32 IOPS {}, 64k MB/s {}",
                    f - d,
                    f / d,
                    ratio(iops("floor"), iops(DIRECT)),
                    ratio(mbs("floor"), mbs(DIRECT)),
                );
            }
            (Some(f), Some(d)) => println!(
                "  rtt {us:>6.0} us: the link emulator's own cost: the floor's QD1 p50 is \
                 {:.1} us over the RTT and the server reached directly at zero delay",
                f - us - d
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qd1_turns_share_out_every_write() {
        for ops in [0u64, 1, 7, 10, 2000, 2003] {
            let shares = turn_shares(ops);
            assert_eq!(shares.iter().sum::<u64>(), ops.max(1), "{ops}");
            assert!(shares.len() as u64 <= QD1_TURNS && shares.iter().all(|&s| s > 0));
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(hi - lo <= 1, "{ops}: {shares:?}");
        }
        for turns in 1..=QD1_TURNS {
            let span = turn_span(turns);
            assert_eq!(span % 4096, 0, "{turns} turns");
            assert!(span * turns <= SIZE && span * (turns + 1) > SIZE - 4096 * turns);
        }
    }
}

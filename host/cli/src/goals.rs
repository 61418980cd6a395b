//! The goals `specmirror bench` is held to, judged from the rows of one run: each met or missed,
//! and for a missed one, what costs the difference.
//!
//! A missed latency or IOPS goal is split into the stages of the software engine's mean write
//! against the floor's mean write at the same RTT and load:
//! - the client's extra hop (the floor through a plain forwarder, against the floor);
//! - the rest of the front end (the source's NBD side and the client beyond that hop);
//! - the source's core task until the write's frames leave (queued and in it, of which the disk's
//!   calls);
//! - the wait for the target beyond the floor's whole write.
//!
//! The four add up to the difference of the means. At QD32 the writes in flight form a closed
//! loop, so IOPS is the queue depth over the mean latency and the same split says where the IOPS
//! went. A throughput goal also gets its CPU ceiling: at the engine's CPU per write, how far the
//! machine's cores could carry it, as a share of the floor.

use std::time::Duration;

use crate::bench::{find, Row, RELAYED};

/// One goal of the bench.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Goal {
    /// The speculative mode's QD1 p50 over the conservative mode's, at RTT ≥ 1 ms.
    SpecOverCons,
    /// The speculative mode's QD1 p50 over the floor's, at RTT ≥ 500 µs.
    LatencyWithRtt,
    /// The same at zero delay.
    LatencyAtZero,
    /// QD32 4 KiB IOPS over the floor's.
    Iops4k,
    /// QD32 64 KiB MB/s over the floor's.
    Throughput64k,
}

impl Goal {
    const ALL: [Goal; 5] = [
        Goal::SpecOverCons,
        Goal::LatencyWithRtt,
        Goal::LatencyAtZero,
        Goal::Iops4k,
        Goal::Throughput64k,
    ];

    /// The goal's figure must be at most this (latency) or at least this (throughput).
    fn limit(self) -> f64 {
        match self {
            Goal::SpecOverCons => 0.55,
            Goal::LatencyWithRtt => 1.02,
            Goal::LatencyAtZero => 1.2,
            Goal::Iops4k | Goal::Throughput64k => 0.9,
        }
    }

    /// Whether the figure is a latency ratio, met at or below the limit.
    fn at_most(self) -> bool {
        matches!(
            self,
            Goal::SpecOverCons | Goal::LatencyWithRtt | Goal::LatencyAtZero
        )
    }

    fn text(self) -> String {
        let limit = self.limit();
        match self {
            Goal::SpecOverCons => format!("speculative / conservative QD1 p50 <= {limit}"),
            Goal::LatencyWithRtt | Goal::LatencyAtZero => {
                format!("QD1 p50 <= {limit} x the floor")
            }
            Goal::Iops4k => format!("QD32 4 KiB IOPS >= {limit} x the floor"),
            Goal::Throughput64k => format!("QD32 64 KiB MB/s >= {limit} x the floor"),
        }
    }

    /// Whether the goal is judged at this RTT.
    fn applies(self, rtt: Duration) -> bool {
        match self {
            Goal::SpecOverCons => rtt >= Duration::from_millis(1),
            Goal::LatencyWithRtt => rtt >= Duration::from_micros(500),
            Goal::LatencyAtZero => rtt.is_zero(),
            Goal::Iops4k | Goal::Throughput64k => true,
        }
    }

    /// What the run needs for the goal to be judged at all.
    fn needs(self) -> &'static str {
        match self {
            Goal::SpecOverCons => "an --rtt of 1 ms or more",
            Goal::LatencyWithRtt => "an --rtt of 500 us or more",
            Goal::LatencyAtZero => "--rtt 0",
            Goal::Iops4k | Goal::Throughput64k => "its QD32 runs",
        }
    }

    /// The rows the goal compares (subject, reference): queue depth and block size, and the
    /// reference's mode.
    fn load(self) -> (u64, u64, &'static str) {
        match self {
            Goal::SpecOverCons => (1, 4096, "conservative"),
            Goal::LatencyWithRtt | Goal::LatencyAtZero => (1, 4096, "floor"),
            Goal::Iops4k => (32, 4096, "floor"),
            Goal::Throughput64k => (32, 65536, "floor"),
        }
    }

    /// The goal's figure for the subject against the reference, and whether it is met.
    fn judge(self, subject: &Row, reference: &Row) -> (f64, bool) {
        let v = match self {
            Goal::SpecOverCons | Goal::LatencyWithRtt | Goal::LatencyAtZero => {
                subject.r.percentile(0.5) / reference.r.percentile(0.5)
            }
            Goal::Iops4k => subject.r.iops() / reference.r.iops(),
            Goal::Throughput64k => subject.r.mb_s() / reference.r.mb_s(),
        };
        let met = if self.at_most() {
            v <= self.limit()
        } else {
            v >= self.limit()
        };
        (v, met)
    }
}

/// Where the speculative mode's mean write is slower than the floor's at the same load, µs.
#[derive(Debug, PartialEq)]
struct Split {
    excess: f64,
    /// `None` when the run has no relayed floor at this load.
    hop: Option<f64>,
    front: f64,
    core: f64,
    disk: f64,
    target: f64,
}

impl Split {
    fn of(spec: &Row, floor: &Row, relayed: Option<&Row>) -> Option<Split> {
        let (queued, core, disk, target) = spec.stages?;
        let total = spec.r.mean_us();
        let floor_mean = floor.r.mean_us();
        let hop = relayed.map(|r| r.r.mean_us() - floor_mean);
        Some(Split {
            excess: total - floor_mean,
            hop,
            front: total - queued - core - target - hop.unwrap_or(0.0),
            core: queued + core,
            disk,
            target: target - floor_mean,
        })
    }

    /// The parts in the order printed: name, µs, and the disk's share where it is one.
    fn parts(&self) -> Vec<(&'static str, f64, Option<f64>)> {
        let mut v = Vec::new();
        if let Some(h) = self.hop {
            v.push(("the client's extra hop", h, None));
        }
        v.push((
            if self.hop.is_some() {
                "the front end beyond it"
            } else {
                "the front end and the client's hop"
            },
            self.front,
            None,
        ));
        v.push((
            "the source's core until the frames leave",
            self.core,
            Some(self.disk),
        ));
        v.push((
            "the wait for the target beyond the floor's whole write",
            self.target,
            None,
        ));
        v
    }

    fn describe(&self) -> String {
        let parts = self.parts();
        let largest = parts
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or("", |p| p.0);
        let list: Vec<String> = parts
            .iter()
            .map(|(name, us, disk)| match disk {
                Some(d) => format!("{name} {us:.1} (its disk calls {d:.1})"),
                None => format!("{name} {us:.1}"),
            })
            .collect();
        format!(
            "the mean write is {:.1} us over the floor's: {}; largest: {largest}",
            self.excess,
            list.join(", ")
        )
    }
}

/// At `cpu_us` of this process's CPU per write, the most writes a second `cores` cores carry, as
/// a share of the floor's writes a second.
fn cpu_ceiling(cpu_us: f64, floor_iops: f64, cores: usize) -> f64 {
    cores as f64 * 1e6 / cpu_us / floor_iops
}

/// One line per goal and RTT: `[met]`, `[missed]` (with what costs the difference) or
/// `[not measured]` (with what the run lacks).
pub(crate) fn verdicts(rows: &[Row], rtts: &[Duration], cores: usize) -> Vec<String> {
    let mut out = Vec::new();
    for goal in Goal::ALL {
        let (qd, bs, reference) = goal.load();
        let mut judged = false;
        for &rtt in rtts.iter().filter(|r| goal.applies(**r)) {
            let (Some(spec), Some(refr)) = (
                find(rows, rtt, "speculative", qd, bs),
                find(rows, rtt, reference, qd, bs),
            ) else {
                continue;
            };
            judged = true;
            let (v, met) = goal.judge(spec, refr);
            let at = format!(
                "{} at {:.0} us RTT: {v:.2}",
                goal.text(),
                rtt.as_secs_f64() * 1e6
            );
            if met {
                out.push(format!("  [met] {at}"));
                continue;
            }
            let mut why = Vec::new();
            let floor = find(rows, rtt, "floor", qd, bs);
            if let Some(split) =
                floor.and_then(|f| Split::of(spec, f, find(rows, rtt, RELAYED, qd, bs)))
            {
                why.push(split.describe());
            }
            if let (Some(relayed), Goal::LatencyWithRtt | Goal::LatencyAtZero) =
                (find(rows, rtt, RELAYED, qd, bs), goal)
            {
                let (r, _) = goal.judge(spec, relayed);
                why.push(format!("against the floor with the client's hop: {r:.2}"));
            }
            if let (Some(c), Some(f), Goal::Iops4k | Goal::Throughput64k) =
                (spec.cpu_us.filter(|c| *c > 0.0), floor, goal)
            {
                let (ceiling, limit) = (cpu_ceiling(c, f.r.iops(), cores), goal.limit());
                why.push(format!(
                    "at {c:.1} us of CPU per write this machine's {cores} cores carry at most \
                     {ceiling:.2} x the floor{}",
                    if ceiling < limit {
                        // The ceiling goes as the inverse of the CPU per write.
                        format!(
                            " (CPU-bound: {limit} needs {:.1} us or less)",
                            c * ceiling / limit
                        )
                    } else {
                        " (not CPU-bound)".to_string()
                    }
                ));
            }
            out.push(format!("  [missed] {at}; {}", why.join("; ")));
        }
        if !judged {
            out.push(format!(
                "  [not measured] {}: needs {} and the speculative mode",
                goal.text(),
                goal.needs()
            ));
        }
    }
    out
}

/// Prints [`verdicts`] under a heading.
pub(crate) fn print_goals(rows: &[Row], rtts: &[Duration]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "goals, judged from this run (the speculative mode against the floor at the same RTT;"
    );
    println!(
        "a missed goal is split into the stages of the mean write against the floor's, in us;"
    );
    println!("at QD32 a stage's time includes waiting behind the other writes of the burst):");
    for line in verdicts(rows, rtts, cores) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadResult;

    /// A row of `ops` writes in `ms` milliseconds, every one taking `lat` µs.
    fn row(mode: &str, rtt_us: f64, qd: u64, bs: u64, lat: f64, ms: u64) -> Row {
        Row {
            engine: if mode == "floor" || mode == RELAYED {
                "floor"
            } else {
                "software"
            },
            mode: mode.to_string(),
            rtt_us,
            qd,
            bs,
            r: LoadResult {
                ops: 1000,
                elapsed: Duration::from_millis(ms),
                lat_us: vec![lat; 10],
                bytes: 1000 * bs,
            },
            stages: None,
            cpu_us: Some(100.0),
        }
    }

    fn with_stages(mut r: Row, s: (f64, f64, f64, f64)) -> Row {
        r.stages = Some(s);
        r
    }

    #[test]
    fn a_goal_met_and_a_goal_missed_are_told_apart() {
        let rtt = Duration::from_millis(1);
        let rows = vec![
            row("floor", 1000.0, 1, 4096, 1000.0, 100),
            row("speculative", 1000.0, 1, 4096, 1010.0, 100),
            row("conservative", 1000.0, 1, 4096, 2000.0, 100),
        ];
        let v = verdicts(&rows, &[rtt], 2);
        assert!(v.contains(
            &"  [met] speculative / conservative QD1 p50 <= 0.55 at 1000 us RTT: 0.51".to_string()
        ));
        assert!(v.contains(&"  [met] QD1 p50 <= 1.02 x the floor at 1000 us RTT: 1.01".to_string()));
        let rows = vec![
            row("floor", 1000.0, 1, 4096, 1000.0, 100),
            row("speculative", 1000.0, 1, 4096, 1030.0, 100),
            row("conservative", 1000.0, 1, 4096, 1800.0, 100),
        ];
        let v = verdicts(&rows, &[rtt], 2);
        assert!(v.iter().any(|l| l.starts_with(
            "  [missed] speculative / conservative QD1 p50 <= 0.55 at 1000 us RTT: 0.57"
        )));
        assert!(v
            .iter()
            .any(|l| l.starts_with("  [missed] QD1 p50 <= 1.02 x the floor at 1000 us RTT: 1.03")));
        // No zero-delay run, no QD32 runs: said, not guessed.
        assert!(v.contains(
            &"  [not measured] QD1 p50 <= 1.2 x the floor: needs --rtt 0 and the speculative mode"
                .to_string()
        ));
        assert_eq!(
            v.iter()
                .filter(|l| l.starts_with("  [not measured]"))
                .count(),
            3
        );
    }

    #[test]
    fn a_missed_latency_goal_is_split_into_stages_that_add_up() {
        let rtt = Duration::from_millis(1);
        // The floor 1000 µs, through the forwarder 1040; the engine 1080: 5 queued, 20 in the
        // core (12 of it disk), 1005 waiting for the target, so 50 in the front end.
        let rows = vec![
            row("floor", 1000.0, 1, 4096, 1000.0, 100),
            row(RELAYED, 1000.0, 1, 4096, 1040.0, 100),
            with_stages(
                row("speculative", 1000.0, 1, 4096, 1080.0, 100),
                (5.0, 20.0, 12.0, 1005.0),
            ),
        ];
        let line = verdicts(&rows, &[rtt], 2)
            .into_iter()
            .find(|l| l.contains("QD1 p50 <= 1.02"))
            .unwrap();
        assert_eq!(
            line,
            "  [missed] QD1 p50 <= 1.02 x the floor at 1000 us RTT: 1.08; the mean write is 80.0 us \
             over the floor's: the client's extra hop 40.0, the front end beyond it 10.0, the \
             source's core until the frames leave 25.0 (its disk calls 12.0), the wait for the \
             target beyond the floor's whole write 5.0; largest: the client's extra hop; against \
             the floor with the client's hop: 1.04"
        );
        let split = Split::of(&rows[2], &rows[0], Some(&rows[1])).unwrap();
        let sum: f64 = split.parts().iter().map(|p| p.1).sum();
        assert!((sum - split.excess).abs() < 1e-9, "{split:?}");
        // Without the relayed floor the hop is part of the front end.
        let split = Split::of(&rows[2], &rows[0], None).unwrap();
        assert_eq!(
            split.parts()[0],
            ("the front end and the client's hop", 50.0, None)
        );
    }

    #[test]
    fn a_missed_throughput_goal_says_whether_the_cpu_bounds_it() {
        let rtt = Duration::ZERO;
        // The floor: 1000 writes in 100 ms, 10 k a second. The engine at half of it.
        let mut spec = row("speculative", 0.0, 32, 65536, 3000.0, 200);
        let floor = row("floor", 0.0, 32, 65536, 1500.0, 100);
        // 250 µs a write: two cores carry 8 k a second, 0.8 of the floor: CPU-bound.
        spec.cpu_us = Some(250.0);
        let v = verdicts(&[floor.clone(), spec.clone()], &[rtt], 2);
        let line = v.iter().find(|l| l.contains("64 KiB")).unwrap();
        assert!(
            line.starts_with("  [missed] QD32 64 KiB MB/s >= 0.9 x the floor at 0 us RTT: 0.50")
        );
        assert!(
            line.ends_with(
                "carry at most 0.80 x the floor (CPU-bound: 0.9 needs 222.2 us or less)"
            ),
            "{line}"
        );
        // 100 µs a write: two cores would carry twice the floor.
        spec.cpu_us = Some(100.0);
        let v = verdicts(&[floor, spec], &[rtt], 2);
        let line = v.iter().find(|l| l.contains("64 KiB")).unwrap();
        assert!(
            line.ends_with("carry at most 2.00 x the floor (not CPU-bound)"),
            "{line}"
        );
    }
}

//! The bidirectional world: two nodes, each serving its own clients on its own copy of the
//! volume and each the other's target, joined by one link that delays, reorders, drops,
//! duplicates, corrupts and cuts frames; target writes that fail. Clients on both nodes write and
//! read the same few blocks at once, so conflicts are the rule, not the exception.
//!
//! Checked: every client operation completes within a bound once faults stop (no deadlock, no
//! livelock); the two volumes are byte-identical at quiescence; and the client histories of both
//! nodes, plus a final read of every block on each node, are linearizable per block
//! ([`crate::linearize`]). Every write stamps each 512-byte block it covers with its own id, so
//! a read names the write it saw; a block that mixes two writes is a torn read.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use specmirror_abi::ring::Mode;
use specmirror_core::node::{Node, NodeAction, NodeConfig, NodeEvent};
use specmirror_core::rollback_log::LogRecord;
use specmirror_core::source::SourceAction;
use specmirror_core::target::TargetAction;
use specmirror_core::{errno, Frame, Nanos, Regions, MS, US};

use crate::linearize::{check_register, Kind, Op};
use crate::rng::Rng;

const PAIR_ID: [u8; 16] = *b"specmirror-bidi0";
/// The register granule of the checker (and the write granule of the workload).
pub const BLOCK: u64 = 512;
const SETTLE_BOUND: Nanos = 60_000 * MS;
const WORKLOAD_BOUND: Nanos = 20_000 * MS;
const EVENT_LIMIT: u64 = 3_000_000;
/// `who` of operations no client issued (client handles count up from 1).
const COMPENSATION: u64 = u64::MAX;
const FINAL_READ: u64 = u64::MAX - 10;

#[derive(Clone, Debug)]
pub struct BidirConfig {
    pub seed: u64,
    pub mode: Mode,
    pub blocks: u64,
    pub region_size: u64,
    /// Client operations per node (writes and reads).
    pub ops: u32,
    /// Operations in flight per node.
    pub queue_depth: u32,
    pub max_blocks: u64,
    pub read_share: f64,
    /// Each node works on its own half of the blocks: no conflicts at all.
    pub disjoint: bool,
    pub think: Nanos,
    pub one_way: Nanos,
    pub jitter: Nanos,
    pub drop: f64,
    pub dup: f64,
    pub corrupt: f64,
    pub cut_every: Nanos,
    pub cut_max: Nanos,
    /// Mean time between crashes of either node (0: none), and the longest downtime. A crashed
    /// node keeps its volume and its persisted rollback log; everything else is lost.
    pub crash_every: Nanos,
    pub down_max: Nanos,
    pub write_error: f64,
    /// The `serve` policy: a node answers writes while its peer is away. The copies must still
    /// converge; client histories are then not checked for linearizability (the policy gives that
    /// up while the link is down).
    pub serve_alone: bool,
    /// Run nodes whose targets write peer data before the lock is held (the checker must catch
    /// it; only with the `broken-target` feature).
    pub broken_target: bool,
    pub local_write: Nanos,
    pub local_read: Nanos,
    pub write_timeout: Nanos,
    pub retry_budget: Nanos,
    pub trace: bool,
    /// Largest DATA payload: longer writes go out in pieces under one lock.
    pub max_data_payload: u32,
}

impl BidirConfig {
    pub fn quiet(seed: u64, mode: Mode) -> BidirConfig {
        BidirConfig {
            seed,
            mode,
            blocks: 16,
            region_size: 1024,
            ops: 60,
            queue_depth: 4,
            max_blocks: 3,
            read_share: 0.4,
            disjoint: false,
            think: 100 * US,
            one_way: 100 * US,
            jitter: 0,
            drop: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            cut_every: 0,
            cut_max: 0,
            crash_every: 0,
            down_max: 0,
            write_error: 0.0,
            serve_alone: false,
            broken_target: false,
            local_write: 10 * US,
            local_read: 5 * US,
            write_timeout: 300 * MS,
            retry_budget: 5 * MS,
            trace: false,
            max_data_payload: specmirror_abi::MAX_PAYLOAD,
        }
    }

    /// The schedule seed `seed` stands for: geometry, workload and fault mix.
    pub fn for_seed(seed: u64, mode: Mode) -> BidirConfig {
        let mut r = Rng::new(seed ^ 0xb1d1_cafe);
        let mut c = BidirConfig::quiet(seed, mode);
        c.ops = r.range(20, 70) as u32;
        c.queue_depth = [1, 2, 4, 8][r.below(4) as usize];
        c.region_size = [512, 1024, 4096][r.below(3) as usize];
        c.blocks = [4, 8, 16, 32][r.below(4) as usize];
        c.max_blocks = r.range(1, 4);
        c.read_share = [0.2, 0.4, 0.6][r.below(3) as usize];
        c.one_way = r.range(20, 500) * US;
        c.think = r.range(0, 300) * US;
        let profile = r.below(7);
        if profile >= 1 {
            c.jitter = r.range(0, 400) * US;
        }
        if profile >= 2 {
            c.drop = [0.0, 0.01, 0.05, 0.2][r.below(4) as usize];
            c.dup = [0.0, 0.01, 0.1][r.below(3) as usize];
            c.corrupt = [0.0, 0.01][r.below(2) as usize];
        }
        if profile >= 3 {
            c.write_error = [0.0, 0.01, 0.05][r.below(3) as usize];
        }
        if profile >= 4 {
            c.cut_every = r.range(5, 60) * MS;
            c.cut_max = r.range(1, 400) * MS;
        }
        if profile >= 5 {
            c.crash_every = r.range(10, 80) * MS;
            c.down_max = r.range(1, 400) * MS;
        }
        c.max_data_payload = crate::config::data_piece_for(seed);
        c
    }
}

/// What one bidirectional schedule did and found.
#[derive(Clone, Debug, Default)]
pub struct BidirReport {
    pub seed: u64,
    pub events: u64,
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub reads: u64,
    /// Writes answered while the peer was away (the `serve` policy).
    pub acked_alone: u64,
    /// Reads that waited the whole write timeout for their regions and failed.
    pub reads_failed: u64,
    pub drops: u64,
    pub dups: u64,
    pub corruptions: u64,
    pub cuts: u64,
    pub crashes: u64,
    pub write_errors: u64,
    /// Writes whose node crashed before answering (either outcome is allowed).
    pub writes_unknown: u64,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
    /// Latency of every acknowledged write, submission to acknowledgement, with its node (0, 1).
    pub latencies: Vec<(usize, Nanos)>,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        bytes: Vec<u8>,
        epoch: u64,
    },
    Before {
        node: usize,
        handle: u64,
        offset: u64,
        len: u64,
    },
    ReadDone {
        node: usize,
        handle: u64,
    },
    LocalWriteDone {
        node: usize,
        seq: u64,
    },
    LocalSyncDone {
        node: usize,
        flush: u64,
    },
    VolumeWriteDone {
        node: usize,
        token: u64,
        result: Result<(), i32>,
    },
    VolumeSyncDone {
        node: usize,
        token: u64,
    },
    Client {
        node: usize,
    },
    Cut,
    Heal {
        epoch: u64,
    },
    Crash,
    Restart {
        node: usize,
    },
    Calm,
}

impl Ev {
    /// The node a completion belongs to: dropped if that node crashed since it was scheduled.
    fn owner(&self) -> Option<usize> {
        match self {
            Ev::Before { node, .. }
            | Ev::ReadDone { node, .. }
            | Ev::LocalWriteDone { node, .. }
            | Ev::LocalSyncDone { node, .. }
            | Ev::VolumeWriteDone { node, .. }
            | Ev::VolumeSyncDone { node, .. } => Some(*node),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Pending {
    node: usize,
    call: Nanos,
    write: Option<(u64, u64, u64)>,
    read: Option<(u64, u64)>,
}

pub struct BidirWorld {
    cfg: BidirConfig,
    rng: Rng,
    now: Nanos,
    queue: BinaryHeap<Reverse<(Nanos, u64)>>,
    events: BTreeMap<u64, (u32, Ev)>,
    next_ev: u64,
    nodes: [Option<Node>; 2],
    /// Mirror locks each node's target reports holding, by token.
    locks: [BTreeMap<u64, Regions>; 2],
    /// Incarnation of each node (bumped by a crash).
    inc: [u32; 2],
    /// What each node persisted: its rollback log and its session generation.
    plog: [BTreeMap<u64, LogRecord>; 2],
    pgen: [u32; 2],
    vols: [Vec<u8>; 2],
    link_up: bool,
    epoch: u64,
    calm: bool,
    calm_at: Nanos,
    issued: [u32; 2],
    inflight: [u32; 2],
    next_handle: u64,
    pending: BTreeMap<u64, Pending>,
    /// Per block, the operations on it.
    history: BTreeMap<u64, Vec<Op>>,
    report: BidirReport,
}

fn tag_of(block: &[u8]) -> Option<u64> {
    let first = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
    block
        .chunks_exact(8)
        .all(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")) == first)
        .then_some(first)
}

impl BidirWorld {
    pub fn new(cfg: BidirConfig) -> BidirWorld {
        let size = cfg.blocks * BLOCK;
        let mut w = BidirWorld {
            rng: Rng::new(cfg.seed),
            now: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_ev: 0,
            nodes: [None, None],
            locks: [BTreeMap::new(), BTreeMap::new()],
            inc: [0; 2],
            plog: [BTreeMap::new(), BTreeMap::new()],
            pgen: [0; 2],
            vols: [vec![0; size as usize], vec![0; size as usize]],
            link_up: true,
            epoch: 0,
            calm: false,
            calm_at: 0,
            issued: [0; 2],
            inflight: [0; 2],
            next_handle: 1,
            pending: BTreeMap::new(),
            history: BTreeMap::new(),
            report: BidirReport {
                seed: cfg.seed,
                ..BidirReport::default()
            },
            cfg,
        };
        for n in 0..2 {
            w.start_node(n);
        }
        for n in 0..2 {
            w.feed(n, NodeEvent::Connected);
            w.at(0, Ev::Client { node: n });
        }
        w.at(WORKLOAD_BOUND, Ev::Calm);
        if w.cfg.cut_every > 0 {
            let t = w.rng.range(0, 2 * w.cfg.cut_every);
            w.at(t, Ev::Cut);
        }
        if w.cfg.crash_every > 0 {
            let t = w.rng.range(0, 2 * w.cfg.crash_every);
            w.at(t, Ev::Crash);
        }
        w
    }

    fn node_config(&self, id: u32) -> NodeConfig {
        let cfg = &self.cfg;
        let mut c = NodeConfig::new(id, cfg.blocks * BLOCK, cfg.region_size, PAIR_ID);
        c.source.mode = cfg.mode;
        c.source.max_data_payload = cfg.max_data_payload;
        c.source.rto = (4 * cfg.one_way + 2 * cfg.jitter).max(500 * US);
        c.source.retry_initial = 50 * US;
        c.source.retry_max = 2 * MS;
        c.source.write_timeout = cfg.write_timeout;
        c.source.ack_while_down = cfg.serve_alone;
        c.source.heartbeat_interval = 50 * MS;
        c.target.retry_initial = 20 * US;
        c.target.retry_max = MS;
        c.target.retry_budget = cfg.retry_budget;
        c.target.data_buffer = 64 * cfg.max_blocks * BLOCK;
        c
    }

    /// Starts node `n` from what it persisted (nothing, the first time).
    fn start_node(&mut self, n: usize) {
        let records: Vec<LogRecord> = self.plog[n].values().cloned().collect();
        #[allow(unused_mut)]
        let (mut node, actions) =
            Node::recover(self.node_config(n as u32 + 1), self.pgen[n], records);
        #[cfg(feature = "broken-target")]
        if self.cfg.broken_target {
            node.break_write_before_lock();
        }
        self.nodes[n] = Some(node);
        self.trace(format!("node {} up (incarnation {})", n + 1, self.inc[n]));
        self.actions(n, actions);
    }

    fn at(&mut self, t: Nanos, ev: Ev) {
        let id = self.next_ev;
        self.next_ev += 1;
        self.queue.push(Reverse((t, id)));
        let inc = ev.owner().map_or(0, |n| self.inc[n]);
        self.events.insert(id, (inc, ev));
    }

    fn after(&mut self, d: Nanos, ev: Ev) {
        self.at(self.now + d, ev);
    }

    fn trace(&mut self, line: String) {
        if self.cfg.trace {
            self.report
                .trace
                .push(format!("{:>10.3}ms {}", self.now as f64 / 1e6, line));
        }
    }

    fn violation(&mut self, what: String) {
        self.trace(format!("VIOLATION {what}"));
        self.report
            .violations
            .push(format!("t={:.3}ms {what}", self.now as f64 / 1e6));
    }

    pub fn run(mut self) -> BidirReport {
        loop {
            if self.report.events >= EVENT_LIMIT {
                self.violation("event limit reached: the protocol is spinning".into());
                break;
            }
            if self.report.violations.len() > 20 {
                break;
            }
            if self.calm && self.settled() {
                break;
            }
            if self.calm && self.now > self.calm_at + SETTLE_BOUND {
                let waiting: Vec<Option<usize>> = self
                    .nodes
                    .iter()
                    .map(|n| n.as_ref().map(|n| n.waiting()))
                    .collect();
                self.violation(format!(
                    "no progress: {} operations pending {}s after the faults stopped (waiting for holds per node {waiting:?}, logs {:?} / {:?}, unsettled {:?} / {:?})",
                    self.pending.len(),
                    SETTLE_BOUND / 1_000_000_000,
                    self.plog[0].keys().collect::<Vec<_>>(),
                    self.plog[1].keys().collect::<Vec<_>>(),
                    self.nodes[0].as_ref().map(|n| n.target().unsettled()),
                    self.nodes[1].as_ref().map(|n| n.target().unsettled()),
                ));
                break;
            }
            let tq = self.queue.peek().map(|Reverse((t, _))| *t);
            let t0 = self.nodes[0].as_ref().and_then(|n| n.poll_timeout());
            let t1 = self.nodes[1].as_ref().and_then(|n| n.poll_timeout());
            let Some(next) = [tq, t0, t1].into_iter().flatten().min() else {
                if !self.calm {
                    self.calm_down();
                    continue;
                }
                self.violation("nothing left to do but operations are unsettled".into());
                break;
            };
            self.now = self.now.max(next);
            self.report.events += 1;
            if tq == Some(next) {
                let Reverse((_, id)) = self.queue.pop().expect("peeked");
                let (inc, ev) = self.events.remove(&id).expect("event");
                match ev.owner() {
                    // A completion for an incarnation that crashed.
                    Some(n) if self.nodes[n].is_none() || self.inc[n] != inc => {}
                    _ => self.dispatch(ev),
                }
            } else {
                let n = if t0 == Some(next) { 0 } else { 1 };
                let a = self.nodes[n]
                    .as_mut()
                    .expect("a live node")
                    .handle_timeout(self.now);
                self.actions(n, a);
            }
        }
        self.finish()
    }

    fn settled(&self) -> bool {
        self.pending.is_empty()
            && self
                .nodes
                .iter()
                .all(|n| n.as_ref().is_some_and(|n| n.is_idle()))
            && !self.events.values().any(|(_, e)| {
                matches!(
                    e,
                    Ev::LocalWriteDone { .. }
                        | Ev::VolumeWriteDone { .. }
                        | Ev::ReadDone { .. }
                        | Ev::Before { .. }
                )
            })
    }

    fn calm_down(&mut self) {
        if self.calm {
            return;
        }
        self.calm = true;
        self.calm_at = self.now;
        self.trace("calm: faults stop, the link heals, crashed nodes restart".into());
        if !self.link_up {
            self.heal();
        }
        for n in 0..2 {
            if self.nodes[n].is_none() {
                self.restart(n);
            }
        }
    }

    fn finish(mut self) -> BidirReport {
        if self.report.violations.is_empty() {
            if self.vols[0] != self.vols[1] {
                let at = self.vols[0]
                    .iter()
                    .zip(&self.vols[1])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                let b = at as u64 / BLOCK;
                let s = (b * BLOCK) as usize..((b + 1) * BLOCK) as usize;
                let t0 = tag_of(&self.vols[0][s.clone()]);
                let t1 = tag_of(&self.vols[1][s]);
                self.violation(format!(
                    "volumes differ at quiescence, first at byte {at} (block {b}: node 1 holds {t0:x?}, node 2 {t1:x?})"
                ));
            }
            // A final read of every block on each node closes the history.
            let end = self.now;
            for b in 0..self.cfg.blocks {
                for n in 0..2 {
                    let s = (b * BLOCK) as usize..((b + 1) * BLOCK) as usize;
                    match tag_of(&self.vols[n][s]) {
                        Some(v) => self.history.entry(b).or_default().push(Op {
                            call: end,
                            ret: Some(end),
                            kind: Kind::Read(v),
                            who: FINAL_READ - n as u64,
                        }),
                        None => self.violation(format!("block {b} on node {} is torn", n + 1)),
                    }
                }
            }
            let history = std::mem::take(&mut self.history);
            for (b, ops) in history.iter().filter(|_| !self.cfg.serve_alone) {
                if let Err(e) = check_register(0, ops) {
                    self.violation(format!("block {b} is not linearizable: {e}"));
                    break;
                }
            }
        }
        self.report
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, bytes, epoch } => self.deliver(to, bytes, epoch),
            Ev::Before {
                node,
                handle,
                offset,
                len,
            } => {
                let before = self.vols[node][offset as usize..(offset + len) as usize].to_vec();
                self.feed(node, NodeEvent::Before { handle, before });
            }
            Ev::ReadDone { node, handle } => {
                self.complete(handle, Ok(()));
                self.feed(node, NodeEvent::ReadDone { handle });
            }
            Ev::LocalWriteDone { node, seq } => self.feed(
                node,
                NodeEvent::LocalWriteDone {
                    seq,
                    result: Ok(()),
                },
            ),
            Ev::LocalSyncDone { node, flush } => self.feed(
                node,
                NodeEvent::LocalSyncDone {
                    flush,
                    result: Ok(()),
                },
            ),
            Ev::VolumeWriteDone {
                node,
                token,
                result,
            } => self.feed(node, NodeEvent::VolumeWriteDone { token, result }),
            Ev::VolumeSyncDone { node, token } => self.feed(
                node,
                NodeEvent::VolumeSyncDone {
                    token,
                    result: Ok(()),
                },
            ),
            Ev::Client { node } => self.client_step(node),
            Ev::Cut => self.cut(),
            Ev::Heal { epoch } if epoch == self.epoch && !self.link_up => self.heal(),
            Ev::Heal { .. } => {}
            Ev::Crash => self.crash(),
            Ev::Restart { node } => {
                if self.nodes[node].is_none() {
                    self.restart(node);
                }
            }
            Ev::Calm => self.calm_down(),
        }
    }

    fn client_step(&mut self, node: usize) {
        if self.calm || self.issued[node] >= self.cfg.ops {
            return;
        }
        let think = self.rng.range(0, self.cfg.think);
        // A node's clients start once its first session is open and the peer has told it where
        // its writes stand.
        let Some(me) = self.nodes[node].as_ref() else {
            // Its node is down: the client tries again later.
            self.after(think.max(50 * US), Ev::Client { node });
            return;
        };
        let waiting = me.source().stats().sessions == 0
            || me.target().waits_for_horizon()
            || self.inflight[node] >= self.cfg.queue_depth;
        if waiting {
            self.after(think.max(50 * US), Ev::Client { node });
            return;
        }
        self.issued[node] += 1;
        self.inflight[node] += 1;
        let handle = self.next_handle;
        self.next_handle += 1;
        let (lo, hi) = if self.cfg.disjoint {
            let half = self.cfg.blocks / 2;
            (node as u64 * half, (node as u64 + 1) * half)
        } else {
            (0, self.cfg.blocks)
        };
        let first = lo + self.rng.below(hi - lo);
        let n = self.rng.range(1, self.cfg.max_blocks + 1).min(hi - first);
        let (offset, len) = (first * BLOCK, n * BLOCK);
        if self.rng.chance(self.cfg.read_share) {
            self.trace(format!(
                "node {} client read h{handle} blocks {first}+{n}",
                node + 1
            ));
            self.pending.insert(
                handle,
                Pending {
                    node,
                    call: self.now,
                    write: None,
                    read: Some((first, n)),
                },
            );
            self.feed(
                node,
                NodeEvent::ClientRead {
                    handle,
                    offset,
                    len,
                },
            );
        } else {
            // The write's id: unique, never 0 (the initial content), names the node.
            let tag = ((node as u64 + 1) << 48) | handle;
            let mut data = Vec::with_capacity(len as usize);
            for _ in 0..len / 8 {
                data.extend_from_slice(&tag.to_le_bytes());
            }
            self.trace(format!(
                "node {} client write h{handle} blocks {first}+{n} tag {tag:#x}",
                node + 1
            ));
            self.pending.insert(
                handle,
                Pending {
                    node,
                    call: self.now,
                    write: Some((first, n, tag)),
                    read: None,
                },
            );
            let fua = self.rng.chance(0.1);
            self.feed(
                node,
                NodeEvent::ClientWrite {
                    handle,
                    offset,
                    data,
                    fua,
                },
            );
        }
        self.after(think, Ev::Client { node });
    }

    /// A client operation completed (a read's values were recorded when it read).
    fn complete(&mut self, handle: u64, result: Result<(), i32>) {
        let Some(p) = self.pending.remove(&handle) else {
            self.violation(format!("operation h{handle} answered twice or never asked"));
            return;
        };
        self.inflight[p.node] -= 1;
        if let Some((first, n, tag)) = p.write {
            let ret = match result {
                Ok(()) => {
                    self.report.writes_acked += 1;
                    self.report.latencies.push((p.node, self.now - p.call));
                    Some(self.now)
                }
                Err(_) => {
                    self.report.writes_failed += 1;
                    None
                }
            };
            for b in first..first + n {
                self.history.entry(b).or_default().push(Op {
                    call: p.call,
                    ret,
                    kind: Kind::Write(tag),
                    who: handle,
                });
            }
        }
        if let Some((first, n)) = p.read.filter(|_| result.is_ok()) {
            self.report.reads += 1;
            for b in first..first + n {
                if let Some(op) = self.history.get_mut(&b).and_then(|h| {
                    h.iter_mut()
                        .rev()
                        .find(|o| o.who == handle && matches!(o.kind, Kind::Read(_)))
                }) {
                    op.ret = Some(self.now);
                }
            }
        }
    }

    fn cut(&mut self) {
        if self.calm {
            return;
        }
        self.epoch += 1;
        self.link_up = false;
        self.report.cuts += 1;
        let d = self.rng.range(US, self.cfg.cut_max.max(2 * US));
        self.trace(format!("link cut for {:.3}ms", d as f64 / 1e6));
        for n in 0..2 {
            self.feed(n, NodeEvent::Disconnected);
        }
        let epoch = self.epoch;
        self.after(d, Ev::Heal { epoch });
        let next = self.rng.range(1, 2 * self.cfg.cut_every);
        self.after(d + next, Ev::Cut);
    }

    fn heal(&mut self) {
        self.link_up = true;
        self.trace("link healed".into());
        for n in 0..2 {
            self.feed(n, NodeEvent::Connected);
        }
    }

    fn crash(&mut self) {
        if self.calm {
            return;
        }
        let n = self.rng.below(2) as usize;
        let down = self.rng.range(US, self.cfg.down_max.max(2 * US));
        if self.nodes[n].is_some() {
            self.nodes[n] = None;
            self.locks[n].clear();
            self.inc[n] += 1;
            self.report.crashes += 1;
            self.trace(format!(
                "node {} crashes for {:.3}ms",
                n + 1,
                down as f64 / 1e6
            ));
            // Its clients get no answer: a write may or may not have happened, a read saw nothing.
            let lost: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| p.node == n)
                .map(|(h, _)| *h)
                .collect();
            for h in lost {
                let p = self.pending.remove(&h).expect("pending");
                self.inflight[n] -= 1;
                if let Some((first, count, tag)) = p.write {
                    self.report.writes_unknown += 1;
                    for b in first..first + count {
                        self.history.entry(b).or_default().push(Op {
                            call: p.call,
                            ret: None,
                            kind: Kind::Write(tag),
                            who: h,
                        });
                    }
                }
                for ops in self.history.values_mut() {
                    ops.retain(|o| !(o.who == h && matches!(o.kind, Kind::Read(_))));
                }
            }
            // Its connection dies with it.
            self.epoch += 1;
            self.feed(1 - n, NodeEvent::Disconnected);
            self.after(down, Ev::Restart { node: n });
        }
        let next = self.rng.range(1, 2 * self.cfg.crash_every);
        self.after(down + next, Ev::Crash);
    }

    fn restart(&mut self, n: usize) {
        self.start_node(n);
        if self.link_up {
            // A new connection between the two.
            self.epoch += 1;
            self.feed(1 - n, NodeEvent::Disconnected);
            self.feed(1 - n, NodeEvent::Connected);
            self.feed(n, NodeEvent::Connected);
        }
    }

    fn send(&mut self, from: usize, frame: &Frame) {
        self.trace(format!("node {} sends {frame}", from + 1));
        if !self.link_up {
            return;
        }
        let bytes = frame.encode();
        let calm = self.calm;
        if !calm && self.rng.chance(self.cfg.drop) {
            self.report.drops += 1;
            return;
        }
        let copies = if !calm && self.rng.chance(self.cfg.dup) {
            self.report.dups += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut b = bytes.clone();
            if !calm && self.rng.chance(self.cfg.corrupt) {
                self.report.corruptions += 1;
                let i = self.rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << self.rng.below(8);
            }
            let delay = self.cfg.one_way + self.rng.range(0, self.cfg.jitter);
            let epoch = self.epoch;
            self.after(
                delay,
                Ev::Deliver {
                    to: 1 - from,
                    bytes: b,
                    epoch,
                },
            );
        }
    }

    fn deliver(&mut self, to: usize, bytes: Vec<u8>, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        match Frame::decode(&bytes) {
            Ok((f, used)) if used == bytes.len() => self.feed(to, NodeEvent::Frame(f)),
            Ok(_) => self.violation("frame decoded with trailing bytes".into()),
            Err(e) => self.trace(format!("node {} refuses a damaged frame: {e}", to + 1)),
        }
    }

    fn feed(&mut self, node: usize, ev: NodeEvent) {
        let Some(n) = self.nodes[node].as_mut() else {
            return;
        };
        let a = n.handle(ev, self.now);
        self.actions(node, a);
    }

    fn actions(&mut self, node: usize, actions: Vec<NodeAction>) {
        for a in actions {
            match a {
                NodeAction::Send(f) => self.send(node, &f),
                NodeAction::ReadBefore {
                    handle,
                    offset,
                    len,
                } => self.at(
                    self.now,
                    Ev::Before {
                        node,
                        handle,
                        offset,
                        len,
                    },
                ),
                NodeAction::ReadLocal {
                    handle,
                    offset,
                    len,
                } => {
                    // The read sees the volume now, while it holds its regions.
                    let first = offset / BLOCK;
                    for b in first..first + len / BLOCK {
                        let s = (b * BLOCK) as usize..((b + 1) * BLOCK) as usize;
                        match tag_of(&self.vols[node][s]) {
                            Some(v) => {
                                let call = self.pending.get(&handle).map_or(self.now, |p| p.call);
                                self.history.entry(b).or_default().push(Op {
                                    call,
                                    ret: None,
                                    kind: Kind::Read(v),
                                    who: handle,
                                });
                            }
                            None => self.violation(format!(
                                "node {} read h{handle} sees block {b} torn",
                                node + 1
                            )),
                        }
                    }
                    self.trace(format!("node {} reads for h{handle}", node + 1));
                    self.after(self.cfg.local_read, Ev::ReadDone { node, handle });
                }
                NodeAction::FailRead { handle, errno } if errno == errno::EIO => {
                    // It waited the whole write timeout for its regions: an error, no value.
                    self.trace(format!("node {} fails read h{handle} (EIO)", node + 1));
                    self.report.reads_failed += 1;
                    self.complete(handle, Err(errno));
                }
                NodeAction::FailRead { handle, errno } => {
                    self.violation(format!("read h{handle} refused ({errno})"));
                }
                NodeAction::WriteVolume {
                    token, seq, pieces, ..
                } => {
                    // Invariant 1, both ways: a peer write lands only under its own lock.
                    let held = self.locks[node].get(&token).copied();
                    for (o, d) in &pieces {
                        let r = Regions::of_bytes(*o, d.len() as u64, self.cfg.region_size);
                        if !held.is_some_and(|h| h.contains(r)) {
                            self.violation(format!(
                                "node {} writes peer seq {seq} at {o} without holding its lock",
                                node + 1
                            ));
                        }
                    }
                    let fail = !self.calm && self.rng.chance(self.cfg.write_error);
                    let result = if fail {
                        self.report.write_errors += 1;
                        self.trace(format!("node {} peer write seq {seq} fails", node + 1));
                        Err(errno::EIO)
                    } else {
                        for (o, d) in &pieces {
                            let o = *o as usize;
                            self.vols[node][o..o + d.len()].copy_from_slice(d);
                        }
                        self.trace(format!(
                            "node {} applies peer seq {seq} as {:?}",
                            node + 1,
                            pieces
                                .iter()
                                .map(|(o, d)| (o / BLOCK, d.len() as u64 / BLOCK))
                                .collect::<Vec<_>>()
                        ));
                        Ok(())
                    };
                    self.after(
                        self.cfg.local_write,
                        Ev::VolumeWriteDone {
                            node,
                            token,
                            result,
                        },
                    );
                }
                NodeAction::Source(a) => self.source_action(node, a),
                NodeAction::Target(a) => match a {
                    TargetAction::SyncVolume { token } => {
                        self.after(self.cfg.local_write, Ev::VolumeSyncDone { node, token })
                    }
                    TargetAction::Violation(why) => {
                        self.violation(format!("node {} saw a protocol violation: {why}", node + 1))
                    }
                    TargetAction::LockAcquired { token, regions, .. } => {
                        self.locks[node].insert(token, regions);
                    }
                    TargetAction::LockReleased { token } => {
                        self.locks[node].remove(&token);
                    }
                    _ => {}
                },
            }
        }
    }

    fn source_action(&mut self, node: usize, a: SourceAction) {
        match &a {
            SourceAction::LogAppend(r) | SourceAction::LogUpdate(r) => {
                self.plog[node].insert(r.seq, r.clone());
            }
            SourceAction::LogLockGranted { seq } => {
                if let Some(r) = self.plog[node].get_mut(seq) {
                    r.lock_pending = false;
                }
            }
            SourceAction::LogDataWritten { seq } => {
                if let Some(r) = self.plog[node].get_mut(seq) {
                    r.lock_pending = false;
                    r.data_pending = false;
                }
            }
            SourceAction::LogRemove { seq } => {
                self.plog[node].remove(seq);
            }
            SourceAction::PersistGeneration(g) => self.pgen[node] = *g,
            _ => {}
        }
        match a {
            SourceAction::WriteLocal {
                seq, offset, data, ..
            } => {
                let o = offset as usize;
                self.vols[node][o..o + data.len()].copy_from_slice(&data);
                match seq {
                    Some(seq) => self.after(self.cfg.local_write, Ev::LocalWriteDone { node, seq }),
                    None => self.trace(format!(
                        "node {} restores blocks {}+{}",
                        node + 1,
                        offset / BLOCK,
                        data.len() as u64 / BLOCK
                    )),
                }
            }
            SourceAction::SyncLocal { flush } => {
                self.after(self.cfg.local_write, Ev::LocalSyncDone { node, flush })
            }
            SourceAction::LogAppend(rec) if rec.before.is_none() => {
                // A compensation: a write no client asked for, restoring earlier content. It
                // takes effect at some point after now (on the peer), so it enters the history
                // as a write of unknown outcome.
                let first = rec.offset / BLOCK;
                for (i, chunk) in rec.data.chunks(BLOCK as usize).enumerate() {
                    match tag_of(chunk) {
                        Some(v) => self.history.entry(first + i as u64).or_default().push(Op {
                            call: self.now,
                            ret: None,
                            kind: Kind::Write(v),
                            who: COMPENSATION - node as u64,
                        }),
                        None => self.violation(format!(
                            "node {} compensation seq {} restores a torn block",
                            node + 1,
                            rec.seq
                        )),
                    }
                }
                self.trace(format!(
                    "node {} compensates with seq {}",
                    node + 1,
                    rec.seq
                ));
            }
            SourceAction::AckWrite { handle, result } => {
                self.trace(format!(
                    "node {} answers write h{handle}: {result:?}",
                    node + 1
                ));
                self.complete(handle, result);
            }
            SourceAction::AckFlush { .. } => {}
            SourceAction::AckedAlone { seq } => {
                self.report.acked_alone += 1;
                self.trace(format!("node {} answers seq {seq} alone", node + 1));
            }
            SourceAction::Refused(st) => {
                self.violation(format!("node {} was refused: {st:?}", node + 1))
            }
            SourceAction::CannotMirror { seq, .. } => self.violation(format!(
                "node {}: seq {seq} is longer than its peer takes",
                node + 1
            )),
            SourceAction::RolledBack { seq, reason, .. } => {
                self.trace(format!("node {} rolls back seq {seq}: {reason}", node + 1))
            }
            _ => {}
        }
    }
}

/// Runs one bidirectional schedule.
pub fn run(cfg: BidirConfig) -> BidirReport {
    BidirWorld::new(cfg).run()
}

/// Latencies of uncontended, fault-free writes on each node (node 1's, node 2's) and the
/// round-trip time they ran over: both nodes write at once, each to its own half of the volume.
pub fn uncontended_latency(mode: Mode) -> ([Vec<Nanos>; 2], Nanos) {
    let mut cfg = BidirConfig::quiet(1, mode);
    cfg.disjoint = true;
    cfg.read_share = 0.0;
    cfg.queue_depth = 1;
    cfg.ops = 30;
    cfg.one_way = 250 * US;
    cfg.local_write = 30 * US;
    cfg.think = 0;
    let r = run(cfg.clone());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let mut per = [Vec::new(), Vec::new()];
    for (n, l) in r.latencies {
        per[n].push(l);
    }
    (per, 2 * cfg.one_way)
}

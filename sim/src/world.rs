//! The simulated world: a source node and a target node running the protocol cores, two volumes,
//! the source's persisted rollback log, a network that delays, reorders, drops, duplicates,
//! corrupts and cuts, crashes and restarts, local lock holders on the target, and a client. Time is
//! virtual and every choice comes from the seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use specmirror_core::rollback_log::LogRecord;
use specmirror_core::source::{Source, SourceAction, SourceConfig, SourceEvent};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::{errno, Frame, Nanos, Regions, MS, US};

use crate::checker::{Checker, OpState};
use crate::config::SimConfig;
use crate::rng::Rng;
use crate::Report;

const PAIR_ID: [u8; 16] = *b"specmirror-sim-0";
/// Longest a healed world may take to settle before it counts as a liveness violation.
const SETTLE_BOUND: Nanos = 60_000 * MS;
const EVENT_LIMIT: u64 = 5_000_000;
/// Virtual time after which faults stop even if the workload has not finished.
const WORKLOAD_BOUND: Nanos = 20_000 * MS;

#[derive(Debug)]
enum Ev {
    Deliver {
        to_target: bool,
        bytes: Vec<u8>,
        epoch: u64,
    },
    LocalWriteDone {
        inc: u32,
        seq: u64,
    },
    LocalSyncDone {
        inc: u32,
        flush: u64,
    },
    TargetWriteDone {
        inc: u32,
        token: u64,
        result: Result<(), i32>,
    },
    TargetSyncDone {
        inc: u32,
        token: u64,
        result: Result<(), i32>,
    },
    Client,
    Cut,
    Heal {
        epoch: u64,
    },
    Crash,
    Restart {
        source: bool,
    },
    Hold,
    Release {
        id: u64,
        inc: u32,
    },
    Calm,
}

pub struct World {
    cfg: SimConfig,
    rng: Rng,
    now: Nanos,
    queue: BinaryHeap<Reverse<(Nanos, u64)>>,
    events: BTreeMap<u64, Ev>,
    next_ev: u64,
    source: Option<Source>,
    /// The source's next timeout as last asked, or None once the source may have changed: asking
    /// walks every write in flight, and most events leave the source as it was.
    source_due: Option<Option<Nanos>>,
    target: Option<Target>,
    src_inc: u32,
    tgt_inc: u32,
    src_vol: Vec<u8>,
    tgt_vol: Vec<u8>,
    plog: BTreeMap<u64, LogRecord>,
    pgen: u32,
    link_up: bool,
    epoch: u64,
    calm: bool,
    calm_at: Nanos,
    issued: u32,
    /// The source has met the target since it last started. Until then the client waits, as
    /// the source daemon opens its NBD front end only after its first session: so every client
    /// write is logged knowing the target's limits.
    met_since_start: bool,
    next_hold: u64,
    checker: Checker,
    report: Report,
}

impl World {
    pub fn new(cfg: SimConfig) -> World {
        let rng = Rng::new(cfg.seed);
        let vol = cfg.volume_size as usize;
        let mut w = World {
            checker: Checker::new(cfg.volume_size, cfg.region_size),
            report: Report::new(cfg.seed),
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_ev: 0,
            source: None,
            source_due: None,
            target: None,
            src_inc: 0,
            tgt_inc: 0,
            src_vol: vec![0; vol],
            tgt_vol: vec![0; vol],
            plog: BTreeMap::new(),
            pgen: 0,
            link_up: true,
            epoch: 0,
            calm: false,
            calm_at: 0,
            issued: 0,
            met_since_start: false,
            next_hold: 1,
            cfg,
        };
        w.start_target();
        w.start_source();
        w.at(0, Ev::Client);
        // However the workload goes, faults stop by this time and the world must then settle.
        w.at(WORKLOAD_BOUND, Ev::Calm);
        let f = w.cfg.faults.clone();
        if f.cut_every > 0 {
            let t = w.rng.range(0, f.cut_every * 2);
            w.at(t, Ev::Cut);
        }
        if f.crash_every > 0 {
            let t = w.rng.range(0, f.crash_every * 2);
            w.at(t, Ev::Crash);
        }
        if f.hold_every > 0 {
            let t = w.rng.range(0, f.hold_every * 2);
            w.at(t, Ev::Hold);
        }
        w
    }

    fn source_config(&self) -> SourceConfig {
        let mut c = SourceConfig::new(self.cfg.volume_size, self.cfg.region_size, PAIR_ID);
        c.mode = self.cfg.mode;
        c.max_data_payload = self.cfg.max_data_payload;
        c.rto = (4 * self.cfg.one_way + 2 * self.cfg.faults.jitter).max(500 * US);
        c.retry_initial = 50 * US;
        c.retry_max = 2 * MS;
        c.write_timeout = self.cfg.write_timeout;
        c.heartbeat_interval = 50 * MS;
        c
    }

    fn target_config(&self) -> TargetConfig {
        let mut c = TargetConfig::new(self.cfg.volume_size, self.cfg.region_size, PAIR_ID);
        c.retry_initial = 20 * US;
        c.retry_max = MS;
        c.retry_budget = self.cfg.retry_budget;
        c.data_buffer = 4 * self.cfg.max_write;
        if let Some((limit, window)) = self.cfg.hardware_target {
            c.write_limit = Some(limit);
            c.window = Some(window);
            c.implicit_locks = false;
        }
        c
    }

    fn start_source(&mut self) {
        let records: Vec<LogRecord> = self.plog.values().cloned().collect();
        let (s, actions) = Source::recover(self.source_config(), self.pgen, records);
        self.source = Some(s);
        self.source_due = None;
        self.met_since_start = false;
        self.trace(format!("source up (incarnation {})", self.src_inc));
        self.source_actions(actions);
        self.source_event(SourceEvent::Connected);
    }

    fn start_target(&mut self) {
        #[allow(unused_mut)]
        let mut t = Target::new(self.target_config());
        #[cfg(feature = "broken-target")]
        if self.cfg.broken_target {
            t.break_write_before_lock();
        }
        self.target = Some(t);
        self.trace(format!("target up (incarnation {})", self.tgt_inc));
    }

    fn at(&mut self, t: Nanos, ev: Ev) {
        let id = self.next_ev;
        self.next_ev += 1;
        self.queue.push(Reverse((t, id)));
        self.events.insert(id, ev);
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

    /// Runs the schedule to quiescence and checks the end state.
    pub fn run(mut self) -> Report {
        loop {
            if self.report.events >= EVENT_LIMIT {
                let barriers = self.target.as_ref().map(|t| t.barriers().to_vec());
                let log = self.source.as_ref().map(|s| s.log().seqs());
                self.violation(format!(
                    "event limit reached: the protocol is spinning (target barriers {barriers:?}, source log {log:?})"
                ));
                break;
            }
            if self.report.violations.len() > 20 {
                break;
            }
            if self.calm && self.settled() {
                break;
            }
            if self.calm && self.now > self.calm_at + SETTLE_BOUND {
                self.violation(format!(
                    "no progress: {} operations still pending {}s after the faults stopped",
                    self.checker.pending(),
                    SETTLE_BOUND / 1_000_000_000
                ));
                break;
            }
            let tq = self.queue.peek().map(|Reverse((t, _))| *t);
            let ts = match self.source_due {
                Some(t) => t,
                None => {
                    let t = self.source.as_ref().and_then(|s| s.poll_timeout());
                    self.source_due = Some(t);
                    t
                }
            };
            let tt = self.target.as_ref().and_then(|t| t.poll_timeout());
            let next = [tq, ts, tt].into_iter().flatten().min();
            let Some(next) = next else {
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
                let ev = self.events.remove(&id).expect("event");
                self.dispatch(ev);
            } else if ts == Some(next) {
                let now = self.now;
                let actions = self.source_mut().expect("source").handle_timeout(now);
                self.source_actions(actions);
            } else {
                let actions = self
                    .target
                    .as_mut()
                    .expect("target")
                    .handle_timeout(self.now);
                self.target_actions(actions);
            }
        }
        self.finish()
    }

    fn settled(&self) -> bool {
        self.checker.pending() == 0
            && self.source.as_ref().is_some_and(|s| s.is_idle())
            && self.target.as_ref().is_some_and(|t| t.is_idle())
            && !self.events.values().any(|e| {
                matches!(
                    e,
                    Ev::LocalWriteDone { .. } | Ev::TargetWriteDone { .. } | Ev::Release { .. }
                )
            })
    }

    /// Stops injecting faults and heals everything, so the world must converge.
    fn calm_down(&mut self) {
        if self.calm {
            return;
        }
        self.calm = true;
        self.calm_at = self.now;
        self.trace("calm: faults stop, link heals, crashed nodes restart".into());
        if !self.link_up {
            self.link_up = true;
        }
        if self.target.is_none() {
            self.tgt_inc += 1;
            self.start_target();
        }
        if self.source.is_none() {
            self.src_inc += 1;
            self.start_source();
        }
    }

    fn finish(mut self) -> Report {
        if self.report.violations.is_empty() {
            let same = self.src_vol == self.tgt_vol;
            if !same {
                let at = self
                    .src_vol
                    .iter()
                    .zip(&self.tgt_vol)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.violation(format!(
                    "volumes differ at quiescence, first at byte {at}: source {:#04x}, target {:#04x}",
                    self.src_vol[at], self.tgt_vol[at]
                ));
            }
            for v in self.checker.final_check(&self.src_vol, "source") {
                self.violation(v);
            }
            // Equal volumes: the target's check would find what the source's did.
            if !same {
                for v in self.checker.final_check(&self.tgt_vol, "target") {
                    self.violation(v);
                }
            }
        }
        if let Some(s) = &self.source {
            self.report.rollbacks = s.stats().rollbacks;
        }
        self.report.end_time = self.now;
        self.report.merge_checker(&self.checker);
        self.report
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                to_target,
                bytes,
                epoch,
            } => self.deliver(to_target, bytes, epoch),
            Ev::LocalWriteDone { inc, seq } if inc == self.src_inc => {
                self.source_event(SourceEvent::LocalWriteDone {
                    seq,
                    result: Ok(()),
                })
            }
            Ev::LocalSyncDone { inc, flush } if inc == self.src_inc => {
                self.source_event(SourceEvent::LocalSyncDone {
                    flush,
                    result: Ok(()),
                })
            }
            Ev::TargetWriteDone { inc, token, result } if inc == self.tgt_inc => {
                self.target_event(TargetEvent::VolumeWriteDone { token, result })
            }
            Ev::TargetSyncDone { inc, token, result } if inc == self.tgt_inc => {
                self.target_event(TargetEvent::VolumeSyncDone { token, result })
            }
            Ev::Client => self.client_step(),
            Ev::Cut => self.cut(),
            Ev::Heal { epoch } if epoch == self.epoch && !self.link_up => {
                self.link_up = true;
                self.trace("link healed".into());
            }
            Ev::Crash => self.crash(),
            Ev::Restart { source } => {
                if source && self.source.is_none() {
                    self.src_inc += 1;
                    self.start_source();
                } else if !source && self.target.is_none() {
                    self.tgt_inc += 1;
                    self.start_target();
                }
            }
            Ev::Hold => self.hold(),
            Ev::Calm => self.calm_down(),
            Ev::Release { id, inc } if inc == self.tgt_inc => {
                self.checker.local_release(id);
                if let Some(t) = self.target.as_mut() {
                    let a = t.unlock_local(id, self.now);
                    self.trace(format!("local holder {id} releases"));
                    self.target_actions(a);
                }
            }
            _ => {} // a completion for a node incarnation that crashed
        }
    }

    fn client_step(&mut self) {
        if self.calm || self.issued >= self.cfg.ops {
            return;
        }
        let think = self.rng.range(0, self.cfg.think);
        let waiting = self.source.is_none()
            || !self.met_since_start
            || self.checker.pending() >= self.cfg.queue_depth as usize;
        if waiting {
            // The client waits for its node or for a free slot.
            self.after(think.max(50 * US), Ev::Client);
            return;
        }
        self.issued += 1;
        let handle = self.issued as u64;
        if self.rng.chance(0.05) {
            self.checker.submit_flush(handle, self.now);
            self.trace(format!("client flush h{handle}"));
            self.source_event(SourceEvent::ClientFlush { handle });
        } else {
            let len = self.rng.range(1, self.cfg.max_write);
            let offset = if self.rng.chance(0.5) {
                // Region-aligned starts collide more often.
                let regions = self.cfg.volume_size / self.cfg.region_size;
                self.rng.below(regions) * self.cfg.region_size
            } else {
                self.rng.below(self.cfg.volume_size)
            };
            let len = len.min(self.cfg.volume_size - offset);
            let mut data = vec![0u8; len as usize];
            self.rng.fill(&mut data);
            let before = self.src_vol[offset as usize..(offset + len) as usize].to_vec();
            self.checker
                .submit_write(handle, offset, data.clone(), self.now);
            let fua = self.rng.chance(0.1);
            self.trace(format!("client write h{handle} off={offset} len={len}"));
            self.source_event(SourceEvent::ClientWrite {
                handle,
                offset,
                data,
                before,
                fua,
            });
        }
        if self.issued >= self.cfg.ops {
            self.calm_after_workload();
        } else {
            self.after(think, Ev::Client);
        }
    }

    /// Faults continue for a while after the last submission, then the world calms down.
    fn calm_after_workload(&mut self) {
        let grace = self.rng.range(0, 200) * MS;
        self.after(grace, Ev::Calm);
    }

    fn cut(&mut self) {
        if self.calm {
            return;
        }
        self.epoch += 1;
        self.link_up = false;
        self.report.faults.cuts += 1;
        let d = self.rng.range(US, self.cfg.faults.cut_max);
        self.trace(format!("link cut for {:.3}ms", d as f64 / 1e6));
        let epoch = self.epoch;
        self.after(d, Ev::Heal { epoch });
        let next = self.rng.range(1, 2 * self.cfg.faults.cut_every);
        self.after(d + next, Ev::Cut);
    }

    fn crash(&mut self) {
        if self.calm {
            return;
        }
        let f = self.cfg.faults.clone();
        let source = self.rng.chance(0.5);
        let down = self.rng.range(US, f.down_max);
        if source && self.source.is_some() {
            self.source = None;
            self.source_due = None;
            self.checker.source_crashed();
            self.report.faults.crashes += 1;
            self.trace(format!("source crashes for {:.3}ms", down as f64 / 1e6));
            self.after(down, Ev::Restart { source: true });
        } else if !source && self.target.is_some() {
            self.target = None;
            self.checker.target_crashed();
            self.report.faults.crashes += 1;
            self.trace(format!("target crashes for {:.3}ms", down as f64 / 1e6));
            self.after(down, Ev::Restart { source: false });
        }
        let next = self.rng.range(1, 2 * f.crash_every);
        self.after(down + next, Ev::Crash);
    }

    fn hold(&mut self) {
        if self.calm {
            return;
        }
        let f = self.cfg.faults.clone();
        let regions_total = self.cfg.volume_size.div_ceil(self.cfg.region_size);
        let first = self.rng.below(regions_total);
        let count = self.rng.range(1, 2).min(regions_total - first);
        let r = Regions { first, count };
        let id = self.next_hold;
        self.next_hold += 1;
        if let Some(t) = self.target.as_mut() {
            if t.try_lock_local(id, r) {
                self.report.faults.holds += 1;
                let d = self.rng.range(US, f.hold_max);
                self.trace(format!(
                    "local holder {id} takes regions {}+{} for {:.3}ms",
                    r.first,
                    r.count,
                    d as f64 / 1e6
                ));
                if let Err(v) = self.checker.local_acquire(id, r) {
                    self.violation(v);
                }
                let inc = self.tgt_inc;
                self.after(d, Ev::Release { id, inc });
            }
        }
        let next = self.rng.range(1, 2 * f.hold_every);
        self.after(next, Ev::Hold);
    }

    fn send(&mut self, to_target: bool, frame: &Frame) {
        let bytes = frame.encode();
        self.trace(format!(
            "{} sends {frame}",
            if to_target { "source" } else { "target" }
        ));
        if !self.link_up {
            return;
        }
        let f = self.cfg.faults.clone();
        let calm = self.calm;
        if !calm && self.rng.chance(f.drop) {
            self.report.faults.drops += 1;
            return;
        }
        let copies = if !calm && self.rng.chance(f.dup) {
            self.report.faults.dups += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut b = bytes.clone();
            if !calm && self.rng.chance(f.corrupt) {
                self.report.faults.corruptions += 1;
                let i = self.rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << self.rng.below(8);
            }
            let delay = self.cfg.one_way + self.rng.range(0, f.jitter);
            let epoch = self.epoch;
            self.after(
                delay,
                Ev::Deliver {
                    to_target,
                    bytes: b,
                    epoch,
                },
            );
        }
    }

    fn deliver(&mut self, to_target: bool, bytes: Vec<u8>, epoch: u64) {
        if epoch != self.epoch {
            return; // in flight when the link was cut
        }
        let frame = match Frame::decode(&bytes) {
            Ok((f, used)) if used == bytes.len() => f,
            Ok(_) => {
                self.violation("frame decoded with trailing bytes".into());
                return;
            }
            Err(e) => {
                self.report.faults.refused_frames += 1;
                self.trace(format!("receiver refuses a damaged frame: {e}"));
                return;
            }
        };
        if to_target {
            if self.target.is_some() {
                self.target_event(TargetEvent::Frame(frame));
            }
        } else if self.source.is_some() {
            self.source_event(SourceEvent::Frame(frame));
        }
    }

    /// The source, to be changed: its next timeout is asked again.
    fn source_mut(&mut self) -> Option<&mut Source> {
        self.source_due = None;
        self.source.as_mut()
    }

    fn source_event(&mut self, ev: SourceEvent) {
        let now = self.now;
        let Some(s) = self.source_mut() else {
            return;
        };
        let actions = s.handle(ev, now);
        self.source_actions(actions);
    }

    fn target_event(&mut self, ev: TargetEvent) {
        let Some(t) = self.target.as_mut() else {
            return;
        };
        let actions = t.handle(ev, self.now);
        self.target_actions(actions);
    }

    fn source_actions(&mut self, actions: Vec<SourceAction>) {
        for a in actions {
            match a {
                SourceAction::Send(f) => self.send(true, &f),
                SourceAction::WriteLocal {
                    seq, offset, data, ..
                } => {
                    let o = offset as usize;
                    self.src_vol[o..o + data.len()].copy_from_slice(&data);
                    if let Some(seq) = seq {
                        let inc = self.src_inc;
                        self.after(self.cfg.local_write, Ev::LocalWriteDone { inc, seq });
                    } else {
                        self.trace(format!("source restores {} bytes at {offset}", data.len()));
                    }
                }
                SourceAction::SyncLocal { flush } => {
                    let inc = self.src_inc;
                    self.after(self.cfg.local_write, Ev::LocalSyncDone { inc, flush });
                }
                SourceAction::LogAppend(r) | SourceAction::LogUpdate(r) => {
                    self.plog.insert(r.seq, r);
                }
                SourceAction::LogLockGranted { seq } => {
                    if let Some(r) = self.plog.get_mut(&seq) {
                        r.lock_pending = false;
                    }
                }
                SourceAction::LogDataWritten { seq } => {
                    if let Some(r) = self.plog.get_mut(&seq) {
                        r.lock_pending = false;
                        r.data_pending = false;
                    }
                }
                SourceAction::LogRemove { seq } => {
                    self.trace(format!("source log drops seq {seq}"));
                    self.plog.remove(&seq);
                }
                SourceAction::PersistGeneration(g) => self.pgen = g,
                SourceAction::AckWrite { handle, result } => {
                    self.trace(format!("client h{handle} write answered {result:?}"));
                    let v = self.checker.write_answered(
                        handle,
                        result,
                        self.now,
                        &self.src_vol,
                        &self.tgt_vol,
                    );
                    for v in v {
                        self.violation(v);
                    }
                }
                SourceAction::AckFlush { handle, result } => {
                    self.trace(format!("client h{handle} flush answered {result:?}"));
                    self.checker.flush_answered(handle, result);
                }
                SourceAction::SessionUp { generation } => {
                    // The client writes once the pair has met since the source started.
                    self.met_since_start = true;
                    self.trace(format!("session {generation} up"))
                }
                SourceAction::Refused(st) => {
                    self.violation(format!("target refused the pair: {st:?}"))
                }
                // A target's limits stay the same for a whole run, and the client writes only
                // once the source has met the target since it started: every write is logged
                // knowing them and split to them.
                SourceAction::CannotMirror { seq, len, limit } => self.violation(format!(
                    "seq {seq} of {len} bytes is longer than the target takes ({limit})"
                )),
                SourceAction::AckedAlone { seq } => self.violation(format!(
                    "a one-way source answered seq {seq} ahead of the target"
                )),
                SourceAction::RolledBack { seq, errno, reason } => {
                    self.trace(format!("rollback of seq {seq} (errno {errno}): {reason}"))
                }
            }
        }
    }

    fn target_actions(&mut self, actions: Vec<TargetAction>) {
        for a in actions {
            match a {
                TargetAction::Send(f) => self.send(false, &f),
                TargetAction::WriteVolume {
                    token,
                    seq,
                    offset,
                    data,
                    ..
                } => {
                    for v in self
                        .checker
                        .target_write(token, seq, offset, data.len() as u64)
                    {
                        self.violation(v);
                    }
                    let inc = self.tgt_inc;
                    let fail = !self.calm && self.rng.chance(self.cfg.faults.target_write_error);
                    let result = if fail {
                        self.report.faults.write_errors += 1;
                        self.trace(format!("target write of seq {seq} fails (EIO)"));
                        Err(errno::EIO)
                    } else {
                        let o = offset as usize;
                        self.tgt_vol[o..o + data.len()].copy_from_slice(&data);
                        self.checker.target_applied(seq, offset, data.len() as u64);
                        self.trace(format!(
                            "target writes seq {seq} off={offset} len={}",
                            data.len()
                        ));
                        Ok(())
                    };
                    self.after(
                        self.cfg.target_write,
                        Ev::TargetWriteDone { inc, token, result },
                    );
                }
                TargetAction::SyncVolume { token } => {
                    let inc = self.tgt_inc;
                    let fail = !self.calm && self.rng.chance(self.cfg.faults.target_write_error);
                    let result = if fail {
                        self.report.faults.write_errors += 1;
                        self.trace(format!("target sync {token} fails (EIO)"));
                        Err(errno::EIO)
                    } else {
                        Ok(())
                    };
                    self.after(
                        self.cfg.target_write,
                        Ev::TargetSyncDone { inc, token, result },
                    );
                }
                TargetAction::LockAcquired {
                    token,
                    seq,
                    regions,
                } => {
                    self.trace(format!(
                        "target locks regions {}+{} for seq {seq}",
                        regions.first, regions.count
                    ));
                    if let Err(v) = self.checker.lock_acquired(token, regions) {
                        self.violation(v);
                    }
                }
                TargetAction::LockReleased { token } => self.checker.lock_released(token),
                TargetAction::Violation(why) => {
                    self.violation(format!("target saw a protocol violation: {why}"))
                }
                TargetAction::SessionStarted { generation } => {
                    self.trace(format!("target opens session {generation}"));
                    self.checker.target_session();
                }
            }
        }
    }
}

impl OpState {
    pub fn is_pending(&self) -> bool {
        matches!(self, OpState::Pending)
    }
}

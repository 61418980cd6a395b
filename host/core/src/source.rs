//! The mirror control module on the source side.
//!
//! A client write goes into the rollback log (lock command, data and before-image) and onto the
//! local volume. In speculative mode the LOCK for its regions goes out with the DATA right behind
//! it, without waiting for the answer; in implicit mode one DATA frame asks for its own lock; in
//! conservative mode DATA waits for LOCK_GRANTED. LOCK_GRANTED removes the lock command from the
//! log, WRITE_DONE the data. A rejected lock halts that write's data; the lock is re-issued with
//! backoff and the data retransmitted from the log once it is granted. A write that fails (the
//! target could not write it, or the write timeout passed) is rolled back: the source region is
//! restored from the before-image and, if the target may have seen the data, a compensation write
//! carrying the restored content is mirrored so that the failed write changes neither copy.
//!
//! A client write is acknowledged only when the local write is done, WRITE_DONE has arrived and
//! no earlier write to the same bytes is still unsettled.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use specmirror_abi::ring::Mode;
use specmirror_abi::{Flags, FrameType, Header, Hello, HelloStatus, RejectReason, MAX_PAYLOAD};

use crate::errno;
use crate::frame::Frame;
use crate::region::Regions;
use crate::rollback_log::{LogRecord, RollbackLog};
use crate::Nanos;

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub volume_size: u64,
    pub region_size: u64,
    pub pair_id: [u8; 16],
    pub node_id: u32,
    pub mode: Mode,
    /// Retransmission timeout for an unanswered frame until the round trip has been measured
    /// (then it follows the measurement); doubles per retry up to 16×.
    pub rto: Nanos,
    /// The measured retransmission timeout never goes below this.
    pub min_rto: Nanos,
    /// Nor above this: one slow answer must not hold every later retransmission back for long.
    pub max_rto: Nanos,
    /// First backoff before a rejected lock is re-issued, and its ceiling.
    pub retry_initial: Nanos,
    pub retry_max: Nanos,
    /// A write not confirmed by the target within this time is rolled back and failed (EIO).
    pub write_timeout: Nanos,
    /// Idle time after which a HEARTBEAT is sent.
    pub heartbeat_interval: Nanos,
    /// Bidirectional mode: announce at once (a HEARTBEAT carrying `ack_seq`) that writes left the
    /// log, because the peer keeps their regions from its own clients until it hears so.
    pub announce_retire: bool,
    /// Bidirectional mode's `serve` policy: while no session is up, a write whose local write is
    /// done is answered at once and stays in the log (it can no longer fail) until the peer
    /// confirms it. The two copies may then disagree until the peer is back.
    pub ack_while_down: bool,
    /// Largest payload of one DATA frame. A longer write goes out as several DATA pieces under
    /// its one lock (each names its place in the write), so that each frame fits a datagram of
    /// the path MTU. In implicit mode such a write sends an explicit LOCK first.
    pub max_data_payload: u32,
}

impl SourceConfig {
    pub fn new(volume_size: u64, region_size: u64, pair_id: [u8; 16]) -> SourceConfig {
        SourceConfig {
            volume_size,
            region_size,
            pair_id,
            node_id: 1,
            mode: Mode::Speculative,
            rto: 20 * crate::MS,
            min_rto: crate::MS,
            max_rto: 1_000 * crate::MS,
            max_data_payload: MAX_PAYLOAD,
            retry_initial: 100 * crate::US,
            retry_max: 10 * crate::MS,
            write_timeout: 30_000 * crate::MS,
            heartbeat_interval: 1_000 * crate::MS,
            announce_retire: false,
            ack_while_down: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// A client write. `before` is the volume's content over the same bytes just before this
    /// write (the driver reads it; it becomes the rollback before-image).
    ClientWrite {
        handle: u64,
        offset: u64,
        data: Vec<u8>,
        before: Vec<u8>,
        fua: bool,
    },
    ClientFlush {
        handle: u64,
    },
    /// A [`SourceAction::WriteLocal`] with `seq: Some(..)` finished.
    LocalWriteDone {
        seq: u64,
        result: Result<(), i32>,
    },
    /// A [`SourceAction::SyncLocal`] finished; an error fails the client's flush.
    LocalSyncDone {
        flush: u64,
        result: Result<(), i32>,
    },
    Frame(Frame),
    /// A transport to the target exists (again): open a new session.
    Connected,
    /// The transport is gone: nothing is sent until the next `Connected`.
    Disconnected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceAction {
    Send(Frame),
    /// Write to the source volume, in the order given. `seq: Some` wants a `LocalWriteDone`;
    /// `None` is a rollback restore.
    WriteLocal {
        seq: Option<u64>,
        offset: u64,
        data: Bytes,
        fua: bool,
    },
    SyncLocal {
        flush: u64,
    },
    /// Persist a new log record; it must be durable before any later action is carried out.
    LogAppend(LogRecord),
    /// Replace a record (a rollback rewrote its before-image or its compensation content).
    LogUpdate(LogRecord),
    LogLockGranted {
        seq: u64,
    },
    LogDataWritten {
        seq: u64,
    },
    LogRemove {
        seq: u64,
    },
    /// Persist the session generation before the HELLO that uses it.
    PersistGeneration(u32),
    AckWrite {
        handle: u64,
        result: Result<(), i32>,
    },
    AckFlush {
        handle: u64,
        result: Result<(), i32>,
    },
    SessionUp {
        generation: u32,
    },
    /// The target refused the pair; mirroring cannot proceed.
    Refused(HelloStatus),
    /// Write `seq` of the log, `len` bytes, that no client waits for (recovered after a restart,
    /// or a rollback's compensation) is longer than the target just announced it takes under
    /// one lock (`limit`). Such a write cannot fail, only be retried, and this target would
    /// refuse every copy: mirroring cannot proceed with this target. The log keeps the write,
    /// and nothing is sent.
    CannotMirror {
        seq: u64,
        len: u64,
        limit: u64,
    },
    /// Write `seq` was answered before the peer confirmed it (see
    /// [`SourceConfig::ack_while_down`]); it stays in the log until confirmed. Emitted just
    /// before its `AckWrite`.
    AckedAlone {
        seq: u64,
    },
    /// A write was rolled back (why, for the log).
    RolledBack {
        seq: u64,
        errno: i32,
        reason: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not yet sent in this session.
    Idle,
    Waiting {
        lock_id: u64,
    },
    Granted {
        lock_id: u64,
    },
    Done,
    Rejected {
        retry_at: Nanos,
    },
}

#[derive(Clone, Debug)]
struct Tx {
    phase: Phase,
    /// DATA went out for the current lock instance.
    data_sent: bool,
    /// The target may have seen this write's data at some time (it may hold it on disk).
    ever_sent_data: bool,
    /// The current instance follows a rejection: data waits for the grant.
    after_reject: bool,
    rto_at: Nanos,
    /// When the current lock instance went out.
    sent_at: Nanos,
    retransmits: u32,
    rejections: u32,
    /// The current instance went out while an earlier write to the same regions was unanswered:
    /// the target grants it only after that write, so its answer times the queue, not the round
    /// trip, and it gives no round-trip sample (a chain of parts of one long write would
    /// otherwise raise the timeout to the chain's length).
    behind: bool,
    deadline: Option<Nanos>,
}

/// A client write sent as several writes (parts), each with its own lock. The parts stay in the
/// log until all of them are confirmed, and one failing rolls all of them back: the client write
/// lands whole or not at all, as a write sent in one piece does.
#[derive(Clone, Debug)]
struct Split {
    /// The parts' sequence numbers, consecutive.
    parts: std::ops::Range<u64>,
    /// Parts not yet answered.
    left: usize,
    /// The first error among the answered parts.
    err: Option<i32>,
}

#[derive(Clone, Debug)]
enum Session {
    Down,
    Handshaking {
        generation: u32,
        sent_at: Nanos,
    },
    Up {
        generation: u32,
    },
    Refused(HelloStatus),
    /// A write without a client is longer than the target takes (see
    /// [`SourceAction::CannotMirror`]).
    CannotMirror,
}

#[derive(Clone, Debug)]
struct Flush {
    handle: u64,
    local_done: bool,
    remote_done: bool,
    rto_at: Nanos,
    deadline: Nanos,
}

/// What a source has done, for summaries and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub writes: u64,
    pub acked: u64,
    pub failed: u64,
    pub rollbacks: u64,
    pub compensations: u64,
    pub retransmits: u64,
    pub rejections: u64,
    pub sessions: u64,
    /// Client writes longer than the target takes under one lock, sent as several writes.
    pub split: u64,
}

#[derive(Debug)]
pub struct Source {
    cfg: SourceConfig,
    log: RollbackLog,
    tx: BTreeMap<u64, Tx>,
    next_seq: u64,
    generation: u32,
    session: Session,
    next_lock_id: u64,
    by_lock: BTreeMap<u64, u64>,
    live_locks: BTreeSet<u64>,
    /// Lock instances aborted in this session, by lock id, with their write and when the ABORT
    /// goes again: it is repeated until `ack_lock` passes the lock (then the target skips any
    /// late copy of it by itself), so a lost ABORT cannot let a rolled-back write land later.
    aborts: BTreeMap<u64, (u64, Nanos)>,
    flushes: BTreeMap<u64, Flush>,
    next_flush: u64,
    last_tx: Nanos,
    out: Vec<SourceAction>,
    stats: SourceStats,
    /// Smoothed round trip of a write (out to WRITE_DONE) and its mean deviation, measured on
    /// writes answered without a retransmission or a rejection (Karn's rule).
    srtt: Option<Nanos>,
    rttvar: Nanos,
    /// What the target announced in the last handshake: the largest write it takes under one
    /// lock (longer client writes become several writes of at most that size) and whether it
    /// takes implicit locks.
    peer_write_limit: Option<u64>,
    peer_implicit: bool,
    /// The most writes the target holds at once (announced in the handshake): no more are in
    /// flight, and the waiting ones go in sequence order as others finish.
    peer_window: Option<usize>,
    /// Client writes sent as several writes, by client handle. The client hears once, when all
    /// are answered.
    splits: BTreeMap<u64, Split>,
}

impl Source {
    /// A source with an empty log. `generation` is the last one persisted (0 if none).
    pub fn new(cfg: SourceConfig, generation: u32) -> Source {
        Source {
            cfg,
            log: RollbackLog::new(),
            tx: BTreeMap::new(),
            next_seq: 1,
            generation,
            session: Session::Down,
            next_lock_id: 1,
            by_lock: BTreeMap::new(),
            live_locks: BTreeSet::new(),
            aborts: BTreeMap::new(),
            flushes: BTreeMap::new(),
            next_flush: 1,
            last_tx: 0,
            out: Vec::new(),
            stats: SourceStats::default(),
            srtt: None,
            rttvar: 0,
            peer_write_limit: None,
            peer_implicit: true,
            peer_window: None,
            splits: BTreeMap::new(),
        }
    }

    /// The retransmission timeout: the configured one until a round trip was measured, then
    /// smoothed round trip plus four deviations (as TCP computes it), between `min_rto` and
    /// `max_rto`.
    pub fn rto(&self) -> Nanos {
        match self.srtt {
            None => self.cfg.rto,
            Some(s) => (s + 4 * self.rttvar)
                .max(self.cfg.min_rto)
                .min(self.cfg.max_rto.max(self.cfg.min_rto)),
        }
    }

    fn sample_rtt(&mut self, r: Nanos) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                self.rttvar = (3 * self.rttvar + s.abs_diff(r)) / 4;
                self.srtt = Some((7 * s + r) / 8);
            }
        }
    }

    /// A source restarted from its persisted log. Every record is written to the local volume
    /// again (in sequence order, so the volume ends as it was meant to) and mirrored once a session
    /// opens. Recovered writes have no client any more: they cannot fail, only be retried.
    pub fn recover(
        cfg: SourceConfig,
        generation: u32,
        mut records: Vec<LogRecord>,
    ) -> (Source, Vec<SourceAction>) {
        let mut s = Source::new(cfg, generation);
        records.sort_by_key(|r| r.seq);
        for mut rec in records {
            // Whatever the record says was confirmed, was confirmed to a session that is gone.
            rec.lock_pending = true;
            rec.data_pending = true;
            s.next_seq = rec.seq + 1;
            s.out.push(SourceAction::WriteLocal {
                seq: Some(rec.seq),
                offset: rec.offset,
                data: rec.data.clone(),
                fua: false,
            });
            s.tx.insert(rec.seq, Tx::new(None, true));
            s.log.insert(rec, None, false);
        }
        let out = std::mem::take(&mut s.out);
        (s, out)
    }

    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    pub fn log(&self) -> &RollbackLog {
        &self.log
    }

    /// Why the target refused the pair, if it did.
    pub fn refused(&self) -> Option<HelloStatus> {
        match self.session {
            Session::Refused(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.session, Session::Up { .. })
    }

    /// Bidirectional mode: the peer's write of `data` at `offset` is about to land on this node's
    /// volume, ordered before every write still in this log (see [`RollbackLog::absorb`]).
    /// Returns the pieces of it to write (offset and bytes) and the log records to persist again,
    /// which must be durable before the pieces are written.
    pub fn absorb_peer_write(
        &mut self,
        offset: u64,
        data: &[u8],
    ) -> (Vec<(u64, Vec<u8>)>, Vec<SourceAction>) {
        let (pieces, patched) = self.log.absorb(offset, data);
        let pieces = pieces
            .into_iter()
            .map(|(o, l)| {
                let i = (o - offset) as usize;
                (o, data[i..i + l as usize].to_vec())
            })
            .collect();
        let updates = patched
            .into_iter()
            .map(|s| SourceAction::LogUpdate(self.log.get(s).expect("patched").rec.clone()))
            .collect();
        (pieces, updates)
    }

    /// Nothing unconfirmed: the log is empty and no flush is pending.
    pub fn is_idle(&self) -> bool {
        self.log.is_empty() && self.flushes.is_empty()
    }

    pub fn handle(&mut self, event: SourceEvent, now: Nanos) -> Vec<SourceAction> {
        match event {
            SourceEvent::ClientWrite {
                handle,
                offset,
                data,
                before,
                fua,
            } => self.on_client_write(handle, offset, data.into(), before.into(), fua, now),
            SourceEvent::ClientFlush { handle } => self.on_client_flush(handle, now),
            SourceEvent::LocalWriteDone { seq, result } => {
                match result {
                    Ok(()) => {
                        if let Some(e) = self.log.get_mut(seq) {
                            e.local_done = true;
                        }
                    }
                    Err(e) => self.fail(seq, e, "local write failed", now),
                }
                self.retire();
                self.ack_alone();
            }
            SourceEvent::LocalSyncDone { flush, result } => match result {
                Ok(()) => {
                    if let Some(f) = self.flushes.get_mut(&flush) {
                        f.local_done = true;
                    }
                    self.finish_flushes();
                }
                Err(e) => self.fail_flush(flush, e),
            },
            SourceEvent::Frame(f) => self.on_frame(f, now),
            SourceEvent::Connected => self.start_handshake(now),
            SourceEvent::Disconnected => {
                self.session = Session::Down;
                self.ack_alone();
            }
        }
        self.fill_window(now);
        self.take_out()
    }

    /// What the target announced in the last handshake: the largest write it takes under one
    /// lock (`None`: any), whether it takes implicit locks, and the most writes it holds at once
    /// (`None`: any number).
    pub fn target_limits(&self) -> (Option<u64>, bool, Option<usize>) {
        (self.peer_write_limit, self.peer_implicit, self.peer_window)
    }

    /// How long a lock may go unanswered before it goes again: a round trip, and under a window
    /// one for each write of the window, since a lock may wait at the target behind all the
    /// earlier ones (a repeated LOCK only costs the link and the target's time).
    fn lock_rto(&self) -> Nanos {
        self.rto() * self.peer_window.unwrap_or(1) as u64
    }

    /// Writes sent in this session and not yet confirmed (waiting for their lock, granted, or
    /// rejected and to be re-issued).
    fn in_flight(&self) -> usize {
        self.tx
            .values()
            .filter(|t| {
                matches!(
                    t.phase,
                    Phase::Waiting { .. } | Phase::Granted { .. } | Phase::Rejected { .. }
                )
            })
            .count()
    }

    /// Under the target's window: whether write `seq`, not yet sent in this session, must wait
    /// (the window is full, or an earlier write waits too: they go in sequence order, so the
    /// earliest of any chain of overlapping writes is always in flight).
    fn must_wait(&self, seq: u64) -> bool {
        let Some(w) = self.peer_window else {
            return false;
        };
        self.tx[&seq].phase == Phase::Idle
            && (self.in_flight() >= w || self.tx.range(..seq).any(|(_, t)| t.phase == Phase::Idle))
    }

    /// Under the target's window: sends waiting writes, earliest first, while there is room.
    fn fill_window(&mut self, now: Nanos) {
        let Some(w) = self.peer_window else {
            return;
        };
        if !self.is_up() {
            return;
        }
        let room = w.saturating_sub(self.in_flight());
        let next: Vec<u64> = self
            .tx
            .iter()
            .filter(|(_, t)| t.phase == Phase::Idle)
            .map(|(&seq, _)| seq)
            .take(room)
            .collect();
        for seq in next {
            self.send_entry(seq, now);
        }
    }

    /// The actions gathered so far, with the answers to the parts of a split client write
    /// folded into one answer, given when the last part is answered.
    fn take_out(&mut self) -> Vec<SourceAction> {
        let mut out = std::mem::take(&mut self.out);
        if self.splits.is_empty() {
            return out;
        }
        let splits = &mut self.splits;
        out.retain_mut(|a| {
            let SourceAction::AckWrite { handle, result } = a else {
                return true;
            };
            let Some(split) = splits.get_mut(handle) else {
                return true;
            };
            if let Err(e) = result {
                split.err.get_or_insert(*e);
            }
            split.left -= 1;
            if split.left > 0 {
                return false;
            }
            *result = split.err.map_or(Ok(()), Err);
            splits.remove(handle);
            true
        });
        out
    }

    /// The longest write sent under one lock, when the target limits it: its announced limit,
    /// and no longer than one DATA frame (the target takes no pieces).
    fn split_size(&self) -> Option<u64> {
        self.peer_write_limit
            .map(|l| l.min(self.cfg.max_data_payload as u64).max(8))
    }

    /// The most the target takes under one lock, when a write of `len` bytes is longer: the one
    /// rule behind splitting a client's write, failing a logged one whose client still waits, and
    /// stopping at the handshake for one without a client.
    fn over_limit(&self, len: u64) -> Option<u64> {
        self.split_size().filter(|&limit| len > limit)
    }

    /// The earliest time [`Source::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let mut t: Option<Nanos> = None;
        let mut at = |x: Nanos| t = Some(t.map_or(x, |y| y.min(x)));
        match self.session {
            Session::Handshaking { sent_at, .. } => at(sent_at + self.rto()),
            Session::Up { .. } => at(self.last_tx + self.cfg.heartbeat_interval),
            _ => {}
        }
        let up = self.is_up();
        if up {
            for (_, at_) in self.aborts.values() {
                at(*at_);
            }
        }
        for tx in self.tx.values() {
            if let Some(d) = tx.deadline {
                if tx.phase != Phase::Done {
                    at(d);
                }
            }
            match tx.phase {
                Phase::Waiting { .. } | Phase::Granted { .. } if up => at(tx.rto_at),
                Phase::Rejected { retry_at } if up => at(retry_at),
                _ => {}
            }
        }
        for f in self.flushes.values() {
            at(f.deadline);
            if up && !f.remote_done {
                at(f.rto_at);
            }
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Nanos) -> Vec<SourceAction> {
        if let Session::Handshaking {
            generation,
            sent_at,
        } = self.session
        {
            if now >= sent_at + self.rto() {
                self.send_hello(generation, now);
            }
        }
        // Writes past their deadline are rolled back and failed.
        let expired: Vec<u64> = self
            .tx
            .iter()
            .filter(|(_, t)| t.phase != Phase::Done && t.deadline.is_some_and(|d| d <= now))
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            self.fail(
                seq,
                errno::EIO,
                "write timeout: target did not confirm in time",
                now,
            );
        }
        let expired: Vec<u64> = self
            .flushes
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.fail_flush(k, errno::EIO);
        }
        if self.is_up() {
            self.retransmit_due(now);
            if now >= self.last_tx + self.cfg.heartbeat_interval {
                let h = self.header(FrameType::Heartbeat);
                self.send(h, Vec::new(), now);
            }
        }
        self.retire();
        self.fill_window(now);
        self.take_out()
    }

    fn on_client_write(
        &mut self,
        handle: u64,
        offset: u64,
        data: Bytes,
        before: Bytes,
        fua: bool,
        now: Nanos,
    ) {
        let len = data.len() as u64;
        let bad = if before.len() != data.len() || len > MAX_PAYLOAD as u64 {
            Some(errno::EINVAL)
        } else if offset
            .checked_add(len)
            .is_none_or(|e| e > self.cfg.volume_size)
        {
            Some(errno::ENOSPC)
        } else {
            None
        };
        if let Some(e) = bad {
            self.out.push(SourceAction::AckWrite {
                handle,
                result: Err(e),
            });
            return;
        }
        if len == 0 {
            self.out.push(SourceAction::AckWrite {
                handle,
                result: Ok(()),
            });
            return;
        }
        if let Some(size) = self.over_limit(len) {
            // The target takes no write this long under one lock: send it as several writes,
            // each with its own lock (see `Split`), and answer the client once all are answered.
            self.stats.split += 1;
            let size = size as usize;
            let first = self.next_seq;
            let n = data.len().div_ceil(size);
            self.splits.insert(
                handle,
                Split {
                    parts: first..first + n as u64,
                    left: n,
                    err: None,
                },
            );
            for k in 0..n {
                let (at, end) = (k * size, ((k + 1) * size).min(data.len()));
                let (d, b) = (data.slice(at..end), before.slice(at..end));
                self.on_client_write(handle, offset + at as u64, d, b, fua, now);
                self.log.get_mut(first + k as u64).expect("the part").held = true;
            }
            return;
        }
        self.stats.writes += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let rec = LogRecord {
            seq,
            offset,
            data,
            before: Some(before),
            fua,
            lock_pending: true,
            data_pending: true,
        };
        self.out.push(SourceAction::LogAppend(rec.clone()));
        self.out.push(SourceAction::WriteLocal {
            seq: Some(seq),
            offset,
            data: rec.data.clone(),
            fua,
        });
        self.log.insert(rec, Some(handle), false);
        self.tx
            .insert(seq, Tx::new(Some(now + self.cfg.write_timeout), false));
        if self.is_up() {
            self.send_entry(seq, now);
        }
    }

    fn on_client_flush(&mut self, handle: u64, now: Nanos) {
        let id = self.next_flush;
        self.next_flush += 1;
        self.flushes.insert(
            id,
            Flush {
                handle,
                local_done: false,
                remote_done: false,
                rto_at: now + self.rto(),
                deadline: now + self.cfg.write_timeout,
            },
        );
        self.out.push(SourceAction::SyncLocal { flush: id });
        if self.is_up() {
            self.send_flush(id, now);
        }
    }

    fn send_flush(&mut self, id: u64, now: Nanos) {
        let mut h = self.header(FrameType::Flush);
        h.seq = id;
        self.send(h, Vec::new(), now);
        if let Some(f) = self.flushes.get_mut(&id) {
            // A flush waits for the target's sync, which a write's round trip says nothing
            // about: it keeps the configured timeout.
            f.rto_at = now + self.cfg.rto;
        }
    }

    fn finish_flushes(&mut self) {
        let done: Vec<u64> = self
            .flushes
            .iter()
            .filter(|(_, f)| f.local_done && f.remote_done)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            let f = self.flushes.remove(&k).expect("present");
            self.out.push(SourceAction::AckFlush {
                handle: f.handle,
                result: Ok(()),
            });
        }
    }

    /// Answers a flush with the errno `e` at once: a volume that could not be made durable (or a
    /// flush past its deadline) must not be reported durable. A later answer for the same flush
    /// finds nothing and is ignored.
    fn fail_flush(&mut self, id: u64, e: i32) {
        if let Some(f) = self.flushes.remove(&id) {
            self.out.push(SourceAction::AckFlush {
                handle: f.handle,
                result: Err(e),
            });
        }
    }

    fn generation(&self) -> u32 {
        match self.session {
            Session::Up { generation } | Session::Handshaking { generation, .. } => generation,
            _ => self.generation,
        }
    }

    fn header(&self, ty: FrameType) -> Header {
        let mut h = Header::new(ty);
        h.generation = self.generation();
        h.ack_lock = self.ack_lock();
        h.ack_seq = self.log.first_seq().unwrap_or(self.next_seq);
        if ty == FrameType::Heartbeat {
            // Every write this source has made so far has a lower sequence number: a peer that
            // lost track of which of them it applied waits until ack_seq passes this.
            h.seq = self.next_seq;
        }
        h
    }

    fn send(&mut self, h: Header, payload: impl Into<Bytes>, now: Nanos) {
        self.last_tx = now;
        self.out.push(SourceAction::Send(Frame::new(h, payload)));
    }

    fn start_handshake(&mut self, now: Nanos) {
        if matches!(self.session, Session::Refused(_) | Session::CannotMirror) {
            return;
        }
        self.generation += 1;
        self.out
            .push(SourceAction::PersistGeneration(self.generation));
        self.send_hello(self.generation, now);
    }

    fn send_hello(&mut self, generation: u32, now: Nanos) {
        self.session = Session::Handshaking {
            generation,
            sent_at: now,
        };
        let mut hello = Hello::for_pair(
            self.cfg.volume_size,
            self.cfg.region_size,
            self.cfg.pair_id,
            self.cfg.node_id,
            HelloStatus::Ok,
        );
        if self.cfg.announce_retire {
            // Only a bidirectional node announces its retirements: it is one.
            hello.capabilities |= specmirror_abi::CAP_BIDIRECTIONAL;
        }
        let mut h = Header::new(FrameType::Hello);
        h.generation = generation;
        self.send(h, hello.to_bytes().to_vec(), now);
    }

    fn on_frame(&mut self, f: Frame, now: Nanos) {
        let h = f.header;
        if h.ty == FrameType::HelloAck {
            return self.on_hello_ack(h, &f.payload, now);
        }
        let Session::Up { generation } = self.session else {
            return;
        };
        if h.generation != generation {
            return; // a stale answer from an earlier session
        }
        let Some(&seq) = self.by_lock.get(&h.lock_id) else {
            if h.ty == FrameType::FlushDone {
                if h.arg != 0 {
                    // The target could not make its volume durable: the flush fails.
                    let e = i32::try_from(h.arg).unwrap_or(errno::EIO);
                    self.fail_flush(h.seq, e);
                } else {
                    if let Some(fl) = self.flushes.get_mut(&h.seq) {
                        fl.remote_done = true;
                    }
                    self.finish_flushes();
                }
            }
            return;
        };
        if seq != h.seq {
            return; // the target names another write for this lock: ignore the lie
        }
        let Some(tx) = self.tx.get(&seq) else {
            return;
        };
        let current = match tx.phase {
            Phase::Waiting { lock_id } | Phase::Granted { lock_id } => lock_id == h.lock_id,
            _ => false,
        };
        if !current {
            return; // an answer about an instance already settled
        }
        match h.ty {
            FrameType::LockGranted => self.on_granted(seq, h.lock_id, now),
            FrameType::WriteDone => {
                let tx = &self.tx[&seq];
                if tx.retransmits == 0 && tx.rejections == 0 && !tx.behind {
                    let r = now.saturating_sub(tx.sent_at);
                    self.sample_rtt(r);
                }
                self.on_granted(seq, h.lock_id, now);
                self.resolve_lock(h.lock_id);
                self.tx.get_mut(&seq).expect("tx").phase = Phase::Done;
                if self.log.data_written(seq) {
                    self.out.push(SourceAction::LogDataWritten { seq });
                }
                self.retire();
            }
            FrameType::LockRejected => {
                let reason = RejectReason::from_u64(h.arg);
                self.stats.rejections += 1;
                self.resolve_lock(h.lock_id);
                if reason.is_none_or(|r| r.is_permanent()) {
                    self.fail(seq, errno::EIO, "lock can never be had", now);
                } else {
                    let tx = self.tx.get_mut(&seq).expect("tx");
                    tx.rejections += 1;
                    tx.after_reject = true;
                    tx.data_sent = false;
                    let backoff = self
                        .cfg
                        .retry_initial
                        .saturating_mul(1 << tx.rejections.min(16))
                        .min(self.cfg.retry_max);
                    tx.phase = Phase::Rejected {
                        retry_at: now + backoff,
                    };
                }
            }
            FrameType::WriteFailed => {
                self.resolve_lock(h.lock_id);
                let e = i32::try_from(h.arg).unwrap_or(errno::EIO);
                self.fail(seq, e, "target write failed", now);
            }
            _ => {}
        }
    }

    fn on_granted(&mut self, seq: u64, lock_id: u64, now: Nanos) {
        if self.log.lock_granted(seq) {
            self.out.push(SourceAction::LogLockGranted { seq });
        }
        let tx = self.tx.get_mut(&seq).expect("tx");
        if tx.phase != (Phase::Waiting { lock_id }) {
            return;
        }
        tx.phase = Phase::Granted { lock_id };
        if tx.data_sent && self.peer_window.is_some() {
            // The data went with the lock and waits at the target (a window leaves it room):
            // give it as long from the grant as the writes of the window ahead of it may take
            // to be written, before it goes again. A copy sent too early crosses the write's
            // answer and costs the target the room it takes.
            let rto = self.lock_rto();
            self.tx.get_mut(&seq).expect("tx").rto_at = now + rto;
        } else if !tx.data_sent {
            self.send_data(seq, lock_id, Flags::NONE, now);
        }
    }

    fn resolve_lock(&mut self, lock_id: u64) {
        self.live_locks.remove(&lock_id);
    }

    fn on_hello_ack(&mut self, h: Header, payload: &[u8], now: Nanos) {
        let Ok(ack) = Hello::decode(payload) else {
            return;
        };
        match (self.session.clone(), ack.status) {
            (Session::Handshaking { generation, .. }, HelloStatus::Ok)
                if generation == h.generation =>
            {
                self.peer_write_limit = ack.write_limit();
                self.peer_implicit = ack.takes_implicit_locks();
                self.peer_window = ack.window().map(|n| n as usize);
                // A write with a client that is too long fails when it would be sent (see
                // `send_entry`); one without can only be retried, and never would be taken.
                let stuck = self.log.iter().find_map(|e| {
                    let limit = self.over_limit(e.rec.len())?;
                    e.client
                        .is_none()
                        .then_some((e.rec.seq, e.rec.len(), limit))
                });
                if let Some((seq, len, limit)) = stuck {
                    self.session = Session::CannotMirror;
                    self.out
                        .push(SourceAction::CannotMirror { seq, len, limit });
                    return;
                }
                self.session_up(generation, now)
            }
            (Session::Handshaking { generation, .. }, HelloStatus::StaleGeneration)
                if generation == h.generation =>
            {
                // The target has seen a newer generation than we remember: move past it.
                self.generation = self.generation.max(h.arg as u32);
                self.start_handshake(now);
            }
            (Session::Up { generation }, HelloStatus::UnknownSession)
                if generation == h.generation =>
            {
                // The target restarted and lost the session: open a new one.
                self.start_handshake(now);
            }
            (Session::Handshaking { generation, .. }, status)
                if generation == h.generation && status != HelloStatus::UnknownSession =>
            {
                self.session = Session::Refused(status);
                self.out.push(SourceAction::Refused(status));
            }
            _ => {}
        }
    }

    fn session_up(&mut self, generation: u32, now: Nanos) {
        self.session = Session::Up { generation };
        self.stats.sessions += 1;
        self.next_lock_id = 1;
        self.by_lock.clear();
        self.live_locks.clear();
        self.aborts.clear();
        self.out.push(SourceAction::SessionUp { generation });
        if self.cfg.announce_retire {
            // The peer may still keep regions for writes that left the log while the link was
            // down: tell it where the log starts now.
            let h = self.header(FrameType::Heartbeat);
            self.send(h, Vec::new(), now);
        }
        // The whole log goes again, in sequence order, confirmed entries included: an entry
        // still in the log may sit behind an earlier unconfirmed one that touches the same bytes,
        // and replaying only the earlier one would land it over the newer data.
        for seq in self.log.seqs() {
            self.log.reopen(seq);
            let tx = self.tx.get_mut(&seq).expect("tx");
            tx.phase = Phase::Idle;
            tx.after_reject = false;
            self.send_entry(seq, now);
        }
        let flushes: Vec<u64> = self.flushes.keys().copied().collect();
        for id in flushes {
            self.send_flush(id, now);
        }
    }

    /// Sends a fresh lock instance for entry `seq`.
    fn send_entry(&mut self, seq: u64, now: Nanos) {
        if self.must_wait(seq) {
            return;
        }
        // Logged before the target said what it takes (a target that came back with a smaller
        // limit): a client still waits for it, so it fails now, rolled back.
        let e = self.log.get(seq).expect("entry");
        if e.client.is_some() && self.over_limit(e.rec.len()).is_some() {
            let why = "the write is longer than the target takes under one lock";
            return self.fail(seq, errno::EINVAL, why, now);
        }
        let lock_id = self.next_lock_id;
        self.next_lock_id += 1;
        self.by_lock.insert(lock_id, seq);
        self.live_locks.insert(lock_id);
        let rto = self.lock_rto();
        let behind = self.behind_earlier_write(seq);
        let tx = self.tx.get_mut(&seq).expect("tx");
        tx.phase = Phase::Waiting { lock_id };
        tx.data_sent = false;
        tx.retransmits = 0;
        tx.rto_at = now + rto;
        tx.sent_at = now;
        tx.behind = behind;
        let after_reject = tx.after_reject;
        let speculative = (self.cfg.mode == Mode::Speculative
            || (self.cfg.mode == Mode::Implicit && !self.implicit_lock(seq)))
            && !after_reject;
        self.send_lock(seq, lock_id, now);
        if speculative {
            self.send_data(seq, lock_id, Flags::NONE, now);
        }
    }

    /// Whether an earlier write to any of the regions of write `seq` is still unanswered.
    fn behind_earlier_write(&self, seq: u64) -> bool {
        let region = self.cfg.region_size;
        let e = &self.log.get(seq).expect("entry").rec;
        let mine = Regions::of_bytes(e.offset, e.len(), region);
        self.log.iter().take_while(|x| x.rec.seq < seq).any(|x| {
            self.tx
                .get(&x.rec.seq)
                .is_some_and(|t| t.phase != Phase::Done)
                && Regions::of_bytes(x.rec.offset, x.rec.len(), region).overlaps(mine)
        })
    }

    /// Whether write `seq` goes out as one DATA frame that is its own lock (implicit mode, and
    /// the write fits one frame).
    fn implicit_lock(&self, seq: u64) -> bool {
        self.cfg.mode == Mode::Implicit
            && self.peer_implicit
            && self.log.get(seq).expect("entry").rec.len() <= self.cfg.max_data_payload as u64
    }

    fn send_lock(&mut self, seq: u64, lock_id: u64, now: Nanos) {
        if self.implicit_lock(seq) {
            return self.send_data(seq, lock_id, Flags::IMPLICIT_LOCK, now);
        }
        let e = &self.log.get(seq).expect("entry").rec;
        let r = Regions::of_bytes(e.offset, e.len(), self.cfg.region_size);
        let mut h = self.header(FrameType::Lock);
        h.seq = seq;
        h.lock_id = lock_id;
        h.offset = r.first;
        h.arg = r.count;
        self.send(h, Vec::new(), now);
    }

    fn send_data(&mut self, seq: u64, lock_id: u64, flags: Flags, now: Nanos) {
        let e = &self.log.get(seq).expect("entry").rec;
        let mut h = self.header(FrameType::Data);
        h.seq = seq;
        h.lock_id = lock_id;
        h.offset = e.offset;
        h.flags = flags;
        if e.fua {
            h.flags = h.flags | Flags::FUA;
        }
        if e.is_compensation() {
            h.flags = h.flags | Flags::COMPENSATE;
        }
        let max = self.cfg.max_data_payload.max(8) as usize;
        if e.data.len() <= max {
            let payload = e.data.clone();
            self.send(h, payload, now);
        } else {
            // Pieces under the one lock: `arg` holds the piece's place in the write and the
            // write's length, so the target can put the write together whatever the order.
            let total = e.data.len() as u64;
            let pieces: Vec<(Header, Bytes)> = (0..e.data.len())
                .step_by(max)
                .map(|at| {
                    let mut p = h;
                    p.offset = e.offset + at as u64;
                    p.arg = specmirror_abi::data_piece_arg(at as u64, total);
                    (p, e.data.slice(at..(at + max).min(e.data.len())))
                })
                .collect();
            for (p, c) in pieces {
                self.send(p, c, now);
            }
        }
        let tx = self.tx.get_mut(&seq).expect("tx");
        tx.data_sent = true;
        tx.ever_sent_data = true;
    }

    fn retransmit_due(&mut self, now: Nanos) {
        self.repeat_aborts(now);
        let seqs: Vec<u64> = self.tx.keys().copied().collect();
        for seq in seqs {
            let tx = &self.tx[&seq];
            match tx.phase {
                Phase::Waiting { lock_id } if now >= tx.rto_at => {
                    let resend_data = tx.data_sent;
                    self.stats.retransmits += 1;
                    self.send_lock(seq, lock_id, now);
                    // A target with a window has room for the data of every write in flight:
                    // the first copy waits there for the lock, and a second would only take
                    // another write's room. Its data goes again once granted, if still needed.
                    if resend_data && !self.implicit_lock(seq) && self.peer_window.is_none() {
                        self.send_data(seq, lock_id, Flags::NONE, now);
                    }
                    self.bump_rto(seq, now);
                }
                Phase::Granted { lock_id } if now >= tx.rto_at => {
                    self.stats.retransmits += 1;
                    self.send_data(seq, lock_id, Flags::NONE, now);
                    self.bump_rto(seq, now);
                }
                Phase::Rejected { retry_at } if now >= retry_at => {
                    // Re-issue in sequence order: never ahead of an earlier rejected write to the
                    // same bytes (the target would refuse it behind that write's barrier).
                    let e = &self.log.get(seq).expect("entry").rec;
                    let (off, len) = (e.offset, e.len());
                    let blocked = self.log.iter().any(|x| {
                        x.rec.seq < seq
                            && crate::region::bytes_overlap(x.rec.offset, x.rec.len(), off, len)
                            && matches!(self.tx[&x.rec.seq].phase, Phase::Rejected { .. })
                    });
                    if blocked {
                        let tx = self.tx.get_mut(&seq).expect("tx");
                        tx.phase = Phase::Rejected {
                            retry_at: now + self.cfg.retry_initial,
                        };
                    } else {
                        self.send_entry(seq, now);
                    }
                }
                _ => {}
            }
        }
        let due: Vec<u64> = self
            .flushes
            .iter()
            .filter(|(_, f)| !f.remote_done && now >= f.rto_at)
            .map(|(k, _)| *k)
            .collect();
        for id in due {
            self.send_flush(id, now);
        }
    }

    fn send_abort(&mut self, seq: u64, lock_id: u64, now: Nanos) {
        let mut h = self.header(FrameType::Abort);
        h.seq = seq;
        h.lock_id = lock_id;
        self.send(h, Vec::new(), now);
        if lock_id != 0 && lock_id >= h.ack_lock {
            let again = now + self.rto();
            self.aborts.insert(lock_id, (seq, again));
        }
    }

    /// This side's `ack_lock` watermark: every lock id below it is settled.
    fn ack_lock(&self) -> u64 {
        self.live_locks
            .first()
            .copied()
            .unwrap_or(self.next_lock_id)
    }

    /// Repeats the ABORTs the target may not have had, until `ack_lock` passes their locks.
    fn repeat_aborts(&mut self, now: Nanos) {
        self.aborts = self.aborts.split_off(&self.ack_lock());
        let due: Vec<(u64, u64)> = self
            .aborts
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(l, (s, _))| (*l, *s))
            .collect();
        for (lock_id, seq) in due {
            self.send_abort(seq, lock_id, now);
        }
    }

    fn bump_rto(&mut self, seq: u64, now: Nanos) {
        let rto = match self.tx[&seq].phase {
            Phase::Waiting { .. } => self.lock_rto(),
            _ => self.rto(),
        };
        let tx = self.tx.get_mut(&seq).expect("tx");
        tx.retransmits += 1;
        tx.rto_at = now + rto * (1 << tx.retransmits.min(4));
    }

    /// Rolls a write back and fails it to its client. Writes without a client (recovered or
    /// compensation entries) cannot fail: they are re-issued after a backoff instead.
    fn fail(&mut self, seq: u64, err: i32, reason: &'static str, now: Nanos) {
        let Some(entry) = self.log.get(seq) else {
            return;
        };
        let Some(handle) = entry.client else {
            if let Some(tx) = self.tx.get_mut(&seq) {
                tx.after_reject = true;
                tx.phase = Phase::Rejected {
                    retry_at: now + self.cfg.retry_max,
                };
            }
            return;
        };
        let tx = self.tx.remove(&seq).expect("tx");
        let lock_id = match tx.phase {
            Phase::Waiting { lock_id } | Phase::Granted { lock_id } => lock_id,
            _ => 0,
        };
        self.resolve_lock(lock_id);
        if self.is_up() {
            // Drops whatever the target holds for it and lifts its ordering barrier.
            self.send_abort(seq, lock_id, now);
        }
        let rb = self.log.rollback(seq).expect("entry");
        self.stats.rollbacks += 1;
        self.stats.failed += 1;
        if tx.ever_sent_data {
            // The target may hold the data: mirror the restored content over it, in writes the
            // target takes under one lock.
            self.stats.compensations += 1;
            let size = self
                .split_size()
                .unwrap_or(u64::MAX)
                .min(MAX_PAYLOAD as u64) as usize;
            for (k, d) in rb.restore.chunks(size).enumerate() {
                let c = LogRecord {
                    seq: self.next_seq,
                    offset: rb.removed.offset + (k * size) as u64,
                    data: Bytes::copy_from_slice(d),
                    before: None,
                    fua: false,
                    lock_pending: true,
                    data_pending: true,
                };
                self.next_seq += 1;
                self.out.push(SourceAction::LogAppend(c.clone()));
                let cseq = c.seq;
                self.log.insert(c, None, true);
                self.tx.insert(cseq, Tx::new(None, false));
                if self.is_up() {
                    self.send_entry(cseq, now);
                }
            }
        }
        for p in rb.patched {
            let rec = self.log.get(p).expect("patched entry").rec.clone();
            self.out.push(SourceAction::LogUpdate(rec));
        }
        self.out.push(SourceAction::LogRemove { seq });
        self.out.push(SourceAction::WriteLocal {
            seq: None,
            offset: rb.removed.offset,
            data: rb.restore.into(),
            fua: false,
        });
        self.out.push(SourceAction::RolledBack {
            seq,
            errno: err,
            reason,
        });
        self.out.push(SourceAction::AckWrite {
            handle,
            result: Err(err),
        });
        // The other parts of a split client write go too, confirmed or not: the write lands
        // whole or not at all.
        let siblings = self.splits.get(&handle).map_or(0..0, |s| s.parts.clone());
        for p in siblings {
            if self.log.get(p).is_some_and(|e| e.client == Some(handle)) {
                self.fail(p, err, "another part of the same client write failed", now);
            }
        }
    }

    /// Under [`SourceConfig::ack_while_down`], answers the writes that wait only for the peer.
    fn ack_alone(&mut self) {
        if !self.cfg.ack_while_down || self.is_up() {
            return;
        }
        let ready: Vec<u64> = self
            .log
            .iter()
            .filter(|e| e.client.is_some() && e.local_done)
            .map(|e| e.rec.seq)
            .collect();
        for seq in ready {
            let e = self.log.get_mut(seq).expect("entry");
            let handle = e.client.take().expect("client");
            if let Some(tx) = self.tx.get_mut(&seq) {
                // Answered: it can no longer fail, only wait for the peer.
                tx.deadline = None;
            }
            self.stats.acked += 1;
            self.out.push(SourceAction::AckedAlone { seq });
            self.out.push(SourceAction::AckWrite {
                handle,
                result: Ok(()),
            });
        }
    }

    fn retire(&mut self) {
        // A split client write's parts leave the log together: once all are confirmed and none
        // waits behind an earlier write outside the split. A part that stayed behind could still
        // fail (a new session sends it again, under the write timeout) and roll the others back,
        // and those that had left would stay on both copies of a failed write. An earlier write
        // leaving can free a split's parts, so this goes round until nothing more leaves.
        let mut retired = Vec::new();
        loop {
            for split in self.splits.values() {
                let done = split
                    .parts
                    .clone()
                    .all(|p| self.log.get(p).is_none_or(|e| e.is_complete()))
                    && !split
                        .parts
                        .clone()
                        .any(|p| self.log.overlaps_before(p, split.parts.start));
                if done {
                    for p in split.parts.clone() {
                        if let Some(e) = self.log.get_mut(p) {
                            e.held = false;
                        }
                    }
                }
            }
            let more = self.log.retire_ready();
            if more.is_empty() {
                break;
            }
            retired.extend(more);
        }
        if self.cfg.announce_retire && !retired.is_empty() && self.is_up() {
            let h = self.header(FrameType::Heartbeat);
            self.out.push(SourceAction::Send(Frame::new(h, Vec::new())));
        }
        for e in retired {
            let seq = e.rec.seq;
            self.tx.remove(&seq);
            self.out.push(SourceAction::LogRemove { seq });
            if let Some(handle) = e.client {
                self.stats.acked += 1;
                self.out.push(SourceAction::AckWrite {
                    handle,
                    result: Ok(()),
                });
            }
        }
    }
}

impl Tx {
    fn new(deadline: Option<Nanos>, ever_sent_data: bool) -> Tx {
        Tx {
            phase: Phase::Idle,
            data_sent: false,
            ever_sent_data,
            after_reject: false,
            rto_at: 0,
            sent_at: 0,
            retransmits: 0,
            rejections: 0,
            behind: false,
            deadline,
        }
    }
}

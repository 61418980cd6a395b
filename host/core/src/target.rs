//! The target controller: lock table, lock retry, and the rule that data never lands before its
//! lock is held.
//!
//! Lock commands (LOCK, or DATA with IMPLICIT_LOCK) are processed strictly in `lock_id` order, the
//! order the source sent them in; early arrivals wait in a small reorder buffer. A lock is granted
//! when no earlier-processed lock and no local holder overlaps its regions, so conflicting writes
//! land in the order the source issued them. A busy lock is retried with bounded exponential backoff
//! until held or until the retry budget is spent (LOCK_REJECTED). A rejected write leaves an
//! ordering barrier on its regions: later writes to those regions are refused until the source
//! re-issues the rejected one, so a retry can never land after a newer write.
//!
//! DATA that arrives before its lock is held waits in a bounded buffer and is handed to the volume
//! only once the lock is held.

use std::collections::{BTreeMap, BTreeSet};

use specmirror_abi::{
    Flags, FrameType, Header, Hello, HelloStatus, RejectReason, CAP_BIDIRECTIONAL,
    CAP_NO_IMPLICIT_LOCK, MAX_PAYLOAD,
};

use crate::frame::Frame;
use crate::region::Regions;
use crate::Nanos;

/// How the target behaves; every bound is explicit.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    pub volume_size: u64,
    pub region_size: u64,
    pub pair_id: [u8; 16],
    pub node_id: u32,
    /// First lock retry backoff.
    pub retry_initial: Nanos,
    /// Backoff ceiling.
    pub retry_max: Nanos,
    /// Total time a lock may stay busy before LOCK_REJECTED.
    pub retry_budget: Nanos,
    /// How long a granted lock waits for its data before it is revoked (LOCK_REJECTED).
    pub data_timeout: Nanos,
    /// Bytes of data that may wait for their locks.
    pub data_buffer: u64,
    /// Lock commands that may wait for an earlier one to arrive.
    pub reorder_window: usize,
    /// Bidirectional mode: a peer write stays visible only to the mirror until the peer says it has
    /// left its rollback log (its `ack_seq` passed it); until then local holds on its regions are
    /// refused, so local readers never see a write the peer may still roll back or re-apply.
    pub hold_until_settled: bool,
    /// Announced in the handshake: the largest write taken under one lock, as one DATA frame
    /// (`None`: any write, in pieces if need be). Sources split longer writes.
    pub write_limit: Option<u64>,
    /// Announced in the handshake: whether DATA may carry its own lock (implicit mode).
    pub implicit_locks: bool,
    /// Announced in the handshake: the most writes held at once (`None`: no limit).
    pub window: Option<u32>,
}

impl TargetConfig {
    pub fn new(volume_size: u64, region_size: u64, pair_id: [u8; 16]) -> TargetConfig {
        TargetConfig {
            volume_size,
            region_size,
            pair_id,
            node_id: 2,
            retry_initial: 20 * crate::US,
            retry_max: 2 * crate::MS,
            retry_budget: 50 * crate::MS,
            data_timeout: 1_000 * crate::MS,
            data_buffer: 64 << 20,
            reorder_window: 4096,
            hold_until_settled: false,
            write_limit: None,
            implicit_locks: true,
            window: None,
        }
    }

    /// The configuration of the host side of a hardware target: the device hands the host one
    /// receive buffer per write, takes neither pieces nor implicit locks, and holds at most
    /// `window` writes at once; the handshake says so.
    pub fn hardware(
        volume_size: u64,
        region_size: u64,
        pair_id: [u8; 16],
        window: u32,
    ) -> TargetConfig {
        TargetConfig {
            write_limit: Some(specmirror_abi::rx_ring::RX_BUFFER_BYTES as u64),
            implicit_locks: false,
            window: Some(window),
            ..TargetConfig::new(volume_size, region_size, pair_id)
        }
    }

    fn region_count(&self) -> u64 {
        self.volume_size.div_ceil(self.region_size)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetEvent {
    Frame(Frame),
    /// A [`TargetAction::WriteVolume`] finished.
    VolumeWriteDone {
        token: u64,
        result: Result<(), i32>,
    },
    /// A [`TargetAction::SyncVolume`] finished.
    VolumeSyncDone {
        token: u64,
        result: Result<(), i32>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetAction {
    Send(Frame),
    /// Write to the target volume; answer with [`TargetEvent::VolumeWriteDone`].
    WriteVolume {
        token: u64,
        seq: u64,
        offset: u64,
        data: Vec<u8>,
        fua: bool,
    },
    /// Make the volume durable; answer with [`TargetEvent::VolumeSyncDone`].
    SyncVolume {
        token: u64,
    },
    /// The lock table now holds `regions` for write `seq` (observability and invariant checks).
    LockAcquired {
        token: u64,
        seq: u64,
        regions: Regions,
    },
    LockReleased {
        token: u64,
    },
    /// A handshake opened a new session; all state of the previous one is gone.
    SessionStarted {
        generation: u32,
    },
    /// The peer broke the protocol in a way a correct source never does (a lock outside the
    /// volume, data outside its lock). The frame was refused; a driver should disconnect it.
    Violation(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting {
        since: Nanos,
        next_try: Nanos,
        backoff: Nanos,
    },
    Held {
        since: Nanos,
    },
    Writing,
    Done,
    Rejected(RejectReason),
    Failed(i32),
    Aborted,
}

#[derive(Clone, Debug)]
struct Data {
    offset: u64,
    bytes: Vec<u8>,
    fua: bool,
}

/// A write arriving in DATA pieces, put together in place. Its whole length is counted against
/// the buffer bound from the first piece on, so pieces cannot make the target hold more than
/// the bound.
#[derive(Clone, Debug)]
struct Partial {
    start: u64,
    fua: bool,
    bytes: Vec<u8>,
    /// Pieces received: place in the write to length.
    pieces: BTreeMap<u64, u64>,
    received: u64,
}

impl Partial {
    /// Adds a piece; false when it repeats or overlaps one already here (a duplicate).
    fn add(&mut self, at: u64, data: &[u8]) -> bool {
        let len = data.len() as u64;
        let before = self.pieces.range(..=at).next_back();
        let after = self.pieces.range(at..).next();
        if before.is_some_and(|(a, l)| a + l > at) || after.is_some_and(|(a, _)| *a < at + len) {
            return false;
        }
        self.bytes[at as usize..(at + len) as usize].copy_from_slice(data);
        self.pieces.insert(at, len);
        self.received += len;
        true
    }

    fn complete(&self) -> bool {
        self.received == self.bytes.len() as u64
    }
}

#[derive(Clone, Debug)]
struct Instance {
    /// Unique across sessions: names the lock in actions and in the volume-write callback.
    token: u64,
    seq: u64,
    regions: Regions,
    implicit: bool,
    state: State,
    data: Option<Data>,
    /// The pieces of `data` received so far, while some are missing.
    partial: Option<Partial>,
}

impl Instance {
    fn is_live(&self) -> bool {
        matches!(
            self.state,
            State::Waiting { .. } | State::Held { .. } | State::Writing
        )
    }
    fn holds(&self) -> bool {
        matches!(self.state, State::Held { .. } | State::Writing)
    }
}

/// See [`Target::horizon`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Horizon {
    /// Not yet heard from the peer.
    Unknown,
    /// Waiting for the peer's `ack_seq` to reach this.
    Until(u64),
    Clear,
}

/// A local user's hold on target regions. A hold that yields does not stop mirror locks (the
/// bidirectional rule for the node that orders its own unconfirmed writes after the peer's).
#[derive(Clone, Copy, Debug)]
struct LocalHold {
    regions: Regions,
    yields: bool,
    /// Other local holds may overlap it (a write already answered, still unconfirmed).
    shared: bool,
}

/// A lock command waiting in the reorder buffer, or data waiting for its lock command.
#[derive(Clone, Debug)]
struct Pending {
    header: Header,
    payload: Vec<u8>,
}

/// Counters a target exposes (the device mirrors them in its register block).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetStats {
    pub locks_granted: u64,
    pub locks_rejected: u64,
    pub lock_retries: u64,
    pub writes: u64,
    pub duplicates: u64,
    pub data_dropped: u64,
}

#[derive(Debug)]
pub struct Target {
    cfg: TargetConfig,
    generation: Option<u32>,
    /// Next lock command to process in this session.
    next_lock: u64,
    /// Highest acknowledgement watermarks heard from the source.
    ack_lock: u64,
    ack_seq: u64,
    instances: BTreeMap<u64, Instance>,
    /// Locks of a previous session whose volume write is still in flight: they keep their regions.
    orphans: BTreeMap<u64, Instance>,
    /// Volume writes in flight in this session: token to lock id.
    writing: BTreeMap<u64, u64>,
    reorder: BTreeMap<u64, Pending>,
    /// Lock commands the source aborted before they were processed here (still ahead in lock-id
    /// order): skipped when their turn comes, so a late copy never takes its regions.
    aborted_ahead: BTreeSet<u64>,
    /// DATA ahead of its lock command, by lock id and place in the write.
    early_data: BTreeMap<(u64, u64), Pending>,
    buffered: u64,
    barriers: Vec<(u64, Regions)>,
    local: BTreeMap<u64, LocalHold>,
    /// Bidirectional mode: peer writes handed to the volume that the peer has not yet settled,
    /// with the session they came in.
    unsettled: BTreeMap<u64, (Regions, u32)>,
    /// Bidirectional mode, after a (re)start: which peer writes reached the volume before is
    /// unknown, so no local hold is given until the peer has settled every write it had made when
    /// this target first heard from it.
    horizon: Horizon,
    next_token: u64,
    out: Vec<TargetAction>,
    stats: TargetStats,
    /// Test-only fault: hand data to the volume as soon as it arrives, lock or no lock.
    write_before_lock: bool,
}

impl Target {
    pub fn new(cfg: TargetConfig) -> Target {
        let horizon = if cfg.hold_until_settled {
            Horizon::Unknown
        } else {
            Horizon::Clear
        };
        Target {
            cfg,
            generation: None,
            next_lock: 1,
            ack_lock: 0,
            ack_seq: 0,
            instances: BTreeMap::new(),
            orphans: BTreeMap::new(),
            writing: BTreeMap::new(),
            reorder: BTreeMap::new(),
            aborted_ahead: BTreeSet::new(),
            early_data: BTreeMap::new(),
            buffered: 0,
            barriers: Vec::new(),
            local: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            horizon,
            next_token: 1,
            out: Vec::new(),
            stats: TargetStats::default(),
            write_before_lock: false,
        }
    }

    /// Makes this target violate the lock-before-data rule; the simulator's checker must catch it.
    #[cfg(feature = "broken-write-before-lock")]
    pub fn break_write_before_lock(&mut self) {
        self.write_before_lock = true;
    }

    pub fn config(&self) -> &TargetConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &TargetStats {
        &self.stats
    }

    pub fn generation(&self) -> Option<u32> {
        self.generation
    }

    /// Writes whose ordering barrier is up, with their regions (for diagnostics).
    pub fn barriers(&self) -> &[(u64, Regions)] {
        &self.barriers
    }

    /// Bytes of data waiting for locks.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered
    }

    /// No lock is live and nothing is buffered.
    pub fn is_idle(&self) -> bool {
        self.orphans.is_empty()
            && self.reorder.is_empty()
            && self.early_data.is_empty()
            && self.instances.values().all(|i| !i.is_live())
    }

    /// The earliest time [`Target::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        self.instances
            .values()
            .filter_map(|i| match i.state {
                State::Waiting { next_try, .. } => Some(next_try),
                State::Held { since } => Some(since + self.cfg.data_timeout),
                _ => None,
            })
            .min()
    }

    /// A local user of the target volume takes `regions` (a snapshot reader, or in bidirectional
    /// mode a local client read or write). Refused while a mirror lock, another local hold or an
    /// unsettled peer write (see [`TargetConfig::hold_until_settled`]) covers any of them.
    pub fn try_lock_local(&mut self, id: u64, regions: Regions) -> bool {
        let busy = self
            .instances
            .values()
            .chain(self.orphans.values())
            .any(|i| i.holds() && i.regions.overlaps(regions))
            || self
                .local
                .values()
                .any(|l| !l.shared && l.regions.overlaps(regions))
            || self.unsettled.values().any(|(r, _)| r.overlaps(regions))
            || self.horizon != Horizon::Clear;
        if !busy {
            self.local.insert(
                id,
                LocalHold {
                    regions,
                    yields: false,
                    shared: false,
                },
            );
        }
        !busy
    }

    /// Takes a local hold whatever else holds the regions. For a caller that already excludes
    /// mirror locks by other means: a bidirectional node moving a write's hold from its admission
    /// id to its log sequence number, or giving a compensation the regions of the write it undoes.
    pub fn force_lock_local(&mut self, id: u64, regions: Regions, yields: bool) {
        self.local.insert(
            id,
            LocalHold {
                regions,
                yields,
                shared: false,
            },
        );
    }

    /// Lets later local holds overlap hold `id`; mirror locks still treat it as before.
    pub fn share_local(&mut self, id: u64) {
        if let Some(l) = self.local.get_mut(&id) {
            l.shared = true;
        }
    }

    /// Whether a local hold lets mirror locks through; waiting locks retry at once.
    pub fn set_local_yields(&mut self, id: u64, yields: bool, now: Nanos) -> Vec<TargetAction> {
        if let Some(l) = self.local.get_mut(&id) {
            l.yields = yields;
            if yields {
                self.try_waiters(now);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Releases a local hold; waiting locks retry at once.
    pub fn unlock_local(&mut self, id: u64, now: Nanos) -> Vec<TargetAction> {
        if self.local.remove(&id).is_some() {
            self.try_waiters(now);
        }
        std::mem::take(&mut self.out)
    }

    /// Peer writes not yet settled by the peer, by sequence number (bidirectional mode).
    pub fn unsettled(&self) -> Vec<u64> {
        self.unsettled.keys().copied().collect()
    }

    /// Bidirectional mode: local holds wait until the peer has settled what it wrote before this
    /// target started (see [`TargetConfig::hold_until_settled`]).
    pub fn waits_for_horizon(&self) -> bool {
        self.horizon != Horizon::Clear
    }

    pub fn handle(&mut self, event: TargetEvent, now: Nanos) -> Vec<TargetAction> {
        match event {
            TargetEvent::Frame(f) => self.on_frame(f, now),
            TargetEvent::VolumeWriteDone { token, result } => {
                self.on_write_done(token, result, now)
            }
            TargetEvent::VolumeSyncDone { token, result } => {
                let mut h = self.header(FrameType::FlushDone);
                h.seq = token;
                // FLUSH_DONE's arg is 0 when the volume is durable, else the errno of the failure.
                h.arg = result
                    .err()
                    .map_or(0, |e| u64::from(e.unsigned_abs().max(1)));
                self.send(h, Vec::new());
            }
        }
        std::mem::take(&mut self.out)
    }

    pub fn handle_timeout(&mut self, now: Nanos) -> Vec<TargetAction> {
        let stale: Vec<u64> = self
            .instances
            .iter()
            .filter(|(_, i)| {
                matches!(i.state, State::Held { since } if now >= since + self.cfg.data_timeout)
            })
            .map(|(k, _)| *k)
            .collect();
        let revoked = !stale.is_empty();
        for id in stale {
            // Granted, but the data never came: revoke, so the region is not blocked forever.
            self.reject(id, RejectReason::BusyTimeout);
        }
        if revoked {
            self.try_waiters(now);
        } else {
            self.try_waiters_where(
                now,
                |i| matches!(i.state, State::Waiting { next_try, .. } if next_try <= now),
            );
        }
        std::mem::take(&mut self.out)
    }

    fn header(&self, ty: FrameType) -> Header {
        let mut h = Header::new(ty);
        h.generation = self.generation.unwrap_or(0);
        h
    }

    fn send(&mut self, h: Header, payload: Vec<u8>) {
        self.out.push(TargetAction::Send(Frame::new(h, payload)));
    }

    fn reply(&mut self, ty: FrameType, seq: u64, lock_id: u64, arg: u64) {
        let mut h = self.header(ty);
        h.seq = seq;
        h.lock_id = lock_id;
        h.arg = arg;
        self.send(h, Vec::new());
    }

    fn hello_reply(&mut self, generation: u32, status: HelloStatus) {
        let mut hello = Hello::for_pair(
            self.cfg.volume_size,
            self.cfg.region_size,
            self.cfg.pair_id,
            self.cfg.node_id,
            status,
        );
        if self.cfg.hold_until_settled {
            hello.capabilities |= CAP_BIDIRECTIONAL;
        }
        if !self.cfg.implicit_locks {
            hello.capabilities |= CAP_NO_IMPLICIT_LOCK;
        }
        if let Some(n) = self.cfg.window {
            hello.set_window(n).expect("a window of 1 to 255 writes");
        }
        if let Some(limit) = self.cfg.write_limit {
            hello
                .set_write_limit(limit)
                .expect("a write limit of a power of two from 512 bytes to MAX_PAYLOAD");
        }
        let mut h = Header::new(FrameType::HelloAck);
        h.generation = generation;
        // The generation this target holds, so a source that forgot its own can move past it.
        h.arg = self.generation.unwrap_or(0) as u64;
        self.send(h, hello.to_bytes().to_vec());
    }

    fn on_frame(&mut self, f: Frame, now: Nanos) {
        let h = f.header;
        if h.ty == FrameType::Hello {
            return self.on_hello(&f);
        }
        if self.generation != Some(h.generation) {
            // A frame of a session this target does not hold (it restarted, or the frame is
            // stale): tell the source to handshake again; never act on it.
            if matches!(
                h.ty,
                FrameType::Lock | FrameType::Data | FrameType::Flush | FrameType::Heartbeat
            ) {
                self.hello_reply(h.generation, HelloStatus::UnknownSession);
            }
            return;
        }
        self.advance_acks(h.ack_lock, h.ack_seq, now);
        match h.ty {
            FrameType::Lock => self.on_lock_command(h, Vec::new(), now),
            FrameType::Data if h.flags.contains(Flags::IMPLICIT_LOCK) => {
                self.on_lock_command(h, f.payload.into(), now)
            }
            FrameType::Data => self.on_data(h, f.payload.into(), now),
            FrameType::Abort => self.on_abort(h, now),
            FrameType::Flush => self.out.push(TargetAction::SyncVolume { token: h.seq }),
            FrameType::Heartbeat => {
                // The peer's next sequence number: a write of an earlier session numbered at or
                // above it was made by an incarnation of the peer that since restarted with
                // those writes gone from its log, so it is settled. (A write of this session may
                // legitimately arrive before a heartbeat sent ahead of it.)
                let current = self.generation;
                self.unsettled
                    .retain(|s, (_, g)| *s < h.seq || Some(*g) == current);
                // Waiting for the peer to settle what it had written: up to its next sequence
                // number when first heard, or a lower one if it restarted since with fewer.
                let until = match self.horizon {
                    Horizon::Clear => None,
                    Horizon::Unknown => Some(h.seq),
                    Horizon::Until(n) => Some(n.min(h.seq)),
                };
                if let Some(n) = until {
                    self.horizon = if h.ack_seq >= n {
                        Horizon::Clear
                    } else {
                        Horizon::Until(n)
                    };
                }
                let hb = self.header(FrameType::Heartbeat);
                self.send(hb, Vec::new());
            }
            // Frames only a target sends: a confused or lying peer. Ignore them.
            _ => {}
        }
    }

    fn on_hello(&mut self, f: &Frame) {
        let g = f.header.generation;
        let Ok(hello) = Hello::decode(&f.payload) else {
            return;
        };
        let status = if hello.volume_size != self.cfg.volume_size {
            HelloStatus::VolumeSizeMismatch
        } else if hello.region_size != self.cfg.region_size {
            HelloStatus::RegionSizeMismatch
        } else if hello.pair_id != self.cfg.pair_id {
            HelloStatus::PairIdMismatch
        } else if hello.min_version > specmirror_abi::VERSION as u16 {
            HelloStatus::VersionUnsupported
        } else if (hello.capabilities & CAP_BIDIRECTIONAL != 0) != self.cfg.hold_until_settled
            || (self.cfg.hold_until_settled && hello.node_id == self.cfg.node_id)
        {
            // One-way and bidirectional ends do not mix, and two nodes need two ids.
            HelloStatus::RoleMismatch
        } else if g != 0 && self.generation.is_some_and(|cur| g < cur) {
            HelloStatus::StaleGeneration
        } else {
            HelloStatus::Ok
        };
        // Generation 0 is a probe: it checks the pair without opening a session.
        if status == HelloStatus::Ok && g != 0 && self.generation != Some(g) {
            self.reset_session(g);
        }
        self.hello_reply(g, status);
    }

    fn reset_session(&mut self, generation: u32) {
        for (_, i) in std::mem::take(&mut self.instances) {
            match i.state {
                State::Writing => {
                    self.orphans.insert(i.token, i);
                }
                State::Held { .. } => self.out.push(TargetAction::LockReleased { token: i.token }),
                _ => {}
            }
        }
        self.generation = Some(generation);
        self.next_lock = 1;
        self.ack_lock = 0;
        self.ack_seq = 0;
        self.reorder.clear();
        self.aborted_ahead.clear();
        self.early_data.clear();
        self.buffered = 0;
        self.barriers.clear();
        // Writes still in flight are orphans now, found by their token.
        self.writing.clear();
        self.out.push(TargetAction::SessionStarted { generation });
    }

    fn advance_acks(&mut self, ack_lock: u64, ack_seq: u64, now: Nanos) {
        if ack_seq > self.ack_seq {
            self.ack_seq = ack_seq;
            self.barriers.retain(|(s, _)| *s >= ack_seq);
        }
        // Sequence numbers outlive sessions, so this holds across reconnections too.
        self.unsettled.retain(|s, _| *s >= ack_seq);
        if matches!(self.horizon, Horizon::Until(h) if ack_seq >= h) {
            self.horizon = Horizon::Clear;
        }
        if ack_lock <= self.ack_lock {
            return;
        }
        self.ack_lock = ack_lock;
        // The source will never resend these: forget finished ones, and skip lock commands it
        // abandoned before they arrived.
        let abandoned: Vec<u64> = self
            .instances
            .range(..ack_lock)
            .filter(|(_, i)| matches!(i.state, State::Waiting { .. } | State::Held { .. }))
            .map(|(k, _)| *k)
            .collect();
        let released = !abandoned.is_empty();
        for id in abandoned {
            self.finish(id, State::Aborted);
        }
        if released {
            self.try_waiters(now);
        }
        self.instances
            .retain(|id, i| *id >= ack_lock || i.is_live());
        let stale: Vec<(u64, u64)> = self
            .early_data
            .range(..(ack_lock, 0))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            let p = self.early_data.remove(&k).expect("present");
            self.buffered -= p.payload.len() as u64;
        }
        if self.next_lock < ack_lock {
            let skipped: Vec<u64> = self.reorder.range(..ack_lock).map(|(k, _)| *k).collect();
            for k in skipped {
                let p = self.reorder.remove(&k).expect("present");
                self.buffered -= p.payload.len() as u64;
            }
            self.next_lock = ack_lock;
            self.aborted_ahead.retain(|l| *l >= ack_lock);
            self.drain_reorder(now);
        }
    }

    fn on_lock_command(&mut self, h: Header, payload: Vec<u8>, now: Nanos) {
        if h.lock_id < self.next_lock {
            return self.answer_duplicate(h.lock_id);
        }
        if self.aborted_ahead.contains(&h.lock_id) {
            return; // aborted by the source before it got here
        }
        if h.lock_id > self.next_lock {
            if self.reorder.len() >= self.cfg.reorder_window
                || self.buffered + payload.len() as u64 > self.cfg.data_buffer
            {
                self.stats.data_dropped += 1;
                return; // the source retransmits
            }
            if !self.reorder.contains_key(&h.lock_id) {
                self.buffered += payload.len() as u64;
                self.reorder
                    .insert(h.lock_id, Pending { header: h, payload });
            }
            return;
        }
        self.process_lock(h, payload, now);
        self.next_lock += 1;
        self.drain_reorder(now);
    }

    fn drain_reorder(&mut self, now: Nanos) {
        loop {
            if self.skip_aborted() {
                continue;
            }
            let Some(p) = self.reorder.remove(&self.next_lock) else {
                return;
            };
            self.buffered -= p.payload.len() as u64;
            self.process_lock(p.header, p.payload, now);
            self.next_lock += 1;
        }
    }

    /// Passes over the next lock command if the source aborted it before it arrived (`on_abort`
    /// dropped any copy of it, and later copies are never taken in). True if it was skipped.
    fn skip_aborted(&mut self) -> bool {
        if !self.aborted_ahead.remove(&self.next_lock) {
            return false;
        }
        self.next_lock += 1;
        true
    }

    fn answer_duplicate(&mut self, lock_id: u64) {
        self.stats.duplicates += 1;
        let Some(i) = self.instances.get(&lock_id) else {
            return;
        };
        let (seq, implicit, state) = (i.seq, i.implicit, i.state);
        match state {
            State::Held { .. } | State::Writing if !implicit => {
                self.reply(FrameType::LockGranted, seq, lock_id, 0)
            }
            State::Done => {
                if !implicit {
                    self.reply(FrameType::LockGranted, seq, lock_id, 0);
                }
                self.reply(FrameType::WriteDone, seq, lock_id, 0)
            }
            State::Rejected(r) => self.reply(FrameType::LockRejected, seq, lock_id, r as u64),
            State::Failed(e) => self.reply(FrameType::WriteFailed, seq, lock_id, e as u64),
            _ => {}
        }
    }

    /// Processes the lock command that is next in order.
    fn process_lock(&mut self, h: Header, payload: Vec<u8>, now: Nanos) {
        if h.seq < self.ack_seq {
            // The source settled this write already (confirmed or rolled back): a late copy.
            return;
        }
        let implicit = h.ty == FrameType::Data;
        let regions = if implicit {
            if payload.is_empty() || h.offset.checked_add(payload.len() as u64).is_none() {
                return self.reply(
                    FrameType::LockRejected,
                    h.seq,
                    h.lock_id,
                    RejectReason::OutOfRange as u64,
                );
            }
            Regions::of_bytes(h.offset, payload.len() as u64, self.cfg.region_size)
        } else {
            Regions {
                first: h.offset,
                count: h.arg,
            }
        };
        let in_range = regions.count > 0
            && regions
                .first
                .checked_add(regions.count)
                .is_some_and(|e| e <= self.cfg.region_count())
            && (!implicit || h.offset + payload.len() as u64 <= self.cfg.volume_size);
        let token = self.next_token;
        self.next_token += 1;
        let mut inst = Instance {
            token,
            seq: h.seq,
            regions,
            implicit,
            state: State::Waiting {
                since: now,
                next_try: now,
                backoff: self.cfg.retry_initial,
            },
            data: None,
            partial: None,
        };
        if !in_range {
            self.out
                .push(TargetAction::Violation("lock outside the target volume"));
            inst.state = State::Rejected(RejectReason::OutOfRange);
            self.instances.insert(h.lock_id, inst);
            self.stats.locks_rejected += 1;
            return self.reply(
                FrameType::LockRejected,
                h.seq,
                h.lock_id,
                RejectReason::OutOfRange as u64,
            );
        }
        // This is the re-issue of a rejected write: its barrier has served its purpose.
        self.barriers.retain(|(s, _)| *s != h.seq);
        if self
            .barriers
            .iter()
            .any(|(s, r)| *s < h.seq && r.overlaps(regions))
        {
            self.instances.insert(h.lock_id, inst);
            return self.reject(h.lock_id, RejectReason::Ordering);
        }
        if implicit {
            inst.data = Some(Data {
                offset: h.offset,
                bytes: payload,
                fua: h.flags.contains(Flags::FUA),
            });
        }
        if let Some(d) = &inst.data {
            self.buffered += d.bytes.len() as u64;
        }
        let write_early = self.write_before_lock && inst.data.is_some();
        self.instances.insert(h.lock_id, inst);
        if write_early {
            self.start_write(h.lock_id);
        }
        // DATA that came ahead of this lock command is taken in now, as if it arrived now.
        for p in self.take_early_data(h.lock_id) {
            self.on_data(p.header, p.payload, now);
        }
        self.try_acquire(h.lock_id, now);
    }

    /// Takes every DATA frame (or piece) held ahead of lock command `lock_id` out of the buffer.
    fn take_early_data(&mut self, lock_id: u64) -> Vec<Pending> {
        let keys: Vec<(u64, u64)> = self
            .early_data
            .range((lock_id, 0)..=(lock_id, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .map(|k| {
                let p = self.early_data.remove(&k).expect("present");
                self.buffered -= p.payload.len() as u64;
                p
            })
            .collect()
    }

    fn on_data(&mut self, h: Header, payload: Vec<u8>, now: Nanos) {
        let len = payload.len() as u64;
        let piece = specmirror_abi::data_piece(h.arg);
        let Some(i) = self.instances.get_mut(&h.lock_id) else {
            let key = (h.lock_id, piece.map_or(0, |(at, _)| at));
            if h.lock_id >= self.next_lock && !self.early_data.contains_key(&key) {
                // Data ahead of its lock command: hold it, within the buffer bound.
                if self.buffered + len > self.cfg.data_buffer {
                    self.stats.data_dropped += 1;
                    return;
                }
                self.buffered += len;
                self.early_data.insert(key, Pending { header: h, payload });
            }
            return;
        };
        if i.seq != h.seq || i.implicit {
            return; // a peer that lies about which write this is, or a stray implicit copy
        }
        match i.state {
            State::Done | State::Rejected(_) | State::Failed(_) => {
                // The source missed our answer and sent the data again: repeat the answer.
                return self.answer_duplicate(h.lock_id);
            }
            State::Waiting { .. } | State::Held { .. } if i.data.is_none() => {}
            _ => return, // already have this data, or the lock was aborted
        }
        // The write this frame belongs to: the frame itself, or the write it is a piece of.
        let (start, total) = match piece {
            None => (Some(h.offset), len),
            Some((at, total)) if at + len <= total && total <= MAX_PAYLOAD as u64 => {
                (h.offset.checked_sub(at), total)
            }
            Some(_) => (None, 0),
        };
        let fua = h.flags.contains(Flags::FUA);
        let in_range = start.is_some_and(|s| {
            s.checked_add(total).is_some_and(|e| {
                len > 0
                    && e <= self.cfg.volume_size
                    && i.regions
                        .contains(Regions::of_bytes(s, total, self.cfg.region_size))
            })
        }) && i
            .partial
            .as_ref()
            .is_none_or(|p| Some(p.start) == start && p.bytes.len() as u64 == total);
        match i.state {
            State::Waiting { .. } | State::Held { .. } if in_range => {
                let start = start.expect("in range");
                let grows = if i.partial.is_some() { 0 } else { total };
                if self.buffered + grows > self.cfg.data_buffer && !i.holds() {
                    self.stats.data_dropped += 1;
                    return; // resent by the source once the lock is granted
                }
                match piece {
                    None => {
                        i.data = Some(Data {
                            offset: h.offset,
                            bytes: payload,
                            fua,
                        });
                        self.buffered += len;
                    }
                    Some((at, _)) => {
                        let p = i.partial.get_or_insert_with(|| Partial {
                            start,
                            fua,
                            bytes: vec![0; total as usize],
                            pieces: BTreeMap::new(),
                            received: 0,
                        });
                        self.buffered += grows;
                        if !p.add(at, &payload) || !p.complete() {
                            return;
                        }
                        let p = i.partial.take().expect("just completed");
                        i.data = Some(Data {
                            offset: p.start,
                            bytes: p.bytes,
                            fua: p.fua,
                        });
                    }
                }
                if matches!(i.state, State::Held { .. }) || self.write_before_lock {
                    self.start_write(h.lock_id);
                }
                let _ = now;
            }
            State::Waiting { .. } | State::Held { .. } => {
                // Data outside the regions it locked: never written.
                let seq = i.seq;
                self.out.push(TargetAction::Violation(
                    "data outside the regions it locked",
                ));
                self.stats.locks_rejected += 1;
                self.finish(h.lock_id, State::Rejected(RejectReason::OutOfRange));
                self.reply(
                    FrameType::LockRejected,
                    seq,
                    h.lock_id,
                    RejectReason::OutOfRange as u64,
                );
                self.try_waiters(now);
            }
            _ => {}
        }
    }

    fn on_abort(&mut self, h: Header, now: Nanos) {
        self.barriers.retain(|(s, _)| *s != h.seq);
        if h.lock_id >= self.next_lock
            && h.lock_id != 0
            && self.aborted_ahead.len() < self.cfg.reorder_window
        {
            // The lock command is still ahead (lost, or waiting for earlier ones): it must never
            // be processed, or a write the source rolled back would land after newer ones.
            self.aborted_ahead.insert(h.lock_id);
            if let Some(p) = self.reorder.remove(&h.lock_id) {
                self.buffered -= p.payload.len() as u64;
            }
            self.drain_reorder(now);
        }
        self.take_early_data(h.lock_id);
        if let Some(i) = self.instances.get(&h.lock_id) {
            if matches!(i.state, State::Waiting { .. } | State::Held { .. }) {
                self.finish(h.lock_id, State::Aborted);
                self.try_waiters(now);
            }
        }
    }

    /// Moves an instance to a final state, dropping its data and releasing its lock.
    fn finish(&mut self, lock_id: u64, state: State) {
        let i = self.instances.get_mut(&lock_id).expect("instance");
        if let Some(d) = i.data.take() {
            self.buffered -= d.bytes.len() as u64;
        }
        if let Some(p) = i.partial.take() {
            self.buffered -= p.bytes.len() as u64;
        }
        if i.holds() {
            self.out.push(TargetAction::LockReleased { token: i.token });
        }
        i.state = state;
    }

    fn start_write(&mut self, lock_id: u64) {
        let i = self.instances.get_mut(&lock_id).expect("instance");
        let Some(d) = &i.data else { return };
        if i.state == State::Writing {
            return;
        }
        if matches!(i.state, State::Held { .. }) {
            i.state = State::Writing;
        }
        self.stats.writes += 1;
        if self.cfg.hold_until_settled {
            let session = self.generation.unwrap_or(0);
            self.unsettled.insert(i.seq, (i.regions, session));
        }
        self.writing.insert(i.token, lock_id);
        self.out.push(TargetAction::WriteVolume {
            token: i.token,
            seq: i.seq,
            offset: d.offset,
            data: d.bytes.clone(),
            fua: d.fua,
        });
    }

    fn blocked(&self, lock_id: u64, regions: Regions) -> bool {
        self.local
            .values()
            .any(|l| !l.yields && l.regions.overlaps(regions))
            || self.orphans.values().any(|o| o.regions.overlaps(regions))
            || self
                .instances
                .range(..lock_id)
                .any(|(_, i)| i.is_live() && i.regions.overlaps(regions))
    }

    fn try_acquire(&mut self, lock_id: u64, now: Nanos) {
        let i = &self.instances[&lock_id];
        let State::Waiting {
            since,
            next_try,
            backoff,
        } = i.state
        else {
            return;
        };
        let regions = i.regions;
        if !self.blocked(lock_id, regions) {
            let i = self.instances.get_mut(&lock_id).expect("instance");
            i.state = State::Held { since: now };
            let (token, seq, implicit) = (i.token, i.seq, i.implicit);
            self.stats.locks_granted += 1;
            self.out.push(TargetAction::LockAcquired {
                token,
                seq,
                regions,
            });
            if !implicit {
                self.reply(FrameType::LockGranted, seq, lock_id, 0);
            }
            if self.instances[&lock_id].data.is_some() {
                self.start_write(lock_id);
            }
            return;
        }
        if now < next_try {
            return;
        }
        self.stats.lock_retries += 1;
        if now.saturating_sub(since) >= self.cfg.retry_budget {
            return self.reject(lock_id, RejectReason::BusyTimeout);
        }
        let i = self.instances.get_mut(&lock_id).expect("instance");
        i.state = State::Waiting {
            since,
            next_try: now + backoff,
            backoff: (backoff * 2).min(self.cfg.retry_max),
        };
    }

    /// Rejects a lock and raises its ordering barrier.
    fn reject(&mut self, lock_id: u64, reason: RejectReason) {
        let i = &self.instances[&lock_id];
        let (seq, regions) = (i.seq, i.regions);
        self.finish(lock_id, State::Rejected(reason));
        self.stats.locks_rejected += 1;
        self.reply(FrameType::LockRejected, seq, lock_id, reason as u64);
        self.raise_barrier(lock_id, seq, regions);
    }

    /// Write `seq` will be sent again (or given up by the source): until then no later write may
    /// take its regions, or the retry would land after it. Later locks already waiting on those
    /// regions are rejected (and raise barriers of their own).
    fn raise_barrier(&mut self, lock_id: u64, seq: u64, regions: Regions) {
        if seq >= self.ack_seq {
            self.barriers.push((seq, regions));
        }
        let later: Vec<u64> = self
            .instances
            .range(lock_id + 1..)
            .filter(|(_, j)| {
                matches!(j.state, State::Waiting { .. })
                    && j.seq > seq
                    && j.regions.overlaps(regions)
            })
            .map(|(k, _)| *k)
            .collect();
        for id in later {
            if matches!(self.instances[&id].state, State::Waiting { .. }) {
                self.reject(id, RejectReason::Ordering);
            }
        }
    }

    /// Tries every waiting lock: after a release whose regions are not known here.
    fn try_waiters(&mut self, now: Nanos) {
        self.try_waiters_where(now, |_| true);
    }

    /// Tries the waiting locks `pick` selects. Each try scans the locks before it, so the hot
    /// paths narrow the set: a finished write wakes only the locks overlapping its regions, and
    /// the timer only the locks whose retry is due (a lock that an event could free has been
    /// tried by that event).
    fn try_waiters_where(&mut self, now: Nanos, pick: impl Fn(&Instance) -> bool) {
        let waiting: Vec<u64> = self
            .instances
            .iter()
            .filter(|(_, i)| matches!(i.state, State::Waiting { .. }) && pick(i))
            .map(|(k, _)| *k)
            .collect();
        for id in waiting {
            self.try_acquire(id, now);
        }
    }

    fn on_write_done(&mut self, token: u64, result: Result<(), i32>, now: Nanos) {
        if self.orphans.remove(&token).is_some() {
            // Its session is gone: release the regions, answer nobody.
            self.out.push(TargetAction::LockReleased { token });
            return self.try_waiters(now);
        }
        let Some(&lock_id) = self.writing.get(&token) else {
            return;
        };
        let Some(i) = self.instances.get(&lock_id) else {
            self.writing.remove(&token);
            return;
        };
        let seq = i.seq;
        if i.state != State::Writing {
            // Only a broken target writes outside Writing; keep the books straight anyway.
            return;
        }
        self.writing.remove(&token);
        let done = i.regions;
        match result {
            Ok(()) => {
                self.finish(lock_id, State::Done);
                self.reply(FrameType::WriteDone, seq, lock_id, 0);
            }
            Err(e) => {
                self.finish(lock_id, State::Failed(e));
                self.reply(FrameType::WriteFailed, seq, lock_id, e as u64);
                self.raise_barrier(lock_id, seq, done);
            }
        }
        self.try_waiters_where(now, |i| i.regions.overlaps(done));
    }
}

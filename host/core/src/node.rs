//! One node of a bidirectional pair: both nodes serve clients on their own copy of the volume, and
//! each is the other's target.
//!
//! A node is a [`Source`] (its mirror control module, mirroring its clients' writes to the peer)
//! and a [`Target`] (the peer's target controller) on one volume and one link. Every client
//! operation first takes a local hold on its regions in the target's lock table, so a peer LOCK
//! on those regions is retried by the lock-retry state machine while the hold lasts, and two
//! local operations on the same regions run one after the other.
//!
//! Conflicts are resolved by node id (the rule and its proof are in `docs/protocol.md`):
//! - node 1 *holds*: a write's hold lasts until the write leaves the rollback log, and keeps every
//!   peer lock on its regions waiting;
//! - node 2 *yields*: once a write is in its rollback log its hold lets peer locks through, and the
//!   peer's data lands *under* every write still in the log ([`Source::absorb_peer_write`]): the
//!   bytes those writes cover keep their data, and the peer's bytes go into the before-images.
//!
//! So a peer write reaching node 2 is ordered before every node-2 write still in node 2's log,
//! and node 1 applies those only after its own write. Both copies end with the same data and the
//! writes on each block take one order. Local holds also wait for a peer write the peer has not
//! yet settled ([`TargetConfig::hold_until_settled`]), so a local reader never sees a peer write
//! that may still be rolled back.
//!
//! Frames share one link: LOCK, DATA, ABORT, FLUSH, HELLO and HEARTBEAT go to the target role;
//! the answers to the source role. The target's heartbeat answers are not sent (the peer's source
//! sends its own heartbeats, and answering answers would ping-pong).

use std::collections::{BTreeMap, VecDeque};

use specmirror_abi::{FrameType, MAX_PAYLOAD};

use crate::frame::Frame;
use crate::region::Regions;
use crate::source::{Source, SourceAction, SourceConfig, SourceEvent};
use crate::target::{Target, TargetAction, TargetConfig, TargetEvent};
use crate::{errno, Nanos};

/// Local hold ids at or above this are admissions and reads; below are log sequence numbers.
const ADMISSION: u64 = 1 << 62;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// 1 or 2; node 1 holds, node 2 yields.
    pub node_id: u32,
    pub source: SourceConfig,
    pub target: TargetConfig,
}

impl NodeConfig {
    /// A node with default tuning. Panics unless `node_id` is 1 or 2.
    pub fn new(node_id: u32, volume_size: u64, region_size: u64, pair_id: [u8; 16]) -> NodeConfig {
        assert!(node_id == 1 || node_id == 2, "node id must be 1 or 2");
        let mut source = SourceConfig::new(volume_size, region_size, pair_id);
        source.node_id = node_id;
        source.announce_retire = true;
        let mut target = TargetConfig::new(volume_size, region_size, pair_id);
        target.node_id = node_id;
        target.hold_until_settled = true;
        NodeConfig {
            node_id,
            source,
            target,
        }
    }

    /// Whether this node's logged writes let the peer's locks through.
    pub fn yields(&self) -> bool {
        self.node_id == 2
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    ClientWrite {
        handle: u64,
        offset: u64,
        data: Vec<u8>,
        fua: bool,
    },
    ClientRead {
        handle: u64,
        offset: u64,
        len: u64,
    },
    ClientFlush {
        handle: u64,
    },
    /// The answer to [`NodeAction::ReadBefore`]: the volume's bytes under the write.
    Before {
        handle: u64,
        before: Vec<u8>,
    },
    /// The read asked for by [`NodeAction::ReadLocal`] is done and answered.
    ReadDone {
        handle: u64,
    },
    LocalWriteDone {
        seq: u64,
        result: Result<(), i32>,
    },
    LocalSyncDone {
        flush: u64,
        result: Result<(), i32>,
    },
    /// A [`NodeAction::WriteVolume`] finished (all its pieces).
    VolumeWriteDone {
        token: u64,
        result: Result<(), i32>,
    },
    VolumeSyncDone {
        token: u64,
        result: Result<(), i32>,
    },
    Frame(Frame),
    Connected,
    Disconnected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAction {
    Send(Frame),
    /// Read the volume's bytes at `offset..offset+len` now and answer [`NodeEvent::Before`].
    ReadBefore {
        handle: u64,
        offset: u64,
        len: u64,
    },
    /// The read may go ahead: read the volume, answer the client, then [`NodeEvent::ReadDone`].
    ReadLocal {
        handle: u64,
        offset: u64,
        len: u64,
    },
    /// A read that cannot be served (outside the volume).
    FailRead {
        handle: u64,
        errno: i32,
    },
    /// A peer write, as the pieces that land on this volume (possibly none); answer
    /// [`NodeEvent::VolumeWriteDone`] once all are written.
    WriteVolume {
        token: u64,
        seq: u64,
        pieces: Vec<(u64, Vec<u8>)>,
        fua: bool,
    },
    /// Everything else the source role asks for (local writes, log records, client answers).
    Source(SourceAction),
    /// Everything else the target role asks for (syncs, lock observations).
    Target(TargetAction),
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        handle: u64,
        offset: u64,
        data: Vec<u8>,
        fua: bool,
        since: Nanos,
    },
    Read {
        handle: u64,
        offset: u64,
        len: u64,
        since: Nanos,
    },
}

impl Op {
    fn since(&self) -> Nanos {
        match self {
            Op::Write { since, .. } | Op::Read { since, .. } => *since,
        }
    }
}

#[derive(Debug)]
struct Admitted {
    hold: u64,
    offset: u64,
    data: Vec<u8>,
    fua: bool,
}

#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    source: Source,
    target: Target,
    /// Client operations waiting for their hold, in arrival order.
    queue: VecDeque<Op>,
    /// Writes holding their regions, waiting for their before-image.
    admitted: BTreeMap<u64, Admitted>,
    /// Reads holding their regions, by handle.
    reads: BTreeMap<u64, u64>,
    next_hold: u64,
    out: Vec<NodeAction>,
}

impl Node {
    /// A node with an empty log; `generation` is its source's last persisted session.
    pub fn new(cfg: NodeConfig, generation: u32) -> Node {
        Node {
            source: Source::new(cfg.source.clone(), generation),
            target: Target::new(cfg.target.clone()),
            cfg,
            queue: VecDeque::new(),
            admitted: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_hold: ADMISSION,
            out: Vec::new(),
        }
    }

    /// A node restarted from its persisted rollback log (see [`Source::recover`]): every record
    /// is written locally again and re-sent, and holds its regions until it leaves the log.
    pub fn recover(
        cfg: NodeConfig,
        generation: u32,
        records: Vec<crate::rollback_log::LogRecord>,
    ) -> (Node, Vec<NodeAction>) {
        let held: Vec<(u64, Regions)> = records
            .iter()
            .map(|r| {
                (
                    r.seq,
                    Regions::of_bytes(r.offset, r.len(), cfg.source.region_size),
                )
            })
            .collect();
        let (source, actions) = Source::recover(cfg.source.clone(), generation, records);
        let mut n = Node {
            source,
            ..Node::new(cfg, generation)
        };
        for (seq, r) in held {
            n.target.force_lock_local(seq, r, n.cfg.yields());
        }
        n.source_actions(actions, 0);
        let out = std::mem::take(&mut n.out);
        (n, out)
    }

    /// Makes this node's target write peer data before its lock is held (see
    /// [`Target::break_write_before_lock`]); the simulator's checker must catch it.
    #[cfg(feature = "broken-write-before-lock")]
    pub fn break_write_before_lock(&mut self) {
        self.target.break_write_before_lock();
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// No client operation is waiting, the log is empty and no peer lock is live.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.admitted.is_empty()
            && self.reads.is_empty()
            && self.source.is_idle()
            && self.target.is_idle()
            && self.target.unsettled().is_empty()
    }

    /// Client operations waiting for a hold or a before-image.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.admitted.len()
    }

    pub fn poll_timeout(&self) -> Option<Nanos> {
        let waited = self
            .queue
            .iter()
            .map(|o| o.since() + self.cfg.source.write_timeout)
            .min();
        [
            self.source.poll_timeout(),
            self.target.poll_timeout(),
            waited,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Nanos) -> Vec<NodeAction> {
        // An operation that waited the whole write timeout for its regions fails: EIO, nothing
        // done (the peer is away with its writes in doubt, or the regions never came free).
        let limit = self.cfg.source.write_timeout;
        let (expired, kept): (VecDeque<Op>, VecDeque<Op>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|o| now >= o.since() + limit);
        self.queue = kept;
        for op in expired {
            self.out.push(match op {
                Op::Write { handle, .. } => NodeAction::Source(SourceAction::AckWrite {
                    handle,
                    result: Err(errno::EIO),
                }),
                Op::Read { handle, .. } => NodeAction::FailRead {
                    handle,
                    errno: errno::EIO,
                },
            });
        }
        let a = self.source.handle_timeout(now);
        self.source_actions(a, now);
        let a = self.target.handle_timeout(now);
        self.target_actions(a);
        self.admit();
        std::mem::take(&mut self.out)
    }

    pub fn handle(&mut self, event: NodeEvent, now: Nanos) -> Vec<NodeAction> {
        match event {
            NodeEvent::ClientWrite {
                handle,
                offset,
                data,
                fua,
            } => {
                let len = data.len() as u64;
                if len == 0 || len > MAX_PAYLOAD as u64 || !self.in_volume(offset, len) {
                    // The source answers these at once (success for an empty write, an error
                    // otherwise) without touching anything.
                    let before = if len <= MAX_PAYLOAD as u64 {
                        vec![0; data.len()]
                    } else {
                        Vec::new()
                    };
                    self.source_event(
                        SourceEvent::ClientWrite {
                            handle,
                            offset,
                            data,
                            before,
                            fua,
                        },
                        now,
                    );
                } else {
                    self.queue.push_back(Op::Write {
                        handle,
                        offset,
                        data,
                        fua,
                        since: now,
                    });
                }
            }
            NodeEvent::ClientRead {
                handle,
                offset,
                len,
            } => {
                if len == 0 || !self.in_volume(offset, len) {
                    self.out.push(NodeAction::FailRead {
                        handle,
                        errno: if len == 0 {
                            errno::EINVAL
                        } else {
                            errno::ENOSPC
                        },
                    });
                } else {
                    self.queue.push_back(Op::Read {
                        handle,
                        offset,
                        len,
                        since: now,
                    });
                }
            }
            NodeEvent::ClientFlush { handle } => {
                self.source_event(SourceEvent::ClientFlush { handle }, now)
            }
            NodeEvent::Before { handle, before } => {
                if let Some(a) = self.admitted.remove(&handle) {
                    // The write's LogAppend moves its hold to its sequence number.
                    self.source_event(
                        SourceEvent::ClientWrite {
                            handle,
                            offset: a.offset,
                            data: a.data,
                            before,
                            fua: a.fua,
                        },
                        now,
                    );
                    let t = self.target.unlock_local(a.hold, now);
                    self.target_actions(t);
                }
            }
            NodeEvent::ReadDone { handle } => {
                if let Some(hold) = self.reads.remove(&handle) {
                    let t = self.target.unlock_local(hold, now);
                    self.target_actions(t);
                }
            }
            NodeEvent::LocalWriteDone { seq, result } => {
                self.source_event(SourceEvent::LocalWriteDone { seq, result }, now)
            }
            NodeEvent::LocalSyncDone { flush, result } => {
                self.source_event(SourceEvent::LocalSyncDone { flush, result }, now)
            }
            NodeEvent::VolumeWriteDone { token, result } => {
                self.target_event(TargetEvent::VolumeWriteDone { token, result }, now)
            }
            NodeEvent::VolumeSyncDone { token, result } => {
                self.target_event(TargetEvent::VolumeSyncDone { token, result }, now)
            }
            NodeEvent::Frame(f) => {
                if for_target(f.header.ty) {
                    self.target_event(TargetEvent::Frame(f), now)
                } else {
                    self.source_event(SourceEvent::Frame(f), now)
                }
            }
            NodeEvent::Connected => self.source_event(SourceEvent::Connected, now),
            NodeEvent::Disconnected => self.source_event(SourceEvent::Disconnected, now),
        }
        self.admit();
        std::mem::take(&mut self.out)
    }

    fn in_volume(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|e| e <= self.cfg.source.volume_size)
    }

    fn regions(&self, offset: u64, len: u64) -> Regions {
        Regions::of_bytes(offset, len, self.cfg.source.region_size)
    }

    fn source_event(&mut self, ev: SourceEvent, now: Nanos) {
        let a = self.source.handle(ev, now);
        self.source_actions(a, now);
    }

    fn target_event(&mut self, ev: TargetEvent, now: Nanos) {
        let a = self.target.handle(ev, now);
        self.target_actions(a);
    }

    /// Gives waiting client operations their holds, in arrival order; an operation never passes
    /// an earlier waiting one on the same regions.
    fn admit(&mut self) {
        let mut blocked: Vec<Regions> = Vec::new();
        let mut still = VecDeque::new();
        while let Some(op) = self.queue.pop_front() {
            let (offset, len) = match &op {
                Op::Write { offset, data, .. } => (*offset, data.len() as u64),
                Op::Read { offset, len, .. } => (*offset, *len),
            };
            let r = self.regions(offset, len);
            let hold = self.next_hold;
            if blocked.iter().any(|b| b.overlaps(r)) || !self.target.try_lock_local(hold, r) {
                blocked.push(r);
                still.push_back(op);
                continue;
            }
            self.next_hold += 1;
            match op {
                Op::Write {
                    handle,
                    offset,
                    data,
                    fua,
                    ..
                } => {
                    self.out.push(NodeAction::ReadBefore {
                        handle,
                        offset,
                        len,
                    });
                    self.admitted.insert(
                        handle,
                        Admitted {
                            hold,
                            offset,
                            data,
                            fua,
                        },
                    );
                }
                Op::Read {
                    handle,
                    offset,
                    len,
                    ..
                } => {
                    self.reads.insert(handle, hold);
                    self.out.push(NodeAction::ReadLocal {
                        handle,
                        offset,
                        len,
                    });
                }
            }
        }
        self.queue = still;
    }

    fn source_actions(&mut self, actions: Vec<SourceAction>, now: Nanos) {
        for a in actions {
            match a {
                SourceAction::Send(f) => self.out.push(NodeAction::Send(f)),
                SourceAction::LogAppend(ref rec) => {
                    // Every log entry holds its regions until it leaves the log: a client write
                    // takes over its admission hold (released right after), a compensation the
                    // hold of the write it undoes (still held when it is appended).
                    let r = self.regions(rec.offset, rec.len());
                    self.target.force_lock_local(rec.seq, r, self.cfg.yields());
                    self.out.push(NodeAction::Source(a));
                }
                SourceAction::AckedAlone { seq } => {
                    // Answered while the peer is away: later local operations may overlap it;
                    // peer locks still wait for it (or, on node 2, pass under it) as before.
                    self.target.share_local(seq);
                    self.out.push(NodeAction::Source(a));
                }
                SourceAction::LogRemove { seq } => {
                    self.out.push(NodeAction::Source(a));
                    let t = self.target.unlock_local(seq, now);
                    self.target_actions(t);
                }
                other => self.out.push(NodeAction::Source(other)),
            }
        }
    }

    fn target_actions(&mut self, actions: Vec<TargetAction>) {
        for a in actions {
            match a {
                TargetAction::Send(f) if f.header.ty == FrameType::Heartbeat => {}
                TargetAction::Send(f) => self.out.push(NodeAction::Send(f)),
                TargetAction::WriteVolume {
                    token,
                    seq,
                    offset,
                    data,
                    fua,
                } => {
                    let (pieces, updates) = self.source.absorb_peer_write(offset, &data);
                    self.out.extend(updates.into_iter().map(NodeAction::Source));
                    self.out.push(NodeAction::WriteVolume {
                        token,
                        seq,
                        pieces,
                        fua,
                    });
                }
                other => self.out.push(NodeAction::Target(other)),
            }
        }
    }
}

/// Which role of the receiving node a frame is for.
fn for_target(ty: FrameType) -> bool {
    matches!(
        ty,
        FrameType::Hello
            | FrameType::Lock
            | FrameType::Data
            | FrameType::Abort
            | FrameType::Flush
            | FrameType::Heartbeat
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 8192;
    const REGION: u64 = 4096;

    /// A peer write as it landed: its sequence number and the pieces written.
    type Landed = (u64, Vec<(u64, Vec<u8>)>);

    /// Two nodes on an in-order link whose frames are delivered only when a test says so, with
    /// volume and local operations completed at once.
    struct Pair {
        nodes: [Node; 2],
        vols: [Vec<u8>; 2],
        wire: [Vec<Frame>; 2],
        acked: Vec<(u64, Result<(), i32>)>,
        peer_writes: [Vec<Landed>; 2],
    }

    impl Pair {
        fn new() -> Pair {
            let node = |id| Node::new(NodeConfig::new(id, SIZE, REGION, *b"node-unit-test-0"), 0);
            let mut p = Pair {
                nodes: [node(1), node(2)],
                vols: [vec![0; SIZE as usize], vec![0; SIZE as usize]],
                wire: [Vec::new(), Vec::new()],
                acked: Vec::new(),
                peer_writes: [Vec::new(), Vec::new()],
            };
            p.feed(0, NodeEvent::Connected);
            p.feed(1, NodeEvent::Connected);
            p.flush();
            p
        }

        fn feed(&mut self, n: usize, ev: NodeEvent) {
            let mut todo = vec![ev];
            while let Some(ev) = todo.pop() {
                for a in self.nodes[n].handle(ev, 0) {
                    match a {
                        NodeAction::Send(f) => self.wire[1 - n].push(f),
                        NodeAction::ReadBefore {
                            handle,
                            offset,
                            len,
                        } => {
                            let before =
                                self.vols[n][offset as usize..(offset + len) as usize].to_vec();
                            todo.push(NodeEvent::Before { handle, before });
                        }
                        NodeAction::ReadLocal { handle, .. } => {
                            todo.push(NodeEvent::ReadDone { handle })
                        }
                        NodeAction::WriteVolume {
                            token, seq, pieces, ..
                        } => {
                            for (o, d) in &pieces {
                                let o = *o as usize;
                                self.vols[n][o..o + d.len()].copy_from_slice(d);
                            }
                            self.peer_writes[n].push((seq, pieces));
                            todo.push(NodeEvent::VolumeWriteDone {
                                token,
                                result: Ok(()),
                            });
                        }
                        NodeAction::Source(SourceAction::WriteLocal {
                            seq, offset, data, ..
                        }) => {
                            let o = offset as usize;
                            self.vols[n][o..o + data.len()].copy_from_slice(&data);
                            if let Some(seq) = seq {
                                todo.push(NodeEvent::LocalWriteDone {
                                    seq,
                                    result: Ok(()),
                                });
                            }
                        }
                        NodeAction::Source(SourceAction::AckWrite { handle, result }) => {
                            self.acked.push((handle, result))
                        }
                        _ => {}
                    }
                }
            }
        }

        /// Delivers what is on the wire towards node `n`.
        fn deliver(&mut self, n: usize) {
            for f in std::mem::take(&mut self.wire[n]) {
                self.feed(n, NodeEvent::Frame(f));
            }
        }

        fn flush(&mut self) {
            while !self.wire[0].is_empty() || !self.wire[1].is_empty() {
                self.deliver(0);
                self.deliver(1);
            }
        }

        fn write(&mut self, n: usize, handle: u64, offset: u64, byte: u8, len: usize) {
            self.feed(
                n,
                NodeEvent::ClientWrite {
                    handle,
                    offset,
                    data: vec![byte; len],
                    fua: false,
                },
            );
        }
    }

    #[test]
    fn an_uncontended_write_lands_on_both_copies_in_one_exchange() {
        let mut p = Pair::new();
        p.write(1, 1, 100, 0xaa, 50);
        p.deliver(0); // LOCK + DATA reach node 1
        p.deliver(1); // LOCK_GRANTED + WRITE_DONE reach node 2
        assert_eq!(p.acked, vec![(1, Ok(()))]);
        assert_eq!(p.vols[0], p.vols[1]);
        assert_eq!(p.vols[0][100..150], [0xaa; 50]);
    }

    #[test]
    fn a_conflict_orders_node_1_first_on_both_copies() {
        let mut p = Pair::new();
        // Both nodes write overlapping bytes of region 0 at the same moment.
        p.write(0, 1, 0, 0x11, 600);
        p.write(1, 2, 300, 0x22, 600);
        p.deliver(0); // node 2's LOCK + DATA reach node 1: its write holds the region
        assert!(p.peer_writes[0].is_empty(), "node 1 let the peer in");
        p.deliver(1); // node 1's LOCK + DATA reach node 2, which yields
        assert_eq!(p.peer_writes[1].len(), 1);
        // The peer's bytes that node 2's own logged write covers stay node 2's.
        assert_eq!(p.peer_writes[1][0].1, vec![(0, vec![0x11; 300])]);
        p.flush();
        assert_eq!(p.acked.len(), 2);
        assert!(p.acked.iter().all(|(_, r)| r.is_ok()));
        // One order on both copies: node 1's write, then node 2's on top.
        assert_eq!(p.vols[0], p.vols[1]);
        assert_eq!(p.vols[0][..300], [0x11; 300]);
        assert_eq!(p.vols[0][300..900], [0x22; 600]);
    }

    #[test]
    fn a_local_read_waits_for_an_unsettled_peer_write() {
        let mut p = Pair::new();
        p.write(1, 1, 0, 0x33, 512);
        p.deliver(0); // node 1 writes node 2's data; node 2 has not heard back yet
        assert_eq!(p.vols[0][..512], [0x33; 512]);
        p.feed(
            0,
            NodeEvent::ClientRead {
                handle: 9,
                offset: 0,
                len: 512,
            },
        );
        assert_eq!(
            p.nodes[0].waiting(),
            1,
            "the read went ahead of the settlement"
        );
        p.deliver(1); // node 2 retires the write and announces it
        p.deliver(0);
        assert_eq!(p.nodes[0].waiting(), 0);
        assert!(p.nodes.iter().all(|n| n.is_idle()));
    }

    /// What node 2's target answers to a HELLO from `node_id` announcing `caps`.
    fn hello_status(node_id: u32, caps: u32) -> specmirror_abi::HelloStatus {
        use specmirror_abi::{Header, Hello, HelloStatus};
        let mut n = Node::new(NodeConfig::new(2, SIZE, REGION, *b"node-unit-test-0"), 0);
        let mut hello =
            Hello::for_pair(SIZE, REGION, *b"node-unit-test-0", node_id, HelloStatus::Ok);
        hello.capabilities = caps;
        let mut h = Header::new(FrameType::Hello);
        h.generation = 1;
        let f = Frame::new(h, hello.to_bytes().to_vec());
        let sent: Vec<Frame> = n
            .handle(NodeEvent::Frame(f), 0)
            .into_iter()
            .filter_map(|a| match a {
                NodeAction::Send(f) if f.header.ty == FrameType::HelloAck => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 1);
        Hello::decode(&sent[0].payload).unwrap().status
    }

    #[test]
    fn a_node_meets_only_the_other_node() {
        use specmirror_abi::{HelloStatus, CAP_BIDIRECTIONAL};
        assert_eq!(hello_status(1, CAP_BIDIRECTIONAL), HelloStatus::Ok);
        assert_eq!(
            hello_status(2, CAP_BIDIRECTIONAL),
            HelloStatus::RoleMismatch
        );
        // A one-way source does not announce the capability.
        assert_eq!(hello_status(1, 0), HelloStatus::RoleMismatch);
    }

    #[test]
    fn bad_client_requests_are_answered_without_touching_anything() {
        let mut p = Pair::new();
        p.write(0, 1, SIZE - 10, 0x44, 20);
        assert_eq!(p.acked, vec![(1, Err(errno::ENOSPC))]);
        let a = p.nodes[0].handle(
            NodeEvent::ClientRead {
                handle: 2,
                offset: SIZE,
                len: 1,
            },
            0,
        );
        assert_eq!(
            a,
            vec![NodeAction::FailRead {
                handle: 2,
                errno: errno::ENOSPC
            }]
        );
        assert!(p.wire.iter().all(|w| w.is_empty()));
        assert!(p.vols[0].iter().all(|b| *b == 0));
    }
}

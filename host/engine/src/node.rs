//! The bidirectional node daemon: one NBD front end, one volume, one rollback log and one link to
//! the peer node, around the node core ([`specmirror_core::node::Node`]), which is at once this
//! node's mirror source and the peer's target.
//!
//! Node 1 dials the peer (`--peer`); node 2 listens (`--listen`) and takes the newest
//! authenticated connection. Either may start first: node 1 keeps dialing. Clients are let in
//! once this node's session with the peer is open; reads and writes both pass through the core,
//! which orders them against the peer's writes.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use specmirror_abi::ring::Mode;
use specmirror_abi::{FrameType, Hello, HelloStatus, CAP_BIDIRECTIONAL};
use specmirror_core::node::{Node, NodeAction, NodeConfig, NodeEvent};
use specmirror_core::source::SourceAction;
use specmirror_core::target::TargetAction;
use specmirror_core::target::{Target, TargetEvent};
use specmirror_core::{Frame, Nanos};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::auth::{self, AuthError};
use crate::logfile::{LogError, LogFile, PairIdentity};
use crate::nbd::{self, Answer, Export, IoRequest};
use crate::persist::{Background, Persist, Step};
use crate::source::{listen_nbd, write_batches, LinkQueue, NbdListen};
use crate::volume::{errno_of, Volume, VolumeError};
use crate::wire::{probe_exchange, read_frame};

#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub node_id: u32,
    pub volume: PathBuf,
    pub size: Option<u64>,
    /// Node 2: where the peer's connection is accepted.
    pub listen: Option<String>,
    /// Node 1: the peer node's link address.
    pub peer: Option<String>,
    pub nbd: NbdListen,
    pub log: PathBuf,
    pub mode: Mode,
    pub region_size: u64,
    pub pair_id: [u8; 16],
    pub secret: Option<Vec<u8>>,
    /// Writes the peer has not confirmed within this time are rolled back and fail (EIO).
    pub link_timeout: Duration,
    pub log_sync: bool,
    pub peer_timeout: Duration,
    pub export_name: String,
    pub max_inflight: u64,
    /// While the peer is away, answer writes once they are on this copy (kept in the log until
    /// the peer confirms them) instead of failing them after `link_timeout`.
    pub serve_alone: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node id must be 1 or 2, not {0}")]
    NodeId(u32),
    #[error("node {0} needs {1}")]
    MissingAddress(u32, &'static str),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("authentication with the peer failed: {0}")]
    Auth(#[from] AuthError),
    #[error("the peer refused this volume pair: {0}")]
    Refused(String),
    #[error("rollback log write failed, mirroring cannot go on safely: {0}")]
    LogWrite(std::io::Error),
    #[error(
        "peer {peer} unreachable for {waited:?} (start node 2 first, or within --link-timeout)"
    )]
    Unreachable { peer: String, waited: Duration },
    #[error("cannot listen for the peer on {addr}: {source}")]
    PeerListen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Nbd(#[from] crate::source::SourceError),
}

/// A started node: where clients connect, where the peer connects (node 2), the task to await.
pub struct RunningNode {
    pub nbd_addr: String,
    pub link_addr: Option<String>,
    pub task: tokio::task::JoinHandle<Result<(), NodeError>>,
}

enum Msg {
    Io(IoRequest),
    LinkUp(LinkQueue),
    LinkDown,
    Frame(Frame),
    LocalDone(u64, Result<(), i32>),
    LocalSynced(u64, Result<(), i32>),
    VolumeDone(u64, Result<(), i32>),
    VolumeSynced(u64, Result<(), i32>),
}

/// Checks the volume and the log, then starts the core, the link and the NBD front end.
///
/// `link_bound` hears node 2's link address as soon as it is bound (before the peer connects),
/// so a caller that asked for port 0 can tell node 1 where to dial.
pub async fn start(
    opts: NodeOptions,
    link_bound: impl FnOnce(&str),
) -> Result<RunningNode, NodeError> {
    if opts.node_id != 1 && opts.node_id != 2 {
        return Err(NodeError::NodeId(opts.node_id));
    }
    if opts.node_id == 1 && opts.peer.is_none() {
        return Err(NodeError::MissingAddress(1, "--peer (node 1 dials node 2)"));
    }
    if opts.node_id == 2 && opts.listen.is_none() {
        return Err(NodeError::MissingAddress(
            2,
            "--listen (node 2 accepts node 1's link)",
        ));
    }
    let size = Volume::probe_size(&opts.volume, opts.size)?;
    let identity = PairIdentity {
        pair_id: opts.pair_id,
        volume_size: size,
        region_size: opts.region_size,
    };
    LogFile::check(&opts.log, &identity)?;
    // Node 1 asks node 2 whether they make a pair before anything on disk changes.
    let first_link = match opts.node_id {
        1 => Some(probe(&opts, size).await?),
        _ => None,
    };
    // Bind before anything on disk changes: a taken port is refused with nothing touched.
    let listener = match (&opts.listen, opts.node_id) {
        (Some(addr), 2) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::PeerListen {
                        addr: addr.clone(),
                        source,
                    })?,
            )
        }
        _ => None,
    };
    let link_addr = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());
    if let Some(a) = &link_addr {
        link_bound(a);
    }
    // Node 2 waits for node 1 to prove it is the other node of this pair, also before anything
    // on disk changes.
    let accepted = match &listener {
        Some(l) => Some(await_peer(l, &opts, size).await),
        None => None,
    };
    let volume = Volume::open(&opts.volume, opts.size)?;
    let (log, mut replayed) = LogFile::open(&opts.log, identity)?;
    // A client write's data is where it was written, on the volume.
    replayed.read_data(&volume)?;
    if replayed.truncated > 0 {
        warn!(
            bytes = replayed.truncated,
            "rollback log had a torn tail; cut it off"
        );
    }
    if !replayed.records.is_empty() {
        info!(
            entries = replayed.records.len(),
            "rollback log holds unconfirmed writes: writing them locally again and re-sending"
        );
    }
    let mut cfg = NodeConfig::new(opts.node_id, size, opts.region_size, opts.pair_id);
    cfg.source.mode = opts.mode;
    cfg.source.write_timeout = opts.link_timeout.as_nanos() as u64;
    cfg.source.ack_while_down = opts.serve_alone;
    let (core, recovery) = Node::recover(cfg, replayed.generation, replayed.records);
    let (tx, rx) = mpsc::channel::<Msg>(4096);
    let (io_tx, io_rx) = mpsc::channel::<IoRequest>(4096);
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let me = tx.clone();
    let notify = Arc::new(move |b: Background| {
        let m = match b {
            Background::LocalWriteDone(seq, r) => Msg::LocalDone(seq, r),
            Background::LocalSyncDone(flush, r) => Msg::LocalSynced(flush, r),
        };
        me.blocking_send(m).ok();
    });
    let mut task = CoreTask {
        core,
        disk: Persist::new(volume.clone(), log, opts.log_sync, notify),
        link: None,
        writes: BTreeMap::new(),
        reads: BTreeMap::new(),
        flushes: BTreeMap::new(),
        next_handle: 1,
        me: tx.clone(),
        start: Instant::now(),
        ready: ready_tx,
    };
    task.run(recovery)?;
    match listener {
        Some(l) => {
            tokio::spawn(accept_task(l, accepted, opts.clone(), tx.clone()));
        }
        None => {
            tokio::spawn(dial_task(first_link, opts.clone(), tx.clone()));
        }
    }
    let core = tokio::spawn(task.serve(rx, io_rx));
    loop {
        if *ready_rx.borrow() {
            break;
        }
        if ready_rx.changed().await.is_err() {
            return Err(core.await.unwrap_or(Ok(())).err().unwrap_or_else(|| {
                NodeError::Refused("the node stopped before the session opened".into())
            }));
        }
    }
    let export = Arc::new(Export {
        name: opts.export_name.clone(),
        volume,
        mirror: io_tx,
        inflight: nbd::inflight_budget(opts.max_inflight),
        reads_through_mirror: true,
    });
    let nbd_addr = listen_nbd(&opts.nbd, export).await?;
    info!(nbd = %nbd_addr, node = opts.node_id, "accepting NBD clients");
    Ok(RunningNode {
        nbd_addr,
        link_addr,
        task: core,
    })
}

/// Node 1: keeps a link to node 2, dialing again with backoff whenever it drops.
async fn dial_task(first: Option<TcpStream>, opts: NodeOptions, core: mpsc::Sender<Msg>) {
    let peer = opts.peer.clone().expect("checked at start");
    let mut backoff = Duration::from_millis(50);
    let mut first = first;
    loop {
        let stream = match first.take() {
            Some(s) => Some(s),
            None => dial(&peer, &opts).await.unwrap_or_else(|e| {
                error!(%peer, "peer refused authentication: {e}");
                None
            }),
        };
        let Some(s) = stream else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(50);
        info!(%peer, "link to the peer up");
        if !serve_link(s, None, &opts, &core).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One authenticated connection to the peer. `Ok(None)`: not there yet (worth retrying).
async fn dial(peer: &str, opts: &NodeOptions) -> Result<Option<TcpStream>, AuthError> {
    let mut s = match TcpStream::connect(peer).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, "peer not reachable yet: {e}");
            return Ok(None);
        }
    };
    s.set_nodelay(true).ok();
    match auth::as_source(&mut s, opts.secret.as_deref(), opts.peer_timeout).await {
        Ok(()) => Ok(Some(s)),
        Err(e @ AuthError::Io(_)) | Err(e @ AuthError::Timeout(_)) => {
            debug!(%peer, "peer link not up yet: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Node 1's start-up check: a probe HELLO (generation 0, which opens no session) must find the
/// other node of this pair, with the same volume geometry. Waits up to the link timeout for node
/// 2 to come up. The connection then carries the link.
async fn probe(opts: &NodeOptions, size: u64) -> Result<TcpStream, NodeError> {
    let peer = opts.peer.clone().expect("checked at start");
    let started = Instant::now();
    let mut s = loop {
        if let Some(s) = dial(&peer, opts).await? {
            break s;
        }
        if started.elapsed() >= opts.link_timeout {
            return Err(NodeError::Unreachable {
                peer,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut hello = Hello::for_pair(size, opts.region_size, opts.pair_id, 1, HelloStatus::Ok);
    hello.capabilities = CAP_BIDIRECTIONAL;
    // Node 2's own handshake may come before the answer; the exchange skips it.
    let ack = probe_exchange(&mut s, &hello, opts.peer_timeout)
        .await
        .map_err(|e| NodeError::Refused(format!("the handshake with {peer} broke off: {e}")))?;
    match ack.status {
        HelloStatus::Ok => Ok(s),
        other => Err(NodeError::Refused(refusal(other, Some((size, &ack))))),
    }
}

/// Why the peer refused the pair, in words; with this node's volume size and the peer's answer
/// when the refusal came with one.
fn refusal(status: HelloStatus, answer: Option<(u64, &Hello)>) -> String {
    match (status, answer) {
        (HelloStatus::RoleMismatch, _) => "the peer is not this pair's other node: it has the \
            same --node-id, or it is a one-way source or target"
            .into(),
        (HelloStatus::VolumeSizeMismatch, Some((size, ack))) => format!(
            "the peer's volume is {} bytes, this one {size} bytes",
            ack.volume_size
        ),
        (HelloStatus::VolumeSizeMismatch, None) => "the two volumes differ in size".into(),
        (HelloStatus::RegionSizeMismatch, Some((_, ack))) => format!(
            "the peer uses {}-byte regions (--region-size), this node another size",
            ack.region_size
        ),
        (HelloStatus::RegionSizeMismatch, None) => {
            "the two nodes use different --region-size".into()
        }
        (HelloStatus::PairIdMismatch, _) => "the peer serves another volume pair (--pair)".into(),
        (other, _) => format!("{other:?}"),
    }
}

/// Node 2: accepts node 1's link; a newer authenticated connection replaces the current one.
async fn accept_task(
    l: TcpListener,
    first: Option<(TcpStream, Option<Frame>)>,
    opts: NodeOptions,
    core: mpsc::Sender<Msg>,
) {
    let (conn_tx, mut conn_rx) = mpsc::channel::<TcpStream>(4);
    let o = opts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, from)) = l.accept().await else {
                continue;
            };
            s.set_nodelay(true).ok();
            match auth::as_target(&mut s, o.secret.as_deref(), o.peer_timeout).await {
                Ok(()) => {
                    info!(%from, "link from the peer up");
                    if conn_tx.send(s).await.is_err() {
                        return;
                    }
                }
                Err(e) => warn!(%from, "peer connection refused: {e}"),
            }
        }
    });
    let (mut next, mut pending) = match first {
        Some((s, f)) => (Some(s), f),
        None => (conn_rx.recv().await, None),
    };
    while let Some(s) = next.take() {
        tokio::select! {
            alive = serve_link(s, pending.take(), &opts, &core) => {
                if !alive {
                    return;
                }
                next = conn_rx.recv().await;
            }
            newer = conn_rx.recv() => {
                if core.send(Msg::LinkDown).await.is_err() {
                    return;
                }
                next = newer;
            }
        }
    }
}

/// Node 2's start-up check: it takes a connection only once its first frame is a HELLO that this
/// node's target accepts (same pair, volume size, region size; the other node id). A probe is
/// answered here; a session HELLO is handed on to the core. Peers that do not fit are answered,
/// logged and dropped; nothing on disk changes until one fits.
async fn await_peer(l: &TcpListener, opts: &NodeOptions, size: u64) -> (TcpStream, Option<Frame>) {
    let cfg = NodeConfig::new(2, size, opts.region_size, opts.pair_id);
    loop {
        let Ok((mut s, from)) = l.accept().await else {
            continue;
        };
        s.set_nodelay(true).ok();
        if let Err(e) = auth::as_target(&mut s, opts.secret.as_deref(), opts.peer_timeout).await {
            warn!(%from, "peer connection refused: {e}");
            continue;
        }
        let mut buf = Vec::new();
        let f = match tokio::time::timeout(opts.peer_timeout, read_frame(&mut s, &mut buf)).await {
            Ok(Ok(Some(f))) if f.header.ty == FrameType::Hello => f,
            other => {
                warn!(%from, "peer did not open with a HELLO: {other:?}");
                continue;
            }
        };
        // The target's own rules decide, on a scratch target that touches nothing.
        let probe = f.header.generation == 0;
        let mut scratch = Target::new(cfg.target.clone());
        let ack = scratch
            .handle(TargetEvent::Frame(f.clone()), 0)
            .into_iter()
            .find_map(|a| match a {
                TargetAction::Send(a) if a.header.ty == FrameType::HelloAck => Some(a),
                _ => None,
            });
        let Some(ack) = ack else { continue };
        let status = Hello::decode(&ack.payload).map(|h| h.status);
        if status == Ok(HelloStatus::Ok) {
            if !probe {
                return (s, Some(f));
            }
            if s.write_all(&ack.encode()).await.is_ok() {
                return (s, None);
            }
            continue;
        }
        let _ = s.write_all(&ack.encode()).await;
        warn!(%from, "refused a peer that is not this pair's other node: {status:?}");
    }
}

/// Runs one connection until it fails; false when the core is gone. `first` is a frame already
/// read from it.
async fn serve_link(
    s: TcpStream,
    first: Option<Frame>,
    opts: &NodeOptions,
    core: &mpsc::Sender<Msg>,
) -> bool {
    let (rd, wr) = s.into_split();
    let mut rd = crate::wire::frame_reader(rd);
    let (tx, rx) = LinkQueue::new(8192);
    if core.send(Msg::LinkUp(tx)).await.is_err() {
        return false;
    }
    if let Some(f) = first {
        if core.send(Msg::Frame(f)).await.is_err() {
            return false;
        }
    }
    let writer = tokio::spawn(write_batches(rx, wr));
    let mut buf = Vec::new();
    let cause = loop {
        match tokio::time::timeout(opts.peer_timeout, read_frame(&mut rd, &mut buf)).await {
            Err(_) => break format!("peer silent for {:?}", opts.peer_timeout),
            Ok(Ok(None)) => break "peer closed the connection".to_string(),
            Ok(Err(e)) => break format!("bad frame from the peer: {e}"),
            Ok(Ok(Some(f))) => {
                if core.send(Msg::Frame(f)).await.is_err() {
                    writer.abort();
                    return false;
                }
            }
        }
    };
    writer.abort();
    warn!("link to the peer down: {cause}");
    core.send(Msg::LinkDown).await.is_ok()
}

struct CoreTask {
    core: Node,
    disk: Persist,
    link: Option<LinkQueue>,
    writes: BTreeMap<u64, Answer>,
    reads: BTreeMap<u64, oneshot::Sender<Result<Vec<u8>, i32>>>,
    flushes: BTreeMap<u64, oneshot::Sender<Result<(), i32>>>,
    next_handle: u64,
    me: mpsc::Sender<Msg>,
    start: Instant,
    ready: watch::Sender<bool>,
}

impl CoreTask {
    fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    async fn serve(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut io_rx: mpsc::Receiver<IoRequest>,
    ) -> Result<(), NodeError> {
        loop {
            let wait = self
                .core
                .poll_timeout()
                .map(|d| Duration::from_nanos(d.saturating_sub(self.now())))
                .unwrap_or(Duration::from_secs(3600));
            let msg = tokio::select! {
                m = rx.recv() => m,
                Some(r) = io_rx.recv() => Some(Msg::Io(r)),
                _ = tokio::time::sleep(wait) => {
                    let a = self.core.handle_timeout(self.now());
                    self.run(a)?;
                    continue;
                }
            };
            let Some(msg) = msg else { return Ok(()) };
            let handle = self.next_handle;
            let ev = match msg {
                Msg::Io(IoRequest::Write {
                    offset,
                    data,
                    fua,
                    reply,
                    ..
                }) => {
                    self.next_handle += 1;
                    self.writes.insert(handle, reply);
                    NodeEvent::ClientWrite {
                        handle,
                        offset,
                        data,
                        fua,
                    }
                }
                Msg::Io(IoRequest::Read { offset, len, reply }) => {
                    self.next_handle += 1;
                    self.reads.insert(handle, reply);
                    NodeEvent::ClientRead {
                        handle,
                        offset,
                        len,
                    }
                }
                Msg::Io(IoRequest::Flush { reply }) => {
                    self.next_handle += 1;
                    self.flushes.insert(handle, reply);
                    NodeEvent::ClientFlush { handle }
                }
                Msg::LinkUp(q) => {
                    self.link = Some(q);
                    NodeEvent::Connected
                }
                Msg::LinkDown => {
                    self.link = None;
                    NodeEvent::Disconnected
                }
                Msg::Frame(f) => NodeEvent::Frame(f),
                Msg::LocalDone(seq, result) => NodeEvent::LocalWriteDone { seq, result },
                Msg::LocalSynced(flush, result) => NodeEvent::LocalSyncDone { flush, result },
                Msg::VolumeDone(token, result) => NodeEvent::VolumeWriteDone { token, result },
                Msg::VolumeSynced(token, result) => NodeEvent::VolumeSyncDone { token, result },
            };
            let a = self.core.handle(ev, self.now());
            self.run(a)?;
        }
    }

    /// Carries out actions in order, feeding immediate completions straight back; the frames of
    /// the batch leave together at the end.
    fn run(&mut self, actions: Vec<NodeAction>) -> Result<(), NodeError> {
        let mut frames = Vec::new();
        let mut queue = VecDeque::from(actions);
        let r = self.run_queue(&mut queue, &mut frames);
        self.disk.flush().map_err(NodeError::LogWrite)?;
        if !frames.is_empty() {
            if let Some(q) = &self.link {
                if !q.offer(frames) {
                    debug!("link queue full, frames dropped (retransmitted later)");
                }
            }
        }
        r
    }

    fn feed(&mut self, ev: NodeEvent, queue: &mut VecDeque<NodeAction>) {
        let now = self.now();
        queue.extend(self.core.handle(ev, now));
    }

    fn run_queue(
        &mut self,
        queue: &mut VecDeque<NodeAction>,
        frames: &mut Vec<u8>,
    ) -> Result<(), NodeError> {
        while let Some(a) = queue.pop_front() {
            match a {
                NodeAction::Send(f) => f.encode_into(frames),
                NodeAction::ReadBefore {
                    handle,
                    offset,
                    len,
                } => {
                    let before = match self.disk.volume.read_before(offset, len as usize) {
                        Ok(b) => b,
                        Err(e) => {
                            // Without the before-image the write cannot be undone: refuse it.
                            // Its admission hold goes with an empty write's answer.
                            warn!("reading the before-image at {offset} failed: {e}");
                            if let Some(r) = self.writes.remove(&handle) {
                                r.send(Err(errno_of(&e))).ok();
                            }
                            Vec::new()
                        }
                    };
                    self.feed(NodeEvent::Before { handle, before }, queue);
                }
                NodeAction::ReadLocal {
                    handle,
                    offset,
                    len,
                } => {
                    let mut b = vec![0u8; len as usize];
                    let r = self
                        .disk
                        .volume
                        .read_at(offset, &mut b)
                        .map(|_| b)
                        .map_err(|e| {
                            warn!("local read at {offset} failed: {e}");
                            errno_of(&e)
                        });
                    if let Some(reply) = self.reads.remove(&handle) {
                        reply.send(r).ok();
                    }
                    self.feed(NodeEvent::ReadDone { handle }, queue);
                }
                NodeAction::FailRead { handle, errno } => {
                    if let Some(reply) = self.reads.remove(&handle) {
                        reply.send(Err(errno)).ok();
                    }
                }
                NodeAction::WriteVolume {
                    token, pieces, fua, ..
                } => {
                    // The before-images this write fed must be on file first.
                    self.disk.barrier().map_err(NodeError::LogWrite)?;
                    let mut result = Ok(());
                    for (o, d) in &pieces {
                        if let Err(e) = self.disk.volume.write_at(*o, d) {
                            warn!("writing the peer's data at {o} failed: {e}");
                            result = Err(errno_of(&e));
                            break;
                        }
                    }
                    if fua && result.is_ok() {
                        let me = self.me.clone();
                        self.disk.volume.sync_in_background(move |r| {
                            me.blocking_send(Msg::VolumeDone(token, r)).ok();
                        });
                    } else {
                        self.feed(NodeEvent::VolumeWriteDone { token, result }, queue);
                    }
                }
                NodeAction::Target(TargetAction::SyncVolume { token }) => {
                    let me = self.me.clone();
                    self.disk.volume.sync_in_background(move |r| {
                        me.blocking_send(Msg::VolumeSynced(token, r)).ok();
                    });
                }
                NodeAction::Target(TargetAction::Violation(why)) => {
                    warn!("the peer broke the protocol: {why}");
                }
                NodeAction::Target(_) => {}
                NodeAction::Source(s) => self.source_action(s, queue)?,
            }
        }
        Ok(())
    }

    fn source_action(
        &mut self,
        a: SourceAction,
        queue: &mut VecDeque<NodeAction>,
    ) -> Result<(), NodeError> {
        let a = match self.disk.source_action(a).map_err(NodeError::LogWrite)? {
            Step::Done => return Ok(()),
            Step::LocalWriteDone { seq, result } => {
                self.feed(NodeEvent::LocalWriteDone { seq, result }, queue);
                return Ok(());
            }
            Step::Other(a) => a,
        };
        match a {
            SourceAction::AckWrite { handle, result } => {
                if let Some(r) = self.writes.remove(&handle) {
                    r.send(result).ok();
                }
            }
            SourceAction::AckFlush { handle, result } => {
                if let Some(r) = self.flushes.remove(&handle) {
                    r.send(result).ok();
                }
            }
            SourceAction::SessionUp { generation } => {
                info!(generation, "session with the peer open");
                self.ready.send_replace(true);
            }
            SourceAction::Refused(status) => {
                return Err(NodeError::Refused(refusal(status, None)));
            }
            // A peer node announces no write limit, so no write is too long for it.
            SourceAction::CannotMirror { seq, len, limit } => {
                return Err(NodeError::Refused(format!(
                    "write {seq} ({len} bytes) is longer than the peer takes under one lock \
                     ({limit} bytes)"
                )));
            }
            SourceAction::AckedAlone { seq } => {
                debug!(
                    seq,
                    "write answered while the peer is away; kept until it confirms"
                );
            }
            // Disk actions were carried out above; sends come as NodeAction::Send.
            SourceAction::Send(_)
            | SourceAction::WriteLocal { .. }
            | SourceAction::SyncLocal { .. }
            | SourceAction::LogAppend(_)
            | SourceAction::LogUpdate(_)
            | SourceAction::LogLockGranted { .. }
            | SourceAction::LogDataWritten { .. }
            | SourceAction::LogRemove { .. }
            | SourceAction::PersistGeneration(_) => {}
            SourceAction::RolledBack { seq, errno, reason } => {
                warn!(
                    seq,
                    errno, "write rolled back and failed to its client: {reason}"
                );
            }
        }
        Ok(())
    }
}

//! The target daemon: accepts source connections, authenticates them, and feeds their frames to
//! the target core, which owns the lock table; this task carries out the volume writes it asks for.
//!
//! A connection that sends a malformed frame, breaks the protocol, fails authentication or goes
//! silent is disconnected with the cause in the log; nothing from it reaches the volume, and the
//! daemon keeps serving its legitimate source.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::{Frame, Nanos};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth;
use crate::datagram;
use crate::source::LinkQueue;
use crate::volume::{errno_of, Volume};
use crate::wire::{frame_reader, read_frames, BATCH_FRAMES};

#[derive(Clone, Debug)]
pub struct TargetOptions {
    pub volume: Volume,
    pub region_size: u64,
    pub pair_id: [u8; 16],
    pub secret: Option<Vec<u8>>,
    /// A connection silent for this long is dropped.
    pub peer_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

enum Msg {
    Attach(u64, LinkQueue),
    /// Frames that arrived together on one connection, in order.
    Frames(u64, Vec<Frame>),
    Detach(u64),
    WriteDone(u64, Result<(), i32>),
    SyncDone(u64, Result<(), i32>),
}

/// Binds the listener (so the caller can report the address) and returns the serving future.
pub async fn bind(addr: &str) -> Result<TcpListener, TargetError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| TargetError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, opts: TargetOptions) {
    let (tx, rx) = mpsc::channel::<Msg>(4096);
    let core = tokio::spawn(core_task(opts.clone(), rx, tx.clone()));
    let opts = Arc::new(opts);
    let mut next_conn = 1u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = next_conn;
        next_conn += 1;
        tokio::spawn(connection(id, stream, peer, opts.clone(), tx.clone()));
        if core.is_finished() {
            break;
        }
    }
}

/// Binds the UDP socket a target serves on (`--transport udp`).
pub fn bind_udp(addr: &str) -> Result<tokio::net::UdpSocket, TargetError> {
    let err = |source| TargetError::Listen {
        addr: addr.to_string(),
        source,
    };
    let a = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(err)?
        .next()
        .ok_or_else(|| err(std::io::Error::other("the name resolves to no address")))?;
    datagram::bind(a).map_err(err)
}

/// Peers a UDP target keeps at once; datagrams from further addresses are dropped.
const MAX_UDP_PEERS: usize = 64;

struct UdpPeer {
    id: u64,
    last: Instant,
}

/// Serves over UDP until the process ends: one frame per datagram, each peer address a
/// connection. Only a HELLO makes an address a peer; a peer silent for the peer timeout, or one
/// the core disconnected for a protocol violation, is forgotten and must HELLO again. Datagrams
/// that are not exactly one well-formed frame are dropped and counted. There is no
/// authentication over UDP: serve it on a network only the pair can reach.
pub async fn serve_udp(sock: tokio::net::UdpSocket, opts: TargetOptions) {
    let (tx, rx) = mpsc::channel::<Msg>(4096);
    let core = tokio::spawn(core_task(opts.clone(), rx, tx.clone()));
    let sock = Arc::new(sock);
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut peers: HashMap<SocketAddr, UdpPeer> = HashMap::new();
    let mut next_conn = 1u64;
    let mut buf = vec![0u8; datagram::RECV_BUFFER];
    let mut sweep = tokio::time::interval(opts.peer_timeout / 4);
    let mut bad = 0u64;
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!("UDP receive failed: {e}");
                        continue;
                    }
                };
                let f = match datagram::decode(&buf[..n]) {
                    Ok(f) => f,
                    Err(e) => {
                        bad += 1;
                        if bad.is_power_of_two() {
                            warn!(%from, dropped = bad, "dropped a bad datagram: {e}");
                        }
                        continue;
                    }
                };
                let known = peers.len();
                let id = match peers.get_mut(&from) {
                    Some(p) => {
                        p.last = Instant::now();
                        p.id
                    }
                    None if f.ty() != specmirror_abi::FrameType::Hello => continue,
                    None if known >= MAX_UDP_PEERS => {
                        warn!(%from, "too many UDP peers, HELLO dropped");
                        continue;
                    }
                    None => {
                        let id = next_conn;
                        next_conn += 1;
                        let (q, out) = LinkQueue::new(4096);
                        if tx.send(Msg::Attach(id, q)).await.is_err() {
                            break;
                        }
                        let (s, gone) = (sock.clone(), gone_tx.clone());
                        tokio::spawn(async move {
                            datagram::send_queued(out, s, Some(from)).await;
                            gone.send((from, id)).ok();
                        });
                        info!(%from, conn = id, "source speaking over UDP");
                        peers.insert(from, UdpPeer { id, last: Instant::now() });
                        id
                    }
                };
                if tx.send(Msg::Frames(id, vec![f])).await.is_err() {
                    break;
                }
            }
            Some((from, id)) = gone_rx.recv() => {
                if peers.get(&from).is_some_and(|p| p.id == id) {
                    peers.remove(&from);
                    info!(%from, conn = id, "source dropped after a protocol violation");
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let mut silent = Vec::new();
                peers.retain(|from, p| {
                    let live = now.duration_since(p.last) < opts.peer_timeout;
                    if !live {
                        silent.push((*from, p.id));
                    }
                    live
                });
                for (from, id) in silent {
                    info!(%from, conn = id, "source silent for {:?}, forgotten", opts.peer_timeout);
                    if tx.send(Msg::Detach(id)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if core.is_finished() {
            break;
        }
    }
}

async fn connection(
    id: u64,
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: Arc<TargetOptions>,
    core: mpsc::Sender<Msg>,
) {
    stream.set_nodelay(true).ok();
    if let Err(e) = auth::as_target(&mut stream, opts.secret.as_deref(), opts.peer_timeout).await {
        warn!(%peer, "refused connection: {e}");
        return;
    }
    info!(%peer, conn = id, "source connected");
    let (rd, wr) = stream.into_split();
    let mut rd = frame_reader(rd);
    let (out_tx, out_rx) = LinkQueue::new(4096);
    if core.send(Msg::Attach(id, out_tx)).await.is_err() {
        return;
    }
    let cut = Arc::new(tokio::sync::Notify::new());
    let cut2 = cut.clone();
    let writer = tokio::spawn(async move {
        crate::source::write_batches(out_rx, wr).await;
        // The core dropped this connection (a protocol violation) or the socket broke.
        cut2.notify_one();
    });
    let mut buf = Vec::new();
    let cause = loop {
        let read = tokio::time::timeout(
            opts.peer_timeout,
            read_frames(&mut rd, &mut buf, BATCH_FRAMES),
        );
        let r = tokio::select! {
            r = read => r,
            _ = cut.notified() => break "disconnected after a protocol violation".to_string(),
        };
        match r {
            Err(_) => break format!("silent for {:?}", opts.peer_timeout),
            Ok(Ok(None)) => break "closed the connection".to_string(),
            Ok(Err(e)) => break format!("sent a bad frame: {e}"),
            Ok(Ok(Some(fs))) => {
                if core.send(Msg::Frames(id, fs)).await.is_err() {
                    break "target shutting down".to_string();
                }
            }
        }
    };
    info!(%peer, conn = id, "source disconnected: {cause}");
    core.send(Msg::Detach(id)).await.ok();
    writer.abort();
}

/// The task that owns the target core and the volume.
struct CoreTask {
    core: Target,
    volume: Volume,
    conns: BTreeMap<u64, LinkQueue>,
    session_conn: Option<u64>,
    me: mpsc::Sender<Msg>,
    start: Instant,
}

async fn core_task(opts: TargetOptions, mut rx: mpsc::Receiver<Msg>, me: mpsc::Sender<Msg>) {
    let mut cfg = TargetConfig::new(opts.volume.size(), opts.region_size, opts.pair_id);
    cfg.data_timeout = opts.peer_timeout.as_nanos() as u64;
    let mut t = CoreTask {
        core: Target::new(cfg),
        volume: opts.volume.clone(),
        conns: BTreeMap::new(),
        session_conn: None,
        me,
        start: Instant::now(),
    };
    loop {
        let msg = match t.core.poll_timeout() {
            Some(d) => {
                let wait = Duration::from_nanos(d.saturating_sub(t.now()));
                tokio::select! {
                    m = rx.recv() => m,
                    _ = tokio::time::sleep(wait) => {
                        let a = t.core.handle_timeout(t.now());
                        t.run(a, None);
                        continue;
                    }
                }
            }
            None => rx.recv().await,
        };
        let Some(msg) = msg else { return };
        match msg {
            Msg::Attach(id, tx) => {
                t.conns.insert(id, tx);
            }
            Msg::Detach(id) => {
                t.conns.remove(&id);
            }
            Msg::Frames(id, fs) => {
                // The answers to frames that arrived together leave together.
                let mut out = Vec::new();
                for f in fs {
                    if !t.conns.contains_key(&id) {
                        break; // disconnected for a violation; its queued frames are void
                    }
                    if f.ty() != specmirror_abi::FrameType::Hello && t.session_conn != Some(id) {
                        // Only the connection that opened the session speaks in it.
                        debug!(
                            conn = id,
                            "frame from a connection without a session, dropped"
                        );
                        continue;
                    }
                    let a = t.core.handle(TargetEvent::Frame(f), t.now());
                    t.run_gathering(a, Some(id), &mut out);
                }
                t.send(out, Some(id));
            }
            Msg::WriteDone(token, result) => {
                let a = t
                    .core
                    .handle(TargetEvent::VolumeWriteDone { token, result }, t.now());
                t.run(a, None);
            }
            Msg::SyncDone(token, result) => {
                let a = t
                    .core
                    .handle(TargetEvent::VolumeSyncDone { token, result }, t.now());
                t.run(a, None);
            }
        }
    }
}

impl CoreTask {
    fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    /// Carries out actions in order; answers go to the connection whose frame caused them
    /// (`reply_to`), or to the session's connection. Immediate completions are fed straight back.
    fn run(&mut self, actions: Vec<TargetAction>, reply_to: Option<u64>) {
        let mut frames = Vec::new();
        self.run_gathering(actions, reply_to, &mut frames);
        self.send(frames, reply_to);
    }

    /// Sends gathered frames in one write to `reply_to`, or to the session's connection.
    fn send(&mut self, frames: Vec<u8>, reply_to: Option<u64>) {
        let to = reply_to.or(self.session_conn);
        if let (false, Some(tx)) = (frames.is_empty(), to.and_then(|c| self.conns.get(&c))) {
            if !tx.offer(frames) {
                debug!("send queue full, frames dropped (the source retransmits)");
            }
        }
    }

    /// Carries out actions, gathering the frames they send so they leave in one write.
    fn run_gathering(
        &mut self,
        actions: Vec<TargetAction>,
        reply_to: Option<u64>,
        frames: &mut Vec<u8>,
    ) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            match a {
                TargetAction::Send(f) => f.encode_into(frames),
                TargetAction::WriteVolume {
                    token,
                    offset,
                    data,
                    fua,
                    ..
                } => {
                    let result = self.volume.write_at(offset, &data).map_err(|e| {
                        warn!("volume write at {offset} failed: {e}");
                        errno_of(&e)
                    });
                    if fua && result.is_ok() {
                        let me = self.me.clone();
                        self.volume.sync_in_background(move |r| {
                            me.blocking_send(Msg::WriteDone(token, r)).ok();
                        });
                    } else {
                        let now = self.now();
                        queue.extend(
                            self.core
                                .handle(TargetEvent::VolumeWriteDone { token, result }, now),
                        );
                    }
                }
                TargetAction::SyncVolume { token } => {
                    let me = self.me.clone();
                    self.volume.sync_in_background(move |r| {
                        if let Err(e) = r {
                            warn!("volume sync failed: errno {e}");
                        }
                        me.blocking_send(Msg::SyncDone(token, r)).ok();
                    });
                }
                TargetAction::SessionStarted { generation } => {
                    info!(generation, "session opened");
                    self.session_conn = reply_to;
                }
                TargetAction::Violation(why) => {
                    if let Some(c) = reply_to {
                        warn!(conn = c, "disconnecting source: {why}");
                        self.conns.remove(&c);
                        if self.session_conn == Some(c) {
                            self.session_conn = None;
                        }
                    }
                }
                TargetAction::LockAcquired { .. } | TargetAction::LockReleased { .. } => {}
            }
        }
    }
}

//! The source daemon: the NBD front end, the local volume, the rollback log on disk, and the link
//! to the target, around the source core.
//!
//! Start-up checks everything before it changes anything: the volume path, the log (it must belong
//! to this volume pair), and, over a probe handshake, that the target's volume matches. Only then
//! is the volume created or extended, the log replayed (unconfirmed writes are written locally
//! again and re-sent), the session opened, and finally the NBD listener opened, so a client that
//! can connect can write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use specmirror_abi::ring::Mode;
use specmirror_abi::{Hello, HelloStatus};
use specmirror_core::source::{Source, SourceAction, SourceConfig, SourceEvent};
use specmirror_core::{errno, Frame, Nanos};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::auth::{self, AuthError};
use crate::datagram::{self, Transport};
use crate::hw::{self, HwDevice, HwPort, HwStats};
use crate::logfile::{LogError, LogFile, PairIdentity};
use crate::nbd::{self, Answer, Export, IoRequest};
use crate::persist::{Background, Persist, Step};
use crate::volume::{Volume, VolumeError};
use crate::wire::{
    frame_reader, probe_answer, probe_exchange, probe_frame, read_frames, ProbeError, BATCH_FRAMES,
};

/// Where the NBD front end listens.
#[derive(Clone, Debug)]
pub enum NbdListen {
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Clone, Debug)]
pub struct SourceOptions {
    pub volume: PathBuf,
    pub size: Option<u64>,
    pub target: String,
    pub nbd: NbdListen,
    pub log: PathBuf,
    pub mode: Mode,
    pub region_size: u64,
    pub pair_id: [u8; 16],
    pub secret: Option<Vec<u8>>,
    /// Writes the target has not confirmed within this time are rolled back and fail (EIO); also
    /// how long start-up waits for the target.
    pub link_timeout: Duration,
    /// fdatasync the rollback log before each local write (power-loss safety).
    pub log_sync: bool,
    /// A link silent for this long is dropped and re-established.
    pub peer_timeout: Duration,
    pub export_name: String,
    /// Bytes of client writes in flight at most; beyond it requests wait at the front end.
    pub max_inflight: u64,
    /// TCP, or UDP datagrams of a path MTU (no authentication: `secret` must be unset).
    pub transport: Transport,
    /// The hardware engine's device (`--engine hw`); `None` runs the software engine.
    pub device: Option<HwDevice>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("authentication with the target failed: {0}")]
    Auth(#[from] AuthError),
    #[error("target {target} unreachable for {waited:?}: {last}")]
    Unreachable {
        target: String,
        waited: Duration,
        last: String,
    },
    #[error("the target refused this volume pair: {0}")]
    Refused(String),
    #[error(
        "write {seq} in the rollback log ({len} bytes, with no client waiting: kept from before \
         a restart, or a rollback's compensation) is longer than the target takes under one lock \
         ({limit} bytes), so it cannot be mirrored to this target; the log keeps it. Start the \
         source against a target that takes it (the software engine's target takes up to 4 MiB), \
         let it mirror the write, then change targets"
    )]
    CannotMirror { seq: u64, len: u64, limit: u64 },
    #[error("rollback log write failed, mirroring cannot go on safely: {0}")]
    LogWrite(std::io::Error),
    #[error("cannot listen for NBD clients on {addr}: {source}")]
    NbdListen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Transport(String),
    #[error("the {device} device: {why}")]
    Device { device: String, why: String },
}

/// A started source: where clients connect, the task to await, and where its time goes.
pub struct Running {
    pub nbd_addr: String,
    pub task: tokio::task::JoinHandle<Result<(), SourceError>>,
    pub stages: Arc<StageStats>,
    /// What the hardware engine's device carried (`None` for the software engine).
    pub hw: Option<Arc<HwStats>>,
}

/// Where acknowledged writes spent their time, summed (nanoseconds): waiting for the core task,
/// in the core task until the write's frames are handed to the link (before-image read, log
/// append), of that in the disk's calls (the before-image read and the log's write), and waiting
/// for the target (the link both ways and the target's work; the local write is made meanwhile).
#[derive(Debug, Default)]
pub struct StageStats {
    pub writes: std::sync::atomic::AtomicU64,
    pub queue_ns: std::sync::atomic::AtomicU64,
    pub process_ns: std::sync::atomic::AtomicU64,
    pub disk_ns: std::sync::atomic::AtomicU64,
    pub mirror_ns: std::sync::atomic::AtomicU64,
}

impl StageStats {
    pub fn reset(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        for a in [
            &self.writes,
            &self.queue_ns,
            &self.process_ns,
            &self.disk_ns,
            &self.mirror_ns,
        ] {
            a.store(0, Relaxed);
        }
    }

    /// Mean microseconds per write: (queue, processing, of it the disk's calls, mirror).
    pub fn means_us(&self) -> (f64, f64, f64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.writes.load(Relaxed).max(1) as f64;
        let us = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64 / n / 1e3;
        (
            us(&self.queue_ns),
            us(&self.process_ns),
            us(&self.disk_ns),
            us(&self.mirror_ns),
        )
    }

    fn add(&self, a: &std::sync::atomic::AtomicU64, d: Duration) {
        a.fetch_add(d.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) enum Msg {
    Io(IoRequest),
    LinkUp(LinkQueue),
    LinkDown,
    Frame(Frame),
    /// Frames that arrived together, in order: handled as one batch.
    Frames(Vec<Frame>),
    LocalDone(u64, Result<(), i32>),
    LocalSynced(u64, Result<(), i32>),
}

/// Checks, probes the target, recovers, opens the session and the NBD listener.
pub async fn start(opts: SourceOptions) -> Result<Running, SourceError> {
    let size = Volume::probe_size(&opts.volume, opts.size)?;
    let identity = PairIdentity {
        pair_id: opts.pair_id,
        volume_size: size,
        region_size: opts.region_size,
    };
    LogFile::check(&opts.log, &identity)?;
    if opts.transport != Transport::Tcp && opts.secret.is_some() {
        return Err(SourceError::Transport(
            "the UDP transport does not authenticate: use --transport tcp with --secret-file"
                .into(),
        ));
    }
    let link = match (&opts.device, opts.transport) {
        (Some(d), Transport::Udp { .. }) => {
            return Err(SourceError::Device {
                device: d.name.clone(),
                why: "the hardware engine runs over TCP: drop --transport udp".into(),
            })
        }
        (Some(d), Transport::Tcp) => {
            let why = |why: String| SourceError::Device {
                device: d.name.clone(),
                why,
            };
            let s = probe(&opts, size).await?;
            let s = s.into_std().map_err(|e| why(e.to_string()))?;
            let port = (d.open)(s).map_err(why)?;
            port.check_identity().map_err(|e| why(e.to_string()))?;
            Link::Hw(port)
        }
        (None, Transport::Tcp) => Link::Tcp(probe(&opts, size).await?),
        (None, Transport::Udp { .. }) => Link::Udp(probe_udp(&opts, size).await?),
    };
    // Every check passed: from here on the disk may change.
    let volume = Volume::open(&opts.volume, opts.size)?;
    let (log, mut replayed) = LogFile::open(&opts.log, identity)?;
    // A client write's data is where it was written, on the volume.
    replayed.read_data(&volume)?;
    if replayed.truncated > 0 {
        warn!(
            bytes = replayed.truncated,
            "rollback log had a torn tail (a crash during an append); cut it off"
        );
    }
    if !replayed.records.is_empty() {
        info!(
            entries = replayed.records.len(),
            "rollback log holds unconfirmed writes: writing them locally again and re-sending"
        );
    }
    let mut cfg = SourceConfig::new(size, opts.region_size, opts.pair_id);
    cfg.mode = opts.mode;
    cfg.write_timeout = opts.link_timeout.as_nanos() as u64;
    cfg.max_data_payload = opts.transport.max_payload();
    let (core, recovery) = Source::recover(cfg, replayed.generation, replayed.records);
    let (tx, rx) = mpsc::channel::<Msg>(4096);
    // The front end's requests reach the core task on a channel of their own: no hop between.
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
        clients: BTreeMap::new(),
        answers: Vec::new(),
        flushes: BTreeMap::new(),
        next_handle: 1,
        start: Instant::now(),
        ready: ready_tx,
        stages: Arc::new(StageStats::default()),
        handed: BTreeMap::new(),
        disk_time: Duration::ZERO,
    };
    let stages = task.stages.clone();
    task.run(recovery)?;
    let mut hw = None;
    match link {
        Link::Tcp(stream) => {
            tokio::spawn(link_task(Some(stream), opts.clone(), tx.clone()));
        }
        Link::Udp(sock) => {
            tokio::spawn(udp_link_task(sock, opts.clone(), tx.clone()));
        }
        Link::Hw(port) => {
            let stats = Arc::new(HwStats::default());
            hw = Some(stats.clone());
            let (o, device, core, rt) = (
                opts.clone(),
                opts.device.clone().expect("a device"),
                tx.clone(),
                tokio::runtime::Handle::current(),
            );
            std::thread::Builder::new()
                .name("specmirror-hw-link".into())
                .spawn(move || hw::link_thread(port, o, device, core, rt, stats))
                .map_err(|e| SourceError::Device {
                    device: "link".into(),
                    why: e.to_string(),
                })?;
        }
    }
    let core = tokio::spawn(task.serve(rx, io_rx));
    // Clients are let in only once the session is up.
    loop {
        if *ready_rx.borrow() {
            break;
        }
        if ready_rx.changed().await.is_err() {
            return Err(core.await.unwrap_or(Ok(())).err().unwrap_or_else(|| {
                SourceError::Refused("the mirror stopped before the session opened".into())
            }));
        }
    }
    let export = Arc::new(Export {
        name: opts.export_name.clone(),
        volume,
        mirror: io_tx,
        inflight: nbd::inflight_budget(opts.max_inflight),
        reads_through_mirror: false,
    });
    let nbd_addr = listen_nbd(&opts.nbd, export).await?;
    info!(nbd = %nbd_addr, "accepting NBD clients");
    Ok(Running {
        nbd_addr,
        task: core,
        stages,
        hw,
    })
}

pub(crate) async fn listen_nbd(l: &NbdListen, export: Arc<Export>) -> Result<String, SourceError> {
    match l {
        NbdListen::Tcp(addr) => {
            let lst = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| SourceError::NbdListen {
                    addr: addr.clone(),
                    source,
                })?;
            let local = lst.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tokio::spawn(async move {
                loop {
                    match lst.accept().await {
                        Ok((s, peer)) => {
                            s.set_nodelay(true).ok();
                            let e = export.clone();
                            tokio::spawn(async move {
                                if let Err(err) = nbd::serve(s, e).await {
                                    warn!(%peer, "NBD client dropped: {err}");
                                }
                            });
                        }
                        Err(e) => warn!("NBD accept failed: {e}"),
                    }
                }
            });
            Ok(local)
        }
        NbdListen::Unix(path) => {
            if let Ok(m) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_socket() {
                    std::fs::remove_file(path).ok();
                }
            }
            let lst =
                tokio::net::UnixListener::bind(path).map_err(|source| SourceError::NbdListen {
                    addr: path.display().to_string(),
                    source,
                })?;
            tokio::spawn(async move {
                loop {
                    match lst.accept().await {
                        Ok((s, _)) => {
                            let e = export.clone();
                            tokio::spawn(async move {
                                if let Err(err) = nbd::serve(s, e).await {
                                    warn!("NBD client dropped: {err}");
                                }
                            });
                        }
                        Err(e) => warn!("NBD accept failed: {e}"),
                    }
                }
            });
            Ok(path.display().to_string())
        }
    }
}

/// Connects and authenticates, retrying until `within` has passed.
pub(crate) async fn connect(
    opts: &SourceOptions,
    within: Duration,
) -> Result<TcpStream, SourceError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let last = match TcpStream::connect(&opts.target).await {
            Ok(mut s) => {
                s.set_nodelay(true).ok();
                match auth::as_source(&mut s, opts.secret.as_deref(), opts.peer_timeout).await {
                    Ok(()) => return Ok(s),
                    Err(e @ AuthError::Io(_)) | Err(e @ AuthError::Timeout(_)) => e.to_string(),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= within {
            return Err(SourceError::Unreachable {
                target: opts.target.clone(),
                waited: started.elapsed(),
                last,
            });
        }
        debug!(target = %opts.target, "target not reachable yet: {last}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The probe handshake (generation 0): is the target's volume the one this pair expects?
async fn probe(opts: &SourceOptions, size: u64) -> Result<TcpStream, SourceError> {
    let mut s = connect(opts, opts.link_timeout).await?;
    let hello = Hello::for_pair(size, opts.region_size, opts.pair_id, 1, HelloStatus::Ok);
    let ack = match probe_exchange(&mut s, &hello, opts.peer_timeout).await {
        Ok(ack) => ack,
        Err(e @ ProbeError::Malformed(_)) => return Err(SourceError::Refused(e.to_string())),
        Err(e) => {
            return Err(SourceError::Unreachable {
                target: opts.target.clone(),
                waited: Duration::ZERO,
                last: e.to_string(),
            })
        }
    };
    check_ack(&ack, opts, size)?;
    Ok(s)
}

/// Whether the probe's answer accepts this volume pair; the reason when it does not.
fn check_ack(ack: &Hello, opts: &SourceOptions, size: u64) -> Result<(), SourceError> {
    let why = match ack.status {
        HelloStatus::Ok => return Ok(()),
        HelloStatus::VolumeSizeMismatch => format!(
            "target volume is {} bytes, source volume is {size} bytes",
            ack.volume_size
        ),
        HelloStatus::RegionSizeMismatch => format!(
            "target uses {}-byte regions, source {}",
            ack.region_size, opts.region_size
        ),
        HelloStatus::PairIdMismatch => "the target serves another volume pair (--pair)".into(),
        HelloStatus::RoleMismatch => {
            "the address is a node of a bidirectional pair, not a one-way target".into()
        }
        other => format!("{other:?}"),
    };
    Err(SourceError::Refused(why))
}

/// Keeps a link to the target: reconnects with backoff, feeds frames to the core.
async fn link_task(first: Option<TcpStream>, opts: SourceOptions, core: mpsc::Sender<Msg>) {
    let mut next = first;
    loop {
        let stream = match next.take() {
            Some(s) => s,
            None => match connect(&opts, Duration::from_secs(u64::MAX / 4)).await {
                Ok(s) => s,
                Err(e) => {
                    error!("cannot reach the target: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        info!(target = %opts.target, "link to target up");
        let (rd, wr) = stream.into_split();
        let mut rd = frame_reader(rd);
        let (tx, rx) = LinkQueue::new(8192);
        if core.send(Msg::LinkUp(tx)).await.is_err() {
            return;
        }
        let writer = tokio::spawn(write_batches(rx, wr));
        let mut buf = Vec::new();
        let cause = loop {
            let read = read_frames(&mut rd, &mut buf, BATCH_FRAMES);
            match tokio::time::timeout(opts.peer_timeout, read).await {
                Err(_) => break format!("target silent for {:?}", opts.peer_timeout),
                Ok(Ok(None)) => break "target closed the connection".to_string(),
                Ok(Err(e)) => break format!("bad frame from the target: {e}"),
                Ok(Ok(Some(fs))) => {
                    if core.send(Msg::Frames(fs)).await.is_err() {
                        return;
                    }
                }
            }
        };
        writer.abort();
        warn!("link to target down: {cause}; reconnecting");
        if core.send(Msg::LinkDown).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first link to the target, after the probe.
enum Link {
    Tcp(TcpStream),
    Udp(Arc<UdpSocket>),
    /// The hardware engine's device, open on the probed connection.
    Hw(Box<dyn HwPort>),
}

/// The probe over UDP: a socket connected to the target, its HELLO sent again every 100 ms until
/// an answer or the link timeout. A refusal from the target's host (port closed) is retried too.
async fn probe_udp(opts: &SourceOptions, size: u64) -> Result<Arc<UdpSocket>, SourceError> {
    let unreachable = |last: String, waited| SourceError::Unreachable {
        target: opts.target.clone(),
        waited,
        last,
    };
    let started = Instant::now();
    let peer = tokio::net::lookup_host(&opts.target)
        .await
        .map_err(|e| unreachable(e.to_string(), Duration::ZERO))?
        .next()
        .ok_or_else(|| unreachable("the name resolves to no address".into(), Duration::ZERO))?;
    let sock = datagram::bind_for(peer).map_err(|e| unreachable(e.to_string(), Duration::ZERO))?;
    sock.connect(peer)
        .await
        .map_err(|e| unreachable(e.to_string(), Duration::ZERO))?;
    let hello = Hello::for_pair(size, opts.region_size, opts.pair_id, 1, HelloStatus::Ok);
    let probe = probe_frame(&hello).encode();
    let mut buf = vec![0u8; datagram::RECV_BUFFER];
    let mut last = "no answer".to_string();
    loop {
        if started.elapsed() >= opts.link_timeout {
            return Err(unreachable(last, started.elapsed()));
        }
        if let Err(e) = sock.send(&probe).await {
            last = e.to_string();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(r) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            let n = match r {
                Ok(n) => n,
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
            };
            let Ok(f) = datagram::decode(&buf[..n]) else {
                continue;
            };
            if let Some(ack) = probe_answer(&f) {
                let ack = ack.map_err(|e| SourceError::Refused(e.to_string()))?;
                check_ack(&ack, opts, size)?;
                return Ok(Arc::new(sock));
            }
        }
    }
}

/// Keeps the UDP link: the link is up while the target answers. Silence for the peer timeout, or
/// the target's host refusing the datagrams, takes it down; after a pause it comes up again and
/// the core opens a new session with a HELLO.
async fn udp_link_task(sock: Arc<UdpSocket>, opts: SourceOptions, core: mpsc::Sender<Msg>) {
    let mut buf = vec![0u8; datagram::RECV_BUFFER];
    let mut pause = Duration::from_millis(50);
    let mut bad = 0u64;
    loop {
        info!(target = %opts.target, "link to target up (UDP)");
        let (tx, rx) = LinkQueue::new(8192);
        if core.send(Msg::LinkUp(tx)).await.is_err() {
            return;
        }
        let writer = tokio::spawn(datagram::send_queued(rx, sock.clone(), None));
        let cause = loop {
            match tokio::time::timeout(opts.peer_timeout, sock.recv(&mut buf)).await {
                Err(_) => break format!("target silent for {:?}", opts.peer_timeout),
                Ok(Err(e)) => break format!("target unreachable: {e}"),
                Ok(Ok(n)) => match datagram::decode(&buf[..n]) {
                    Ok(f) => {
                        pause = Duration::from_millis(50);
                        if core.send(Msg::Frame(f)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        if bad.is_power_of_two() {
                            warn!(dropped = bad, "dropped a bad datagram from the target: {e}");
                        }
                    }
                },
            }
        };
        writer.abort();
        warn!("link to target down: {cause}; retrying in {pause:?}");
        if core.send(Msg::LinkDown).await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Bytes a link's send queue may hold; frames offered beyond it are dropped (the protocol
/// retransmits them), so a slow or stalled link cannot grow memory without bound.
const LINK_QUEUE_BYTES: u64 = 64 << 20;
/// A write to the socket gathers queued frames up to about this many bytes.
const COALESCE_BYTES: usize = 1 << 20;

/// A link's send queue, bounded in frames and in bytes.
#[derive(Clone, Debug)]
pub(crate) struct LinkQueue {
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<std::sync::atomic::AtomicU64>,
}

impl LinkQueue {
    pub(crate) fn new(frames: usize) -> (LinkQueue, LinkReceiver) {
        let (tx, rx) = mpsc::channel(frames);
        let queued = Arc::new(std::sync::atomic::AtomicU64::new(0));
        (
            LinkQueue {
                tx,
                queued: queued.clone(),
            },
            LinkReceiver { rx, queued },
        )
    }

    /// Queues `b` unless the queue is full; false when it was dropped.
    pub(crate) fn offer(&self, b: Vec<u8>) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let n = b.len() as u64;
        if self.queued.load(Relaxed) + n > LINK_QUEUE_BYTES {
            return false;
        }
        self.queued.fetch_add(n, Relaxed);
        if self.tx.try_send(b).is_err() {
            self.queued.fetch_sub(n, Relaxed);
            return false;
        }
        true
    }
}

pub(crate) struct LinkReceiver {
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<std::sync::atomic::AtomicU64>,
}

impl LinkReceiver {
    /// The next batch of encoded frames; `None` once the core dropped the link.
    pub(crate) async fn recv(&mut self) -> Option<Vec<u8>> {
        let b = self.rx.recv().await?;
        self.queued
            .fetch_sub(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Some(b)
    }

    /// A batch already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Vec<u8>> {
        let b = self.rx.try_recv().ok()?;
        self.queued
            .fetch_sub(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Some(b)
    }
}

/// Writes queued frames to the socket, gathering what is queued (up to about a megabyte) into
/// one write.
pub(crate) async fn write_batches<W: tokio::io::AsyncWrite + Unpin>(mut q: LinkReceiver, mut w: W) {
    while let Some(mut b) = q.recv().await {
        while b.len() < COALESCE_BYTES {
            let Some(more) = q.try_recv() else { break };
            b.extend_from_slice(&more);
        }
        if w.write_all(&b).await.is_err() {
            break;
        }
    }
}

/// Client writes the core task takes at once, at most, and the bytes after which it takes no
/// more: a batch's frames leave only once all its before-images are read and its records written,
/// so a longer batch holds its first write back longer.
const BATCH_WRITES: usize = 8;
const BATCH_BYTES: usize = 256 << 10;

/// A client write as the core task takes it off the front end's channel.
struct ClientWrite {
    offset: u64,
    data: Vec<u8>,
    fua: bool,
    received: Instant,
    reply: Answer,
}

impl ClientWrite {
    /// The write `r` asks for, or `r` itself when it is not a write.
    fn from_request(r: IoRequest) -> Result<ClientWrite, IoRequest> {
        match r {
            IoRequest::Write {
                offset,
                data,
                fua,
                received,
                reply,
            } => Ok(ClientWrite {
                offset,
                data,
                fua,
                received,
                reply,
            }),
            other => Err(other),
        }
    }
}

/// Copies into `buf` (the volume's bytes from `offset`) the part of `data`, to be written at
/// `at`, that falls within it.
fn overlay(buf: &mut [u8], offset: u64, data: &[u8], at: u64) {
    let lo = offset.max(at);
    let hi = offset
        .saturating_add(buf.len() as u64)
        .min(at.saturating_add(data.len() as u64));
    if lo < hi {
        let (b, d) = ((lo - offset) as usize, (lo - at) as usize);
        let n = (hi - lo) as usize;
        buf[b..b + n].copy_from_slice(&data[d..d + n]);
    }
}

struct CoreTask {
    core: Source,
    disk: Persist,
    link: Option<LinkQueue>,
    clients: BTreeMap<u64, Answer>,
    /// Client writes answered in the current batch, told once its log records are written.
    answers: Vec<(Answer, Result<(), i32>)>,
    flushes: BTreeMap<u64, oneshot::Sender<Result<(), i32>>>,
    next_handle: u64,
    start: Instant,
    ready: watch::Sender<bool>,
    stages: Arc<StageStats>,
    /// When each client write left the core task (for the mirror stage).
    handed: BTreeMap<u64, Instant>,
    /// Time in the disk's calls while the current message is handled (for the disk stage).
    disk_time: Duration,
}

impl CoreTask {
    fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    async fn serve(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut io_rx: mpsc::Receiver<IoRequest>,
    ) -> Result<(), SourceError> {
        // A request taken off the front end's channel while gathering writes, not a write.
        let mut held: Option<IoRequest> = None;
        loop {
            let wait = self
                .core
                .poll_timeout()
                .map(|d| Duration::from_nanos(d.saturating_sub(self.now())))
                .unwrap_or(Duration::from_secs(3600));
            let msg = match held.take() {
                Some(r) => Some(Msg::Io(r)),
                None => tokio::select! {
                    m = rx.recv() => m,
                    Some(r) = io_rx.recv() => Some(Msg::Io(r)),
                    _ = tokio::time::sleep(wait) => {
                        let a = self.core.handle_timeout(self.now());
                        self.run(a)?;
                        continue;
                    }
                },
            };
            let Some(msg) = msg else { return Ok(()) };
            let ev = match msg {
                Msg::Io(IoRequest::Write {
                    offset,
                    data,
                    fua,
                    received,
                    reply,
                }) => {
                    // The writes already waiting behind this one go with it.
                    let mut batch = vec![ClientWrite {
                        offset,
                        data,
                        fua,
                        received,
                        reply,
                    }];
                    let mut bytes = batch[0].data.len();
                    while batch.len() < BATCH_WRITES && bytes < BATCH_BYTES {
                        let Ok(r) = io_rx.try_recv() else { break };
                        match ClientWrite::from_request(r) {
                            Ok(w) => {
                                bytes += w.data.len();
                                batch.push(w);
                            }
                            Err(other) => {
                                held = Some(other);
                                break;
                            }
                        }
                    }
                    self.client_writes(batch).await?;
                    continue;
                }
                Msg::Io(IoRequest::Read { offset, len, reply }) => {
                    // A one-way source's export reads the volume itself; answer anyway.
                    let mut b = vec![0u8; len as usize];
                    reply
                        .send(
                            self.disk
                                .volume
                                .read_at(offset, &mut b)
                                .map(|_| b)
                                .map_err(|_| errno::EIO),
                        )
                        .ok();
                    continue;
                }
                Msg::Io(IoRequest::Flush { reply }) => {
                    let handle = self.next_handle;
                    self.next_handle += 1;
                    self.flushes.insert(handle, reply);
                    SourceEvent::ClientFlush { handle }
                }
                Msg::LinkUp(tx) => {
                    self.link = Some(tx);
                    SourceEvent::Connected
                }
                Msg::LinkDown => {
                    self.link = None;
                    SourceEvent::Disconnected
                }
                Msg::Frame(f) => SourceEvent::Frame(f),
                Msg::Frames(fs) => {
                    // The records and frames of answers that arrived together: one log write,
                    // one link write.
                    let mut frames = Vec::new();
                    let mut r = Ok(());
                    for f in fs {
                        let a = self.core.handle(SourceEvent::Frame(f), self.now());
                        r = self.run_gathering(a, &mut frames);
                        if r.is_err() {
                            break;
                        }
                    }
                    self.finish(frames, r)?;
                    continue;
                }
                Msg::LocalDone(seq, result) => SourceEvent::LocalWriteDone { seq, result },
                Msg::LocalSynced(flush, result) => SourceEvent::LocalSyncDone { flush, result },
            };
            let a = self.core.handle(ev, self.now());
            self.run(a)?;
        }
    }

    /// Client writes that were waiting together. Each one's before-image is read as the volume
    /// will stand once the batch's earlier writes are on it; then the batch's log records reach
    /// the file in one write, before any of its volume writes, and its frames leave in one write.
    async fn client_writes(&mut self, batch: Vec<ClientWrite>) -> Result<(), SourceError> {
        let picked = Instant::now();
        self.disk_time = Duration::ZERO;
        let mut actions = Vec::new();
        let mut handles = Vec::with_capacity(batch.len());
        for w in batch {
            self.stages.add(
                &self.stages.queue_ns,
                picked.saturating_duration_since(w.received),
            );
            let end = w.offset.saturating_add(w.data.len() as u64);
            let read = Instant::now();
            let mut before = if end <= self.disk.volume.size() {
                match self.disk.volume.read_before(w.offset, w.data.len()) {
                    Ok(b) => b,
                    Err(_) => {
                        w.reply.send(Err(errno::EIO)).ok();
                        continue;
                    }
                }
            } else {
                // Past the end: the core refuses the write.
                vec![0u8; w.data.len()]
            };
            self.disk_time += read.elapsed();
            // The local writes gathered so far are carried out after this read.
            for a in &actions {
                if let SourceAction::WriteLocal { offset, data, .. } = a {
                    overlay(&mut before, w.offset, data, *offset);
                }
            }
            let handle = self.next_handle;
            self.next_handle += 1;
            self.clients.insert(handle, w.reply);
            handles.push(handle);
            let ev = SourceEvent::ClientWrite {
                handle,
                offset: w.offset,
                data: w.data,
                before,
                fua: w.fua,
            };
            actions.extend(self.core.handle(ev, self.now()));
        }
        // The records reach the file in one write; then the frames leave, in one write, without
        // waiting for the volume writes, which come last.
        let (mut first, rest): (Vec<_>, Vec<_>) = actions
            .into_iter()
            .partition(|a| matches!(a, SourceAction::LogAppend(_) | SourceAction::Send(_)));
        first.sort_by_key(|a| !matches!(a, SourceAction::LogAppend(_)));
        let mut frames = Vec::new();
        let r = self.run_gathering(first, &mut frames);
        let t = Instant::now();
        self.disk.barrier().map_err(SourceError::LogWrite)?;
        self.disk_time += t.elapsed();
        self.finish(frames, r)?;
        // The writes have left the core task; their local writes overlap the wait for the target.
        let (handed, disk_time) = (Instant::now(), self.disk_time);
        // The link's writer puts the frames on the wire before the volume writes are made.
        tokio::task::yield_now().await;
        self.run(rest)?;
        for h in handles {
            self.stages.add(&self.stages.process_ns, handed - picked);
            self.stages.add(&self.stages.disk_ns, disk_time);
            if self.clients.contains_key(&h) {
                self.handed.insert(h, handed);
            }
        }
        Ok(())
    }

    /// Carries out actions in order; immediate completions are fed straight back. Frames are
    /// gathered and leave together (LOCK and DATA in one write) when the batch is done.
    fn run(&mut self, actions: Vec<SourceAction>) -> Result<(), SourceError> {
        let mut frames = Vec::new();
        let r = self.run_gathering(actions, &mut frames);
        self.finish(frames, r)
    }

    /// The end of a batch: its log records reach the file, then its clients are answered and
    /// its frames leave in one write.
    fn finish(&mut self, frames: Vec<u8>, r: Result<(), SourceError>) -> Result<(), SourceError> {
        // The batch's remaining log records (grants, confirmations, removals) in one write.
        let t = Instant::now();
        self.disk.flush().map_err(SourceError::LogWrite)?;
        self.disk_time += t.elapsed();
        // A client hears of its write only once the log says what became of it.
        for (answer, result) in self.answers.drain(..) {
            answer.send(result).ok();
        }
        if !frames.is_empty() {
            if let Some(tx) = &self.link {
                if !tx.offer(frames) {
                    debug!("link queue full, frames dropped (retransmitted later)");
                }
            }
        }
        r
    }

    fn run_gathering(
        &mut self,
        actions: Vec<SourceAction>,
        frames: &mut Vec<u8>,
    ) -> Result<(), SourceError> {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            let t = Instant::now();
            let step = self.disk.source_action(a).map_err(SourceError::LogWrite);
            self.disk_time += t.elapsed();
            let a = match step? {
                Step::Done => continue,
                Step::LocalWriteDone { seq, result } => {
                    let now = self.now();
                    queue.extend(
                        self.core
                            .handle(SourceEvent::LocalWriteDone { seq, result }, now),
                    );
                    continue;
                }
                Step::Other(a) => a,
            };
            match a {
                SourceAction::Send(f) => f.encode_into(frames),
                SourceAction::AckWrite { handle, result } => {
                    if let Some(t) = self.handed.remove(&handle) {
                        if result.is_ok() {
                            self.stages.add(&self.stages.mirror_ns, t.elapsed());
                            self.stages
                                .writes
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    if let Some(r) = self.clients.remove(&handle) {
                        self.answers.push((r, result));
                    }
                }
                SourceAction::AckFlush { handle, result } => {
                    if let Some(r) = self.flushes.remove(&handle) {
                        r.send(result).ok();
                    }
                }
                SourceAction::SessionUp { generation } => {
                    info!(generation, "session with the target open");
                    match self.core.target_limits() {
                        (None, true, None) => {}
                        (limit, implicit, window) => info!(
                            write_limit = limit.unwrap_or(specmirror_abi::MAX_PAYLOAD as u64),
                            implicit_locks = implicit,
                            window = window.unwrap_or(0),
                            "the target takes writes up to write_limit under one lock (longer \
                             ones go split), implicit locks only if implicit_locks, and at most \
                             window writes at once (0: any number); the source sends them so"
                        ),
                    }
                    self.ready.send_replace(true);
                }
                SourceAction::Refused(status) => {
                    return Err(SourceError::Refused(format!("{status:?}")));
                }
                SourceAction::CannotMirror { seq, len, limit } => {
                    return Err(SourceError::CannotMirror { seq, len, limit });
                }
                // Only the bidirectional node's serve policy answers ahead of the peer.
                SourceAction::AckedAlone { .. } => {}
                SourceAction::RolledBack { seq, errno, reason } => {
                    warn!(
                        seq,
                        errno, "write rolled back and failed to its client: {reason}"
                    );
                }
                // Disk actions were carried out above.
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_link_queue_is_bounded_in_bytes_and_delivers_in_order() {
        let (q, rx) = LinkQueue::new(1 << 20);
        let frame = vec![7u8; 4 << 20];
        let mut accepted = 0u64;
        while q.offer(frame.clone()) {
            accepted += 1;
        }
        assert_eq!(
            accepted * (4 << 20),
            LINK_QUEUE_BYTES,
            "fills to the byte bound"
        );
        assert!(!q.offer(vec![1]), "full");
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(write_batches(rx, b));
        let mut got = vec![0u8; (accepted * (4 << 20)) as usize];
        a.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
        assert!(q.offer(vec![1, 2, 3]), "room again once written");
        let mut tail = [0u8; 3];
        a.read_exact(&mut tail).await.unwrap();
        assert_eq!(tail, [1, 2, 3]);
        drop(q);
        writer.await.unwrap();
    }

    #[test]
    fn overlay_copies_only_the_overlap() {
        let mut b = vec![0u8; 8];
        overlay(&mut b, 100, &[1, 2, 3, 4], 98);
        assert_eq!(b, [3, 4, 0, 0, 0, 0, 0, 0]);
        overlay(&mut b, 100, &[9; 4], 106);
        assert_eq!(b, [3, 4, 0, 0, 0, 0, 9, 9]);
        overlay(&mut b, 100, &[7; 4], 108);
        assert_eq!(b, [3, 4, 0, 0, 0, 0, 9, 9], "no overlap, no change");
    }

    /// Writes to one block that reach the core task together are taken as one batch; each one's
    /// before-image in the rollback log is what the write before it left there.
    #[tokio::test]
    async fn writes_taken_together_log_the_before_images_of_the_writes_before_them() {
        use crate::target::{self, TargetOptions};
        let dir = tempfile::tempdir().unwrap();
        let pair_id = [3u8; 16];
        // The target runs on a runtime of its own, shut down once the session is open: the
        // writes then stay in the rollback log, waiting for it.
        let trt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = trt
            .spawn(target::bind("127.0.0.1:0"))
            .await
            .unwrap()
            .unwrap();
        let taddr = listener.local_addr().unwrap().to_string();
        let topts = TargetOptions {
            volume: Volume::open(&dir.path().join("t.img"), Some(1 << 20)).unwrap(),
            region_size: 64 << 10,
            pair_id,
            secret: None,
            peer_timeout: Duration::from_secs(10),
        };
        trt.spawn(target::serve(listener, topts));
        let opts = SourceOptions {
            volume: dir.path().join("s.img"),
            size: Some(1 << 20),
            target: taddr,
            nbd: NbdListen::Tcp("127.0.0.1:0".into()),
            log: dir.path().join("s.log"),
            mode: Mode::Speculative,
            region_size: 64 << 10,
            pair_id,
            secret: None,
            link_timeout: Duration::from_secs(60),
            log_sync: false,
            peer_timeout: Duration::from_secs(10),
            export_name: "x".into(),
            max_inflight: 64 << 20,
            transport: Transport::Tcp,
            device: None,
        };
        let running = start(opts).await.unwrap();
        trt.shutdown_background();
        let client = crate::nbd_client::NbdClient::connect(&running.nbd_addr)
            .await
            .unwrap();
        // Eight writes of 8 KiB, each over half of the one before: on this one-thread runtime
        // they are all sent before the source reads any.
        const N: u64 = 8;
        let writes: Vec<_> = (1..=N)
            .map(|k| {
                let c = client.clone();
                tokio::spawn(async move { c.write(k * 4096, &[k as u8; 8192], false).await })
            })
            .collect();
        let copy = dir.path().join("copy.log");
        let identity = PairIdentity {
            pair_id,
            volume_size: 1 << 20,
            region_size: 64 << 10,
        };
        let mut records = Vec::new();
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            std::fs::copy(dir.path().join("s.log"), &copy).unwrap();
            records = LogFile::open(&copy, identity).unwrap().1.records;
            if records.len() as u64 == N {
                break;
            }
        }
        assert_eq!(records.len() as u64, N, "every write waits in the log");
        records.sort_by_key(|r| r.offset);
        let mut volume = vec![0u8; (N as usize + 2) * 4096];
        for r in &records {
            let k = r.offset / 4096;
            let at = r.offset as usize..r.offset as usize + 8192;
            assert_eq!(
                r.before.as_deref(),
                Some(&volume[at.clone()]),
                "before-image of write {k}"
            );
            volume[at].fill(k as u8);
        }
        for w in writes {
            w.abort();
        }
    }
}

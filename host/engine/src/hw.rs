//! The hardware engine's link: the source core runs as in the software engine, and the first
//! transmission of each write (its LOCK and DATA back to back, or its implicit-lock DATA) leaves
//! through the device instead of the socket: the write's data goes into DMA memory, a descriptor
//! onto the submission ring, and the device sends the frames itself. Everything else the core
//! sends (the handshake, heartbeats, flushes, lock re-issues after a rejection, retransmissions,
//! FUA and compensation writes, writes larger than a data slot) goes out through the device's host
//! queue, as the software engine would send it.
//!
//! The device hands every frame it receives to the host as well as to its own answer tracker, so
//! the core sees the target's answers exactly as in the software engine and keeps its rollback log
//! by them; the device's completion entries free the write's ring slot and data slot.
//!
//! Two paths share the link, so a frame the host queue sends can pass one the device has yet to
//! send. The engine never lets a copy of a write (a retransmission, an abort) leave by the host
//! queue before the device has taken that write: the target could answer the copy before the
//! device tracks the write, and the device would wait for an answer that never comes again.
//! Such a copy is dropped; the core sends it again later if it still needs to.
//!
//! A lost link drops the device (a reset: nothing of the old session is left in it) and opens it
//! again on the next connection; the core re-sends what the target has not confirmed. So does a
//! device that holds a write without an outcome for longer than the peer may stay silent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use specmirror_abi::le::{Le32, Le64};
use specmirror_abi::regs;
use specmirror_abi::ring::{CompletionStatus, Descriptor, Mode};
use specmirror_abi::{Flags, FrameType, Header};
use specmirror_core::region::Regions;
use specmirror_core::Frame;
use specmirror_driver::{ring, Device, DmaMemory};
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};

use crate::source::{LinkQueue, LinkReceiver, Msg, SourceOptions};

/// A device that can carry the source's hot path: the driver's `Device` seam, and a host queue
/// beside the device's own transmit path.
pub trait HwPort: Device + Send {
    /// Sends a frame the device does not make itself.
    fn host_send(&self, frame: Vec<u8>) -> Result<(), String>;
    /// The next frame received from the target (a copy of every frame), waiting up to
    /// `timeout`; an error once the link is down.
    fn host_recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, String>;
}

/// Opens the device over an authenticated connection to the target.
pub type HwOpen =
    dyn Fn(std::net::TcpStream) -> Result<Box<dyn HwPort>, String> + Send + Sync + 'static;

/// The device the hardware engine uses (`--engine hw --device ...`).
#[derive(Clone)]
pub struct HwDevice {
    pub name: String,
    pub open: Arc<HwOpen>,
}

impl std::fmt::Debug for HwDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HwDevice({})", self.name)
    }
}

/// What came of offering a write to the device.
enum Post {
    Sent,
    /// No room now (data slots or ring); later.
    Busy,
    /// Not for the device (too large, or a retransmission of a write it has in flight).
    Never,
}

/// How long a write waits for room in the device before it goes by the host queue.
const SLOT_WAIT: Duration = Duration::from_millis(20);

/// Submission and completion ring entries.
const RING_ENTRIES: u32 = 64;
/// Data slots in DMA memory, and the bytes each holds: a write larger goes by the host queue.
const DATA_SLOTS: usize = 32;
const DATA_SLOT: usize = 1 << 20;

/// What the hardware engine carried, for the log and the tests.
#[derive(Debug, Default)]
pub struct HwStats {
    /// Writes the device sent (one descriptor each).
    pub descriptors: AtomicU64,
    /// Frames that went by the host queue.
    pub host_frames: AtomicU64,
    /// Copies of writes the device had not taken yet, dropped (the core sends them again).
    pub held_back: AtomicU64,
}

impl HwStats {
    /// (descriptors, host frames, held back).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.descriptors.load(Ordering::Relaxed),
            self.host_frames.load(Ordering::Relaxed),
            self.held_back.load(Ordering::Relaxed),
        )
    }
}

/// A write the device has: its data slot, its descriptor's free-running ring index, and when it
/// was posted.
struct Held {
    slot: usize,
    index: u32,
    posted: Instant,
}

/// Whether the device, its submission head at `head`, has taken the descriptor at ring index
/// `index` (free-running counters: once the head has passed it).
fn taken(head: u32, index: u32) -> bool {
    (head.wrapping_sub(index) as i32) > 0
}

/// The device open on one connection, with its rings and data slots.
struct Open {
    port: Box<dyn HwPort>,
    sq: ring::SubmissionRing,
    cq: ring::CompletionRing,
    data: DmaMemory,
    free: Vec<usize>,
    /// The writes the device has in flight, by lock id.
    held: HashMap<u64, Held>,
    generation: Option<u32>,
    region_size: u64,
}

impl Open {
    fn new(port: Box<dyn HwPort>, region_size: u64) -> Result<Open, String> {
        port.check_identity().map_err(|e| e.to_string())?;
        port.mmio()
            .write(regs::REGION_LOG2, region_size.trailing_zeros());
        let (sq, cq) = ring::setup(&*port, RING_ENTRIES).map_err(|e| e.to_string())?;
        let data = port
            .alloc_dma(DATA_SLOTS * DATA_SLOT)
            .map_err(|e| e.to_string())?;
        Ok(Open {
            port,
            sq,
            cq,
            data,
            free: (0..DATA_SLOTS).rev().collect(),
            held: HashMap::new(),
            generation: None,
            region_size,
        })
    }

    /// Posts a write for the device to send.
    fn post(&mut self, lock: Option<&Header>, data: &Frame, mode: Mode) -> Post {
        let len = data.payload.len();
        // A retransmission of a write the device still has in flight goes by the host queue:
        // the device tracks each lock once. So does a lock over other regions than the device
        // works out from the write (never, from this core).
        let h = &data.header;
        if len == 0 || len > DATA_SLOT || self.held.contains_key(&h.lock_id) {
            return Post::Never;
        }
        let r = Regions::of_bytes(h.offset, len as u64, self.region_size);
        if lock.is_some_and(|l| (l.offset, l.arg) != (r.first, r.count)) {
            return Post::Never;
        }
        // A full ring shows as a failed push below; data slots run out first anyway.
        let Some(slot) = self.free.pop() else {
            return Post::Busy;
        };
        if self.generation != Some(h.generation) {
            self.port.mmio().write(regs::GENERATION, h.generation);
            self.generation = Some(h.generation);
        }
        self.data.write(slot * DATA_SLOT, &data.payload);
        let d = Descriptor {
            seq: Le64::new(h.seq),
            lock_id: Le64::new(h.lock_id),
            offset: Le64::new(h.offset),
            dma_addr: Le64::new(self.data.bus_addr() + (slot * DATA_SLOT) as u64),
            length: Le32::new(len as u32),
            mode: mode as u8,
            // The device adds IMPLICIT_LOCK itself in implicit mode; FUA is the write's own.
            flags: (h.flags.0 & Flags::FUA.0) as u8,
            ack_lock: Le64::new(h.ack_lock),
            ack_seq: Le64::new(h.ack_seq),
            ..Descriptor::default()
        };
        let index = self.sq.tail();
        if self.sq.push(self.port.mmio(), &d).is_err() {
            self.free.push(slot);
            return Post::Busy;
        }
        let posted = Instant::now();
        self.held.insert(
            h.lock_id,
            Held {
                slot,
                index,
                posted,
            },
        );
        Post::Sent
    }

    /// Whether a frame for lock `lock_id` must not leave by the host queue yet: the device has
    /// that write but has not taken its descriptor. A copy sent now (a retransmission, an abort)
    /// could reach the target first, and the target's answer would find no entry in the device's
    /// tracker, which would then wait for an answer the target never sends again. Once the device
    /// has taken the descriptor, every answer for the lock reaches its entry; until then, the
    /// copy is dropped and the core sends it again later (the device sends the write itself).
    fn not_taken_yet(&self, lock_id: u64, sq_head: &mut Option<u32>) -> bool {
        let Some(w) = self.held.get(&lock_id) else {
            return false;
        };
        let head = *sq_head.get_or_insert_with(|| self.port.mmio().read(regs::SQ_HEAD));
        !taken(head, w.index)
    }

    /// The write the device has held longest after taking it, and for how long.
    fn oldest_taken(&self) -> Option<(u64, Duration)> {
        let head = self.port.mmio().read(regs::SQ_HEAD);
        self.held
            .iter()
            .filter(|(_, w)| taken(head, w.index))
            .map(|(l, w)| (*l, w.posted.elapsed()))
            .max_by_key(|(_, d)| *d)
    }

    /// Reaps completion entries; how many.
    fn reap(&mut self) -> u64 {
        let mut n = 0;
        while let Some(c) = self.cq.poll() {
            n += 1;
            match ring::status(&c) {
                Some(CompletionStatus::LockGranted) => {}
                Some(_) => {
                    if let Some(w) = self.held.remove(&c.lock_id.get()) {
                        self.free.push(w.slot);
                    }
                }
                None => warn!(
                    status = c.status,
                    "device wrote a completion of no known kind"
                ),
            }
        }
        if n > 0 {
            self.cq.release(self.port.mmio());
        }
        n
    }
}

/// Whether `lock` and `data` are one write's first transmission in speculative mode: LOCK, then
/// its whole DATA (not a piece, not a compensation) right behind it.
fn speculative_pair(lock: &Header, data: &Header) -> bool {
    lock.ty == FrameType::Lock
        && data.ty == FrameType::Data
        && data.seq == lock.seq
        && data.lock_id == lock.lock_id
        && data.generation == lock.generation
        && (data.ack_lock, data.ack_seq) == (lock.ack_lock, lock.ack_seq)
        && (data.flags == Flags::NONE || data.flags == Flags::FUA)
        && data.arg == 0
        && lock.flags == Flags::NONE
}

/// An implicit-lock DATA frame the device can send as it is.
fn implicit_write(data: &Header) -> bool {
    data.ty == FrameType::Data
        && (data.flags == Flags::IMPLICIT_LOCK || data.flags == Flags::IMPLICIT_LOCK | Flags::FUA)
        && data.arg == 0
}

/// Splits a batch of encoded frames from the core onto the queue of frames to hand out.
fn parse(batch: &[u8], pending: &mut VecDeque<Frame>) -> Result<(), String> {
    let mut at = 0;
    while at < batch.len() {
        let (f, n) =
            Frame::decode(&batch[at..]).map_err(|e| format!("core sent a bad frame: {e}"))?;
        pending.push_back(f);
        at += n;
    }
    Ok(())
}

/// Hands the queued frames, in order, to the device or to the host queue. A write waits up to
/// [`SLOT_WAIT`] for room in the device, and so does everything queued behind it; then it goes by
/// the host queue.
fn dispatch(
    dev: &mut Open,
    pending: &mut VecDeque<Frame>,
    stalled: &mut Option<Instant>,
    stats: &HwStats,
) -> Result<(), String> {
    let mut sq_head = None;
    while let Some(f) = pending.front() {
        if f.header.lock_id != 0 && dev.not_taken_yet(f.header.lock_id, &mut sq_head) {
            trace!(ty = ?f.header.ty, lock = f.header.lock_id, "copy held back: the device has not taken its write");
            pending.pop_front();
            stats.held_back.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let pair = pending
            .get(1)
            .is_some_and(|d| speculative_pair(&f.header, &d.header));
        let r = if pair {
            dev.post(Some(&f.header), &pending[1], Mode::Speculative)
        } else if implicit_write(&f.header) {
            dev.post(None, f, Mode::Implicit)
        } else {
            Post::Never
        };
        let n = 1 + pair as usize;
        match r {
            Post::Sent => {
                for f in pending.drain(..n) {
                    trace!(ty = ?f.header.ty, lock = f.header.lock_id, seq = f.header.seq, "to the target, by the device");
                }
                stats.descriptors.fetch_add(1, Ordering::Relaxed);
                *stalled = None;
            }
            Post::Busy if stalled.get_or_insert_with(Instant::now).elapsed() < SLOT_WAIT => {
                return Ok(());
            }
            Post::Busy | Post::Never => {
                for f in pending.drain(..n) {
                    trace!(ty = ?f.header.ty, lock = f.header.lock_id, seq = f.header.seq, "to the target, by the host queue");
                    dev.port.host_send(f.encode())?;
                    stats.host_frames.fetch_add(1, Ordering::Relaxed);
                }
                *stalled = None;
            }
        }
    }
    Ok(())
}

/// Serves one connection until the link goes down; why it did.
fn serve(
    dev: &mut Open,
    rx: &mut LinkReceiver,
    core: &mpsc::Sender<Msg>,
    opts: &SourceOptions,
    stats: &HwStats,
) -> Result<String, ()> {
    let mut heard = Instant::now();
    let mut checked = Instant::now();
    let (mut told, mut last) = (Instant::now(), (0, 0, 0));
    let mut pending = VecDeque::new();
    let mut stalled = None;
    loop {
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            // The device answers every write it takes with an outcome, once the target answers:
            // a write without one for longer than the target may stay silent means the device
            // lost track of it. A reset (a new connection, a fresh device) recovers: the core
            // sends again what the target has not confirmed.
            if let Some((lock, held)) = dev.oldest_taken() {
                if held > opts.peer_timeout {
                    return Ok(format!(
                        "the device has held write (lock {lock}) for {held:?} without an outcome"
                    ));
                }
            }
        }
        let now = stats.snapshot();
        if now != last && told.elapsed() >= Duration::from_secs(1) {
            let m = dev.port.mmio();
            info!(
                device_writes = now.0,
                host_frames = now.1,
                held_back = now.2,
                sq_tail = dev.sq.tail(),
                sq_head = m.read(regs::SQ_HEAD),
                cq_head = dev.cq.head(),
                cq_tail = m.read(regs::CQ_TAIL),
                writes_in_device = dev.held.len(),
                frames_tx = m.read(regs::FRAMES_TX),
                frames_rx = m.read(regs::FRAMES_RX),
                frames_bad = m.read(regs::FRAMES_BAD),
                status = m.read(regs::STATUS),
                "hardware engine: writes the device sent, frames the host queue sent"
            );
            (told, last) = (Instant::now(), now);
        }
        let mut moved = false;
        while let Some(batch) = rx.try_recv() {
            moved = true;
            if let Err(e) = parse(&batch, &mut pending) {
                return Ok(e);
            }
        }
        let posted = stats.descriptors.load(Ordering::Relaxed);
        if let Err(e) = dispatch(dev, &mut pending, &mut stalled, stats) {
            return Ok(e);
        }
        if stats.descriptors.load(Ordering::Relaxed) != posted {
            // One doorbell for the round's posts.
            dev.sq.doorbell(dev.port.mmio());
        }
        let reaped = dev.reap();
        let wait = if moved || reaped > 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(200)
        };
        match dev.port.host_recv(wait) {
            Ok(Some(b)) => {
                heard = Instant::now();
                match Frame::decode(&b) {
                    Ok((f, _)) => {
                        trace!(ty = ?f.header.ty, lock = f.header.lock_id, seq = f.header.seq, arg = f.header.arg, "from the target");
                        if core.blocking_send(Msg::Frame(f)).is_err() {
                            return Err(());
                        }
                    }
                    Err(e) => return Ok(format!("bad frame from the target: {e}")),
                }
            }
            Ok(None) => {}
            Err(e) => return Ok(e),
        }
        if heard.elapsed() > opts.peer_timeout {
            return Ok(format!("target silent for {:?}", opts.peer_timeout));
        }
        if core.is_closed() {
            return Err(());
        }
    }
}

/// Keeps the link through the device: opens it on each connection, reconnects when it drops.
pub(crate) fn link_thread(
    first: Box<dyn HwPort>,
    opts: SourceOptions,
    device: HwDevice,
    core: mpsc::Sender<Msg>,
    rt: tokio::runtime::Handle,
    stats: Arc<HwStats>,
) {
    let mut next = Some(first);
    loop {
        let port = match next.take() {
            Some(p) => p,
            None => {
                let opened = rt
                    .block_on(crate::source::connect(
                        &opts,
                        Duration::from_secs(u64::MAX / 4),
                    ))
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.into_std().map_err(|e| e.to_string()))
                    .and_then(|s| (device.open)(s));
                match opened {
                    Ok(p) => p,
                    Err(e) => {
                        error!(
                            "cannot reach the target through the {} device: {e}",
                            device.name
                        );
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
        };
        let mut dev = match Open::new(port, opts.region_size) {
            Ok(d) => d,
            Err(e) => {
                error!("the {} device failed to open: {e}", device.name);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        info!(target = %opts.target, device = %device.name, "link to target up (hardware engine)");
        let (tx, mut rx) = LinkQueue::new(8192);
        if core.blocking_send(Msg::LinkUp(tx)).is_err() {
            return;
        }
        let cause = match serve(&mut dev, &mut rx, &core, &opts, &stats) {
            Ok(c) => c,
            Err(()) => return,
        };
        drop(dev);
        warn!("link to target down: {cause}; resetting the device and reconnecting");
        debug!(
            descriptors = stats.descriptors.load(Ordering::Relaxed),
            host_frames = stats.host_frames.load(Ordering::Relaxed),
            "hardware engine so far"
        );
        if core.blocking_send(Msg::LinkDown).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

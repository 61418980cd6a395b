//! The hardware engine's link: the source core runs as in the software engine, and the first
//! transmission of each write (its LOCK and DATA back to back, or its implicit-lock DATA) leaves
//! through the device instead of the socket: the write's data goes into DMA memory, a descriptor
//! onto the submission ring, and the device sends the frames itself. Everything else the core
//! sends (the handshake, heartbeats, flushes, lock re-issues after a rejection, retransmissions,
//! compensation writes, writes larger than a data slot) goes onto the same ring as a raw
//! descriptor (`Mode::Raw`): the frame as the software engine would send it, which the device
//! puts on the wire as it is and reports `Sent`. One ring carries everything, so the frames leave
//! in the order the core made them: a copy of a write (a retransmission, an abort) never passes
//! the write the device has yet to send.
//!
//! The device hands every frame it receives to the host as well as to its own answer tracker, so
//! the core sees the target's answers exactly as in the software engine and keeps its rollback log
//! by them: through the receive ring (`CAP_HOST_RX`: each frame whole in a slot's buffer), or
//! through the port's own queue on a device without it. The device's completion entries free the
//! write's ring slot and data slot, and a raw frame's memory.
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
use specmirror_driver::{ring, rx_ring, Device, DmaMemory};
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};

use crate::source::{LinkQueue, LinkReceiver, Msg, SourceOptions};

/// A device that can carry a hot path: the driver's `Device` seam, and a copy of every frame the
/// device receives.
pub trait HwPort: Device + Send {
    /// Sends a frame beside the device's transmit path, for a device without `CAP_HOST_FRAMES`:
    /// a device with it takes the host's frames on its submission ring (`Mode::Raw`), and the
    /// engines then never call this.
    fn host_send(&self, frame: Vec<u8>) -> Result<(), String>;
    /// The next frame received from the target (a copy of every frame), by the port's own queue,
    /// waiting up to `timeout`; an error once the link is down. A source device with its receive
    /// ring on (`CAP_HOST_RX`) hands its frames there, and the engine asks this only whether the
    /// link is down.
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
    /// Not for the device to send as a write (too large, or a retransmission of a write it has
    /// in flight): it goes as the host's frames.
    Never,
}

/// How long a write waits for a data slot before it goes as the host's frames.
const SLOT_WAIT: Duration = Duration::from_millis(20);
/// Buffers for the host's frames, in one DMA allocation: every control frame fits, and a write's
/// frame of up to 8 KiB with its header. A longer frame gets DMA memory of its own (a power of
/// two of bytes) until the device reports it sent, and that memory is kept for the next long
/// frame, up to `LARGE_POOL_BYTES` in all: over VFIO each allocation is a map and an unmap.
const FRAME_SLOTS: usize = 64;
const FRAME_SLOT: usize = 8192 + 128;
const LARGE_POOL_BYTES: usize = 64 << 20;
/// Receive ring entries: the target's answers waiting for the host.
const RX_ENTRIES: u32 = 256;

/// Submission and completion ring entries.
const RING_ENTRIES: u32 = 64;
/// Data slots in DMA memory, and the bytes each holds: a write larger goes as the host's frames.
const DATA_SLOTS: usize = 32;
const DATA_SLOT: usize = 1 << 20;

/// What the hardware engine carried, for the log and the tests.
#[derive(Debug, Default)]
pub struct HwStats {
    /// Writes the device sent (one descriptor each).
    pub descriptors: AtomicU64,
    /// The host's own frames the device sent (raw descriptors).
    pub host_frames: AtomicU64,
    /// Of those, copies of a write the device had in flight (a retransmission, an abort), which
    /// left behind the write in ring order.
    pub copies: AtomicU64,
    /// Frames the host took from the device's receive ring.
    pub ring_frames: AtomicU64,
}

impl HwStats {
    /// (descriptors, host frames, copies).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.descriptors.load(Ordering::Relaxed),
            self.host_frames.load(Ordering::Relaxed),
            self.copies.load(Ordering::Relaxed),
        )
    }
}

/// Where a host frame lies until the device reports it sent.
enum FrameBuf {
    Slot(usize),
    /// A long frame's own memory, back to the pool then.
    Large(DmaMemory),
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

/// Why a device cannot carry the source: it lacks the host-frame capability.
fn check_host_frames(caps: u32) -> Result<(), String> {
    if caps & regs::CAP_HOST_FRAMES == 0 {
        return Err(format!(
            "the device cannot send the host's own frames (CAPABILITIES {caps:#x} lacks \
             CAP_HOST_FRAMES, bit 3): it cannot carry a session's handshake; load a bitstream \
             that has it"
        ));
    }
    Ok(())
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
    /// Buffers for the host's frames, and the frames the device has not reported sent, by tag.
    frames: DmaMemory,
    frame_free: Vec<usize>,
    sending: HashMap<u64, FrameBuf>,
    /// Long frames' memory kept for reuse; long frames posted, and allocations they needed.
    large_free: Vec<DmaMemory>,
    large_frames: u64,
    large_allocs: u64,
    next_tag: u64,
    /// The receive ring, when the device hands the host its frames there.
    rx: Option<rx_ring::ReceiveRings>,
    generation: Option<u32>,
    region_size: u64,
}

impl Open {
    fn new(port: Box<dyn HwPort>, region_size: u64) -> Result<Open, String> {
        port.check_identity().map_err(|e| e.to_string())?;
        let caps = port.mmio().read(regs::CAPABILITIES);
        check_host_frames(caps)?;
        port.mmio()
            .write(regs::REGION_LOG2, region_size.trailing_zeros());
        let (sq, cq) = ring::setup(&*port, RING_ENTRIES).map_err(|e| e.to_string())?;
        let data = port
            .alloc_dma(DATA_SLOTS * DATA_SLOT)
            .map_err(|e| e.to_string())?;
        let frames = port
            .alloc_dma(FRAME_SLOTS * FRAME_SLOT)
            .map_err(|e| e.to_string())?;
        let rx = if caps & regs::CAP_HOST_RX != 0 {
            let r = rx_ring::setup(&*port, RX_ENTRIES).map_err(|e| e.to_string())?;
            port.mmio().write(regs::CONTROL, 1 | regs::CONTROL_HOST_RX);
            Some(r)
        } else {
            None
        };
        Ok(Open {
            port,
            sq,
            cq,
            data,
            free: (0..DATA_SLOTS).rev().collect(),
            held: HashMap::new(),
            frames,
            frame_free: (0..FRAME_SLOTS).rev().collect(),
            sending: HashMap::new(),
            large_free: Vec::new(),
            large_frames: 0,
            large_allocs: 0,
            next_tag: 1,
            rx,
            generation: None,
            region_size,
        })
    }

    /// Posts a write for the device to send.
    fn post(&mut self, lock: Option<&Header>, data: &Frame, mode: Mode) -> Post {
        let len = data.payload.len();
        // A retransmission of a write the device still has in flight goes as the host's frames,
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

    /// Posts one of the host's own frames, to leave as it is behind everything posted before
    /// it. `Err` when DMA memory for a long frame cannot be had.
    fn post_frame(&mut self, frame: &[u8]) -> Result<Post, String> {
        let (buf, bus) = if frame.len() <= FRAME_SLOT {
            let Some(slot) = self.frame_free.pop() else {
                return Ok(Post::Busy);
            };
            self.frames.write(slot * FRAME_SLOT, frame);
            (
                FrameBuf::Slot(slot),
                self.frames.bus_addr() + (slot * FRAME_SLOT) as u64,
            )
        } else {
            // The smallest kept memory that holds it, else a new one.
            let fits = (self.large_free.iter().enumerate())
                .filter(|(_, m)| m.len() >= frame.len())
                .min_by_key(|(_, m)| m.len())
                .map(|(i, _)| i);
            let mem = match fits {
                Some(i) => self.large_free.swap_remove(i),
                None => {
                    self.large_allocs += 1;
                    self.port
                        .alloc_dma(frame.len().next_power_of_two())
                        .map_err(|e| {
                            format!("no DMA memory for a frame of {} bytes: {e}", frame.len())
                        })?
                }
            };
            self.large_frames += 1;
            mem.write(0, frame);
            let bus = mem.bus_addr();
            (FrameBuf::Large(mem), bus)
        };
        let tag = self.next_tag;
        let d = Descriptor {
            seq: Le64::new(tag),
            dma_addr: Le64::new(bus),
            length: Le32::new(frame.len() as u32),
            mode: Mode::Raw as u8,
            ..Descriptor::default()
        };
        if self.sq.push(self.port.mmio(), &d).is_err() {
            self.give_back(buf);
            return Ok(Post::Busy);
        }
        self.next_tag += 1;
        self.sending.insert(tag, buf);
        Ok(Post::Sent)
    }

    /// A frame's memory, free again: its slot, or a long frame's memory to the pool (dropped,
    /// and so unmapped, once the pool holds `LARGE_POOL_BYTES`).
    fn give_back(&mut self, buf: FrameBuf) {
        match buf {
            FrameBuf::Slot(slot) => self.frame_free.push(slot),
            FrameBuf::Large(mem) => {
                let kept: usize = self.large_free.iter().map(|m| m.len()).sum();
                if kept + mem.len() <= LARGE_POOL_BYTES {
                    self.large_free.push(mem);
                }
            }
        }
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
                Some(CompletionStatus::Sent) => match self.sending.remove(&c.seq.get()) {
                    Some(buf) => self.give_back(buf),
                    None => warn!(
                        tag = c.seq.get(),
                        "device reported a frame sent it never had"
                    ),
                },
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

/// Hands the queued frames, in order, to the device: a write's first transmission as a
/// descriptor the device makes the frames of, everything else as the host's own frames. A write
/// waits up to [`SLOT_WAIT`] for a data slot, and so does everything queued behind it; then it
/// goes as the host's frames. Anything waits while the ring or the frame buffers are full.
/// How many descriptors it posted.
fn dispatch(
    dev: &mut Open,
    pending: &mut VecDeque<Frame>,
    stalled: &mut Option<Instant>,
    stats: &HwStats,
) -> Result<u32, String> {
    let mut posted = 0;
    while let Some(f) = pending.front() {
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
        match r {
            Post::Sent => {
                for f in pending.drain(..1 + pair as usize) {
                    trace!(ty = ?f.header.ty, lock = f.header.lock_id, seq = f.header.seq, "to the target, by the device");
                }
                stats.descriptors.fetch_add(1, Ordering::Relaxed);
                posted += 1;
                *stalled = None;
            }
            Post::Busy if stalled.get_or_insert_with(Instant::now).elapsed() < SLOT_WAIT => {
                return Ok(posted);
            }
            Post::Busy | Post::Never => {
                // The first frame only, as the host's: one of a pair that follows is looked at
                // again on its own.
                let copy = f.header.lock_id != 0 && dev.held.contains_key(&f.header.lock_id);
                match dev.post_frame(&f.encode())? {
                    Post::Sent => {}
                    _ => return Ok(posted),
                }
                let f = pending.pop_front().expect("the frame posted");
                trace!(ty = ?f.header.ty, lock = f.header.lock_id, seq = f.header.seq, "to the target, the host's frame");
                stats.host_frames.fetch_add(1, Ordering::Relaxed);
                stats.copies.fetch_add(copy as u64, Ordering::Relaxed);
                posted += 1;
                *stalled = None;
            }
        }
    }
    Ok(posted)
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
                copies = now.2,
                ring_frames = stats.ring_frames.load(Ordering::Relaxed),
                large_frames = dev.large_frames,
                large_allocs = dev.large_allocs,
                sq_tail = dev.sq.tail(),
                sq_head = m.read(regs::SQ_HEAD),
                cq_head = dev.cq.head(),
                cq_tail = m.read(regs::CQ_TAIL),
                writes_in_device = dev.held.len(),
                frames_tx = m.read(regs::FRAMES_TX),
                frames_rx = m.read(regs::FRAMES_RX),
                frames_bad = m.read(regs::FRAMES_BAD),
                status = m.read(regs::STATUS),
                "hardware engine: writes the device sent, and the host's frames it sent"
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
        match dispatch(dev, &mut pending, &mut stalled, stats) {
            // One doorbell for the round's posts.
            Ok(n) if n > 0 => dev.sq.doorbell(dev.port.mmio()),
            Ok(_) => {}
            Err(e) => return Ok(e),
        }
        let reaped = dev.reap();
        let wait = if moved || reaped > 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(200)
        };
        let mut got = Vec::new();
        match dev.rx.as_mut() {
            Some(rx) => {
                // The receive ring; the port's queue only says whether the link is down.
                loop {
                    match rx.poll() {
                        Ok(Some(r)) if r.frame => {
                            stats.ring_frames.fetch_add(1, Ordering::Relaxed);
                            got.push(r.data);
                        }
                        Ok(Some(r)) => {
                            return Ok(format!(
                                "the device's receive ring: a write entry (offset {}, {} bytes) \
                                 where a source device hands over only frames",
                                r.offset,
                                r.data.len()
                            ))
                        }
                        Ok(None) => break,
                        Err(e) => return Ok(format!("the device's receive ring: {e}")),
                    }
                }
                if got.is_empty() {
                    dev.port.wait_interrupt(wait);
                } else {
                    rx.doorbells(dev.port.mmio());
                }
                if let Err(e) = dev.port.host_recv(Duration::ZERO) {
                    return Ok(e);
                }
            }
            None => match dev.port.host_recv(wait) {
                Ok(Some(b)) => got.push(b),
                Ok(None) => {}
                Err(e) => return Ok(e),
            },
        }
        for b in got {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_without_host_frames_is_refused_with_the_reason() {
        let e = check_host_frames(0b111).unwrap_err();
        assert!(e.contains("CAP_HOST_FRAMES"), "{e}");
        assert!(e.contains("0x7"), "{e}");
        check_host_frames(0b111 | regs::CAP_HOST_FRAMES).expect("a device that has it");
    }
}

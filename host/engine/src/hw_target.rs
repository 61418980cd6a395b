//! The hardware engine's target: the device's target path takes the source's LOCK, DATA and ABORT
//! frames off the link, keeps the lock table and answers them; it hands each write whose lock it
//! holds to the host through the receive rings (`specmirror_driver::rx_ring`). This loop puts the
//! write on the volume (synced for a FUA write) and hands the outcome back in the done ring; the
//! device answers WRITE_DONE or WRITE_FAILED only then, so an acknowledged write is on the volume.
//!
//! The host's software answers the frames the device leaves to the host: the handshake (a new
//! session: the GENERATION register, and CONTROL bit 1 to drop the old session's ordering
//! barriers, both written before the answer leaves), flushes (after syncing the volume),
//! heartbeats, and frames of a session the device does not hold (the software core answers them
//! as stale, and the source handshakes again). A device with `CAP_HOST_RX` hands them over on the
//! receive ring, among the writes and in the order they came; another, through the port's host
//! queue. The answers leave through the device too: with `CAP_HOST_FRAMES`, each is a raw
//! descriptor on its submission ring, in memory tied to the descriptor's slot until SQ_HEAD
//! passes it; otherwise beside it (`host_send`).
//!
//! The loop runs on its own thread: the driver's ring code is synchronous, as it is over VFIO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use specmirror_abi::le::{Le32, Le64};
use specmirror_abi::regs;
use specmirror_abi::ring::{Descriptor, Mode, TARGET_RAW_MAX};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::Frame;
use specmirror_driver::mmio::Mmio;
use specmirror_driver::ring::{self, SubmissionRing};
use specmirror_driver::rx_ring::{self, ReceiveRings, RxError};
use specmirror_driver::{DeviceError, DmaMemory};
use tracing::{debug, error, info, warn};

use crate::hw::HwPort;
use crate::volume::{errno_of, Volume};

/// Receive ring (and done ring) entries: writes handed over and not yet answered.
const RX_ENTRIES: u32 = 64;
/// Submission ring entries for the host's own frames.
const TX_ENTRIES: u32 = 32;
/// How long a frame waits for a free submission slot before it is dropped (the device sends a
/// frame in microseconds: only a stopped device keeps its slots).
const TX_WAIT: Duration = Duration::from_millis(100);
/// How long the loop waits for the device's interrupt when it has nothing to do.
const IDLE_WAIT: Duration = Duration::from_micros(200);
/// CONTROL: bit 0 runs the device, bit 1 (self-clearing) drops the lock table's ordering
/// barriers, bit 2 hands the host its frames on the receive ring.
const RUN: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HwTargetError {
    #[error("the device's receive rings: {0}")]
    Setup(#[from] DeviceError),
    #[error("the device handed over a write the volume cannot take: {0}")]
    Ring(#[from] RxError),
    #[error(
        "the volume is {size} bytes; the device takes volumes of whole regions of {region} bytes"
    )]
    Geometry { size: u64, region: u64 },
    #[error(
        "the device reports {words} words of data buffer and {entries} lock table entries: it \
         cannot hold a write while it takes the next one's data"
    )]
    Capacity { words: u32, entries: u32 },
    #[error("the host queue: {0}")]
    HostQueue(String),
    #[error("cannot start the device's thread: {0}")]
    Thread(std::io::Error),
}

/// What the target's device serves.
#[derive(Clone, Debug)]
pub struct HwTargetOptions {
    pub volume: Volume,
    pub region_size: u64,
    pub pair_id: [u8; 16],
}

/// The device's submission ring for the host's own frames (`CAP_HOST_FRAMES`): each frame in
/// the memory tied to its descriptor's slot, free again once SQ_HEAD has passed the slot.
struct FrameRing {
    sq: SubmissionRing,
    bufs: DmaMemory,
}

impl FrameRing {
    fn setup(port: &dyn HwPort) -> Result<FrameRing, DeviceError> {
        let sq = ring::setup_submission(port, TX_ENTRIES)?;
        let bufs = port.alloc_dma(TX_ENTRIES as usize * TARGET_RAW_MAX as usize)?;
        Ok(FrameRing { sq, bufs })
    }

    /// Posts `frame` and rings the doorbell; false if it was dropped (longer than the device
    /// sends, or no slot came free in time).
    fn send(&mut self, mmio: &Mmio, frame: &[u8]) -> bool {
        if frame.len() > TARGET_RAW_MAX as usize || !frame.len().is_multiple_of(8) {
            warn!(
                len = frame.len(),
                "a frame the device cannot send from its ring, dropped"
            );
            return false;
        }
        let start = Instant::now();
        while !self.sq.has_room(mmio) {
            if start.elapsed() >= TX_WAIT {
                warn!(
                    "the device took no frame from its submission ring for {TX_WAIT:?}; one \
                     dropped (the source asks again)"
                );
                return false;
            }
            std::thread::yield_now();
        }
        let at = self.sq.next_slot() as usize * TARGET_RAW_MAX as usize;
        self.bufs.write(at, frame);
        let d = Descriptor {
            dma_addr: Le64::new(self.bufs.bus_addr() + at as u64),
            length: Le32::new(frame.len() as u32),
            mode: Mode::Raw as u8,
            ..Descriptor::default()
        };
        if self.sq.push(mmio, &d).is_err() {
            return false; // has_room said otherwise a moment ago: cannot happen
        }
        self.sq.doorbell(mmio);
        true
    }
}

/// How the host's software reaches the device: CONTROL's running value, and the submission
/// ring for its frames when the device has one.
struct HostOut {
    run: u32,
    frames: Option<FrameRing>,
}

/// What the loop did, logged once a second while it changes.
#[derive(Clone, Debug, Default)]
pub struct HwTargetStats {
    pub writes: u64,
    pub write_errors: u64,
    pub host_frames: u64,
    /// Of them, those that came on the receive ring.
    pub ring_frames: u64,
    /// Frames the host's software sent, and of them those that went by the submission ring.
    pub sent: u64,
    pub ring_sent: u64,
    pub sessions: u64,
}

/// Sets the device up (receive rings, geometry, enable) and runs the loop on a thread of its own
/// for as long as the process lives.
pub fn start(port: Box<dyn HwPort>, opts: HwTargetOptions) -> Result<(), HwTargetError> {
    let size = opts.volume.size();
    if !opts.region_size.is_power_of_two() || size == 0 || !size.is_multiple_of(8) {
        return Err(HwTargetError::Geometry {
            size,
            region: opts.region_size,
        });
    }
    let rings = rx_ring::setup(&*port, RX_ENTRIES)?;
    let m = port.mmio();
    let caps = m.read(regs::CAPABILITIES);
    let frames = if caps & regs::CAP_HOST_FRAMES != 0 {
        Some(FrameRing::setup(&*port)?)
    } else {
        None
    };
    let (words, entries) = (
        m.read(regs::DATA_BUFFER_WORDS),
        m.read(regs::LOCK_TABLE_ENTRIES),
    );
    let window =
        rx_ring::window(words, entries).ok_or(HwTargetError::Capacity { words, entries })?;
    info!(
        window,
        "target device: holds {window} writes at once; the handshake tells the source so"
    );
    m.write(regs::REGION_LOG2, opts.region_size.trailing_zeros());
    m.write(regs::VOLUME_BYTES_LO, size as u32);
    m.write(regs::VOLUME_BYTES_HI, (size >> 32) as u32);
    // No session yet: every LOCK and DATA goes to the host's software until a handshake.
    m.write(regs::GENERATION, 0);
    let run = if caps & regs::CAP_HOST_RX != 0 {
        RUN | regs::CONTROL_HOST_RX
    } else {
        RUN
    };
    info!(
        ring_in = run & regs::CONTROL_HOST_RX != 0,
        ring_out = frames.is_some(),
        "target device: the host's frames come on its receive ring and leave on its submission \
         ring (else beside the device)"
    );
    m.write(regs::CONTROL, run);
    let out = HostOut { run, frames };
    std::thread::Builder::new()
        .name("specmirror-hwtarget".into())
        .spawn(move || {
            if let Err(e) = serve(&*port, rings, out, &opts, window) {
                error!("the target's device stopped: {e}");
            }
        })
        .map_err(HwTargetError::Thread)?;
    Ok(())
}

/// The loop: the host queue's frames, the writes the device handed over, their outcomes.
fn serve(
    port: &dyn HwPort,
    mut rings: ReceiveRings,
    mut out: HostOut,
    opts: &HwTargetOptions,
    window: u32,
) -> Result<(), HwTargetError> {
    let started = Instant::now();
    let now = || started.elapsed().as_nanos() as u64;
    let mut core = Target::new(TargetConfig::hardware(
        opts.volume.size(),
        opts.region_size,
        opts.pair_id,
        window,
    ));
    let mut st = HwTargetStats::default();
    // Outcomes waiting for room in the done ring: (tag, errno).
    let mut outcomes: VecDeque<(u8, u32)> = VecDeque::new();
    let mut report = Instant::now();
    let mut told = (0, 0, 0, 0);
    loop {
        let mut busy = false;
        while let Some(f) = port
            .host_recv(Duration::ZERO)
            .map_err(HwTargetError::HostQueue)?
        {
            busy = true;
            st.host_frames += 1;
            host_frame(port, &mut out, &mut core, &opts.volume, &f, now(), &mut st)?;
        }
        while let Some(w) = rings.poll()? {
            busy = true;
            if w.frame {
                st.host_frames += 1;
                st.ring_frames += 1;
                host_frame(
                    port,
                    &mut out,
                    &mut core,
                    &opts.volume,
                    &w.data,
                    now(),
                    &mut st,
                )?;
                continue;
            }
            let end = w.offset.checked_add(w.data.len() as u64);
            let r = match end {
                Some(e) if e <= opts.volume.size() => opts
                    .volume
                    .write_at(w.offset, &w.data)
                    .and_then(|_| if w.fua { opts.volume.sync() } else { Ok(()) })
                    .map_err(|e| errno_of(&e)),
                // The device checks every lock against VOLUME_BYTES: this is a device fault.
                _ => Err(specmirror_core::errno::EINVAL),
            };
            st.writes += 1;
            let errno = match r {
                Ok(()) => 0,
                Err(e) => {
                    st.write_errors += 1;
                    warn!(
                        offset = w.offset,
                        len = w.data.len(),
                        errno = e,
                        "volume write failed"
                    );
                    e as u32
                }
            };
            outcomes.push_back((w.tag, errno));
        }
        if !outcomes.is_empty() {
            let device_done_head = port.mmio().read(regs::DONE_HEAD);
            while let Some(&(tag, errno)) = outcomes.front() {
                match rings.complete(tag, errno, device_done_head) {
                    Ok(()) => {
                        outcomes.pop_front();
                    }
                    Err(RxError::DoneFull(_)) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if busy {
            rings.doorbells(port.mmio());
        } else {
            port.wait_interrupt(IDLE_WAIT);
        }
        // Once a second while the figures change.
        let now_st = (st.writes, st.write_errors, st.host_frames, st.sessions);
        if now_st != told && report.elapsed() >= Duration::from_secs(1) {
            (report, told) = (Instant::now(), now_st);
            let m = port.mmio();
            info!(
                writes = st.writes,
                write_errors = st.write_errors,
                host_frames = st.host_frames,
                ring_frames = st.ring_frames,
                sent = st.sent,
                ring_sent = st.ring_sent,
                sessions = st.sessions,
                rx_head = rings.head(),
                rx_tail = m.read(regs::RX_TAIL),
                done_tail = rings.done_tail(),
                done_head = m.read(regs::DONE_HEAD),
                outcomes_waiting = outcomes.len(),
                frames_rx = m.read(regs::FRAMES_RX),
                frames_tx = m.read(regs::FRAMES_TX),
                frames_bad = m.read(regs::FRAMES_BAD),
                locks_granted = m.read(regs::LOCKS_GRANTED),
                locks_rejected = m.read(regs::LOCKS_REJECTED),
                data_drops = m.read(regs::DATA_DROPS),
                data_expired = m.read(regs::DATA_EXPIRED),
                data_repeats = m.read(regs::DATA_REPEATS),
                lock_drops = m.read(regs::LOCK_DROPS),
                lock_ahead = m.read(regs::LOCK_AHEAD),
                answer_drops = m.read(regs::ANSWER_DROPS),
                status = format_args!("{:#x}", m.read(regs::STATUS)),
                "target device: writes the device handed over, frames the host answered"
            );
        }
    }
}

/// A frame the device left to the host: the software core answers it.
fn host_frame(
    port: &dyn HwPort,
    out: &mut HostOut,
    core: &mut Target,
    volume: &Volume,
    bytes: &[u8],
    now: u64,
    st: &mut HwTargetStats,
) -> Result<(), HwTargetError> {
    let Ok((frame, _)) = Frame::decode(bytes) else {
        debug!("a damaged frame in the host queue, dropped (the source sends it again)");
        return Ok(());
    };
    let mut actions: VecDeque<TargetAction> = core.handle(TargetEvent::Frame(frame), now).into();
    while let Some(a) = actions.pop_front() {
        match a {
            TargetAction::Send(f) => {
                st.sent += 1;
                match out.frames.as_mut() {
                    Some(r) => st.ring_sent += r.send(port.mmio(), &f.encode()) as u64,
                    None => port
                        .host_send(f.encode())
                        .map_err(HwTargetError::HostQueue)?,
                }
            }
            TargetAction::SessionStarted { generation } => {
                // Before the handshake's answer leaves: the source's next LOCK must find the
                // device in the new session.
                let m = port.mmio();
                m.write(regs::GENERATION, generation);
                m.write(regs::CONTROL, out.run | regs::CONTROL_SELF_CLEARING);
                st.sessions += 1;
                info!(generation, "target device: new session");
            }
            TargetAction::SyncVolume { token } => {
                let result = volume.sync().map_err(|e| errno_of(&e));
                actions.extend(core.handle(TargetEvent::VolumeSyncDone { token, result }, now));
            }
            TargetAction::WriteVolume { offset, .. } => {
                // The device takes every write of the session; the software core is given only
                // frames of sessions the device does not hold, and writes none of them.
                warn!(offset, "the host's software was asked to write; refused");
            }
            TargetAction::Violation(why) => warn!("the source broke the protocol: {why}"),
            TargetAction::LockAcquired { .. } | TargetAction::LockReleased { .. } => {}
        }
    }
    Ok(())
}

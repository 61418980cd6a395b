//! The simulated device behind the driver's `Device` seam: the verilated source device
//! (`hdl::MirrorDevice`) running in its own thread, clock by clock. The driver's register and
//! ring code runs over it exactly as over a VFIO BAR:
//!
//! - BAR0 is a shared page. The device thread watches the registers the host may write and hands
//!   every change to the register block within a few clocks (the registers changed together in
//!   address order, the doorbells last, the order the driver writes them in); it writes the
//!   registers the device drives (status, ring head and tail, counters) back into the page.
//! - DMA memory is allocated by the backend and known to the device by its bus address (the host
//!   address here); the device's DMA port reads descriptors and data from it and writes completion
//!   entries into it, the phase byte last. An access outside every allocation is a fault: it reads
//!   ones, writes nothing, and is counted.
//! - Interrupts are the device's `irq` pulses, counted; `wait_interrupt` waits for the count to
//!   move.
//! - The device's transmit and receive streams go to a [`Link`]: a TCP connection to a target
//!   (frames back to back, as the software engine sends them) or anything else that carries
//!   frames.
//! - A host queue beside the device's transmit path: the host gets a copy of every frame received
//!   (`host_recv`), and the target device takes the host's own frames there (`host_send`; the
//!   source device takes them on its submission ring, as raw descriptors); the target's answers
//!   (LOCK_GRANTED, LOCK_REJECTED, WRITE_DONE, WRITE_FAILED) also go into the source device.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use memmap2::MmapMut;
use specmirror_abi::regs::{self, Access, REGISTERS};
use specmirror_abi::ring::COMPLETION_LEN;
use specmirror_abi::{frame_len, FrameType, Header, HEADER_LEN};
use specmirror_driver::mmio::Mmio;
use specmirror_driver::{Device, DeviceError, DmaMemory};

use crate::device::{DevicePort as P, VerilatedDevice};

/// What carries the device's frames to the target and its answers back.
pub trait Link: Send + 'static {
    /// One whole frame from the device.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()>;
    /// A whole frame from the target, if one has arrived; never blocks.
    fn recv(&mut self) -> std::io::Result<Option<Vec<u8>>>;
}

/// Frames back to back over a TCP connection (the handshake already done).
pub struct TcpLink {
    s: TcpStream,
    buf: Vec<u8>,
}

impl TcpLink {
    pub fn new(s: TcpStream) -> std::io::Result<TcpLink> {
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        Ok(TcpLink { s, buf: Vec::new() })
    }
}

impl Link for TcpLink {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut at = 0;
        while at < frame.len() {
            match self.s.write(&frame[at..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(20))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn recv(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 16384];
        loop {
            if self.buf.len() >= HEADER_LEN {
                // A header that does not check out ends the link: nothing after it can be framed.
                let h = Header::decode(&self.buf[..HEADER_LEN]).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
                let n = frame_len(h.payload_len);
                if self.buf.len() >= n {
                    let rest = self.buf.split_off(n);
                    return Ok(Some(std::mem::replace(&mut self.buf, rest)));
                }
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Knobs of the simulated device.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Clocks from a DMA read request to its first word (a PCIe read's round trip).
    pub dma_latency: u64,
    /// Clocks between two looks at the BAR page.
    pub bar_poll: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            dma_latency: 64,
            bar_poll: 8,
        }
    }
}

/// What the device thread did, when it stopped.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub clocks: u64,
    /// Frames the device made.
    pub frames_sent: u64,
    /// Frames the host sent through the host queue.
    pub host_frames: u64,
    pub frames_received: u64,
    pub dma_reads: u64,
    /// DMA writes: completion entries (source); data words and receive entries (target).
    pub dma_writes: u64,
    /// DMA accesses outside every allocation.
    pub faults: u64,
    /// Why the link stopped, if it did.
    pub link_error: Option<String>,
}

/// DMA allocations by bus address: (bus address, length). The bus address is the host address.
type Regions = Arc<Mutex<Vec<(u64, usize)>>>;

/// The BAR page, shared by the driver and the device thread.
struct Bar {
    _map: MmapMut,
    mmio: Mmio,
}

pub struct SimDevice {
    bar: Arc<Bar>,
    host_tx: std::sync::mpsc::Sender<Vec<u8>>,
    host_rx: Mutex<std::sync::mpsc::Receiver<Vec<u8>>>,
    /// Why the link went down, once it has.
    down: Arc<Mutex<Option<String>>>,
    regions: Regions,
    irq: Arc<(Mutex<u64>, Condvar)>,
    seen_irq: Mutex<u64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SimStats>>,
}

impl SimDevice {
    /// Starts the source device's thread with its link to the target.
    pub fn spawn(link: impl Link, cfg: SimConfig) -> std::io::Result<SimDevice> {
        SimDevice::spawn_model(VerilatedDevice::new, link, cfg)
    }

    /// Starts a device thread that runs the model `make` makes (on that thread: a Verilator model
    /// stays on the thread that made it).
    pub(crate) fn spawn_model<M: Model + 'static>(
        make: fn() -> M,
        link: impl Link,
        cfg: SimConfig,
    ) -> std::io::Result<SimDevice> {
        let mut map = MmapMut::map_anon(regs::BAR0_LEN as usize)?;
        let base = NonNull::new(map.as_mut_ptr()).expect("a mapping is never null");
        // SAFETY: `map` is a live, page-aligned mapping of BAR0_LEN bytes that `Bar` keeps for as
        // long as its `Mmio` exists; it is only ever accessed through volatile operations.
        let mmio = unsafe { Mmio::new(base) };
        for r in REGISTERS {
            mmio.write(r.offset, r.reset);
        }
        let bar = Arc::new(Bar { _map: map, mmio });
        let regions: Regions = Arc::default();
        let irq = Arc::new((Mutex::new(0u64), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (host_tx, to_link) = std::sync::mpsc::channel();
        let (to_host, host_rx) = std::sync::mpsc::channel();
        let down = Arc::new(Mutex::new(None));
        let thread = {
            let (bar, regions, irq, stop) =
                (bar.clone(), regions.clone(), irq.clone(), stop.clone());
            let host = Host {
                to_link,
                to_host,
                down: down.clone(),
            };
            let (ready, is_ready) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("specmirror-simdev".into())
                .spawn(move || {
                    // What the device reports about itself is on the page before anyone reads
                    // it, as a real device's registers are from reset.
                    let mut m = make();
                    for o in device_driven() {
                        bar.mmio.write(o, m.read_reg(o));
                    }
                    ready.send(()).ok();
                    run(m, &bar.mmio, &regions, &irq, &stop, link, host, cfg)
                })?;
            is_ready
                .recv()
                .map_err(|_| std::io::Error::other("the simulated device did not start"))?;
            thread
        };
        Ok(SimDevice {
            bar,
            host_tx,
            host_rx: Mutex::new(host_rx),
            down,
            regions,
            irq,
            seen_irq: Mutex::new(0),
            stop,
            thread: Some(thread),
        })
    }

    /// Sends a frame through the host queue.
    pub fn host_send(&self, frame: Vec<u8>) -> Result<(), String> {
        if let Some(why) = self.down.lock().expect("down").clone() {
            return Err(why);
        }
        self.host_tx
            .send(frame)
            .map_err(|_| "the simulated device stopped".to_string())
    }

    /// The next frame received (a copy of each), waiting up to `timeout`; an error once the link
    /// is down and every frame before it was taken.
    pub fn host_recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
        use std::sync::mpsc::RecvTimeoutError;
        let rx = self.host_rx.lock().expect("host queue");
        let got = if timeout.is_zero() {
            rx.try_recv().map_err(|e| match e {
                std::sync::mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                std::sync::mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else {
            rx.recv_timeout(timeout)
        };
        match got {
            Ok(f) => Ok(Some(f)),
            Err(RecvTimeoutError::Timeout) => match self.down.lock().expect("down").clone() {
                Some(why) => Err(why),
                None => Ok(None),
            },
            Err(RecvTimeoutError::Disconnected) => Err(self
                .down
                .lock()
                .expect("down")
                .clone()
                .unwrap_or_else(|| "the simulated device stopped".into())),
        }
    }

    /// Stops the device thread; what it did.
    pub fn stop(mut self) -> SimStats {
        self.halt()
    }

    fn halt(&mut self) -> SimStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the device thread panicked"))
            .unwrap_or_default()
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Device for SimDevice {
    fn mmio(&self) -> &Mmio {
        &self.bar.mmio
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaMemory, DeviceError> {
        let m = DmaMemory::anonymous(len)?;
        let (bus, len) = (m.bus_addr(), m.len());
        self.regions.lock().expect("regions").push((bus, len));
        let regions = self.regions.clone();
        // The device forgets the memory before it goes back to the system; it holds the lock
        // for every access, so none is under way when this returns.
        Ok(m.on_drop(move || regions.lock().expect("regions").retain(|r| r.0 != bus)))
    }

    fn wait_interrupt(&self, timeout: Duration) -> bool {
        let (count, cv) = &*self.irq;
        let mut seen = self.seen_irq.lock().expect("irq");
        let c = count.lock().expect("irq");
        let (c, _) = cv
            .wait_timeout_while(c, timeout, |c| *c == *seen)
            .expect("irq");
        let fired = *c != *seen;
        *seen = *c;
        fired
    }
}

/// The device thread's ends of the host queue.
struct Host {
    to_link: std::sync::mpsc::Receiver<Vec<u8>>,
    to_host: std::sync::mpsc::Sender<Vec<u8>>,
    down: Arc<Mutex<Option<String>>>,
}

impl Host {
    fn link_down(&self, st: &mut SimStats, e: std::io::Error) {
        tracing::warn!("simulated device: link down: {e}");
        st.link_error = Some(e.to_string());
        *self.down.lock().expect("down") = Some(format!("link down: {e}"));
    }
}

/// Where a frame from the link goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Into the device's receive stream.
    pub device: bool,
    /// Into the host queue.
    pub host: bool,
}

/// One verilated device as the device thread drives it: BAR0, a DMA port (reads of 64-bit words,
/// writes of up to 32 bytes), an interrupt, and the link's transmit and receive streams.
pub(crate) trait Model {
    /// Where the phase byte sits in a DMA write: written last, after a Release fence, so the host
    /// never sees a phase before what it guards.
    const PHASE_BYTE: usize;
    /// Bytes in one DMA write.
    const WRITE_LEN: usize;
    /// A register, read through BAR0 (combinational).
    fn read_reg(&mut self, offset: u32) -> u32;
    /// BAR0's write port for the next clock.
    fn write_reg(&mut self, w: Option<(u32, u32)>);
    /// Where a frame from the link goes.
    fn route(&self, frame: &[u8]) -> Route;
    /// The host wrote `value` to a register (seen in the BAR page; the register block takes it a
    /// few clocks later).
    fn host_wrote(&mut self, _offset: u32, _value: u32) {}
    /// The receive stream's word and the DMA read data for the next clock (the device's transmit
    /// stream and DMA port never wait).
    fn set_inputs(&mut self, rx: Option<(u64, bool)>, rd: Option<u64>);
    fn eval(&mut self);
    /// The transmit stream's word, and whether it ends a frame.
    fn tx(&self) -> Option<(u64, bool)>;
    /// A DMA read request: bus address, 64-bit words.
    fn rd_req(&self) -> Option<(u64, u64)>;
    fn rd_ready(&self) -> bool;
    /// A DMA write: bus address and `WRITE_LEN` bytes.
    fn wr(&self) -> Option<(u64, [u8; 32])>;
    /// A second DMA write port, of one 64-bit word (its last byte written last, as a phase
    /// byte may sit there): bus address and word.
    fn wr_word(&self) -> Option<(u64, u64)> {
        None
    }
    /// Whether, with CONTROL at `control`, the device hands the host its received frames itself
    /// (then the host queue gets no copy).
    fn host_rx(&self, _control: u32) -> bool {
        false
    }
    fn irq(&self) -> bool;
    fn tick(&mut self);
}

/// The source device: its own answer tracker takes the target's answers; the host gets a copy of
/// every frame, through the device's receive ring once it turns it on (CONTROL_HOST_RX), through
/// the host queue until then.
impl Model for VerilatedDevice {
    const PHASE_BYTE: usize = 17;
    const WRITE_LEN: usize = COMPLETION_LEN;

    fn read_reg(&mut self, offset: u32) -> u32 {
        self.set(P::MmioAddr, offset as u64);
        self.set(P::MmioWrite, 0);
        self.eval();
        self.get(P::MmioRdata) as u32
    }

    fn write_reg(&mut self, w: Option<(u32, u32)>) {
        match w {
            Some((o, v)) => {
                self.set(P::MmioAddr, o as u64);
                self.set(P::MmioWdata, v as u64);
                self.set(P::MmioWrite, 1);
            }
            None => self.set(P::MmioWrite, 0),
        }
    }

    fn route(&self, frame: &[u8]) -> Route {
        let answer = Header::decode(frame).is_ok_and(|h| {
            matches!(
                h.ty,
                FrameType::LockGranted
                    | FrameType::LockRejected
                    | FrameType::WriteDone
                    | FrameType::WriteFailed
            )
        });
        Route {
            device: answer,
            host: true,
        }
    }

    fn set_inputs(&mut self, rx: Option<(u64, bool)>, rd: Option<u64>) {
        let (rw, rl) = rx.unwrap_or((0, false));
        self.set(P::RxValid, rx.is_some() as u64);
        self.set(P::RxData, rw);
        self.set(P::RxLast, rl as u64);
        self.set(P::TxReady, 1);
        self.set(P::RdReqReady, 1);
        self.set(P::WrReady, 1);
        self.set(P::RxWrReady, 1);
        self.set(P::RdValid, rd.is_some() as u64);
        self.set(P::RdData, rd.unwrap_or(0));
    }

    fn eval(&mut self) {
        VerilatedDevice::eval(self);
    }

    fn wr_word(&self) -> Option<(u64, u64)> {
        (self.get(P::RxWrValid) != 0).then(|| (self.get(P::RxWrAddr), self.get(P::RxWrData)))
    }

    fn host_rx(&self, control: u32) -> bool {
        control & 1 != 0 && control & regs::CONTROL_HOST_RX != 0
    }

    fn tx(&self) -> Option<(u64, bool)> {
        (self.get(P::TxValid) != 0).then(|| (self.get(P::TxData), self.get(P::TxLast) != 0))
    }

    fn rd_req(&self) -> Option<(u64, u64)> {
        (self.get(P::RdReqValid) != 0).then(|| (self.get(P::RdReqAddr), self.get(P::RdReqWords)))
    }

    fn rd_ready(&self) -> bool {
        self.get(P::RdReady) != 0
    }

    fn wr(&self) -> Option<(u64, [u8; 32])> {
        if self.get(P::WrValid) == 0 {
            return None;
        }
        let mut b = [0u8; 32];
        for (k, p) in [P::WrData0, P::WrData1, P::WrData2, P::WrData3]
            .iter()
            .enumerate()
        {
            b[8 * k..8 * k + 8].copy_from_slice(&self.get(*p).to_le_bytes());
        }
        Some((self.get(P::WrAddr), b))
    }

    fn irq(&self) -> bool {
        self.get(P::Irq) != 0 || self.get(P::RxIrq) != 0
    }

    fn tick(&mut self) {
        VerilatedDevice::tick(self);
    }
}

/// The host-writable registers, in address order (doorbells last, as they sit last).
fn host_written() -> Vec<u32> {
    REGISTERS
        .iter()
        .filter(|r| matches!(r.access, Access::ReadWrite | Access::WriteOnly))
        .map(|r| r.offset)
        .collect()
}

/// The registers the device drives.
fn device_driven() -> Vec<u32> {
    REGISTERS
        .iter()
        .filter(|r| matches!(r.access, Access::ReadOnly | Access::Counter))
        .map(|r| r.offset)
        .collect()
}

/// One DMA write of `b` at bus address `addr` into host memory: every byte but the one at
/// `phase`, then that one after a Release fence, so the host never sees a phase bit before what
/// it guards. A write outside every allocation is a fault: nothing is written.
fn dma_write(
    regions: &Mutex<Vec<(u64, usize)>>,
    addr: u64,
    b: &[u8],
    phase: usize,
    st: &mut SimStats,
) {
    let r = regions.lock().expect("regions");
    let Some(p) = resolve(&r, addr, b.len()) else {
        st.faults += 1;
        return;
    };
    fence(Ordering::Release);
    for (i, v) in b.iter().enumerate().filter(|(i, _)| *i != phase) {
        // SAFETY: `resolve` found a live allocation holding all of `b`'s bytes at `addr`; it
        // stays mapped while we hold the regions lock. Volatile: the host reads it.
        unsafe { p.add(i).write_volatile(*v) };
    }
    fence(Ordering::Release);
    // SAFETY: as above, the phase byte of the same write (`phase < b.len()` at every caller).
    unsafe { p.add(phase).write_volatile(b[phase]) };
    st.dma_writes += 1;
}

/// Resolves `len` bytes at `bus` to host memory, if some allocation holds them all.
fn resolve(regions: &[(u64, usize)], bus: u64, len: usize) -> Option<*mut u8> {
    regions
        .iter()
        .find(|(b, l)| {
            bus >= *b
                && bus
                    .checked_add(len as u64)
                    .is_some_and(|e| e <= b + *l as u64)
        })
        .map(|_| bus as *mut u8)
}

#[allow(clippy::too_many_arguments)]
fn run<M: Model>(
    mut m: M,
    bar: &Mmio,
    regions: &Mutex<Vec<(u64, usize)>>,
    irq: &(Mutex<u64>, Condvar),
    stop: &AtomicBool,
    mut link: impl Link,
    host: Host,
    cfg: SimConfig,
) -> SimStats {
    let mut st = SimStats::default();
    let writable = host_written();
    let driven = device_driven();
    // What the register block holds of each host-writable register.
    let mut shadow: Vec<u32> = writable
        .iter()
        .map(|&o| {
            REGISTERS
                .iter()
                .find(|r| r.offset == o)
                .expect("a register")
                .reset
        })
        .collect();
    let mut pending: VecDeque<(u32, u32)> = VecDeque::new();
    let control_at = writable
        .iter()
        .position(|&o| o == regs::CONTROL)
        .expect("CONTROL is written by the host");
    // DMA reads: (clock the first word may come, next address, words left).
    let mut reads: VecDeque<(u64, u64, u64)> = VecDeque::new();
    let mut rx: VecDeque<(u64, bool)> = VecDeque::new();
    let mut frame: Vec<u8> = Vec::new();
    let mut idle = 0u64;
    let mut link_up = true;
    while !stop.load(Ordering::Relaxed) {
        let now = st.clocks;
        // BAR0: the host's writes in, the device's registers out.
        if now.is_multiple_of(cfg.bar_poll) && pending.is_empty() {
            for (k, &o) in writable.iter().enumerate() {
                let v = bar.read(o);
                if v != shadow[k] {
                    shadow[k] = v;
                    if o == regs::CONTROL && v & regs::CONTROL_SELF_CLEARING != 0 {
                        // A self-clearing bit reads back 0 once taken, so the host's next write
                        // of it is a change the page shows.
                        shadow[k] = v & !regs::CONTROL_SELF_CLEARING;
                        bar.write(o, shadow[k]);
                    }
                    m.host_wrote(o, v);
                    pending.push_back((o, v));
                }
            }
            // The host queue right after the BAR: a frame the host sent after writing registers
            // leaves after the device has seen them.
            while let Ok(f) = host.to_link.try_recv() {
                st.host_frames += 1;
                if link_up {
                    if let Err(e) = link.send(&f) {
                        host.link_down(&mut st, e);
                        link_up = false;
                    }
                }
            }
        }
        if now.is_multiple_of(64) {
            for &o in &driven {
                let v = m.read_reg(o);
                bar.write(o, v);
            }
        }
        m.write_reg(pending.pop_front());
        // The link: frames in, one word per clock.
        if rx.is_empty() && link_up && (now.is_multiple_of(16) || idle > 0) {
            match link.recv() {
                Ok(Some(f)) => {
                    st.frames_received += 1;
                    let to = m.route(&f);
                    // With its receive ring on, the device takes every frame (and the host its
                    // copy from the ring).
                    let host_rx = m.host_rx(shadow[control_at]);
                    if to.device || host_rx {
                        let n = f.len() / 8;
                        for (k, c) in f.chunks(8).enumerate() {
                            let mut w = [0u8; 8];
                            w[..c.len()].copy_from_slice(c);
                            rx.push_back((u64::from_le_bytes(w), k + 1 == n));
                        }
                    }
                    if to.host && !host_rx {
                        // Nobody may be reading the host queue (a closed receiver): that is fine.
                        let _ = host.to_host.send(f);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    host.link_down(&mut st, e);
                    link_up = false;
                }
            }
        }
        // DMA reads: words from host memory once the latency has passed.
        let word = match reads.front() {
            Some(&(at, addr, _)) if at <= now => {
                let r = regions.lock().expect("regions");
                let w = match resolve(&r, addr, 8) {
                    Some(p) => {
                        let mut b = [0u8; 8];
                        for (i, v) in b.iter_mut().enumerate() {
                            // SAFETY: `resolve` found a live DMA allocation holding these 8
                            // bytes, and it stays mapped while we hold the regions lock (dropping
                            // it takes the lock first). Volatile: the host writes this memory.
                            *v = unsafe { p.add(i).read_volatile() };
                        }
                        u64::from_le_bytes(b)
                    }
                    None => {
                        st.faults += 1;
                        u64::MAX
                    }
                };
                Some(w)
            }
            _ => None,
        };
        // The link's words wait while the host's register writes go in: a frame that follows a
        // register change (a new session) meets the device with the change made.
        let rx_word = if pending.is_empty() {
            rx.front().copied()
        } else {
            None
        };
        m.set_inputs(rx_word, word);
        m.eval();
        let (tx, rd_req, wr, wr_word) = (m.tx(), m.rd_req(), m.wr(), m.wr_word());
        let busy = tx.is_some()
            || rd_req.is_some()
            || wr.is_some()
            || wr_word.is_some()
            || !reads.is_empty()
            || !rx.is_empty()
            || !pending.is_empty();
        if let Some((addr, words)) = rd_req {
            reads.push_back((now + cfg.dma_latency, addr, words));
            st.dma_reads += 1;
        }
        if word.is_some() && m.rd_ready() {
            let f = reads.front_mut().expect("a read under way");
            f.1 += 8;
            f.2 -= 1;
            if f.2 == 0 {
                reads.pop_front();
            }
        }
        if let Some((addr, b)) = wr {
            dma_write(regions, addr, &b[..M::WRITE_LEN], M::PHASE_BYTE, &mut st);
        }
        if let Some((addr, w)) = wr_word {
            // The word's last byte may be a receive entry's phase byte.
            dma_write(regions, addr, &w.to_le_bytes(), 7, &mut st);
        }
        if let Some((data, last)) = tx {
            frame.extend_from_slice(&data.to_le_bytes());
            if last {
                st.frames_sent += 1;
                if link_up {
                    if let Err(e) = link.send(&frame) {
                        host.link_down(&mut st, e);
                        link_up = false;
                    }
                }
                frame.clear();
            }
        }
        if rx_word.is_some() {
            rx.pop_front();
        }
        if m.irq() {
            let (c, cv) = irq;
            *c.lock().expect("irq") += 1;
            cv.notify_all();
        }
        m.tick();
        st.clocks += 1;
        // Nothing moving: give the CPU back now and then, and keep watching the BAR.
        idle = if busy { 0 } else { idle + 1 };
        if idle > 256 && idle.is_multiple_of(64) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    st
}

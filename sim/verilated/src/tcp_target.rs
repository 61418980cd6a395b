//! The simulated FPGA target behind a TCP connection, for `specmirror target --engine hw --device
//! sim`: the verilated target path (`hdl::TargetPath`) takes every LOCK, DATA and ABORT frame
//! word by word and sends its answers back on the connection; the host's software answers the
//! handshake, flushes (after syncing the volume file) and heartbeats, as a NIC's host would.
//!
//! The target path hands each locked, ready write to the host on its volume-write port; the host
//! writes it to the volume file (and syncs it, for a FUA write) before it tells the target path
//! the write is done, so WRITE_DONE never leaves before the data is in the file. A write the file
//! refuses completes with EIO (WRITE_FAILED).
//!
//! The daemon authenticates each connection and hands it over ([`TcpTarget::attach`]); a new
//! connection replaces the one before. The model keeps a copy of the volume in memory (the host
//! model's staging), so the volume size is bounded ([`MAX_VOLUME`]).

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use specmirror_hdl::target_path::host::TpOut;

use crate::served::{target_host, HostSoftware, ServedConfig, ServedError};
use crate::sim_device::{Link, TcpLink};

/// The largest volume the simulated target takes (it stages the volume in memory).
pub const MAX_VOLUME: u64 = 1 << 30;

/// Where the target's writes land.
pub trait VolumeFile: Send + 'static {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    fn sync(&mut self) -> std::io::Result<()>;
}

/// What a run did.
#[derive(Debug)]
pub struct TcpTargetReport {
    pub clocks: u64,
    pub connections: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Writes that went out on the volume-write port and into the file.
    pub writes: u64,
    /// Writes the file refused.
    pub write_errors: u64,
    /// Handshakes, flushes and heartbeats the host's software answered.
    pub host_frames: u64,
    /// The target path's counters at the end.
    pub counters: TpOut,
}

pub struct TcpTarget {
    conns: Sender<TcpStream>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<TcpTargetReport>,
}

impl TcpTarget {
    /// Starts the model's thread; it serves nothing until a connection is attached.
    pub fn start(cfg: ServedConfig, volume: impl VolumeFile) -> Result<TcpTarget, ServedError> {
        cfg.check()?;
        if cfg.volume_size > MAX_VOLUME {
            return Err(ServedError::TooLarge {
                size: cfg.volume_size,
                max: MAX_VOLUME,
            });
        }
        let (conns, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("specmirror-simtarget".into())
            .spawn(move || run(cfg, volume, rx, flag))
            .map_err(|e| ServedError::Thread(e.to_string()))?;
        Ok(TcpTarget {
            conns,
            stop,
            thread,
        })
    }

    /// Serves `s` (authenticated already) from now on, in place of any connection before.
    pub fn attach(&self, s: TcpStream) -> Result<(), ServedError> {
        self.conns
            .send(s)
            .map_err(|_| ServedError::Thread("the simulated target stopped".into()))
    }

    /// Stops the model; what it did.
    pub fn stop(self) -> Result<TcpTargetReport, ServedError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| ServedError::Thread("the simulated target panicked".into()))
    }
}

/// Clocks the model runs between looks at the connection while it has work.
const BATCH: u64 = 64;
/// The errno a write the file refused completes with.
const EIO: u64 = 5;

fn run(
    cfg: ServedConfig,
    mut volume: impl VolumeFile,
    conns: Receiver<TcpStream>,
    stop: Arc<AtomicBool>,
) -> TcpTargetReport {
    let mut host = HostSoftware::new(&cfg);
    let mut h = target_host(&cfg);
    let mut report = TcpTargetReport {
        clocks: 0,
        connections: 0,
        frames_in: 0,
        frames_out: 0,
        writes: 0,
        write_errors: 0,
        host_frames: 0,
        counters: TpOut::default(),
    };
    let mut link: Option<TcpLink> = None;
    while !stop.load(Ordering::Relaxed) {
        // A new connection replaces the old one.
        let idle = !h.busy();
        let next = if idle && link.is_none() {
            conns.recv_timeout(Duration::from_millis(20)).ok()
        } else {
            conns.try_recv().ok()
        };
        if let Some(s) = next {
            match TcpLink::new(s) {
                Ok(l) => {
                    report.connections += 1;
                    tracing::info!("simulated FPGA target: connection attached");
                    link = Some(l);
                }
                Err(e) => tracing::warn!("simulated FPGA target: unusable connection: {e}"),
            }
        }
        let mut got = false;
        if let Some(l) = link.as_mut() {
            loop {
                match l.recv() {
                    Ok(Some(f)) => {
                        got = true;
                        report.frames_in += 1;
                        let Some(answer) = host.take(&f, h.inp.generation, &mut || {
                            volume
                                .sync()
                                .map_err(|e| e.raw_os_error().unwrap_or(EIO as i32))
                        }) else {
                            h.send(&f);
                            continue;
                        };
                        for a in &answer.send {
                            if l.send(a).is_ok() {
                                report.frames_out += 1;
                            }
                        }
                        if let Some(generation) = answer.session {
                            h.inp.generation = generation as u64;
                            h.inp.clear_barriers = true;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("simulated FPGA target: connection lost: {e}");
                        link = None;
                        break;
                    }
                }
            }
        }
        for _ in 0..BATCH {
            h.step();
            // Into the file before the completion goes in (the next clock).
            for (off, len, _, _) in std::mem::take(&mut h.writes) {
                let data = &h.volume[off as usize..][..len];
                let fua = h.out.wr_fua;
                let r =
                    volume
                        .write_at(off, data)
                        .and_then(|_| if fua { volume.sync() } else { Ok(()) });
                report.writes += 1;
                if let Err(e) = r {
                    tracing::error!(
                        offset = off,
                        len,
                        "simulated FPGA target: volume write failed: {e}"
                    );
                    report.write_errors += 1;
                    h.fail_next = EIO;
                }
            }
        }
        for f in std::mem::take(&mut h.answers) {
            if let Some(l) = link.as_mut() {
                if l.send(&f).is_ok() {
                    report.frames_out += 1;
                }
            }
        }
        if !got && !h.busy() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    report.clocks = h.now;
    report.host_frames = host.frames;
    report.counters = h.out;
    report
}

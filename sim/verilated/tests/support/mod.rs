//! Shared by the simulated-device test and its benchmark: a software target on a volume file
//! with a connection past the handshake, and the driver's ring loop that mirrors random writes
//! through the device.

use std::time::{Duration, Instant};

use specmirror_abi::le::{Le32, Le64};
use specmirror_abi::regs;
use specmirror_abi::ring::{CompletionStatus, Descriptor, Mode};
use specmirror_abi::{FrameType, Header, Hello, HelloStatus};
use specmirror_core::Frame;
use specmirror_driver::{ring, Device};
use specmirror_engine::target::{self, TargetOptions};
use specmirror_engine::volume::Volume;
use specmirror_engine::{auth, wire};
use specmirror_hdl::bench::Rng;
use specmirror_verilated::sim_device::SimDevice;
use tokio::io::AsyncWriteExt;

pub const SIZE: u64 = 4 << 20;
pub const REGION: u64 = 64 << 10;
const PAIR: [u8; 16] = *b"simdevice-pair-1";
const GENERATION: u32 = 7;

/// A software target on a volume file, and a connection to it past the handshake.
pub fn target_and_link(
    path: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> std::net::TcpStream {
    rt.block_on(async {
        let volume = Volume::open(path, Some(SIZE)).expect("open the target volume");
        let listener = target::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(target::serve(
            listener,
            TargetOptions {
                volume,
                region_size: REGION,
                pair_id: PAIR,
                secret: None,
                peer_timeout: Duration::from_secs(60),
            },
        ));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        auth::as_source(&mut s, None, Duration::from_secs(5))
            .await
            .expect("authenticate");
        let hello = Hello::for_pair(SIZE, REGION, PAIR, 1, HelloStatus::Ok);
        let mut h = Header::new(FrameType::Hello);
        h.generation = GENERATION;
        s.write_all(&Frame::new(h, hello.to_bytes().to_vec()).encode())
            .await
            .expect("send HELLO");
        let ack = wire::read_frame(&mut s, &mut Vec::new())
            .await
            .expect("read HELLO_ACK")
            .expect("a HELLO_ACK");
        assert_eq!(ack.header.ty, FrameType::HelloAck);
        let ack = Hello::decode(&ack.payload).expect("a HELLO_ACK payload");
        assert_eq!(ack.status, HelloStatus::Ok, "the target refused the pair");
        s.into_std().expect("a std stream")
    })
}

/// What a run of the ring loop did.
pub struct Run {
    pub wall: Duration,
    /// Post to WRITE_DONE, per write.
    pub latencies: Vec<Duration>,
    pub granted: u64,
    /// The volume as the writes left it.
    pub volume: Vec<u8>,
}

/// Mirrors `n` random writes (512 bytes to `max_len`, speculative or conservative at random)
/// through `dev` with the driver's rings, at most `window` in flight.
pub fn mirror(dev: &SimDevice, n: u64, window: u32, max_len: usize, seed: u64) -> Run {
    let entries = 8u32.max(window.next_power_of_two());
    let (mut sq, mut cq) = ring::setup(dev, entries).expect("rings");
    dev.mmio().write(regs::GENERATION, GENERATION);
    dev.mmio().write(regs::REGION_LOG2, REGION.trailing_zeros());
    // One data buffer per submission slot: a slot's data is read before the slot comes round.
    let slot_len = max_len.next_multiple_of(4096);
    let data = dev
        .alloc_dma(entries as usize * slot_len)
        .expect("data memory");
    let mut r = Rng(seed);
    let mut volume = vec![0u8; SIZE as usize];
    let (mut posted, mut finished) = (0u64, 0u64);
    let mut granted = 0u64;
    let mut sent_at = vec![Instant::now(); n as usize + 1];
    let mut latencies = Vec::with_capacity(n as usize);
    let started = Instant::now();
    while finished < n {
        // Post what the window allows, then ring once.
        let mut rang = false;
        while posted < n && posted - finished < window as u64 {
            let id = posted + 1;
            let len = 512 * (1 + r.below((max_len / 512) as u64)) as usize;
            let offset = 512 * r.below((SIZE - len as u64) / 512);
            let bytes: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
            let slot = (posted % entries as u64) as usize;
            data.write(slot * slot_len, &bytes);
            volume[offset as usize..][..len].copy_from_slice(&bytes);
            let mode = if r.below(2) == 0 {
                Mode::Speculative
            } else {
                Mode::Conservative
            };
            let d = Descriptor {
                seq: Le64::new(id),
                lock_id: Le64::new(id),
                offset: Le64::new(offset),
                dma_addr: Le64::new(data.bus_addr() + (slot * slot_len) as u64),
                length: Le32::new(len as u32),
                mode: mode as u8,
                ..Descriptor::default()
            };
            sq.push(dev.mmio(), &d).expect("a free slot");
            sent_at[id as usize] = Instant::now();
            posted += 1;
            rang = true;
        }
        if rang {
            sq.doorbell(dev.mmio());
        }
        let mut got = false;
        while let Some(c) = cq.poll() {
            got = true;
            match ring::status(&c) {
                Some(CompletionStatus::LockGranted) => granted += 1,
                Some(CompletionStatus::WriteDone) => {
                    finished += 1;
                    latencies.push(sent_at[c.lock_id.get() as usize].elapsed());
                }
                other => panic!(
                    "write {}: {other:?} (reason {})",
                    c.lock_id.get(),
                    c.reason.get()
                ),
            }
        }
        if got {
            cq.release(dev.mmio());
        } else {
            dev.wait_interrupt(Duration::from_millis(20));
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stuck: {posted} posted, {finished} done, SQ_HEAD {}, CQ_TAIL {}",
            dev.mmio().read(regs::SQ_HEAD),
            dev.mmio().read(regs::CQ_TAIL)
        );
    }
    Run {
        wall: started.elapsed(),
        latencies,
        granted,
        volume,
    }
}

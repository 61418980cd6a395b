//! The driver's own ring code (`specmirror_driver::ring`) over the simulated device: the verilated
//! source device in its thread, its DMA port serving the driver's memory, its frames going over
//! TCP to the software target engine with a volume file. Writes in both explicit-lock modes,
//! rings of 8 (many wraps), the target's volume as the writes left it.

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
use specmirror_verilated::sim_device::{SimConfig, SimDevice, TcpLink};
use tokio::io::AsyncWriteExt;

const SIZE: u64 = 4 << 20;
const REGION: u64 = 64 << 10;
const PAIR: [u8; 16] = *b"simdevice-pair-1";
const GENERATION: u32 = 7;

/// A software target on a volume file, and a connection to it past the handshake.
fn target_and_link(path: &std::path::Path, rt: &tokio::runtime::Runtime) -> std::net::TcpStream {
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

#[test]
fn the_driver_mirrors_through_the_simulated_device_to_the_software_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("target.img");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stream = target_and_link(&path, &rt);
    let dev = SimDevice::spawn(TcpLink::new(stream).expect("link"), SimConfig::default())
        .expect("start the device");
    dev.check_identity().expect("a specmirror device");
    let entries = 8u32;
    let (mut sq, mut cq) = ring::setup(&dev, entries).expect("rings");
    dev.mmio().write(regs::GENERATION, GENERATION);
    // One data buffer per submission slot: a slot's data is read before the slot comes round.
    let slot_len = 16 << 10;
    let data = dev
        .alloc_dma(entries as usize * slot_len)
        .expect("data memory");

    let n = 300u64;
    let mut r = Rng(0x51d0_0001);
    let mut volume = vec![0u8; SIZE as usize];
    let (mut posted, mut finished) = (0u64, 0u64);
    let mut granted = 0u64;
    let started = Instant::now();
    while finished < n {
        // Post what the window allows, then ring once.
        let mut rang = false;
        while posted < n && posted - finished < entries as u64 {
            let id = posted + 1;
            let len = 512 * (1 + r.below(16)) as usize;
            let offset = 512 * r.below((SIZE - len as u64) / 512);
            let bytes: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
            let slot = (posted % entries as u64) as usize;
            data.write(slot * slot_len, &bytes);
            volume[offset as usize..][..len].copy_from_slice(&bytes);
            let first = offset / REGION;
            let end = (offset + len as u64).div_ceil(REGION);
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
                first_region: Le64::new(first),
                region_count: Le64::new(end - first),
                ..Descriptor::default()
            };
            sq.push(dev.mmio(), &d).expect("a free slot");
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
                Some(CompletionStatus::WriteDone) => finished += 1,
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
    let wall = started.elapsed();
    assert_eq!(granted, n, "one LOCK_GRANTED per write");
    // The target wrote each write before it answered WRITE_DONE.
    let on_disk = std::fs::read(&path).expect("read the target volume");
    assert!(
        on_disk == volume,
        "the target's volume differs from the writes"
    );
    drop(data);
    drop((sq, cq));
    let st = dev.stop();
    assert_eq!(st.faults, 0, "DMA faults");
    assert_eq!(st.link_error, None);
    assert_eq!(st.completions_written, 2 * n);
    eprintln!(
        "{n} writes through the simulated device in {} clocks ({} per write), {:.2} s wall \
         ({:.0} µs per write); {} frames out, {} in",
        st.clocks,
        st.clocks / n,
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1e6 / n as f64,
        st.frames_sent,
        st.frames_received
    );
}

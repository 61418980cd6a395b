//! The driver's own ring code (`specmirror_driver::ring`) over the simulated device: the verilated
//! source device in its thread, its DMA port serving the driver's memory, its frames going over
//! TCP to the software target engine with a volume file. Writes in both explicit-lock modes,
//! rings of 8 (many wraps), the target's volume as the writes left it.

mod support;

use specmirror_driver::Device;
use specmirror_verilated::sim_device::{SimConfig, SimDevice, TcpLink};

use support::{mirror, target_and_link};

#[test]
fn the_driver_mirrors_through_the_simulated_device_to_the_software_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("target.img");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stream = target_and_link(&path, &rt);
    let dev = SimDevice::spawn(TcpLink::new(stream).expect("link"), SimConfig::default())
        .expect("start the device");
    dev.check_identity().expect("a specmirror device");
    let n = 300u64;
    let run = mirror(&dev, n, 8, 8192, 0x51d0_0001);
    assert_eq!(run.granted, n, "one LOCK_GRANTED per write");
    // The target wrote each write before it answered WRITE_DONE.
    let on_disk = std::fs::read(&path).expect("read the target volume");
    assert!(
        on_disk == run.volume,
        "the target's volume differs from the writes"
    );
    let st = dev.stop();
    assert_eq!(st.faults, 0, "DMA faults");
    assert_eq!(st.link_error, None);
    assert_eq!(st.dma_writes, 2 * n);
    eprintln!(
        "{n} writes through the simulated device in {} clocks ({} per write), {:.2} s wall \
         ({:.0} µs per write); {} frames out, {} in",
        st.clocks,
        st.clocks / n,
        run.wall.as_secs_f64(),
        run.wall.as_secs_f64() * 1e6 / n as f64,
        st.frames_sent,
        st.frames_received
    );
    let mut l = run.latencies.clone();
    l.sort();
    eprintln!(
        "post to WRITE_DONE: p50 {:?}, p99 {:?}",
        l[l.len() / 2],
        l[l.len() * 99 / 100]
    );
}

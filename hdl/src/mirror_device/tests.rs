//! The device in a closed loop with a host driving its rings through BAR0 and DMA, against the
//! software target core: rings of 4 entries (many wraps, a full completion ring the device must
//! wait on, a full submission ring the host must wait on), writes past the volume's end rejected.

use specmirror_abi::ring::Mode;

use super::host::{check, run, with_host_frames, Hdl};
use crate::source_path::host::{workload, SoftwarePeer};

fn closed_loop(mode: Option<Mode>, n: u64, log2: u32, seed: u64) {
    let writes = workload(seed, n, mode);
    let d = run(
        &mut Hdl::new(),
        &mut SoftwarePeer::new(),
        &writes,
        log2,
        8,
        true,
        seed,
    );
    check(&writes, &d, &format!("{mode:?}"));
    eprintln!(
        "{mode:?}: {n} writes through rings of {} in {} clocks, {} completions",
        1 << log2,
        d.outcome.clocks,
        d.outcome.completions.len()
    );
}

#[test]
fn speculative_writes_through_the_rings() {
    closed_loop(Some(Mode::Speculative), 30, 2, 0xde71_0001);
}

#[test]
fn conservative_writes_through_the_rings() {
    closed_loop(Some(Mode::Conservative), 30, 2, 0xde71_0002);
}

#[test]
fn mixed_modes_through_larger_rings() {
    closed_loop(None, 30, 4, 0xde71_0003);
}

#[test]
fn host_frames_leave_through_the_ring_in_order_with_the_writes() {
    let writes = with_host_frames(workload(0xde71_0004, 45, None), 3);
    let d = run(
        &mut Hdl::new(),
        &mut SoftwarePeer::new(),
        &writes,
        3,
        8,
        true,
        0xde71_0004,
    );
    check(&writes, &d, "raw");
    assert_eq!(d.others.len(), 15, "the heartbeats on the wire");
    eprintln!(
        "45 writes and 15 host frames through rings of 8 in {} clocks",
        d.outcome.clocks
    );
}

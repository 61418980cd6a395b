//! The source path against the software target core, in a closed loop (`host`): speculative and
//! conservative writes, some past the volume's end, every completion as the protocol says.

use specmirror_abi::ring::Mode;

use super::host::{check, run, workload, Hdl, SoftwarePeer};

fn closed_loop(mode: Mode, seed: u64) -> u64 {
    let writes = workload(seed, 40, Some(mode));
    let o = run(&mut Hdl::new(), &mut SoftwarePeer::new(), &writes, 8, seed);
    check(&writes, &o, &format!("{mode:?}"));
    eprintln!(
        "{mode:?}: 40 writes in {} clocks (round trips of 50 to 150 clocks), {} completions",
        o.clocks,
        o.completions.len()
    );
    o.clocks
}

#[test]
fn speculative_writes_complete_against_the_software_target() {
    closed_loop(Mode::Speculative, 0x50c0_0001);
}

#[test]
fn conservative_writes_complete_and_a_rejected_lock_sends_no_data() {
    closed_loop(Mode::Conservative, 0x50c0_0002);
}

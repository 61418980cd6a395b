//! The receive rings against the host model (`host.rs`): rings of 4, 8 and 32 entries, the host
//! slow enough at times that the receive ring stays full.

use super::host::{run, Hdl, Params};

#[test]
fn every_write_reaches_the_host_and_every_outcome_comes_back_in_order() {
    for (seed, log2, stall) in [(1u64, 2u32, 3000), (2, 3, 3000), (3, 5, 15000)] {
        let p = Params {
            seed,
            writes: 300,
            log2,
            look: 40,
            stall_in: 20,
            stall,
        };
        let o = run(&mut Hdl::new(), &p);
        assert_eq!(o.handed, 300);
        assert_eq!(o.done.len(), 300, "seed {seed}");
        assert!(o.done.iter().any(|d| d.1 != 0), "some writes failed");
        assert_eq!(o.irqs, 300, "one interrupt per entry");
        assert!(
            o.full_clocks > 1000,
            "seed {seed}: the host never left the ring full long ({} clocks)",
            o.full_clocks
        );
    }
}

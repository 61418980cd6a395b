//! `specmirror demo` as a user runs it. In a test binary of its own, so that it never shares the
//! machine with the long simulator runs (its latency ratio would suffer from their load).

use std::process::Command;

fn specmirror() -> Command {
    Command::new(env!("CARGO_BIN_EXE_specmirror"))
}

#[test]
fn demo_runs_and_speculative_costs_half_of_conservative() {
    let out = specmirror()
        .args([
            "demo",
            "--writes",
            "300",
            "--samples",
            "60",
            "--delay",
            "2ms",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ratio: f64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("speculative / conservative p50 = "))
        .expect("ratio line")
        .parse()
        .unwrap();
    assert!(
        ratio < 0.7,
        "speculative should cost about half: {ratio}\n{stdout}"
    );
    assert_eq!(
        stdout.matches("copies identical (sha256)").count(),
        3,
        "every mode ends with identical copies:\n{stdout}"
    );
}

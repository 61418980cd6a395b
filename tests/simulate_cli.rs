//! `specmirror simulate` and `specmirror demo` run as a user runs them.

use std::process::Command;

fn specmirror() -> Command {
    Command::new(env!("CARGO_BIN_EXE_specmirror"))
}

/// Parses `key=value` fields of the summary line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.trim_start_matches('(').strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .trim_end_matches(')')
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line:?}: {e}"))
}

/// Seeds per mode; CI runs the full 10,000. `SPECMIRROR_SIM_SEEDS` overrides it.
fn seeds() -> u64 {
    std::env::var("SPECMIRROR_SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("SPECMIRROR_SIM_SEEDS is a number"))
        .unwrap_or(10_000)
}

fn run_mode(mode: &str) {
    let n = seeds();
    let out = specmirror()
        .args(["simulate", "--seeds", &n.to_string(), "--mode", mode])
        .output()
        .expect("run specmirror");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "simulate failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().expect("a summary line");
    assert!(
        last.starts_with("simulate: "),
        "summary is the last line: {last}"
    );
    assert!(last.contains(&format!("mode={mode}")));
    assert_eq!(field(last, "schedules"), n);
    assert_eq!(field(last, "violations"), 0);
    assert!(
        field(last, "events") > n * 100,
        "schedules did real work: {last}"
    );
    assert!(field(last, "acked") > n * 10);
    // The fault mix really exercised the failure paths.
    for f in [
        "drops",
        "dups",
        "corruptions",
        "cuts",
        "crashes",
        "write_errors",
        "local_holds",
    ] {
        assert!(field(last, f) > 0, "no {f} injected: {last}");
    }
    assert!(
        field(last, "rollbacks") > 0,
        "no rollback exercised: {last}"
    );
    eprintln!("{last}");
}

#[test]
fn simulate_speculative_mode_over_many_seeds() {
    run_mode("speculative");
}

#[test]
fn simulate_implicit_mode_over_many_seeds() {
    run_mode("implicit");
}

#[test]
fn simulate_conservative_mode_over_many_seeds() {
    run_mode("conservative");
}

#[test]
fn a_seed_replays_exactly() {
    let run = || {
        let out = specmirror()
            .args([
                "simulate",
                "--seeds",
                "1",
                "--first-seed",
                "4242",
                "--trace",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run();
    assert!(a.lines().count() > 50, "a trace was printed");
    assert_eq!(a, run(), "the same seed gives the same trace");
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let out = specmirror()
        .args(["simulate", "--seeds", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds must be at least 1"));
    let out = specmirror()
        .args(["simulate", "--mode", "fast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'fast'"));
}

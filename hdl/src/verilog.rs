//! Verilog generated from the blocks, and the Verilator lint every generated module must pass.

use std::process::Command;

use rust_hdl::prelude::*;

use crate::Crc32cWord;

/// Warnings waived when linting rust-hdl output with `-Wall`, and why.
pub const LINT_WAIVERS: &[(&str, &str)] = &[
    (
        "-Wno-WIDTH",
        "rust-hdl writes constants and shifts without sizing them to their context",
    ),
    (
        "-Wno-DECLFILENAME",
        "all modules go into one file, named after the top rather than each module",
    ),
    (
        "-Wno-UNUSEDSIGNAL",
        "unused high bits of internal buses (e.g. a word's upper half that a field ignores)",
    ),
    (
        "-Wno-UNUSEDPARAM",
        "rust-hdl declares a localparam for every enum state, used or not",
    ),
];

/// The send path as Verilog (top module `top`).
pub fn spec_sender() -> String {
    let mut u = crate::spec_sender::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The receive-side frame parser as Verilog (top module `top`).
pub fn frame_parser() -> String {
    let mut u = crate::frame_parser::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target's lock table and lock-retry state machine as Verilog (top module `top`), with the
/// product's 16 entries.
pub fn lock_table() -> String {
    let mut u = crate::lock_table::tests_support::connected::<16, 4>();
    u.connect_all();
    generate_verilog(&u)
}

/// The target's receive side for locks (frame parser into the 16-entry lock table) as Verilog.
pub fn lock_retry() -> String {
    let mut u = crate::lock_retry::tests_support::connected::<16, 4>();
    u.connect_all();
    generate_verilog(&u)
}

/// The receive side with the 8-entry lock table, for the iCE40.
pub fn lock_retry_8() -> String {
    let mut u = crate::lock_retry::tests_support::connected::<8, 3>();
    u.connect_all();
    generate_verilog(&u)
}

/// The lock table with 8 entries, the size that fits an iCE40 HX8K beside its board glue.
pub fn lock_table_8() -> String {
    let mut u = crate::lock_table::tests_support::connected::<8, 3>();
    u.connect_all();
    generate_verilog(&u)
}

/// The target's answer path as Verilog (top module `top`).
pub fn answer_emitter() -> String {
    let mut u = crate::answer_emitter::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target's answer cache, as Verilog.
pub fn answer_cache() -> String {
    let mut u = crate::answer_cache::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target's data buffer (for the product's 16-entry table), as Verilog.
pub fn data_buffer() -> String {
    let mut u = crate::data_buffer::tests_support::connected::<16, 4>();
    u.connect_all();
    generate_verilog(&u)
}

/// The target wire to wire (parser, 16-entry table, data buffer, answers), as Verilog.
pub fn target_path() -> String {
    let mut u = crate::target_path::tests_support::connected::<16, 4>();
    u.connect_all();
    generate_verilog(&u)
}

/// The send tracker as Verilog (top module `top`).
pub fn send_tracker() -> String {
    let mut u = crate::send_tracker::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The received-frame FIFO as Verilog (top module `top`).
pub fn frame_fifo() -> String {
    let mut u = crate::frame_fifo::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target device's choice of the host's frames as Verilog (top module `top`).
pub fn host_filter() -> String {
    let mut u = crate::host_filter::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target device's sender of the host's frames as Verilog (top module `top`).
pub fn host_tx() -> String {
    let mut u = crate::host_tx::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The frame-level transmit mux as Verilog (top module `top`).
pub fn tx_mux() -> String {
    let mut u = crate::tx_mux::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The source path as Verilog (top module `top`).
pub fn source_path() -> String {
    let mut u = crate::source_path::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The source device (register block, ring engine, source path) as Verilog (top module `top`).
pub fn mirror_device() -> String {
    let mut u = crate::mirror_device::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target device's receive rings as Verilog (top module `top`).
pub fn rx_ring() -> String {
    let mut u = crate::rx_ring::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The target device (register block, receive rings, target path) as Verilog (top module `top`).
pub fn target_device() -> String {
    let mut u = crate::target_device::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The register block as Verilog (top module `top`).
pub fn register_file() -> String {
    let mut u = crate::register_file::tests_support::connected();
    u.connect_all();
    generate_verilog(&u)
}

/// The CRC step as Verilog (top module `top`).
pub fn crc32c_word() -> String {
    let mut u = Crc32cWord::default();
    u.crc_in.connect();
    u.data.connect();
    u.connect_all();
    generate_verilog(&u)
}

#[derive(Debug)]
pub enum LintError {
    /// Verilator is not installed.
    Missing(String),
    /// Verilator found problems; its output.
    Failed(String),
}

impl std::fmt::Display for LintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LintError::Missing(e) => write!(
                f,
                "verilator is not installed ({e}): install the Debian package verilator (./test.sh does)"
            ),
            LintError::Failed(o) => write!(f, "verilator --lint-only failed:\n{o}"),
        }
    }
}

/// `verilator --lint-only -Wall` with only [`LINT_WAIVERS`].
pub fn lint(name: &str, verilog: &str) -> Result<(), LintError> {
    let dir = std::env::temp_dir().join(format!("specmirror-lint-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| LintError::Failed(e.to_string()))?;
    let file = dir.join("top.v");
    std::fs::write(&file, verilog).map_err(|e| LintError::Failed(e.to_string()))?;
    let mut cmd = Command::new("verilator");
    cmd.args(["--lint-only", "-Wall", "--top-module", "top"]);
    for (w, _) in LINT_WAIVERS {
        cmd.arg(w);
    }
    let out = cmd
        .arg(&file)
        .output()
        .map_err(|e| LintError::Missing(e.to_string()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(())
    } else {
        Err(LintError::Failed(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_verilog_passes_verilator_lint() {
        for (name, v) in [
            ("crc32c_word", crc32c_word()),
            ("spec_sender", spec_sender()),
            ("frame_parser", frame_parser()),
            ("register_file", register_file()),
            ("lock_table", lock_table()),
            ("lock_table_8", lock_table_8()),
            ("lock_retry", lock_retry()),
            ("lock_retry_8", lock_retry_8()),
            ("answer_emitter", answer_emitter()),
            ("data_buffer", data_buffer()),
            ("answer_cache", answer_cache()),
            ("target_path", target_path()),
            ("send_tracker", send_tracker()),
            ("frame_fifo", frame_fifo()),
            ("host_filter", host_filter()),
            ("host_tx", host_tx()),
            ("tx_mux", tx_mux()),
            ("source_path", source_path()),
            ("mirror_device", mirror_device()),
            ("rx_ring", rx_ring()),
            ("target_device", target_device()),
        ] {
            assert!(v.contains("module top"), "{name}");
            if let Err(e) = lint(name, &v) {
                panic!("{name}: {e}");
            }
        }
    }
}

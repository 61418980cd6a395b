//! Generates the Verilog from `hdl/`, runs Verilator on it, and compiles the model and a small C
//! shim so Rust can drive it. Needs `verilator` (Debian package verilator).

use std::path::{Path, PathBuf};
use std::process::Command;

const INCLUDE: &str = "/usr/share/verilator/include";

/// Ports of the send path, in the order the shim numbers them.
const PORTS: &[&str] = &[
    "clock",
    "desc_valid",
    "desc_ready",
    "desc_seq",
    "desc_lock_id",
    "desc_offset",
    "desc_length",
    "desc_mode",
    "desc_flags",
    "desc_generation",
    "desc_first_region",
    "desc_region_count",
    "ack_lock",
    "ack_seq",
    "data_in",
    "data_valid",
    "data_ready",
    "granted",
    "tx_data",
    "tx_valid",
    "tx_last",
    "tx_ready",
    "busy",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../hdl/src");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mdir = out.join("vsender");
    std::fs::create_dir_all(&mdir).expect("create build folder");
    let v = mdir.join("top.v");
    std::fs::write(&v, specmirror_hdl::verilog::spec_sender()).expect("write Verilog");
    let status = Command::new("verilator")
        .args(["--cc", "--top-module", "top", "--prefix", "Vsender", "-O3"])
        .args([
            "--x-assign",
            "fast",
            "--x-initial",
            "fast",
            "-Wno-fatal",
            "-Wno-WIDTH",
        ])
        .arg("--Mdir")
        .arg(&mdir)
        .arg(&v)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("verilator failed ({s}) on the generated send path"),
        Err(e) => panic!(
            "verilator is not installed ({e}): install the Debian package verilator (./test.sh does)"
        ),
    }
    write_shim(&mdir);
    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .include(INCLUDE)
        .include(format!("{INCLUDE}/vltstd"))
        .include(&mdir)
        .define("VM_COVERAGE", "0")
        .define("VM_SC", "0")
        .define("VM_TRACE", "0")
        .define("VM_TRACE_FST", "0")
        .define("VM_TRACE_VCD", "0")
        .opt_level(2)
        .warnings(false)
        .file(format!("{INCLUDE}/verilated.cpp"))
        .file(format!("{INCLUDE}/verilated_threads.cpp"))
        .file(mdir.join("shim.cpp"));
    for e in std::fs::read_dir(&mdir).expect("read build folder") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "cpp")
            && p.file_name().is_some_and(|n| n != "shim.cpp")
        {
            b.file(p);
        }
    }
    b.compile("vsender");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-link-lib=atomic");
}

fn write_shim(mdir: &Path) {
    let mut set = String::new();
    let mut get = String::new();
    for (i, p) in PORTS.iter().enumerate() {
        set.push_str(&format!("    case {i}: m->{p} = v; break;\n"));
        get.push_str(&format!("    case {i}: return (uint64_t)m->{p};\n"));
    }
    let shim = format!(
        r#"#include "Vsender.h"
#include "verilated.h"
#include <cstdint>

double sc_time_stamp() {{ return 0; }}

extern "C" {{
void* vsender_new() {{ return new Vsender; }}
void vsender_free(void* p) {{ delete static_cast<Vsender*>(p); }}
void vsender_eval(void* p) {{ static_cast<Vsender*>(p)->eval(); }}
void vsender_set(void* p, int port, uint64_t v) {{
  Vsender* m = static_cast<Vsender*>(p);
  switch (port) {{
{set}  default: break;
  }}
}}
uint64_t vsender_get(void* p, int port) {{
  Vsender* m = static_cast<Vsender*>(p);
  switch (port) {{
{get}  default: return 0;
  }}
}}
}}
"#
    );
    std::fs::write(mdir.join("shim.cpp"), shim).expect("write shim");
}

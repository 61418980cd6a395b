//! Generates the Verilog from `hdl/`, runs Verilator on it, and compiles the model and a small C
//! shim so Rust can drive it. Needs `verilator` (Debian package verilator).

use std::path::{Path, PathBuf};
use std::process::Command;

const INCLUDE: &str = "/usr/share/verilator/include";

/// Ports of the send path, in the order the shim numbers them.
const SENDER_PORTS: &[&str] = &[
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
    "rejected",
    "lock_id_out",
];

/// Ports of the frame parser, in the order the shim numbers them.
const PARSER_PORTS: &[&str] = &[
    "clock",
    "rx_data",
    "rx_valid",
    "rx_last",
    "ty",
    "flags",
    "payload_len",
    "generation",
    "seq",
    "lock_id",
    "offset",
    "arg",
    "ack_lock",
    "ack_seq",
    "hdr_valid",
    "pay_data",
    "pay_valid",
    "frame_ok",
    "frame_bad",
    "bad_count",
];

/// Ports of the lock table, in the order the shim numbers them.
const LOCK_PORTS: &[&str] = &[
    "clock",
    "req_valid",
    "req_ready",
    "req_lock_id",
    "req_seq",
    "req_first",
    "req_count",
    "region_count",
    "local_hold",
    "local_first",
    "local_end",
    "retry_backoff",
    "retry_limit",
    "rel_valid",
    "rel_slot",
    "rel_fail",
    "clear_barriers",
    "dec_valid",
    "dec_granted",
    "dec_reason",
    "dec_lock_id",
    "dec_seq",
    "dec_slot",
    "dec_first",
    "dec_end",
    "retried",
    "held",
    "overflow",
];

/// Ports of the answer path, in the order the shim numbers them.
const ANSWER_PORTS: &[&str] = &[
    "clock",
    "ans_valid",
    "ans_ty",
    "ans_seq",
    "ans_lock_id",
    "ans_arg",
    "generation",
    "tx_data",
    "tx_valid",
    "tx_last",
    "tx_ready",
    "dropped",
];

/// Ports of the target path, in the order the shim numbers them.
const TARGET_PORTS: &[&str] = &[
    "clock",
    "rx_data",
    "rx_valid",
    "rx_last",
    "tx_data",
    "tx_valid",
    "tx_last",
    "tx_ready",
    "generation",
    "region_count",
    "retry_backoff",
    "retry_limit",
    "local_hold",
    "local_first",
    "local_end",
    "clear_barriers",
    "region_shift",
    "volume_bytes",
    "data_timeout",
    "grant_timeout",
    "wr_valid",
    "wr_ready",
    "wr_data",
    "wr_last",
    "wr_offset",
    "wr_len",
    "wr_fua",
    "wr_slot",
    "done_valid",
    "done_ready",
    "done_slot",
    "done_error",
    "dec_valid",
    "dec_granted",
    "dec_lock_id",
    "dec_slot",
    "held",
    "frames_bad",
    "lock_drops",
    "answer_drops",
    "data_drops",
    "data_expired",
    "data_repeats",
    "data_violations",
    "locks_revoked",
    "lock_ahead",
    "lock_repeats",
    "stale",
    "answers_repeated",
    "repeats_missed",
    "data_status",
    "grants_taken",
];

/// Ports of the send tracker, in the order the shim numbers them (`name#k` is 64-bit word `k` of
/// a wider port).
const TRACKER_PORTS: &[&str] = &[
    "clock",
    "sent_valid",
    "sent_lock_id",
    "sent_seq",
    "room",
    "ans_valid",
    "ans_ty",
    "ans_lock_id",
    "ans_arg",
    "wait_lock_id",
    "granted",
    "rejected",
    "cpl_valid",
    "cpl_ready",
    "cpl_data#0",
    "cpl_data#1",
    "cpl_data#2",
    "cpl_data#3",
    "inflight",
    "unmatched",
    "cpl_drops",
];

/// Ports of the target device's receive rings, in the order the shim numbers them.
const RX_RING_PORTS: &[&str] = &[
    "clock",
    "enable",
    "rx_base",
    "rx_log2",
    "rx_head",
    "buf_base",
    "done_base",
    "done_log2",
    "done_tail",
    "rx_tail",
    "done_head",
    "in_valid",
    "in_ready",
    "in_data",
    "in_last",
    "in_offset",
    "in_len",
    "in_fua",
    "in_frame",
    "in_tag",
    "done_valid",
    "done_ready",
    "done_tag",
    "done_error",
    "wr_valid",
    "wr_ready",
    "wr_addr",
    "wr_data",
    "rd_req_valid",
    "rd_req_ready",
    "rd_req_addr",
    "rd_req_words",
    "rd_valid",
    "rd_data",
    "rd_ready",
    "irq",
];

/// Ports of the source path, in the order the shim numbers them.
const SOURCE_PORTS: &[&str] = &[
    "clock",
    "desc_valid",
    "desc_ready",
    "desc_seq",
    "desc_lock_id",
    "desc_offset",
    "desc_length",
    "desc_mode",
    "desc_flags",
    "desc_first_region",
    "desc_region_count",
    "generation",
    "ack_lock",
    "ack_seq",
    "data_in",
    "data_valid",
    "data_ready",
    "tx_data",
    "tx_valid",
    "tx_last",
    "tx_ready",
    "rx_data",
    "rx_valid",
    "rx_last",
    "cpl_valid",
    "cpl_ready",
    "cpl_data#0",
    "cpl_data#1",
    "cpl_data#2",
    "cpl_data#3",
    "frames_bad",
    "stale",
    "unmatched",
    "cpl_drops",
    "inflight",
];

/// Ports of the source device (register block, ring engine, source path), in the order the shim
/// numbers them.
const DEVICE_PORTS: &[&str] = &[
    "clock",
    "mmio_addr",
    "mmio_wdata",
    "mmio_write",
    "mmio_rdata",
    "rd_req_valid",
    "rd_req_ready",
    "rd_req_addr",
    "rd_req_words",
    "rd_valid",
    "rd_data",
    "rd_ready",
    "wr_valid",
    "wr_ready",
    "wr_addr",
    "wr_data#0",
    "wr_data#1",
    "wr_data#2",
    "wr_data#3",
    "rx_wr_valid",
    "rx_wr_ready",
    "rx_wr_addr",
    "rx_wr_data",
    "irq",
    "rx_irq",
    "tx_data",
    "tx_valid",
    "tx_last",
    "tx_ready",
    "rx_data",
    "rx_valid",
    "rx_last",
    "stale",
    "unmatched",
    "cpl_drops",
    "inflight",
    "rx_drops",
];

/// Ports of the target device (register block, receive rings, target path), in the order the shim
/// numbers them.
const TDEVICE_PORTS: &[&str] = &[
    "clock",
    "mmio_addr",
    "mmio_wdata",
    "mmio_write",
    "mmio_rdata",
    "rd_req_valid",
    "rd_req_ready",
    "rd_req_addr",
    "rd_req_words",
    "rd_valid",
    "rd_data",
    "rd_ready",
    "wr_valid",
    "wr_ready",
    "wr_addr",
    "wr_data",
    "irq",
    "tx_data",
    "tx_valid",
    "tx_last",
    "tx_ready",
    "rx_data",
    "rx_valid",
    "rx_last",
    "rx_drops",
];

/// Ports of the simulated NIC (`nic_sim` from bitstreams/ecp5/nic.py), in the order the shim
/// numbers them.
const NIC_PORTS: &[&str] = &[
    "clk",
    "rst",
    "phy_rx_valid",
    "phy_rx_data",
    "phy_tx_valid",
    "phy_tx_data",
    "generation",
    "region_count",
    "retry_backoff",
    "retry_limit",
    "local_hold",
    "local_first",
    "local_end",
    "clear_barriers",
    "region_shift",
    "volume_bytes",
    "data_timeout",
    "grant_timeout",
    "wr_valid",
    "wr_ready",
    "wr_data",
    "wr_last",
    "wr_offset",
    "wr_len",
    "wr_fua",
    "wr_slot",
    "done_valid",
    "done_ready",
    "done_slot",
    "done_error",
    "host_rx_valid",
    "host_rx_last",
    "host_rx_data",
    "host_rx_last_be",
    "host_rx_error",
    "host_rx_ip",
    "host_rx_port",
    "host_tx_valid",
    "host_tx_ready",
    "host_tx_last",
    "host_tx_data",
    "host_tx_last_be",
    "host_tx_length",
    "host_tx_ip",
    "host_tx_port",
    "datagrams",
    "flagged",
    "held",
    "frames_bad",
    "lock_drops",
    "answer_drops",
    "data_drops",
    "stale",
];

/// The simulated NIC's Verilog: LiteEth (MAC, IP, UDP, ARP) around the target path, written by
/// bitstreams/ecp5/nic.py with the venv's python (bitstreams/ecp5/venv.sh makes it).
fn nic_verilog(mdir: &Path) -> PathBuf {
    println!("cargo:rerun-if-changed=../../bitstreams/ecp5/nic.py");
    println!("cargo:rerun-if-env-changed=SPECMIRROR_ECP5_VENV");
    let venv = std::env::var_os("SPECMIRROR_ECP5_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/specmirror/ecp5-venv"))
        })
        .expect("HOME or SPECMIRROR_ECP5_VENV");
    let python = venv.join("bin/python");
    if !python.exists() {
        panic!(
            "the simulated NIC needs LiteX and LiteEth in {}: run bitstreams/ecp5/venv.sh (./test.sh does)",
            venv.display()
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bitstreams/ecp5/nic.py");
    let v = mdir.join("nic_sim.v");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--sim-verilog")
        .arg(&v)
        .current_dir(mdir)
        .output()
        .expect("run the venv's python");
    if !out.status.success() {
        panic!(
            "nic.py --sim-verilog failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    v
}

fn verilate(mdir: &Path, class: &str, top: &str, files: &[PathBuf], waivers: &[&str]) {
    let status = Command::new("verilator")
        .args(["--cc", "--top-module", top, "--prefix", class, "-O3"])
        .args(["--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal"])
        .args(waivers)
        .arg("--Mdir")
        .arg(mdir)
        .args(files)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("verilator failed ({s}) on {class}"),
        Err(e) => panic!(
            "verilator is not installed ({e}): install the Debian package verilator (./test.sh does)"
        ),
    }
}

fn add_model(b: &mut cc::Build, mdir: &Path) {
    b.include(mdir);
    for e in std::fs::read_dir(mdir).expect("read build folder") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "cpp") {
            b.file(p);
        }
    }
}

/// The register file's scalar ports; its per-register arrays follow them.
const REG_SCALARS: &[&str] = &["clock", "addr", "wdata", "write", "rdata"];

/// The Rust enum that numbers each model's ports, what it is, and the port list: the shim and the
/// Rust side take their numbering from the same list.
const ENUMS: &[(&str, &str, &[&str])] = &[
    ("Port", "the send path", SENDER_PORTS),
    ("ParserPort", "the frame parser", PARSER_PORTS),
    (
        "RegPort",
        "the register file (scalars; the arrays follow, see `reg_port`)",
        REG_SCALARS,
    ),
    ("LockPort", "the lock table", LOCK_PORTS),
    ("AnswerPort", "the answer path", ANSWER_PORTS),
    ("TargetPort", "the target path", TARGET_PORTS),
    (
        "TrackerPort",
        "the send tracker (wide ports as 64-bit words, low first)",
        TRACKER_PORTS,
    ),
    (
        "SourcePort",
        "the source path (wide ports as 64-bit words, low first)",
        SOURCE_PORTS,
    ),
    (
        "DevicePort",
        "the source device (wide ports as 64-bit words, low first)",
        DEVICE_PORTS,
    ),
    ("RxRingPort", "the receive rings", RX_RING_PORTS),
    ("TargetDevicePort", "the target device", TDEVICE_PORTS),
    ("NicPort", "the simulated NIC", NIC_PORTS),
];

/// `desc_first_region` as `DescFirstRegion`, `cpl_data#0` as `CplData0`; the NIC's `clk` is
/// `Clock`, as every model's first port is.
fn variant(port: &str) -> String {
    if port == "clk" {
        return "Clock".into();
    }
    port.split(['_', '#'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes `ports.rs` (included by the crate) with every model's port enum.
fn write_port_enums(out: &Path) {
    let mut s = String::from("// Generated by build.rs from its port lists.\n\n");
    for (name, what, ports) in ENUMS {
        s += &format!(
            "/// Ports of {what}, numbered as the shim numbers them.\n\
             #[derive(Clone, Copy, Debug, PartialEq, Eq)]\n#[repr(i32)]\npub enum {name} {{\n"
        );
        for (i, p) in ports.iter().enumerate() {
            s += &format!("    {} = {i},\n", variant(p));
        }
        s += "}\n\n";
    }
    std::fs::write(out.join("ports.rs"), s).expect("write ports.rs");
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../hdl/src");
    println!("cargo:rerun-if-changed=../../bitstreams/ecp5/requirements.txt");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    write_port_enums(&out);
    // Verilating and compiling the models takes minutes; the library is kept under the target
    // folder by a hash of everything it is made from (the HDL and ABI sources, the locked crate
    // versions, the NIC's script and toolchain pins, Verilator's version, this file), so a
    // second build of the same models (clippy's, then the tests') links the first one's.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut key = Fnv::new();
    key.add(include_str!("build.rs").as_bytes());
    key.add(&verilator_version());
    for dir in ["hdl/src", "host/abi/src"] {
        hash_tree(&mut key, &root.join(dir));
    }
    for file in [
        "Cargo.lock",
        "hdl/Cargo.toml",
        "bitstreams/ecp5/nic.py",
        "bitstreams/ecp5/requirements.txt",
    ] {
        key.add(file.as_bytes());
        key.add(&std::fs::read(root.join(file)).expect("read a model input"));
    }
    let cache = out
        .ancestors()
        .nth(4)
        .expect("OUT_DIR inside the target folder")
        .join("verilated-cache")
        .join(format!("{:016x}", key.0));
    let lib = "libverilated_models.a";
    if cache.join(lib).exists() {
        println!("cargo:rustc-link-search=native={}", cache.display());
        println!("cargo:rustc-link-lib=static=verilated_models");
        println!("cargo:rustc-link-lib=stdc++");
        println!("cargo:rustc-link-lib=pthread");
        println!("cargo:rustc-link-lib=atomic");
        return;
    }

    // The register file's ports: scalars, then each per-register array in turn (Verilator spells
    // rust-hdl's `value$3` as `value__0243`).
    let mut reg_ports: Vec<String> = REG_SCALARS.iter().map(|s| s.to_string()).collect();
    for group in ["value", "hw_in", "hw_inc", "written"] {
        for i in 0..specmirror_hdl::register_file::NREGS {
            reg_ports.push(format!("{group}__024{i}"));
        }
    }
    let reg_refs: Vec<&str> = reg_ports.iter().map(|s| s.as_str()).collect();
    let models: [(&str, &str, String, &[&str]); 11] = [
        (
            "vsender",
            "Vsender",
            specmirror_hdl::verilog::spec_sender(),
            SENDER_PORTS,
        ),
        (
            "vparser",
            "Vparser",
            specmirror_hdl::verilog::frame_parser(),
            PARSER_PORTS,
        ),
        (
            "vregs",
            "Vregs",
            specmirror_hdl::verilog::register_file(),
            &reg_refs,
        ),
        (
            "vlock",
            "Vlock",
            specmirror_hdl::verilog::lock_table(),
            LOCK_PORTS,
        ),
        (
            "vanswer",
            "Vanswer",
            specmirror_hdl::verilog::answer_emitter(),
            ANSWER_PORTS,
        ),
        (
            "vtarget",
            "Vtarget",
            specmirror_hdl::verilog::target_path(),
            TARGET_PORTS,
        ),
        (
            "vtracker",
            "Vtracker",
            specmirror_hdl::verilog::send_tracker(),
            TRACKER_PORTS,
        ),
        (
            "vsource",
            "Vsource",
            specmirror_hdl::verilog::source_path(),
            SOURCE_PORTS,
        ),
        (
            "vdevice",
            "Vdevice",
            specmirror_hdl::verilog::mirror_device(),
            DEVICE_PORTS,
        ),
        (
            "vrxring",
            "Vrxring",
            specmirror_hdl::verilog::rx_ring(),
            RX_RING_PORTS,
        ),
        (
            "vtdevice",
            "Vtdevice",
            specmirror_hdl::verilog::target_device(),
            TDEVICE_PORTS,
        ),
    ];
    // The NIC's Verilog, and the target path it instantiates under its own module name.
    let nic_dir = out.join("vnic");
    std::fs::create_dir_all(&nic_dir).expect("create build folder");
    let nic = nic_verilog(&nic_dir);
    let nic_tp = nic_dir.join("target_path.v");
    let tp_verilog =
        specmirror_hdl::verilog::target_path().replacen("module top(", "module target_path(", 1);
    std::fs::write(&nic_tp, &tp_verilog).expect("write Verilog");

    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .include(INCLUDE)
        .include(format!("{INCLUDE}/vltstd"))
        .define("VM_COVERAGE", "0")
        .define("VM_SC", "0")
        .define("VM_TRACE", "0")
        .define("VM_TRACE_FST", "0")
        .define("VM_TRACE_VCD", "0")
        .opt_level(2)
        .warnings(false)
        .file(format!("{INCLUDE}/verilated.cpp"))
        .file(format!("{INCLUDE}/verilated_threads.cpp"));
    for (name, class, verilog, ports) in &models {
        let mdir = out.join(name);
        std::fs::create_dir_all(&mdir).expect("create build folder");
        let v = mdir.join("top.v");
        std::fs::write(&v, verilog).expect("write Verilog");
        verilate(&mdir, class, "top", &[v], &["-Wno-WIDTH"]);
        write_shim(&mdir, name, class, ports);
        add_model(&mut b, &mdir);
    }
    // LiteEth's generated Verilog: combinational processes written with `<=` (COMBDLY), and
    // ready/valid chains Verilator cannot order statically (UNOPTFLAT, settled by iteration).
    verilate(
        &nic_dir,
        "Vnic",
        "nic_sim",
        &[nic, nic_tp],
        &[
            "-Wno-WIDTH",
            "-Wno-COMBDLY",
            "-Wno-UNOPTFLAT",
            "-Wno-lint",
            "-Wno-style",
        ],
    );
    write_shim(&nic_dir, "vnic", "Vnic", NIC_PORTS);
    add_model(&mut b, &nic_dir);
    b.compile("verilated_models");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-link-lib=atomic");
    // Into the cache, whole or not at all.
    if std::fs::create_dir_all(&cache).is_ok() {
        let tmp = cache.join(format!("{lib}.{}", std::process::id()));
        if std::fs::copy(out.join(lib), &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, cache.join(lib));
        }
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Every file under `dir`, in name order: its path and its bytes.
fn hash_tree(key: &mut Fnv, dir: &Path) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read a source folder")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            hash_tree(key, &p);
        } else {
            key.add(p.file_name().expect("name").as_encoded_bytes());
            key.add(&std::fs::read(&p).expect("read a source file"));
        }
    }
}

fn verilator_version() -> Vec<u8> {
    match Command::new("verilator").arg("--version").output() {
        Ok(o) => o.stdout,
        Err(e) => panic!(
            "verilator is not installed ({e}): install the Debian package verilator (./test.sh does)"
        ),
    }
}

fn write_shim(mdir: &Path, name: &str, class: &str, ports: &[&str]) {
    let mut set = String::new();
    let mut get = String::new();
    for (i, p) in ports.iter().enumerate() {
        if let Some((name, word)) = p.split_once('#') {
            // A word of a port wider than 64 bits (Verilator's 32-bit words, low first).
            let k: usize = word.parse().expect("word index");
            set.push_str(&format!(
                "    case {i}: m->{name}[{lo}] = (uint32_t)v; m->{name}[{hi}] = (uint32_t)(v >> 32); break;\n",
                lo = 2 * k,
                hi = 2 * k + 1
            ));
            get.push_str(&format!(
                "    case {i}: return (uint64_t)m->{name}[{lo}] | ((uint64_t)m->{name}[{hi}] << 32);\n",
                lo = 2 * k,
                hi = 2 * k + 1
            ));
            continue;
        }
        set.push_str(&format!("    case {i}: m->{p} = v; break;\n"));
        get.push_str(&format!("    case {i}: return (uint64_t)m->{p};\n"));
    }
    let stamp = if name == "vsender" {
        "double sc_time_stamp() { return 0; }\n"
    } else {
        ""
    };
    let shim = format!(
        r#"#include "{class}.h"
#include "verilated.h"
#include <cstdint>

{stamp}
extern "C" {{
void* {name}_new() {{ return new {class}; }}
void {name}_free(void* p) {{ delete static_cast<{class}*>(p); }}
void {name}_eval(void* p) {{ static_cast<{class}*>(p)->eval(); }}
void {name}_set(void* p, int port, uint64_t v) {{
  {class}* m = static_cast<{class}*>(p);
  switch (port) {{
{set}  default: break;
  }}
}}
uint64_t {name}_get(void* p, int port) {{
  {class}* m = static_cast<{class}*>(p);
  switch (port) {{
{get}  default: return 0;
  }}
}}
}}
"#
    );
    std::fs::write(mdir.join(format!("{name}_shim.cpp")), shim).expect("write shim");
}

//! Writes the Verilog generated from the HDL blocks into a folder: `specmirror-verilog OUT_DIR`.
//! The bitstream scripts and the Verilator bridge build from these files.

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: specmirror-verilog OUT_DIR");
        std::process::exit(2);
    };
    let out = std::path::PathBuf::from(out);
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
        std::process::exit(1);
    }
    for (name, v) in [
        ("spec_sender", specmirror_hdl::verilog::spec_sender()),
        ("crc32c_word", specmirror_hdl::verilog::crc32c_word()),
        ("frame_parser", specmirror_hdl::verilog::frame_parser()),
        ("register_file", specmirror_hdl::verilog::register_file()),
        ("lock_table", specmirror_hdl::verilog::lock_table()),
        ("lock_table_8", specmirror_hdl::verilog::lock_table_8()),
        ("lock_retry", specmirror_hdl::verilog::lock_retry()),
        ("lock_retry_8", specmirror_hdl::verilog::lock_retry_8()),
        ("answer_emitter", specmirror_hdl::verilog::answer_emitter()),
        ("answer_cache", specmirror_hdl::verilog::answer_cache()),
        ("data_buffer", specmirror_hdl::verilog::data_buffer()),
        ("target_path", specmirror_hdl::verilog::target_path()),
        ("send_tracker", specmirror_hdl::verilog::send_tracker()),
        ("source_path", specmirror_hdl::verilog::source_path()),
        ("mirror_device", specmirror_hdl::verilog::mirror_device()),
        ("rx_ring", specmirror_hdl::verilog::rx_ring()),
        ("target_device", specmirror_hdl::verilog::target_device()),
    ] {
        let path = out.join(format!("{name}.v"));
        if let Err(e) = std::fs::write(&path, v) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("{}", path.display());
    }
}

//! The parts of specmirror that run on an FPGA NIC, written in rust-hdl: one `LogicBlock` per
//! file, its simulation test beside it. Frame layouts come from the ABI crate; the offsets the
//! hardware packs fields at are asserted against it at compile time, and the tests check that the
//! hardware emits the very bytes the software encoder does.

pub mod answer_cache;
pub mod answer_emitter;
pub mod bench;
pub mod crc32c_word;
pub mod data_buffer;
pub mod frame_fifo;
pub mod frame_parser;
pub mod host_filter;
pub mod host_tx;
pub mod lock_retry;
pub mod lock_table;
pub mod mirror_device;
pub mod register_file;
pub mod ring_engine;
pub mod rx_ring;
pub mod send_tracker;
pub mod source_path;
pub mod spec_sender;
pub mod target_device;
pub mod target_path;
pub mod tx_mux;
pub mod verilog;

pub use answer_cache::AnswerCache;
pub use answer_emitter::AnswerEmitter;
pub use crc32c_word::Crc32cWord;
pub use data_buffer::DataBuffer;
pub use frame_fifo::FrameFifo;
pub use frame_parser::FrameParser;
pub use host_filter::HostFilter;
pub use host_tx::HostTx;
pub use lock_retry::LockRetry;
pub use lock_table::{LockTable, LockTable16};
pub use mirror_device::MirrorDevice;
pub use register_file::RegisterFile;
pub use ring_engine::RingEngine;
pub use rx_ring::RxRing;
pub use send_tracker::{SendTracker, SendTracker8};
pub use source_path::SourcePath;
pub use spec_sender::SpecSender;
pub use target_device::TargetDevice;
pub use target_path::TargetPath;
pub use tx_mux::TxMux;

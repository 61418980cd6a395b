//! The HDL blocks as Verilator compiled them, driven from Rust one clock at a time. These are the
//! models the long random runs use (rust-hdl's own simulator is for unit tests); the tests check
//! the two simulators agree cycle by cycle and that the hardware matches the software byte for byte.

use std::ffi::c_void;

use specmirror_hdl::source_path::host::{SourceIo, SpIn, SpOut};
use specmirror_hdl::target_path::host::{TargetIo, TpIn, TpOut};

pub mod udp_target;

// The port enums, generated from build.rs's port lists.
include!(concat!(env!("OUT_DIR"), "/ports.rs"));

/// Defines a safe wrapper around one verilated model's C shim.
macro_rules! verilated_model {
    ($(#[$doc:meta])* $name:ident, $port:ident, $new:ident, $free:ident, $eval:ident, $set:ident, $get:ident) => {
        extern "C" {
            fn $new() -> *mut c_void;
            fn $free(p: *mut c_void);
            fn $eval(p: *mut c_void);
            fn $set(p: *mut c_void, port: i32, v: u64);
            fn $get(p: *mut c_void, port: i32) -> u64;
        }

        $(#[$doc])*
        /// Not `Send`: a Verilator model lives on the thread that made it.
        pub struct $name {
            model: *mut c_void,
            cycles: u64,
        }

        impl $name {
            pub fn new() -> $name {
                // SAFETY: the shim allocates a fresh model with `new` (which aborts rather than
                // return null on failure); we own it until `Drop`.
                let model = unsafe { $new() };
                assert!(!model.is_null(), "Verilator model allocation failed");
                let mut s = $name { model, cycles: 0 };
                s.set($port::Clock, 0);
                s.eval();
                s
            }

            pub fn set(&mut self, port: $port, value: u64) {
                // SAFETY: `self.model` is a live model we own; the shim ignores unknown port
                // numbers and the model truncates the value to the port's width.
                unsafe { $set(self.model, port as i32, value) }
            }

            pub fn get(&self, port: $port) -> u64 {
                // SAFETY: `self.model` is a live model we own; reading a port has no side effect.
                unsafe { $get(self.model, port as i32) }
            }

            /// Sets a port by its number in the shim (for arrays of ports).
            pub fn set_raw(&mut self, port: i32, value: u64) {
                // SAFETY: as `set`; unknown numbers are ignored by the shim.
                unsafe { $set(self.model, port, value) }
            }

            /// Reads a port by its number in the shim (for arrays of ports).
            pub fn get_raw(&self, port: i32) -> u64 {
                // SAFETY: as `get`; unknown numbers read zero.
                unsafe { $get(self.model, port) }
            }

            /// Settles combinational logic after inputs changed.
            pub fn eval(&mut self) {
                // SAFETY: `self.model` is a live model we own and only this thread touches it.
                unsafe { $eval(self.model) }
            }

            /// One clock: rising edge, then falling edge.
            pub fn tick(&mut self) {
                self.set($port::Clock, 1);
                self.eval();
                self.set($port::Clock, 0);
                self.eval();
                self.cycles += 1;
            }

            pub fn cycles(&self) -> u64 {
                self.cycles
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: the model came from the shim's `new` and is freed exactly once, here.
                unsafe { $free(self.model) }
            }
        }
    };
}

pub mod device;
pub mod ether;
pub mod nic;
pub mod nic_target;
pub mod served;
pub mod sim_device;
pub mod sim_target;
pub mod target_device;

verilated_model!(
    /// The verilated send path (`hdl::SpecSender`).
    VerilatedSender,
    Port,
    vsender_new,
    vsender_free,
    vsender_eval,
    vsender_set,
    vsender_get
);

verilated_model!(
    /// The verilated frame parser (`hdl::FrameParser`).
    VerilatedParser,
    ParserPort,
    vparser_new,
    vparser_free,
    vparser_eval,
    vparser_set,
    vparser_get
);

/// The per-register port arrays of the register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegArray {
    Value = 0,
    HwIn = 1,
    HwInc = 2,
    Written = 3,
}

/// Shim number of `array[i]` of the register file.
pub fn reg_port(array: RegArray, i: usize) -> i32 {
    5 + (array as i32) * specmirror_abi::regs::REGISTERS.len() as i32 + i as i32
}

verilated_model!(
    /// The verilated register block (`hdl::RegisterFile`).
    VerilatedRegisters,
    RegPort,
    vregs_new,
    vregs_free,
    vregs_eval,
    vregs_set,
    vregs_get
);

verilated_model!(
    /// The verilated lock table (`hdl::LockTable`, the product's 16 entries).
    VerilatedLockTable,
    LockPort,
    vlock_new,
    vlock_free,
    vlock_eval,
    vlock_set,
    vlock_get
);

verilated_model!(
    /// The verilated answer path (`hdl::AnswerEmitter`).
    VerilatedAnswerEmitter,
    AnswerPort,
    vanswer_new,
    vanswer_free,
    vanswer_eval,
    vanswer_set,
    vanswer_get
);

verilated_model!(
    /// The verilated target path (`hdl::TargetPath`, the product's 16-entry table).
    VerilatedTargetPath,
    TargetPort,
    vtarget_new,
    vtarget_free,
    vtarget_eval,
    vtarget_set,
    vtarget_get
);

verilated_model!(
    /// The verilated send tracker (`hdl::SendTracker8`).
    VerilatedTracker,
    TrackerPort,
    vtracker_new,
    vtracker_free,
    vtracker_eval,
    vtracker_set,
    vtracker_get
);

verilated_model!(
    /// The verilated source path (`hdl::SourcePath`).
    VerilatedSourcePath,
    SourcePort,
    vsource_new,
    vsource_free,
    vsource_eval,
    vsource_set,
    vsource_get
);

verilated_model!(
    /// The verilated receive rings (`hdl::RxRing`).
    VerilatedRxRing,
    RxRingPort,
    vrxring_new,
    vrxring_free,
    vrxring_eval,
    vrxring_set,
    vrxring_get
);

/// The verilated source path as a [`SourceIo`] model, for `hdl::source_path::host`.
pub struct VerSource(pub VerilatedSourcePath);

impl SourceIo for VerSource {
    fn set(&mut self, i: &SpIn) {
        use SourcePort as P;
        let m = &mut self.0;
        m.set(P::DescValid, i.desc_valid as u64);
        m.set(P::DescSeq, i.desc_seq);
        m.set(P::DescLockId, i.desc_lock_id);
        m.set(P::DescOffset, i.desc_offset);
        m.set(P::DescLength, i.desc_length);
        m.set(P::DescMode, i.desc_mode);
        m.set(P::DescFirstRegion, i.desc_first_region);
        m.set(P::DescRegionCount, i.desc_region_count);
        m.set(P::Generation, i.generation);
        m.set(P::DataIn, i.data_in);
        m.set(P::DataValid, i.data_valid as u64);
        m.set(P::TxReady, i.tx_ready as u64);
        m.set(P::RxData, i.rx_data);
        m.set(P::RxValid, i.rx_valid as u64);
        m.set(P::RxLast, i.rx_last as u64);
        m.set(P::CplReady, i.cpl_ready as u64);
    }

    fn get(&mut self) -> SpOut {
        use SourcePort as P;
        let m = &mut self.0;
        m.eval();
        SpOut {
            desc_ready: m.get(P::DescReady) != 0,
            data_ready: m.get(P::DataReady) != 0,
            tx_data: m.get(P::TxData),
            tx_valid: m.get(P::TxValid) != 0,
            tx_last: m.get(P::TxLast) != 0,
            cpl_valid: m.get(P::CplValid) != 0,
            cpl_data: [
                m.get(P::CplData0),
                m.get(P::CplData1),
                m.get(P::CplData2),
                m.get(P::CplData3),
            ],
            frames_bad: m.get(P::FramesBad),
            stale: m.get(P::Stale),
            unmatched: m.get(P::Unmatched),
            cpl_drops: m.get(P::CplDrops),
            inflight: m.get(P::Inflight),
        }
    }

    fn tick(&mut self) {
        self.0.eval();
        self.0.tick();
    }
}

/// The verilated target path as a [`TargetIo`] model, for `hdl::target_path::host::Host`.
pub struct Ver(pub VerilatedTargetPath);

impl TargetIo for Ver {
    fn set(&mut self, i: &TpIn) {
        let m = &mut self.0;
        m.set(TargetPort::RxData, i.rx_data);
        m.set(TargetPort::RxValid, i.rx_valid as u64);
        m.set(TargetPort::RxLast, i.rx_last as u64);
        m.set(TargetPort::TxReady, i.tx_ready as u64);
        m.set(TargetPort::Generation, i.generation);
        m.set(TargetPort::RegionCount, i.region_count);
        m.set(TargetPort::RetryBackoff, i.retry_backoff);
        m.set(TargetPort::RetryLimit, i.retry_limit);
        m.set(TargetPort::LocalHold, i.local_hold as u64);
        m.set(TargetPort::LocalFirst, i.local_first);
        m.set(TargetPort::LocalEnd, i.local_end);
        m.set(TargetPort::ClearBarriers, i.clear_barriers as u64);
        m.set(TargetPort::RegionShift, i.region_shift);
        m.set(TargetPort::VolumeBytes, i.volume_bytes);
        m.set(TargetPort::DataTimeout, i.data_timeout);
        m.set(TargetPort::GrantTimeout, i.grant_timeout);
        m.set(TargetPort::WrReady, i.wr_ready as u64);
        m.set(TargetPort::DoneValid, i.done_valid as u64);
        m.set(TargetPort::DoneSlot, i.done_slot);
        m.set(TargetPort::DoneError, i.done_error);
    }

    fn get(&mut self) -> TpOut {
        let m = &mut self.0;
        m.eval();
        TpOut {
            tx_data: m.get(TargetPort::TxData),
            tx_valid: m.get(TargetPort::TxValid) != 0,
            tx_last: m.get(TargetPort::TxLast) != 0,
            wr_valid: m.get(TargetPort::WrValid) != 0,
            wr_data: m.get(TargetPort::WrData),
            wr_last: m.get(TargetPort::WrLast) != 0,
            wr_offset: m.get(TargetPort::WrOffset),
            wr_len: m.get(TargetPort::WrLen),
            wr_fua: m.get(TargetPort::WrFua) != 0,
            wr_slot: m.get(TargetPort::WrSlot),
            done_ready: m.get(TargetPort::DoneReady) != 0,
            dec_valid: m.get(TargetPort::DecValid) != 0,
            dec_granted: m.get(TargetPort::DecGranted) != 0,
            dec_lock_id: m.get(TargetPort::DecLockId),
            dec_slot: m.get(TargetPort::DecSlot),
            held: m.get(TargetPort::Held),
            frames_bad: m.get(TargetPort::FramesBad),
            lock_drops: m.get(TargetPort::LockDrops),
            answer_drops: m.get(TargetPort::AnswerDrops),
            data_drops: m.get(TargetPort::DataDrops),
            data_expired: m.get(TargetPort::DataExpired),
            data_repeats: m.get(TargetPort::DataRepeats),
            data_violations: m.get(TargetPort::DataViolations),
            locks_revoked: m.get(TargetPort::LocksRevoked),
            lock_ahead: m.get(TargetPort::LockAhead),
            lock_repeats: m.get(TargetPort::LockRepeats),
            stale: m.get(TargetPort::Stale),
            answers_repeated: m.get(TargetPort::AnswersRepeated),
            repeats_missed: m.get(TargetPort::RepeatsMissed),
            data_status: m.get(TargetPort::DataStatus),
            grants_taken: m.get(TargetPort::GrantsTaken),
        }
    }

    fn tick(&mut self) {
        self.0.eval();
        self.0.tick();
    }
}

//! The source device as the host driver sees it: the register block in BAR0 (`RegisterFile`,
//! from the ABI's map), the ring engine (`RingEngine`: descriptors and data in by DMA, completion
//! entries out by DMA) and the source path (`SourcePath`: LOCK and DATA frames out, the target's
//! answers in). The driver's ring code runs unchanged over it, whether it sits behind a VFIO BAR
//! or is this block verilated with its DMA port serving shared memory.
//!
//! Registers the device drives: STATUS (bit 0 running), SQ_HEAD, CQ_TAIL; counters FRAMES_TX
//! (frames sent), FRAMES_RX (answer frames received), FRAMES_BAD (answer frames dropped by the
//! parser), LOCKS_GRANTED and LOCKS_REJECTED (completions written). The descriptor's own mode
//! byte picks its mode; GENERATION is the session stamped on every frame. CAPABILITIES adds
//! CAP_HOST_FRAMES: the host's own frames go out through the submission ring (`Mode::Raw`).
//!
//! Every frame received goes to the source path (the answers it tracks) and, with CONTROL bit 2
//! set (CAP_HOST_RX), to the host as well: through a frame FIFO (`FrameFifo`) into the receive
//! ring (`RxRing`, the RX_* registers and RX_HEAD_DOORBELL), each frame whole in the buffer of a
//! slot, its entry's length the frame's bytes, by a second DMA write port of a word per beat.
//! The receive ring's done half is unused here.

use rust_hdl::prelude::*;
use specmirror_abi::regs::{self, REGISTERS};

use crate::frame_fifo::FrameFifo;
use crate::register_file::{RegisterFile, NREGS};
use crate::ring_engine::RingEngine;
use crate::rx_ring::RxRing;
use crate::source_path::SourcePath;

// The register indices the wiring below uses (rust-hdl needs them as literals).
const _: () = {
    const fn at(i: usize, off: u32) -> bool {
        REGISTERS[i].offset == off
    }
    assert!(
        at(3, regs::CAPABILITIES)
            && at(4, regs::CONTROL)
            && at(5, regs::STATUS)
            && at(7, regs::GENERATION)
    );
    assert!(at(8, regs::SQ_BASE_LO) && at(9, regs::SQ_BASE_HI) && at(10, regs::SQ_LOG2_SIZE));
    assert!(at(11, regs::SQ_HEAD) && at(12, regs::CQ_BASE_LO) && at(13, regs::CQ_BASE_HI));
    assert!(at(14, regs::CQ_LOG2_SIZE) && at(15, regs::CQ_TAIL));
    assert!(at(20, regs::REGION_LOG2));
    assert!(at(27, regs::RX_BASE_LO) && at(28, regs::RX_BASE_HI) && at(29, regs::RX_LOG2_SIZE));
    assert!(at(30, regs::RX_TAIL) && at(31, regs::RX_BUF_LO) && at(32, regs::RX_BUF_HI));
    assert!(at(46, regs::RX_HEAD_DOORBELL));
    assert!(at(21, regs::FRAMES_TX) && at(22, regs::FRAMES_RX) && at(23, regs::FRAMES_BAD));
    assert!(at(24, regs::LOCKS_GRANTED) && at(25, regs::LOCKS_REJECTED));
    assert!(at(44, regs::SQ_TAIL_DOORBELL) && at(45, regs::CQ_HEAD_DOORBELL));
};

#[derive(LogicBlock)]
pub struct MirrorDevice {
    pub clock: Signal<In, Clock>,
    // BAR0: one 32-bit access per clock; reads are combinational.
    pub mmio_addr: Signal<In, Bits<13>>,
    pub mmio_wdata: Signal<In, Bits<32>>,
    pub mmio_write: Signal<In, Bit>,
    pub mmio_rdata: Signal<Out, Bits<32>>,
    // DMA.
    pub rd_req_valid: Signal<Out, Bit>,
    pub rd_req_ready: Signal<In, Bit>,
    pub rd_req_addr: Signal<Out, Bits<64>>,
    pub rd_req_words: Signal<Out, Bits<32>>,
    pub rd_valid: Signal<In, Bit>,
    pub rd_data: Signal<In, Bits<64>>,
    pub rd_ready: Signal<Out, Bit>,
    pub wr_valid: Signal<Out, Bit>,
    pub wr_ready: Signal<In, Bit>,
    pub wr_addr: Signal<Out, Bits<64>>,
    pub wr_data: Signal<Out, Bits<256>>,
    /// The receive ring's DMA writes: one 64-bit word per beat.
    pub rx_wr_valid: Signal<Out, Bit>,
    pub rx_wr_ready: Signal<In, Bit>,
    pub rx_wr_addr: Signal<Out, Bits<64>>,
    pub rx_wr_data: Signal<Out, Bits<64>>,
    /// One pulse per completion entry written (the completion ring's vector).
    pub irq: Signal<Out, Bit>,
    /// One pulse per receive entry written (the receive ring's vector).
    pub rx_irq: Signal<Out, Bit>,
    // The link.
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    // The source path's own counters, for tests and debugging.
    pub stale: Signal<Out, Bits<32>>,
    pub unmatched: Signal<Out, Bits<32>>,
    pub cpl_drops: Signal<Out, Bits<32>>,
    pub inflight: Signal<Out, Bits<8>>,
    /// Received frames the host's queue dropped (no room, or too long).
    pub rx_drops: Signal<Out, Bits<32>>,
    regs: RegisterFile,
    engine: RingEngine,
    path: SourcePath,
    frames: FrameFifo,
    rxq: RxRing,
    rx_tail_q: DFF<Bits<32>>,
    bad_q: DFF<Bits<32>>,
    // What the device reports in registers, registered: the register block's outputs feed the
    // engine, so its inputs come from flip-flops, never straight back from the engine.
    status_q: DFF<Bits<32>>,
    sq_head_q: DFF<Bits<32>>,
    cq_tail_q: DFF<Bits<32>>,
    inc_q: DFF<Bits<5>>,
    inc: Signal<Local, Bits<5>>,
    cap_host_frames: Constant<Bits<32>>,
}

impl Logic for MirrorDevice {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, bad_q, status_q, sq_head_q, cq_tail_q, inc_q, rx_tail_q);
        clock!(self, clock, regs, engine, path, frames, rxq);
        // BAR0.
        self.regs.addr.next = self.mmio_addr.val();
        self.regs.wdata.next = self.mmio_wdata.val();
        self.regs.write.next = self.mmio_write.val();
        self.mmio_rdata.next = self.regs.rdata.val();
        for i in 0..NREGS {
            self.regs.hw_in[i].next = 0.into();
            self.regs.hw_inc[i].next = false;
        }
        // The rings, from the register block.
        self.engine.enable.next = self.regs.value[4].val().get_bit(0);
        self.engine.sq_base.next = (bit_cast::<64, 32>(self.regs.value[9].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[8].val());
        self.engine.sq_log2.next = self.regs.value[10].val().get_bits::<5>(0);
        self.engine.sq_tail.next = self.regs.value[44].val();
        self.engine.cq_base.next = (bit_cast::<64, 32>(self.regs.value[13].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[12].val());
        self.engine.cq_log2.next = self.regs.value[14].val().get_bits::<5>(0);
        self.engine.cq_head.next = self.regs.value[45].val();
        self.engine.region_log2.next = self.regs.value[20].val().get_bits::<6>(0);
        self.status_q.d.next = 0.into();
        if self.regs.value[4].val().get_bit(0) {
            self.status_q.d.next = 1.into();
        }
        self.sq_head_q.d.next = self.engine.sq_head.val();
        self.cq_tail_q.d.next = self.engine.cq_tail.val();
        self.regs.hw_in[3].next = self.cap_host_frames.val();
        self.regs.hw_in[5].next = self.status_q.q.val();
        self.regs.hw_in[11].next = self.sq_head_q.q.val();
        self.regs.hw_in[15].next = self.cq_tail_q.q.val();
        // DMA.
        self.rd_req_valid.next = self.engine.rd_req_valid.val();
        self.engine.rd_req_ready.next = self.rd_req_ready.val();
        self.rd_req_addr.next = self.engine.rd_req_addr.val();
        self.rd_req_words.next = self.engine.rd_req_words.val();
        self.engine.rd_valid.next = self.rd_valid.val();
        self.engine.rd_data.next = self.rd_data.val();
        self.rd_ready.next = self.engine.rd_ready.val();
        self.wr_valid.next = self.engine.wr_valid.val();
        self.engine.wr_ready.next = self.wr_ready.val();
        self.wr_addr.next = self.engine.wr_addr.val();
        self.wr_data.next = self.engine.wr_data.val();
        self.irq.next = self.engine.irq.val();
        self.rx_irq.next = self.rxq.irq.val();
        // Every frame received, to the host's receive ring (CONTROL bit 2).
        self.frames.in_data.next = self.rx_data.val();
        self.frames.in_valid.next = self.rx_valid.val();
        self.frames.in_last.next = self.rx_last.val();
        self.rxq.enable.next =
            self.regs.value[4].val().get_bit(0) & self.regs.value[4].val().get_bit(2);
        self.rxq.rx_base.next = (bit_cast::<64, 32>(self.regs.value[28].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[27].val());
        self.rxq.rx_log2.next = self.regs.value[29].val().get_bits::<5>(0);
        self.rxq.rx_head.next = self.regs.value[46].val();
        self.rxq.buf_base.next = (bit_cast::<64, 32>(self.regs.value[32].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[31].val());
        self.rxq.done_base.next = 0.into();
        self.rxq.done_log2.next = 0.into();
        self.rxq.done_tail.next = 0.into();
        self.rxq.done_ready.next = true;
        self.rxq.rd_req_ready.next = false;
        self.rxq.rd_valid.next = false;
        self.rxq.rd_data.next = 0.into();
        // While the ring is off, frames pass through the FIFO and are let go.
        self.rxq.in_valid.next = self.frames.out_valid.val() & self.rxq.enable.val();
        self.frames.out_ready.next = self.rxq.in_ready.val() | !self.rxq.enable.val();
        self.rxq.in_data.next = self.frames.out_data.val();
        self.rxq.in_last.next = self.frames.out_last.val();
        self.rxq.in_offset.next = 0.into();
        self.rxq.in_len.next = self.frames.out_len.val();
        self.rxq.in_fua.next = false;
        self.rxq.in_frame.next = true;
        self.rxq.in_tag.next = 0.into();
        self.rx_wr_valid.next = self.rxq.wr_valid.val();
        self.rxq.wr_ready.next = self.rx_wr_ready.val();
        self.rx_wr_addr.next = self.rxq.wr_addr.val();
        self.rx_wr_data.next = self.rxq.wr_data.val();
        self.rx_tail_q.d.next = self.rxq.rx_tail.val();
        self.regs.hw_in[30].next = self.rx_tail_q.q.val();
        self.rx_drops.next = self.frames.drops.val();
        // Engine to send path.
        self.path.desc_valid.next = self.engine.desc_valid.val();
        self.engine.desc_ready.next = self.path.desc_ready.val();
        self.path.desc_seq.next = self.engine.desc_seq.val();
        self.path.desc_lock_id.next = self.engine.desc_lock_id.val();
        self.path.desc_offset.next = self.engine.desc_offset.val();
        self.path.desc_length.next = self.engine.desc_length.val();
        self.path.desc_mode.next = self.engine.desc_mode.val();
        self.path.desc_flags.next = self.engine.desc_flags.val();
        self.path.desc_first_region.next = self.engine.desc_first_region.val();
        self.path.desc_region_count.next = self.engine.desc_region_count.val();
        self.path.generation.next = self.regs.value[7].val();
        self.path.ack_lock.next = self.engine.desc_ack_lock.val();
        self.path.ack_seq.next = self.engine.desc_ack_seq.val();
        self.path.data_in.next = self.engine.data_out.val();
        self.path.data_valid.next = self.engine.data_valid.val();
        self.engine.data_ready.next = self.path.data_ready.val();
        self.engine.cpl_valid.next = self.path.cpl_valid.val();
        self.path.cpl_ready.next = self.engine.cpl_ready.val();
        self.engine.cpl_data.next = self.path.cpl_data.val();
        // The link.
        self.tx_data.next = self.path.tx_data.val();
        self.tx_valid.next = self.path.tx_valid.val();
        self.tx_last.next = self.path.tx_last.val();
        self.path.tx_ready.next = self.tx_ready.val();
        self.path.rx_data.next = self.rx_data.val();
        self.path.rx_valid.next = self.rx_valid.val();
        self.path.rx_last.next = self.rx_last.val();
        // Counters, a clock behind their events.
        self.inc.next = 0.into();
        if self.path.tx_valid.val() & self.tx_ready.val() & self.path.tx_last.val() {
            self.inc.next = self.inc.val().replace_bit(0, true);
        }
        if self.rx_valid.val() & self.rx_last.val() {
            self.inc.next = self.inc.val().replace_bit(1, true);
        }
        self.bad_q.d.next = self.path.frames_bad.val();
        if self.path.frames_bad.val() != self.bad_q.q.val() {
            self.inc.next = self.inc.val().replace_bit(2, true);
        }
        if self.engine.wr_valid.val() & self.wr_ready.val() {
            if self.engine.wr_data.val().get_bits::<8>(128) == 1 {
                self.inc.next = self.inc.val().replace_bit(3, true);
            }
            if self.engine.wr_data.val().get_bits::<8>(128) == 2 {
                self.inc.next = self.inc.val().replace_bit(4, true);
            }
        }
        self.inc_q.d.next = self.inc.val();
        self.regs.hw_inc[21].next = self.inc_q.q.val().get_bit(0);
        self.regs.hw_inc[22].next = self.inc_q.q.val().get_bit(1);
        self.regs.hw_inc[23].next = self.inc_q.q.val().get_bit(2);
        self.regs.hw_inc[24].next = self.inc_q.q.val().get_bit(3);
        self.regs.hw_inc[25].next = self.inc_q.q.val().get_bit(4);
        self.stale.next = self.path.stale.val();
        self.unmatched.next = self.path.unmatched.val();
        self.cpl_drops.next = self.path.cpl_drops.val();
        self.inflight.next = self.path.inflight.val();
    }
}

impl Default for MirrorDevice {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            mmio_addr: Default::default(),
            mmio_wdata: Default::default(),
            mmio_write: Default::default(),
            mmio_rdata: Default::default(),
            rd_req_valid: Default::default(),
            rd_req_ready: Default::default(),
            rd_req_addr: Default::default(),
            rd_req_words: Default::default(),
            rd_valid: Default::default(),
            rd_data: Default::default(),
            rd_ready: Default::default(),
            wr_valid: Default::default(),
            wr_ready: Default::default(),
            wr_addr: Default::default(),
            wr_data: Default::default(),
            rx_wr_valid: Default::default(),
            rx_wr_ready: Default::default(),
            rx_wr_addr: Default::default(),
            rx_wr_data: Default::default(),
            irq: Default::default(),
            rx_irq: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
            stale: Default::default(),
            unmatched: Default::default(),
            cpl_drops: Default::default(),
            inflight: Default::default(),
            rx_drops: Default::default(),
            regs: Default::default(),
            engine: Default::default(),
            path: Default::default(),
            frames: Default::default(),
            rxq: Default::default(),
            rx_tail_q: Default::default(),
            bad_q: Default::default(),
            status_q: Default::default(),
            sq_head_q: Default::default(),
            cq_tail_q: Default::default(),
            inc_q: Default::default(),
            inc: Default::default(),
            cap_host_frames: Constant::new(
                ((regs::CAP_HOST_FRAMES | regs::CAP_HOST_RX) as u64).to_bits(),
            ),
        }
    }
}

/// A device with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::MirrorDevice {
        let mut u = super::MirrorDevice::default();
        u.clock.connect();
        u.mmio_addr.connect();
        u.mmio_wdata.connect();
        u.mmio_write.connect();
        u.rd_req_ready.connect();
        u.rd_valid.connect();
        u.rd_data.connect();
        u.wr_ready.connect();
        u.rx_wr_ready.connect();
        u.tx_ready.connect();
        u.rx_data.connect();
        u.rx_valid.connect();
        u.rx_last.connect();
        u
    }
}

pub mod host;

#[cfg(test)]
mod tests;

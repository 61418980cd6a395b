//! The target device as the host driver sees it: the register block in BAR0 (`RegisterFile`, from
//! the ABI's map), the target path (`TargetPath`, the product's 16-entry table: LOCK, DATA and
//! ABORT frames in, answers out) and the receive rings (`RxRing`): each write whose lock is held
//! goes into host memory by DMA, and the host's outcome comes back from the done ring, releasing
//! the lock and answering WRITE_DONE or WRITE_FAILED.
//!
//! From the registers: CONTROL (bit 0 enable, bit 1 written drops the table's ordering barriers,
//! for a new session), GENERATION, RETRY_BACKOFF, RETRY_LIMIT, REGION_LOG2, VOLUME_BYTES and the
//! receive rings' geometry and doorbells. The device drives STATUS (bit 0 running), RX_TAIL,
//! DONE_HEAD, DATA_BUFFER_WORDS, LOCK_TABLE_ENTRIES and the counters FRAMES_TX (answers sent),
//! FRAMES_RX, FRAMES_BAD, LOCKS_GRANTED, LOCKS_REJECTED, and the target path's drop counters
//! (DATA_DROPS, DATA_EXPIRED, DATA_REPEATS, LOCK_DROPS, LOCK_AHEAD, ANSWER_DROPS). Data waits for
//! its lock at most `DATA_TIMEOUT` clocks; a granted lock waits for its data at most
//! `GRANT_TIMEOUT`.
//!
//! With CONTROL bit 2 set (`regs::CONTROL_HOST_RX`; the device reports `CAP_HOST_RX`), the frames
//! the device leaves to the host's software (`HostFilter`: the handshake, flushes, heartbeats,
//! and LOCK and DATA frames of a session it does not hold) go to the host on the same receive
//! ring, through a frame FIFO (`FrameFifo`): each whole in a slot's buffer, its entry flagged
//! `RX_FRAME`. The ring takes a write or a frame at a time, by turns when both wait; a frame the
//! FIFO has no room for is dropped and counted (`rx_drops`): the source sends it again.
//!
//! The host's own frames (the answers its software makes) go out on the device's link: the host
//! posts each as a raw descriptor on the submission ring (SQ_* registers, SQ_TAIL_DOORBELL;
//! `CAP_HOST_FRAMES`), the sender (`HostTx`) reads it through DMA, and a frame mux (`TxMux`)
//! puts it between the target path's answers, whole frames by turns. SQ_HEAD passes each frame
//! once it has left. The DMA read port serves the done ring and the sender, a request and its
//! words at a time.

use rust_hdl::prelude::*;
use specmirror_abi::regs::{self, REGISTERS};

use crate::frame_fifo::FrameFifo;
use crate::host_filter::HostFilter;
use crate::host_tx::HostTx;
use crate::register_file::{RegisterFile, NREGS};
use crate::rx_ring::RxRing;
use crate::target_path::TargetPath;
use crate::tx_mux::TxMux;

/// Clocks a DATA frame waits for its lock (about 10 ms at 100 MHz).
pub const DATA_TIMEOUT: u64 = 1 << 20;
/// Clocks a granted lock waits for its data.
pub const GRANT_TIMEOUT: u64 = 1 << 30;
/// The data buffer's size in 64-bit words, and the lock table's entries (DATA_BUFFER_WORDS and
/// LOCK_TABLE_ENTRIES).
pub const BUFFER_WORDS: u64 =
    (crate::data_buffer::SLOTS as u64) * crate::data_buffer::SLOT_BYTES / 8;
pub const TABLE_ENTRIES: u64 = 16;

// The register indices the wiring below uses (rust-hdl needs them as literals).
const _: () = {
    const fn at(i: usize, off: u32) -> bool {
        REGISTERS[i].offset == off
    }
    assert!(at(3, regs::CAPABILITIES) && regs::CAP_HOST_RX == 16);
    assert!(regs::CAP_HOST_FRAMES == 8);
    assert!(at(8, regs::SQ_BASE_LO) && at(9, regs::SQ_BASE_HI) && at(10, regs::SQ_LOG2_SIZE));
    assert!(at(11, regs::SQ_HEAD) && at(44, regs::SQ_TAIL_DOORBELL));
    assert!(regs::CONTROL_HOST_RX == 4);
    assert!(at(4, regs::CONTROL) && at(5, regs::STATUS) && at(7, regs::GENERATION));
    assert!(at(16, regs::RETRY_BACKOFF) && at(17, regs::RETRY_LIMIT));
    assert!(at(18, regs::DATA_BUFFER_WORDS) && at(19, regs::LOCK_TABLE_ENTRIES));
    assert!(at(20, regs::REGION_LOG2));
    assert!(at(21, regs::FRAMES_TX) && at(22, regs::FRAMES_RX) && at(23, regs::FRAMES_BAD));
    assert!(at(24, regs::LOCKS_GRANTED) && at(25, regs::LOCKS_REJECTED));
    assert!(at(27, regs::RX_BASE_LO) && at(28, regs::RX_BASE_HI) && at(29, regs::RX_LOG2_SIZE));
    assert!(at(30, regs::RX_TAIL) && at(31, regs::RX_BUF_LO) && at(32, regs::RX_BUF_HI));
    assert!(at(33, regs::DONE_BASE_LO) && at(34, regs::DONE_BASE_HI) && at(35, regs::DONE_HEAD));
    assert!(at(36, regs::VOLUME_BYTES_LO) && at(37, regs::VOLUME_BYTES_HI));
    assert!(at(38, regs::DATA_DROPS) && at(39, regs::DATA_EXPIRED) && at(40, regs::DATA_REPEATS));
    assert!(at(41, regs::LOCK_DROPS) && at(42, regs::LOCK_AHEAD) && at(43, regs::ANSWER_DROPS));
    assert!(at(46, regs::RX_HEAD_DOORBELL) && at(47, regs::DONE_TAIL_DOORBELL));
};

#[derive(LogicBlock)]
pub struct TargetDevice {
    pub clock: Signal<In, Clock>,
    // BAR0: one 32-bit access per clock; reads are combinational.
    pub mmio_addr: Signal<In, Bits<13>>,
    pub mmio_wdata: Signal<In, Bits<32>>,
    pub mmio_write: Signal<In, Bit>,
    pub mmio_rdata: Signal<Out, Bits<32>>,
    // DMA: reads (done entries), writes (one word per beat: data, then entries).
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
    pub wr_data: Signal<Out, Bits<64>>,
    pub irq: Signal<Out, Bit>,
    // The link.
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    /// Frames for the host the frame FIFO dropped.
    pub rx_drops: Signal<Out, Bits<32>>,
    regs: RegisterFile,
    rings: RxRing,
    path: TargetPath<16, 4>,
    filter: HostFilter,
    frames: FrameFifo,
    /// Whose entry the receive ring takes: 0 none yet, 1 a write, 2 a frame.
    owner: DFF<Bits<2>>,
    /// A frame goes first the next time both wait.
    frame_turn: DFF<Bit>,
    htx: HostTx,
    txmux: TxMux,
    sq_head_q: DFF<Bits<32>>,
    /// Whose DMA read is under way: 0 none, 1 the done ring's, 2 the sender's; and its words
    /// still to come.
    rd_owner: DFF<Bits<2>>,
    rd_left: DFF<Bits<32>>,
    bad_q: DFF<Bits<32>>,
    // What the device reports in registers, registered (the register block's outputs feed the
    // rings, so its inputs come from flip-flops).
    status_q: DFF<Bits<32>>,
    rx_tail_q: DFF<Bits<32>>,
    done_head_q: DFF<Bits<32>>,
    regions_q: DFF<Bits<64>>,
    /// This clock's events for FRAMES_TX, FRAMES_RX, FRAMES_BAD, LOCKS_GRANTED and
    /// LOCKS_REJECTED, counted a clock later.
    inc_q: DFF<Bits<5>>,
    inc: Signal<Local, Bits<5>>,
    volume: Signal<Local, Bits<64>>,
    buffer_words: Constant<Bits<32>>,
    table_entries: Constant<Bits<32>>,
    data_timeout: Constant<Bits<32>>,
    grant_timeout: Constant<Bits<32>>,
    one: Constant<Bits<64>>,
}

impl Default for TargetDevice {
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
            irq: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
            rx_drops: Default::default(),
            regs: Default::default(),
            rings: Default::default(),
            path: Default::default(),
            filter: Default::default(),
            frames: Default::default(),
            owner: Default::default(),
            frame_turn: Default::default(),
            htx: Default::default(),
            txmux: Default::default(),
            sq_head_q: Default::default(),
            rd_owner: Default::default(),
            rd_left: Default::default(),
            bad_q: Default::default(),
            status_q: Default::default(),
            rx_tail_q: Default::default(),
            done_head_q: Default::default(),
            regions_q: Default::default(),
            inc_q: Default::default(),
            inc: Default::default(),
            volume: Default::default(),
            buffer_words: Constant::new(BUFFER_WORDS.to_bits()),
            table_entries: Constant::new(TABLE_ENTRIES.to_bits()),
            data_timeout: Constant::new(DATA_TIMEOUT.to_bits()),
            grant_timeout: Constant::new(GRANT_TIMEOUT.to_bits()),
            one: Constant::new(1.into()),
        }
    }
}

impl Logic for TargetDevice {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            bad_q,
            status_q,
            rx_tail_q,
            done_head_q,
            regions_q,
            inc_q,
            owner,
            frame_turn,
            sq_head_q,
            rd_owner,
            rd_left
        );
        clock!(self, clock, regs, rings, path, filter, frames, htx, txmux);
        // BAR0.
        self.regs.addr.next = self.mmio_addr.val();
        self.regs.wdata.next = self.mmio_wdata.val();
        self.regs.write.next = self.mmio_write.val();
        self.mmio_rdata.next = self.regs.rdata.val();
        for i in 0..NREGS {
            self.regs.hw_in[i].next = 0.into();
            self.regs.hw_inc[i].next = false;
        }
        // The receive rings, from the register block.
        self.rings.enable.next = self.regs.value[4].val().get_bit(0);
        self.rings.rx_base.next = (bit_cast::<64, 32>(self.regs.value[28].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[27].val());
        self.rings.rx_log2.next = self.regs.value[29].val().get_bits::<5>(0);
        self.rings.rx_head.next = self.regs.value[46].val();
        self.rings.buf_base.next = (bit_cast::<64, 32>(self.regs.value[32].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[31].val());
        self.rings.done_base.next = (bit_cast::<64, 32>(self.regs.value[34].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[33].val());
        self.rings.done_log2.next = self.regs.value[29].val().get_bits::<5>(0);
        self.rings.done_tail.next = self.regs.value[47].val();
        // The target path's configuration. The volume's regions, rounded up, from a register.
        self.volume.next = (bit_cast::<64, 32>(self.regs.value[37].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[36].val());
        self.regions_q.d.next = (self.volume.val()
            + ((self.one.val() << self.regs.value[20].val().get_bits::<6>(0)) - self.one.val()))
            >> self.regs.value[20].val().get_bits::<6>(0);
        self.path.generation.next = self.regs.value[7].val();
        self.path.region_count.next = self.regions_q.q.val().get_bits::<32>(0);
        self.path.retry_backoff.next = self.regs.value[16].val().get_bits::<16>(0);
        self.path.retry_limit.next = self.regs.value[17].val().get_bits::<16>(0);
        self.path.local_hold.next = false;
        self.path.local_first.next = 0.into();
        self.path.local_end.next = 0.into();
        self.path.clear_barriers.next =
            self.regs.written[4].val() & self.regs.value[4].val().get_bit(1);
        self.path.region_shift.next = self.regs.value[20].val().get_bits::<8>(0);
        self.path.volume_bytes.next = self.volume.val();
        self.path.data_timeout.next = self.data_timeout.val();
        self.path.grant_timeout.next = self.grant_timeout.val();
        // The host's frames, chosen from the receive stream, into the FIFO.
        self.filter.enable.next = self.regs.value[4].val().get_bit(2);
        self.filter.generation.next = self.regs.value[7].val();
        self.filter.rx_data.next = self.rx_data.val();
        self.filter.rx_valid.next = self.rx_valid.val();
        self.filter.rx_last.next = self.rx_last.val();
        self.frames.in_data.next = self.filter.out_data.val();
        self.frames.in_valid.next = self.filter.out_valid.val();
        self.frames.in_last.next = self.filter.out_last.val();
        self.rx_drops.next = self.frames.drops.val();
        // Volume writes and the host's frames into the receive ring, an entry at a time: the
        // owner is chosen a clock before the entry starts, and kept to its last word.
        self.rings.in_valid.next = false;
        self.rings.in_data.next = self.path.wr_data.val();
        self.rings.in_last.next = self.path.wr_last.val();
        self.rings.in_offset.next = self.path.wr_offset.val();
        self.rings.in_len.next = self.path.wr_len.val();
        self.rings.in_fua.next = self.path.wr_fua.val();
        self.rings.in_frame.next = false;
        self.rings.in_tag.next = bit_cast::<8, 4>(self.path.wr_slot.val());
        self.path.wr_ready.next = false;
        self.frames.out_ready.next = false;
        if self.owner.q.val() == 1 {
            self.rings.in_valid.next = self.path.wr_valid.val();
            self.path.wr_ready.next = self.rings.in_ready.val();
            if self.path.wr_valid.val() & self.rings.in_ready.val() & self.path.wr_last.val() {
                self.owner.d.next = 0.into();
                self.frame_turn.d.next = true;
            }
        } else if self.owner.q.val() == 2 {
            self.rings.in_valid.next = self.frames.out_valid.val();
            self.frames.out_ready.next = self.rings.in_ready.val();
            self.rings.in_data.next = self.frames.out_data.val();
            self.rings.in_last.next = self.frames.out_last.val();
            self.rings.in_offset.next = 0.into();
            self.rings.in_len.next = self.frames.out_len.val();
            self.rings.in_fua.next = false;
            self.rings.in_frame.next = true;
            self.rings.in_tag.next = 0.into();
            if self.frames.out_valid.val() & self.rings.in_ready.val() & self.frames.out_last.val()
            {
                self.owner.d.next = 0.into();
                self.frame_turn.d.next = false;
            }
        } else if self.frames.out_valid.val()
            & (!self.path.wr_valid.val() | self.frame_turn.q.val())
        {
            self.owner.d.next = 2.into();
        } else if self.path.wr_valid.val() {
            self.owner.d.next = 1.into();
        }
        // Outcomes back.
        self.path.done_valid.next = self.rings.done_valid.val();
        self.rings.done_ready.next = self.path.done_ready.val();
        self.path.done_slot.next = self.rings.done_tag.val().get_bits::<4>(0);
        self.path.done_error.next = self.rings.done_error.val();
        // The host's frames: from the submission ring.
        self.htx.enable.next = self.regs.value[4].val().get_bit(0);
        self.htx.sq_base.next = (bit_cast::<64, 32>(self.regs.value[9].val()) << 32)
            | bit_cast::<64, 32>(self.regs.value[8].val());
        self.htx.sq_log2.next = self.regs.value[10].val().get_bits::<5>(0);
        self.htx.sq_tail.next = self.regs.value[44].val();
        self.sq_head_q.d.next = self.htx.sq_head.val();
        // DMA reads: the done ring's and the sender's, one request and its words at a time (the
        // done ring first when both ask).
        self.rd_req_valid.next = false;
        self.rd_req_addr.next = self.rings.rd_req_addr.val();
        self.rd_req_words.next = self.rings.rd_req_words.val();
        self.rings.rd_req_ready.next = false;
        self.htx.rd_req_ready.next = false;
        self.rings.rd_valid.next = false;
        self.htx.rd_valid.next = false;
        self.rings.rd_data.next = self.rd_data.val();
        self.htx.rd_data.next = self.rd_data.val();
        self.rd_ready.next = false;
        if self.rd_owner.q.val() == 1 {
            self.rings.rd_valid.next = self.rd_valid.val();
            self.rd_ready.next = self.rings.rd_ready.val();
        } else if self.rd_owner.q.val() == 2 {
            self.htx.rd_valid.next = self.rd_valid.val();
            self.rd_ready.next = self.htx.rd_ready.val();
        } else if self.rings.rd_req_valid.val() {
            self.rd_req_valid.next = true;
            self.rings.rd_req_ready.next = self.rd_req_ready.val();
            if self.rd_req_ready.val() {
                self.rd_owner.d.next = 1.into();
                self.rd_left.d.next = self.rings.rd_req_words.val();
            }
        } else if self.htx.rd_req_valid.val() {
            self.rd_req_valid.next = true;
            self.rd_req_addr.next = self.htx.rd_req_addr.val();
            self.rd_req_words.next = self.htx.rd_req_words.val();
            self.htx.rd_req_ready.next = self.rd_req_ready.val();
            if self.rd_req_ready.val() {
                self.rd_owner.d.next = 2.into();
                self.rd_left.d.next = self.htx.rd_req_words.val();
            }
        }
        if (self.rd_owner.q.val() != 0) & self.rd_valid.val() & self.rd_ready.val() {
            self.rd_left.d.next = self.rd_left.q.val() - 1;
            if self.rd_left.q.val() == 1 {
                self.rd_owner.d.next = 0.into();
            }
        }
        self.wr_valid.next = self.rings.wr_valid.val();
        self.rings.wr_ready.next = self.wr_ready.val();
        self.wr_addr.next = self.rings.wr_addr.val();
        self.wr_data.next = self.rings.wr_data.val();
        self.irq.next = self.rings.irq.val();
        // The link: the path's answers and the host's frames, whole frames by turns.
        self.txmux.a_data.next = self.path.tx_data.val();
        self.txmux.a_valid.next = self.path.tx_valid.val();
        self.txmux.a_last.next = self.path.tx_last.val();
        self.path.tx_ready.next = self.txmux.a_ready.val();
        self.txmux.b_data.next = self.htx.tx_data.val();
        self.txmux.b_valid.next = self.htx.tx_valid.val();
        self.txmux.b_last.next = self.htx.tx_last.val();
        self.htx.tx_ready.next = self.txmux.b_ready.val();
        self.tx_data.next = self.txmux.tx_data.val();
        self.tx_valid.next = self.txmux.tx_valid.val();
        self.tx_last.next = self.txmux.tx_last.val();
        self.txmux.tx_ready.next = self.tx_ready.val();
        self.path.rx_data.next = self.rx_data.val();
        self.path.rx_valid.next = self.rx_valid.val();
        self.path.rx_last.next = self.rx_last.val();
        // What the device reports.
        self.status_q.d.next = 0.into();
        if self.regs.value[4].val().get_bit(0) {
            self.status_q.d.next = 1.into();
        }
        self.rx_tail_q.d.next = self.rings.rx_tail.val();
        self.done_head_q.d.next = self.rings.done_head.val();
        self.regs.hw_in[3].next = 24.into();
        self.regs.hw_in[11].next = self.sq_head_q.q.val();
        self.regs.hw_in[5].next = self.status_q.q.val();
        self.regs.hw_in[18].next = self.buffer_words.val();
        self.regs.hw_in[19].next = self.table_entries.val();
        self.regs.hw_in[30].next = self.rx_tail_q.q.val();
        self.regs.hw_in[35].next = self.done_head_q.q.val();
        // Counters, a clock behind their events.
        self.inc.next = 0.into();
        if self.path.tx_valid.val() & self.txmux.a_ready.val() & self.path.tx_last.val() {
            self.inc.next = self.inc.val().replace_bit(0, true);
        }
        if self.rx_valid.val() & self.rx_last.val() {
            self.inc.next = self.inc.val().replace_bit(1, true);
        }
        self.bad_q.d.next = self.path.frames_bad.val();
        if self.path.frames_bad.val() != self.bad_q.q.val() {
            self.inc.next = self.inc.val().replace_bit(2, true);
        }
        if self.path.dec_valid.val() & self.path.dec_granted.val() {
            self.inc.next = self.inc.val().replace_bit(3, true);
        }
        if self.path.dec_valid.val() & !self.path.dec_granted.val() {
            self.inc.next = self.inc.val().replace_bit(4, true);
        }
        // The target path's drop counters, as they stand (two drops in one clock count two).
        self.regs.hw_in[38].next = self.path.data_drops.val();
        self.regs.hw_in[39].next = self.path.data_expired.val();
        self.regs.hw_in[40].next = self.path.data_repeats.val();
        self.regs.hw_in[41].next = self.path.lock_drops.val();
        self.regs.hw_in[42].next = self.path.lock_ahead.val();
        self.regs.hw_in[43].next = self.path.answer_drops.val();
        self.inc_q.d.next = self.inc.val();
        self.regs.hw_inc[21].next = self.inc_q.q.val().get_bit(0);
        self.regs.hw_inc[22].next = self.inc_q.q.val().get_bit(1);
        self.regs.hw_inc[23].next = self.inc_q.q.val().get_bit(2);
        self.regs.hw_inc[24].next = self.inc_q.q.val().get_bit(3);
        self.regs.hw_inc[25].next = self.inc_q.q.val().get_bit(4);
    }
}

/// A device with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::TargetDevice {
        let mut u = super::TargetDevice::default();
        u.clock.connect();
        u.mmio_addr.connect();
        u.mmio_wdata.connect();
        u.mmio_write.connect();
        u.rd_req_ready.connect();
        u.rd_valid.connect();
        u.rd_data.connect();
        u.wr_ready.connect();
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

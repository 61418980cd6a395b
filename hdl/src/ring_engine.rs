//! The device's side of the rollback-log rings (layouts in `specmirror_abi::ring`): fetches each
//! descriptor the host posted on the submission ring through the DMA read port, hands it to the
//! send path, then streams its data from host memory behind it (asking for the next descriptor
//! right behind the data, so it is there when the data ends); writes each completion entry the
//! send tracker produces into the completion ring with the pass's phase bit, and pulses `irq`.
//!
//! The host publishes its submission tail and its completion head through the doorbells; the
//! engine publishes `sq_head` (descriptors taken) and `cq_tail` (completions written). It never
//! writes a completion into a slot the host has not released: with the completion ring full it
//! holds the tracker's entries back. While `enable` is low the engine idles and both counters
//! return to zero, so a driver that sets the rings up again starts from slot 0.
//!
//! The DMA read port takes a request (bus address, count of 64-bit words) and answers with that
//! many words in order; the write port takes one 32-byte completion entry per beat.

use rust_hdl::prelude::*;
use specmirror_abi::ring::{COMPLETION_LEN, DESCRIPTOR_LEN};

// The shifts below turn slots into byte offsets, and the word-by-word unpacking follows the ABI's
// descriptor layout.
const _: () = assert!(DESCRIPTOR_LEN == 64 && COMPLETION_LEN == 32);

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum RingState {
    Idle,
    /// Asking for the descriptor at the submission ring's head.
    ReqDesc,
    /// Its eight words arriving.
    FetchDesc,
    /// Offered to the send path.
    Present,
    /// Asking for its data.
    ReqData,
    /// Asking for the next descriptor, to arrive behind the data (its data words flow meanwhile).
    ReqNext,
    /// Its data words flowing to the send path.
    Data,
    /// A write without data: its descriptor stays put until the send path is done with it (the
    /// send path reads the acknowledgements as its headers go out).
    Settle,
}

#[derive(LogicBlock)]
pub struct RingEngine {
    pub clock: Signal<In, Clock>,
    pub enable: Signal<In, Bit>,
    // Ring geometry and the host's counters, from the register block.
    pub sq_base: Signal<In, Bits<64>>,
    pub sq_log2: Signal<In, Bits<5>>,
    pub sq_tail: Signal<In, Bits<32>>,
    pub cq_base: Signal<In, Bits<64>>,
    pub cq_log2: Signal<In, Bits<5>>,
    pub cq_head: Signal<In, Bits<32>>,
    /// log2 of the region size: the lock's regions follow from the write's offset and length.
    pub region_log2: Signal<In, Bits<6>>,
    pub sq_head: Signal<Out, Bits<32>>,
    pub cq_tail: Signal<Out, Bits<32>>,
    // DMA reads: a request, then its words in order.
    pub rd_req_valid: Signal<Out, Bit>,
    pub rd_req_ready: Signal<In, Bit>,
    pub rd_req_addr: Signal<Out, Bits<64>>,
    pub rd_req_words: Signal<Out, Bits<32>>,
    pub rd_valid: Signal<In, Bit>,
    pub rd_data: Signal<In, Bits<64>>,
    pub rd_ready: Signal<Out, Bit>,
    // DMA writes: one completion entry per beat.
    pub wr_valid: Signal<Out, Bit>,
    pub wr_ready: Signal<In, Bit>,
    pub wr_addr: Signal<Out, Bits<64>>,
    pub wr_data: Signal<Out, Bits<256>>,
    // To the send path.
    pub desc_valid: Signal<Out, Bit>,
    pub desc_ready: Signal<In, Bit>,
    pub desc_seq: Signal<Out, Bits<64>>,
    pub desc_lock_id: Signal<Out, Bits<64>>,
    pub desc_offset: Signal<Out, Bits<64>>,
    pub desc_length: Signal<Out, Bits<32>>,
    pub desc_mode: Signal<Out, Bits<2>>,
    pub desc_flags: Signal<Out, Bits<16>>,
    pub desc_first_region: Signal<Out, Bits<64>>,
    pub desc_region_count: Signal<Out, Bits<64>>,
    pub desc_ack_lock: Signal<Out, Bits<64>>,
    pub desc_ack_seq: Signal<Out, Bits<64>>,
    pub data_out: Signal<Out, Bits<64>>,
    pub data_valid: Signal<Out, Bit>,
    pub data_ready: Signal<In, Bit>,
    // From the send tracker.
    pub cpl_valid: Signal<In, Bit>,
    pub cpl_ready: Signal<Out, Bit>,
    pub cpl_data: Signal<In, Bits<256>>,
    /// One pulse per completion entry written.
    pub irq: Signal<Out, Bit>,
    state: DFF<RingState>,
    head: DFF<Bits<32>>,
    ctail: DFF<Bits<32>>,
    k: DFF<Bits<3>>,
    seq: DFF<Bits<64>>,
    lock_id: DFF<Bits<64>>,
    offset: DFF<Bits<64>>,
    addr: DFF<Bits<64>>,
    length: DFF<Bits<32>>,
    mode: DFF<Bits<2>>,
    flags: DFF<Bits<8>>,
    ack_lock: DFF<Bits<64>>,
    ack_seq: DFF<Bits<64>>,
    left: DFF<Bits<32>>,
    /// The next descriptor's words follow the data in the read stream.
    pre: DFF<Bit>,
    irq_q: DFF<Bit>,
    one: Constant<Bits<32>>,
    sq_slot: Signal<Local, Bits<32>>,
    cq_slot: Signal<Local, Bits<32>>,
    cq_entries: Signal<Local, Bits<32>>,
    cq_pass: Signal<Local, Bits<32>>,
    cq_room: Signal<Local, Bit>,
    words: Signal<Local, Bits<32>>,
    first: Signal<Local, Bits<64>>,
    last: Signal<Local, Bits<64>>,
    routing: Signal<Local, Bit>,
    last_word: Signal<Local, Bit>,
}

impl Default for RingEngine {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            enable: Default::default(),
            sq_base: Default::default(),
            sq_log2: Default::default(),
            sq_tail: Default::default(),
            cq_base: Default::default(),
            cq_log2: Default::default(),
            cq_head: Default::default(),
            region_log2: Default::default(),
            sq_head: Default::default(),
            cq_tail: Default::default(),
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
            desc_valid: Default::default(),
            desc_ready: Default::default(),
            desc_seq: Default::default(),
            desc_lock_id: Default::default(),
            desc_offset: Default::default(),
            desc_length: Default::default(),
            desc_mode: Default::default(),
            desc_flags: Default::default(),
            desc_first_region: Default::default(),
            desc_region_count: Default::default(),
            desc_ack_lock: Default::default(),
            desc_ack_seq: Default::default(),
            data_out: Default::default(),
            data_valid: Default::default(),
            data_ready: Default::default(),
            cpl_valid: Default::default(),
            cpl_ready: Default::default(),
            cpl_data: Default::default(),
            irq: Default::default(),
            state: Default::default(),
            head: Default::default(),
            ctail: Default::default(),
            k: Default::default(),
            seq: Default::default(),
            lock_id: Default::default(),
            offset: Default::default(),
            addr: Default::default(),
            length: Default::default(),
            mode: Default::default(),
            flags: Default::default(),
            ack_lock: Default::default(),
            ack_seq: Default::default(),
            left: Default::default(),
            pre: Default::default(),
            irq_q: Default::default(),
            one: Constant::new(1u64.to_bits()),
            sq_slot: Default::default(),
            cq_slot: Default::default(),
            cq_entries: Default::default(),
            cq_pass: Default::default(),
            cq_room: Default::default(),
            words: Default::default(),
            first: Default::default(),
            last: Default::default(),
            routing: Default::default(),
            last_word: Default::default(),
        }
    }
}

impl Logic for RingEngine {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, state, head, ctail, k, seq, lock_id, offset, addr, length, mode, flags,
            ack_lock, ack_seq, left, pre, irq_q
        );
        // Slots of the two rings, their byte offsets, and the completion ring's pass (its phase).
        self.sq_slot.next =
            self.head.q.val() & ((self.one.val() << self.sq_log2.val()) - self.one.val());
        self.cq_entries.next = self.one.val() << self.cq_log2.val();
        self.cq_slot.next = self.ctail.q.val() & (self.cq_entries.val() - self.one.val());
        self.cq_pass.next = self.ctail.q.val() >> self.cq_log2.val();
        self.cq_room.next = (self.ctail.q.val() - self.cq_head.val()) != self.cq_entries.val();
        self.words.next = (self.length.q.val() + 7) >> 3;
        self.sq_head.next = self.head.q.val();
        self.cq_tail.next = self.ctail.q.val();
        // The descriptor as the send path sees it.
        self.desc_seq.next = self.seq.q.val();
        self.desc_lock_id.next = self.lock_id.q.val();
        self.desc_offset.next = self.offset.q.val();
        self.desc_length.next = self.length.q.val();
        self.desc_mode.next = self.mode.q.val();
        self.desc_flags.next = bit_cast::<16, 8>(self.flags.q.val());
        // The regions the write touches: first = offset >> log2, last = (offset + length - 1)
        // >> log2 (a write is never empty).
        self.first.next = self.offset.q.val() >> self.region_log2.val();
        self.last.next = (self.offset.q.val() + bit_cast::<64, 32>(self.length.q.val()) - 1)
            >> self.region_log2.val();
        self.desc_first_region.next = self.first.val();
        self.desc_region_count.next = self.last.val() - self.first.val() + 1;
        self.desc_ack_lock.next = self.ack_lock.q.val();
        self.desc_ack_seq.next = self.ack_seq.q.val();
        self.desc_valid.next = false;
        self.data_out.next = self.rd_data.val();
        self.data_valid.next = false;
        self.rd_req_valid.next = false;
        self.rd_req_addr.next = self.sq_base.val() + (bit_cast::<64, 32>(self.sq_slot.val()) << 6);
        self.rd_req_words.next = 8.into();
        self.rd_ready.next = false;
        // Data words go to the send path while they are due, also while the next descriptor is
        // being asked for.
        self.routing.next = (self.state.q.val() == RingState::Data)
            | ((self.state.q.val() == RingState::ReqNext) & (self.left.q.val() != 0));
        self.last_word.next = self.routing.val()
            & self.rd_valid.val()
            & self.data_ready.val()
            & (self.left.q.val() == 1);
        if self.routing.val() {
            self.data_valid.next = self.rd_valid.val();
            self.rd_ready.next = self.data_ready.val();
            if self.rd_valid.val() & self.data_ready.val() {
                self.left.d.next = self.left.q.val() - 1;
            }
        }
        match self.state.q.val() {
            RingState::Idle => {
                if self.enable.val() & (self.head.q.val() != self.sq_tail.val()) {
                    self.state.d.next = RingState::ReqDesc;
                }
            }
            RingState::ReqDesc => {
                self.rd_req_valid.next = true;
                if self.rd_req_ready.val() {
                    self.k.d.next = 0.into();
                    self.state.d.next = RingState::FetchDesc;
                }
            }
            RingState::FetchDesc => {
                self.rd_ready.next = true;
                if self.rd_valid.val() {
                    self.k.d.next = self.k.q.val() + 1;
                    if self.k.q.val() == 0 {
                        self.seq.d.next = self.rd_data.val();
                    }
                    if self.k.q.val() == 1 {
                        self.lock_id.d.next = self.rd_data.val();
                    }
                    if self.k.q.val() == 2 {
                        self.offset.d.next = self.rd_data.val();
                    }
                    if self.k.q.val() == 3 {
                        self.addr.d.next = self.rd_data.val();
                    }
                    if self.k.q.val() == 4 {
                        self.length.d.next = self.rd_data.val().get_bits::<32>(0);
                        self.mode.d.next = self.rd_data.val().get_bits::<2>(32);
                        self.flags.d.next = self.rd_data.val().get_bits::<8>(40);
                    }
                    if self.k.q.val() == 6 {
                        self.ack_lock.d.next = self.rd_data.val();
                    }
                    if self.k.q.val() == 7 {
                        self.ack_seq.d.next = self.rd_data.val();
                        self.state.d.next = RingState::Present;
                    }
                }
            }
            RingState::Present => {
                self.desc_valid.next = true;
                if self.desc_ready.val() {
                    self.head.d.next = self.head.q.val() + 1;
                    if self.length.q.val() == 0 {
                        self.state.d.next = RingState::Settle;
                    } else {
                        self.state.d.next = RingState::ReqData;
                    }
                }
            }
            RingState::ReqData => {
                self.rd_req_valid.next = true;
                self.rd_req_addr.next = self.addr.q.val();
                self.rd_req_words.next = self.words.val();
                if self.rd_req_ready.val() {
                    self.left.d.next = self.words.val();
                    // Another descriptor waits: ask for it now, behind the data.
                    if self.head.q.val() != self.sq_tail.val() {
                        self.state.d.next = RingState::ReqNext;
                    } else {
                        self.state.d.next = RingState::Data;
                    }
                }
            }
            RingState::ReqNext => {
                self.rd_req_valid.next = true;
                if self.rd_req_ready.val() {
                    if (self.left.q.val() == 0) | self.last_word.val() {
                        self.k.d.next = 0.into();
                        self.state.d.next = RingState::FetchDesc;
                    } else {
                        self.pre.d.next = true;
                        self.state.d.next = RingState::Data;
                    }
                }
            }
            RingState::Settle => {
                if self.desc_ready.val() {
                    self.state.d.next = RingState::Idle;
                }
            }
            RingState::Data => {
                if self.last_word.val() {
                    if self.pre.q.val() {
                        self.pre.d.next = false;
                        self.k.d.next = 0.into();
                        self.state.d.next = RingState::FetchDesc;
                    } else {
                        self.state.d.next = RingState::Idle;
                    }
                }
            }
            _ => {
                self.state.d.next = RingState::Idle;
            }
        }
        // Completions: into the slot at the tail, phase bit (flags byte, bit 0) set on even
        // passes, only into a slot the host has released.
        self.wr_addr.next = self.cq_base.val() + (bit_cast::<64, 32>(self.cq_slot.val()) << 5);
        self.wr_data.next = self.cpl_data.val();
        if !self.cq_pass.val().get_bit(0) {
            self.wr_data.next = self.cpl_data.val().replace_bit(136, true);
        }
        self.wr_valid.next = self.cpl_valid.val() & self.cq_room.val() & self.enable.val();
        self.cpl_ready.next = self.wr_ready.val() & self.cq_room.val() & self.enable.val();
        self.irq_q.d.next = false;
        if self.cpl_valid.val() & self.wr_ready.val() & self.cq_room.val() & self.enable.val() {
            self.ctail.d.next = self.ctail.q.val() + 1;
            self.irq_q.d.next = true;
        }
        self.irq.next = self.irq_q.q.val();
        if !self.enable.val() {
            self.state.d.next = RingState::Idle;
            self.pre.d.next = false;
            self.head.d.next = 0.into();
            self.ctail.d.next = 0.into();
        }
    }
}

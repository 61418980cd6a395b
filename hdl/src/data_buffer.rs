//! The target's data path: DATA frames from the frame parser wait in block RAM until their lock is
//! held, then go out on the volume-write port, one 64-bit word per clock; the host's completion
//! releases the lock (into an ordering barrier if the write failed) and becomes a WRITE_DONE or
//! WRITE_FAILED answer. Data never reaches the write port before its lock is held: a buffered
//! frame is bound to a lock only through a record of the table's grant, and that record lives
//! exactly as long as the table holds the lock.
//!
//! The buffer has `SLOTS` slots of `SLOT_BYTES` each. A DATA frame takes a free slot at its header
//! and fills it as its payload arrives; a bad frame (the parser's verdict) frees it again. Frames
//! that cannot be taken are dropped and counted, and the source's retransmission sends them again:
//! no free slot, longer than a slot, empty, an implicit lock (IMPLICIT_LOCK) or a piece of a write
//! (`arg` not zero). The last free slot only takes a frame whose lock is already held, so frames
//! waiting for locks (which may wait for an earlier write) never crowd out the data that would
//! let them move. A checked frame waits for its lock for at most `data_timeout` clocks, and not at
//! all once its lock can never be held: the table rejected it, or its write finished (a copy the
//! source sent again as the write's answer crossed it, which the answer cache recognises). Such
//! copies would otherwise hold slots for `data_timeout` clocks while fresh data is dropped for
//! want of room.
//!
//! One waiting slot is examined every four clocks, round robin (select it; compare its lock id
//! with every grant record; read the grant's sequence number and regions; act). A frame whose
//! lock is held is bound to it, unless
//! - the grant already has its data (a repeated frame): the copy is dropped and counted;
//! - it names another write (its sequence number is not the lock's): dropped and counted;
//! - it falls outside the regions its lock holds, or past the volume's end: a peer that breaks
//!   the protocol. The data is dropped, the lock released and answered LOCK_REJECTED (OutOfRange),
//!   as the software target does, and the violation counted.
//!
//! Bound slots are written out one at a time, each as one burst of `(len + 7) / 8` words with its
//! byte offset, length, FUA flag and the lock's table slot; the host writes the volume and answers
//! on the completion port with that table slot and an errno (0 for success).

use rust_hdl::prelude::*;
use specmirror_abi::{Flags, FrameType, RejectReason};

/// Data slots in the buffer.
pub const SLOTS: usize = 4;
/// Bits of a data slot's index.
pub const SLOT_INDEX_BITS: usize = 2;
/// Bits of a word's index within a slot.
pub const WORD_BITS: usize = 9;
/// Bytes a slot holds: the longest DATA frame the hardware takes whole.
pub const SLOT_BYTES: u64 = 8 << 9;
const ADDR_BITS: usize = SLOT_INDEX_BITS + WORD_BITS;
// The kernel spells the word bits out as 9, and the status word has the four slots.
const _: () = assert!(1 << SLOT_INDEX_BITS == SLOTS && WORD_BITS == 9 && SLOTS == 4);

const FREE: u64 = 0;
const FILLING: u64 = 1;
const WAITING: u64 = 2;
const BOUND: u64 = 3;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
pub enum BindState {
    Select,
    Compare,
    Read,
    Act,
}

#[derive(LogicBlock)]
pub struct DataBuffer<const N: usize, const S: usize> {
    pub clock: Signal<In, Clock>,
    /// The frame parser's outputs (see `FrameParser`).
    pub hdr_valid: Signal<In, Bit>,
    pub ty: Signal<In, Bits<8>>,
    pub flags: Signal<In, Bits<16>>,
    pub payload_len: Signal<In, Bits<32>>,
    pub seq: Signal<In, Bits<64>>,
    pub lock_id: Signal<In, Bits<64>>,
    pub offset: Signal<In, Bits<64>>,
    pub arg: Signal<In, Bits<64>>,
    pub pay_data: Signal<In, Bits<64>>,
    pub pay_valid: Signal<In, Bit>,
    pub frame_ok: Signal<In, Bit>,
    pub frame_bad: Signal<In, Bit>,
    /// The lock table's decisions (see `LockTable`).
    pub dec_valid: Signal<In, Bit>,
    pub dec_granted: Signal<In, Bit>,
    pub dec_lock_id: Signal<In, Bits<64>>,
    pub dec_seq: Signal<In, Bits<64>>,
    pub dec_slot: Signal<In, Bits<S>>,
    pub dec_first: Signal<In, Bits<32>>,
    pub dec_end: Signal<In, Bits<32>>,
    /// log2 of the region size, and the volume's size in bytes.
    pub region_shift: Signal<In, Bits<8>>,
    pub volume_bytes: Signal<In, Bits<64>>,
    /// Clocks a checked frame may wait for its lock.
    pub data_timeout: Signal<In, Bits<32>>,
    /// Clocks a granted lock may wait for its data before it is revoked: rejected (BusyTimeout)
    /// and its barrier left, as the software target revokes it.
    pub grant_timeout: Signal<In, Bits<32>>,
    /// One clock: a checked ABORT of this session for lock `lock_id` (at the parser's verdict).
    /// A lock held without its data is released, unanswered; data waiting for it expires.
    pub abort_valid: Signal<In, Bit>,
    /// One clock: lock `settled_lock_id` is finished (a repeated DATA frame found its outcome in
    /// the answer cache), so data still waiting for it is a copy nobody needs: dropped at once
    /// and counted as a repeat, rather than holding a slot until `data_timeout`.
    pub settled_valid: Signal<In, Bit>,
    pub settled_lock_id: Signal<In, Bits<64>>,
    /// The volume-write port: one burst per write, `wr_last` on its final word.
    pub wr_valid: Signal<Out, Bit>,
    pub wr_ready: Signal<In, Bit>,
    pub wr_data: Signal<Out, Bits<64>>,
    pub wr_last: Signal<Out, Bit>,
    pub wr_offset: Signal<Out, Bits<64>>,
    pub wr_len: Signal<Out, Bits<32>>,
    pub wr_fua: Signal<Out, Bit>,
    pub wr_slot: Signal<Out, Bits<S>>,
    /// The host's completion of the write of the lock in `done_slot`: 0, or the errno.
    pub done_valid: Signal<In, Bit>,
    pub done_ready: Signal<Out, Bit>,
    pub done_slot: Signal<In, Bits<S>>,
    pub done_error: Signal<In, Bits<32>>,
    /// Releases for the lock table (`rel_fail`: the write failed, leave a barrier).
    pub rel_valid: Signal<Out, Bit>,
    pub rel_slot: Signal<Out, Bits<S>>,
    pub rel_fail: Signal<Out, Bit>,
    /// Answers for the answer path; held until `ans_ready`.
    pub ans_valid: Signal<Out, Bit>,
    pub ans_ready: Signal<In, Bit>,
    pub ans_ty: Signal<Out, Bits<8>>,
    pub ans_seq: Signal<Out, Bits<64>>,
    pub ans_lock_id: Signal<Out, Bits<64>>,
    pub ans_arg: Signal<Out, Bits<64>>,
    /// Counters: frames not taken, frames that waited too long, repeated frames, and frames that
    /// broke the protocol (another write's sequence number, outside their lock).
    pub drops: Signal<Out, Bits<32>>,
    pub expired: Signal<Out, Bits<32>>,
    pub repeats: Signal<Out, Bits<32>>,
    pub violations: Signal<Out, Bits<32>>,
    /// Granted locks revoked because their data never came.
    pub revoked: Signal<Out, Bits<32>>,
    /// What the buffer is doing, for status registers and tests: each slot's state (two bits per
    /// slot from bit 0), then writing (bit 8), a completion waiting (9), a revocation waiting
    /// (10), receiving (11); the grant records' valid bits (16..32).
    pub status: Signal<Out, Bits<32>>,
    /// The grant records whose data went to the write port (by table slot).
    pub taken: Signal<Out, Bits<N>>,

    ram: RAM<Bits<64>, ADDR_BITS>,
    // Receiving.
    rx_on: DFF<Bit>,
    rx_slot: DFF<Bits<SLOT_INDEX_BITS>>,
    rx_index: DFF<Bits<WORD_BITS>>,
    // The data slots.
    d_state: [DFF<Bits<2>>; SLOTS],
    d_lock_id: [DFF<Bits<64>>; SLOTS],
    d_seq: [DFF<Bits<64>>; SLOTS],
    d_offset: [DFF<Bits<64>>; SLOTS],
    d_len: [DFF<Bits<32>>; SLOTS],
    /// The byte after the frame's last.
    d_end: [DFF<Bits<64>>; SLOTS],
    d_fua: [DFF<Bit>; SLOTS],
    d_age: [DFF<Bits<32>>; SLOTS],
    d_tslot: [DFF<Bits<S>>; SLOTS],
    // Grant records, by table slot: lock ids in registers (compared all at once), the rest in
    // block RAM (read by slot).
    g_valid: DFF<Bits<N>>,
    g_taken: DFF<Bits<N>>,
    g_lock_id: [DFF<Bits<64>>; N],
    g_seq_bind: RAM<Bits<64>, S>,
    g_regions: RAM<Bits<64>, S>,
    g_seq_done: RAM<Bits<64>, S>,
    g_id_done: RAM<Bits<64>, S>,
    // Binding.
    b_state: DFF<BindState>,
    b_cursor: DFF<Bits<SLOT_INDEX_BITS>>,
    b_lock_id: DFF<Bits<64>>,
    b_seq: DFF<Bits<64>>,
    b_first: DFF<Bits<64>>,
    b_last: DFF<Bits<64>>,
    b_end_byte: DFF<Bits<64>>,
    b_hit: DFF<Bits<N>>,
    b_gslot: DFF<Bits<S>>,
    b_found: DFF<Bit>,
    b_taken: DFF<Bit>,
    // A violation waiting for the answer path.
    v_valid: DFF<Bit>,
    v_slot: DFF<Bits<S>>,
    v_seq: DFF<Bits<64>>,
    v_lock_id: DFF<Bits<64>>,
    /// The rejection's reason; a barrier is left (`v_fail`); no answer at all (`v_silent`).
    v_reason: DFF<Bits<64>>,
    v_fail: DFF<Bit>,
    v_silent: DFF<Bit>,
    // The scan for granted locks whose data never came.
    now: DFF<Bits<32>>,
    s_cursor: DFF<Bits<S>>,
    s_slot: DFF<Bits<S>>,
    /// The scanned slot was granted in the clock it was read (the read gave the old time).
    s_fresh: DFF<Bit>,
    /// By table slot: grant time (bits 0..32), seq (32..96), lock id (96..160).
    g_scan: RAM<Bits<160>, S>,
    n_revoked: DFF<Bits<32>>,
    // A completion waiting for the answer path.
    c_valid: DFF<Bit>,
    c_slot: DFF<Bits<S>>,
    c_error: DFF<Bits<32>>,
    // Writing.
    w_active: DFF<Bit>,
    w_slot: DFF<Bits<SLOT_INDEX_BITS>>,
    w_index: DFF<Bits<WORD_BITS>>,
    /// The index of the burst's last word, `(len - 1) / 8`.
    w_last_index: DFF<Bits<32>>,
    w_offset: DFF<Bits<64>>,
    w_len: DFF<Bits<32>>,
    w_fua: DFF<Bit>,
    w_tslot: DFF<Bits<S>>,
    // Counters.
    n_drops: DFF<Bits<32>>,
    n_expired: DFF<Bits<32>>,
    n_repeats: DFF<Bits<32>>,
    n_violations: DFF<Bits<32>>,
    // Combinational helpers.
    free_found: Signal<Local, Bit>,
    free_pick: Signal<Local, Bits<SLOT_INDEX_BITS>>,
    free_two: Signal<Local, Bit>,
    lock_held: Signal<Local, Bit>,
    held_pick: Signal<Local, Bits<S>>,
    /// The two above through a register (the parser's fields stand still from a header to its
    /// verdict, so they are current at the header and at the verdict), and the ABORT a clock
    /// late: the decisions that use them start from registers.
    held_q: DFF<Bit>,
    pick_q: DFF<Bits<S>>,
    abort_q: DFF<Bit>,
    bound_found: Signal<Local, Bit>,
    bound_pick: Signal<Local, Bits<SLOT_INDEX_BITS>>,
    hit_found: Signal<Local, Bit>,
    hit_pick: Signal<Local, Bits<S>>,
    takeable: Signal<Local, Bit>,
    hits: Signal<Local, Bits<N>>,
    gv: Signal<Local, Bits<N>>,
    gt: Signal<Local, Bits<N>>,
    fire: Signal<Local, Bit>,
    in_range: Signal<Local, Bit>,
    st_free: Constant<Bits<2>>,
    st_filling: Constant<Bits<2>>,
    st_waiting: Constant<Bits<2>>,
    st_bound: Constant<Bits<2>>,
    ty_data: Constant<Bits<8>>,
    ty_done: Constant<Bits<8>>,
    ty_failed: Constant<Bits<8>>,
    ty_rejected: Constant<Bits<8>>,
    why_range: Constant<Bits<64>>,
    why_busy: Constant<Bits<64>>,
    implicit: Constant<Bits<16>>,
    fua: Constant<Bits<16>>,
    slot_bytes: Constant<Bits<32>>,
}

impl<const N: usize, const S: usize> Default for DataBuffer<N, S> {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            hdr_valid: Default::default(),
            ty: Default::default(),
            flags: Default::default(),
            payload_len: Default::default(),
            seq: Default::default(),
            lock_id: Default::default(),
            offset: Default::default(),
            arg: Default::default(),
            pay_data: Default::default(),
            pay_valid: Default::default(),
            frame_ok: Default::default(),
            frame_bad: Default::default(),
            dec_valid: Default::default(),
            dec_granted: Default::default(),
            dec_lock_id: Default::default(),
            dec_seq: Default::default(),
            dec_slot: Default::default(),
            dec_first: Default::default(),
            dec_end: Default::default(),
            region_shift: Default::default(),
            volume_bytes: Default::default(),
            data_timeout: Default::default(),
            grant_timeout: Default::default(),
            abort_valid: Default::default(),
            settled_valid: Default::default(),
            settled_lock_id: Default::default(),
            wr_valid: Default::default(),
            wr_ready: Default::default(),
            wr_data: Default::default(),
            wr_last: Default::default(),
            wr_offset: Default::default(),
            wr_len: Default::default(),
            wr_fua: Default::default(),
            wr_slot: Default::default(),
            done_valid: Default::default(),
            done_ready: Default::default(),
            done_slot: Default::default(),
            done_error: Default::default(),
            rel_valid: Default::default(),
            rel_slot: Default::default(),
            rel_fail: Default::default(),
            ans_valid: Default::default(),
            ans_ready: Default::default(),
            ans_ty: Default::default(),
            ans_seq: Default::default(),
            ans_lock_id: Default::default(),
            ans_arg: Default::default(),
            drops: Default::default(),
            expired: Default::default(),
            repeats: Default::default(),
            violations: Default::default(),
            revoked: Default::default(),
            status: Default::default(),
            taken: Default::default(),
            ram: Default::default(),
            rx_on: Default::default(),
            rx_slot: Default::default(),
            rx_index: Default::default(),
            d_state: Default::default(),
            d_lock_id: Default::default(),
            d_seq: Default::default(),
            d_offset: Default::default(),
            d_len: Default::default(),
            d_end: Default::default(),
            d_fua: Default::default(),
            d_age: Default::default(),
            d_tslot: Default::default(),
            g_valid: Default::default(),
            g_taken: Default::default(),
            g_lock_id: crate::lock_table::arr(),
            g_seq_bind: Default::default(),
            g_regions: Default::default(),
            g_seq_done: Default::default(),
            g_id_done: Default::default(),
            b_state: Default::default(),
            b_cursor: Default::default(),
            b_lock_id: Default::default(),
            b_seq: Default::default(),
            b_first: Default::default(),
            b_last: Default::default(),
            b_end_byte: Default::default(),
            b_hit: Default::default(),
            b_gslot: Default::default(),
            b_found: Default::default(),
            b_taken: Default::default(),
            v_valid: Default::default(),
            v_slot: Default::default(),
            v_seq: Default::default(),
            v_lock_id: Default::default(),
            v_reason: Default::default(),
            v_fail: Default::default(),
            v_silent: Default::default(),
            now: Default::default(),
            s_cursor: Default::default(),
            s_slot: Default::default(),
            s_fresh: Default::default(),
            g_scan: Default::default(),
            n_revoked: Default::default(),
            c_valid: Default::default(),
            c_slot: Default::default(),
            c_error: Default::default(),
            w_active: Default::default(),
            w_slot: Default::default(),
            w_index: Default::default(),
            w_last_index: Default::default(),
            w_offset: Default::default(),
            w_len: Default::default(),
            w_fua: Default::default(),
            w_tslot: Default::default(),
            n_drops: Default::default(),
            n_expired: Default::default(),
            n_repeats: Default::default(),
            n_violations: Default::default(),
            free_found: Default::default(),
            free_pick: Default::default(),
            free_two: Default::default(),
            lock_held: Default::default(),
            held_pick: Default::default(),
            held_q: Default::default(),
            pick_q: Default::default(),
            abort_q: Default::default(),
            bound_found: Default::default(),
            bound_pick: Default::default(),
            hit_found: Default::default(),
            hit_pick: Default::default(),
            takeable: Default::default(),
            hits: Default::default(),
            gv: Default::default(),
            gt: Default::default(),
            fire: Default::default(),
            in_range: Default::default(),
            st_free: Constant::new(FREE.to_bits()),
            st_filling: Constant::new(FILLING.to_bits()),
            st_waiting: Constant::new(WAITING.to_bits()),
            st_bound: Constant::new(BOUND.to_bits()),
            ty_data: Constant::new((FrameType::Data as u64).to_bits()),
            ty_done: Constant::new((FrameType::WriteDone as u64).to_bits()),
            ty_failed: Constant::new((FrameType::WriteFailed as u64).to_bits()),
            ty_rejected: Constant::new((FrameType::LockRejected as u64).to_bits()),
            why_range: Constant::new((RejectReason::OutOfRange as u64).to_bits()),
            why_busy: Constant::new((RejectReason::BusyTimeout as u64).to_bits()),
            implicit: Constant::new((Flags::IMPLICIT_LOCK.0 as u64).to_bits()),
            fua: Constant::new((Flags::FUA.0 as u64).to_bits()),
            slot_bytes: Constant::new(SLOT_BYTES.to_bits()),
        }
    }
}

impl<const N: usize, const S: usize> Logic for DataBuffer<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            rx_on,
            rx_slot,
            rx_index,
            g_valid,
            g_taken,
            b_state,
            b_cursor,
            b_lock_id,
            b_seq,
            b_first,
            b_last,
            b_end_byte,
            b_hit,
            b_gslot,
            b_found,
            b_taken,
            v_valid,
            v_slot,
            v_seq,
            v_lock_id,
            v_reason,
            v_fail,
            v_silent,
            now,
            s_cursor,
            s_slot,
            s_fresh,
            n_revoked,
            held_q,
            pick_q,
            abort_q,
            c_valid,
            c_slot,
            c_error,
            w_active,
            w_slot,
            w_index,
            w_last_index,
            w_offset,
            w_len,
            w_fua,
            w_tslot,
            n_drops,
            n_expired,
            n_repeats,
            n_violations
        );
        self.ram.read_clock.next = self.clock.val();
        self.ram.write_clock.next = self.clock.val();
        self.g_seq_bind.read_clock.next = self.clock.val();
        self.g_seq_bind.write_clock.next = self.clock.val();
        self.g_regions.read_clock.next = self.clock.val();
        self.g_regions.write_clock.next = self.clock.val();
        self.g_seq_done.read_clock.next = self.clock.val();
        self.g_seq_done.write_clock.next = self.clock.val();
        self.g_id_done.read_clock.next = self.clock.val();
        self.g_id_done.write_clock.next = self.clock.val();
        self.free_found.next = false;
        self.free_two.next = false;
        self.free_pick.next = 0.into();
        self.bound_found.next = false;
        self.bound_pick.next = 0.into();
        for k in 0..SLOTS {
            self.d_state[k].clock.next = self.clock.val();
            self.d_lock_id[k].clock.next = self.clock.val();
            self.d_seq[k].clock.next = self.clock.val();
            self.d_offset[k].clock.next = self.clock.val();
            self.d_len[k].clock.next = self.clock.val();
            self.d_end[k].clock.next = self.clock.val();
            self.d_fua[k].clock.next = self.clock.val();
            self.d_age[k].clock.next = self.clock.val();
            self.d_tslot[k].clock.next = self.clock.val();
            self.d_state[k].d.next = self.d_state[k].q.val();
            self.d_lock_id[k].d.next = self.d_lock_id[k].q.val();
            self.d_seq[k].d.next = self.d_seq[k].q.val();
            self.d_offset[k].d.next = self.d_offset[k].q.val();
            self.d_len[k].d.next = self.d_len[k].q.val();
            self.d_end[k].d.next = self.d_end[k].q.val();
            self.d_fua[k].d.next = self.d_fua[k].q.val();
            self.d_age[k].d.next = self.d_age[k].q.val();
            self.d_tslot[k].d.next = self.d_tslot[k].q.val();
            if (self.d_state[k].q.val() == self.st_waiting.val()) & self.d_age[k].q.val().any() {
                self.d_age[k].d.next = self.d_age[k].q.val() - 1;
            }
            if self.free_found.val() & (self.d_state[k].q.val() == self.st_free.val()) {
                self.free_two.next = true;
            }
            if !self.free_found.val() & (self.d_state[k].q.val() == self.st_free.val()) {
                self.free_found.next = true;
                self.free_pick.next = k.to_bits();
            }
            if !self.bound_found.val() & (self.d_state[k].q.val() == self.st_bound.val()) {
                self.bound_found.next = true;
                self.bound_pick.next = k.to_bits();
            }
        }
        for i in 0..N {
            self.g_lock_id[i].clock.next = self.clock.val();
            self.g_lock_id[i].d.next = self.g_lock_id[i].q.val();
        }

        // Grant flags for the next clock, built up below.
        self.gv.next = self.g_valid.q.val();
        self.gt.next = self.g_taken.q.val();

        // Receive: a DATA frame the hardware can take fills a free slot as it arrives.
        self.takeable.next = (self.ty.val() == self.ty_data.val())
            & !(self.flags.val() & self.implicit.val()).any()
            & !self.arg.val().any()
            & self.payload_len.val().any()
            & (self.payload_len.val() <= self.slot_bytes.val());
        self.ram.write_enable.next = self.rx_on.q.val() & self.pay_valid.val();
        self.ram.write_address.next =
            (bit_cast::<ADDR_BITS, SLOT_INDEX_BITS>(self.rx_slot.q.val()) << 9)
                | bit_cast::<ADDR_BITS, WORD_BITS>(self.rx_index.q.val());
        self.ram.write_data.next = self.pay_data.val();
        if self.rx_on.q.val() & self.pay_valid.val() {
            self.rx_index.d.next = self.rx_index.q.val() + 1;
        }
        // Is the arriving frame's lock held, and still without its data?
        self.lock_held.next = false;
        self.held_pick.next = 0.into();
        for i in 0..N {
            if self.g_valid.q.val().get_bit(i)
                & !self.g_taken.q.val().get_bit(i)
                & (self.g_lock_id[i].q.val() == self.lock_id.val())
            {
                self.lock_held.next = true;
                self.held_pick.next = i.to_bits();
            }
        }
        self.held_q.d.next = self.lock_held.val();
        self.pick_q.d.next = self.held_pick.val();
        self.abort_q.d.next = self.abort_valid.val();
        if self.hdr_valid.val() & (self.ty.val() == self.ty_data.val()) {
            // The last free slot is kept for data whose lock is held: data waiting for locks
            // that wait for an earlier write can never crowd out that write's data.
            if self.takeable.val()
                & self.free_found.val()
                & (self.free_two.val() | self.held_q.q.val())
            {
                self.rx_on.d.next = true;
                self.rx_slot.d.next = self.free_pick.val();
                self.rx_index.d.next = 0.into();
                for k in 0..SLOTS {
                    if self.free_pick.val().index() == k {
                        self.d_state[k].d.next = self.st_filling.val();
                        self.d_lock_id[k].d.next = self.lock_id.val();
                        self.d_seq[k].d.next = self.seq.val();
                        self.d_offset[k].d.next = self.offset.val();
                        self.d_len[k].d.next = self.payload_len.val();
                        self.d_end[k].d.next =
                            self.offset.val() + bit_cast::<64, 32>(self.payload_len.val());
                        self.d_fua[k].d.next = (self.flags.val() & self.fua.val()).any();
                    }
                }
            } else {
                self.n_drops.d.next = self.n_drops.q.val() + 1;
            }
        }
        if self.rx_on.q.val() & (self.frame_ok.val() | self.frame_bad.val()) {
            self.rx_on.d.next = false;
            for k in 0..SLOTS {
                if self.rx_slot.q.val().index() == k {
                    if self.frame_ok.val() {
                        self.d_state[k].d.next = self.st_waiting.val();
                        self.d_age[k].d.next = self.data_timeout.val();
                    } else {
                        self.d_state[k].d.next = self.st_free.val();
                    }
                }
            }
        }

        // Grant records: written at the grant, cleared at the release.
        self.g_seq_bind.write_address.next = self.dec_slot.val();
        self.g_seq_bind.write_data.next = self.dec_seq.val();
        self.g_seq_bind.write_enable.next = self.dec_valid.val() & self.dec_granted.val();
        self.g_regions.write_address.next = self.dec_slot.val();
        self.g_regions.write_data.next = bit_cast::<64, 32>(self.dec_first.val())
            | (bit_cast::<64, 32>(self.dec_end.val()) << 32);
        self.g_regions.write_enable.next = self.dec_valid.val() & self.dec_granted.val();
        self.g_seq_done.write_address.next = self.dec_slot.val();
        self.g_seq_done.write_data.next = self.dec_seq.val();
        self.g_seq_done.write_enable.next = self.dec_valid.val() & self.dec_granted.val();
        self.g_id_done.write_address.next = self.dec_slot.val();
        self.g_id_done.write_data.next = self.dec_lock_id.val();
        self.g_id_done.write_enable.next = self.dec_valid.val() & self.dec_granted.val();

        // Binding, one waiting slot at a time.
        self.hits.next = 0.into();
        for i in 0..N {
            if self.g_valid.q.val().get_bit(i)
                & (self.g_lock_id[i].q.val() == self.b_lock_id.q.val())
            {
                self.hits.next = self.hits.val().replace_bit(i, true);
            }
        }
        self.hit_found.next = false;
        self.hit_pick.next = 0.into();
        for i in 0..N {
            if !self.hit_found.val() & self.b_hit.q.val().get_bit(i) {
                self.hit_found.next = true;
                self.hit_pick.next = i.to_bits();
            }
        }
        // Read in the Read stage, so the grant's fields are on the outputs in the Act stage.
        self.g_seq_bind.read_address.next = self.hit_pick.val();
        self.g_regions.read_address.next = self.hit_pick.val();
        // In range: the frame's first region is at or after the lock's first, its last before the
        // lock's end, it ends inside the volume, and its end did not wrap past 2^64.
        self.in_range.next = (self.b_first.q.val()
            >= bit_cast::<64, 32>(self.g_regions.read_data.val().get_bits::<32>(0)))
            & (self.b_last.q.val()
                < bit_cast::<64, 32>(self.g_regions.read_data.val().get_bits::<32>(32)))
            & (self.b_end_byte.q.val() <= self.volume_bytes.val())
            & (self.b_first.q.val() <= self.b_last.q.val());
        match self.b_state.q.val() {
            BindState::Select => {
                for k in 0..SLOTS {
                    if self.b_cursor.q.val().index() == k {
                        self.b_lock_id.d.next = self.d_lock_id[k].q.val();
                        self.b_seq.d.next = self.d_seq[k].q.val();
                        self.b_first.d.next = self.d_offset[k].q.val() >> self.region_shift.val();
                        self.b_last.d.next = (self.d_end[k].q.val() - 1) >> self.region_shift.val();
                        self.b_end_byte.d.next = self.d_end[k].q.val();
                        if self.d_state[k].q.val() == self.st_waiting.val() {
                            if self.d_age[k].q.val().any() {
                                self.b_state.d.next = BindState::Compare;
                            } else {
                                // Waited too long: its lock was rejected, aborted or is long gone.
                                self.d_state[k].d.next = self.st_free.val();
                                self.n_expired.d.next = self.n_expired.q.val() + 1;
                                self.b_cursor.d.next = self.b_cursor.q.val() + 1;
                            }
                        } else {
                            self.b_cursor.d.next = self.b_cursor.q.val() + 1;
                        }
                    }
                }
            }
            BindState::Compare => {
                self.b_hit.d.next = self.hits.val();
                self.b_state.d.next = BindState::Read;
            }
            BindState::Read => {
                self.b_found.d.next = self.hit_found.val();
                self.b_gslot.d.next = self.hit_pick.val();
                self.b_taken.d.next = (self.b_hit.q.val() & self.g_taken.q.val()).any();
                self.b_state.d.next = BindState::Act;
            }
            _ => {
                // The grant's sequence number and regions are on the RAMs' outputs now.
                if !self.v_valid.q.val() {
                    self.b_state.d.next = BindState::Select;
                    self.b_cursor.d.next = self.b_cursor.q.val() + 1;
                    for k in 0..SLOTS {
                        if (self.b_cursor.q.val().index() == k)
                            & (self.d_state[k].q.val() == self.st_waiting.val())
                            & self.b_found.q.val()
                            & self.g_valid.q.val().get_bit(self.b_gslot.q.val().index())
                        {
                            // (The record is looked at again now: a completion may have
                            // released the lock since the comparison; then the frame waits.)
                            if self.b_taken.q.val()
                                | self.g_taken.q.val().get_bit(self.b_gslot.q.val().index())
                            {
                                self.d_state[k].d.next = self.st_free.val();
                                self.n_repeats.d.next = self.n_repeats.q.val() + 1;
                            } else if self.g_seq_bind.read_data.val() != self.b_seq.q.val() {
                                self.d_state[k].d.next = self.st_free.val();
                                self.n_violations.d.next = self.n_violations.q.val() + 1;
                            } else if !self.in_range.val() {
                                self.d_state[k].d.next = self.st_free.val();
                                self.n_violations.d.next = self.n_violations.q.val() + 1;
                                self.v_valid.d.next = true;
                                self.v_slot.d.next = self.b_gslot.q.val();
                                self.v_seq.d.next = self.b_seq.q.val();
                                self.v_lock_id.d.next = self.b_lock_id.q.val();
                                self.v_reason.d.next = self.why_range.val();
                                self.v_fail.d.next = false;
                                self.v_silent.d.next = false;
                                self.gv.next = self
                                    .gv
                                    .val()
                                    .replace_bit(self.b_gslot.q.val().index(), false);
                            } else {
                                self.d_state[k].d.next = self.st_bound.val();
                                self.d_tslot[k].d.next = self.b_gslot.q.val();
                                self.gt.next = self
                                    .gt
                                    .val()
                                    .replace_bit(self.b_gslot.q.val().index(), true);
                            }
                        }
                    }
                }
            }
        }

        // Data whose lock can never be held again: its write finished (a copy sent again, which
        // the answer cache recognised), or the table rejected the lock (the source re-issues it
        // under a new lock id and sends the data again once that is granted). Dropped at once.
        // The low 16 bits of the lock ids are compared: the locks whose data a four-slot buffer
        // holds are a few ids apart, and a false match would only drop data, which the source
        // sends again, as it does any data the buffer drops (a quarter of the comparators).
        for k in 0..SLOTS {
            if self.d_state[k].q.val() == self.st_waiting.val() {
                if self.settled_valid.val()
                    & (self.d_lock_id[k].q.val().get_bits::<16>(0)
                        == self.settled_lock_id.val().get_bits::<16>(0))
                {
                    self.d_state[k].d.next = self.st_free.val();
                    self.n_repeats.d.next = self.n_repeats.q.val() + 1;
                }
                // (Lock id 0 is an ABORT's request to the table, which it rejects.)
                if self.dec_valid.val()
                    & !self.dec_granted.val()
                    & self.dec_lock_id.val().any()
                    & (self.d_lock_id[k].q.val().get_bits::<16>(0)
                        == self.dec_lock_id.val().get_bits::<16>(0))
                {
                    self.d_state[k].d.next = self.st_free.val();
                    self.n_expired.d.next = self.n_expired.q.val() + 1;
                }
            }
        }

        // Writing: one bound slot at a time, a word per clock while the host takes them. The RAM
        // reads a clock ahead: its address is the word after the one shown once that one goes.
        self.wr_valid.next = self.w_active.q.val();
        self.wr_data.next = self.ram.read_data.val();
        self.wr_last.next =
            bit_cast::<32, WORD_BITS>(self.w_index.q.val()) == self.w_last_index.q.val();
        self.wr_offset.next = self.w_offset.q.val();
        self.wr_len.next = self.w_len.q.val();
        self.wr_fua.next = self.w_fua.q.val();
        self.wr_slot.next = self.w_tslot.q.val();
        self.fire.next = self.w_active.q.val() & self.wr_ready.val();
        self.ram.read_address.next = (bit_cast::<ADDR_BITS, SLOT_INDEX_BITS>(self.w_slot.q.val())
            << 9)
            | bit_cast::<ADDR_BITS, WORD_BITS>(self.w_index.q.val());
        if self.fire.val() {
            self.w_index.d.next = self.w_index.q.val() + 1;
            self.ram.read_address.next =
                (bit_cast::<ADDR_BITS, SLOT_INDEX_BITS>(self.w_slot.q.val()) << 9)
                    | bit_cast::<ADDR_BITS, WORD_BITS>(self.w_index.q.val() + 1);
            if bit_cast::<32, WORD_BITS>(self.w_index.q.val()) == self.w_last_index.q.val() {
                self.w_active.d.next = false;
                for k in 0..SLOTS {
                    if self.w_slot.q.val().index() == k {
                        self.d_state[k].d.next = self.st_free.val();
                    }
                }
            }
        }
        if !self.w_active.q.val() & self.bound_found.val() {
            self.w_active.d.next = true;
            self.w_slot.d.next = self.bound_pick.val();
            self.w_index.d.next = 0.into();
            self.ram.read_address.next =
                bit_cast::<ADDR_BITS, SLOT_INDEX_BITS>(self.bound_pick.val()) << 9;
            for k in 0..SLOTS {
                if self.bound_pick.val().index() == k {
                    self.w_offset.d.next = self.d_offset[k].q.val();
                    self.w_len.d.next = self.d_len[k].q.val();
                    self.w_fua.d.next = self.d_fua[k].q.val();
                    self.w_tslot.d.next = self.d_tslot[k].q.val();
                    self.w_last_index.d.next = (self.d_len[k].q.val() - 1) >> 3;
                }
            }
        }

        // Completions and violations: each releases its lock and sends one answer.
        self.done_ready.next = !self.c_valid.q.val();
        self.g_seq_done.read_address.next = self.done_slot.val();
        self.g_id_done.read_address.next = self.done_slot.val();
        if self.c_valid.q.val() {
            self.g_seq_done.read_address.next = self.c_slot.q.val();
            self.g_id_done.read_address.next = self.c_slot.q.val();
        }
        if self.done_valid.val() & !self.c_valid.q.val() {
            // Only a lock whose data went out can complete.
            if self.g_taken.q.val().get_bit(self.done_slot.val().index())
                & self.g_valid.q.val().get_bit(self.done_slot.val().index())
            {
                self.c_valid.d.next = true;
                self.c_slot.d.next = self.done_slot.val();
                self.c_error.d.next = self.done_error.val();
            }
        }
        self.ans_valid.next = self.c_valid.q.val() | self.v_valid.q.val();
        self.rel_valid.next = false;
        self.rel_slot.next = self.c_slot.q.val();
        self.rel_fail.next = false;
        self.ans_ty.next = self.ty_done.val();
        self.ans_seq.next = self.g_seq_done.read_data.val();
        self.ans_lock_id.next = self.g_id_done.read_data.val();
        self.ans_arg.next = bit_cast::<64, 32>(self.c_error.q.val());
        if self.c_valid.q.val() {
            if self.c_error.q.val().any() {
                self.ans_ty.next = self.ty_failed.val();
                self.rel_fail.next = true;
            }
            if self.ans_ready.val() {
                self.c_valid.d.next = false;
                self.rel_valid.next = true;
                self.gv.next = self
                    .gv
                    .val()
                    .replace_bit(self.c_slot.q.val().index(), false);
                self.gt.next = self
                    .gt
                    .val()
                    .replace_bit(self.c_slot.q.val().index(), false);
            }
        } else if self.v_valid.q.val() {
            // A revoked lock (its grant record is already gone, so no data binds to it): the
            // table releases it now, and the source hears why unless it asked for it.
            self.ans_valid.next = !self.v_silent.q.val();
            self.rel_slot.next = self.v_slot.q.val();
            self.rel_fail.next = self.v_fail.q.val();
            self.ans_ty.next = self.ty_rejected.val();
            self.ans_seq.next = self.v_seq.q.val();
            self.ans_lock_id.next = self.v_lock_id.q.val();
            self.ans_arg.next = self.v_reason.q.val();
            if self.ans_ready.val() | self.v_silent.q.val() {
                self.v_valid.d.next = false;
                self.rel_valid.next = true;
            }
        }
        // Revocations. One at a time, and only while the binding is in its Select stage: the
        // record is gone before the binding next compares, so no data binds to a revoked lock.
        // An ABORT for a lock held without its data releases it at once, unanswered (the
        // source gave the write up). Otherwise the scan looks at one grant per clock and revokes
        // one whose data has not come within `grant_timeout` clocks.
        self.now.d.next = self.now.q.val() + 1;
        self.g_scan.read_clock.next = self.clock.val();
        self.g_scan.write_clock.next = self.clock.val();
        self.g_scan.write_address.next = self.dec_slot.val();
        self.g_scan.write_data.next = bit_cast::<160, 32>(self.now.q.val())
            | (bit_cast::<160, 64>(self.dec_seq.val()) << 32)
            | (bit_cast::<160, 64>(self.dec_lock_id.val()) << 96);
        self.g_scan.write_enable.next = self.dec_valid.val() & self.dec_granted.val();
        self.g_scan.read_address.next = self.s_cursor.q.val();
        self.s_slot.d.next = self.s_cursor.q.val();
        self.s_fresh.d.next = self.dec_valid.val()
            & self.dec_granted.val()
            & (self.dec_slot.val() == self.s_cursor.q.val());
        self.s_cursor.d.next = self.s_cursor.q.val() + 1;
        if !self.v_valid.q.val() & (self.b_state.q.val() == BindState::Select) {
            // (The grant is looked at again now: its data may have bound in the meantime.)
            if self.abort_q.q.val()
                & self.held_q.q.val()
                & self.g_valid.q.val().get_bit(self.pick_q.q.val().index())
                & !self.g_taken.q.val().get_bit(self.pick_q.q.val().index())
            {
                self.v_valid.d.next = true;
                self.v_slot.d.next = self.pick_q.q.val();
                self.v_fail.d.next = false;
                self.v_silent.d.next = true;
                self.gv.next = self
                    .gv
                    .val()
                    .replace_bit(self.pick_q.q.val().index(), false);
            } else if self.g_valid.q.val().get_bit(self.s_slot.q.val().index())
                & !self.s_fresh.q.val()
                & !self.g_taken.q.val().get_bit(self.s_slot.q.val().index())
                & ((self.now.q.val() - self.g_scan.read_data.val().get_bits::<32>(0))
                    >= self.grant_timeout.val())
            {
                self.v_valid.d.next = true;
                self.v_slot.d.next = self.s_slot.q.val();
                self.v_seq.d.next = self.g_scan.read_data.val().get_bits::<64>(32);
                self.v_lock_id.d.next = self.g_scan.read_data.val().get_bits::<64>(96);
                self.v_reason.d.next = self.why_busy.val();
                self.v_fail.d.next = true;
                self.v_silent.d.next = false;
                self.n_revoked.d.next = self.n_revoked.q.val() + 1;
                self.gv.next = self
                    .gv
                    .val()
                    .replace_bit(self.s_slot.q.val().index(), false);
            }
        }
        // A grant (after the clearing above: a slot is granted again only after its release).
        if self.dec_valid.val() & self.dec_granted.val() {
            self.gv.next = self.gv.val().replace_bit(self.dec_slot.val().index(), true);
            self.gt.next = self
                .gt
                .val()
                .replace_bit(self.dec_slot.val().index(), false);
            for i in 0..N {
                if self.dec_slot.val().index() == i {
                    self.g_lock_id[i].d.next = self.dec_lock_id.val();
                }
            }
        }

        self.g_valid.d.next = self.gv.val();
        self.g_taken.d.next = self.gt.val();
        self.drops.next = self.n_drops.q.val();
        self.expired.next = self.n_expired.q.val();
        self.repeats.next = self.n_repeats.q.val();
        self.violations.next = self.n_violations.q.val();
        self.revoked.next = self.n_revoked.q.val();
        self.status.next = (bit_cast::<32, N>(self.g_valid.q.val()) << 16)
            | (bit_cast::<32, 1>(self.rx_on.q.val().into()) << 11)
            | (bit_cast::<32, 1>(self.v_valid.q.val().into()) << 10)
            | (bit_cast::<32, 1>(self.c_valid.q.val().into()) << 9)
            | (bit_cast::<32, 1>(self.w_active.q.val().into()) << 8);
        self.status.next = self.status.val()
            | bit_cast::<32, 2>(self.d_state[0].q.val())
            | (bit_cast::<32, 2>(self.d_state[1].q.val()) << 2)
            | (bit_cast::<32, 2>(self.d_state[2].q.val()) << 4)
            | (bit_cast::<32, 2>(self.d_state[3].q.val()) << 6);
        self.taken.next = self.g_taken.q.val();
    }
}

/// A data buffer with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected<const N: usize, const S: usize>() -> super::DataBuffer<N, S> {
        let mut u = super::DataBuffer::<N, S>::default();
        u.clock.connect();
        u.hdr_valid.connect();
        u.ty.connect();
        u.flags.connect();
        u.payload_len.connect();
        u.seq.connect();
        u.lock_id.connect();
        u.offset.connect();
        u.arg.connect();
        u.pay_data.connect();
        u.pay_valid.connect();
        u.frame_ok.connect();
        u.frame_bad.connect();
        u.dec_valid.connect();
        u.dec_granted.connect();
        u.dec_lock_id.connect();
        u.dec_seq.connect();
        u.dec_slot.connect();
        u.dec_first.connect();
        u.dec_end.connect();
        u.region_shift.connect();
        u.volume_bytes.connect();
        u.data_timeout.connect();
        u.grant_timeout.connect();
        u.abort_valid.connect();
        u.settled_valid.connect();
        u.settled_lock_id.connect();
        u.wr_ready.connect();
        u.done_valid.connect();
        u.done_slot.connect();
        u.done_error.connect();
        u.ans_ready.connect();
        u
    }
}

#[cfg(test)]
mod tests;

//! The target's lock table and lock-retry state machine: LOCK requests (from the frame parser) take
//! a table entry and are granted when no earlier live lock and no local hold overlaps their
//! regions; a busy lock is retried with a doubling backoff until it is held or its retry limit is
//! spent (LOCK_REJECTED, BusyTimeout). Conflicting locks are granted in arrival order, which is
//! sequence order: each entry remembers which entries were there before it.
//!
//! A rejected lock leaves an ordering barrier in its entry, as the software target does: a later
//! lock overlapping it is rejected (Ordering) instead of landing before the retry, until the
//! source re-issues the rejected write (a request with the barrier's sequence number frees it) or
//! `clear_barriers` pulses (a new session; a barrier whose re-issue is already being taken in
//! survives it, so that the re-issue keeps its place). The re-issue takes the rejected write's place in the
//! order: locks that came after the original wait for the re-issue, which does not wait for them.
//! A lock outside the volume is rejected (OutOfRange).
//!
//! A request is registered (stage 0); over the next two clocks the barriers it re-issues are
//! found, and then it enters the table. One entry is examined per clock, round robin, in a four-stage
//! pipeline (select the entry; compare its regions with every entry's; combine with their states;
//! act), so a decision comes at most `N + 7` clocks after a request, and retries are timed in
//! steps of `N` clocks. Decisions come out one per clock at most, never back-pressured; requests
//! wait (`req_ready` low) while the table is full and a request is already waiting for a slot; a
//! re-issue takes its barrier's slot. A table full of barriers with a new request waiting raises
//! `overflow`. Granted locks are released by slot when their write is done. Lock ids and sequence
//! numbers sit in block RAM.

use rust_hdl::prelude::*;
use specmirror_abi::RejectReason;

/// Entries in the product's table (the LOCK_TABLE_ENTRIES register reports it).
pub const ENTRIES: usize = 16;
/// Bits of a slot index.
pub const SLOT_BITS: usize = 4;
const _: () = assert!(1 << SLOT_BITS == ENTRIES);

/// The table as the product builds it: `ENTRIES` entries. Smaller parts take a smaller `N`.
pub type LockTable16 = LockTable<ENTRIES, SLOT_BITS>;

pub const FREE: u64 = 0;
pub const WAITING: u64 = 1;
pub const HELD: u64 = 2;
pub const BARRIER: u64 = 3;

#[derive(LogicBlock)]
pub struct LockTable<const N: usize, const S: usize> {
    pub clock: Signal<In, Clock>,
    /// A lock request: regions `[first, first + count)` of the target volume.
    pub req_valid: Signal<In, Bit>,
    pub req_ready: Signal<Out, Bit>,
    pub req_lock_id: Signal<In, Bits<64>>,
    pub req_seq: Signal<In, Bits<64>>,
    pub req_first: Signal<In, Bits<32>>,
    pub req_count: Signal<In, Bits<32>>,
    /// Regions in the target volume.
    pub region_count: Signal<In, Bits<32>>,
    /// A local hold on `[local_first, local_end)` (the target's own user of the volume).
    pub local_hold: Signal<In, Bit>,
    pub local_first: Signal<In, Bits<32>>,
    pub local_end: Signal<In, Bits<32>>,
    /// First backoff in clocks, and blocked attempts before a lock is rejected.
    pub retry_backoff: Signal<In, Bits<16>>,
    pub retry_limit: Signal<In, Bits<16>>,
    /// The write of the lock held in `rel_slot` is done. With `rel_fail` it failed: the entry
    /// becomes an ordering barrier, as a rejected lock's does, until the write is re-issued.
    pub rel_valid: Signal<In, Bit>,
    pub rel_slot: Signal<In, Bits<S>>,
    pub rel_fail: Signal<In, Bit>,
    /// Drops every ordering barrier.
    pub clear_barriers: Signal<In, Bit>,
    /// One clock per decision: granted, or rejected with `dec_reason` (a `RejectReason`).
    pub dec_valid: Signal<Out, Bit>,
    pub dec_granted: Signal<Out, Bit>,
    pub dec_reason: Signal<Out, Bits<8>>,
    pub dec_lock_id: Signal<Out, Bits<64>>,
    pub dec_seq: Signal<Out, Bits<64>>,
    pub dec_slot: Signal<Out, Bits<S>>,
    /// The decided lock's regions, `[dec_first, dec_end)`.
    pub dec_first: Signal<Out, Bits<32>>,
    pub dec_end: Signal<Out, Bits<32>>,
    /// One clock per retry of a busy lock (the LOCK_RETRIES counter).
    pub retried: Signal<Out, Bit>,
    /// Which slots hold their lock (for the data path: data may be written for these only).
    pub held: Signal<Out, Bits<N>>,
    /// Every slot is a barrier and a new request waits: nothing can move until the session is
    /// reset (`clear_barriers`). The host fences the session; the source replays in order.
    pub overflow: Signal<Out, Bit>,
    state: [DFF<Bits<2>>; N],
    bad: [DFF<Bit>; N],
    first: [DFF<Bits<32>>; N],
    end: [DFF<Bits<32>>; N],
    /// Lock id and sequence number by slot, read once per decision (block RAM, not a mux).
    id_ram: RAM<Bits<64>, S>,
    seq_ram: RAM<Bits<64>, S>,
    /// Sequence numbers again, in registers: a request is compared with every barrier's.
    seq: [DFF<Bits<64>>; N],
    /// The entries that were in the table when this one arrived.
    pred: [DFF<Bits<N>>; N],
    /// Clocks left of the backoff; the next blocked attempt retries when it is at most 1.
    timer: [DFF<Bits<16>>; N],
    backoff: [DFF<Bits<16>>; N],
    /// Retries left before the lock is rejected.
    tries: [DFF<Bits<16>>; N],
    cursor: DFF<Bits<S>>,
    // Stage 1: the selected entry.
    a_valid: DFF<Bit>,
    a_slot: DFF<Bits<S>>,
    a_first: DFF<Bits<32>>,
    a_end: DFF<Bits<32>>,
    a_pred: DFF<Bits<N>>,
    // Stage 2a: which entries overlap it, and whether the local hold does.
    c_valid: DFF<Bit>,
    c_slot: DFF<Bits<S>>,
    c_first: DFF<Bits<32>>,
    c_end: DFF<Bits<32>>,
    c_pred: DFF<Bits<N>>,
    // Each 32-bit region comparison is split in 16-bit halves here and joined in stage 2b:
    // `a < b` is `a.hi < b.hi | a.hi == b.hi & a.lo < b.lo`.
    c_lt1h: DFF<Bits<N>>,
    c_eq1h: DFF<Bits<N>>,
    c_lt1l: DFF<Bits<N>>,
    c_lt2h: DFF<Bits<N>>,
    c_eq2h: DFF<Bits<N>>,
    c_lt2l: DFF<Bits<N>>,
    c_local: DFF<Bit>,
    c_llt1h: DFF<Bit>,
    c_leq1h: DFF<Bit>,
    c_llt1l: DFF<Bit>,
    c_llt2h: DFF<Bit>,
    c_leq2h: DFF<Bit>,
    c_llt2l: DFF<Bit>,
    // Out of range: `end < first` (wrapped past 2^32) or `region_count < end`, in halves.
    c_wlth: DFF<Bit>,
    c_weqh: DFF<Bit>,
    c_wltl: DFF<Bit>,
    c_rlth: DFF<Bit>,
    c_reqh: DFF<Bit>,
    c_rltl: DFF<Bit>,
    b_range: DFF<Bit>,
    // Stage 2b: what blocks it.
    b_slot: DFF<Bits<S>>,
    b_first: DFF<Bits<32>>,
    b_end: DFF<Bits<32>>,
    /// `b_slot` decoded, and zero when no entry is to be acted on.
    b_onehot: DFF<Bits<N>>,
    b_blocked: DFF<Bit>,
    b_barrier: DFF<Bit>,
    // Stage 3 output registers.
    o_valid: DFF<Bit>,
    o_granted: DFF<Bit>,
    o_reason: DFF<Bits<8>>,
    o_lock_id: DFF<Bits<64>>,
    o_seq: DFF<Bits<64>>,
    o_slot: DFF<Bits<S>>,
    o_first: DFF<Bits<32>>,
    o_end: DFF<Bits<32>>,
    o_retried: DFF<Bit>,
    // Combinational helpers.
    /// The slot the registered request goes to: its barrier's, or the lowest free one.
    free_slot: Signal<Local, Bits<S>>,
    any_free: Signal<Local, Bit>,
    any_busy: Signal<Local, Bit>,
    next_free: Signal<Local, Bit>,
    next_onehot: Signal<Local, Bits<N>>,
    f_onehot: DFF<Bits<N>>,
    f_valid: DFF<Bit>,
    live_mask: Signal<Local, Bits<N>>,
    reissued: Signal<Local, Bits<N>>,
    eq_lo: Signal<Local, Bits<N>>,
    c_dec: Signal<Local, Bits<N>>,
    s_waiting: Signal<Local, Bit>,
    s_bad: Signal<Local, Bit>,
    s_due: Signal<Local, Bit>,
    s_spent: Signal<Local, Bit>,
    act_range: Signal<Local, Bit>,
    act_order: Signal<Local, Bit>,
    act_grant: Signal<Local, Bit>,
    act_busy: Signal<Local, Bit>,
    eq_hi: Signal<Local, Bits<N>>,
    inserting: Signal<Local, Bit>,
    /// Entries that came after the write being re-issued: they now follow its re-issue.
    followers: Signal<Local, Bits<N>>,
    lt1h: Signal<Local, Bits<N>>,
    eq1h: Signal<Local, Bits<N>>,
    lt1l: Signal<Local, Bits<N>>,
    lt2h: Signal<Local, Bits<N>>,
    eq2h: Signal<Local, Bits<N>>,
    lt2l: Signal<Local, Bits<N>>,
    free_onehot: Signal<Local, Bits<N>>,
    req_end: Signal<Local, Bits<32>>,
    // Stage 0: the request, registered with its checks and the barriers it re-issues.
    r_valid: DFF<Bit>,
    r_first: DFF<Bits<32>>,
    r_end: DFF<Bits<32>>,
    r_bad: DFF<Bit>,
    r_lock_id: DFF<Bits<64>>,
    r_seq: DFF<Bits<64>>,
    r_reissued: DFF<Bits<N>>,
    /// `r_reissued` is not empty.
    r_is_reissue: DFF<Bit>,
    /// Which entries' sequence numbers match the request's, by 32-bit half.
    r_eqlo: DFF<Bits<N>>,
    r_eqhi: DFF<Bits<N>>,
    /// The halves are compared (one clock after the request is taken), and joined (`r_ripe`,
    /// the next): the request may enter the table.
    r_phase: DFF<Bit>,
    r_ripe: DFF<Bit>,
    blocked: Signal<Local, Bit>,
    barrier: Signal<Local, Bit>,
    st_free: Constant<Bits<2>>,
    st_waiting: Constant<Bits<2>>,
    st_held: Constant<Bits<2>>,
    st_barrier: Constant<Bits<2>>,
    why_busy: Constant<Bits<8>>,
    why_range: Constant<Bits<8>>,
    why_order: Constant<Bits<8>>,
}

pub(crate) fn arr<T: Default, const N: usize>() -> [T; N] {
    array_init::array_init(|_| T::default())
}

impl<const N: usize, const S: usize> Default for LockTable<N, S> {
    fn default() -> Self {
        assert!(1 << S == N, "a table of N entries has S-bit slot numbers");
        Self {
            clock: Default::default(),
            req_valid: Default::default(),
            req_ready: Default::default(),
            req_lock_id: Default::default(),
            req_seq: Default::default(),
            req_first: Default::default(),
            req_count: Default::default(),
            region_count: Default::default(),
            local_hold: Default::default(),
            local_first: Default::default(),
            local_end: Default::default(),
            retry_backoff: Default::default(),
            retry_limit: Default::default(),
            rel_valid: Default::default(),
            rel_slot: Default::default(),
            rel_fail: Default::default(),
            clear_barriers: Default::default(),
            dec_valid: Default::default(),
            dec_granted: Default::default(),
            dec_reason: Default::default(),
            dec_lock_id: Default::default(),
            dec_seq: Default::default(),
            dec_slot: Default::default(),
            dec_first: Default::default(),
            dec_end: Default::default(),
            retried: Default::default(),
            held: Default::default(),
            overflow: Default::default(),
            state: arr(),
            bad: arr(),
            first: arr(),
            end: arr(),
            id_ram: Default::default(),
            seq_ram: Default::default(),
            seq: arr(),
            pred: arr(),
            timer: arr(),
            backoff: arr(),
            tries: arr(),
            cursor: Default::default(),
            a_valid: Default::default(),
            a_slot: Default::default(),
            a_first: Default::default(),
            a_end: Default::default(),
            a_pred: Default::default(),
            c_valid: Default::default(),
            c_slot: Default::default(),
            c_first: Default::default(),
            c_end: Default::default(),
            c_pred: Default::default(),
            c_lt1h: Default::default(),
            c_eq1h: Default::default(),
            c_lt1l: Default::default(),
            c_lt2h: Default::default(),
            c_eq2h: Default::default(),
            c_lt2l: Default::default(),
            c_local: Default::default(),
            c_llt1h: Default::default(),
            c_leq1h: Default::default(),
            c_llt1l: Default::default(),
            c_llt2h: Default::default(),
            c_leq2h: Default::default(),
            c_llt2l: Default::default(),
            c_wlth: Default::default(),
            c_weqh: Default::default(),
            c_wltl: Default::default(),
            c_rlth: Default::default(),
            c_reqh: Default::default(),
            c_rltl: Default::default(),
            b_range: Default::default(),
            b_slot: Default::default(),
            b_first: Default::default(),
            b_end: Default::default(),
            b_onehot: Default::default(),
            b_blocked: Default::default(),
            b_barrier: Default::default(),
            o_valid: Default::default(),
            o_granted: Default::default(),
            o_reason: Default::default(),
            o_lock_id: Default::default(),
            o_seq: Default::default(),
            o_slot: Default::default(),
            o_first: Default::default(),
            o_end: Default::default(),
            o_retried: Default::default(),
            free_slot: Default::default(),
            any_free: Default::default(),
            any_busy: Default::default(),
            next_free: Default::default(),
            next_onehot: Default::default(),
            f_onehot: Default::default(),
            f_valid: Default::default(),
            live_mask: Default::default(),
            reissued: Default::default(),
            eq_lo: Default::default(),
            c_dec: Default::default(),
            s_waiting: Default::default(),
            s_bad: Default::default(),
            s_due: Default::default(),
            s_spent: Default::default(),
            act_range: Default::default(),
            act_order: Default::default(),
            act_grant: Default::default(),
            act_busy: Default::default(),
            eq_hi: Default::default(),
            inserting: Default::default(),
            followers: Default::default(),
            lt1h: Default::default(),
            eq1h: Default::default(),
            lt1l: Default::default(),
            lt2h: Default::default(),
            eq2h: Default::default(),
            lt2l: Default::default(),
            free_onehot: Default::default(),
            req_end: Default::default(),
            r_valid: Default::default(),
            r_first: Default::default(),
            r_end: Default::default(),
            r_bad: Default::default(),
            r_lock_id: Default::default(),
            r_seq: Default::default(),
            r_reissued: Default::default(),
            r_is_reissue: Default::default(),
            r_eqlo: Default::default(),
            r_eqhi: Default::default(),
            r_phase: Default::default(),
            r_ripe: Default::default(),
            blocked: Default::default(),
            barrier: Default::default(),
            st_free: Constant::new(FREE.to_bits()),
            st_waiting: Constant::new(WAITING.to_bits()),
            st_held: Constant::new(HELD.to_bits()),
            st_barrier: Constant::new(BARRIER.to_bits()),
            why_busy: Constant::new((RejectReason::BusyTimeout as u64).to_bits()),
            why_range: Constant::new((RejectReason::OutOfRange as u64).to_bits()),
            why_order: Constant::new((RejectReason::Ordering as u64).to_bits()),
        }
    }
}

impl<const N: usize, const S: usize> Logic for LockTable<N, S> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            cursor,
            a_valid,
            a_slot,
            a_first,
            a_end,
            a_pred,
            c_valid,
            c_slot,
            c_first,
            c_end,
            c_pred,
            c_lt1h,
            c_eq1h,
            c_lt1l,
            c_lt2h,
            c_eq2h,
            c_lt2l,
            c_local,
            c_llt1h,
            c_leq1h,
            c_llt1l,
            c_llt2h,
            c_leq2h,
            c_llt2l,
            c_wlth,
            c_weqh,
            c_wltl,
            c_rlth,
            c_reqh,
            c_rltl,
            b_range,
            b_slot,
            b_first,
            b_end,
            b_onehot,
            b_blocked,
            b_barrier,
            o_valid,
            o_granted,
            o_reason,
            o_lock_id,
            o_seq,
            o_slot,
            o_first,
            o_end,
            o_retried,
            r_valid,
            r_first,
            r_end,
            r_bad,
            r_is_reissue,
            r_eqlo,
            r_eqhi,
            r_phase,
            r_ripe,
            r_lock_id,
            r_seq,
            r_reissued,
            f_onehot,
            f_valid
        );
        // Every entry keeps its value unless something below changes it; timers run down.
        self.free_slot.next = 0.into();
        self.any_free.next = false;
        self.any_busy.next = false;
        self.live_mask.next = 0.into();
        self.reissued.next = 0.into();
        self.held.next = 0.into();
        for i in 0..N {
            self.state[i].clock.next = self.clock.val();
            self.bad[i].clock.next = self.clock.val();
            self.first[i].clock.next = self.clock.val();
            self.end[i].clock.next = self.clock.val();
            self.seq[i].clock.next = self.clock.val();
            self.pred[i].clock.next = self.clock.val();
            self.timer[i].clock.next = self.clock.val();
            self.backoff[i].clock.next = self.clock.val();
            self.tries[i].clock.next = self.clock.val();
            self.state[i].d.next = self.state[i].q.val();
            self.bad[i].d.next = self.bad[i].q.val();
            self.first[i].d.next = self.first[i].q.val();
            self.end[i].d.next = self.end[i].q.val();
            self.seq[i].d.next = self.seq[i].q.val();
            self.pred[i].d.next = self.pred[i].q.val();
            self.backoff[i].d.next = self.backoff[i].q.val();
            self.tries[i].d.next = self.tries[i].q.val();
            self.timer[i].d.next = self.timer[i].q.val();
            if self.timer[i].q.val().any() {
                self.timer[i].d.next = self.timer[i].q.val() - 1;
            }
            if self.state[i].q.val() == self.st_held.val() {
                self.held.next = self.held.val().replace_bit(i, true);
            }
            if (self.state[i].q.val() == self.st_held.val())
                | (self.state[i].q.val() == self.st_waiting.val())
            {
                self.any_busy.next = true;
            }
            if self.state[i].q.val() != self.st_free.val() {
                self.live_mask.next = self.live_mask.val().replace_bit(i, true);
            }
        }
        // Where the registered request goes, as a one-hot mask from registers only: a re-issue
        // takes its barrier's slot (so it gets in even when the table is full), a new request the
        // lowest free slot, chosen the clock before.
        if self.r_is_reissue.q.val() {
            self.free_onehot.next = self.r_reissued.q.val();
        } else {
            self.free_onehot.next = self.f_onehot.q.val();
        }
        self.any_free.next =
            self.r_ripe.q.val() & (self.r_is_reissue.q.val() | self.f_valid.q.val());
        self.free_slot.next = 0.into();
        for i in 0..N {
            if self.free_onehot.val().get_bit(i) {
                self.free_slot.next = i.to_bits();
            }
        }
        // Stage 0: a request is taken into the register while it is empty or moving on.
        self.inserting.next = self.r_valid.q.val() & self.any_free.val();
        self.req_ready.next = !self.r_valid.q.val() | self.inserting.val();
        self.overflow.next = self.r_valid.q.val()
            & self.r_ripe.q.val()
            & !self.any_free.val()
            & !self.any_busy.val();
        // Next clock's free slot: the lowest free one, other than the one a new request fills now.
        self.f_valid.d.next = false;
        self.next_onehot.next = 0.into();
        self.next_free.next = false;
        for i in 0..N {
            if (self.state[i].q.val() == self.st_free.val())
                & !(self.inserting.val() & self.free_onehot.val().get_bit(i))
                & !self.next_free.val()
            {
                self.next_onehot.next = self.next_onehot.val().replace_bit(i, true);
                self.f_valid.d.next = true;
                self.next_free.next = true;
            }
        }
        self.f_onehot.d.next = self.next_onehot.val();
        self.req_end.next = self.req_first.val() + self.req_count.val();
        // The barriers a registered request re-issues, found over two clocks: the sequence
        // number compared in halves, then joined with the entries' states.
        self.eq_lo.next = 0.into();
        self.eq_hi.next = 0.into();
        self.reissued.next = 0.into();
        for i in 0..N {
            if self.seq[i].q.val().get_bits::<32>(0) == self.r_seq.q.val().get_bits::<32>(0) {
                self.eq_lo.next = self.eq_lo.val().replace_bit(i, true);
            }
            if self.seq[i].q.val().get_bits::<32>(32) == self.r_seq.q.val().get_bits::<32>(32) {
                self.eq_hi.next = self.eq_hi.val().replace_bit(i, true);
            }
            if self.r_eqlo.q.val().get_bit(i)
                & self.r_eqhi.q.val().get_bit(i)
                & (self.state[i].q.val() == self.st_barrier.val())
            {
                self.reissued.next = self.reissued.val().replace_bit(i, true);
            }
        }
        self.r_eqlo.d.next = self.eq_lo.val();
        self.r_eqhi.d.next = self.eq_hi.val();
        self.r_phase.d.next = self.r_phase.q.val();
        self.r_ripe.d.next = self.r_ripe.q.val();
        self.r_reissued.d.next = self.r_reissued.q.val();
        self.r_is_reissue.d.next = self.r_is_reissue.q.val();
        if self.r_valid.q.val() & !self.r_ripe.q.val() {
            self.r_phase.d.next = true;
            if self.r_phase.q.val() {
                self.r_ripe.d.next = true;
                self.r_reissued.d.next = self.reissued.val();
                self.r_is_reissue.d.next = self.reissued.val().any();
            }
        }
        self.r_valid.d.next = self.r_valid.q.val() & !self.inserting.val();
        self.r_first.d.next = self.r_first.q.val();
        self.r_end.d.next = self.r_end.q.val();
        self.r_bad.d.next = self.r_bad.q.val();
        self.r_lock_id.d.next = self.r_lock_id.q.val();
        self.r_seq.d.next = self.r_seq.q.val();
        if self.req_valid.val() & self.req_ready.val() {
            self.r_valid.d.next = true;
            self.r_first.d.next = self.req_first.val();
            self.r_end.d.next = self.req_end.val();
            self.r_bad.d.next = !self.req_count.val().any();
            self.r_lock_id.d.next = self.req_lock_id.val();
            self.r_seq.d.next = self.req_seq.val();
            self.r_phase.d.next = false;
            self.r_ripe.d.next = false;
            self.r_reissued.d.next = 0.into();
            self.r_is_reissue.d.next = false;
        }

        // Stage 1: select the entry under the cursor.
        self.cursor.d.next = self.cursor.q.val() + 1;
        self.a_valid.d.next = false;
        self.a_slot.d.next = self.cursor.q.val();
        self.a_first.d.next = 0.into();
        self.a_end.d.next = 0.into();
        self.a_pred.d.next = 0.into();
        for i in 0..N {
            if self.cursor.q.val().index() == i {
                self.a_valid.d.next = self.state[i].q.val() == self.st_waiting.val();
                self.a_first.d.next = self.first[i].q.val();
                self.a_end.d.next = self.end[i].q.val();
                self.a_pred.d.next = self.pred[i].q.val();
            }
        }

        // Stage 2a: compare its regions with every entry's and with the local hold, in halves.
        self.lt1h.next = 0.into();
        self.eq1h.next = 0.into();
        self.lt1l.next = 0.into();
        self.lt2h.next = 0.into();
        self.eq2h.next = 0.into();
        self.lt2l.next = 0.into();
        for j in 0..N {
            // a.first < end[j]
            if self.a_first.q.val().get_bits::<16>(16) < self.end[j].q.val().get_bits::<16>(16) {
                self.lt1h.next = self.lt1h.val().replace_bit(j, true);
            }
            if self.a_first.q.val().get_bits::<16>(16) == self.end[j].q.val().get_bits::<16>(16) {
                self.eq1h.next = self.eq1h.val().replace_bit(j, true);
            }
            if self.a_first.q.val().get_bits::<16>(0) < self.end[j].q.val().get_bits::<16>(0) {
                self.lt1l.next = self.lt1l.val().replace_bit(j, true);
            }
            // first[j] < a.end
            if self.first[j].q.val().get_bits::<16>(16) < self.a_end.q.val().get_bits::<16>(16) {
                self.lt2h.next = self.lt2h.val().replace_bit(j, true);
            }
            if self.first[j].q.val().get_bits::<16>(16) == self.a_end.q.val().get_bits::<16>(16) {
                self.eq2h.next = self.eq2h.val().replace_bit(j, true);
            }
            if self.first[j].q.val().get_bits::<16>(0) < self.a_end.q.val().get_bits::<16>(0) {
                self.lt2l.next = self.lt2l.val().replace_bit(j, true);
            }
        }
        self.c_valid.d.next = self.a_valid.q.val();
        self.c_slot.d.next = self.a_slot.q.val();
        self.c_first.d.next = self.a_first.q.val();
        self.c_end.d.next = self.a_end.q.val();
        self.c_pred.d.next = self.a_pred.q.val();
        self.c_lt1h.d.next = self.lt1h.val();
        self.c_eq1h.d.next = self.eq1h.val();
        self.c_lt1l.d.next = self.lt1l.val();
        self.c_lt2h.d.next = self.lt2h.val();
        self.c_eq2h.d.next = self.eq2h.val();
        self.c_lt2l.d.next = self.lt2l.val();
        self.c_local.d.next = self.local_hold.val();
        self.c_llt1h.d.next =
            self.a_first.q.val().get_bits::<16>(16) < self.local_end.val().get_bits::<16>(16);
        self.c_leq1h.d.next =
            self.a_first.q.val().get_bits::<16>(16) == self.local_end.val().get_bits::<16>(16);
        self.c_llt1l.d.next =
            self.a_first.q.val().get_bits::<16>(0) < self.local_end.val().get_bits::<16>(0);
        self.c_llt2h.d.next =
            self.local_first.val().get_bits::<16>(16) < self.a_end.q.val().get_bits::<16>(16);
        self.c_leq2h.d.next =
            self.local_first.val().get_bits::<16>(16) == self.a_end.q.val().get_bits::<16>(16);
        self.c_llt2l.d.next =
            self.local_first.val().get_bits::<16>(0) < self.a_end.q.val().get_bits::<16>(0);
        self.c_wlth.d.next =
            self.a_end.q.val().get_bits::<16>(16) < self.a_first.q.val().get_bits::<16>(16);
        self.c_weqh.d.next =
            self.a_end.q.val().get_bits::<16>(16) == self.a_first.q.val().get_bits::<16>(16);
        self.c_wltl.d.next =
            self.a_end.q.val().get_bits::<16>(0) < self.a_first.q.val().get_bits::<16>(0);
        self.c_rlth.d.next =
            self.region_count.val().get_bits::<16>(16) < self.a_end.q.val().get_bits::<16>(16);
        self.c_reqh.d.next =
            self.region_count.val().get_bits::<16>(16) == self.a_end.q.val().get_bits::<16>(16);
        self.c_rltl.d.next =
            self.region_count.val().get_bits::<16>(0) < self.a_end.q.val().get_bits::<16>(0);

        // Stage 2b: is an earlier overlapping entry live (or a barrier), or a local hold?
        self.blocked.next = self.c_local.q.val()
            & (self.c_llt1h.q.val() | (self.c_leq1h.q.val() & self.c_llt1l.q.val()))
            & (self.c_llt2h.q.val() | (self.c_leq2h.q.val() & self.c_llt2l.q.val()));
        self.barrier.next = false;
        for j in 0..N {
            if self.c_pred.q.val().get_bit(j)
                & (self.c_lt1h.q.val().get_bit(j)
                    | (self.c_eq1h.q.val().get_bit(j) & self.c_lt1l.q.val().get_bit(j)))
                & (self.c_lt2h.q.val().get_bit(j)
                    | (self.c_eq2h.q.val().get_bit(j) & self.c_lt2l.q.val().get_bit(j)))
            {
                if (self.state[j].q.val() == self.st_waiting.val())
                    | (self.state[j].q.val() == self.st_held.val())
                {
                    self.blocked.next = true;
                }
                if self.state[j].q.val() == self.st_barrier.val() {
                    self.barrier.next = true;
                }
            }
        }
        self.b_range.d.next = (self.c_wlth.q.val() | (self.c_weqh.q.val() & self.c_wltl.q.val()))
            | (self.c_rlth.q.val() | (self.c_reqh.q.val() & self.c_rltl.q.val()));
        self.b_slot.d.next = self.c_slot.q.val();
        self.b_first.d.next = self.c_first.q.val();
        self.b_end.d.next = self.c_end.q.val();
        self.c_dec.next = 0.into();
        for i in 0..N {
            if self.c_valid.q.val() & (self.c_slot.q.val().index() == i) {
                self.c_dec.next = self.c_dec.val().replace_bit(i, true);
            }
        }
        self.b_onehot.d.next = self.c_dec.val();
        self.b_blocked.d.next = self.blocked.val();
        self.b_barrier.d.next = self.barrier.val();

        // Stage 3: act on the entry. Its lock id and sequence number arrive from the RAMs, read
        // at the address stage 2b held.
        self.id_ram.read_clock.next = self.clock.val();
        self.seq_ram.read_clock.next = self.clock.val();
        self.id_ram.write_clock.next = self.clock.val();
        self.seq_ram.write_clock.next = self.clock.val();
        self.id_ram.read_address.next = self.c_slot.q.val();
        self.seq_ram.read_address.next = self.c_slot.q.val();
        self.o_lock_id.d.next = self.id_ram.read_data.val();
        self.o_seq.d.next = self.seq_ram.read_data.val();
        self.o_slot.d.next = self.b_slot.q.val();
        self.o_first.d.next = self.b_first.q.val();
        self.o_end.d.next = self.b_end.q.val();
        // The decision, from the selected entry's flags OR-ed over the one-hot selection.
        self.s_waiting.next = false;
        self.s_bad.next = false;
        self.s_due.next = false;
        self.s_spent.next = false;
        for i in 0..N {
            if self.b_onehot.q.val().get_bit(i) {
                if self.state[i].q.val() == self.st_waiting.val() {
                    self.s_waiting.next = true;
                }
                if self.bad[i].q.val() {
                    self.s_bad.next = true;
                }
                if !self.timer[i].q.val().get_bits::<15>(1).any() {
                    self.s_due.next = true;
                }
                if !self.tries[i].q.val().any() {
                    self.s_spent.next = true;
                }
            }
        }
        // What happens to it: out of range, behind a barrier, granted, retried, or rejected
        // (BusyTimeout) when its retries are spent.
        self.act_range.next = self.s_waiting.val() & (self.s_bad.val() | self.b_range.q.val());
        self.act_order.next = self.s_waiting.val() & !self.act_range.val() & self.b_barrier.q.val();
        self.act_grant.next = self.s_waiting.val()
            & !self.act_range.val()
            & !self.b_barrier.q.val()
            & !self.b_blocked.q.val();
        self.act_busy.next = self.s_waiting.val()
            & !self.act_range.val()
            & !self.b_barrier.q.val()
            & self.b_blocked.q.val()
            & self.s_due.val();
        self.o_valid.d.next = self.act_range.val()
            | self.act_order.val()
            | self.act_grant.val()
            | (self.act_busy.val() & self.s_spent.val());
        self.o_granted.d.next = self.act_grant.val();
        self.o_retried.d.next = self.act_busy.val() & !self.s_spent.val();
        self.o_reason.d.next = 0.into();
        if self.act_range.val() {
            self.o_reason.d.next = self.why_range.val();
        }
        if self.act_order.val() {
            self.o_reason.d.next = self.why_order.val();
        }
        if self.act_busy.val() {
            self.o_reason.d.next = self.why_busy.val();
        }
        // Each entry acts on its own flags (local logic, in parallel).
        for i in 0..N {
            if self.b_onehot.q.val().get_bit(i) & (self.state[i].q.val() == self.st_waiting.val()) {
                if self.bad[i].q.val() | self.b_range.q.val() {
                    self.state[i].d.next = self.st_free.val();
                } else if self.b_barrier.q.val() {
                    self.state[i].d.next = self.st_barrier.val();
                } else if !self.b_blocked.q.val() {
                    self.state[i].d.next = self.st_held.val();
                } else if !self.timer[i].q.val().get_bits::<15>(1).any() {
                    if !self.tries[i].q.val().any() {
                        self.state[i].d.next = self.st_barrier.val();
                    } else {
                        self.tries[i].d.next = self.tries[i].q.val() - 1;
                        self.timer[i].d.next = self.backoff[i].q.val();
                        if !self.backoff[i].q.val().get_bit(15) {
                            self.backoff[i].d.next = self.backoff[i].q.val() << 1;
                        }
                    }
                }
            }
        }

        // Requests. A re-issue (the sequence number of a barrier) takes its barrier's place in
        // the order: it frees the barrier, the entries that came after the barrier now come after
        // the re-issue, and the re-issue does not wait for them.
        self.followers.next = 0.into();
        for i in 0..N {
            // Held entries are not followers: one can hold its lock past the barrier only when a
            // session reset dropped the barrier, and the re-issue must then wait for it.
            if (self.pred[i].q.val() & self.r_reissued.q.val()).any()
                & ((self.state[i].q.val() == self.st_waiting.val())
                    | (self.state[i].q.val() == self.st_barrier.val()))
            {
                self.followers.next = self.followers.val().replace_bit(i, true);
            }
        }
        self.id_ram.write_address.next = self.free_slot.val();
        self.id_ram.write_data.next = self.r_lock_id.q.val();
        self.id_ram.write_enable.next = self.inserting.val();
        self.seq_ram.write_address.next = self.free_slot.val();
        self.seq_ram.write_data.next = self.r_seq.q.val();
        self.seq_ram.write_enable.next = self.inserting.val();
        if self.inserting.val() {
            for i in 0..N {
                if self.r_reissued.q.val().get_bit(i) {
                    self.state[i].d.next = self.st_free.val();
                }
                if self.free_onehot.val().get_bit(i) {
                    self.state[i].d.next = self.st_waiting.val();
                    self.bad[i].d.next = self.r_bad.q.val();
                    self.first[i].d.next = self.r_first.q.val();
                    self.end[i].d.next = self.r_end.q.val();
                    self.seq[i].d.next = self.r_seq.q.val();
                    self.pred[i].d.next =
                        self.live_mask.val() & !self.r_reissued.q.val() & !self.followers.val();
                    self.timer[i].d.next = 0.into();
                    self.backoff[i].d.next = self.retry_backoff.val();
                    self.tries[i].d.next = self.retry_limit.val();
                } else if !self.followers.val().get_bit(i) {
                    // A free slot is reused by a later entry: nobody waits on it any more. (A
                    // re-issue takes its barrier's slot, which its followers keep waiting on.)
                    self.pred[i].d.next = self.pred[i].q.val() & !self.free_onehot.val();
                }
            }
        }
        // Releases and session resets.
        for i in 0..N {
            if self.rel_valid.val()
                & (self.rel_slot.val().index() == i)
                & (self.state[i].q.val() == self.st_held.val())
            {
                if self.rel_fail.val() {
                    self.state[i].d.next = self.st_barrier.val();
                } else {
                    self.state[i].d.next = self.st_free.val();
                }
            }
            // A barrier whose re-issue has been in the input register for a clock (its halves
            // compared) survives: the re-issue takes its slot and its place as it would have.
            // Otherwise entries that followed the barrier could be granted in the gap and then be
            // passed by the re-issue. (A re-issue that arrives with the reset, or after it, finds
            // no barrier and enters as a new write: the new session's order.)
            if self.clear_barriers.val()
                & (self.state[i].q.val() == self.st_barrier.val())
                & !(self.r_valid.q.val()
                    & ((self.r_is_reissue.q.val() & self.r_reissued.q.val().get_bit(i))
                        | (self.r_phase.q.val()
                            & !self.r_ripe.q.val()
                            & self.reissued.val().get_bit(i))))
            {
                self.state[i].d.next = self.st_free.val();
            }
        }

        self.dec_valid.next = self.o_valid.q.val();
        self.dec_granted.next = self.o_granted.q.val();
        self.dec_reason.next = self.o_reason.q.val();
        self.dec_lock_id.next = self.o_lock_id.q.val();
        self.dec_seq.next = self.o_seq.q.val();
        self.dec_slot.next = self.o_slot.q.val();
        self.dec_first.next = self.o_first.q.val();
        self.dec_end.next = self.o_end.q.val();
        self.retried.next = self.o_retried.q.val();
    }
}

/// A lock table with its inputs marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected<const N: usize, const S: usize>() -> super::LockTable<N, S> {
        let mut u = super::LockTable::<N, S>::default();
        u.clock.connect();
        u.req_valid.connect();
        u.req_lock_id.connect();
        u.req_seq.connect();
        u.req_first.connect();
        u.req_count.connect();
        u.region_count.connect();
        u.local_hold.connect();
        u.local_first.connect();
        u.local_end.connect();
        u.retry_backoff.connect();
        u.retry_limit.connect();
        u.rel_valid.connect();
        u.rel_slot.connect();
        u.rel_fail.connect();
        u.clear_barriers.connect();
        u
    }
}

pub mod workload;

#[cfg(test)]
mod tests;

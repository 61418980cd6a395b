//! The source, wire to wire: descriptors and their data words in, LOCK and DATA frames out (the
//! send path), the target's answers in (a frame parser: bad frames dropped and counted, frames of
//! another session dropped), completion entries out (the send tracker). The send path takes a
//! descriptor only while the tracker has an entry for it; conservative mode waits for its lock's
//! grant, and gives the descriptor up with its data unsent if the lock is rejected. A raw
//! descriptor (the host's own frame) needs no entry, only that the last one's `Sent` completion
//! has gone to the tracker's queue.

use rust_hdl::prelude::*;

use crate::frame_parser::FrameParser;
use crate::send_tracker::SendTracker8;
use crate::spec_sender::SpecSender;

#[derive(LogicBlock)]
pub struct SourcePath {
    pub clock: Signal<In, Clock>,
    // Descriptors (valid/ready), as the send path takes them.
    pub desc_valid: Signal<In, Bit>,
    pub desc_ready: Signal<Out, Bit>,
    pub desc_seq: Signal<In, Bits<64>>,
    pub desc_lock_id: Signal<In, Bits<64>>,
    pub desc_offset: Signal<In, Bits<64>>,
    pub desc_length: Signal<In, Bits<32>>,
    pub desc_mode: Signal<In, Bits<2>>,
    pub desc_flags: Signal<In, Bits<16>>,
    pub desc_first_region: Signal<In, Bits<64>>,
    pub desc_region_count: Signal<In, Bits<64>>,
    /// The session: stamped on every frame, and the only one whose answers are taken.
    pub generation: Signal<In, Bits<32>>,
    pub ack_lock: Signal<In, Bits<64>>,
    pub ack_seq: Signal<In, Bits<64>>,
    pub data_in: Signal<In, Bits<64>>,
    pub data_valid: Signal<In, Bit>,
    pub data_ready: Signal<Out, Bit>,
    // To the target.
    pub tx_data: Signal<Out, Bits<64>>,
    pub tx_valid: Signal<Out, Bit>,
    pub tx_last: Signal<Out, Bit>,
    pub tx_ready: Signal<In, Bit>,
    // From the target: its answers, never back-pressured.
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    // Completion entries.
    pub cpl_valid: Signal<Out, Bit>,
    pub cpl_ready: Signal<In, Bit>,
    pub cpl_data: Signal<Out, Bits<256>>,
    /// Answer frames that failed the parser's checks.
    pub frames_bad: Signal<Out, Bits<32>>,
    /// Answers of another session.
    pub stale: Signal<Out, Bits<32>>,
    pub unmatched: Signal<Out, Bits<32>>,
    pub cpl_drops: Signal<Out, Bits<32>>,
    pub inflight: Signal<Out, Bits<8>>,
    sender: SpecSender,
    tracker: SendTracker8,
    parser: FrameParser,
    stale_q: DFF<Bits<32>>,
    current: Signal<Local, Bit>,
    raw: Signal<Local, Bit>,
    room: Signal<Local, Bit>,
    mode_raw: Constant<Bits<2>>,
}

impl Logic for SourcePath {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, stale_q);
        clock!(self, clock, sender, tracker, parser);
        // Descriptors: taken by the send path only while the tracker has room for them.
        self.raw.next = self.desc_mode.val() == self.mode_raw.val();
        self.room.next = self.tracker.room.val();
        if self.raw.val() {
            self.room.next = self.tracker.raw_room.val();
        }
        self.sender.desc_valid.next = self.desc_valid.val() & self.room.val();
        self.desc_ready.next = self.sender.desc_ready.val() & self.room.val();
        self.sender.desc_seq.next = self.desc_seq.val();
        self.sender.desc_lock_id.next = self.desc_lock_id.val();
        self.sender.desc_offset.next = self.desc_offset.val();
        self.sender.desc_length.next = self.desc_length.val();
        self.sender.desc_mode.next = self.desc_mode.val();
        self.sender.desc_flags.next = self.desc_flags.val();
        self.sender.desc_generation.next = self.generation.val();
        self.sender.desc_first_region.next = self.desc_first_region.val();
        self.sender.desc_region_count.next = self.desc_region_count.val();
        self.sender.ack_lock.next = self.ack_lock.val();
        self.sender.ack_seq.next = self.ack_seq.val();
        self.sender.data_in.next = self.data_in.val();
        self.sender.data_valid.next = self.data_valid.val();
        self.data_ready.next = self.sender.data_ready.val();
        self.tx_data.next = self.sender.tx_data.val();
        self.tx_valid.next = self.sender.tx_valid.val();
        self.tx_last.next = self.sender.tx_last.val();
        self.sender.tx_ready.next = self.tx_ready.val();
        self.tracker.sent_valid.next = self.desc_valid.val()
            & self.sender.desc_ready.val()
            & self.tracker.room.val()
            & !self.raw.val();
        self.tracker.raw_valid.next = self.sender.raw_done.val();
        self.tracker.raw_seq.next = self.sender.raw_seq.val();
        self.tracker.sent_lock_id.next = self.desc_lock_id.val();
        self.tracker.sent_seq.next = self.desc_seq.val();
        // Answers: checked by the parser, of this session only, to the tracker.
        self.parser.rx_data.next = self.rx_data.val();
        self.parser.rx_valid.next = self.rx_valid.val();
        self.parser.rx_last.next = self.rx_last.val();
        self.current.next =
            self.parser.frame_ok.val() & (self.parser.generation.val() == self.generation.val());
        if self.parser.frame_ok.val() & !self.current.val() {
            self.stale_q.d.next = self.stale_q.q.val() + 1;
        }
        self.tracker.ans_valid.next = self.current.val();
        self.tracker.ans_ty.next = self.parser.ty.val();
        self.tracker.ans_lock_id.next = self.parser.lock_id.val();
        self.tracker.ans_arg.next = self.parser.arg.val();
        // The lock the send path waits on, and what came of it.
        self.tracker.wait_lock_id.next = self.sender.lock_id_out.val();
        self.sender.granted.next = self.tracker.granted.val();
        self.sender.rejected.next = self.tracker.rejected.val();
        self.cpl_valid.next = self.tracker.cpl_valid.val();
        self.cpl_data.next = self.tracker.cpl_data.val();
        self.tracker.cpl_ready.next = self.cpl_ready.val();
        self.frames_bad.next = self.parser.bad_count.val();
        self.stale.next = self.stale_q.q.val();
        self.unmatched.next = self.tracker.unmatched.val();
        self.cpl_drops.next = self.tracker.cpl_drops.val();
        self.inflight.next = self.tracker.inflight.val();
    }
}

impl Default for SourcePath {
    fn default() -> Self {
        Self {
            clock: Default::default(),
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
            generation: Default::default(),
            ack_lock: Default::default(),
            ack_seq: Default::default(),
            data_in: Default::default(),
            data_valid: Default::default(),
            data_ready: Default::default(),
            tx_data: Default::default(),
            tx_valid: Default::default(),
            tx_last: Default::default(),
            tx_ready: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            rx_last: Default::default(),
            cpl_valid: Default::default(),
            cpl_ready: Default::default(),
            cpl_data: Default::default(),
            frames_bad: Default::default(),
            stale: Default::default(),
            unmatched: Default::default(),
            cpl_drops: Default::default(),
            inflight: Default::default(),
            sender: Default::default(),
            tracker: Default::default(),
            parser: Default::default(),
            stale_q: Default::default(),
            current: Default::default(),
            raw: Default::default(),
            room: Default::default(),
            mode_raw: Constant::new((specmirror_abi::ring::Mode::Raw as u64).to_bits()),
        }
    }
}

/// A source path with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::SourcePath {
        let mut u = super::SourcePath::default();
        u.clock.connect();
        u.desc_valid.connect();
        u.desc_seq.connect();
        u.desc_lock_id.connect();
        u.desc_offset.connect();
        u.desc_length.connect();
        u.desc_mode.connect();
        u.desc_flags.connect();
        u.desc_first_region.connect();
        u.desc_region_count.connect();
        u.generation.connect();
        u.ack_lock.connect();
        u.ack_seq.connect();
        u.data_in.connect();
        u.data_valid.connect();
        u.tx_ready.connect();
        u.rx_data.connect();
        u.rx_valid.connect();
        u.rx_last.connect();
        u.cpl_ready.connect();
        u
    }
}

pub mod host;

#[cfg(test)]
mod tests;

//! The target device's choice of the frames it leaves to the host: HELLO, FLUSH and HEARTBEAT,
//! and LOCK and DATA frames of a session the device does not hold (their generation is not the
//! GENERATION register's), which the host's software answers by asking the source to handshake
//! again. Everything else (the session's LOCK, DATA and ABORT, answers, frames with a bad magic)
//! is the target path's alone.
//!
//! The type is in a frame's first word and its generation in the second, so the words pass one
//! clock behind the receive stream: the first word waits in a register until the second shows
//! whether the frame goes out. A held word leaves when the next word comes, or at once when it is
//! a frame's last, so a frame never waits for the one behind it. A frame of one word is never
//! the host's. The choice is made once per frame, at its second word: while `enable` is low no
//! frame is chosen, and a frame chosen goes out whole.

use rust_hdl::prelude::*;
use specmirror_abi::frame::field;
use specmirror_abi::{FrameType, MAGIC};

// The literals below: header bit positions and frame type numbers.
const _: () = {
    assert!(field::MAGIC == 0 && field::TYPE == 5 && field::GENERATION == 12);
    assert!(MAGIC == 0x5249_4d53);
    assert!(FrameType::Hello as u8 == 1 && FrameType::Lock as u8 == 3);
    assert!(FrameType::Data as u8 == 6 && FrameType::Flush as u8 == 10);
    assert!(FrameType::Heartbeat as u8 == 12);
};

/// The block's rule in software, on a frame's bytes as they came: whether the target device
/// leaves it to the host while it holds session `generation`.
pub fn for_the_host(frame: &[u8], generation: u32) -> bool {
    if frame.len() <= 8 || frame[..4] != MAGIC.to_le_bytes() {
        return false;
    }
    let ty = frame[field::TYPE];
    let gen = frame
        .get(field::GENERATION..field::GENERATION + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let is = |t: FrameType| ty == t as u8;
    is(FrameType::Hello)
        || is(FrameType::Flush)
        || is(FrameType::Heartbeat)
        || ((is(FrameType::Lock) || is(FrameType::Data)) && gen != generation)
}

#[derive(LogicBlock, Default)]
pub struct HostFilter {
    pub clock: Signal<In, Clock>,
    pub enable: Signal<In, Bit>,
    /// The session the device holds.
    pub generation: Signal<In, Bits<32>>,
    /// The receive stream (never back-pressured).
    pub rx_data: Signal<In, Bits<64>>,
    pub rx_valid: Signal<In, Bit>,
    pub rx_last: Signal<In, Bit>,
    /// The host's frames, whole, a clock or more behind.
    pub out_data: Signal<Out, Bits<64>>,
    pub out_valid: Signal<Out, Bit>,
    pub out_last: Signal<Out, Bit>,
    /// The word held back.
    held: DFF<Bits<64>>,
    held_valid: DFF<Bit>,
    held_last: DFF<Bit>,
    held_first: DFF<Bit>,
    /// The next word from the link is inside a frame (not its first).
    mid_frame: DFF<Bit>,
    /// The frame now leaving is the host's.
    keep: DFF<Bit>,
    leave: Signal<Local, Bit>,
    ty: Signal<Local, Bits<8>>,
    magic_ok: Signal<Local, Bit>,
    stale: Signal<Local, Bit>,
    host: Signal<Local, Bit>,
}

impl Logic for HostFilter {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, held, held_valid, held_last, held_first, mid_frame, keep);
        // The held word leaves when the next comes, or as a frame's last.
        self.leave.next = self.held_valid.q.val() & (self.rx_valid.val() | self.held_last.q.val());
        // A first word held, its second word arriving: the frame's kind.
        self.ty.next = self.held.q.val().get_bits::<8>(40);
        self.magic_ok.next = self.held.q.val().get_bits::<32>(0) == 0x5249_4d53;
        self.stale.next = self.rx_data.val().get_bits::<32>(32) != self.generation.val();
        self.host.next = false;
        if (self.ty.val() == 1) | (self.ty.val() == 10) | (self.ty.val() == 12) {
            self.host.next = true;
        }
        if ((self.ty.val() == 3) | (self.ty.val() == 6)) & self.stale.val() {
            self.host.next = true;
        }
        self.host.next = self.host.val() & self.magic_ok.val() & self.enable.val();
        self.out_data.next = self.held.q.val();
        self.out_last.next = self.held_last.q.val();
        self.out_valid.next = false;
        if self.leave.val() {
            if self.held_first.q.val() {
                // Decided now: a frame of one word is not the host's.
                self.keep.d.next = self.host.val() & !self.held_last.q.val();
                self.out_valid.next = self.host.val() & !self.held_last.q.val();
            } else {
                self.out_valid.next = self.keep.q.val();
            }
            self.held_valid.d.next = false;
        }
        if self.rx_valid.val() {
            self.held.d.next = self.rx_data.val();
            self.held_valid.d.next = true;
            self.held_last.d.next = self.rx_last.val();
            self.held_first.d.next = !self.mid_frame.q.val();
            self.mid_frame.d.next = !self.rx_last.val();
        }
    }
}

/// A filter with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::HostFilter {
        let mut u = super::HostFilter::default();
        u.clock.connect();
        u.enable.connect();
        u.generation.connect();
        u.rx_data.connect();
        u.rx_valid.connect();
        u.rx_last.connect();
        u
    }
}

#[cfg(test)]
mod tests;

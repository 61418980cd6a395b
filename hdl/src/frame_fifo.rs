//! The source device's queue of received frames for the host: every frame from the link (which
//! is never back-pressured) goes into a block-RAM FIFO of 64-bit words, and leaves whole, one at
//! a time, on a valid/ready/last stream with its length in bytes held steady while it lasts: the
//! shape the receive ring's write port (`RxRing`) takes.
//!
//! A frame starts only with room for the longest one ([`MAX_WORDS`]) and an entry for its length
//! free; otherwise it is dropped whole and counted, as a NIC drops what it has no buffer for (the
//! source's core sends again what it hears nothing about). A frame longer than [`MAX_WORDS`] is
//! dropped too: its first words are stored, marked, and discarded at the head. So the host sees
//! only whole frames, in the order they came, and never a partial one.
//!
//! The words wait in one FIFO and each frame's length (and its mark) in another, written as the
//! frame's last word is; the head frame's length is taken into registers, and its words leave at
//! one per clock. What the FIFOs hold is counted here, from registers: nothing the FIFOs put out
//! feeds back into their `read` in the same clock (a combinational loop through their read
//! logic otherwise). A length becomes readable two clocks after its write, which is after its
//! frame's words are.

use rust_hdl::prelude::*;

/// Words the FIFO holds (a power of two).
pub const DEPTH: u64 = 256;
/// The longest frame kept, in words: every answer a target sends (the handshake's answer is the
/// longest, 17 words) with room to spare.
pub const MAX_WORDS: u64 = 64;
/// Frames whose lengths wait at once.
pub const FRAMES: u64 = 16;
const _: () = assert!(DEPTH == 1 << 8 && FRAMES == 1 << 4 && MAX_WORDS < 128);

// A length entry is the frame's stored words in bits 0-14 and, in bit 15 (a literal below: a
// Rust constant would not reach the Verilog), the mark of a frame too long, to be discarded.

#[derive(LogicBlock)]
pub struct FrameFifo {
    pub clock: Signal<In, Clock>,
    // From the link: one word per clock at most, never held back.
    pub in_data: Signal<In, Bits<64>>,
    pub in_valid: Signal<In, Bit>,
    pub in_last: Signal<In, Bit>,
    // Whole frames out.
    pub out_valid: Signal<Out, Bit>,
    pub out_ready: Signal<In, Bit>,
    pub out_data: Signal<Out, Bits<64>>,
    pub out_last: Signal<Out, Bit>,
    /// Bytes in the frame at the head (its words times 8).
    pub out_len: Signal<Out, Bits<32>>,
    /// Frames dropped: no room, or too long.
    pub drops: Signal<Out, Bits<32>>,
    words: SynchronousFIFO<Bits<64>, 8, 9, 1>,
    lens: SynchronousFIFO<Bits<16>, 4, 5, 1>,
    /// Inside a frame being kept, and inside one being dropped.
    inframe: DFF<Bit>,
    skip: DFF<Bit>,
    /// Words of the current frame stored, and whether it ran past MAX_WORDS.
    count: DFF<Bits<16>>,
    bad: DFF<Bit>,
    /// Words in the word FIFO and lengths in the length FIFO, counted here (the FIFOs' own flags
    /// lag their writes).
    fill: DFF<Bits<16>>,
    nframes: DFF<Bits<8>>,
    /// Lengths readable: the writes of two clocks ago and before, less those taken.
    ready_frames: DFF<Bits<8>>,
    push_1: DFF<Bit>,
    push_2: DFF<Bit>,
    /// The head frame: taken from the length FIFO, its words, its mark, the words gone.
    h_valid: DFF<Bit>,
    h_words: DFF<Bits<16>>,
    h_bad: DFF<Bit>,
    rcount: DFF<Bits<16>>,
    drops_q: DFF<Bits<32>>,
    first: Signal<Local, Bit>,
    room: Signal<Local, Bit>,
    store: Signal<Local, Bit>,
    push: Signal<Local, Bit>,
    count_after: Signal<Local, Bits<16>>,
    bad_after: Signal<Local, Bit>,
    load: Signal<Local, Bit>,
    taking: Signal<Local, Bit>,
    head_last: Signal<Local, Bit>,
    max_words: Constant<Bits<16>>,
    room_below: Constant<Bits<16>>,
    frames_max: Constant<Bits<8>>,
}

impl Default for FrameFifo {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            in_data: Default::default(),
            in_valid: Default::default(),
            in_last: Default::default(),
            out_valid: Default::default(),
            out_ready: Default::default(),
            out_data: Default::default(),
            out_last: Default::default(),
            out_len: Default::default(),
            drops: Default::default(),
            words: Default::default(),
            lens: Default::default(),
            inframe: Default::default(),
            skip: Default::default(),
            count: Default::default(),
            bad: Default::default(),
            fill: Default::default(),
            nframes: Default::default(),
            ready_frames: Default::default(),
            push_1: Default::default(),
            push_2: Default::default(),
            h_valid: Default::default(),
            h_words: Default::default(),
            h_bad: Default::default(),
            rcount: Default::default(),
            drops_q: Default::default(),
            first: Default::default(),
            room: Default::default(),
            store: Default::default(),
            push: Default::default(),
            count_after: Default::default(),
            bad_after: Default::default(),
            load: Default::default(),
            taking: Default::default(),
            head_last: Default::default(),
            max_words: Constant::new(MAX_WORDS.to_bits()),
            room_below: Constant::new((DEPTH - MAX_WORDS).to_bits()),
            frames_max: Constant::new(FRAMES.to_bits()),
        }
    }
}

impl Logic for FrameFifo {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            inframe,
            skip,
            count,
            bad,
            fill,
            nframes,
            ready_frames,
            push_1,
            push_2,
            h_valid,
            h_words,
            h_bad,
            rcount,
            drops_q
        );
        clock!(self, clock, words, lens);
        // The write side: store the word, or drop the frame.
        self.first.next = !self.inframe.q.val() & !self.skip.q.val();
        self.room.next = (self.fill.q.val() <= self.room_below.val())
            & (self.nframes.q.val() < self.frames_max.val());
        self.store.next = false;
        self.push.next = false;
        self.count_after.next = self.count.q.val();
        self.bad_after.next = self.bad.q.val();
        if self.in_valid.val() {
            if self.first.val() {
                if self.room.val() {
                    self.store.next = true;
                    self.count_after.next = 1.into();
                    self.bad_after.next = false;
                    self.push.next = self.in_last.val();
                    self.inframe.d.next = !self.in_last.val();
                } else {
                    self.drops_q.d.next = self.drops_q.q.val() + 1;
                    self.skip.d.next = !self.in_last.val();
                }
            } else if self.skip.q.val() {
                if self.in_last.val() {
                    self.skip.d.next = false;
                }
            } else {
                if self.count.q.val() < self.max_words.val() {
                    self.store.next = true;
                    self.count_after.next = self.count.q.val() + 1;
                } else {
                    self.bad_after.next = true;
                }
                if self.in_last.val() {
                    self.push.next = true;
                    self.inframe.d.next = false;
                    if self.bad_after.val() {
                        self.drops_q.d.next = self.drops_q.q.val() + 1;
                    }
                }
            }
        }
        self.count.d.next = self.count_after.val();
        self.bad.d.next = self.bad_after.val();
        self.words.data_in.next = self.in_data.val();
        self.words.write.next = self.store.val();
        self.lens.data_in.next = self.count_after.val();
        if self.bad_after.val() {
            self.lens.data_in.next = self.count_after.val().replace_bit(15, true);
        }
        self.lens.write.next = self.push.val();

        // The read side: the next length into the head's registers, then its words, one per
        // clock; a marked frame's words are discarded.
        self.push_1.d.next = self.push.val();
        self.push_2.d.next = self.push_1.q.val();
        self.head_last.next = (self.rcount.q.val() + 1) == self.h_words.q.val();
        self.out_valid.next = self.h_valid.q.val() & !self.h_bad.q.val();
        self.out_data.next = self.words.data_out.val();
        self.out_last.next = self.head_last.val();
        self.out_len.next = bit_cast::<32, 16>(self.h_words.q.val()) << 3;
        self.taking.next = self.h_valid.q.val() & (self.h_bad.q.val() | self.out_ready.val());
        self.words.read.next = self.taking.val();
        if self.taking.val() {
            if self.head_last.val() {
                self.h_valid.d.next = false;
            } else {
                self.rcount.d.next = self.rcount.q.val() + 1;
            }
        }
        // The next length comes in as the head's last word goes: no clock lost between frames.
        self.load.next = (!self.h_valid.q.val() | (self.taking.val() & self.head_last.val()))
            & (self.ready_frames.q.val() != 0);
        self.lens.read.next = self.load.val();
        if self.load.val() {
            self.h_valid.d.next = true;
            self.h_words.d.next = bit_cast::<16, 15>(self.lens.data_out.val().get_bits::<15>(0));
            self.h_bad.d.next = self.lens.data_out.val().get_bit(15);
            self.rcount.d.next = 0.into();
        }
        // The counts.
        if self.store.val() & !self.taking.val() {
            self.fill.d.next = self.fill.q.val() + 1;
        } else if !self.store.val() & self.taking.val() {
            self.fill.d.next = self.fill.q.val() - 1;
        }
        if self.push.val() & !self.load.val() {
            self.nframes.d.next = self.nframes.q.val() + 1;
        } else if !self.push.val() & self.load.val() {
            self.nframes.d.next = self.nframes.q.val() - 1;
        }
        if self.push_2.q.val() & !self.load.val() {
            self.ready_frames.d.next = self.ready_frames.q.val() + 1;
        } else if !self.push_2.q.val() & self.load.val() {
            self.ready_frames.d.next = self.ready_frames.q.val() - 1;
        }
        self.drops.next = self.drops_q.q.val();
    }
}

/// A FIFO with every input marked as driven from outside, ready for `connect_all`.
pub mod tests_support {
    use rust_hdl::prelude::*;

    pub fn connected() -> super::FrameFifo {
        let mut u = super::FrameFifo::default();
        u.clock.connect();
        u.in_data.connect();
        u.in_valid.connect();
        u.in_last.connect();
        u.out_ready.connect();
        u
    }
}

#[cfg(test)]
mod tests;

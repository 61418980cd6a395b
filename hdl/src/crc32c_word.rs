//! CRC32C (Castagnoli, reflected) over one 64-bit little-endian word per clock: a purely
//! combinational step `crc_out = step(crc_in, data)`. The step is linear over GF(2), so each output
//! bit is the parity of a fixed subset of the 96 input bits (32 CRC, 64 data); the subsets are
//! derived from the software step by superposition when the block is built, and synthesis makes each
//! parity a balanced XOR tree (a bit-serial loop would become a 64-deep chain). Frames are padded to
//! whole words, so no byte enables are needed.

use rust_hdl::prelude::*;

/// The reflected Castagnoli polynomial.
pub const POLY: u32 = 0x82F6_3B78;

#[derive(LogicBlock)]
pub struct Crc32cWord {
    pub crc_in: Signal<In, Bits<32>>,
    pub data: Signal<In, Bits<64>>,
    pub crc_out: Signal<Out, Bits<32>>,
    inputs: Signal<Local, Bits<96>>,
    acc: Signal<Local, Bits<32>>,
    /// Output bit `j` is the parity of `inputs & masks[96 j .. 96 j + 96]`.
    masks: Constant<Bits<3072>>,
}

/// For each output bit, which of the 96 inputs (CRC bits 0..32, then data bits 0..64) it XORs.
pub fn masks() -> [u128; 32] {
    let mut m = [0u128; 32];
    for k in 0..96 {
        let out = if k < 32 {
            step(1 << k, 0)
        } else {
            step(0, 1 << (k - 32))
        };
        for (j, mj) in m.iter_mut().enumerate() {
            if out >> j & 1 == 1 {
                *mj |= 1 << k;
            }
        }
    }
    m
}

impl Default for Crc32cWord {
    fn default() -> Self {
        let mut all: Bits<3072> = 0.into();
        for (j, mj) in masks().iter().enumerate() {
            for k in 0..96 {
                if mj >> k & 1 == 1 {
                    all = all.replace_bit(96 * j + k, true);
                }
            }
        }
        Self {
            crc_in: Default::default(),
            data: Default::default(),
            crc_out: Default::default(),
            inputs: Default::default(),
            acc: Default::default(),
            masks: Constant::new(all),
        }
    }
}

impl Logic for Crc32cWord {
    #[hdl_gen]
    fn update(&mut self) {
        self.inputs.next =
            (bit_cast::<96, 64>(self.data.val()) << 32) | bit_cast::<96, 32>(self.crc_in.val());
        self.acc.next = 0.into();
        for j in 0..32 {
            self.acc.next = self.acc.val().replace_bit(
                j,
                (self.inputs.val() & self.masks.val().get_bits::<96>(j * 96)).xor(),
            );
        }
        self.crc_out.next = self.acc.val();
    }
}

/// The same step in software, for tests and models.
pub fn step(crc: u32, word: u64) -> u32 {
    let mut c = crc;
    for i in 0..64 {
        let b = ((c ^ (word >> i) as u32) & 1) != 0;
        c = (c >> 1) ^ if b { POLY } else { 0 };
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{settle, Rng};

    #[test]
    fn software_step_matches_the_crc32c_crate() {
        let mut r = Rng(0x1234_5678_9abc_def0);
        for n in 0..50 {
            let words: Vec<u64> = (0..n).map(|_| r.next_u64()).collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let crc = !words.iter().fold(!0u32, |c, w| step(c, *w));
            assert_eq!(crc, crc32c::crc32c(&bytes));
        }
    }

    #[test]
    fn hardware_step_matches_software_on_random_words() {
        let mut uut = Crc32cWord::default();
        uut.crc_in.connect();
        uut.data.connect();
        uut.connect_all();
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200 {
            let x = r.next_u64();
            let crc = (x >> 17) as u32;
            uut.crc_in.next = crc.to_bits();
            uut.data.next = x.to_bits();
            settle(&mut uut);
            assert_eq!(uut.crc_out.val(), step(crc, x).to_bits());
        }
    }
}

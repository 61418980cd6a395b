//! CRC32C (Castagnoli, reflected) over one 64-bit little-endian word per clock: a purely
//! combinational step `crc_out = step(crc_in, data)`, unrolled bit by bit; synthesis folds it into
//! XOR trees. Frames are padded to whole words, so no byte enables are needed.

use rust_hdl::prelude::*;

/// The reflected Castagnoli polynomial.
pub const POLY: u32 = 0x82F6_3B78;

#[derive(LogicBlock)]
pub struct Crc32cWord {
    pub crc_in: Signal<In, Bits<32>>,
    pub data: Signal<In, Bits<64>>,
    pub crc_out: Signal<Out, Bits<32>>,
    acc: Signal<Local, Bits<32>>,
    poly: Constant<Bits<32>>,
}

impl Default for Crc32cWord {
    fn default() -> Self {
        Self {
            crc_in: Default::default(),
            data: Default::default(),
            crc_out: Default::default(),
            acc: Default::default(),
            poly: Constant::new(POLY.to_bits()),
        }
    }
}

impl Logic for Crc32cWord {
    #[hdl_gen]
    fn update(&mut self) {
        self.acc.next = self.crc_in.val();
        for i in 0..64 {
            if self.acc.val().get_bit(0) ^ self.data.val().get_bit(i) {
                self.acc.next = (self.acc.val() >> 1) ^ self.poly.val();
            } else {
                self.acc.next = self.acc.val() >> 1;
            }
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
    use crate::bench::settle;

    #[test]
    fn software_step_matches_the_crc32c_crate() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for n in 0..50 {
            let words: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                })
                .collect();
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
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let crc = (x >> 17) as u32;
            uut.crc_in.next = crc.to_bits();
            uut.data.next = x.to_bits();
            settle(&mut uut);
            assert_eq!(uut.crc_out.val(), step(crc, x).to_bits());
        }
    }
}

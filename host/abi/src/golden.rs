//! Golden vectors: fixed send-path cases and the exact bytes the frames must have. The files in
//! `host/abi/golden/` are the reference both sides test against: this crate checks its encoder
//! reproduces them, the HDL checks its send path emits them.

use crate::ring::Mode;
use crate::{encode, Flags, FrameType, Header};

/// One descriptor handed to a send path.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub mode: Mode,
    pub seq: u64,
    pub lock_id: u64,
    pub offset: u64,
    pub length: u32,
    pub flags: u16,
    pub generation: u32,
    pub ack_lock: u64,
    pub ack_seq: u64,
    pub region_size: u64,
}

impl Case {
    pub fn first_region(&self) -> u64 {
        self.offset / self.region_size
    }

    pub fn region_count(&self) -> u64 {
        (self.offset + self.length as u64 - 1) / self.region_size - self.first_region() + 1
    }

    /// The write's data: a pattern that differs per case.
    pub fn payload(&self) -> Vec<u8> {
        (0..self.length as u64)
            .map(|i| (i.wrapping_mul(37) ^ self.seq.wrapping_mul(101)) as u8)
            .collect()
    }

    /// The frames a send path emits for this case, in order.
    pub fn frames(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut h = Header::new(FrameType::Lock);
        h.generation = self.generation;
        h.seq = self.seq;
        h.lock_id = self.lock_id;
        h.ack_lock = self.ack_lock;
        h.ack_seq = self.ack_seq;
        if self.mode != Mode::Implicit {
            h.offset = self.first_region();
            h.arg = self.region_count();
            out.extend(encode(&h, &[]));
        }
        h.ty = FrameType::Data;
        h.offset = self.offset;
        h.arg = 0;
        h.flags = Flags(self.flags);
        if self.mode == Mode::Implicit {
            h.flags = h.flags | Flags::IMPLICIT_LOCK;
        }
        out.extend(encode(&h, &self.payload()));
        out
    }

    pub fn file_name(&self) -> String {
        format!("{}.hex", self.name)
    }
}

const fn case(
    name: &'static str,
    mode: Mode,
    seq: u64,
    offset: u64,
    length: u32,
    flags: u16,
) -> Case {
    Case {
        name,
        mode,
        seq,
        lock_id: seq + 1000,
        offset,
        length,
        flags,
        generation: 3,
        ack_lock: seq + 990,
        ack_seq: seq - 1,
        region_size: 4096,
    }
}

pub const CASES: &[Case] = &[
    case("speculative_one_byte", Mode::Speculative, 7, 4095, 1, 0),
    case("speculative_13_bytes", Mode::Speculative, 8, 100, 13, 0),
    case(
        "speculative_two_regions",
        Mode::Speculative,
        9,
        4000,
        200,
        2,
    ),
    case("speculative_words", Mode::Speculative, 10, 8192, 64, 0),
    case("implicit_odd", Mode::Implicit, 11, 12345, 29, 0),
    case("conservative_fua", Mode::Conservative, 12, 0, 40, 2),
    case("compensation", Mode::Speculative, 13, 65536 + 7, 77, 4),
];

/// Frames as hex text, 32 bytes a line.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(32) {
        for b in line {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

pub fn from_hex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..clean.len() / 2)
        .map(|i| u8::from_str_radix(&clean[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
    }

    /// The encoder reproduces every golden file. Set `SPECMIRROR_BLESS=1` to rewrite them after a
    /// deliberate change of the wire format (and review the diff).
    #[test]
    fn encoder_matches_golden_files() {
        let bless = std::env::var("SPECMIRROR_BLESS").is_ok();
        for c in CASES {
            let path = dir().join(c.file_name());
            let ours = c.frames();
            if bless {
                std::fs::write(&path, to_hex(&ours)).unwrap();
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(from_hex(&text), ours, "{}", c.name);
        }
    }

    #[test]
    fn golden_frames_decode() {
        for c in CASES {
            let bytes = c.frames();
            let (first, _, n) = crate::decode(&bytes).unwrap();
            if c.mode == Mode::Implicit {
                assert_eq!(n, bytes.len());
                assert!(first.flags.contains(Flags::IMPLICIT_LOCK));
            } else {
                assert_eq!(first.ty, FrameType::Lock);
                let (d, p, m) = crate::decode(&bytes[n..]).unwrap();
                assert_eq!(n + m, bytes.len());
                assert_eq!(d.ty, FrameType::Data);
                assert_eq!(p, &c.payload()[..]);
            }
        }
    }
}

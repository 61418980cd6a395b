//! Wire protocol v1 frames.
//!
//! A frame is a fixed 64-byte header (eight 64-bit words, so hardware parses it one word per clock),
//! the payload padded with zeros to a multiple of 8 bytes, and an 8-byte trailer holding the CRC32C
//! of everything before it. The CRC sits in a trailer rather than in the header because a sender
//! that streams the payload from memory (the FPGA's speculative send path) only knows it after the
//! last payload word: a header CRC would force it to read the data twice or buffer the frame.
//!
//! Decoding never allocates: [`Header::decode`] validates a header from its 64 bytes (magic,
//! version, type, length bound), and [`decode`] validates a whole frame in a borrowed buffer and
//! returns the payload as a slice.

use crate::le::{get_u16, get_u32, get_u64, Le16, Le32, Le64};

/// `b"SMIR"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SMIR");
/// Protocol version carried in every header.
pub const VERSION: u8 = 1;
/// Bytes in a header.
pub const HEADER_LEN: usize = 64;
/// Bytes in the trailer (CRC32C and a zero word).
pub const TRAILER_LEN: usize = 8;
/// Largest payload a frame may carry; larger writes are split by the sender.
pub const MAX_PAYLOAD: u32 = 4 << 20;

/// Byte offsets of the header fields; the HDL parser and emitter use the same constants.
pub mod field {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const FLAGS: usize = 6;
    pub const PAYLOAD_LEN: usize = 8;
    pub const GENERATION: usize = 12;
    pub const SEQ: usize = 16;
    pub const LOCK_ID: usize = 24;
    pub const OFFSET: usize = 32;
    pub const ARG: usize = 40;
    pub const ACK_LOCK: usize = 48;
    pub const ACK_SEQ: usize = 56;
}

/// The header exactly as it lies on the wire; documents and tests the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireHeader {
    pub magic: Le32,
    pub version: u8,
    pub ty: u8,
    pub flags: Le16,
    pub payload_len: Le32,
    pub generation: Le32,
    pub seq: Le64,
    pub lock_id: Le64,
    pub offset: Le64,
    pub arg: Le64,
    pub ack_lock: Le64,
    pub ack_seq: Le64,
}

/// Frame types of protocol v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    Hello = 1,
    HelloAck = 2,
    /// The synchronous operation: lock `arg` regions starting at region `offset`.
    Lock = 3,
    LockGranted = 4,
    /// `arg` is a [`RejectReason`].
    LockRejected = 5,
    /// Write data for `lock_id` at byte `offset`; with [`Flags::IMPLICIT_LOCK`] it is also the lock.
    Data = 6,
    WriteDone = 7,
    /// `arg` is an errno.
    WriteFailed = 8,
    /// Drop everything held for `lock_id` (and the ordering barrier of write `seq`).
    Abort = 9,
    Flush = 10,
    /// `arg` is 0 when the target's volume is durable, else the errno of the failed sync.
    FlushDone = 11,
    Heartbeat = 12,
}

impl FrameType {
    pub const ALL: [FrameType; 12] = [
        FrameType::Hello,
        FrameType::HelloAck,
        FrameType::Lock,
        FrameType::LockGranted,
        FrameType::LockRejected,
        FrameType::Data,
        FrameType::WriteDone,
        FrameType::WriteFailed,
        FrameType::Abort,
        FrameType::Flush,
        FrameType::FlushDone,
        FrameType::Heartbeat,
    ];

    pub fn from_u8(v: u8) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| *t as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::HelloAck => "HELLO_ACK",
            FrameType::Lock => "LOCK",
            FrameType::LockGranted => "LOCK_GRANTED",
            FrameType::LockRejected => "LOCK_REJECTED",
            FrameType::Data => "DATA",
            FrameType::WriteDone => "WRITE_DONE",
            FrameType::WriteFailed => "WRITE_FAILED",
            FrameType::Abort => "ABORT",
            FrameType::Flush => "FLUSH",
            FrameType::FlushDone => "FLUSH_DONE",
            FrameType::Heartbeat => "HEARTBEAT",
        }
    }
}

/// Header flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// DATA that asks for its own lock: no LOCK frame precedes it.
    pub const IMPLICIT_LOCK: Flags = Flags(1 << 0);
    /// The target must make the write durable before WRITE_DONE.
    pub const FUA: Flags = Flags(1 << 1);
    /// A resync write issued by rollback: it restores the target to the source's content.
    pub const COMPENSATE: Flags = Flags(1 << 2);
    /// Bits a v1 decoder accepts.
    pub const KNOWN: u16 = 0b111;

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// Why a lock was rejected (the `arg` of LOCK_REJECTED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectReason {
    /// The region stayed busy for the whole retry budget.
    BusyTimeout = 1,
    /// The regions lie outside the target volume.
    OutOfRange = 2,
    /// The target refuses writes from this source (fenced).
    Fenced = 3,
    /// An earlier write to an overlapping region was rejected and has not been retried yet.
    Ordering = 4,
    /// The lock table or the early-data buffer is full.
    NoResources = 5,
}

impl RejectReason {
    pub fn from_u64(v: u64) -> Option<RejectReason> {
        Some(match v {
            1 => RejectReason::BusyTimeout,
            2 => RejectReason::OutOfRange,
            3 => RejectReason::Fenced,
            4 => RejectReason::Ordering,
            5 => RejectReason::NoResources,
            _ => return None,
        })
    }

    /// Whether retrying the same lock can ever succeed.
    pub fn is_permanent(self) -> bool {
        matches!(self, RejectReason::OutOfRange | RejectReason::Fenced)
    }
}

/// A decoded header; field meaning depends on the frame type (see `docs/protocol.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: FrameType,
    pub flags: Flags,
    pub payload_len: u32,
    pub generation: u32,
    pub seq: u64,
    pub lock_id: u64,
    pub offset: u64,
    pub arg: u64,
    pub ack_lock: u64,
    pub ack_seq: u64,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    #[error("unknown frame type {0}")]
    BadType(u8),
    #[error("unknown flag bits {0:#06x}")]
    BadFlags(u16),
    #[error("payload length {0} exceeds the maximum {MAX_PAYLOAD}")]
    Oversized(u32),
    #[error("{ty} must not carry a payload of {len} bytes")]
    UnexpectedPayload { ty: &'static str, len: u32 },
    #[error("CRC32C mismatch: frame says {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("non-zero padding or trailer reserved bytes")]
    BadPadding,
}

/// The `arg` of a DATA frame that carries one piece of a longer write: the piece's byte place in
/// the write (high 32 bits) and the write's length (low 32 bits). A DATA frame with `arg` 0
/// carries its whole write. Both fit 32 bits because a write is at most [`MAX_PAYLOAD`] bytes.
pub const fn data_piece_arg(at: u64, write_len: u64) -> u64 {
    (at << 32) | write_len
}

/// A DATA frame's piece: (byte place in the write, the write's length); `None` for a whole write.
pub const fn data_piece(arg: u64) -> Option<(u64, u64)> {
    if arg == 0 {
        None
    } else {
        Some((arg >> 32, arg & 0xffff_ffff))
    }
}

/// Total bytes on the wire for a frame with `payload_len` payload bytes.
pub const fn frame_len(payload_len: u32) -> usize {
    HEADER_LEN + (payload_len as usize).div_ceil(8) * 8 + TRAILER_LEN
}

impl Header {
    /// A header of type `ty` with every other field zero.
    pub const fn new(ty: FrameType) -> Header {
        Header {
            ty,
            flags: Flags::NONE,
            payload_len: 0,
            generation: 0,
            seq: 0,
            lock_id: 0,
            offset: 0,
            arg: 0,
            ack_lock: 0,
            ack_seq: 0,
        }
    }

    /// Validates and decodes a header from its first 64 bytes, before any payload is read, so a
    /// stream reader learns the frame's length without trusting an unchecked field.
    pub fn decode(b: &[u8]) -> Result<Header, FrameError> {
        if b.len() < HEADER_LEN {
            return Err(FrameError::Truncated {
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let magic = get_u32(b, field::MAGIC);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let version = b[field::VERSION];
        if version != VERSION {
            return Err(FrameError::BadVersion(version));
        }
        let ty = FrameType::from_u8(b[field::TYPE]).ok_or(FrameError::BadType(b[field::TYPE]))?;
        let flags = get_u16(b, field::FLAGS);
        if flags & !Flags::KNOWN != 0 {
            return Err(FrameError::BadFlags(flags));
        }
        let payload_len = get_u32(b, field::PAYLOAD_LEN);
        if payload_len > MAX_PAYLOAD {
            return Err(FrameError::Oversized(payload_len));
        }
        let allowed = match ty {
            FrameType::Data => true,
            FrameType::Hello | FrameType::HelloAck => payload_len as usize == crate::HELLO_LEN,
            _ => payload_len == 0,
        };
        if !allowed {
            return Err(FrameError::UnexpectedPayload {
                ty: ty.name(),
                len: payload_len,
            });
        }
        Ok(Header {
            ty,
            flags: Flags(flags),
            payload_len,
            generation: get_u32(b, field::GENERATION),
            seq: get_u64(b, field::SEQ),
            lock_id: get_u64(b, field::LOCK_ID),
            offset: get_u64(b, field::OFFSET),
            arg: get_u64(b, field::ARG),
            ack_lock: get_u64(b, field::ACK_LOCK),
            ack_seq: get_u64(b, field::ACK_SEQ),
        })
    }

    /// The header's 64 bytes, with `payload_len` as given.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::MAGIC..][..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[field::VERSION] = VERSION;
        b[field::TYPE] = self.ty as u8;
        b[field::FLAGS..][..2].copy_from_slice(&self.flags.0.to_le_bytes());
        b[field::PAYLOAD_LEN..][..4].copy_from_slice(&self.payload_len.to_le_bytes());
        b[field::GENERATION..][..4].copy_from_slice(&self.generation.to_le_bytes());
        b[field::SEQ..][..8].copy_from_slice(&self.seq.to_le_bytes());
        b[field::LOCK_ID..][..8].copy_from_slice(&self.lock_id.to_le_bytes());
        b[field::OFFSET..][..8].copy_from_slice(&self.offset.to_le_bytes());
        b[field::ARG..][..8].copy_from_slice(&self.arg.to_le_bytes());
        b[field::ACK_LOCK..][..8].copy_from_slice(&self.ack_lock.to_le_bytes());
        b[field::ACK_SEQ..][..8].copy_from_slice(&self.ack_seq.to_le_bytes());
        b
    }
}

/// Appends the encoded frame to `out`. `header.payload_len` is set from `payload`.
///
/// Panics if the payload is larger than [`MAX_PAYLOAD`]: senders split writes before framing.
pub fn encode_into(header: &Header, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= MAX_PAYLOAD as usize,
        "payload of {} bytes exceeds MAX_PAYLOAD",
        payload.len()
    );
    let mut h = *header;
    h.payload_len = payload.len() as u32;
    let start = out.len();
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(payload);
    let padded = frame_len(h.payload_len) - TRAILER_LEN;
    out.resize(start + padded, 0);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
}

/// Encodes a frame into a new buffer.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame_len(payload.len() as u32));
    encode_into(header, payload, &mut out);
    out
}

/// Validates one whole frame at the start of `b` and returns its header, its payload (borrowed)
/// and the number of bytes it occupies.
pub fn decode(b: &[u8]) -> Result<(Header, &[u8], usize), FrameError> {
    let h = Header::decode(b)?;
    let total = frame_len(h.payload_len);
    if b.len() < total {
        return Err(FrameError::Truncated {
            need: total,
            have: b.len(),
        });
    }
    let payload_end = HEADER_LEN + h.payload_len as usize;
    let payload = &b[HEADER_LEN..payload_end];
    decode_parts(&b[..HEADER_LEN], payload, &b[payload_end..total])?;
    Ok((h, payload, total))
}

/// Validates a frame read in three parts, so that a reader can take the payload into a buffer
/// of its own: the header's `HEADER_LEN` bytes, the payload, and the rest (padding and trailer,
/// [`tail_len`] bytes). Returns the header.
pub fn decode_parts(header: &[u8], payload: &[u8], tail: &[u8]) -> Result<Header, FrameError> {
    let h = Header::decode(header)?;
    let need = frame_len(h.payload_len);
    let have = HEADER_LEN + payload.len() + tail.len();
    if payload.len() != h.payload_len as usize || tail.len() != tail_len(h.payload_len) {
        return Err(FrameError::Truncated { need, have });
    }
    let pad = tail.len() - TRAILER_LEN;
    let stored = get_u32(tail, pad);
    let mut computed = crc32c::crc32c(&header[..HEADER_LEN]);
    computed = crc32c::crc32c_append(computed, payload);
    computed = crc32c::crc32c_append(computed, &tail[..pad]);
    if stored != computed {
        return Err(FrameError::BadCrc { stored, computed });
    }
    if tail[..pad].iter().any(|&x| x != 0) || get_u32(tail, pad + 4) != 0 {
        return Err(FrameError::BadPadding);
    }
    Ok(h)
}

/// The bytes that follow a payload of `payload_len` bytes in its frame: padding to 8 bytes and
/// the trailer.
pub const fn tail_len(payload_len: u32) -> usize {
    frame_len(payload_len) - HEADER_LEN - payload_len as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn wire_header_field_offsets() {
        assert_eq!(size_of::<WireHeader>(), HEADER_LEN);
        assert_eq!(offset_of!(WireHeader, magic), field::MAGIC);
        assert_eq!(offset_of!(WireHeader, version), field::VERSION);
        assert_eq!(offset_of!(WireHeader, ty), field::TYPE);
        assert_eq!(offset_of!(WireHeader, flags), field::FLAGS);
        assert_eq!(offset_of!(WireHeader, payload_len), field::PAYLOAD_LEN);
        assert_eq!(offset_of!(WireHeader, generation), field::GENERATION);
        assert_eq!(offset_of!(WireHeader, seq), field::SEQ);
        assert_eq!(offset_of!(WireHeader, lock_id), field::LOCK_ID);
        assert_eq!(offset_of!(WireHeader, offset), field::OFFSET);
        assert_eq!(offset_of!(WireHeader, arg), field::ARG);
        assert_eq!(offset_of!(WireHeader, ack_lock), field::ACK_LOCK);
        assert_eq!(offset_of!(WireHeader, ack_seq), field::ACK_SEQ);
        assert_eq!(HEADER_LEN % 8, 0);
    }

    fn sample() -> Header {
        Header {
            ty: FrameType::Data,
            flags: Flags::IMPLICIT_LOCK | Flags::FUA,
            payload_len: 0,
            generation: 3,
            seq: 0x0102_0304_0506_0708,
            lock_id: 42,
            offset: 4096 + 5,
            arg: 9,
            ack_lock: 40,
            ack_seq: 0x0102_0304_0506_0700,
        }
    }

    #[test]
    fn round_trip_every_type_and_length() {
        for ty in FrameType::ALL {
            let len = match ty {
                FrameType::Data => 13,
                FrameType::Hello | FrameType::HelloAck => crate::HELLO_LEN,
                _ => 0,
            };
            let payload: Vec<u8> = (0..len as u8).collect();
            let mut h = sample();
            h.ty = ty;
            let bytes = encode(&h, &payload);
            assert_eq!(bytes.len(), frame_len(len as u32));
            assert_eq!(bytes.len() % 8, 0);
            let (d, p, used) = decode(&bytes).unwrap();
            h.payload_len = len as u32;
            assert_eq!(d, h);
            assert_eq!(p, &payload[..]);
            assert_eq!(used, bytes.len());
        }
    }

    /// A frame checked in three parts is checked as a whole one is: the same header, and every
    /// damaged byte or short part refused.
    #[test]
    fn parts_decode_as_the_whole_frame() {
        for len in (0..=17u32).chain([4096, 4099]) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let b = encode(&sample(), &payload);
            let end = HEADER_LEN + len as usize;
            let (head, body, tail) = (&b[..HEADER_LEN], &b[HEADER_LEN..end], &b[end..]);
            assert_eq!(tail.len(), tail_len(len), "{len}");
            assert_eq!(
                decode_parts(head, body, tail).unwrap(),
                decode(&b).unwrap().0
            );
            for at in [
                HEADER_LEN,
                end.saturating_sub(1).max(HEADER_LEN),
                end,
                b.len() - 1,
            ] {
                let mut bad = b.clone();
                bad[at] ^= 0x10;
                let (h, p, t) = (&bad[..HEADER_LEN], &bad[HEADER_LEN..end], &bad[end..]);
                assert!(
                    decode_parts(h, p, t).is_err() && decode(&bad).is_err(),
                    "{len}: byte {at} damaged"
                );
            }
            assert!(matches!(
                decode_parts(head, body, &tail[1..]),
                Err(FrameError::Truncated { .. })
            ));
            if len > 0 {
                assert!(matches!(
                    decode_parts(head, &body[1..], tail),
                    Err(FrameError::Truncated { .. })
                ));
            }
        }
    }

    #[test]
    fn fields_land_at_documented_offsets() {
        let bytes = encode(&sample(), b"abc");
        assert_eq!(&bytes[0..4], b"SMIR");
        assert_eq!(bytes[field::VERSION], VERSION);
        assert_eq!(bytes[field::TYPE], FrameType::Data as u8);
        assert_eq!(get_u16(&bytes, field::FLAGS), 0b11);
        assert_eq!(get_u32(&bytes, field::PAYLOAD_LEN), 3);
        assert_eq!(get_u64(&bytes, field::SEQ), 0x0102_0304_0506_0708);
        assert_eq!(bytes[field::SEQ], 0x08, "little-endian");
        assert_eq!(get_u64(&bytes, field::OFFSET), 4101);
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 3], b"abc");
        assert_eq!(&bytes[HEADER_LEN + 3..HEADER_LEN + 8], &[0; 5]);
        let crc = crc32c::crc32c(&bytes[..HEADER_LEN + 8]);
        assert_eq!(get_u32(&bytes, HEADER_LEN + 8), crc);
    }

    #[test]
    fn rejects_bad_magic_version_type_flags() {
        let good = encode(&sample(), b"x");
        let mut b = good.clone();
        b[0] ^= 1;
        assert!(matches!(decode(&b), Err(FrameError::BadMagic(_))));
        let mut b = good.clone();
        b[field::VERSION] = 2;
        assert_eq!(decode(&b).unwrap_err(), FrameError::BadVersion(2));
        let mut b = good.clone();
        b[field::TYPE] = 99;
        assert_eq!(decode(&b).unwrap_err(), FrameError::BadType(99));
        let mut b = good.clone();
        b[field::TYPE] = 0;
        assert_eq!(decode(&b).unwrap_err(), FrameError::BadType(0));
        let mut b = good;
        b[field::FLAGS + 1] = 0x80;
        assert!(matches!(decode(&b), Err(FrameError::BadFlags(_))));
    }

    #[test]
    fn rejects_oversized_length_without_reading_it() {
        let mut b = encode(&sample(), b"");
        b[field::PAYLOAD_LEN..][..4].copy_from_slice(&u32::MAX.to_le_bytes());
        // Only the header is present: the decoder must refuse on the length alone.
        assert_eq!(
            Header::decode(&b[..HEADER_LEN]).unwrap_err(),
            FrameError::Oversized(u32::MAX)
        );
        assert_eq!(decode(&b).unwrap_err(), FrameError::Oversized(u32::MAX));
    }

    #[test]
    fn rejects_payload_on_control_frames() {
        let mut h = sample();
        h.ty = FrameType::Lock;
        let b = encode(&h, b"12345678");
        assert!(matches!(
            decode(&b),
            Err(FrameError::UnexpectedPayload { .. })
        ));
    }

    #[test]
    fn rejects_any_flipped_bit_by_crc_or_validation() {
        let good = encode(&sample(), b"payload!!");
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip of byte {i} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn rejects_truncation_and_nonzero_padding() {
        let good = encode(&sample(), b"abc");
        for cut in 0..good.len() {
            assert!(matches!(
                decode(&good[..cut]),
                Err(FrameError::Truncated { .. })
            ));
        }
        let mut b = good.clone();
        b[HEADER_LEN + 4] = 1;
        let end = b.len() - TRAILER_LEN;
        let crc = crc32c::crc32c(&b[..end]);
        b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b).unwrap_err(), FrameError::BadPadding);
    }

    #[test]
    fn decodes_frames_back_to_back() {
        let mut buf = Vec::new();
        encode_into(&sample(), b"one", &mut buf);
        let mut h2 = sample();
        h2.ty = FrameType::WriteDone;
        encode_into(&h2, b"", &mut buf);
        let (a, pa, na) = decode(&buf).unwrap();
        let (b, _, nb) = decode(&buf[na..]).unwrap();
        assert_eq!(a.ty, FrameType::Data);
        assert_eq!(pa, b"one");
        assert_eq!(b.ty, FrameType::WriteDone);
        assert_eq!(na + nb, buf.len());
    }
}

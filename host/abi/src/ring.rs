//! Rollback-log descriptor and completion ring layouts shared by the host driver and the device.
//!
//! The host posts one [`Descriptor`] per rollback-log entry on the submission ring; the device
//! sends the lock and the data and reports each outcome as a [`Completion`]. Entries are fixed
//! size, rings are a power of two long and 4 KiB aligned, head and tail are free-running counters,
//! and a completion is valid when its phase bit equals the pass the host expects (NVMe style).

use crate::le::{Le16, Le32, Le64};

/// Bytes in a submission descriptor.
pub const DESCRIPTOR_LEN: usize = 64;
/// Bytes in a completion entry.
pub const COMPLETION_LEN: usize = 32;
/// Alignment of ring memory.
pub const RING_ALIGN: usize = 4096;
/// The longest frame a target device sends from a raw descriptor (the host's own frames: its
/// software's answers are far shorter); the source device takes longer ones.
pub const TARGET_RAW_MAX: u32 = 4096;

/// How a descriptor is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Mode {
    /// LOCK, then DATA right behind it without waiting (one round trip).
    #[default]
    Speculative = 0,
    /// A single DATA frame that asks for its own lock.
    Implicit = 1,
    /// DATA only after LOCK_GRANTED (two round trips); the baseline.
    Conservative = 2,
    /// A whole frame the host made (header, payload, trailer), sent as it is, in ring order
    /// with the device's own frames: the host's handshake, heartbeats, flushes, retransmissions.
    /// `length` is its byte count, a multiple of 8; `dma_addr` where it lies; `seq` is the
    /// host's tag for it, which the [`CompletionStatus::Sent`] entry carries back. The device
    /// tracks no lock for it. Only a device with [`crate::regs::CAP_HOST_FRAMES`] takes it.
    Raw = 3,
}

impl Mode {
    pub fn from_u8(v: u8) -> Option<Mode> {
        Some(match v {
            0 => Mode::Speculative,
            1 => Mode::Implicit,
            2 => Mode::Conservative,
            3 => Mode::Raw,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Speculative => "speculative",
            Mode::Implicit => "implicit",
            Mode::Conservative => "conservative",
            Mode::Raw => "raw",
        }
    }
}

/// A rollback-log entry handed to the device: the lock command and where its data lies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Write sequence number (orders writes; idempotency key).
    pub seq: Le64,
    /// Lock command number within the session.
    pub lock_id: Le64,
    /// Byte offset on the volume.
    pub offset: Le64,
    /// Bus address of the data.
    pub dma_addr: Le64,
    /// Bytes of data.
    pub length: Le32,
    /// A [`Mode`].
    pub mode: u8,
    /// Frame flags' low byte (FUA, COMPENSATE).
    pub flags: u8,
    pub reserved0: Le16,
    /// Session generation.
    pub generation: Le32,
    pub reserved1: Le32,
    /// The acknowledgements the frames carry (`Header::ack_lock`, `Header::ack_seq`), as the host
    /// knows them when it posts the write. The regions the lock covers the device works out
    /// from `offset`, `length` and the REGION_LOG2 register.
    pub ack_lock: Le64,
    pub ack_seq: Le64,
}

/// Outcome of a descriptor, as the device reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CompletionStatus {
    LockGranted = 1,
    LockRejected = 2,
    WriteDone = 3,
    WriteFailed = 4,
    /// A [`Mode::Raw`] descriptor's frame has left the device: its memory is the host's again.
    /// `seq` is the descriptor's tag, `lock_id` zero.
    Sent = 5,
}

impl CompletionStatus {
    pub fn from_u8(v: u8) -> Option<CompletionStatus> {
        Some(match v {
            1 => CompletionStatus::LockGranted,
            2 => CompletionStatus::LockRejected,
            3 => CompletionStatus::WriteDone,
            4 => CompletionStatus::WriteFailed,
            5 => CompletionStatus::Sent,
            _ => return None,
        })
    }
}

/// Bit of [`Completion::flags`] that flips on each pass over the ring.
pub const COMPLETION_PHASE: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    pub seq: Le64,
    pub lock_id: Le64,
    /// A [`CompletionStatus`].
    pub status: u8,
    /// [`COMPLETION_PHASE`] and reserved bits.
    pub flags: u8,
    /// Reject reason or errno.
    pub reason: Le16,
    /// Device cycle counter (low 32 bits) when the outcome was known.
    pub timestamp: Le32,
    pub reserved: Le64,
}

impl Completion {
    /// The entry as it lies in the completion ring.
    pub fn to_bytes(&self) -> [u8; COMPLETION_LEN] {
        let mut b = [0u8; COMPLETION_LEN];
        b[0..8].copy_from_slice(&self.seq.to_bytes());
        b[8..16].copy_from_slice(&self.lock_id.to_bytes());
        b[16] = self.status;
        b[17] = self.flags;
        b[18..20].copy_from_slice(&self.reason.to_bytes());
        b[20..24].copy_from_slice(&self.timestamp.to_bytes());
        b[24..32].copy_from_slice(&self.reserved.to_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; COMPLETION_LEN]) -> Completion {
        let field = |at: usize, n: usize| &b[at..at + n];
        Completion {
            seq: Le64::from_bytes(field(0, 8).try_into().expect("8 bytes")),
            lock_id: Le64::from_bytes(field(8, 8).try_into().expect("8 bytes")),
            status: b[16],
            flags: b[17],
            reason: Le16::from_bytes(field(18, 2).try_into().expect("2 bytes")),
            timestamp: Le32::from_bytes(field(20, 4).try_into().expect("4 bytes")),
            reserved: Le64::from_bytes(field(24, 8).try_into().expect("8 bytes")),
        }
    }
}

impl Descriptor {
    pub fn to_bytes(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut b = [0u8; DESCRIPTOR_LEN];
        b[0..8].copy_from_slice(&self.seq.to_bytes());
        b[8..16].copy_from_slice(&self.lock_id.to_bytes());
        b[16..24].copy_from_slice(&self.offset.to_bytes());
        b[24..32].copy_from_slice(&self.dma_addr.to_bytes());
        b[32..36].copy_from_slice(&self.length.to_bytes());
        b[36] = self.mode;
        b[37] = self.flags;
        b[38..40].copy_from_slice(&self.reserved0.to_bytes());
        b[40..44].copy_from_slice(&self.generation.to_bytes());
        b[44..48].copy_from_slice(&self.reserved1.to_bytes());
        b[48..56].copy_from_slice(&self.ack_lock.to_bytes());
        b[56..64].copy_from_slice(&self.ack_seq.to_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn descriptor_layout() {
        assert_eq!(size_of::<Descriptor>(), DESCRIPTOR_LEN);
        assert_eq!(offset_of!(Descriptor, seq), 0);
        assert_eq!(offset_of!(Descriptor, lock_id), 8);
        assert_eq!(offset_of!(Descriptor, offset), 16);
        assert_eq!(offset_of!(Descriptor, dma_addr), 24);
        assert_eq!(offset_of!(Descriptor, length), 32);
        assert_eq!(offset_of!(Descriptor, mode), 36);
        assert_eq!(offset_of!(Descriptor, flags), 37);
        assert_eq!(offset_of!(Descriptor, reserved0), 38);
        assert_eq!(offset_of!(Descriptor, generation), 40);
        assert_eq!(offset_of!(Descriptor, reserved1), 44);
        assert_eq!(offset_of!(Descriptor, ack_lock), 48);
        assert_eq!(offset_of!(Descriptor, ack_seq), 56);
        assert_eq!(RING_ALIGN % DESCRIPTOR_LEN, 0);
    }

    #[test]
    fn completion_layout() {
        assert_eq!(size_of::<Completion>(), COMPLETION_LEN);
        assert_eq!(offset_of!(Completion, seq), 0);
        assert_eq!(offset_of!(Completion, lock_id), 8);
        assert_eq!(offset_of!(Completion, status), 16);
        assert_eq!(offset_of!(Completion, flags), 17);
        assert_eq!(offset_of!(Completion, reason), 18);
        assert_eq!(offset_of!(Completion, timestamp), 20);
        assert_eq!(offset_of!(Completion, reserved), 24);
        assert_eq!(RING_ALIGN % COMPLETION_LEN, 0);
    }

    #[test]
    fn completion_bytes_match_in_memory_layout_and_parse_back() {
        let c = Completion {
            seq: 0x0102_0304_0506_0708.into(),
            lock_id: 0x1112_1314_1516_1718.into(),
            status: CompletionStatus::LockRejected as u8,
            flags: COMPLETION_PHASE,
            reason: 0x2122.into(),
            timestamp: 0x3132_3334.into(),
            reserved: 0x4142_4344_4546_4748.into(),
        };
        let raw: [u8; COMPLETION_LEN] = [
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // seq
            0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // lock id
            2, 1, 0x22, 0x21, // status, flags, reason
            0x34, 0x33, 0x32, 0x31, // timestamp
            0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41, // reserved
        ];
        assert_eq!(c.to_bytes(), raw);
        assert_eq!(Completion::from_bytes(&raw), c);
    }

    #[test]
    fn descriptor_bytes_match_in_memory_layout() {
        let d = Descriptor {
            seq: 1.into(),
            lock_id: 2.into(),
            offset: 3.into(),
            dma_addr: 0xdead_beef_0000.into(),
            length: 4096.into(),
            mode: Mode::Conservative as u8,
            flags: 2,
            reserved0: 0.into(),
            generation: 7.into(),
            reserved1: 0.into(),
            ack_lock: 9.into(),
            ack_seq: 2.into(),
        };
        let b = d.to_bytes();
        assert_eq!(b[36], 2);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            0xdead_beef_0000
        );
        assert_eq!(u32::from_le_bytes(b[40..44].try_into().unwrap()), 7);
        for m in [
            Mode::Speculative,
            Mode::Implicit,
            Mode::Conservative,
            Mode::Raw,
        ] {
            assert_eq!(Mode::from_u8(m as u8), Some(m));
        }
        // The device reads the mode's low two bits: every mode fits them.
        assert_eq!(Mode::from_u8(4), None);
        assert_eq!(CompletionStatus::from_u8(0), None);
        assert_eq!(CompletionStatus::from_u8(5), Some(CompletionStatus::Sent));
        assert_eq!(CompletionStatus::from_u8(6), None);
    }
}

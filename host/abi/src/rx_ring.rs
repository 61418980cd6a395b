//! The target device's receive rings, shared by the host driver and the device: the device hands
//! each locked, ready write to the host for the volume write, and the host hands its outcome back.
//!
//! - The **receive ring**: for each write whose lock the device holds, the device writes the data
//!   into the host buffer of the ring slot (`RX_BUFFER_BYTES` each, at the data area's bus
//!   address plus `slot * RX_BUFFER_BYTES`), then the slot's [`RxEntry`], its phase byte last
//!   (NVMe style: valid when its phase bit equals the pass the host expects). The host releases a
//!   slot, and its buffer, by moving its free-running head past it once the volume write is done.
//! - The **done ring**: the host writes one [`DoneEntry`] per write, in the order the writes
//!   came, and publishes its free-running tail; the device reads them and releases each write's
//!   lock, answering WRITE_DONE or WRITE_FAILED.
//!
//! Frames go to the host on the receive ring too, once CONTROL bit 2 is set (`regs::CAP_HOST_RX`):
//! each whole in a slot's buffer, its entry's length the frame's bytes, flags [`RX_FRAME`], offset
//! and tag zero, and no done entry for it. The source device hands over every frame it receives
//! and uses the receive ring alone; the target device hands over, among its writes and in the
//! order they came, the frames it leaves to the host's software (the handshake, flushes,
//! heartbeats, and LOCK and DATA frames of a session it does not hold).
//!
//! Both rings are a power of two long and 4 KiB aligned, as the submission and completion rings
//! (`crate::ring`).

use crate::le::Le32;
use crate::le::Le64;

/// Bytes of a receive entry.
pub const RX_ENTRY_LEN: usize = 16;
/// Bytes of a done entry.
pub const DONE_ENTRY_LEN: usize = 8;
/// Bytes of the host buffer behind each receive-ring slot: the longest write the device hands
/// over whole.
pub const RX_BUFFER_BYTES: usize = 4096;
/// Bit of [`RxEntry::phase`] that flips on each pass over the ring.
pub const RX_PHASE: u8 = 1;
/// Bit of [`RxEntry::flags`]: the write is FUA (the host syncs the volume before its done entry).
pub const RX_FUA: u8 = 1;
/// Bit of [`RxEntry::flags`]: the entry is a frame the device received and leaves to the host,
/// whole in the slot's buffer; its offset and tag are zero and it takes no done entry.
pub const RX_FRAME: u8 = 2;

/// A write for the host to put on the volume; its data is in the slot's buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxEntry {
    /// Byte offset on the volume.
    pub offset: Le64,
    /// Bytes of data, at most [`RX_BUFFER_BYTES`].
    pub length: Le32,
    /// The device's name for the write (its lock table slot): the done entry gives it back.
    pub tag: u8,
    /// [`RX_FUA`], [`RX_FRAME`] and reserved bits.
    pub flags: u8,
    pub reserved: u8,
    /// [`RX_PHASE`] and reserved bits; written last.
    pub phase: u8,
}

impl RxEntry {
    pub fn to_bytes(&self) -> [u8; RX_ENTRY_LEN] {
        let mut b = [0u8; RX_ENTRY_LEN];
        b[0..8].copy_from_slice(&self.offset.to_bytes());
        b[8..12].copy_from_slice(&self.length.to_bytes());
        b[12] = self.tag;
        b[13] = self.flags;
        b[14] = self.reserved;
        b[15] = self.phase;
        b
    }

    pub fn from_bytes(b: &[u8; RX_ENTRY_LEN]) -> RxEntry {
        RxEntry {
            offset: Le64::from_bytes(b[0..8].try_into().expect("8 bytes")),
            length: Le32::from_bytes(b[8..12].try_into().expect("4 bytes")),
            tag: b[12],
            flags: b[13],
            reserved: b[14],
            phase: b[15],
        }
    }
}

/// The host's outcome of a write it was handed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoneEntry {
    /// The receive entry's `tag`.
    pub tag: u8,
    pub reserved: [u8; 3],
    /// 0 when the data is on the volume, else the errno of the failed write.
    pub error: Le32,
}

impl DoneEntry {
    pub fn to_bytes(&self) -> [u8; DONE_ENTRY_LEN] {
        let mut b = [0u8; DONE_ENTRY_LEN];
        b[0] = self.tag;
        b[1..4].copy_from_slice(&self.reserved);
        b[4..8].copy_from_slice(&self.error.to_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; DONE_ENTRY_LEN]) -> DoneEntry {
        DoneEntry {
            tag: b[0],
            reserved: [b[1], b[2], b[3]],
            error: Le32::from_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RING_ALIGN;
    use core::mem::{offset_of, size_of};

    #[test]
    fn rx_entry_layout() {
        assert_eq!(size_of::<RxEntry>(), RX_ENTRY_LEN);
        assert_eq!(offset_of!(RxEntry, offset), 0);
        assert_eq!(offset_of!(RxEntry, length), 8);
        assert_eq!(offset_of!(RxEntry, tag), 12);
        assert_eq!(offset_of!(RxEntry, flags), 13);
        assert_eq!(offset_of!(RxEntry, phase), 15);
        assert_eq!(RING_ALIGN % RX_ENTRY_LEN, 0);
        assert_eq!(RX_BUFFER_BYTES % RING_ALIGN, 0);
    }

    #[test]
    fn done_entry_layout() {
        assert_eq!(size_of::<DoneEntry>(), DONE_ENTRY_LEN);
        assert_eq!(offset_of!(DoneEntry, tag), 0);
        assert_eq!(offset_of!(DoneEntry, error), 4);
        assert_eq!(RING_ALIGN % DONE_ENTRY_LEN, 0);
    }

    #[test]
    fn entries_round_trip_through_their_bytes() {
        let e = RxEntry {
            offset: Le64::new(0x0102_0304_0506_0708),
            length: Le32::new(4095),
            tag: 9,
            flags: RX_FUA,
            reserved: 0,
            phase: RX_PHASE,
        };
        let b = e.to_bytes();
        assert_eq!(&b[0..8], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(b[15], RX_PHASE);
        assert_eq!(RxEntry::from_bytes(&b), e);
        let d = DoneEntry {
            tag: 7,
            reserved: [0; 3],
            error: Le32::new(5),
        };
        assert_eq!(d.to_bytes(), [7, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(DoneEntry::from_bytes(&d.to_bytes()), d);
    }
}

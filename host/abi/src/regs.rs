//! The device register map, defined once. The host driver reads offsets from here and the HDL
//! register block is generated from [`REGISTERS`], so the two cannot drift apart.
//!
//! The map is a chain of self-describing blocks (id, version, next-block pointer) in BAR0, after
//! the manner of Corundum, so a driver can walk it at probe time and refuse a device it does not
//! know. Doorbells live alone in the second 4 KiB page so they can be mapped write-combined and
//! separately from the control registers.

/// Block id of the specmirror mirror engine ("SMRE").
pub const BLOCK_ID_MIRROR: u32 = u32::from_le_bytes(*b"SMRE");
/// Version of the mirror engine block this map describes (major << 16 | minor).
pub const BLOCK_VERSION_MIRROR: u32 = 1 << 16;
/// Size of BAR0 that the map needs.
pub const BAR0_LEN: u64 = 2 * 4096;
/// Start of the doorbell page.
pub const DOORBELL_PAGE: u32 = 0x1000;
/// CAPABILITIES bit 3: the device takes the host's own frames on its submission ring
/// (`ring::Mode::Raw`) and sends them between the frames it makes. The source device keeps them
/// in order with its writes and reports each by a `Sent` completion; the target device, which
/// has no completion ring, by SQ_HEAD passing it (frames of up to `ring::TARGET_RAW_MAX` bytes).
pub const CAP_HOST_FRAMES: u32 = 1 << 3;
/// CAPABILITIES bit 4: the device hands frames it receives to the host through the receive ring
/// (RX_* registers), once CONTROL bit 2 is set: each frame whole in a slot's buffer, its entry
/// flagged `rx_ring::RX_FRAME`. The source device hands over every frame; the target device those
/// it leaves to the host's software, among its writes.
pub const CAP_HOST_RX: u32 = 1 << 4;
/// CONTROL bit 2: hand received frames to the host on the receive ring (`CAP_HOST_RX`).
pub const CONTROL_HOST_RX: u32 = 1 << 2;
/// CONTROL's self-clearing bit: written as 1, it acts once and reads back 0.
pub const CONTROL_SELF_CLEARING: u32 = 1 << 1;

/// How software may access a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    WriteOnly,
    /// Read-only counter that wraps.
    Counter,
}

/// One 32-bit register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register {
    pub name: &'static str,
    pub offset: u32,
    pub access: Access,
    /// Value after reset.
    pub reset: u32,
    pub doc: &'static str,
}

macro_rules! registers {
    ($($name:ident = $off:expr, $acc:ident, $reset:expr, $doc:expr;)*) => {
        $(#[doc = $doc] pub const $name: u32 = $off;)*
        /// Every register, in address order.
        pub const REGISTERS: &[Register] = &[
            $(Register { name: stringify!($name), offset: $off, access: Access::$acc, reset: $reset, doc: $doc },)*
        ];
    };
}

registers! {
    BLOCK_ID = 0x000, ReadOnly, BLOCK_ID_MIRROR, "Block type: BLOCK_ID_MIRROR.";
    BLOCK_VERSION = 0x004, ReadOnly, BLOCK_VERSION_MIRROR, "Block version, major << 16 | minor.";
    NEXT_BLOCK = 0x008, ReadOnly, 0, "Offset of the next block in BAR0, 0 for the last.";
    CAPABILITIES = 0x00c, ReadOnly, 0b111, "Bit 0 speculative, 1 implicit, 2 conservative mode; bit 3 the host's frames on the submission ring (CAP_HOST_FRAMES); bit 4 received frames to the host on the receive ring (CAP_HOST_RX).";
    CONTROL = 0x010, ReadWrite, 0, "Bit 0 enable; bit 1 (self-clearing) starts a session: the lock table drops the last one's ordering barriers; bit 2 received frames to the host on the receive ring (CONTROL_HOST_RX).";
    STATUS = 0x014, ReadOnly, 0, "Bit 0 running, bit 1 ring error, bit 2 link up.";
    MODE = 0x018, ReadWrite, 0, "Default mode for descriptors (ring::Mode).";
    GENERATION = 0x01c, ReadWrite, 0, "Session generation stamped on every frame.";
    SQ_BASE_LO = 0x020, ReadWrite, 0, "Submission ring bus address, low 32 bits (4 KiB aligned).";
    SQ_BASE_HI = 0x024, ReadWrite, 0, "Submission ring bus address, high 32 bits.";
    SQ_LOG2_SIZE = 0x028, ReadWrite, 0, "log2 of submission ring entries.";
    SQ_HEAD = 0x02c, ReadOnly, 0, "Free-running count of descriptors the device has consumed.";
    CQ_BASE_LO = 0x030, ReadWrite, 0, "Completion ring bus address, low 32 bits (4 KiB aligned).";
    CQ_BASE_HI = 0x034, ReadWrite, 0, "Completion ring bus address, high 32 bits.";
    CQ_LOG2_SIZE = 0x038, ReadWrite, 0, "log2 of completion ring entries.";
    CQ_TAIL = 0x03c, ReadOnly, 0, "Free-running count of completions the device has written.";
    RETRY_BACKOFF = 0x040, ReadWrite, 64, "Lock retry: initial backoff in cycles.";
    RETRY_LIMIT = 0x044, ReadWrite, 1024, "Lock retry: attempts before LOCK_REJECTED.";
    DATA_BUFFER_WORDS = 0x048, ReadOnly, 0, "Early-data buffer size in 64-bit words.";
    LOCK_TABLE_ENTRIES = 0x04c, ReadOnly, 0, "Entries in the target lock table.";
    REGION_LOG2 = 0x050, ReadWrite, 16, "log2 of the region size (the lock granule) in bytes.";
    FRAMES_TX = 0x080, Counter, 0, "Frames transmitted.";
    FRAMES_RX = 0x084, Counter, 0, "Frames received and accepted.";
    FRAMES_BAD = 0x088, Counter, 0, "Frames dropped: bad magic, version, type or CRC.";
    LOCKS_GRANTED = 0x08c, Counter, 0, "Locks granted.";
    LOCKS_REJECTED = 0x090, Counter, 0, "Locks rejected.";
    LOCK_RETRIES = 0x094, Counter, 0, "Lock attempts that found the region busy.";
    RX_BASE_LO = 0x0a0, ReadWrite, 0, "Receive ring bus address, low 32 bits (4 KiB aligned).";
    RX_BASE_HI = 0x0a4, ReadWrite, 0, "Receive ring bus address, high 32 bits.";
    RX_LOG2_SIZE = 0x0a8, ReadWrite, 0, "log2 of receive ring entries (the done ring has as many).";
    RX_TAIL = 0x0ac, ReadOnly, 0, "Free-running count of receive entries the device has written.";
    RX_BUF_LO = 0x0b0, ReadWrite, 0, "Receive buffers' bus address, low 32 bits (RX_BUFFER_BYTES per slot).";
    RX_BUF_HI = 0x0b4, ReadWrite, 0, "Receive buffers' bus address, high 32 bits.";
    DONE_BASE_LO = 0x0b8, ReadWrite, 0, "Done ring bus address, low 32 bits (4 KiB aligned).";
    DONE_BASE_HI = 0x0bc, ReadWrite, 0, "Done ring bus address, high 32 bits.";
    DONE_HEAD = 0x0c0, ReadOnly, 0, "Free-running count of done entries the device has read.";
    VOLUME_BYTES_LO = 0x0c4, ReadWrite, 0, "Target volume size in bytes, low 32 bits.";
    VOLUME_BYTES_HI = 0x0c8, ReadWrite, 0, "Target volume size in bytes, high 32 bits.";
    DATA_DROPS = 0x0cc, ReadOnly, 0, "Target: DATA frames the data buffer did not take (no slot free for them, longer than a slot, or a kind left to the host); the source sends them again.";
    DATA_EXPIRED = 0x0d0, ReadOnly, 0, "Target: DATA frames dropped because their lock never came: it was rejected, or they waited their longest.";
    DATA_REPEATS = 0x0d4, ReadOnly, 0, "Target: DATA frames dropped as copies of data the device already took or wrote.";
    LOCK_DROPS = 0x0d8, ReadOnly, 0, "Target: LOCK frames dropped because the lock table's input was busy.";
    LOCK_AHEAD = 0x0dc, ReadOnly, 0, "Target: LOCK frames dropped because an earlier lock id had not come yet.";
    ANSWER_DROPS = 0x0e0, ReadOnly, 0, "Target: answers dropped because the answer queue was full.";
    SQ_TAIL_DOORBELL = 0x1000, WriteOnly, 0, "Host writes the new free-running submission tail.";
    CQ_HEAD_DOORBELL = 0x1004, WriteOnly, 0, "Host writes the new free-running completion head.";
    RX_HEAD_DOORBELL = 0x1008, WriteOnly, 0, "Host writes the new free-running receive head (slots released).";
    DONE_TAIL_DOORBELL = 0x100c, WriteOnly, 0, "Host writes the new free-running done tail.";
}

/// The target path's drop counters (DATA_DROPS to ANSWER_DROPS) are read-only registers that
/// show the path's own 32-bit counts as they stand, so two drops in one clock count two; they
/// wrap like every counter.
pub const TARGET_DROP_COUNTERS: [u32; 6] = [
    DATA_DROPS,
    DATA_EXPIRED,
    DATA_REPEATS,
    LOCK_DROPS,
    LOCK_AHEAD,
    ANSWER_DROPS,
];

/// Looks a register up by name.
pub fn by_name(name: &str) -> Option<&'static Register> {
    REGISTERS.iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_unique_and_ordered() {
        for w in REGISTERS.windows(2) {
            assert!(w[0].offset < w[1].offset, "{} vs {}", w[0].name, w[1].name);
        }
        for r in REGISTERS {
            assert_eq!(r.offset % 4, 0, "{} unaligned", r.name);
            assert!((r.offset as u64) < BAR0_LEN, "{} outside BAR0", r.name);
        }
    }

    #[test]
    fn doorbells_alone_in_their_page() {
        for r in REGISTERS {
            let in_page = r.offset >= DOORBELL_PAGE && r.offset < DOORBELL_PAGE + 0x1000;
            assert_eq!(in_page, r.name.ends_with("_DOORBELL"), "{}", r.name);
        }
    }

    #[test]
    fn block_header_first() {
        assert_eq!(REGISTERS[0].name, "BLOCK_ID");
        assert_eq!(by_name("BLOCK_ID").unwrap().reset, BLOCK_ID_MIRROR);
        assert_eq!(
            by_name("SQ_TAIL_DOORBELL").unwrap().offset,
            SQ_TAIL_DOORBELL
        );
        assert!(by_name("NOPE").is_none());
    }
}

//! The device's register block as it lies in BAR0, with offsets from the ABI's register map. The
//! struct is only ever reached through a pointer to mapped device memory; every access is
//! volatile (the `volatile-register` cells), so the compiler neither caches nor reorders them.

use std::ptr::NonNull;

use specmirror_abi::regs;
use volatile_register::{RO, RW, WO};

/// BAR0 of the mirror engine, field for field.
#[repr(C)]
pub struct RegisterBlock {
    pub block_id: RO<u32>,
    pub block_version: RO<u32>,
    pub next_block: RO<u32>,
    pub capabilities: RO<u32>,
    pub control: RW<u32>,
    pub status: RO<u32>,
    pub mode: RW<u32>,
    pub generation: RW<u32>,
    pub sq_base_lo: RW<u32>,
    pub sq_base_hi: RW<u32>,
    pub sq_log2_size: RW<u32>,
    pub sq_head: RO<u32>,
    pub cq_base_lo: RW<u32>,
    pub cq_base_hi: RW<u32>,
    pub cq_log2_size: RW<u32>,
    pub cq_tail: RO<u32>,
    pub retry_backoff: RW<u32>,
    pub retry_limit: RW<u32>,
    pub data_buffer_words: RO<u32>,
    pub lock_table_entries: RO<u32>,
    pub region_log2: RW<u32>,
    _reserved0: [u32; 11],
    pub frames_tx: RO<u32>,
    pub frames_rx: RO<u32>,
    pub frames_bad: RO<u32>,
    pub locks_granted: RO<u32>,
    pub locks_rejected: RO<u32>,
    pub lock_retries: RO<u32>,
    _reserved1: [u32; 986],
    pub sq_tail_doorbell: WO<u32>,
    pub cq_head_doorbell: WO<u32>,
}

// Every field sits where the ABI says; the map is written once, there.
const _: () = {
    use core::mem::offset_of;
    macro_rules! at {
        ($f:ident, $c:ident) => {
            assert!(offset_of!(RegisterBlock, $f) == regs::$c as usize);
        };
    }
    at!(block_id, BLOCK_ID);
    at!(block_version, BLOCK_VERSION);
    at!(next_block, NEXT_BLOCK);
    at!(capabilities, CAPABILITIES);
    at!(control, CONTROL);
    at!(status, STATUS);
    at!(mode, MODE);
    at!(generation, GENERATION);
    at!(sq_base_lo, SQ_BASE_LO);
    at!(sq_base_hi, SQ_BASE_HI);
    at!(sq_log2_size, SQ_LOG2_SIZE);
    at!(sq_head, SQ_HEAD);
    at!(cq_base_lo, CQ_BASE_LO);
    at!(cq_base_hi, CQ_BASE_HI);
    at!(cq_log2_size, CQ_LOG2_SIZE);
    at!(cq_tail, CQ_TAIL);
    at!(retry_backoff, RETRY_BACKOFF);
    at!(retry_limit, RETRY_LIMIT);
    at!(data_buffer_words, DATA_BUFFER_WORDS);
    at!(lock_table_entries, LOCK_TABLE_ENTRIES);
    at!(region_log2, REGION_LOG2);
    at!(frames_tx, FRAMES_TX);
    at!(frames_rx, FRAMES_RX);
    at!(frames_bad, FRAMES_BAD);
    at!(locks_granted, LOCKS_GRANTED);
    at!(locks_rejected, LOCKS_REJECTED);
    at!(lock_retries, LOCK_RETRIES);
    at!(sq_tail_doorbell, SQ_TAIL_DOORBELL);
    at!(cq_head_doorbell, CQ_HEAD_DOORBELL);
    assert!(core::mem::size_of::<RegisterBlock>() as u64 <= regs::BAR0_LEN);
};

/// A mapped BAR0: a VFIO region, or the shared page of a device model.
pub struct Mmio {
    base: NonNull<RegisterBlock>,
}

// SAFETY: the mapping is device memory reached only through volatile accesses, which are safe to
// issue from any thread; the ring protocol (free-running counters, doorbells) is what orders them.
unsafe impl Send for Mmio {}
// SAFETY: as for `Send`: shared access is only ever volatile loads and stores of whole registers.
unsafe impl Sync for Mmio {}

impl Mmio {
    /// Wraps a mapping of at least `regs::BAR0_LEN` bytes.
    ///
    /// # Safety
    /// `base` must point to a live mapping of at least `BAR0_LEN` bytes, 4-byte aligned, that stays
    /// mapped for the lifetime of this `Mmio`, and that no Rust reference aliases as ordinary memory.
    pub unsafe fn new(base: NonNull<u8>) -> Mmio {
        Mmio { base: base.cast() }
    }

    pub fn regs(&self) -> &RegisterBlock {
        // SAFETY: `new`'s contract: a live, aligned mapping as large as the block; all access
        // through the returned reference goes through volatile cells.
        unsafe { self.base.as_ref() }
    }

    /// The address of the register at `offset`, checked against the block.
    fn reg(&self, offset: u32) -> *mut u32 {
        assert!(
            offset as u64 + 4 <= regs::BAR0_LEN && offset.is_multiple_of(4),
            "bad register offset {offset:#x}"
        );
        // SAFETY: `offset` is within BAR0_LEN per the assert, and `new`'s contract guarantees a
        // live mapping at least that long; computing the address reads nothing.
        unsafe {
            self.base
                .cast::<u8>()
                .as_ptr()
                .add(offset as usize)
                .cast::<u32>()
        }
    }

    /// Reads a register by ABI offset (for probing and dumps).
    pub fn read(&self, offset: u32) -> u32 {
        // SAFETY: `reg` returns an in-bounds, 4-byte aligned register address; volatile read.
        unsafe { self.reg(offset).read_volatile() }
    }

    /// Writes a register by ABI offset.
    pub fn write(&self, offset: u32, value: u32) {
        // SAFETY: `reg` returns an in-bounds, 4-byte aligned register address; volatile write.
        unsafe { self.reg(offset).write_volatile(value) }
    }
}

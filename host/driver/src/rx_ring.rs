//! The host's side of the receive rings (layouts in `specmirror_abi::rx_ring`): the target
//! device hands each locked, ready write over in a receive entry, its data in the slot's buffer;
//! the host puts it on the volume and hands the outcome back in a done entry, in the order the
//! writes came. Among them come the frames the device leaves to the host (`Received::frame`),
//! which take no outcome; the source device uses the receive ring alone, each entry a frame it
//! received. Acquire after every phase byte, Release before the done tail is published.
//!
//! [`setup`] allocates them with the device's DMA allocator and tells the device where they are
//! (the RX_* and DONE_* registers); [`ReceiveRings::doorbells`] publishes the head and the done
//! tail.

use specmirror_abi::le::Le32;
use specmirror_abi::regs;
use specmirror_abi::rx_ring::{
    DoneEntry, RxEntry, DONE_ENTRY_LEN, RX_BUFFER_BYTES, RX_ENTRY_LEN, RX_FRAME, RX_FUA, RX_PHASE,
};

use crate::device::{Device, DeviceError};
use crate::dma::DmaMemory;
use crate::mmio::Mmio;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    #[error("ring size {0} is not a power of two between 2 and 65536")]
    Size(u32),
    #[error("done ring full ({0} outcomes the device has not read)")]
    DoneFull(u32),
    #[error("the device handed over {len} bytes in slot {slot}: more than a buffer holds")]
    TooLong { slot: u32, len: u32 },
}

/// A write the device handed over, or (`frame`) a frame it received and leaves to the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub offset: u64,
    pub data: Vec<u8>,
    pub fua: bool,
    /// The device's name for the write: its outcome goes back under it.
    pub tag: u8,
    /// `data` is a whole frame (`RX_FRAME`); it takes no outcome.
    pub frame: bool,
}

/// The most writes a target device holds at once, from what it reports in DATA_BUFFER_WORDS and
/// LOCK_TABLE_ENTRIES: one fewer than its data slots of `RX_BUFFER_BYTES` (its last free slot
/// takes only data whose lock is held, so that data waiting for a lock never blocks the data that
/// would release it), no more than its lock table's entries, and at most 255 (what a handshake
/// announces). None if that leaves no write at all.
pub fn window(buffer_words: u32, table_entries: u32) -> Option<u32> {
    let slots = buffer_words as u64 * 8 / RX_BUFFER_BYTES as u64;
    let n = slots.saturating_sub(1).min(table_entries as u64).min(255) as u32;
    (n > 0).then_some(n)
}

/// Allocates the receive rings (`entries` slots) and tells the device where they are.
pub fn setup<D: Device + ?Sized>(dev: &D, entries: u32) -> Result<ReceiveRings, DeviceError> {
    let r = ReceiveRings::new(entries, |n| dev.alloc_dma(n))?;
    let m = dev.mmio();
    let [rx, bufs, done] = r.memories().map(|x| x.bus_addr());
    for (lo, hi, v) in [
        (regs::RX_BASE_LO, regs::RX_BASE_HI, rx),
        (regs::RX_BUF_LO, regs::RX_BUF_HI, bufs),
        (regs::DONE_BASE_LO, regs::DONE_BASE_HI, done),
    ] {
        m.write(lo, v as u32);
        m.write(hi, (v >> 32) as u32);
    }
    m.write(regs::RX_LOG2_SIZE, r.log2());
    DmaMemory::release();
    Ok(r)
}

/// The host's side of the receive ring, its buffers and the done ring.
pub struct ReceiveRings {
    rx: DmaMemory,
    bufs: DmaMemory,
    done: DmaMemory,
    log2: u32,
    head: u32,
    done_tail: u32,
}

impl ReceiveRings {
    /// Allocates the rings and the buffers (`entries` of each) with `alloc`, the device's DMA
    /// allocator.
    pub fn new(
        entries: u32,
        alloc: impl Fn(usize) -> Result<DmaMemory, DeviceError>,
    ) -> Result<ReceiveRings, DeviceError> {
        if !entries.is_power_of_two() || !(2..=65536).contains(&entries) {
            return Err(DeviceError::Dma(std::io::Error::other(RxError::Size(
                entries,
            ))));
        }
        let n = entries as usize;
        Ok(ReceiveRings {
            rx: alloc(n * RX_ENTRY_LEN)?,
            bufs: alloc(n * RX_BUFFER_BYTES)?,
            done: alloc(n * DONE_ENTRY_LEN)?,
            log2: entries.trailing_zeros(),
            head: 0,
            done_tail: 0,
        })
    }

    pub fn entries(&self) -> u32 {
        1 << self.log2
    }

    pub fn log2(&self) -> u32 {
        self.log2
    }

    /// The memories the device reaches by DMA: receive ring, buffers, done ring.
    pub fn memories(&self) -> [&DmaMemory; 3] {
        [&self.rx, &self.bufs, &self.done]
    }

    /// Receive entries taken: the slots (and buffers) the device may fill again.
    pub fn head(&self) -> u32 {
        self.head
    }

    /// Done entries written.
    pub fn done_tail(&self) -> u32 {
        self.done_tail
    }

    /// The next write the device handed over, copied out of its buffer; its slot is released
    /// (publish [`head`](Self::head) to the device). An entry that claims more than a buffer is
    /// an error and stays where it is.
    pub fn poll(&mut self) -> Result<Option<Received>, RxError> {
        let slot = self.head & (self.entries() - 1);
        let at = slot as usize * RX_ENTRY_LEN;
        let want = crate::ring::phase_of(self.head, self.log2);
        if self.rx.read_u8_acquire(at + RX_ENTRY_LEN - 1) & RX_PHASE != want {
            return Ok(None);
        }
        let mut b = [0u8; RX_ENTRY_LEN];
        self.rx.read(at, &mut b);
        let e = RxEntry::from_bytes(&b);
        let len = e.length.get();
        if len as usize > RX_BUFFER_BYTES {
            return Err(RxError::TooLong { slot, len });
        }
        let mut data = vec![0u8; len as usize];
        self.bufs.read(slot as usize * RX_BUFFER_BYTES, &mut data);
        self.head = self.head.wrapping_add(1);
        Ok(Some(Received {
            offset: e.offset.get(),
            data,
            fua: e.flags & RX_FUA != 0,
            tag: e.tag,
            frame: e.flags & RX_FRAME != 0,
        }))
    }

    /// Publishes the head (slots released) and the done tail (outcomes written) to the device.
    pub fn doorbells(&self, mmio: &Mmio) {
        DmaMemory::release();
        mmio.write(regs::RX_HEAD_DOORBELL, self.head);
        mmio.write(regs::DONE_TAIL_DOORBELL, self.done_tail);
    }

    /// Hands a write's outcome back (`error` 0 when the data is on the volume, else an errno);
    /// `device_done_head` is how many done entries the device has read. Publish
    /// [`done_tail`](Self::done_tail) to the device afterwards.
    pub fn complete(&mut self, tag: u8, error: u32, device_done_head: u32) -> Result<(), RxError> {
        let pending = self.done_tail.wrapping_sub(device_done_head);
        if pending >= self.entries() {
            return Err(RxError::DoneFull(pending));
        }
        let slot = (self.done_tail & (self.entries() - 1)) as usize;
        let d = DoneEntry {
            tag,
            reserved: [0; 3],
            error: Le32::new(error),
        };
        self.done.write(slot * DONE_ENTRY_LEN, &d.to_bytes());
        DmaMemory::release();
        self.done_tail = self.done_tail.wrapping_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use specmirror_abi::le::Le64;

    fn rings(entries: u32) -> ReceiveRings {
        ReceiveRings::new(entries, |n| {
            DmaMemory::anonymous(n).map_err(DeviceError::Dma)
        })
        .expect("rings")
    }

    /// What a device does: data into the slot's buffer, then the entry with the pass's phase.
    fn hand_over(r: &ReceiveRings, index: u32, offset: u64, data: &[u8], tag: u8, flags: u8) {
        let slot = (index & (r.entries() - 1)) as usize;
        r.bufs.write(slot * RX_BUFFER_BYTES, data);
        let e = RxEntry {
            offset: Le64::new(offset),
            length: Le32::new(data.len() as u32),
            tag,
            flags,
            reserved: 0,
            phase: crate::ring::phase_of(index, r.log2),
        };
        r.rx.write(slot * RX_ENTRY_LEN, &e.to_bytes());
    }

    #[test]
    fn entries_are_taken_by_their_phase_across_passes() {
        let mut r = rings(4);
        assert_eq!(r.poll(), Ok(None));
        for i in 0..10u32 {
            let data = vec![i as u8; 1 + i as usize * 100];
            // Writes, FUA writes and frames by turns: the flags come through as they are.
            let flags = [0, RX_FUA, RX_FRAME][i as usize % 3];
            hand_over(&r, i, 4096 * i as u64, &data, i as u8, flags);
            let got = r.poll().expect("valid").expect("an entry");
            assert_eq!(
                (got.offset, got.tag, got.data, got.fua, got.frame),
                (
                    4096 * i as u64,
                    i as u8,
                    data,
                    flags == RX_FUA,
                    flags == RX_FRAME
                )
            );
            // The slot's old entry (last pass's phase) is not taken again.
            assert_eq!(r.poll(), Ok(None), "after {i}");
        }
        assert_eq!(r.head(), 10);
    }

    #[test]
    fn an_entry_longer_than_a_buffer_is_refused_and_left() {
        let mut r = rings(2);
        hand_over(&r, 0, 0, &[1, 2, 3], 0, 0);
        let mut b = [0u8; RX_ENTRY_LEN];
        r.rx.read(0, &mut b);
        b[8..12].copy_from_slice(&(RX_BUFFER_BYTES as u32 + 1).to_le_bytes());
        r.rx.write(0, &b);
        assert_eq!(
            r.poll(),
            Err(RxError::TooLong {
                slot: 0,
                len: RX_BUFFER_BYTES as u32 + 1
            })
        );
        assert_eq!(r.head(), 0);
    }

    #[test]
    fn the_done_ring_never_overruns_what_the_device_has_read() {
        let mut r = rings(4);
        for t in 0..4 {
            r.complete(t, 0, 0).expect("room");
        }
        assert_eq!(r.complete(4, 0, 0), Err(RxError::DoneFull(4)));
        r.complete(4, 5, 1).expect("the device read one");
        let mut b = [0u8; DONE_ENTRY_LEN];
        r.done.read(0, &mut b);
        assert_eq!(DoneEntry::from_bytes(&b).tag, 4, "slot 0 reused");
        assert_eq!(DoneEntry::from_bytes(&b).error.get(), 5);
        assert_eq!(r.done_tail(), 5);
    }

    #[test]
    fn the_window_leaves_a_data_slot_free_and_fits_the_lock_table() {
        // Four 4 KiB slots (2048 words), 16 entries: three writes.
        assert_eq!(window(2048, 16), Some(3));
        assert_eq!(window(64 * 512, 16), Some(16));
        assert_eq!(window(1 << 20, 1024), Some(255));
        assert_eq!(window(512, 16), None, "one slot: none to spare");
        assert_eq!(window(2048, 0), None);
    }

    #[test]
    fn setup_tells_the_device_where_the_rings_are() {
        let dev = crate::fake::FakeDevice::new();
        let mut r = setup(&dev, 16).expect("setup");
        let m = dev.mmio();
        let reg64 = |lo, hi| (m.read(hi) as u64) << 32 | m.read(lo) as u64;
        let [rx, bufs, done] = r.memories().map(|x| x.bus_addr());
        assert_eq!(reg64(regs::RX_BASE_LO, regs::RX_BASE_HI), rx);
        assert_eq!(reg64(regs::RX_BUF_LO, regs::RX_BUF_HI), bufs);
        assert_eq!(reg64(regs::DONE_BASE_LO, regs::DONE_BASE_HI), done);
        assert_eq!(m.read(regs::RX_LOG2_SIZE), 4);
        assert!(r.memories().iter().all(|x| x.bus_addr() % 4096 == 0));
        r.complete(3, 0, 0).expect("room");
        r.doorbells(m);
        assert_eq!(m.read(regs::DONE_TAIL_DOORBELL), 1);
        assert_eq!(m.read(regs::RX_HEAD_DOORBELL), 0);
    }

    #[test]
    fn sizes_that_are_not_powers_of_two_are_refused() {
        assert!(
            ReceiveRings::new(6, |n| DmaMemory::anonymous(n).map_err(DeviceError::Dma)).is_err()
        );
        assert!(
            ReceiveRings::new(1, |n| DmaMemory::anonymous(n).map_err(DeviceError::Dma)).is_err()
        );
    }
}

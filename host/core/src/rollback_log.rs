//! The rollback log: every write the source has accepted but the target has not yet confirmed,
//! with its lock command, its data and the before-image needed to undo it.
//!
//! The lock command leaves the log when the target grants the lock, the data when the target has
//! written it. One exception keeps a confirmed entry a little longer: an entry retires only once no
//! earlier entry touching the same bytes is still in the log, because rolling that earlier write
//! back needs the later one's bytes to rebuild the right content. Retiring in that order is also
//! what makes a crash-recovery replay of the log, in sequence order, reproduce the volume.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::region::bytes_overlap;

/// What is persisted for one entry. A compensation entry (`before == None`) is not a client write:
/// it carries content that a rollback restored, to make the target match the source again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub seq: u64,
    pub offset: u64,
    pub data: Bytes,
    pub before: Option<Bytes>,
    pub fua: bool,
    /// The lock command is still in the log (not yet granted).
    pub lock_pending: bool,
    /// The data is still in the log (not yet written on the target).
    pub data_pending: bool,
}

impl LogRecord {
    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn is_compensation(&self) -> bool {
        self.before.is_none()
    }

    fn overlaps(&self, offset: u64, len: u64) -> bool {
        bytes_overlap(self.offset, self.len(), offset, len)
    }
}

/// An entry: the persisted record plus what only the running source knows.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub rec: LogRecord,
    /// The client request to answer when the entry retires.
    pub client: Option<u64>,
    /// The local (source volume) write has completed.
    pub local_done: bool,
    /// Kept in the log even once complete: a part of a client write sent as several, which
    /// leaves the log only with all the others (any of them failing rolls all of them back).
    pub held: bool,
}

impl LogEntry {
    /// Confirmed on both sides: only ordering may still hold it in the log.
    pub fn is_complete(&self) -> bool {
        !self.rec.lock_pending && !self.rec.data_pending && self.local_done
    }
}

/// The outcome of rolling one entry back.
#[derive(Debug, PartialEq, Eq)]
pub struct Rollback {
    /// Content to write back to the source volume at `rec.offset`.
    pub restore: Vec<u8>,
    /// Later entries whose before-image (or compensation content) was rewritten.
    pub patched: Vec<u64>,
    /// The removed entry.
    pub removed: LogRecord,
}

#[derive(Default, Debug)]
pub struct RollbackLog {
    entries: BTreeMap<u64, LogEntry>,
    bytes: u64,
}

impl RollbackLog {
    pub fn new() -> RollbackLog {
        RollbackLog::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Data bytes held (what a lasting link cut makes the log grow by).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn get(&self, seq: u64) -> Option<&LogEntry> {
        self.entries.get(&seq)
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut LogEntry> {
        self.entries.get_mut(&seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.values()
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// The lowest sequence number still in the log.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    pub fn insert(&mut self, rec: LogRecord, client: Option<u64>, local_done: bool) {
        assert!(
            self.entries.keys().next_back().is_none_or(|&s| s < rec.seq),
            "rollback log entries are appended in sequence order"
        );
        self.bytes += rec.len();
        self.entries.insert(
            rec.seq,
            LogEntry {
                rec,
                client,
                local_done,
                held: false,
            },
        );
    }

    /// The target granted the lock: the lock command leaves the log. Returns whether it was there.
    pub fn lock_granted(&mut self, seq: u64) -> bool {
        match self.entries.get_mut(&seq) {
            Some(e) if e.rec.lock_pending => {
                e.rec.lock_pending = false;
                true
            }
            _ => false,
        }
    }

    /// The target wrote the data: the data leaves the log (its lock was necessarily held).
    pub fn data_written(&mut self, seq: u64) -> bool {
        match self.entries.get_mut(&seq) {
            Some(e) if e.rec.data_pending => {
                e.rec.lock_pending = false;
                e.rec.data_pending = false;
                true
            }
            _ => false,
        }
    }

    /// A new session replays the entry onto a target that may have lost it (or will have part of
    /// it overwritten by the replay of an earlier entry): its lock and data count as pending again
    /// until the new session confirms them.
    pub fn reopen(&mut self, seq: u64) {
        if let Some(e) = self.entries.get_mut(&seq) {
            e.rec.lock_pending = true;
            e.rec.data_pending = true;
        }
    }

    /// Whether an entry earlier than `seq` touches any of its bytes.
    pub fn has_earlier_overlap(&self, seq: u64) -> bool {
        self.overlaps_before(seq, seq)
    }

    /// Whether an entry earlier than `before` touches any byte of entry `seq`.
    pub fn overlaps_before(&self, seq: u64, before: u64) -> bool {
        let Some(e) = self.entries.get(&seq) else {
            return false;
        };
        self.entries
            .range(..before)
            .any(|(_, x)| x.rec.overlaps(e.rec.offset, e.rec.len()))
    }

    /// Removes and returns, in sequence order, every entry that is complete and has no earlier
    /// overlapping entry left: these can be acknowledged and forgotten.
    pub fn retire_ready(&mut self) -> Vec<LogEntry> {
        let mut out = Vec::new();
        loop {
            let ready: Vec<u64> = self
                .entries
                .iter()
                .filter(|(s, e)| e.is_complete() && !e.held && !self.has_earlier_overlap(**s))
                .map(|(s, _)| *s)
                .collect();
            if ready.is_empty() {
                return out;
            }
            for s in ready {
                let e = self.entries.remove(&s).expect("present");
                self.bytes -= e.rec.len();
                out.push(e);
            }
        }
    }

    /// Bidirectional mode: a peer's write to `[offset, offset + data.len())` lands on this node's
    /// volume while entries of this log are not yet applied on the peer, so the peer's write is
    /// ordered before all of them. The bytes an entry covers keep the entry's data on the volume;
    /// the peer's bytes go into the before-image of the earliest client entry covering them (what
    /// lies under that write is now the peer's data; a compensation's content needs no change).
    ///
    /// Returns the pieces `(offset, len)` that no entry covers, which are to be written, and the
    /// entries whose before-image changed, which are to be persisted again.
    pub fn absorb(&mut self, offset: u64, data: &[u8]) -> (Vec<(u64, u64)>, Vec<u64>) {
        let len = data.len() as u64;
        let mut covered = vec![false; data.len()];
        let mut patched = Vec::new();
        for (s, e) in self.entries.iter_mut() {
            if !e.rec.overlaps(offset, len) {
                continue;
            }
            let lo = offset.max(e.rec.offset);
            let hi = (offset + len).min(e.rec.offset + e.rec.len());
            let mut changed = false;
            let mut before = e.rec.before.take().map(Vec::from);
            for b in lo..hi {
                let i = (b - offset) as usize;
                if covered[i] {
                    continue;
                }
                covered[i] = true;
                if let Some(before) = before.as_mut() {
                    before[(b - e.rec.offset) as usize] = data[i];
                    changed = true;
                }
            }
            e.rec.before = before.map(Bytes::from);
            if changed {
                patched.push(*s);
            }
        }
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < covered.len() {
            if covered[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < covered.len() && !covered[i] {
                i += 1;
            }
            pieces.push((offset + start as u64, (i - start) as u64));
        }
        (pieces, patched)
    }

    /// Rolls entry `seq` back: computes what the source volume must hold over its bytes once the
    /// write is undone (its before-image, overlaid with every later entry still in the log), fixes
    /// the before-images of later overlapping entries so that they too can be undone correctly,
    /// and removes the entry.
    ///
    /// Panics if `seq` is a compensation entry: restored content is never rolled back.
    pub fn rollback(&mut self, seq: u64) -> Option<Rollback> {
        let e = self.entries.remove(&seq)?;
        self.bytes -= e.rec.len();
        let before = e
            .rec
            .before
            .clone()
            .expect("compensation entries are never rolled back");
        let (off, len) = (e.rec.offset, e.rec.len());
        let mut state = Vec::from(before);
        let mut patched = Vec::new();
        for (s, later) in self.entries.range_mut(seq..) {
            if !later.rec.overlaps(off, len) {
                continue;
            }
            let lo = off.max(later.rec.offset);
            let hi = (off + len).min(later.rec.offset + later.rec.len());
            let in_state = (lo - off) as usize..(hi - off) as usize;
            let in_later = (lo - later.rec.offset) as usize..(hi - later.rec.offset) as usize;
            match later.rec.before.as_mut() {
                // A client write: what lay under it is now the undone state.
                Some(b) => patch(b, in_later.start, &state[in_state.clone()]),
                // A compensation: its content is the state itself.
                None => patch(
                    &mut later.rec.data,
                    in_later.start,
                    &state[in_state.clone()],
                ),
            }
            state[in_state].copy_from_slice(&later.rec.data[in_later]);
            patched.push(*s);
        }
        Some(Rollback {
            restore: state,
            patched,
            removed: e.rec,
        })
    }
}

/// Overwrites `b` from byte `at` with `src`, copying `b` first only if it is shared (with an
/// action or a frame that still holds the old bytes).
fn patch(b: &mut Bytes, at: usize, src: &[u8]) {
    let mut v = Vec::from(std::mem::take(b));
    v[at..at + src.len()].copy_from_slice(src);
    *b = v.into();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, offset: u64, data: &[u8], before: &[u8]) -> LogRecord {
        LogRecord {
            seq,
            offset,
            data: Bytes::copy_from_slice(data),
            before: Some(Bytes::copy_from_slice(before)),
            fua: false,
            lock_pending: true,
            data_pending: true,
        }
    }

    /// A tiny model volume: apply writes, take before-images, roll back, and compare.
    struct Model {
        vol: Vec<u8>,
        log: RollbackLog,
        next: u64,
    }

    impl Model {
        fn new(n: usize) -> Model {
            Model {
                vol: vec![0; n],
                log: RollbackLog::new(),
                next: 1,
            }
        }
        fn write(&mut self, off: usize, data: &[u8]) -> u64 {
            let before = self.vol[off..off + data.len()].to_vec();
            self.vol[off..off + data.len()].copy_from_slice(data);
            let s = self.next;
            self.next += 1;
            self.log
                .insert(rec(s, off as u64, data, &before), None, true);
            s
        }
        fn undo(&mut self, seq: u64) {
            let rb = self.log.rollback(seq).unwrap();
            let off = rb.removed.offset as usize;
            self.vol[off..off + rb.restore.len()].copy_from_slice(&rb.restore);
        }
    }

    #[test]
    fn lock_and_data_leave_the_log() {
        let mut log = RollbackLog::new();
        log.insert(rec(1, 0, b"ab", b"00"), Some(7), true);
        assert!(log.lock_granted(1));
        assert!(!log.lock_granted(1));
        assert!(log.get(1).unwrap().rec.data_pending);
        assert!(log.data_written(1));
        let r = log.retire_ready();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].client, Some(7));
        assert!(log.is_empty());
        assert_eq!(log.bytes(), 0);
    }

    #[test]
    fn retires_in_order_of_overlap_only() {
        let mut log = RollbackLog::new();
        log.insert(rec(1, 0, b"aaaa", b"0000"), None, true);
        log.insert(rec(2, 2, b"bb", b"aa"), None, true);
        log.insert(rec(3, 10, b"cc", b"00"), None, true);
        log.data_written(2);
        log.data_written(3);
        let r: Vec<u64> = log.retire_ready().iter().map(|e| e.rec.seq).collect();
        assert_eq!(r, vec![3], "2 must wait for 1, 3 touches other bytes");
        log.data_written(1);
        let r: Vec<u64> = log.retire_ready().iter().map(|e| e.rec.seq).collect();
        assert_eq!(r, vec![1, 2]);
    }

    #[test]
    fn rollback_keeps_later_writes_and_restores_the_rest() {
        let mut m = Model::new(8);
        m.write(0, b"AAAA");
        let s = m.write(2, b"BBBB");
        m.write(4, b"CC");
        assert_eq!(&m.vol, b"AABBCC\0\0");
        m.undo(s);
        assert_eq!(&m.vol, b"AAAACC\0\0", "A shows again under B, C stays");
    }

    #[test]
    fn rolling_back_out_of_order_matches_never_having_written() {
        // Exhaustive over small schedules: any subset rolled back in any order equals replaying
        // only the survivors.
        let writes: [(usize, &[u8]); 4] = [(0, b"aaaa"), (2, b"bbbb"), (1, b"cc"), (3, b"ddd")];
        let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]];
        for mask in 0u32..16 {
            for order in orders {
                let mut m = Model::new(8);
                let seqs: Vec<u64> = writes.iter().map(|(o, d)| m.write(*o, d)).collect();
                for &i in &order {
                    if mask & (1 << i) != 0 {
                        m.undo(seqs[i]);
                    }
                }
                let mut expect = vec![0u8; 8];
                for (i, (o, d)) in writes.iter().enumerate() {
                    if mask & (1 << i) == 0 {
                        expect[*o..*o + d.len()].copy_from_slice(d);
                    }
                }
                assert_eq!(m.vol, expect, "mask {mask:04b} order {order:?}");
            }
        }
    }

    #[test]
    fn records_shared_with_actions_are_copied_before_they_change() {
        let mut log = RollbackLog::new();
        let (one, two) = (
            rec(1, 0, &[1; 4], &[0; 4]),
            rec(2, 2, &[2; 4], &[1, 1, 0, 0]),
        );
        // The records as their LogAppend actions carry them, sharing the entries' bytes.
        let (sent_one, sent_two) = (one.clone(), two.clone());
        log.insert(one, None, true);
        log.insert(two, None, true);
        log.absorb(4, &[9; 4]);
        log.rollback(1).unwrap();
        assert_eq!(
            log.get(2).unwrap().rec.before,
            Some(vec![0, 0, 9, 9].into())
        );
        assert_eq!(
            sent_two.before,
            Some(vec![1, 1, 0, 0].into()),
            "the action's copy changed"
        );
        assert_eq!(sent_one.before, Some(vec![0; 4].into()));
        assert_eq!(&sent_one.data[..], &[1; 4]);
    }

    #[test]
    fn absorb_masks_logged_bytes_and_feeds_the_earliest_before_image() {
        let mut log = RollbackLog::new();
        // Volume bytes 0..16 were 0; entry 1 wrote 4..8 with 1s, entry 2 wrote 6..10 with 2s.
        log.insert(rec(1, 4, &[1; 4], &[0; 4]), Some(1), true);
        log.insert(rec(2, 6, &[2; 4], &[1, 1, 0, 0]), Some(2), true);
        // A peer write of 9s over 2..12 is ordered before both.
        let (pieces, patched) = log.absorb(2, &[9; 10]);
        assert_eq!(pieces, vec![(2, 2), (10, 2)]);
        assert_eq!(patched, vec![1, 2]);
        assert_eq!(log.get(1).unwrap().rec.before, Some(vec![9; 4].into()));
        // Bytes 6..8 belong to entry 1's before-image; entry 2 takes only 8..10.
        assert_eq!(
            log.get(2).unwrap().rec.before,
            Some(vec![1, 1, 9, 9].into())
        );
        // Undoing both now leaves the peer's write, as if they had come after it.
        let rb2 = log.rollback(2).unwrap();
        assert_eq!(rb2.restore, vec![1, 1, 9, 9]);
        let rb1 = log.rollback(1).unwrap();
        assert_eq!(rb1.restore, vec![9; 4]);
    }

    #[test]
    fn absorb_outside_the_log_writes_everything() {
        let mut log = RollbackLog::new();
        log.insert(rec(1, 100, &[1; 4], &[0; 4]), Some(1), true);
        let (pieces, patched) = log.absorb(0, &[7; 8]);
        assert_eq!(pieces, vec![(0, 8)]);
        assert!(patched.is_empty());
    }

    #[test]
    fn compensation_content_tracks_later_rollbacks() {
        let mut m = Model::new(6);
        let a = m.write(0, b"aaaa");
        let b = m.write(2, b"bbbb");
        // a fails: its compensation is appended with the restored content.
        let rb = m.log.rollback(a).unwrap();
        m.vol[0..4].copy_from_slice(&rb.restore);
        assert_eq!(&rb.restore, b"\0\0bb");
        let c = m.next;
        m.next += 1;
        m.log.insert(
            LogRecord {
                seq: c,
                offset: 0,
                data: rb.restore.clone().into(),
                before: None,
                fua: false,
                lock_pending: true,
                data_pending: true,
            },
            None,
            true,
        );
        // b fails too: the compensation must no longer carry b's bytes.
        m.undo(b);
        assert_eq!(&m.vol, b"\0\0\0\0\0\0");
        assert_eq!(m.log.get(c).unwrap().rec.data, vec![0; 4]);
    }
}

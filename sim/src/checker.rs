//! The invariant checker. It keeps its own books, fed only by what the world observes (locks the
//! target reports taking, bytes that land on each volume, answers the client gets), never by
//! asking the cores about their state:
//! 1. the target never writes data for a region whose lock that write does not hold;
//! 2. every write acknowledged to a client is on both volumes (at its acknowledgement, and at the
//!    end, across crashes), and no failed write's bytes survive;
//! 3. (in the world) at quiescence the two volumes are byte-identical;
//! 4. per region, writes land on the target in source order.

use std::collections::BTreeMap;

use specmirror_core::{Nanos, Regions};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    Pending,
    Ok,
    Failed(i32),
    /// The source crashed before answering: either outcome is allowed.
    Unknown,
}

#[derive(Debug)]
struct WriteOp {
    offset: u64,
    data: Vec<u8>,
    state: OpState,
    submitted: Nanos,
}

impl WriteOp {
    fn covers(&self, b: u64) -> bool {
        b >= self.offset && b < self.offset + self.data.len() as u64
    }
    fn byte(&self, b: u64) -> u8 {
        self.data[(b - self.offset) as usize]
    }
}

#[derive(Debug)]
pub struct Checker {
    region_size: u64,
    volume_size: u64,
    writes: BTreeMap<u64, WriteOp>,
    flushes: BTreeMap<u64, OpState>,
    locks: BTreeMap<u64, Regions>,
    local: BTreeMap<u64, Regions>,
    last_applied: BTreeMap<u64, u64>,
    pub latencies: Vec<Nanos>,
}

impl Checker {
    pub fn new(volume_size: u64, region_size: u64) -> Checker {
        Checker {
            region_size,
            volume_size,
            writes: BTreeMap::new(),
            flushes: BTreeMap::new(),
            locks: BTreeMap::new(),
            local: BTreeMap::new(),
            last_applied: BTreeMap::new(),
            latencies: Vec::new(),
        }
    }

    pub fn pending(&self) -> usize {
        self.writes
            .values()
            .filter(|w| w.state.is_pending())
            .count()
            + self.flushes.values().filter(|s| s.is_pending()).count()
    }

    pub fn counts(&self) -> (u64, u64, u64) {
        let mut c = (0, 0, 0);
        for w in self.writes.values() {
            match w.state {
                OpState::Ok => c.0 += 1,
                OpState::Failed(_) => c.1 += 1,
                OpState::Unknown => c.2 += 1,
                OpState::Pending => {}
            }
        }
        c
    }

    pub fn submit_write(&mut self, handle: u64, offset: u64, data: Vec<u8>, now: Nanos) {
        self.writes.insert(
            handle,
            WriteOp {
                offset,
                data,
                state: OpState::Pending,
                submitted: now,
            },
        );
    }

    pub fn submit_flush(&mut self, handle: u64, _now: Nanos) {
        self.flushes.insert(handle, OpState::Pending);
    }

    pub fn flush_answered(&mut self, handle: u64, result: Result<(), i32>) {
        if let Some(s) = self.flushes.get_mut(&handle) {
            *s = match result {
                Ok(()) => OpState::Ok,
                Err(e) => OpState::Failed(e),
            };
        }
    }

    /// A write was answered. An acknowledged write must be on both volumes now, unless a later
    /// write already covers the byte.
    pub fn write_answered(
        &mut self,
        handle: u64,
        result: Result<(), i32>,
        now: Nanos,
        src: &[u8],
        tgt: &[u8],
    ) -> Vec<String> {
        let mut out = Vec::new();
        let Some(w) = self.writes.get(&handle) else {
            return vec![format!("answer for unknown client request h{handle}")];
        };
        if !w.state.is_pending() {
            return vec![format!("client request h{handle} answered twice")];
        }
        if result.is_ok() {
            let end = w.offset + w.data.len() as u64;
            // The later writes that overlap this one, gathered once at the first byte that
            // differs: only they can explain a byte that is not this write's.
            let mut later: Option<Vec<&WriteOp>> = None;
            for (name, vol) in [("source", src), ("target", tgt)] {
                if vol[w.offset as usize..end as usize] == w.data[..] {
                    continue;
                }
                for b in w.offset..end {
                    let v = vol[b as usize];
                    if v == w.byte(b) {
                        continue;
                    }
                    let overlapping = later.get_or_insert_with(|| {
                        self.writes
                            .range(handle + 1..)
                            .map(|(_, x)| x)
                            .filter(|x| x.offset < end && x.offset + x.data.len() as u64 > w.offset)
                            .collect()
                    });
                    let explained = overlapping.iter().any(|x| x.covers(b) && x.byte(b) == v);
                    if !explained {
                        out.push(format!(
                            "write h{handle} acknowledged but byte {b} on the {name} is {v:#04x}, not {:#04x}",
                            w.byte(b)
                        ));
                        break;
                    }
                }
            }
            self.latencies.push(now - w.submitted);
        }
        let w = self.writes.get_mut(&handle).expect("present");
        w.state = match result {
            Ok(()) => OpState::Ok,
            Err(e) => OpState::Failed(e),
        };
        out
    }

    /// End-state check of one volume: each byte holds the last acknowledged write's value or a
    /// later write's that did not fail; where no write was acknowledged, the initial zero or a
    /// write that did not fail.
    pub fn final_check(&self, vol: &[u8], name: &str) -> Vec<String> {
        // Per byte: the last acknowledged write's handle (0 for none) and the value it wrote.
        let mut last_ok = vec![(0u64, 0u8); self.volume_size as usize];
        for (h, w) in &self.writes {
            if w.state == OpState::Ok {
                let o = w.offset as usize;
                for (slot, &d) in last_ok[o..o + w.data.len()].iter_mut().zip(&w.data) {
                    *slot = (*h, d);
                }
            }
        }
        let mut out = Vec::new();
        for (b, &v) in vol.iter().enumerate() {
            let (a, want) = last_ok[b];
            let b = b as u64;
            if a != 0 && want == v {
                continue;
            }
            if a == 0 && v == 0 {
                continue;
            }
            let ok = self.writes.range(a + 1..).any(|(_, x)| {
                !matches!(x.state, OpState::Failed(_)) && x.covers(b) && x.byte(b) == v
            });
            if !ok {
                out.push(if a == 0 {
                    format!("{name} byte {b} is {v:#04x}: no write that succeeded or may have put it there")
                } else {
                    format!(
                        "{name} byte {b} is {v:#04x}, but write h{a} was acknowledged with {want:#04x} and no later surviving write explains it"
                    )
                });
                if out.len() >= 3 {
                    break;
                }
            }
        }
        out
    }

    pub fn source_crashed(&mut self) {
        for w in self.writes.values_mut() {
            if w.state.is_pending() {
                w.state = OpState::Unknown;
            }
        }
        for s in self.flushes.values_mut() {
            if s.is_pending() {
                *s = OpState::Unknown;
            }
        }
    }

    pub fn target_crashed(&mut self) {
        self.locks.clear();
        self.local.clear();
        self.last_applied.clear();
    }

    pub fn target_session(&mut self) {
        self.last_applied.clear();
    }

    pub fn lock_acquired(&mut self, token: u64, r: Regions) -> Result<(), String> {
        let clash = self
            .locks
            .iter()
            .find(|(_, x)| x.overlaps(r))
            .map(|(t, _)| format!("mirror lock {t}"))
            .or_else(|| {
                self.local
                    .iter()
                    .find(|(_, x)| x.overlaps(r))
                    .map(|(i, _)| format!("local holder {i}"))
            });
        self.locks.insert(token, r);
        match clash {
            Some(c) => Err(format!(
                "lock {token} on regions {}+{} granted while {c} holds an overlapping region",
                r.first, r.count
            )),
            None => Ok(()),
        }
    }

    pub fn lock_released(&mut self, token: u64) {
        self.locks.remove(&token);
    }

    pub fn local_acquire(&mut self, id: u64, r: Regions) -> Result<(), String> {
        let clash = self
            .locks
            .iter()
            .find(|(_, x)| x.overlaps(r))
            .map(|(t, _)| *t);
        self.local.insert(id, r);
        match clash {
            Some(t) => Err(format!(
                "local holder {id} admitted to regions {}+{} held by mirror lock {t}",
                r.first, r.count
            )),
            None => Ok(()),
        }
    }

    pub fn local_release(&mut self, id: u64) {
        self.local.remove(&id);
    }

    /// The target asks to write: its lock must be held and cover the bytes.
    pub fn target_write(&mut self, token: u64, seq: u64, offset: u64, len: u64) -> Vec<String> {
        let need = Regions::of_bytes(offset, len.max(1), self.region_size);
        match self.locks.get(&token) {
            None => vec![format!(
                "target writes seq {seq} (regions {}+{}) without holding its lock",
                need.first, need.count
            )],
            Some(r) if !r.contains(need) => vec![format!(
                "target writes seq {seq} to regions {}+{} outside its lock {}+{}",
                need.first, need.count, r.first, r.count
            )],
            Some(_) => Vec::new(),
        }
    }

    /// Bytes of write `seq` landed on the target: per region, sequence order must hold.
    pub fn target_applied(&mut self, seq: u64, offset: u64, len: u64) -> Vec<String> {
        let r = Regions::of_bytes(offset, len.max(1), self.region_size);
        let mut out = Vec::new();
        for region in r.first..r.end() {
            let last = self.last_applied.entry(region).or_insert(0);
            if *last > seq {
                out.push(format!(
                    "seq {seq} landed on target region {region} after the newer seq {last}"
                ));
            }
            *last = (*last).max(seq);
        }
        out
    }
}

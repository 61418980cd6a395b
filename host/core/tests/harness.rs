//! A hand-stepped source/target pair for behaviour tests: frames sit in queues until a test
//! delivers them, and volume writes complete only when a test says so.

#![allow(dead_code)]

use std::collections::VecDeque;

use specmirror_abi::ring::Mode;
use specmirror_abi::FrameType;
use specmirror_core::rollback_log::LogRecord;
use specmirror_core::source::{Source, SourceAction, SourceConfig, SourceEvent};
use specmirror_core::target::{Target, TargetAction, TargetConfig, TargetEvent};
use specmirror_core::{Frame, Nanos, US};

pub const VOL: u64 = 64 << 10;
pub const REGION: u64 = 4096;
pub const PAIR: [u8; 16] = *b"pair-under-test!";

pub struct Pair {
    pub src: Source,
    pub tgt: Target,
    pub now: Nanos,
    pub to_tgt: VecDeque<Frame>,
    pub to_src: VecDeque<Frame>,
    pub src_vol: Vec<u8>,
    pub tgt_vol: Vec<u8>,
    /// Every source action, in order.
    pub src_log: Vec<SourceAction>,
    /// Every target action, in order.
    pub tgt_log: Vec<TargetAction>,
    /// Target volume writes issued but not yet completed: (token, seq).
    pub tgt_inflight: Vec<(u64, u64)>,
    /// Local writes issued but not completed.
    pub local_inflight: Vec<u64>,
    pub acks: Vec<(u64, Result<(), i32>)>,
    pub persisted: std::collections::BTreeMap<u64, LogRecord>,
}

pub fn source_config(mode: Mode) -> SourceConfig {
    let mut c = SourceConfig::new(VOL, REGION, PAIR);
    c.mode = mode;
    c.rto = 1_000 * US;
    c.retry_initial = 100 * US;
    c.retry_max = 400 * US;
    c.write_timeout = 50_000 * US;
    c.heartbeat_interval = 1_000_000 * US;
    c
}

pub fn target_config() -> TargetConfig {
    let mut c = TargetConfig::new(VOL, REGION, PAIR);
    c.retry_initial = 10 * US;
    c.retry_max = 80 * US;
    c.retry_budget = 1_000 * US;
    c.data_buffer = 32 << 10;
    c
}

impl Pair {
    pub fn new(mode: Mode) -> Pair {
        Pair::with(source_config(mode), target_config())
    }

    pub fn with(sc: SourceConfig, tc: TargetConfig) -> Pair {
        let mut p = Pair {
            src: Source::new(sc, 0),
            tgt: Target::new(tc),
            now: 0,
            to_tgt: VecDeque::new(),
            to_src: VecDeque::new(),
            src_vol: vec![0; VOL as usize],
            tgt_vol: vec![0; VOL as usize],
            src_log: Vec::new(),
            tgt_log: Vec::new(),
            tgt_inflight: Vec::new(),
            local_inflight: Vec::new(),
            acks: Vec::new(),
            persisted: Default::default(),
        };
        p.src_event(SourceEvent::Connected);
        p.deliver_all();
        assert!(p.src.is_up(), "handshake completes");
        p.src_log.clear();
        p.tgt_log.clear();
        p
    }

    pub fn src_event(&mut self, ev: SourceEvent) -> Vec<SourceAction> {
        let a = self.src.handle(ev, self.now);
        self.apply_src(a.clone());
        a
    }

    pub fn tgt_event(&mut self, ev: TargetEvent) -> Vec<TargetAction> {
        let a = self.tgt.handle(ev, self.now);
        self.apply_tgt(a.clone());
        a
    }

    pub fn apply_src(&mut self, actions: Vec<SourceAction>) {
        for a in actions {
            match &a {
                SourceAction::Send(f) => self.to_tgt.push_back(f.clone()),
                SourceAction::WriteLocal {
                    seq, offset, data, ..
                } => {
                    let o = *offset as usize;
                    self.src_vol[o..o + data.len()].copy_from_slice(data);
                    if let Some(s) = seq {
                        self.local_inflight.push(*s);
                    }
                }
                SourceAction::AckWrite { handle, result } => self.acks.push((*handle, *result)),
                SourceAction::LogAppend(r) | SourceAction::LogUpdate(r) => {
                    self.persisted.insert(r.seq, r.clone());
                }
                SourceAction::LogRemove { seq } => {
                    self.persisted.remove(seq);
                }
                _ => {}
            }
            self.src_log.push(a);
        }
    }

    pub fn apply_tgt(&mut self, actions: Vec<TargetAction>) {
        for a in actions {
            match &a {
                TargetAction::Send(f) => self.to_src.push_back(f.clone()),
                TargetAction::WriteVolume {
                    token,
                    seq,
                    offset,
                    data,
                    ..
                } => {
                    let o = *offset as usize;
                    self.tgt_vol[o..o + data.len()].copy_from_slice(data);
                    self.tgt_inflight.push((*token, *seq));
                }
                _ => {}
            }
            self.tgt_log.push(a);
        }
    }

    /// A client write of `len` bytes of `fill` at `offset`.
    pub fn write(&mut self, handle: u64, offset: u64, len: usize, fill: u8) -> Vec<SourceAction> {
        let o = offset as usize;
        let before = self.src_vol[o..o + len].to_vec();
        self.src_event(SourceEvent::ClientWrite {
            handle,
            offset,
            data: vec![fill; len],
            before,
            fua: false,
        })
    }

    /// Delivers queued frames both ways until none are left.
    pub fn deliver_all(&mut self) {
        while !self.to_tgt.is_empty() || !self.to_src.is_empty() {
            self.deliver_to_target();
            self.deliver_to_source();
        }
    }

    pub fn deliver_to_target(&mut self) -> usize {
        let n = self.to_tgt.len();
        while let Some(f) = self.to_tgt.pop_front() {
            self.tgt_event(TargetEvent::Frame(f));
        }
        n
    }

    pub fn deliver_to_source(&mut self) -> usize {
        let n = self.to_src.len();
        while let Some(f) = self.to_src.pop_front() {
            self.src_event(SourceEvent::Frame(f));
        }
        n
    }

    /// Completes every target volume write.
    pub fn complete_target_writes(&mut self) {
        for (token, _) in std::mem::take(&mut self.tgt_inflight) {
            self.tgt_event(TargetEvent::VolumeWriteDone {
                token,
                result: Ok(()),
            });
        }
    }

    pub fn complete_local_writes(&mut self) {
        for seq in std::mem::take(&mut self.local_inflight) {
            self.src_event(SourceEvent::LocalWriteDone {
                seq,
                result: Ok(()),
            });
        }
    }

    /// The token of the volume sync the target asked for last.
    pub fn target_sync_token(&self) -> u64 {
        self.tgt_log
            .iter()
            .rev()
            .find_map(|a| match a {
                TargetAction::SyncVolume { token } => Some(*token),
                _ => None,
            })
            .expect("target syncs its volume")
    }

    /// Runs everything to completion (no faults).
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            self.deliver_all();
            self.complete_local_writes();
            self.complete_target_writes();
            if self.to_tgt.is_empty()
                && self.to_src.is_empty()
                && self.tgt_inflight.is_empty()
                && self.local_inflight.is_empty()
            {
                return;
            }
        }
        panic!("pair does not settle");
    }

    /// Advances time to `t` and fires both timers as often as they are due.
    pub fn advance_to(&mut self, t: Nanos) {
        loop {
            let next = [self.src.poll_timeout(), self.tgt.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&x| x <= t)
                .min();
            let Some(n) = next else { break };
            self.now = self.now.max(n);
            let a = self.src.handle_timeout(self.now);
            self.apply_src(a);
            let a = self.tgt.handle_timeout(self.now);
            self.apply_tgt(a);
        }
        self.now = t;
    }

    pub fn sent_types(actions: &[SourceAction]) -> Vec<FrameType> {
        actions
            .iter()
            .filter_map(|a| match a {
                SourceAction::Send(f) => Some(f.ty()),
                _ => None,
            })
            .collect()
    }

    pub fn target_sent(&self, ty: FrameType) -> Vec<Frame> {
        self.tgt_log
            .iter()
            .filter_map(|a| match a {
                TargetAction::Send(f) if f.ty() == ty => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn target_written_seqs(&self) -> Vec<u64> {
        self.tgt_log
            .iter()
            .filter_map(|a| match a {
                TargetAction::WriteVolume { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }
}

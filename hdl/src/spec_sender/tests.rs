//! The send path against the golden vectors and the timing the design promises.

use rust_hdl::prelude::*;
use specmirror_abi::golden::{from_hex, Case, CASES};
use specmirror_abi::ring::Mode;

use super::SpecSender;
use crate::bench::{cycle, settle, Rng};

fn clock(u: &mut SpecSender) -> &mut Signal<In, Clock> {
    &mut u.clock
}

pub(crate) fn new_sender() -> SpecSender {
    let mut u = super::tests_support::connected();
    u.connect_all();
    u
}

/// What one run produced: each accepted word with the cycle it left on, and `last` flags.
pub(crate) struct Run {
    pub words: Vec<(u64, u64, bool)>,
}

impl Run {
    pub fn bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.1.to_le_bytes()).collect()
    }
}

/// Drives one case. `stall(cycle)` says when the transmit side is not ready and when data is
/// late; `grant_at` is when LOCK_GRANTED arrives (conservative mode).
pub(crate) fn drive(c: &Case, stall: impl Fn(u64) -> (bool, bool), grant_at: u64) -> Run {
    let mut u = new_sender();
    let data = c.payload();
    let words: Vec<u64> = data
        .chunks(8)
        .map(|ch| {
            let mut w = [0u8; 8];
            w[..ch.len()].copy_from_slice(ch);
            // Garbage beyond the write's end: the sender must zero it.
            for b in w.iter_mut().skip(ch.len()) {
                *b = 0xa5;
            }
            u64::from_le_bytes(w)
        })
        .collect();
    u.desc_valid.next = true;
    u.desc_seq.next = c.seq.to_bits();
    u.desc_lock_id.next = c.lock_id.to_bits();
    u.desc_offset.next = c.offset.to_bits();
    u.desc_length.next = (c.length as u64).to_bits();
    u.desc_mode.next = (c.mode as u64).to_bits();
    u.desc_flags.next = (c.flags as u64).to_bits();
    u.desc_generation.next = (c.generation as u64).to_bits();
    u.desc_first_region.next = c.first_region().to_bits();
    u.desc_region_count.next = c.region_count().to_bits();
    u.ack_lock.next = c.ack_lock.to_bits();
    u.ack_seq.next = c.ack_seq.to_bits();
    let mut out = Vec::new();
    let mut next_word = 0usize;
    let mut frames_done = 0;
    let frames = if c.mode == Mode::Implicit { 1 } else { 2 };
    for t in 0..10_000u64 {
        let (tx_stall, data_late) = stall(t);
        u.tx_ready.next = !tx_stall;
        u.data_valid.next = !data_late && next_word < words.len();
        u.data_in.next = words.get(next_word).copied().unwrap_or(0).to_bits();
        u.granted.next = t >= grant_at;
        settle(&mut u);
        if u.desc_ready.val() && u.desc_valid.val() && t > 0 {
            // Accepted on this edge; offer nothing more.
        }
        let accepted_desc = u.desc_ready.val() && u.desc_valid.val();
        if u.tx_valid.val() && u.tx_ready.val() {
            out.push((t, u.tx_data.val().to_u64(), u.tx_last.val()));
            if u.tx_last.val() {
                frames_done += 1;
            }
        }
        if u.data_ready.val() && u.data_valid.val() {
            next_word += 1;
        }
        cycle(&mut u, clock);
        if accepted_desc {
            u.desc_valid.next = false;
        }
        if frames_done == frames {
            return Run { words: out };
        }
    }
    panic!("{}: the sender did not finish", c.name);
}

fn golden(c: &Case) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host/abi/golden")
        .join(c.file_name());
    from_hex(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

#[test]
fn emits_the_golden_frames_byte_for_byte() {
    for c in CASES {
        let run = drive(c, |_| (false, false), 0);
        assert_eq!(run.bytes(), golden(c), "{}", c.name);
        assert_eq!(run.bytes(), c.frames(), "{}: software encoder", c.name);
    }
}

#[test]
fn the_same_bytes_under_back_pressure_and_late_data() {
    for c in CASES {
        let mut r = Rng(0x1234_5678u64 ^ c.seq);
        let pattern: Vec<(bool, bool)> = (0..10_000)
            .map(|_| {
                let x = r.next_u64();
                (x.is_multiple_of(3), x.is_multiple_of(5))
            })
            .collect();
        let run = drive(c, |t| pattern[t as usize], 0);
        assert_eq!(run.bytes(), golden(c), "{} with stalls", c.name);
    }
}

#[test]
fn data_follows_lock_with_no_idle_cycle_and_one_word_per_clock() {
    let c = CASES
        .iter()
        .find(|c| c.name == "speculative_words")
        .unwrap();
    let run = drive(c, |_| (false, false), 0);
    let lock_end = run.words.iter().position(|w| w.2).unwrap();
    let (t_last, _, _) = run.words[lock_end];
    let (t_next, _, _) = run.words[lock_end + 1];
    assert_eq!(
        t_next - t_last,
        1,
        "DATA starts the clock after the LOCK trailer"
    );
    for w in run.words.windows(2) {
        assert_eq!(w[1].0 - w[0].0, 1, "a word every clock");
    }
}

#[test]
fn conservative_mode_holds_data_until_the_grant() {
    let c = CASES.iter().find(|c| c.mode == Mode::Conservative).unwrap();
    let run = drive(c, |_| (false, false), 50);
    let lock_end = run.words.iter().position(|w| w.2).unwrap();
    let first_data = run.words[lock_end + 1].0;
    assert!(
        first_data > 50,
        "DATA left at cycle {first_data}, before the grant"
    );
    assert_eq!(run.bytes(), golden(c));
}

#[test]
fn a_rejection_while_waiting_for_the_grant_halts_the_data() {
    let c = CASES.iter().find(|c| c.mode == Mode::Conservative).unwrap();
    let mut u = new_sender();
    u.desc_valid.next = true;
    u.desc_seq.next = c.seq.to_bits();
    u.desc_lock_id.next = c.lock_id.to_bits();
    u.desc_length.next = (c.length as u64).to_bits();
    u.desc_mode.next = (c.mode as u64).to_bits();
    u.desc_first_region.next = c.first_region().to_bits();
    u.desc_region_count.next = c.region_count().to_bits();
    u.tx_ready.next = true;
    u.data_valid.next = true;
    let (mut frames, mut data_taken, mut ready_again) = (0, 0, None);
    for t in 0..200u64 {
        u.rejected.next = t == 40;
        settle(&mut u);
        if u.desc_ready.val() && u.desc_valid.val() && t > 0 {
            ready_again.get_or_insert(t);
        }
        if t < 100 {
            frames += (u.tx_valid.val() && u.tx_last.val()) as usize;
            data_taken += u.data_ready.val() as usize;
        }
        let took = u.desc_ready.val() && u.desc_valid.val();
        cycle(&mut u, clock);
        if took && t == 0 {
            u.desc_valid.next = false;
        }
        if t == 100 {
            // The next descriptor, offered from clock 101, is taken at once: the sender is idle.
            u.desc_valid.next = true;
        }
    }
    assert_eq!(frames, 1, "the LOCK frame only");
    assert_eq!(
        data_taken as u64,
        (c.length as u64).div_ceil(8),
        "the data words read and dropped"
    );
    assert_eq!(ready_again, Some(101), "idle again after the rejection");
}

/// Sends `frame` as a raw descriptor tagged `tag`, under the given stalls: the words that left
/// (cycle, word, last) and the cycles `raw_done` pulsed with its tag.
fn drive_raw(frame: &[u8], tag: u64, stall: impl Fn(u64) -> (bool, bool)) -> (Run, Vec<u64>) {
    let mut u = new_sender();
    let words: Vec<u64> = frame
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("whole words")))
        .collect();
    u.desc_valid.next = true;
    u.desc_seq.next = tag.to_bits();
    u.desc_length.next = (frame.len() as u64).to_bits();
    u.desc_mode.next = (Mode::Raw as u64).to_bits();
    let (mut out, mut done, mut next_word) = (Vec::new(), Vec::new(), 0usize);
    for t in 0..10_000u64 {
        let (tx_stall, data_late) = stall(t);
        u.tx_ready.next = !tx_stall;
        u.data_valid.next = !data_late && next_word < words.len();
        u.data_in.next = words.get(next_word).copied().unwrap_or(0).to_bits();
        settle(&mut u);
        let accepted = u.desc_ready.val() && u.desc_valid.val();
        if u.tx_valid.val() && u.tx_ready.val() {
            out.push((t, u.tx_data.val().to_u64(), u.tx_last.val()));
        }
        if u.raw_done.val() {
            assert_eq!(u.raw_seq.val().to_u64(), tag, "the tag with raw_done");
            done.push(t);
        }
        if u.data_ready.val() && u.data_valid.val() {
            next_word += 1;
        }
        cycle(&mut u, clock);
        if accepted {
            u.desc_valid.next = false;
        }
        if t > 20 && !done.is_empty() && t > done[0] + 20 {
            return (Run { words: out }, done);
        }
    }
    panic!("the raw frame did not finish");
}

#[test]
fn a_raw_descriptor_s_frame_leaves_as_it_is_and_reports_its_tag() {
    for c in CASES {
        // Each of the case's frames, made by the software encoder, sent as the host would.
        let bytes = c.frames();
        let mut at = 0;
        while at < bytes.len() {
            let (_, _, n) = specmirror_abi::decode(&bytes[at..]).expect("a golden frame");
            let frame = &bytes[at..at + n];
            at += n;
            let mut r = Rng(0x5eed ^ c.seq ^ n as u64);
            let pattern: Vec<(bool, bool)> = (0..10_000)
                .map(|_| {
                    let x = r.next_u64();
                    (x.is_multiple_of(3), x.is_multiple_of(5))
                })
                .collect();
            for stalls in [false, true] {
                let (run, done) = drive_raw(frame, 0x7a6 + at as u64, |t| {
                    if stalls {
                        pattern[t as usize]
                    } else {
                        (false, false)
                    }
                });
                assert_eq!(run.bytes(), frame, "{}: the frame as it is", c.name);
                let lasts: Vec<usize> = (0..run.words.len()).filter(|&k| run.words[k].2).collect();
                assert_eq!(
                    lasts,
                    [run.words.len() - 1],
                    "{}: `last` once, at the end",
                    c.name
                );
                assert_eq!(
                    done,
                    [run.words.last().unwrap().0],
                    "{}: raw_done once, as the last word leaves",
                    c.name
                );
            }
        }
    }
}

#[test]
fn an_empty_raw_descriptor_sends_nothing_and_is_done_at_once() {
    let (run, done) = drive_raw(&[], 9, |_| (false, false));
    assert!(run.words.is_empty(), "no word on the wire");
    assert_eq!(done, [0], "done in the clock it is taken");
}

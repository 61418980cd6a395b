//! The FIFO under random frames, gaps and reader stalls: the frames that leave are whole, byte
//! for byte the ones that came, in their order; what is missing is counted as dropped; with a
//! reader that keeps up, nothing that fits is dropped.

use rust_hdl::prelude::*;

use super::{FrameFifo, DEPTH, MAX_WORDS};
use crate::bench::{cycle, settle, Rng};

fn clock(u: &mut FrameFifo) -> &mut Signal<In, Clock> {
    &mut u.clock
}

fn fifo() -> FrameFifo {
    let mut u = super::tests_support::connected();
    u.connect_all();
    u
}

struct Run {
    sent: Vec<Vec<u64>>,
    got: Vec<Vec<u64>>,
    drops: u64,
}

/// `n` frames of 1 to `longest` words (tagged: each word names its frame and place), a gap of
/// none to `gap` clocks between frames, the reader ready `ready_percent` of clocks (while
/// `stalled(clock)` is false), then a drain.
fn run(
    seed: u64,
    n: usize,
    longest: u64,
    gap: u64,
    ready_percent: u64,
    stalled: impl Fn(u64) -> bool,
) -> Run {
    let mut r = Rng(seed);
    let sent: Vec<Vec<u64>> = (0..n as u64)
        .map(|f| {
            let len = 1 + r.below(longest);
            (0..len).map(|k| f << 32 | k << 16 | len).collect()
        })
        .collect();
    let mut u = fifo();
    let (mut frame, mut word, mut wait) = (0usize, 0usize, 0u64);
    let (mut got, mut cur) = (Vec::new(), Vec::new());
    let mut len_at_start = None;
    for t in 0..(n as u64 * (longest + gap + 2) * 4 + 10_000) {
        u.in_valid.next = false;
        u.in_last.next = false;
        if frame < n && wait == 0 {
            u.in_valid.next = true;
            u.in_data.next = sent[frame][word].to_bits();
            u.in_last.next = word + 1 == sent[frame].len();
        }
        u.out_ready.next = !stalled(t) && r.below(100) < ready_percent;
        settle(&mut u);
        if u.out_valid.val() && u.out_ready.val() {
            let len = u.out_len.val().to_u64();
            // The length is the frame's, and steady while it lasts.
            assert_eq!(*len_at_start.get_or_insert(len), len, "out_len moved");
            cur.push(u.out_data.val().to_u64());
            if u.out_last.val() {
                assert_eq!(len, 8 * cur.len() as u64, "out_len against the words");
                got.push(std::mem::take(&mut cur));
                len_at_start = None;
            }
        }
        cycle(&mut u, clock);
        if wait > 0 {
            wait -= 1;
        } else if frame < n {
            word += 1;
            if word == sent[frame].len() {
                frame += 1;
                word = 0;
                wait = r.below(gap + 1);
            }
        }
    }
    assert!(cur.is_empty(), "a frame left part way");
    settle(&mut u);
    assert!(!u.out_valid.val(), "drained");
    Run {
        sent,
        got,
        drops: u.drops.val().to_u64(),
    }
}

/// The frames that left are whole, in order, each one that came; the rest are counted.
fn holds(run: &Run, what: &str) {
    let mut k = 0;
    for g in &run.got {
        while k < run.sent.len() && &run.sent[k] != g {
            k += 1;
        }
        assert!(
            k < run.sent.len(),
            "{what}: a frame that never came, or out of order: {g:x?}"
        );
        k += 1;
    }
    assert_eq!(
        run.got.len() as u64 + run.drops,
        run.sent.len() as u64,
        "{what}: every frame left or was counted as dropped"
    );
}

#[test]
fn a_reader_that_keeps_up_gets_every_frame_back_to_back() {
    // Frames every clock, the reader always ready.
    let run = run(0xf1f0_0001, 400, MAX_WORDS, 0, 100, |_| false);
    holds(&run, "back to back");
    assert_eq!(run.drops, 0);
    assert_eq!(run.got, run.sent);
}

#[test]
fn a_slow_reader_gets_every_frame_that_fits() {
    // Answers of nine words with gaps, a reader ready half the time.
    let run = run(0xf1f0_0002, 400, 9, 12, 50, |_| false);
    holds(&run, "slow reader");
    assert_eq!(run.drops, 0);
}

/// The reader stops for a long stretch: the FIFO fills and frames are dropped whole; after, it
/// keeps up again and nothing more is lost.
fn stalled(seed: u64, longest: u64, what: &str) {
    let run = run(seed, 600, longest, 2, 100, |t| (500..2000).contains(&t));
    holds(&run, what);
    assert!(run.drops > 10, "{what}: only {} dropped", run.drops);
    let last = run.sent.last().unwrap();
    assert_eq!(run.got.last(), Some(last), "{what}: the queue recovered");
}

#[test]
fn a_stalled_reader_loses_whole_frames_only_when_the_words_run_out() {
    // Long frames: sixteen would not fit in the words.
    stalled(0xf1f0_0003, MAX_WORDS, "long frames");
}

#[test]
fn a_stalled_reader_loses_whole_frames_only_when_the_lengths_run_out() {
    // Short frames: the sixteen lengths run out first.
    const { assert!(super::FRAMES * 9 < DEPTH) };
    stalled(0xf1f0_0005, 9, "short frames");
}

#[test]
fn a_frame_longer_than_the_longest_kept_is_dropped_and_the_next_one_is_not() {
    let run = run(0xf1f0_0004, 300, MAX_WORDS + 40, 1, 100, |_| false);
    holds(&run, "too long");
    let long = run
        .sent
        .iter()
        .filter(|f| f.len() as u64 > MAX_WORDS)
        .count();
    assert!(long > 50, "{long} long frames");
    assert_eq!(run.drops, long as u64, "exactly the long ones dropped");
    assert!(run.got.iter().all(|f| f.len() as u64 <= MAX_WORDS));
}

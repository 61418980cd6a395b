//! The mux under two random frame streams with gaps and a stalling link: every frame leaves
//! whole, each stream's frames in their order, nothing lost or made up; with both streams full,
//! they take turns.

use rust_hdl::prelude::*;

use super::TxMux;
use crate::bench::{cycle, settle, Rng};

fn clock(u: &mut TxMux) -> &mut Signal<In, Clock> {
    &mut u.clock
}

/// One stream's frames (each word tagged with its stream, frame and place) and where it is.
struct Source {
    frames: Vec<Vec<u64>>,
    frame: usize,
    word: usize,
}

impl Source {
    fn new(r: &mut Rng, stream: u64, n: u64, longest: u64) -> Source {
        let frames = (0..n)
            .map(|f| {
                let len = 1 + r.below(longest);
                (0..len).map(|k| stream << 48 | f << 24 | k).collect()
            })
            .collect();
        Source {
            frames,
            frame: 0,
            word: 0,
        }
    }

    fn next(&self) -> Option<(u64, bool)> {
        let f = self.frames.get(self.frame)?;
        Some((f[self.word], self.word + 1 == f.len()))
    }

    fn take(&mut self) {
        self.word += 1;
        if self.word == self.frames[self.frame].len() {
            self.frame += 1;
            self.word = 0;
        }
    }
}

/// Runs both streams through; the frames that left, in order, and the clocks words left in.
fn run(
    seed: u64,
    n: u64,
    longest: u64,
    gaps: bool,
    stalls: bool,
) -> (Vec<Vec<u64>>, [Source; 2], Vec<u64>) {
    let mut r = Rng(seed);
    let mut src = [
        Source::new(&mut r, 1, n, longest),
        Source::new(&mut r, 2, n, longest),
    ];
    let mut u = super::tests_support::connected();
    u.connect_all();
    let (mut out, mut cur, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..(2 * n * (longest + 2) * 6 + 100) {
        let ga = gaps && r.below(3) == 0;
        let gb = gaps && r.below(3) == 0;
        let (a, b) = (src[0].next().filter(|_| !ga), src[1].next().filter(|_| !gb));
        u.a_valid.next = a.is_some();
        u.a_data.next = a.map_or(0, |w| w.0).to_bits();
        u.a_last.next = a.is_some_and(|w| w.1);
        u.b_valid.next = b.is_some();
        u.b_data.next = b.map_or(0, |w| w.0).to_bits();
        u.b_last.next = b.is_some_and(|w| w.1);
        u.tx_ready.next = !(stalls && r.below(4) == 0);
        settle(&mut u);
        assert!(
            !(u.a_ready.val() && u.b_ready.val()),
            "both streams taken in one clock"
        );
        if u.tx_valid.val() && u.tx_ready.val() {
            cur.push(u.tx_data.val().to_u64());
            times.push(t);
            if u.tx_last.val() {
                out.push(std::mem::take(&mut cur));
            }
        }
        if u.a_ready.val() && a.is_some() {
            src[0].take();
        }
        if u.b_ready.val() && b.is_some() {
            src[1].take();
        }
        cycle(&mut u, clock);
    }
    assert!(cur.is_empty(), "a frame left part way");
    (out, src, times)
}

/// Each stream's frames left whole and in order, and nothing else did.
fn holds(out: &[Vec<u64>], src: &[Source; 2], what: &str) {
    for (k, s) in src.iter().enumerate() {
        let mine: Vec<&Vec<u64>> = out.iter().filter(|f| f[0] >> 48 == k as u64 + 1).collect();
        let want: Vec<&Vec<u64>> = s.frames.iter().collect();
        assert_eq!(mine, want, "{what}: stream {k}'s frames");
    }
    assert_eq!(
        out.len(),
        src[0].frames.len() + src[1].frames.len(),
        "{what}: frames out"
    );
}

#[test]
fn frames_leave_whole_and_in_order_under_gaps_and_stalls() {
    for seed in 1..=4u64 {
        let (out, src, _) = run(0x7a00 + seed, 150, 12, true, true);
        holds(&out, &src, &format!("seed {seed}"));
    }
}

#[test]
fn two_full_streams_take_turns_with_no_clock_lost() {
    let (out, src, times) = run(0x7a10, 100, 9, false, false);
    holds(&out, &src, "full");
    assert!(
        times.windows(2).all(|w| w[1] == w[0] + 1),
        "a clock without a word"
    );
    // While both have frames, the streams alternate.
    let both = 2 * 100 - 2;
    for w in out[..both].windows(2) {
        assert_ne!(
            w[0][0] >> 48,
            w[1][0] >> 48,
            "the same stream twice in a row"
        );
    }
}

#[test]
fn one_stream_alone_goes_back_to_back() {
    let mut u = super::tests_support::connected();
    u.connect_all();
    // Stream B alone, a one-word frame every clock: one goes out every clock.
    let mut sent = 0;
    for t in 0..50u64 {
        u.b_valid.next = true;
        u.b_last.next = true;
        u.b_data.next = t.to_bits();
        u.tx_ready.next = true;
        settle(&mut u);
        assert!(u.tx_valid.val() && u.b_ready.val(), "clock {t}");
        assert_eq!(u.tx_data.val().to_u64(), t);
        sent += 1;
        cycle(&mut u, clock);
    }
    assert_eq!(sent, 50);
}

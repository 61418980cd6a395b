//! The sender against a host that posts raw descriptors on an 8-entry ring, reusing a slot's
//! frame memory only once SQ_HEAD has passed it, with DMA and the transmit stream stalling at
//! random: every frame leaves whole, byte for byte, in the order posted; SQ_HEAD never passes a
//! frame before its last word left; descriptors the sender does not take are skipped and counted.

use std::collections::VecDeque;

use rust_hdl::prelude::*;
use specmirror_abi::le::{Le32, Le64};
use specmirror_abi::ring::{Descriptor, Mode, DESCRIPTOR_LEN};

use super::{HostTx, MAX_BYTES};
use crate::bench::{cycle, settle, Rng};

const SQ: u64 = 0x1000;
const LOG2: u32 = 3;
const FRAMES: u64 = 0x10000;

fn clock(u: &mut HostTx) -> &mut Signal<In, Clock> {
    &mut u.clock
}

/// What the host posts: a frame to send, or a descriptor the sender must skip.
#[derive(Clone, Debug)]
enum Post {
    Frame(Vec<u64>),
    Bad { mode: u8, length: u32 },
}

struct Run {
    sent: Vec<Vec<u64>>,
    refused: u64,
    head: u64,
}

fn run(seed: u64, posts: Vec<Post>) -> Run {
    let mut r = Rng(seed);
    let entries = 1u32 << LOG2;
    let mut mem = vec![0u8; (FRAMES + (MAX_BYTES << LOG2)) as usize];
    let mut u = super::tests_support::connected();
    u.connect_all();
    u.enable.next = true;
    u.sq_base.next = SQ.to_bits();
    u.sq_log2.next = (LOG2 as u64).to_bits();
    let (mut tail, mut published, mut next) = (0u32, 0u32, 0usize);
    // Frames posted and not yet seen whole on the stream, in order.
    let mut want: VecDeque<Vec<u64>> = VecDeque::new();
    let mut frames_posted = 0u32;
    let (mut sent, mut cur) = (Vec::new(), Vec::new());
    // DMA requests accepted: (address, words left).
    let mut reads: VecDeque<(u64, u64)> = VecDeque::new();
    let mut last_head = 0u32;
    // Descriptors done by the time each frame's last word left, counted in posts.
    let mut posts_done_at_frame: Vec<u32> = Vec::new();
    let mut post_of_frame: Vec<u32> = Vec::new();
    for _ in 0..400_000 {
        if next == posts.len() && want.is_empty() && u.sq_head.val().to_u64() as u32 == tail {
            break;
        }
        let head = u.sq_head.val().to_u64() as u32;
        // The host posts while the ring has room, reusing a slot's memory only behind SQ_HEAD.
        while next < posts.len() && tail.wrapping_sub(head) < entries && r.below(3) == 0 {
            let slot = (tail & (entries - 1)) as u64;
            let buf = FRAMES + slot * MAX_BYTES;
            let (mode, length) = match &posts[next] {
                Post::Frame(words) => {
                    for (k, w) in words.iter().enumerate() {
                        let a = (buf + 8 * k as u64) as usize;
                        mem[a..a + 8].copy_from_slice(&w.to_le_bytes());
                    }
                    want.push_back(words.clone());
                    post_of_frame.push(tail);
                    frames_posted += 1;
                    (Mode::Raw as u8, 8 * words.len() as u32)
                }
                Post::Bad { mode, length } => (*mode, *length),
            };
            let d = Descriptor {
                dma_addr: Le64::new(buf),
                length: Le32::new(length),
                mode,
                seq: Le64::new(r.next_u64()),
                ..Descriptor::default()
            };
            let at = (SQ + slot * DESCRIPTOR_LEN as u64) as usize;
            mem[at..at + DESCRIPTOR_LEN].copy_from_slice(&d.to_bytes());
            tail = tail.wrapping_add(1);
            next += 1;
        }
        if r.below(4) == 0 {
            published = tail;
        }
        u.sq_tail.next = (published as u64).to_bits();
        u.rd_req_ready.next = r.below(3) != 0;
        u.rd_valid.next = false;
        if let Some(&(a, _)) = reads.front() {
            u.rd_valid.next = r.below(3) != 0;
            let a = a as usize;
            u.rd_data.next = u64::from_le_bytes(mem[a..a + 8].try_into().expect("word")).to_bits();
        }
        u.tx_ready.next = r.below(4) != 0;
        settle(&mut u);
        if u.rd_req_valid.val() && u.rd_req_ready.val() {
            let (a, n) = (u.rd_req_addr.val().to_u64(), u.rd_req_words.val().to_u64());
            assert!(
                n > 0 && a + 8 * n <= mem.len() as u64,
                "DMA read {a:#x} x{n}"
            );
            reads.push_back((a, n));
        }
        if u.rd_valid.val() && u.rd_ready.val() {
            let f = reads.front_mut().expect("a read");
            f.0 += 8;
            f.1 -= 1;
            if f.1 == 0 {
                reads.pop_front();
            }
        }
        if u.tx_valid.val() && u.tx_ready.val() {
            cur.push(u.rd_data.val().to_u64());
            if u.tx_last.val() {
                let f = std::mem::take(&mut cur);
                assert_eq!(Some(&f), want.front(), "frame {}", sent.len());
                want.pop_front();
                sent.push(f);
                posts_done_at_frame.push(u.sq_head.val().to_u64() as u32);
            }
        }
        cycle(&mut u, clock);
        let now = u.sq_head.val().to_u64() as u32;
        assert!(now.wrapping_sub(last_head) <= 1, "SQ_HEAD jumped");
        // SQ_HEAD passes a frame's descriptor only once the frame has left whole.
        assert!(
            post_of_frame
                .iter()
                .skip(sent.len())
                .all(|&p| now.wrapping_sub(p) as i32 <= 0),
            "SQ_HEAD {now} passed a frame still going out"
        );
        last_head = now;
    }
    assert!(cur.is_empty() && want.is_empty(), "frames left unsent");
    assert_eq!(sent.len() as u32, frames_posted);
    // When each frame's last word left, its own descriptor was not yet counted done.
    for (k, (&p, &done)) in post_of_frame.iter().zip(&posts_done_at_frame).enumerate() {
        assert_eq!(done, p, "frame {k}: SQ_HEAD as its last word left");
    }
    Run {
        sent,
        refused: u.refused.val().to_u64(),
        head: u.sq_head.val().to_u64(),
    }
}

fn frame(r: &mut Rng, longest: u64) -> Vec<u64> {
    (0..1 + r.below(longest)).map(|_| r.next_u64()).collect()
}

#[test]
fn every_frame_leaves_whole_in_order_and_sq_head_follows_them() {
    for seed in [1u64, 2, 3] {
        let mut r = Rng(seed * 77);
        let posts: Vec<Post> = (0..120)
            .map(|_| Post::Frame(frame(&mut r, MAX_BYTES / 8)))
            .collect();
        let o = run(seed, posts.clone());
        assert_eq!(o.sent.len(), 120, "seed {seed}");
        assert_eq!((o.refused, o.head), (0, 120), "seed {seed}");
    }
}

#[test]
fn descriptors_it_does_not_take_are_skipped_counted_and_hang_nothing() {
    let mut r = Rng(9);
    let bad = [
        Post::Bad {
            mode: Mode::Speculative as u8,
            length: 64,
        },
        Post::Bad {
            mode: 7,
            length: 64,
        },
        Post::Bad {
            mode: Mode::Raw as u8,
            length: 0,
        },
        Post::Bad {
            mode: Mode::Raw as u8,
            length: 12,
        },
        Post::Bad {
            mode: Mode::Raw as u8,
            length: MAX_BYTES as u32 + 8,
        },
    ];
    let mut posts = Vec::new();
    for k in 0..60 {
        posts.push(Post::Frame(frame(&mut r, 40)));
        if k % 4 == 0 {
            posts.push(bad[k / 4 % bad.len()].clone());
        }
    }
    let frames = posts.iter().filter(|p| matches!(p, Post::Frame(_))).count();
    let o = run(5, posts.clone());
    assert_eq!(o.sent.len(), frames);
    assert_eq!(o.refused, 15, "every bad descriptor counted");
    assert_eq!(o.head, posts.len() as u64, "and passed");
}

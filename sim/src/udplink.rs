//! The datagram link emulator: a user-space UDP forwarder between one client and one server that
//! delays every datagram, and can lose, duplicate and reorder them (jitter larger than the gap
//! between datagrams reorders them) and cut the link for a while.
//!
//! The client is whoever last sent to the listening address; the server sees every datagram come
//! from the emulator's own socket. Each direction has a reader thread that stamps and decides the
//! fate of each datagram and a writer thread that sends them when due (a nanosleep, as in the
//! stream emulator, so sub-millisecond delays stay precise).

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::rng::Rng;

#[derive(Clone, Debug, Default)]
pub struct UdpLinkConfig {
    /// Added to every datagram in each direction.
    pub delay: Duration,
    /// Extra delay per datagram, uniform in `[0, jitter]`; datagrams may overtake each other.
    pub jitter: Duration,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (the copy with its own jitter).
    pub duplicate: f64,
    /// Seed of the fate of each datagram.
    pub seed: u64,
    /// Cut the link (drop everything) this often, for `cut_for`.
    pub cut_every: Option<Duration>,
    pub cut_for: Duration,
}

/// What the emulator did, both directions together.
#[derive(Debug, Default)]
pub struct UdpLinkStats {
    pub forwarded: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
}

struct Shared {
    stopped: AtomicBool,
    cut: AtomicBool,
    client: Mutex<Option<SocketAddr>>,
    stats: UdpLinkStats,
}

/// A running emulator; dropping it stops it.
pub struct UdpLink {
    pub addr: String,
    shared: Arc<Shared>,
}

/// A datagram, when it is due, and its arrival number (which breaks ties in order).
type Timed = std::cmp::Reverse<(Instant, u64, Vec<u8>)>;

/// Datagrams waiting for their time, earliest first.
struct Due {
    heap: Mutex<BinaryHeap<Timed>>,
    wake: Condvar,
}

impl UdpLink {
    /// Binds `listen` and forwards datagrams between its client and `forward`.
    pub fn start(listen: &str, forward: &str, cfg: UdpLinkConfig) -> std::io::Result<UdpLink> {
        let front = UdpSocket::bind(listen)?;
        let fwd: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(forward)?
            .next()
            .ok_or_else(|| std::io::Error::other("the forward address resolves to nothing"))?;
        let back = UdpSocket::bind(if fwd.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        back.connect(fwd)?;
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            // A burst of datagrams must not overflow the emulator itself: it is a wire, not a
            // bottleneck (the kernel caps this at net.core.rmem_max).
            let r = socket2::SockRef::from(s);
            let _ = r.set_recv_buffer_size(8 << 20);
            let _ = r.set_send_buffer_size(8 << 20);
        }
        let addr = front.local_addr()?.to_string();
        let shared = Arc::new(Shared {
            stopped: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            client: Mutex::new(None),
            stats: UdpLinkStats::default(),
        });
        if let Some(every) = cfg.cut_every {
            let sh = shared.clone();
            let for_ = cfg.cut_for;
            std::thread::spawn(move || {
                while !sh.stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(every);
                    sh.cut.store(true, Ordering::SeqCst);
                    std::thread::sleep(for_);
                    sh.cut.store(false, Ordering::SeqCst);
                }
            });
        }
        let up = direction(
            front.try_clone()?,
            cfg.clone(),
            cfg.seed,
            shared.clone(),
            true,
        );
        let down = direction(
            back.try_clone()?,
            cfg.clone(),
            cfg.seed ^ 0x5555,
            shared.clone(),
            false,
        );
        writer(up, back, shared.clone(), false);
        writer(down, front, shared.clone(), true);
        Ok(UdpLink { addr, shared })
    }

    /// Cuts the link: every datagram is dropped until `heal`.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn stats(&self) -> &UdpLinkStats {
        &self.shared.stats
    }
}

impl Drop for UdpLink {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
    }
}

/// The reader of one direction: receives, decides each datagram's fate, queues it.
fn direction(
    sock: UdpSocket,
    cfg: UdpLinkConfig,
    seed: u64,
    sh: Arc<Shared>,
    from_client: bool,
) -> Arc<Due> {
    let due = Arc::new(Due {
        heap: Mutex::new(BinaryHeap::new()),
        wake: Condvar::new(),
    });
    let q = due.clone();
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut buf = vec![0u8; 64 << 10];
        let mut n_seen = 0u64;
        while !sh.stopped.load(Ordering::SeqCst) {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => continue,
            };
            if from_client {
                *sh.client.lock().expect("lock") = Some(from);
            }
            if sh.cut.load(Ordering::SeqCst) || unit() < cfg.loss {
                sh.stats.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let copies = if unit() < cfg.duplicate {
                sh.stats.duplicated.fetch_add(1, Ordering::Relaxed);
                2
            } else {
                1
            };
            let mut heap = q.heap.lock().expect("lock");
            for _ in 0..copies {
                let extra = cfg.jitter.mul_f64(unit());
                n_seen += 1;
                heap.push(std::cmp::Reverse((
                    Instant::now() + cfg.delay + extra,
                    n_seen,
                    buf[..n].to_vec(),
                )));
            }
            drop(heap);
            q.wake.notify_one();
        }
        q.wake.notify_one();
    });
    due
}

/// The writer of one direction: sends each datagram when it is due, to the server (the socket is
/// connected) or to the client (`to_client`).
fn writer(q: Arc<Due>, sock: UdpSocket, sh: Arc<Shared>, to_client: bool) {
    std::thread::spawn(move || {
        crate::linkem::precise_sleeps();
        writer_loop(q, sock, sh, to_client)
    });
}

fn writer_loop(q: Arc<Due>, sock: UdpSocket, sh: Arc<Shared>, to_client: bool) {
    loop {
        let item = {
            let mut heap = q.heap.lock().expect("lock");
            loop {
                if sh.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let now = Instant::now();
                match heap.peek() {
                    Some(std::cmp::Reverse((at, _, _))) if *at <= now => {
                        break heap.pop().expect("peeked").0;
                    }
                    Some(std::cmp::Reverse((at, _, _))) => {
                        let wait = *at - now;
                        if wait > Duration::from_millis(1) {
                            heap = q.wake.wait_timeout(heap, wait).expect("lock").0;
                        } else {
                            // Sleep the last stretch outside the lock, precisely.
                            drop(heap);
                            std::thread::sleep(wait);
                            heap = q.heap.lock().expect("lock");
                        }
                    }
                    None => {
                        heap = q
                            .wake
                            .wait_timeout(heap, Duration::from_millis(100))
                            .expect("lock")
                            .0;
                    }
                }
            }
        };
        let (_, _, d) = item;
        let r = if to_client {
            let Some(c) = *sh.client.lock().expect("lock") else {
                continue;
            };
            sock.send_to(&d, c)
        } else {
            sock.send(&d)
        };
        if r.is_ok() {
            sh.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that echoes each datagram back.
    fn echo() -> String {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = s.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut b = vec![0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut b) {
                s.send_to(&b[..n], from).ok();
            }
        });
        a
    }

    fn client(link: &UdpLink) -> UdpSocket {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(&link.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c
    }

    #[test]
    fn delays_loses_duplicates_and_reorders() {
        let link = UdpLink::start(
            "127.0.0.1:0",
            &echo(),
            UdpLinkConfig {
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(4),
                loss: 0.1,
                duplicate: 0.1,
                seed: 3,
                ..Default::default()
            },
        )
        .unwrap();
        let c = client(&link);
        let t = Instant::now();
        c.send(&[0]).unwrap();
        let mut b = [0u8; 8];
        // Lost with probability 0.19 each way; try until one comes back.
        let mut first = None;
        for i in 1..20u8 {
            if c.recv(&mut b).is_ok() {
                first = Some(t.elapsed());
                break;
            }
            c.send(&[i]).unwrap();
        }
        assert!(first.expect("an echo") >= Duration::from_millis(10));
        while c.recv(&mut b).is_ok() {}
        for i in 0..200u8 {
            c.send(&[i]).unwrap();
        }
        let mut got = Vec::new();
        while let Ok(n) = c.recv(&mut b) {
            assert_eq!(n, 1);
            got.push(b[0]);
        }
        let s = link.stats();
        let lost = s.lost.load(Ordering::Relaxed);
        let dup = s.duplicated.load(Ordering::Relaxed);
        assert!(lost > 10 && dup > 10, "lost {lost}, duplicated {dup}");
        assert!(got.len() < 400, "{}", got.len());
        let mut sorted = got.clone();
        sorted.sort();
        assert_ne!(got, sorted, "jitter larger than the gap reorders");
        sorted.dedup();
        assert!(sorted.len() < got.len(), "some came twice");
    }

    #[test]
    fn a_clean_link_delivers_in_order_and_cuts() {
        let link = UdpLink::start(
            "127.0.0.1:0",
            &echo(),
            UdpLinkConfig {
                delay: Duration::from_micros(200),
                ..Default::default()
            },
        )
        .unwrap();
        let c = client(&link);
        let mut b = [0u8; 8];
        for i in 0..50u8 {
            c.send(&[i]).unwrap();
            assert_eq!(c.recv(&mut b).unwrap(), 1);
            assert_eq!(b[0], i);
        }
        link.cut();
        c.send(&[9]).unwrap();
        assert!(c.recv(&mut b).is_err(), "nothing crosses a cut link");
        link.heal();
        c.send(&[7]).unwrap();
        assert_eq!(c.recv(&mut b).unwrap(), 1);
        assert_eq!(b[0], 7);
    }
}

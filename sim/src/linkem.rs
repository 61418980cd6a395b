//! The link emulator: a user-space TCP forwarder that delays every byte by a one-way delay in
//! both directions while keeping order (kernel netem is not available everywhere), with optional
//! jitter that never reorders, and link cuts that close every connection for a while.
//!
//! Each direction of each connection is a pair of OS threads (a reader that stamps arrivals, a
//! writer that sleeps until they are due): the sleep is a nanosleep with the writer's timer slack
//! cut to a nanosecond, so delays of a few hundred microseconds stay precise, which an async
//! runtime's millisecond timer wheel (or the kernel's default 50 µs slack) cannot promise. With
//! no delay and no jitter one thread per direction forwards the bytes as they come: a hand-off
//! between threads would cost a wake-up per chunk, the emulator's own delay.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct LinkConfig {
    /// Added to every byte in each direction.
    pub delay: Duration,
    /// Extra delay, uniform in `[0, jitter]`, never letting bytes overtake each other.
    pub jitter: Duration,
    /// Cut the link (close everything, refuse new connections) this often, for `cut_for`.
    pub cut_every: Option<Duration>,
    pub cut_for: Duration,
}

struct Shared {
    cut: AtomicBool,
    stopped: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    bytes: AtomicU64,
}

/// A running emulator. Dropping it stops accepting and closes every connection.
pub struct Link {
    pub addr: String,
    shared: Arc<Shared>,
}

impl Link {
    /// Binds `listen` and forwards each connection to `forward`.
    pub fn start(listen: &str, forward: &str, cfg: LinkConfig) -> std::io::Result<Link> {
        let l = TcpListener::bind(listen)?;
        let addr = l.local_addr()?.to_string();
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            bytes: AtomicU64::new(0),
        });
        if let Some(every) = cfg.cut_every {
            let sh = shared.clone();
            let for_ = cfg.cut_for;
            std::thread::spawn(move || {
                while !sh.stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(every);
                    cut(&sh);
                    std::thread::sleep(for_);
                    sh.cut.store(false, Ordering::SeqCst);
                }
            });
        }
        let sh = shared.clone();
        let forward = forward.to_string();
        std::thread::spawn(move || {
            for s in l.incoming() {
                if sh.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = s else { continue };
                if sh.cut.load(Ordering::SeqCst) {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(up) = TcpStream::connect(&forward) else {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                {
                    let mut k = sh.conns.lock().expect("lock");
                    k.retain(|c| c.peer_addr().is_ok());
                    if let (Ok(a), Ok(b)) = (down.try_clone(), up.try_clone()) {
                        k.push(a);
                        k.push(b);
                    }
                }
                for (r, w) in [
                    (down.try_clone(), up.try_clone()),
                    (up.try_clone(), down.try_clone()),
                ] {
                    if let (Ok(r), Ok(w)) = (r, w) {
                        pipe(r, w, cfg.clone(), sh.clone());
                    }
                }
            }
        });
        Ok(Link { addr, shared })
    }

    /// Cuts the link now: every connection closes, new ones are refused until `heal`.
    pub fn cut(&self) {
        cut(&self.shared);
    }

    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Bytes forwarded so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }
}

fn cut(sh: &Shared) {
    sh.cut.store(true, Ordering::SeqCst);
    for c in sh.conns.lock().expect("lock").drain(..) {
        let _ = c.shutdown(Shutdown::Both);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        cut(&self.shared);
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A thread of the link, named so that profiles tell its CPU from the daemons'.
fn link_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("linkem".into())
        .spawn(f)
        .expect("spawning a link thread");
}

fn pipe(r: TcpStream, mut w: TcpStream, cfg: LinkConfig, sh: Arc<Shared>) {
    if cfg.delay.is_zero() && cfg.jitter.is_zero() {
        link_thread(move || forward(r, w, &sh));
        return;
    }
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    link_thread(move || {
        precise_sleeps();
        while let Ok((due, chunk)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    link_thread(move || {
        let mut seed = (Instant::now().elapsed().as_nanos() as u64) | 1;
        let mut last_due = Instant::now();
        each_chunk(r, &sh, |chunk| {
            // Never earlier than the bytes before it: jitter does not reorder.
            let due = (Instant::now() + cfg.delay + jitter(cfg.jitter, &mut seed)).max(last_due);
            last_due = due;
            tx.send((due, chunk.to_vec())).is_ok()
        });
    });
}

/// Forwards what `r` reads to `w` as it comes, until either side closes.
fn forward(r: TcpStream, mut w: TcpStream, sh: &Shared) {
    each_chunk(r, sh, |chunk| w.write_all(chunk).is_ok());
    let _ = w.shutdown(Shutdown::Write);
}

/// Hands `f` each chunk `r` reads, counted in the link's bytes, until `r` closes or `f` says
/// to stop.
fn each_chunk(mut r: TcpStream, sh: &Shared, mut f: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sh.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if !f(&buf[..n]) {
            break;
        }
    }
}

/// Cuts the calling thread's timer slack to a nanosecond, so that its sleeps end when asked
/// rather than up to 50 µs later (the kernel's default). Where that is refused the sleeps are
/// only coarser.
pub(crate) fn precise_sleeps() {
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
}

/// Jitter from a small xorshift generator: it only shapes timing.
fn jitter(max: Duration, state: &mut u64) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_nanos(*state % (max.as_nanos() as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 4096];
                    loop {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&b[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        a
    }

    #[test]
    fn delays_both_ways_keeps_order_and_cuts() {
        let link = Link::start(
            "127.0.0.1:0",
            &echo_server(),
            LinkConfig {
                delay: Duration::from_millis(20),
                jitter: Duration::from_millis(5),
                ..Default::default()
            },
        )
        .unwrap();
        let mut c = TcpStream::connect(&link.addr).unwrap();
        let t = Instant::now();
        let msg: Vec<u8> = (0..200u8).collect();
        for chunk in msg.chunks(10) {
            c.write_all(chunk).unwrap();
        }
        let mut back = vec![0u8; 200];
        c.read_exact(&mut back).unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(back, msg, "order kept");
        assert!(link.bytes() >= 400);
        cuts_and_heals(&link, c);
    }

    /// A cut closes `c` and refuses new connections; once healed, a new one goes through.
    fn cuts_and_heals(link: &Link, mut c: TcpStream) {
        link.cut();
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap_or(0), 0, "a cut closes connections");
        assert!(
            TcpStream::connect(&link.addr)
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.read(&mut b)
                })
                .unwrap_or(0)
                == 0,
            "refused while cut"
        );
        link.heal();
        let mut c = TcpStream::connect(&link.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(b"x").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    /// Without delay the bytes go straight through, in order, both ways; a cut still closes
    /// every connection and refuses new ones until healed.
    #[test]
    fn without_delay_forwards_at_once_and_cuts() {
        let link = Link::start("127.0.0.1:0", &echo_server(), LinkConfig::default()).unwrap();
        let mut c = TcpStream::connect(&link.addr).unwrap();
        c.set_nodelay(true).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let msg: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        let mut w = c.try_clone().unwrap();
        let sent = msg.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == msg, "order kept");
        assert_eq!(link.bytes(), 2 << 20);
        cuts_and_heals(&link, c);
    }

    #[test]
    fn a_delaying_thread_sleeps_to_the_nanosecond() {
        let slack = std::thread::spawn(|| {
            precise_sleeps();
            rustix::thread::current_timer_slack().unwrap()
        });
        assert_eq!(slack.join().unwrap(), 1);
    }

    #[test]
    fn short_delays_stay_precise() {
        let link = Link::start(
            "127.0.0.1:0",
            &echo_server(),
            LinkConfig {
                delay: Duration::from_micros(250),
                ..Default::default()
            },
        )
        .unwrap();
        let mut c = TcpStream::connect(&link.addr).unwrap();
        c.set_nodelay(true).unwrap();
        let mut rtts = Vec::new();
        let mut b = [0u8; 1];
        for _ in 0..50 {
            let t = Instant::now();
            c.write_all(b"x").unwrap();
            c.read_exact(&mut b).unwrap();
            rtts.push(t.elapsed());
        }
        rtts.sort();
        let p50 = rtts[25];
        assert!(p50 >= Duration::from_micros(500), "{p50:?}");
        // Generous bound for a shared machine; a 1 ms timer wheel would give about 2 ms.
        assert!(p50 < Duration::from_micros(1500), "{p50:?}");
    }
}

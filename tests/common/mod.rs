//! Shared helpers for the end-to-end tests: the built binary as real processes, qemu-io as the
//! client, and a forwarding proxy whose link can be cut and healed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_specmirror");

/// A daemon process that has not said `ready` yet: its stdout lines arrive on a channel.
pub struct Spawned {
    pub child: Child,
    pub log: PathBuf,
    pub args: Vec<String>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Spawned {
    pub fn new(dir: &Path, name: &str, args: &[&str]) -> Spawned {
        let log = dir.join(format!("{name}.stderr"));
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(BIN)
            .args(args)
            // SPECMIRROR_TEST_LOG overrides the daemons' log filter (e.g. a module at trace).
            .env(
                "RUST_LOG",
                std::env::var("SPECMIRROR_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn specmirror");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            log,
            args: args.iter().map(|s| s.to_string()).collect(),
            lines,
        }
    }

    /// The next stdout line, if it starts with `prefix` within a minute.
    pub fn line(&mut self, prefix: &str) -> Result<String, String> {
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with(prefix) => Ok(line.trim().to_string()),
            other => {
                let _ = self.child.kill();
                let status = self.child.wait().ok();
                Err(format!(
                    "expected a {prefix:?} line, got {other:?}; exit {status:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ))
            }
        }
    }

    /// Waits for the `ready` line.
    pub fn ready(mut self) -> Result<Daemon, String> {
        let ready = self.line("ready ")?;
        let Spawned {
            child, log, args, ..
        } = self;
        Ok(Daemon {
            child,
            ready,
            log,
            args,
        })
    }
}

/// A daemon process; killed when dropped. Its stderr goes to a file for post-mortems.
pub struct Daemon {
    pub child: Child,
    pub ready: String,
    pub log: PathBuf,
    pub args: Vec<String>,
}

impl Daemon {
    /// Starts `specmirror ARGS` and waits for its `ready` line.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Daemon {
        Self::try_start(dir, name, args).unwrap_or_else(|e| panic!("{name} did not start: {e}"))
    }

    pub fn try_start(dir: &Path, name: &str, args: &[&str]) -> Result<Daemon, String> {
        Spawned::new(dir, name, args).ready()
    }

    /// A `key=value` field of the ready line.
    pub fn field(&self, key: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.ready))
            .to_string()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `specmirror ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run specmirror")
}

/// What a finished run said on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn need(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} is not installed: this test needs it (Debian package {package}; ./test.sh installs it)"
    );
}

/// qemu-io against an NBD port; returns its output (stdout and stderr) and whether it succeeded.
pub fn qemu_io(port: &str, cmds: &[&str]) -> (bool, String) {
    need("qemu-io", "qemu-utils");
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", &format!("nbd://127.0.0.1:{port}")]);
    for x in cmds {
        c.args(["-c", x]);
    }
    let o = c.output().expect("run qemu-io");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let ok = o.status.success()
        && !text.contains("Pattern verification failed")
        && !text.contains("failed:");
    (ok, text)
}

/// qemu-io that must succeed.
pub fn qemu_ok(port: &str, cmds: &[&str]) -> String {
    let (ok, text) = qemu_io(port, cmds);
    assert!(ok, "qemu-io {cmds:?} failed:\n{text}");
    text
}

pub fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().unwrap().to_string()
}

pub fn same_files(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// Waits until two files are identical.
pub fn wait_identical(a: &Path, b: &Path, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if same_files(a, b) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    same_files(a, b)
}

pub fn first_difference(a: &Path, b: &Path) -> Option<usize> {
    let x = std::fs::read(a).unwrap();
    let y = std::fs::read(b).unwrap();
    x.iter().zip(&y).position(|(p, q)| p != q)
}

/// Waits until the two copies are identical; if they are not within `within`, fails with the
/// first byte where they differ and what `context` says then (a daemon's log, say).
pub fn assert_converge(a: &Path, b: &Path, within: Duration, context: impl FnOnce() -> String) {
    assert!(
        wait_identical(a, b, within),
        "copies differ at byte {:?}\n{}",
        first_difference(a, b),
        context()
    );
}

/// A target and a source on loopback with temp files.
pub struct Pair {
    pub dir: tempfile::TempDir,
    pub target: Daemon,
    pub source: Daemon,
}

impl Pair {
    pub fn start(mode: &str, size: &str, extra_source: &[&str]) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let target = start_target(dir.path(), size, &[]);
        let source = start_source(
            dir.path(),
            &target.field("listen"),
            mode,
            size,
            extra_source,
        );
        Pair {
            dir,
            target,
            source,
        }
    }

    pub fn nbd_port(&self) -> String {
        port_of(&self.source.field("nbd"))
    }

    pub fn src_img(&self) -> PathBuf {
        self.dir.path().join("source.img")
    }

    pub fn tgt_img(&self) -> PathBuf {
        self.dir.path().join("target.img")
    }
}

pub fn start_target(dir: &Path, size: &str, extra: &[&str]) -> Daemon {
    let vol = dir.join("target.img");
    let mut args = vec![
        "target",
        "--listen",
        "127.0.0.1:0",
        "--volume",
        vol.to_str().unwrap(),
        "--size",
        size,
    ];
    args.extend_from_slice(extra);
    Daemon::start(dir, "target", &args)
}

pub fn restart_target_at(dir: &Path, addr: &str, extra: &[&str]) -> Daemon {
    let vol = dir.join("target.img");
    let mut args = vec![
        "target",
        "--listen",
        addr,
        "--volume",
        vol.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // The old socket may linger briefly.
    for _ in 0..50 {
        if let Ok(d) = Daemon::try_start(dir, "target", &args) {
            return d;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("target did not restart on {addr}");
}

/// `specmirror linkem --udp` in front of `forward`: 100 us one way, `jitter` (which reorders),
/// `loss` and 1 % duplication, from random stream `seed`.
pub fn udp_lossy_link(dir: &Path, forward: &str, loss: &str, jitter: &str, seed: &str) -> Daemon {
    Daemon::start(
        dir,
        "linkem",
        &[
            "linkem",
            "--udp",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            forward,
            "--delay",
            "100us",
            "--jitter",
            jitter,
            "--loss",
            loss,
            "--duplicate",
            "0.01",
            "--seed",
            seed,
        ],
    )
}

pub fn start_source(dir: &Path, target: &str, mode: &str, size: &str, extra: &[&str]) -> Daemon {
    let vol = dir.join("source.img");
    let log = dir.join("source.log");
    let mut args = vec![
        "source",
        "--volume",
        vol.to_str().unwrap(),
        "--size",
        size,
        "--target",
        target,
        "--nbd",
        "127.0.0.1:0",
        "--log",
        log.to_str().unwrap(),
        "--mode",
        mode,
    ];
    args.extend_from_slice(extra);
    Daemon::start(dir, "source", &args)
}

/// A TCP forwarder between the source and the target whose link can be cut (every connection
/// closed, new ones refused) and healed.
pub struct Proxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, k2, up) = (cut.clone(), conns.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(down) = s else { continue };
                if c2.load(Ordering::SeqCst) {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upc) = TcpStream::connect(&up) else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = upc.set_nodelay(true);
                {
                    let mut k = k2.lock().unwrap();
                    k.push(down.try_clone().unwrap());
                    k.push(upc.try_clone().unwrap());
                }
                pump(down.try_clone().unwrap(), upc.try_clone().unwrap());
                pump(upc, down);
            }
        });
        Proxy { addr, cut, conns }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut b = [0u8; 65536];
        loop {
            match from.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// qemu-io commands writing at most 4 KiB each (the longest DATA frame the hardware target takes
/// whole): a few overlapping writes in flight together, one at 3 MiB and one in the last 4 KiB of
/// a `volume`-byte volume, then `n` more in flight over the first `spread` bytes.
pub fn small_writes(volume: u64, n: u64, spread: u64) -> Vec<String> {
    let mut cmds: Vec<String> = vec![
        "write -P 0x11 0 4k".into(),
        "write -P 0x22 4095 1".into(),
        "write -P 0x33 8192 4096".into(),
        // Overlapping writes in flight together: the later ones wait for the earlier locks.
        "aio_write -P 0x44 65536 4096".into(),
        "aio_write -P 0x55 66000 2000".into(),
        "aio_write -P 0x66 65600 512".into(),
        "aio_flush".into(),
        "write -P 0x77 3M 4k".into(),
        format!("write -P 0x88 {} 4096", volume - 4096),
    ];
    for i in 0..n {
        cmds.push(format!(
            "aio_write -P 0x{:02x} {} {}",
            0x90 + i % 0x60,
            (i * 7919) % spread,
            512 * (1 + i % 8)
        ));
    }
    cmds.push("aio_flush".into());
    cmds.push("flush".into());
    cmds
}

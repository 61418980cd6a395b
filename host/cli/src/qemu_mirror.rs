//! QEMU's synchronous mirror as the peer to measure against: qemu-storage-daemon exports the source
//! over NBD and runs `blockdev-mirror` in `copy-mode=write-blocking` to a qemu-nbd target behind the
//! same link emulator, so every write is answered only once the target has it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use specmirror_sim::linkem::{Link, LinkConfig};

/// Whether qemu-storage-daemon and qemu-nbd are installed.
pub fn available() -> bool {
    ["qemu-storage-daemon", "qemu-nbd"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16, what: &str) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not listen on port {port}")
}

pub struct QemuMirror {
    pub nbd_addr: String,
    children: Vec<Child>,
    _link: Link,
}

impl Drop for QemuMirror {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp> {
        let t = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if t.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e).context("connecting to qemu-storage-daemon's QMP socket"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut q = Qmp {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        q.line()?; // greeting
        q.execute(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(q)
    }

    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            bail!("QMP connection closed");
        }
        Ok(l)
    }

    /// Sends a command and returns its reply, skipping events.
    fn execute(&mut self, cmd: &str) -> Result<String> {
        writeln!(self.w, "{cmd}")?;
        loop {
            let l = self.line()?;
            if l.contains("\"error\"") {
                bail!("QMP {cmd} failed: {}", l.trim());
            }
            if l.contains("\"return\"") {
                return Ok(l);
            }
        }
    }
}

impl QemuMirror {
    pub async fn start(dir: &Path, size: u64, delay: Duration) -> Result<QemuMirror> {
        for f in ["qsrc.img", "qtgt.img"] {
            std::fs::File::create(dir.join(f))?.set_len(size)?;
        }
        let mut children = Vec::new();
        let tport = free_port()?;
        children.push(
            Command::new("qemu-nbd")
                .args([
                    "-f",
                    "raw",
                    "--export-name=tgt",
                    "--bind=127.0.0.1",
                    "--persistent",
                    "--shared=8",
                ])
                .arg(format!("--port={tport}"))
                .arg(dir.join("qtgt.img"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting qemu-nbd")?,
        );
        wait_port(tport, "qemu-nbd")?;
        let link = Link::start(
            "127.0.0.1:0",
            &format!("127.0.0.1:{tport}"),
            LinkConfig {
                delay,
                ..Default::default()
            },
        )?;
        let lport: u16 = link.addr.rsplit(':').next().unwrap_or("0").parse()?;
        let nport = free_port()?;
        let qmp = dir.join("qmp.sock");
        children.push(
            Command::new("qemu-storage-daemon")
                .arg("--blockdev")
                .arg(format!(
                    "driver=file,filename={},node-name=src-file",
                    dir.join("qsrc.img").display()
                ))
                .args(["--blockdev", "driver=raw,file=src-file,node-name=src"])
                .arg("--blockdev")
                .arg(format!(
                    "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={lport},export=tgt,node-name=tgt"
                ))
                .arg("--nbd-server")
                .arg(format!("addr.type=inet,addr.host=127.0.0.1,addr.port={nport}"))
                .args(["--export", "type=nbd,id=exp,node-name=src,name=src,writable=on"])
                .arg("--chardev")
                .arg(format!("socket,id=qmp,path={},server=on,wait=off", qmp.display()))
                .args(["--monitor", "chardev=qmp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting qemu-storage-daemon")?,
        );
        let mut q = Qmp::connect(&qmp)?;
        q.execute(
            r#"{"execute":"blockdev-mirror","arguments":{"job-id":"m","device":"src","target":"tgt","sync":"none","copy-mode":"write-blocking"}}"#,
        )?;
        let t = Instant::now();
        loop {
            let jobs = q.execute(r#"{"execute":"query-block-jobs"}"#)?;
            if jobs.contains("\"ready\": true") || jobs.contains("\"ready\":true") {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("QEMU's mirror job did not become ready: {jobs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_port(nport, "qemu-storage-daemon")?;
        Ok(QemuMirror {
            nbd_addr: format!("127.0.0.1:{nport}#src"),
            children,
            _link: link,
        })
    }
}

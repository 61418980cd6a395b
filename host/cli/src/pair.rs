//! An in-process source/target pair over the link emulator, on runtimes of their own so that
//! dropping the pair stops everything; and the physical floor (an NBD server that only pwrite()s)
//! behind the same kind of link. The demo and the benchmark measure through these.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use specmirror_abi::ring::Mode;
use specmirror_engine::datagram::Transport;
use specmirror_engine::nbd::{self, Export};
use specmirror_engine::source::{self, NbdListen, SourceOptions};
use specmirror_engine::target::{self, TargetOptions};
use specmirror_engine::volume::Volume;
use specmirror_sim::linkem::{Link, LinkConfig};
use specmirror_sim::udplink::{UdpLink, UdpLinkConfig};

/// A runtime of one worker thread, so that each daemon of a measurement has a core's worth.
/// Its threads are named `name`, so that `perf report --sort comm` splits the bench's CPU by
/// daemon.
pub(crate) fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// A running pair; `nbd_addr` is where clients connect.
pub struct Pair {
    pub nbd_addr: String,
    /// Where the source's acknowledged writes spent their time.
    pub stages: std::sync::Arc<specmirror_engine::source::StageStats>,
    /// The emulated link between source and target (stream or datagram), kept running.
    _link: Box<dyn std::any::Any + Send>,
    rts: Vec<tokio::runtime::Runtime>,
}

/// How the pair's two ends talk: TCP through the stream emulator, or UDP datagrams of an MTU
/// through the datagram emulator, which loses this share of them.
#[derive(Clone, Copy, Debug)]
pub enum PairLink {
    Tcp,
    Udp { mtu: u32, loss: f64 },
}

impl Drop for Pair {
    fn drop(&mut self) {
        for rt in self.rts.drain(..) {
            rt.shutdown_background();
        }
    }
}

impl Pair {
    /// Target and source on `dir/target.img` and `dir/source.img`, `delay` one-way between them.
    pub async fn start(dir: &Path, mode: Mode, size: u64, delay: Duration) -> Result<Pair> {
        Self::start_over(dir, mode, size, delay, PairLink::Tcp).await
    }

    /// The same, over the link `how`.
    pub async fn start_over(
        dir: &Path,
        mode: Mode,
        size: u64,
        delay: Duration,
        how: PairLink,
    ) -> Result<Pair> {
        let (rt_target, rt_source) = (runtime("target")?, runtime("source")?);
        let tvol = Volume::open(&dir.join("target.img"), Some(size))?;
        let pair_id = [7u8; 16];
        let topts = TargetOptions {
            volume: tvol,
            region_size: 64 << 10,
            pair_id,
            secret: None,
            peer_timeout: Duration::from_secs(10),
        };
        let (link, target_addr, transport): (Box<dyn std::any::Any + Send>, _, _) = match how {
            PairLink::Tcp => {
                let listener = rt_target.spawn(target::bind("127.0.0.1:0")).await??;
                let taddr = listener.local_addr()?.to_string();
                rt_target.spawn(target::serve(listener, topts));
                let link = Link::start(
                    "127.0.0.1:0",
                    &taddr,
                    LinkConfig {
                        delay,
                        ..Default::default()
                    },
                )?;
                let addr = link.addr.clone();
                (Box::new(link), addr, Transport::Tcp)
            }
            PairLink::Udp { mtu, loss } => {
                let sock = rt_target
                    .spawn(async { target::bind_udp("127.0.0.1:0") })
                    .await??;
                let taddr = sock.local_addr()?.to_string();
                rt_target.spawn(target::serve_udp(sock, topts));
                let link = UdpLink::start(
                    "127.0.0.1:0",
                    &taddr,
                    UdpLinkConfig {
                        delay,
                        loss,
                        seed: 1,
                        ..Default::default()
                    },
                )?;
                let addr = link.addr.clone();
                (Box::new(link), addr, Transport::udp(mtu)?)
            }
        };
        let opts = SourceOptions {
            volume: dir.join("source.img"),
            size: Some(size),
            target: target_addr,
            nbd: NbdListen::Tcp("127.0.0.1:0".into()),
            log: dir.join("source.log"),
            mode,
            region_size: 64 << 10,
            pair_id,
            secret: None,
            link_timeout: Duration::from_secs(30),
            log_sync: false,
            peer_timeout: Duration::from_secs(10),
            export_name: "specmirror".into(),
            max_inflight: 256 << 20,
            transport,
            device: None,
        };
        let running = rt_source.spawn(source::start(opts)).await??;
        Ok(Pair {
            stages: running.stages.clone(),
            nbd_addr: running.nbd_addr,
            _link: link,
            rts: vec![rt_source, rt_target],
        })
    }
}

/// The physical floor: the client's writes cross the same link to a server that pwrite()s them
/// and answers. One round trip and one remote write, nothing else.
pub struct Floor {
    /// The server, through the link emulator.
    pub nbd_addr: String,
    /// The same server reached directly, without the emulator.
    pub direct_addr: String,
    /// The forwarder in front of the emulated link, once asked for (`relayed_addr`).
    relay: Option<Link>,
    _link: Link,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Floor {
    /// The server through a plain forwarder on loopback (the link emulator with no delay) and
    /// then the emulated link: the extra hop a client of the source makes, and nothing else. The
    /// forwarder starts on the first call.
    pub fn relayed_addr(&mut self) -> Result<String> {
        let relay = match self.relay.take() {
            Some(r) => r,
            None => Link::start("127.0.0.1:0", &self.nbd_addr, LinkConfig::default())?,
        };
        let addr = relay.addr.clone();
        self.relay = Some(relay);
        Ok(addr)
    }

    pub async fn start(dir: &Path, size: u64, delay: Duration) -> Result<Floor> {
        let rt = runtime("floor")?;
        let volume = Volume::open(&dir.join("floor.img"), Some(size))?;
        let v = volume.clone();
        let mirror = rt.spawn(async move { nbd::direct_mirror(v) }).await?;
        let export = Arc::new(Export {
            name: "floor".into(),
            volume,
            mirror,
            inflight: nbd::inflight_budget(256 << 20),
            reads_through_mirror: false,
        });
        let lst = rt
            .spawn(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await??;
        let addr = lst.local_addr()?.to_string();
        rt.spawn(async move {
            while let Ok((s, _)) = lst.accept().await {
                s.set_nodelay(true).ok();
                tokio::spawn(nbd::serve(s, export.clone()));
            }
        });
        let link = Link::start(
            "127.0.0.1:0",
            &addr,
            LinkConfig {
                delay,
                ..Default::default()
            },
        )?;
        Ok(Floor {
            nbd_addr: link.addr.clone(),
            direct_addr: addr,
            relay: None,
            _link: link,
            rt: Some(rt),
        })
    }
}

//! The `source`, `target` and `node` commands: the software engine's daemons.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use specmirror_engine::datagram::Transport;
use specmirror_engine::node::{self, NodeOptions};
use specmirror_engine::source::{self, NbdListen, SourceOptions};
use specmirror_engine::target::{self, TargetOptions};
use specmirror_engine::volume::Volume;
use tracing::warn;

use crate::hwdev::EngineArg;
use crate::simulate::ModeArg;
use crate::units::{parse_duration, parse_size};

/// Resolves on Ctrl-C or SIGTERM (how service managers stop daemons).
pub async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            warn!("cannot watch SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[derive(Args)]
pub struct PairArgs {
    /// Name of the volume pair; source and target must use the same one. A rollback log belongs to
    /// one pair and is refused by any other.
    #[arg(long, default_value = "specmirror", value_name = "NAME")]
    pair: String,
    /// Lock granule on the target volume (a power of two, at least 512 bytes).
    #[arg(long, default_value = "64KiB", value_parser = parse_size, value_name = "SIZE")]
    region_size: u64,
    /// File holding a shared secret: both ends prove they know it (HMAC-SHA256 challenge and
    /// response with fresh nonces) before any data moves.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// A peer silent for this long is disconnected (the source sends a heartbeat every second).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    peer_timeout: Duration,
}

impl PairArgs {
    fn pair_id(&self) -> [u8; 16] {
        let d = Sha256::digest(self.pair.as_bytes());
        d[..16].try_into().expect("16 bytes")
    }

    fn secret(&self) -> Result<Option<Vec<u8>>> {
        let Some(p) = &self.secret_file else {
            return Ok(None);
        };
        let mut s =
            std::fs::read(p).with_context(|| format!("reading secret file {}", p.display()))?;
        while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
            s.pop();
        }
        if s.is_empty() {
            bail!("secret file {} is empty", p.display());
        }
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(p) {
                if m.permissions().mode() & 0o077 != 0 {
                    warn!(
                        "secret file {} is readable by others (chmod 600 it)",
                        p.display()
                    );
                }
            }
        }
        Ok(Some(s))
    }

    fn check(&self) -> Result<()> {
        if !self.region_size.is_power_of_two() || self.region_size < 512 {
            bail!(
                "--region-size {} must be a power of two of at least 512 bytes",
                self.region_size
            );
        }
        Ok(())
    }
}

/// How frames travel between source and target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// One TCP connection; authenticated when --secret-file is given.
    Tcp,
    /// One frame per UDP datagram, no stream underneath: loss, duplication and reordering are
    /// recovered by the protocol's own sequence numbers, timers and rollback log. Not
    /// authenticated: use it on a network only the pair can reach.
    Udp,
}

impl TransportArg {
    fn check(self, pair: &PairArgs) -> Result<()> {
        if self == TransportArg::Udp && pair.secret_file.is_some() {
            bail!("--transport udp does not authenticate; --secret-file needs --transport tcp");
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct TargetArgs {
    /// Address to accept the source on (host:port; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// How frames travel; the source must use the same.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: TransportArg,
    /// The target volume: a file or block device.
    #[arg(long, value_name = "PATH")]
    volume: PathBuf,
    /// Create the volume file with this size if it is missing, or extend a smaller one. Without it
    /// an existing file is used as it is.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    size: Option<u64>,
    /// Which engine serves the source. hw: the device (--device) takes the LOCK, DATA and ABORT
    /// frames and writes the volume through the host; TCP only.
    #[arg(long, value_enum, default_value = "soft")]
    engine: EngineArg,
    /// With --engine hw: sim (the verilated target device, in a thread of this process, handing
    /// each locked write to the host through its receive rings; a build with --features
    /// sim-device). It takes writes of up to 4 KiB in one DATA frame: larger writes, and
    /// implicit-lock mode, fail at the source after its --link-timeout.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    #[command(flatten)]
    pair: PairArgs,
}

pub async fn run_target(a: TargetArgs) -> Result<()> {
    a.pair.check()?;
    a.transport.check(&a.pair)?;
    let secret = a.pair.secret()?;
    // Every check before the volume is created or extended.
    let hw = crate::hwdev::simulated_target(a.engine, a.device.as_deref())?;
    if hw && a.transport != TransportArg::Tcp {
        bail!("--engine hw runs over TCP: drop --transport udp");
    }
    let volume = Volume::open(&a.volume, a.size)?;
    let attach = if hw {
        Some(crate::hwdev::sim_target(
            volume.clone(),
            a.pair.region_size,
            a.pair.pair_id(),
        )?)
    } else {
        None
    };
    let (listener, sock, addr) = match a.transport {
        TransportArg::Tcp => {
            let l = target::bind(&a.listen).await?;
            let addr = l.local_addr()?;
            (Some(l), None, addr)
        }
        TransportArg::Udp => {
            let s = target::bind_udp(&a.listen)?;
            let addr = s.local_addr()?;
            (None, Some(s), addr)
        }
    };
    let transport = format!("{:?}", a.transport).to_lowercase();
    println!(
        "ready listen={addr} volume={} size={} transport={transport}",
        a.volume.display(),
        volume.size()
    );
    tracing::info!(%addr, %transport, volume = %a.volume.display(), size = volume.size(), "target serving");
    let opts = TargetOptions {
        volume,
        region_size: a.pair.region_size,
        pair_id: a.pair.pair_id(),
        secret,
        peer_timeout: a.pair.peer_timeout,
    };
    let serve = async move {
        match (listener, sock, attach) {
            (Some(l), _, Some(attach)) => serve_device(l, attach, opts).await,
            (Some(l), _, None) => target::serve(l, opts).await,
            (_, Some(s), _) => target::serve_udp(s, opts).await,
            _ => unreachable!("one of the two is bound"),
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = stop_signal() => tracing::info!("stopping on a signal"),
    }
    Ok(())
}

/// `target --engine hw`: authenticates each connection and hands it to the device (a new one
/// replaces the one before).
async fn serve_device(
    l: tokio::net::TcpListener,
    attach: crate::hwdev::Attach,
    opts: TargetOptions,
) {
    loop {
        let (mut s, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        s.set_nodelay(true).ok();
        if let Err(e) =
            specmirror_engine::auth::as_target(&mut s, opts.secret.as_deref(), opts.peer_timeout)
                .await
        {
            warn!(%peer, "refused a source: {e}");
            continue;
        }
        let attached = s.into_std().map_err(anyhow::Error::from).and_then(&attach);
        match attached {
            Ok(()) => tracing::info!(%peer, "source attached to the device"),
            Err(e) => warn!(%peer, "the device did not take the connection: {e:#}"),
        }
    }
}

#[derive(Args)]
pub struct SourceArgs {
    /// The target daemon (host:port).
    #[arg(long, value_name = "ADDR")]
    target: String,
    /// How frames travel; the target must use the same.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: TransportArg,
    /// With --transport udp: the path MTU (1280 to 9000; 9000 on jumbo-frame networks). Writes
    /// are split so that every frame fits one unfragmented datagram.
    #[arg(long, default_value_t = specmirror_engine::datagram::DEFAULT_MTU, value_name = "BYTES")]
    mtu: u32,
    /// Which engine carries the hot path. hw: the device (--device) sends each write's LOCK and
    /// DATA from the rollback-log rings; TCP only.
    #[arg(long, value_enum, default_value = "soft")]
    engine: EngineArg,
    /// With --engine hw: sim (the verilated device, in a thread of this process; a build with
    /// --features sim-device; sim:dma-latency=CLOCKS sets how long its DMA reads take, default
    /// 64) or vfio:DDDD:BB:DD.F (opened and checked; no NIC bitstream carries the devices'
    /// links yet).
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    pair: PairArgs,
}

/// What a source and a bidirectional node share: their volume, their clients and their log.
#[derive(Args)]
pub struct ServeArgs {
    /// The volume this daemon serves to its clients: a file or block device.
    #[arg(long, value_name = "PATH")]
    volume: PathBuf,
    /// Create the volume file with this size if it is missing, or extend a smaller one.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    size: Option<u64>,
    /// Where NBD clients connect: host:port, or a Unix socket path (anything with a '/').
    #[arg(long, value_name = "ADDR")]
    nbd: String,
    /// The rollback log file. Unconfirmed writes live here; after a crash, restart with the same
    /// log and they are written locally again and re-sent before new I/O is accepted.
    #[arg(long, value_name = "PATH")]
    log: PathBuf,
    /// How writes are mirrored: speculative sends the lock and the data together (one round trip).
    #[arg(long, value_enum, default_value = "speculative")]
    mode: ModeArg,
    /// Writes the other side has not confirmed within this time are rolled back and fail with
    /// EIO; start-up waits this long for the other side.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    link_timeout: Duration,
    /// fdatasync the rollback log before each local write: survives power loss, at the cost of one
    /// log sync per write. Without it a killed process loses nothing, a lost machine may.
    #[arg(long)]
    log_sync: bool,
    /// Export name offered to NBD clients (the empty name is accepted too).
    #[arg(long, default_value = "specmirror", value_name = "NAME")]
    export: String,
    /// Client writes in flight at most, across all NBD connections; more wait until earlier ones
    /// are answered. Bounds memory and the rollback log (about twice this) when the other side is
    /// away.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    max_inflight: u64,
}

impl ServeArgs {
    fn nbd_listen(&self) -> NbdListen {
        if self.nbd.contains('/') {
            NbdListen::Unix(PathBuf::from(&self.nbd))
        } else {
            NbdListen::Tcp(self.nbd.clone())
        }
    }
}

pub async fn run_source(a: SourceArgs) -> Result<()> {
    a.pair.check()?;
    a.transport.check(&a.pair)?;
    let transport = match a.transport {
        TransportArg::Tcp => Transport::Tcp,
        TransportArg::Udp => Transport::udp(a.mtu).context("--mtu")?,
    };
    let device = crate::hwdev::device(a.engine, a.device.as_deref())?;
    if device.is_some() && a.transport != TransportArg::Tcp {
        bail!("--engine hw runs over TCP: drop --transport udp");
    }
    let v = &a.serve;
    let opts = SourceOptions {
        volume: v.volume.clone(),
        size: v.size,
        target: a.target.clone(),
        nbd: v.nbd_listen(),
        log: v.log.clone(),
        mode: v.mode.into(),
        region_size: a.pair.region_size,
        pair_id: a.pair.pair_id(),
        secret: a.pair.secret()?,
        link_timeout: v.link_timeout,
        log_sync: v.log_sync,
        peer_timeout: a.pair.peer_timeout,
        export_name: v.export.clone(),
        max_inflight: v.max_inflight,
        transport,
        device,
    };
    let running = source::start(opts).await?;
    println!("ready nbd={} target={}", running.nbd_addr, a.target);
    tokio::select! {
        r = running.task => {
            r.context("mirror task panicked")??;
        }
        _ = stop_signal() => tracing::info!("stopping on a signal; unconfirmed writes stay in the rollback log"),
    }
    Ok(())
}

#[derive(Args)]
pub struct NodeArgs {
    /// This node's id. Both nodes serve clients and each mirrors to the other; on a conflict,
    /// node 1's write is ordered first and node 2's lands on top (on both copies).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2), value_name = "1|2")]
    node_id: u32,
    /// Node 2: where node 1's link is accepted (host:port; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Node 1: node 2's link address (node 1 dials, and keeps dialing until node 2 is up).
    #[arg(long, value_name = "ADDR")]
    peer: Option<String>,
    #[command(flatten)]
    serve: ServeArgs,
    /// What this node does while its peer is away. refuse: writes wait and fail with EIO after
    /// --link-timeout, so the copies never disagree. serve: writes are answered once on this copy
    /// and kept in the rollback log until the peer is back; the copies converge on reconnect
    /// (conflicting writes from the two sides are ordered node 1 first), but what clients of the
    /// two nodes saw in between need not be one history.
    #[arg(long, value_enum, default_value = "refuse")]
    alone: Alone,
    #[command(flatten)]
    pair: PairArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Alone {
    Refuse,
    Serve,
}

pub async fn run_node(a: NodeArgs) -> Result<()> {
    a.pair.check()?;
    if a.node_id == 1 && a.peer.is_none() {
        bail!("node 1 dials node 2: give --peer ADDR (node 2's --listen address)");
    }
    if a.node_id == 2 && a.listen.is_none() {
        bail!("node 2 accepts node 1's link: give --listen ADDR");
    }
    let v = &a.serve;
    let opts = NodeOptions {
        node_id: a.node_id,
        volume: v.volume.clone(),
        size: v.size,
        listen: a.listen.clone(),
        peer: a.peer.clone(),
        nbd: v.nbd_listen(),
        log: v.log.clone(),
        mode: v.mode.into(),
        region_size: a.pair.region_size,
        pair_id: a.pair.pair_id(),
        secret: a.pair.secret()?,
        link_timeout: v.link_timeout,
        log_sync: v.log_sync,
        peer_timeout: a.pair.peer_timeout,
        export_name: v.export.clone(),
        max_inflight: v.max_inflight,
        serve_alone: matches!(a.alone, Alone::Serve),
    };
    let running = node::start(opts, |link| println!("listening link={link}")).await?;
    println!("ready nbd={} node={}", running.nbd_addr, a.node_id);
    tokio::select! {
        r = running.task => {
            r.context("node task panicked")??;
        }
        _ = stop_signal() => tracing::info!("stopping on a signal; unconfirmed writes stay in the rollback log"),
    }
    Ok(())
}

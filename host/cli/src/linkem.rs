//! `specmirror linkem`: the link emulator as a command.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use specmirror_sim::linkem::{Link, LinkConfig};
use specmirror_sim::udplink::{UdpLink, UdpLinkConfig};

use crate::units::parse_duration;

#[derive(Args)]
pub struct LinkemArgs {
    /// Address to accept connections on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Where each connection is forwarded to.
    #[arg(long, value_name = "ADDR")]
    forward: String,
    /// One-way delay added to every byte in each direction (order is kept).
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DUR")]
    delay: Duration,
    /// Extra delay, uniform in [0, DUR]. Over TCP it never reorders bytes; with --udp each
    /// datagram draws its own, so datagrams closer than DUR may arrive out of order.
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DUR")]
    jitter: Duration,
    /// Forward UDP datagrams (between one client and the server) instead of TCP connections.
    #[arg(long)]
    udp: bool,
    /// With --udp: the probability that a datagram is lost (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "P", requires = "udp")]
    loss: f64,
    /// With --udp: the probability that a datagram is delivered twice (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "P", requires = "udp")]
    duplicate: f64,
    /// With --udp: the seed of each datagram's fate.
    #[arg(long, default_value_t = 1, requires = "udp")]
    seed: u64,
    /// Cut the link (close every connection, refuse new ones) this often...
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    loss_cut_every: Option<Duration>,
    /// ...for this long.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    cut_for: Duration,
}

pub async fn linkem(a: LinkemArgs) -> Result<()> {
    if a.udp {
        return udp(a).await;
    }
    let link = Link::start(
        &a.listen,
        &a.forward,
        LinkConfig {
            delay: a.delay,
            jitter: a.jitter,
            cut_every: a.loss_cut_every,
            cut_for: a.cut_for,
        },
    )?;
    println!("ready listen={} forward={}", link.addr, a.forward);
    crate::daemons::stop_signal().await;
    tracing::info!(bytes = link.bytes(), "stopping");
    Ok(())
}

async fn udp(a: LinkemArgs) -> Result<()> {
    for (name, p) in [("--loss", a.loss), ("--duplicate", a.duplicate)] {
        if !(0.0..=1.0).contains(&p) {
            anyhow::bail!("{name} {p} is not a probability (0 to 1)");
        }
    }
    let link = UdpLink::start(
        &a.listen,
        &a.forward,
        UdpLinkConfig {
            delay: a.delay,
            jitter: a.jitter,
            loss: a.loss,
            duplicate: a.duplicate,
            seed: a.seed,
            cut_every: a.loss_cut_every,
            cut_for: a.cut_for,
        },
    )?;
    println!("ready listen={} forward={} udp", link.addr, a.forward);
    crate::daemons::stop_signal().await;
    let s = link.stats();
    use std::sync::atomic::Ordering::Relaxed;
    tracing::info!(
        forwarded = s.forwarded.load(Relaxed),
        lost = s.lost.load(Relaxed),
        duplicated = s.duplicated.load(Relaxed),
        "stopping"
    );
    Ok(())
}

//! `specmirror linkem`: the link emulator as a command.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use specmirror_sim::linkem::{Link, LinkConfig};

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
    /// Extra delay, uniform in [0, DUR], that never reorders bytes.
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DUR")]
    jitter: Duration,
    /// Cut the link (close every connection, refuse new ones) this often...
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    loss_cut_every: Option<Duration>,
    /// ...for this long.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    cut_for: Duration,
}

pub async fn linkem(a: LinkemArgs) -> Result<()> {
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

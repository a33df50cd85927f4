//! The benchmark's latency proxy on its own, for measuring a replay from S3 by hand:
//! `cargo run --release -p kappa-bench --example latency_proxy -- 127.0.0.1:8333 30` prints the
//! address to give the pipeline's `[source.archive] endpoint` and delays every request to the
//! object store at 127.0.0.1:8333 by 30 ms until it is stopped.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use kappa_bench::latency::LatencyProxy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: latency_proxy <upstream host:port> <delay in ms>";
    let upstream = args.next().ok_or(usage)?.parse()?;
    let delay = Duration::from_millis(args.next().ok_or(usage)?.parse()?);
    let proxy = LatencyProxy::start(upstream, delay).await?;
    println!("http://{}", proxy.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

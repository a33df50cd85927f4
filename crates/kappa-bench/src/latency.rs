//! A TCP proxy that delays every byte from the client to the server by a fixed time: each request
//! to the object store behind it waits that long more before the server sees it, as a request to
//! S3 in another availability zone or region does. A delay line, not a throttle: requests in flight
//! on other connections, or pipelined on one, are delayed side by side, not one after another.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running proxy; stopped when dropped.
pub struct LatencyProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LatencyProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, `delay` later.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = relay(client, server, delay).await;
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    // Client to server: each chunk leaves `delay` after it arrived.
    let inbound = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buffer).await?;
            if n == 0
                || tx
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
            {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let delayed = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            server_write.write_all(&chunk).await?;
        }
        server_write.shutdown().await
    };
    let outbound = async move {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let (a, b, c) = tokio::join!(inbound, delayed, outbound);
    a.and(b).and(c)
}

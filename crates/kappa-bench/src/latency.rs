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

/// Bytes of a response read from the server at once.
const RELAY_BUFFER: usize = 256 * 1024;

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
    let (server_read, mut server_write) = server.into_split();
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
    // Server to client at once, in reads as large as the server's writes: tokio's `copy` would
    // pass a response on in 8 KiB pieces, each one more wake-up and read for the client than
    // the server's own writes cost it.
    let outbound = async move {
        let mut server_read = tokio::io::BufReader::with_capacity(RELAY_BUFFER, server_read);
        tokio::io::copy_buf(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let (a, b, c) = tokio::join!(inbound, delayed, outbound);
    a.and(b).and(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers each 4-byte request with `n` (its value) patterned bytes.
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4];
                    while socket.read_exact(&mut request).await.is_ok() {
                        let n = u32::from_be_bytes(request) as usize;
                        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                        if socket.write_all(&body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn every_request_waits_the_delay_and_every_response_arrives_whole() {
        let delay = Duration::from_millis(40);
        let proxy = LatencyProxy::start(server().await, delay).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        // Larger than the relay's buffer, tiny, and empty: each byte as the server wrote it.
        for n in [3 * RELAY_BUFFER + 17, 1, 0, 1 << 20] {
            let sent = Instant::now();
            client.write_all(&(n as u32).to_be_bytes()).await.unwrap();
            let mut body = vec![0u8; n];
            client.read_exact(&mut body).await.unwrap();
            if n > 0 {
                assert!(
                    sent.elapsed() >= delay,
                    "a request of {n} bytes was not delayed"
                );
            }
            assert!(
                body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
                "the response of {n} bytes arrived altered"
            );
        }
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after the last response");
    }
}

//! Kafka brokers behind security proxies: [`TlsBroker`] and [`ProxiedBroker::sasl`].
//!
//! A Kafka broker reachable only over TLS: a tansu of the test's own that advertises a
//! TLS-terminating proxy (`dev/kafka-proxy.py`, Python's standard library) in front of it, with a
//! throwaway CA and a server certificate for `127.0.0.1` made by the `openssl` command.
//!
//! ```text
//!  client ──TLS──► proxy 127.0.0.1:<port> ──plain──► tansu (advertises the proxy)
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::OwnBroker;
use crate::{free_port, service};

/// The broker behind its TLS proxy; both stop when it is dropped.
pub struct TlsBroker {
    proxied: ProxiedBroker,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsBroker {
    /// Makes the certificates, starts the broker and the proxy; returns once the proxy accepts
    /// connections.
    pub fn start(name: &str) -> TlsBroker {
        let dir = tempfile::tempdir().unwrap();
        let subject_ca = "/CN=kappa-test-ca";
        openssl(
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                "ca.pem", "-days", "2", "-subj", subject_ca,
            ],
            dir.path(),
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            dir.path(),
        );
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
            dir.path(),
        );
        let cert = dir.path().join("server.pem").display().to_string();
        let key = dir.path().join("server.key").display().to_string();
        let proxied = ProxiedBroker::start(name, &["--cert", &cert, "--key", &key], dir);
        TlsBroker { proxied }
    }

    /// `host:port` clients connect to (TLS).
    pub fn address(&self) -> String {
        self.proxied.address()
    }

    /// The CA that signed the server certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.proxied.dir.path().join("ca.pem")
    }

    /// The broker behind the proxy.
    pub fn broker(&self) -> &OwnBroker {
        self.proxied.broker()
    }
}

/// A tansu of the test's own behind `dev/kafka-proxy.py`, which it advertises, so that every
/// connection a client makes goes through the proxy; both stop when it is dropped.
pub struct ProxiedBroker {
    broker: OwnBroker,
    proxy: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ProxiedBroker {
    /// A broker that only serves clients authenticated with SASL/PLAIN as `user` with
    /// `password`: the proxy answers the SASL handshake and authentication itself (tansu keeps
    /// no SASL users across restarts).
    ///
    /// ```text
    ///  client ──SASL_PLAINTEXT──► proxy 127.0.0.1:<port> ──plain──► tansu (advertises the proxy)
    /// ```
    pub fn sasl(name: &str, user: &str, password: &str) -> ProxiedBroker {
        let dir = tempfile::tempdir().unwrap();
        ProxiedBroker::start(name, &["--user", user, "--password", password], dir)
    }

    /// Starts the broker and the proxy with `args` (TLS, SASL), the proxy's log in `dir`;
    /// returns once the proxy accepts connections.
    fn start(name: &str, args: &[&str], dir: tempfile::TempDir) -> ProxiedBroker {
        let port = free_port();
        let broker = OwnBroker::start_advertising(name, Some(format!("127.0.0.1:{port}")));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/kafka-proxy.py");
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let mut proxy = Command::new(service("KAPPA_PYTHON"))
            .arg(&script)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &broker.address()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = proxy.kill();
                panic!("{} did not listen on 127.0.0.1:{port}", script.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ProxiedBroker {
            broker,
            proxy,
            port,
            dir,
        }
    }

    /// `host:port` clients connect to (the proxy).
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker behind the proxy.
    pub fn broker(&self) -> &OwnBroker {
        &self.broker
    }
}

impl Drop for ProxiedBroker {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

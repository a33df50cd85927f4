//! The metrics endpoint of a running `kappa run` or `kappa replay`: point `[metrics] listen` at
//! a free port, `GET` its paths, read samples from the exposition, lint it with promtool; and
//! stopping the process with SIGTERM.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, last_line};

/// Points the scene config's `[metrics] listen` at a free port, followed by `extra` `[metrics]`
/// lines; returns the address to scrape.
pub fn serve_metrics(config: &Path, extra: &str) -> String {
    let addr = format!("127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{addr}\"\n{extra}"),
    );
    std::fs::write(config, text).unwrap();
    addr
}

/// `GET path` on `addr`: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// The sum of every sample of `metric` (all label sets) in a Prometheus text exposition.
pub fn sample_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The value of the first sample of `metric` whose labels include every `label="value"` of
/// `labels`, as written.
pub fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<String> {
    text.lines()
        .find(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.to_string())
}

/// `promtool check metrics` accepts the exposition (promtool from `KAPPA_PROMTOOL` or `PATH`;
/// skipped with a note when it is missing, except in CI).
pub fn assert_promtool_accepts(metrics: &str) {
    let promtool = std::env::var("KAPPA_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut check = match std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool ({promtool}) is needed in CI: {e}"
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!("promtool not found ({e}); skipping the lint");
            }
            return;
        }
    };
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGTERM and returns the exit code and the JSON summary (the last line of stdout, if
/// stdout is still piped and holds one).
pub fn terminate(mut child: Child) -> (Option<i32>, Value) {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait_with_timeout(&mut child, Duration::from_secs(60));
    let summary = serde_json::from_slice(last_line(&out.0)).unwrap_or(Value::Null);
    (out.1, summary)
}

/// Waits for `child` to exit (killing it and failing after `timeout`); its remaining stdout and
/// exit code.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> (Vec<u8>, Option<i32>) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = Vec::new();
            if let Some(mut out) = child.stdout.take() {
                std::io::Read::read_to_end(&mut out, &mut stdout).unwrap();
            }
            return (stdout, status.code());
        }
        if started.elapsed() > timeout {
            child.kill().unwrap();
            panic!("kappa did not exit within {timeout:?}; see its log in the scene");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

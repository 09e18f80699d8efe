//! Test support: starts a real nats-server for the core's tests against a server (the unit
//! tests include it as a module, the integration tests in tests/ by path).
#![cfg(test)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary `npm run nats-server` provisions ($NATS_SERVER_BIN, PATH, or .cache/).
fn nats_server_bin() -> String {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return bin;
    }
    let cached = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.cache/nats-server-2.15.1/nats-server"
    );
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = format!("{dir}/nats-server");
        if std::path::Path::new(&candidate).exists() {
            return candidate;
        }
    }
    assert!(
        std::path::Path::new(cached).exists(),
        "no nats-server: run `npm run nats-server` first (npm test does)"
    );
    cached.to_string()
}

/// A nats-server with JetStream on a free 127.0.0.1 port and a temporary store; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    port: u16,
    store: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Starts nats-server and waits for its "Server is ready" line. Polling the port is not enough:
/// a connect to a free loopback port can connect to itself (TCP simultaneous open) and then
/// holds the port the server was about to bind.
fn spawn(port: u16, store: &std::path::Path) -> Result<Child, String> {
    let mut child = Command::new(nats_server_bin())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nats-server starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads the log to its end, so the server never blocks on a full pipe.
        let mut log = String::new();
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.push_str(&line);
            log.push('\n');
            if line.contains("Server is ready") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
            }
        }
        if let Some(tx) = ready.take() {
            let _ = tx.send(Err(log));
        }
    });
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => Ok(child),
        Ok(Err(log)) => {
            let _ = child.wait();
            Err(format!(
                "nats-server on port {port} exited before it was ready:\n{log}"
            ))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "nats-server on port {port} was not ready within 30 s"
            ))
        }
    }
}

impl Server {
    /// Kills the server (SIGKILL): clients see the connection drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, &self.store).unwrap_or_else(|failure| panic!("{failure}"));
    }
}

pub fn start_server() -> Server {
    let mut failures = Vec::new();
    // A port found free can be taken before the server binds it: then try another.
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store =
            std::env::temp_dir().join(format!("rxdb-nats-rust-{}-{port}", std::process::id()));
        match spawn(port, &store) {
            Ok(child) => {
                return Server {
                    child,
                    url: format!("nats://127.0.0.1:{port}"),
                    port,
                    store,
                }
            }
            Err(failure) => failures.push(failure),
        }
    }
    panic!("nats-server did not start:\n{}", failures.join("\n"));
}

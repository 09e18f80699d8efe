//! Test support: starts a real nats-server for the core's tests against a server (the unit
//! tests include it as a module, the integration tests in tests/ by path).
#![cfg(test)]
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn spawn(port: u16, store: &std::path::Path) -> Child {
    let child = Command::new(nats_server_bin())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
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
        self.child = spawn(self.port, &self.store);
    }
}

pub fn start_server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = std::env::temp_dir().join(format!("rxdb-nats-rust-{}-{port}", std::process::id()));
    Server {
        child: spawn(port, &store),
        url: format!("nats://127.0.0.1:{port}"),
        port,
        store,
    }
}

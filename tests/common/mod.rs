//! What the integration tests share: a real nats-server (the project's own lookup, see
//! src/test_server.rs) and replications of it.
#![allow(dead_code)]

#[path = "../../src/test_server.rs"]
mod test_server;

pub use test_server::{start_server, Server};

use rxdb_nats_native::options::ReplicationOptions;
use rxdb_nats_native::push::Write;
use rxdb_nats_native::replication::{Pushed, Replication};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stream name no other test of this process uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A replication of stream `stream` with documents on `<stream>.docs.<id>`, key `id`.
pub fn stream_replication(server: &Server, stream: &str) -> Arc<Replication> {
    replication(&format!(
        r#"{{"streamName":"{stream}","subjectPrefix":"{stream}.docs","primaryPath":"id",
            "connection":{{"servers":"{}","reconnectTimeWait":100}}}}"#,
        server.url
    ))
}

/// A replication of KV bucket `bucket`, key `id`.
pub fn kv_replication(server: &Server, bucket: &str) -> Arc<Replication> {
    replication(&format!(
        r#"{{"kv":{{"bucket":"{bucket}"}},"primaryPath":"id","connection":{{"servers":"{}"}}}}"#,
        server.url
    ))
}

fn replication(json: &str) -> Arc<Replication> {
    let options = ReplicationOptions::from_json(json).expect("valid options");
    Arc::new(Replication::new(options, Duration::from_millis(200)))
}

/// A write of document `id` (JSON, RxDB's `_deleted`) expecting its subject at `expected`.
pub fn write(id: &str, json: serde_json::Value, expected: u64) -> Write {
    Write {
        id: id.to_string(),
        body: serde_json::to_vec(&json).unwrap().into(),
        expected_sequence: expected,
    }
}

/// The documents of a pulled batch.
pub fn documents(json: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(json).expect("a JSON array")
}

/// Retries `attempt` until it gives `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replication like `stream_replication` whose deletions expire after `ttl_ms`.
pub fn ttl_replication(server: &Server, stream: &str, ttl_ms: u64) -> Arc<Replication> {
    replication(&format!(
        r#"{{"streamName":"{stream}","subjectPrefix":"{stream}.docs","primaryPath":"id",
            "streamConfig":{{"tombstoneTtl":{ttl_ms}}},"connection":{{"servers":"{}"}}}}"#,
        server.url
    ))
}

/// A replication like `kv_replication` whose deletions expire after `ttl_ms`.
pub fn kv_ttl_replication(server: &Server, bucket: &str, ttl_ms: u64) -> Arc<Replication> {
    replication(&format!(
        r#"{{"kv":{{"bucket":"{bucket}"}},"primaryPath":"id","streamConfig":{{"tombstoneTtl":{ttl_ms}}},
            "connection":{{"servers":"{}"}}}}"#,
        server.url
    ))
}

/// The sequences of a push that wrote every document (panics on any other outcome).
pub fn written(pushed: &[Pushed]) -> Vec<u64> {
    pushed
        .iter()
        .map(|p| match p {
            Pushed::Written(seq) => *seq,
            other => panic!("expected a write, got {other:?}"),
        })
        .collect()
}

/// Writes document `x` twice, then deletes it as a client that saw only the first revision
/// would: the outcome of that deletion.
pub async fn stale_deletion(r: &Replication) -> Vec<Pushed> {
    let first = written(
        &r.publish(
            vec![write("x", serde_json::json!({"id": "x", "v": 1}), 0)],
            0,
        )
        .await
        .unwrap(),
    )[0];
    r.publish(
        vec![write("x", serde_json::json!({"id": "x", "v": 2}), first)],
        0,
    )
    .await
    .unwrap();
    r.publish(
        vec![write(
            "x",
            serde_json::json!({"id": "x", "_deleted": true}),
            first,
        )],
        0,
    )
    .await
    .unwrap()
}

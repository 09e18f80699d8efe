//! Deletions that expire (`streamConfig.tombstoneTtl`) against a real nats-server (>= 2.11).

mod common;

use common::*;
use futures::StreamExt;
use rxdb_nats_native::replication::{Pushed, Replication};
use serde_json::json;
use std::time::Duration;

/// Writes document `id`, then deletes it on top of that revision.
async fn create_then_delete(r: &Replication, id: &str) {
    let seq = written(
        &r.publish(vec![write(id, json!({"id": id, "v": 1}), 0)], 0)
            .await
            .unwrap(),
    )[0];
    r.publish(vec![write(id, json!({"id": id, "_deleted": true}), seq)], 0)
        .await
        .unwrap();
}

/// The messages stream `name` holds on `subject`, read with async-nats.
async fn messages_on(server: &Server, name: &str, subject: &str) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    let stream = js.get_stream(name).await.unwrap();
    let mut subjects = stream.info_with_subjects(subject).await.unwrap();
    let mut count = 0;
    while let Some(entry) = subjects.next().await {
        let (name, messages) = entry.unwrap();
        if name == subject {
            count += messages as u64;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_replaces_the_history_of_its_document_and_then_expires() {
    let server = start_server();
    let name = unique("ttl");
    let r = ttl_replication(&server, &name, 1000);
    let first = written(
        &r.publish(vec![write("a", json!({"id": "a", "v": 1}), 0)], 0)
            .await
            .unwrap(),
    )[0];
    let second = written(
        &r.publish(vec![write("a", json!({"id": "a", "v": 2}), first)], 0)
            .await
            .unwrap(),
    )[0];
    r.publish(vec![write("b", json!({"id": "b"}), 0)], 0)
        .await
        .unwrap();
    let subject = format!("{name}.docs.a");
    assert_eq!(messages_on(&server, &name, &subject).await, 2);
    r.publish(
        vec![write("a", json!({"id": "a", "_deleted": true}), second)],
        0,
    )
    .await
    .unwrap();
    // The tombstone rolled up both revisions (whether or not it expired already: a loaded
    // machine may take longer than the TTL to look), then it expires too.
    let js = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    let stream = js.get_stream(&name).await.unwrap();
    for revision in [first, second] {
        assert!(
            stream.get_raw_message(revision).await.is_err(),
            "#{revision} rolled up"
        );
    }
    assert!(messages_on(&server, &name, &subject).await <= 1);
    eventually(
        Duration::from_secs(10),
        "the tombstone to expire",
        || async { (messages_on(&server, &name, &subject).await == 0).then_some(()) },
    )
    .await;
    let fresh = ttl_replication(&server, &name, 1000);
    let batch = fresh.pull(0, 10).await.unwrap();
    assert_eq!(documents(&batch.documents_json), vec![json!({"id": "b"})]);
    r.close().await;
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_on_a_stale_sequence_is_a_conflict_in_both_layouts() {
    // Without a TTL: tests/replication.rs (a_kv_deletion_on_a_stale_sequence_is_a_conflict).
    let server = start_server();
    let name = unique("staledel");
    for r in [
        ttl_replication(&server, &name, 1000),
        kv_ttl_replication(&server, &name, 1000),
    ] {
        // A deletion by a client that saw only the first revision must not win unseen.
        let pushed = stale_deletion(&r).await;
        assert!(matches!(pushed[0], Pushed::Conflict(_)), "{pushed:?}");
        r.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kv_deletion_with_a_ttl_is_a_purge_marker_that_expires() {
    let server = start_server();
    let bucket = unique("kvttl");
    // A TTL no run outlasts, to read the marker; the expiry is checked on a bucket of 1 s below.
    let r = kv_ttl_replication(&server, &bucket, 600_000);
    create_then_delete(&r, "k").await;
    let js = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    let stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
    let marker = stream
        .get_last_raw_message_by_subject(&format!("$KV.{bucket}.k"))
        .await
        .unwrap();
    assert_eq!(
        marker.headers.get("KV-Operation").map(|v| v.as_str()),
        Some("PURGE")
    );
    assert_eq!(
        marker.headers.get("Nats-TTL").map(|v| v.as_str()),
        Some("600s")
    );
    assert_eq!(
        stream.cached_info().state.messages,
        1,
        "the value rolled up"
    );
    r.close().await;

    // The marker expires, and with it the last trace of the key.
    let bucket = unique("kvttl");
    let r = kv_ttl_replication(&server, &bucket, 1000);
    create_then_delete(&r, "k").await;
    eventually(Duration::from_secs(10), "the marker to expire", || async {
        let info = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        (info.cached_info().state.messages == 0).then_some(())
    })
    .await;
    let fresh = kv_ttl_replication(&server, &bucket, 1000);
    assert!(fresh.pull(0, 10).await.unwrap().sequences.is_empty());
    r.close().await;
    fresh.close().await;
}

//! A Replication driven through its Rust API against a real nats-server: what the JS glue
//! relies on, without Node.

mod common;

use common::*;
use rxdb_nats_native::error::ErrorCode;
use rxdb_nats_native::live::LiveEvent;
use rxdb_nats_native::replication::Pushed;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn pushed_documents_are_pulled_by_another_replication_in_batches() {
    let server = start_server();
    let name = unique("pull");
    let writer = stream_replication(&server, &name);
    let writes = (0..5)
        .map(|i| write(&format!("d{i}"), json!({"id": format!("d{i}"), "n": i}), 0))
        .collect();
    assert_eq!(
        written(&writer.publish(writes, 0).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );

    let reader = stream_replication(&server, &name);
    let first = reader.pull(0, 3).await.unwrap();
    assert_eq!(first.sequences, vec![1, 2, 3]);
    assert_eq!(first.checkpoint, 3);
    let rest = reader.pull(first.checkpoint, 3).await.unwrap();
    let docs = documents(&rest.documents_json);
    assert_eq!(
        docs,
        vec![json!({"id": "d3", "n": 3}), json!({"id": "d4", "n": 4})]
    );
    assert_eq!(rest.checkpoint, 5);
    assert!(reader.pull(5, 3).await.unwrap().sequences.is_empty());
    writer.close().await;
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_hands_over_only_the_newest_revision_of_a_document() {
    let server = start_server();
    let r = stream_replication(&server, &unique("newest"));
    let seq = written(
        &r.publish(vec![write("a", json!({"id": "a", "v": 1}), 0)], 0)
            .await
            .unwrap(),
    );
    written(
        &r.publish(vec![write("a", json!({"id": "a", "v": 2}), seq[0])], 0)
            .await
            .unwrap(),
    );
    let batch = r.pull(0, 10).await.unwrap();
    assert_eq!(
        documents(&batch.documents_json),
        vec![json!({"id": "a", "v": 2})]
    );
    assert_eq!((batch.sequences, batch.checkpoint), (vec![2], 2));
    r.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_a_stale_sequence_is_a_conflict_with_the_server_state() {
    let server = start_server();
    let name = unique("conflict");
    let alpha = stream_replication(&server, &name);
    let beta = stream_replication(&server, &name);
    alpha
        .publish(vec![write("x", json!({"id": "x", "by": "alpha"}), 0)], 0)
        .await
        .unwrap();
    // beta creates the same id without having seen alpha's: the server refuses it.
    let pushed = beta
        .publish(vec![write("x", json!({"id": "x", "by": "beta"}), 0)], 0)
        .await
        .unwrap();
    let Pushed::Conflict(state) = &pushed[0] else {
        panic!("expected a conflict, got {pushed:?}")
    };
    assert_eq!(state.sequence, 1);
    let body: serde_json::Value = serde_json::from_slice(state.body.as_ref().unwrap()).unwrap();
    assert_eq!(body, json!({"id": "x", "by": "alpha"}));
    // Written on the sequence read, it goes through; the stale one conflicts again.
    let pushed = beta
        .publish(vec![write("x", json!({"id": "x", "by": "beta"}), 1)], 0)
        .await
        .unwrap();
    assert_eq!(written(&pushed), vec![2]);
    let pushed = alpha
        .publish(vec![write("x", json!({"id": "x", "by": "alpha2"}), 1)], 0)
        .await
        .unwrap();
    assert!(matches!(pushed[0], Pushed::Conflict(_)), "{pushed:?}");
    assert_eq!(alpha.stats().await.conflicts, 1);
    let states = alpha
        .read_current(&["x".into(), "none".into()])
        .await
        .unwrap();
    assert_eq!(states[0].as_ref().map(|s| s.sequence), Some(2));
    assert!(states[1].is_none());
    alpha.close().await;
    beta.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_changes_of_another_replication_arrive_until_the_feed_stops() {
    let server = start_server();
    let name = unique("live");
    let reader = stream_replication(&server, &name);
    let writer = stream_replication(&server, &name);
    // The feed starts where the next pull that reaches the stream's end stops, as RxDB pulls
    // when it starts.
    reader.start_live(10);
    assert!(reader.pull(0, 10).await.unwrap().sequences.is_empty());
    writer
        .publish(vec![write("l", json!({"id": "l"}), 0)], 0)
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), reader.next_live())
        .await
        .expect("a live event");
    let Some(LiveEvent::Batch { batch, .. }) = event else {
        panic!("expected a batch, got {event:?}")
    };
    assert_eq!(documents(&batch.documents_json), vec![json!({"id": "l"})]);
    assert_eq!(batch.checkpoint, 1);
    reader.stop_live();
    assert!(reader.next_live().await.is_none(), "a stopped feed ends");
    reader.close().await;
    writer.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kv_layout_stores_values_and_delete_markers_in_a_bucket() {
    let server = start_server();
    let bucket = unique("people");
    let r = kv_replication(&server, &bucket);
    let pushed = r
        .publish(
            vec![write(
                "a b",
                json!({"id": "a b", "name": "A", "_deleted": false}),
                0,
            )],
            0,
        )
        .await
        .unwrap();
    let seq = written(&pushed)[0];
    // The value on the bucket's subject is the document without RxDB's flag.
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
    let stored = stream
        .get_last_raw_message_by_subject(&format!("$KV.{bucket}.=YSBi"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored.payload).unwrap(),
        json!({"id": "a b", "name": "A"})
    );
    // A deletion is a delete marker, pulled as a deleted document.
    r.publish(
        vec![write(
            "a b",
            json!({"id": "a b", "name": "A", "_deleted": true}),
            seq,
        )],
        0,
    )
    .await
    .unwrap();
    let marker = stream
        .get_last_raw_message_by_subject(&format!("$KV.{bucket}.=YSBi"))
        .await
        .unwrap();
    assert!(marker.payload.is_empty());
    assert_eq!(
        marker.headers.get("KV-Operation").map(|v| v.as_str()),
        Some("DEL")
    );
    let batch = kv_replication(&server, &bucket).pull(0, 10).await.unwrap();
    assert_eq!(
        documents(&batch.documents_json),
        vec![json!({"id": "a b", "_deleted": true})]
    );
    let states = r.read_current(&["a b".into()]).await.unwrap();
    assert!(states[0].as_ref().unwrap().marker);
    r.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kv_create_replaces_a_delete_marker_without_a_conflict() {
    let server = start_server();
    let r = kv_replication(&server, &unique("recreate"));
    let seq = written(
        &r.publish(vec![write("k", json!({"id": "k"}), 0)], 0)
            .await
            .unwrap(),
    )[0];
    r.publish(
        vec![write("k", json!({"id": "k", "_deleted": true}), seq)],
        0,
    )
    .await
    .unwrap();
    // A create (expecting nothing) meets the marker: written on it, as kv.create does.
    let pushed = r
        .publish(vec![write("k", json!({"id": "k", "v": 2}), 0)], 0)
        .await
        .unwrap();
    assert_eq!(written(&pushed), vec![3]);
    let batch = r.pull(0, 10).await.unwrap();
    assert_eq!(
        documents(&batch.documents_json),
        vec![json!({"id": "k", "v": 2, "_deleted": false})]
    );
    r.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kv_deletion_on_a_stale_sequence_is_a_conflict() {
    let server = start_server();
    let r = kv_replication(&server, &unique("staledel"));
    // A client that saw only the first revision deletes: the newer revision must not go unseen.
    let pushed = stale_deletion(&r).await;
    assert!(matches!(pushed[0], Pushed::Conflict(_)), "{pushed:?}");
    let batch = r.pull(0, 10).await.unwrap();
    assert_eq!(
        documents(&batch.documents_json),
        vec![json!({"id": "x", "v": 2, "_deleted": false})]
    );
    r.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_skipped_and_reported_once_while_others_arrive() {
    let server = start_server();
    let name = unique("malformed");
    let r = stream_replication(&server, &name);
    r.publish(vec![write("ok1", json!({"id": "ok1"}), 0)], 0)
        .await
        .unwrap();
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish(format!("{name}.docs.bad"), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    r.publish(vec![write("ok2", json!({"id": "ok2"}), 0)], 0)
        .await
        .unwrap();
    let batch = r.pull(0, 10).await.unwrap();
    assert_eq!(
        documents(&batch.documents_json),
        vec![json!({"id": "ok1"}), json!({"id": "ok2"})]
    );
    assert_eq!(batch.checkpoint, 3);
    assert_eq!(batch.skipped.len(), 1);
    assert_eq!(batch.skipped[0].code, ErrorCode::MalformedMessage);
    assert_eq!(batch.skipped[0].sequence, Some(2));
    // Read again from the start: the same message is not reported twice.
    let again = stream_replication(&server, &name);
    assert_eq!(
        again.pull(0, 10).await.unwrap().skipped.len(),
        1,
        "a new replication reports it"
    );
    assert!(
        r.pull(0, 10).await.unwrap().skipped.is_empty(),
        "reported once per replication"
    );
    r.close().await;
    again.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replication_goes_on_after_its_server_restarts_and_loses_nothing() {
    let mut server = start_server();
    let name = unique("restart");
    let r = stream_replication(&server, &name);
    r.publish(vec![write("before", json!({"id": "before"}), 0)], 0)
        .await
        .unwrap();
    server.kill();
    let during = r
        .publish(vec![write("during", json!({"id": "during"}), 0)], 0)
        .await;
    if let Err(e) = &during {
        assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    }
    server.restart();
    // The same replication writes again once it reconnected (the failed write is retried, as RxDB does).
    eventually(Duration::from_secs(30), "a write after the restart", || {
        let r = r.clone();
        async move {
            let pushed = r
                .publish(vec![write("during", json!({"id": "during"}), 0)], 0)
                .await
                .ok()?;
            match &pushed[0] {
                Pushed::Written(_) | Pushed::Conflict(_) => Some(()),
                Pushed::Rejected(e) => panic!("rejected: {e:?}"),
            }
        }
    })
    .await;
    let batch = eventually(Duration::from_secs(30), "a pull after the restart", || {
        let r = r.clone();
        async move { r.pull(0, 10).await.ok() }
    })
    .await;
    assert_eq!(
        documents(&batch.documents_json),
        vec![json!({"id": "before"}), json!({"id": "during"})]
    );
    r.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_close_every_call_says_the_replication_was_cancelled() {
    let server = start_server();
    let r = stream_replication(&server, &unique("closed"));
    r.pull(0, 1).await.unwrap();
    r.close().await;
    let err = r.pull(0, 1).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Closed);
    let err = r
        .publish(vec![write("a", json!({"id": "a"}), 0)], 0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Closed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_after_purged_messages_says_so_and_names_the_documents_gone() {
    let server = start_server();
    let name = unique("removed");
    let r = stream_replication(&server, &name);
    let writes = ["a", "b", "c"]
        .iter()
        .map(|id| write(id, json!({"id": id}), 0))
        .collect();
    assert_eq!(written(&r.publish(writes, 0).await.unwrap()), vec![1, 2, 3]);
    // Read up to 1; then b's message (2) leaves the stream unread, and c is updated.
    let first = r.pull(0, 1).await.unwrap();
    assert_eq!(first.checkpoint, 1);
    assert!(!first.removed, "a fresh pull has nothing to reconcile");
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(&name).await.unwrap();
    stream
        .purge()
        .filter(format!("{name}.docs.b"))
        .await
        .unwrap();
    // A client that stored checkpoint 1 (a new cursor: `r` read ahead past it already).
    let back = stream_replication(&server, &name);
    let after_gap = back.pull(1, 10).await.unwrap();
    assert!(after_gap.removed, "message 2 was removed unread");
    assert_eq!(after_gap.sequences, vec![3]);
    // Nothing was removed after 3: no reconciliation.
    assert!(!back.pull(3, 10).await.unwrap().removed);
    // A removal at the tail (the newest messages) shows too.
    let pushed = r
        .publish(vec![write("d", json!({"id": "d"}), 0)], 0)
        .await
        .unwrap();
    assert_eq!(written(&pushed), vec![4]);
    stream
        .purge()
        .filter(format!("{name}.docs.d"))
        .await
        .unwrap();
    assert!(
        r.pull(3, 10).await.unwrap().removed,
        "message 4 was removed unread"
    );

    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let (missing, last) = back.missing_on_stream(&ids).await.unwrap();
    assert_eq!(missing, vec!["b".to_string(), "d".to_string()]);
    assert_eq!(last, 4);
    assert_eq!(back.stats().await.resyncs, 1);
    r.close().await;
    back.close().await;
}

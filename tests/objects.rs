//! Attachments in the Object Store, through a Replication's Rust API against a real nats-server:
//! upload on push, checked download on pull, and the cleanup of unreferenced objects.

mod common;

use common::*;
use rxdb_nats_native::attachments::{AttachmentToEncode, DocumentToEncode, ObjectRef, Source};
use rxdb_nats_native::error::ErrorCode;
use rxdb_nats_native::objects::{Encoded, Fetched, WantedObject};
use rxdb_nats_native::push::Write;
use rxdb_nats_native::replication::{Pushed, Replication};
use serde_json::json;
use std::time::Duration;

/// Document `id` with one attachment `clip.bin` whose content is the first buffer.
fn with_clip(id: &str) -> DocumentToEncode {
    DocumentToEncode {
        id: id.into(),
        body: json!({"id": id, "_attachments": {"clip.bin": {"length": 1, "type": "x"}}})
            .to_string(),
        attachments: vec![AttachmentToEncode {
            id: "clip.bin".into(),
            source: Source::Buffer(0),
        }],
    }
}

/// Encodes `doc` with `data` and publishes it expecting `expected`; the message's reference.
async fn push_clip(r: &Replication, id: &str, data: &[u8], expected: u64) -> (u64, ObjectRef) {
    let encoded = r
        .encode_attachments(vec![with_clip(id)], &[data])
        .await
        .unwrap();
    let [Encoded::Body(body)] = &encoded[..] else {
        panic!("not encoded: {encoded:?}");
    };
    let reference: ObjectRef = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(body).unwrap()["_attachments_refs"]["clip.bin"]
            .clone(),
    )
    .expect("the attachment is referenced, not inline");
    let pushed = r
        .publish(
            vec![Write {
                id: id.into(),
                body: body.clone().into_bytes().into(),
                expected_sequence: expected,
            }],
            0,
        )
        .await
        .unwrap();
    let [Pushed::Written(seq)] = pushed[..] else {
        panic!("not written: {pushed:?}");
    };
    (seq, reference)
}

fn wanted(id: &str, sequence: u64, reference: &ObjectRef) -> WantedObject {
    WantedObject {
        document_id: id.into(),
        attachment_id: "clip.bin".into(),
        sequence: Some(sequence),
        reference: reference.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_attachment_goes_through_the_object_store_and_comes_back_checked() {
    let server = start_server();
    let name = unique("objects");
    let writer = stream_replication(&server, &name);
    let data: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    let (seq, reference) = push_clip(&writer, "a", &data, 0).await;
    assert_eq!(reference.size, data.len() as u64);
    assert_eq!(reference.bucket, format!("{name}_attachments"));
    assert_eq!(
        writer.stats().await.attachment_bytes_pushed,
        data.len() as u64
    );

    // The same content again is one object: not uploaded a second time.
    let (_, again) = push_clip(&writer, "b", &data, 0).await;
    assert_eq!(again, reference);
    assert_eq!(
        writer.stats().await.attachment_bytes_pushed,
        data.len() as u64
    );

    let reader = stream_replication(&server, &name);
    let batch = reader.pull(0, 10).await.unwrap();
    assert_eq!(batch.sequences.len(), 2);
    let fetched = reader
        .fetch_attachments(&[wanted("a", seq, &reference)])
        .await
        .unwrap();
    let [Fetched::Data(got)] = &fetched[..] else {
        panic!("not fetched: {fetched:?}");
    };
    assert!(got == &data, "the content differs");
    writer.close().await;
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreferenced_objects_are_removed_and_their_old_references_are_superseded() {
    let server = start_server();
    let name = unique("cleanup");
    let r = stream_replication(&server, &name);
    let kept: Vec<u8> = vec![1; 300_000];
    let dropped: Vec<u8> = vec![2; 300_000];
    push_clip(&r, "kept", &kept, 0).await;
    let (old_seq, old_ref) = push_clip(&r, "changed", &dropped, 0).await;
    // A newer revision of "changed" without attachments: its object is referenced no more.
    let pushed = r
        .publish(vec![write("changed", json!({"id": "changed"}), old_seq)], 0)
        .await
        .unwrap();
    assert!(matches!(pushed[..], [Pushed::Written(_)]), "{pushed:?}");

    let report = r
        .remove_unreferenced_attachments(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (report.objects, report.referenced, report.removed),
        (2, 1, 1)
    );
    assert_eq!(report.removed_bytes, dropped.len() as u64);

    // The removed object's old message was replaced: no error, the newer revision wins.
    let fetched = r
        .fetch_attachments(&[wanted("changed", old_seq, &old_ref)])
        .await
        .unwrap();
    assert!(matches!(fetched[..], [Fetched::Superseded]), "{fetched:?}");
    // Read as the current state (no sequence), it is missing, by name.
    let current = WantedObject {
        sequence: None,
        ..wanted("changed", old_seq, &old_ref)
    };
    let fetched = r.fetch_attachments(&[current]).await.unwrap();
    let [Fetched::Failed(e)] = &fetched[..] else {
        panic!("a removed object was fetched: {fetched:?}");
    };
    assert_eq!(e.code, ErrorCode::AttachmentMissing);
    assert_eq!(e.document_id.as_deref(), Some("changed"));
    assert!(e.message.contains("clip.bin"), "{}", e.message);
    r.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_to_another_bucket_is_reported_not_read() {
    let server = start_server();
    let r = stream_replication(&server, &unique("foreign"));
    let foreign = ObjectRef::for_content("someone_elses", b"data");
    let fetched = r
        .fetch_attachments(&[wanted("a", 1, &foreign)])
        .await
        .unwrap();
    let [Fetched::Failed(e)] = &fetched[..] else {
        panic!("{fetched:?}");
    };
    assert_eq!(e.code, ErrorCode::AttachmentMissing);
    assert!(e.message.contains("someone_elses"), "{}", e.message);
    assert!(e.message.contains("attachments.bucket"), "{}", e.message);
    r.close().await;
}

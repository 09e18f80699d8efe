//! Push: read the server state of a batch of documents, then write with optimistic concurrency
//! (`expected last subject sequence`), pipelined, awaiting the acknowledgements together.

use crate::batch::DocumentShape;
use crate::connection::Connection;
use crate::direct::{self, BatchRead};
use crate::error::{ErrorCode, ReplicationError, Result};
use crate::layout::Operation;
use crate::stream::Opened;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::ErrorCode as JsCode;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::sync::atomic::Ordering;

/// How many reads of document states run at once.
const READ_CONCURRENCY: usize = 128;
/// Room left in `max_payload` for the subject and expected-sequence header.
pub const HEADER_ALLOWANCE: usize = 128;

/// The server's current state of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentState {
    /// Stream sequence of the document's last message.
    pub sequence: u64,
    /// The body, or `None` when the message there is not a valid document (it may be replaced).
    pub body: Option<Bytes>,
    /// The last message is a delete or purge marker (KV layout): a create may replace it.
    pub marker: bool,
}

/// How to read document states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// One batch direct get per 1,024 documents where the server and stream allow it; a
    /// replica may answer, so the state can be stale (a stale state only costs a retry: the
    /// expected-sequence write then conflicts).
    Batched,
    /// One request per document, answered by the stream leader: always current.
    Fresh,
}

/// Reads the current state of each document (`None` where the server has none).
pub async fn read_current(
    conn: &Connection,
    opened: &Opened,
    shape: &DocumentShape,
    ids: &[String],
    mode: ReadMode,
) -> Result<Vec<Option<CurrentState>>> {
    let stream = &opened.handle;
    if opened.confined {
        return read_through_inbox(conn, stream, shape, ids).await;
    }
    if mode == ReadMode::Batched && batch_get_allowed(conn, opened) {
        let mut states = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(direct::MAX_SUBJECTS) {
            let subjects: Vec<String> = chunk.iter().map(|id| shape.subject_for(id)).collect();
            let name = &shape.layout.stream_name();
            match direct::last_messages(&conn.client, name, &subjects).await {
                Ok(BatchRead::Found(mut found)) => {
                    for subject in &subjects {
                        states.push(found.remove(subject).map(|(sequence, headers, payload)| {
                            state_of(
                                shape,
                                subject,
                                sequence,
                                shape.layout.operation(headers.as_ref()),
                                &payload,
                            )
                        }));
                    }
                }
                Ok(BatchRead::Unsupported) => {
                    conn.batch_get_unsupported.store(true, Ordering::Relaxed);
                    return read_singly(stream, shape, ids).await;
                }
                Err(e) => {
                    return Err(ReplicationError::unavailable(
                        "reading the server state of a batch of documents",
                        &*e,
                    ))
                }
            }
        }
        return Ok(states);
    }
    read_singly(stream, shape, ids).await
}

fn batch_get_allowed(conn: &Connection, stream: &Opened) -> bool {
    stream.allow_direct()
        && !conn.batch_get_unsupported.load(Ordering::Relaxed)
        && direct::server_supports_batch_get(&conn.client.server_info().version)
}

/// A tenant's reads: one consumer per document pushing its newest message into the tenant's
/// inbox (a tenant may not use direct or stream gets: a direct get's reply subject can be made
/// into an API request, and a stream get reads any sequence).
async fn read_through_inbox(
    conn: &Connection,
    stream: &Stream<()>,
    shape: &DocumentShape,
    ids: &[String],
) -> Result<Vec<Option<CurrentState>>> {
    let reads: Vec<_> = ids
        .iter()
        .map(|id| async move {
            let subject = shape.subject_for(id);
            let newest = crate::delivery::newest_on(conn, stream, &subject)
                .await
                .map_err(|e| e.with_document(id))?;
            let Some(message) = newest else {
                return Ok(None);
            };
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            Ok(Some(state_of(
                shape,
                &subject,
                sequence,
                shape.layout.operation(message.headers.as_ref()),
                &message.payload,
            )))
        })
        .collect();
    futures::stream::iter(reads)
        .buffered(INBOX_READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Reads through the inbox at once: each creates a consumer, which costs the server more than
/// a get.
const INBOX_READ_CONCURRENCY: usize = 32;

async fn read_singly(
    stream: &Stream<()>,
    shape: &DocumentShape,
    ids: &[String],
) -> Result<Vec<Option<CurrentState>>> {
    let reads: Vec<_> = ids.iter().map(|id| read_one(stream, shape, id)).collect();
    futures::stream::iter(reads)
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

async fn read_one(
    stream: &Stream<()>,
    shape: &DocumentShape,
    id: &str,
) -> Result<Option<CurrentState>> {
    let subject = shape.subject_for(id);
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => Ok(Some(state_of(
            shape,
            &subject,
            message.sequence,
            shape.layout.operation(Some(&message.headers)),
            &message.payload,
        ))),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(ReplicationError::unavailable(
            &format!("reading the server state of document {id:?}"),
            &e,
        )
        .with_document(id)),
    }
}

fn state_of(
    shape: &DocumentShape,
    subject: &str,
    sequence: u64,
    op: Operation,
    payload: &Bytes,
) -> CurrentState {
    CurrentState {
        sequence,
        body: shape
            .decode(subject, sequence, op, payload)
            .ok()
            .map(|d| d.body),
        marker: op.is_marker(),
    }
}

/// One document to write, and the sequence its subject must be at (0: must not exist yet).
#[derive(Debug, Clone)]
pub struct Write {
    pub id: String,
    /// The message body, as `Layout::payload_of` makes it from the JSON document.
    pub body: Bytes,
    pub expected_sequence: u64,
}

/// What became of one write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Stored at this stream sequence.
    Written(u64),
    /// Someone else wrote the document first: RxDB must resolve against the server state.
    Conflict,
    /// This document cannot be written at all; the others went on.
    Rejected(ReplicationError),
}

/// Publishes every write at once and awaits the acknowledgements together.
/// A transient failure of any write fails the call (RxDB retries the batch).
pub async fn publish_all(
    conn: &Connection,
    shape: &DocumentShape,
    writes: &[Write],
) -> Result<Vec<WriteOutcome>> {
    let max_payload = conn.max_payload();
    // A link lost before the acknowledgements came swallowed them: waiting out their timeout
    // would only delay the retry.
    let mut losses = conn.losses();
    losses.mark_unchanged();
    let mut pending = Vec::with_capacity(writes.len());
    for write in writes {
        if write.body.len() + HEADER_ALLOWANCE > max_payload {
            pending.push(Err(too_large(write, max_payload)));
            continue;
        }
        let subject = shape.subject_for(&write.id);
        let mut message =
            async_nats::jetstream::message::PublishMessage::build().payload(write.body.clone());
        if let Some(headers) = shape.layout.write_headers(&write.body) {
            message = message.headers(headers);
        }
        // After `headers`, which replaces the whole map: every write, deletes too, is checked.
        let message = message.expected_last_subject_sequence(write.expected_sequence);
        match conn.jetstream.send_publish(subject, message).await {
            Ok(ack) => pending.push(Ok(ack)),
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                pending.push(Err(too_large(write, max_payload)))
            }
            Err(e) => return Err(publish_failed(write, &e)),
        }
    }
    let acks = futures::future::join_all(pending.into_iter().map(|p| async move {
        match p {
            Ok(ack) => Ok(ack.await),
            Err(rejected) => Err(rejected),
        }
    }));
    let acks = tokio::select! {
        acks = acks => acks,
        _ = losses.changed() => return Err(link_lost(writes)),
    };
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut failure = None;
    for (write, ack) in writes.iter().zip(acks) {
        outcomes.push(match ack {
            Err(rejected) => WriteOutcome::Rejected(rejected),
            Ok(Ok(ack)) => WriteOutcome::Written(ack.sequence),
            Ok(Err(e)) if is_conflict(&e) => WriteOutcome::Conflict,
            Ok(Err(e)) => {
                failure.get_or_insert_with(|| publish_failed(write, &e));
                continue;
            }
        });
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(outcomes),
    }
}

/// "wrong last sequence" (10071), and its clustered variant (10164) that a second in-flight
/// write to the same subject gets on replicated streams.
fn is_conflict(err: &async_nats::jetstream::context::PublishError) -> bool {
    if err.kind() == PublishErrorKind::WrongLastSequence {
        return true;
    }
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .map(|js| {
            js.error_code() == JsCode::STREAM_WRONG_LAST_SEQUENCE
                || js.error_code() == JsCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        })
        .unwrap_or(false)
}

/// The batch's link was lost before every acknowledgement came: retried like a timeout (each
/// write expects its document's sequence, so one that was stored is not stored twice).
fn link_lost(writes: &[Write]) -> ReplicationError {
    let first = writes.first().map(|w| w.id.as_str()).unwrap_or_default();
    ReplicationError::new(
        crate::error::ErrorCode::Unavailable,
        format!(
            "the link to the NATS server was lost before it acknowledged the batch of {} \
             document(s) starting with {first:?}; the replication retries it (a write that was \
             stored is then seen as stored, never written twice)",
            writes.len()
        ),
    )
    .with_document(first)
}

/// A publish that failed for a reason that may pass; RxDB retries the batch.
fn publish_failed(
    write: &Write,
    err: &async_nats::jetstream::context::PublishError,
) -> ReplicationError {
    let hint = publish_failure_hint(err.kind()).unwrap_or("");
    ReplicationError::unavailable_because(&format!("publishing document {:?}", write.id), err, hint)
        .with_document(&write.id)
}

/// What a failed publish most likely means. A 503 "no responders" (async-nats calls it "no
/// stream found") and a missing acknowledgement are both how a stream leader election looks from
/// the client; whether the write was stored or not, the retry cannot store it twice (it expects
/// the subject's sequence and reads the document back on a conflict).
fn publish_failure_hint(kind: PublishErrorKind) -> Option<&'static str> {
    match kind {
        PublishErrorKind::StreamNotFound => Some(
            " (no JetStream server answered for the subject: in a cluster the stream is probably \
             electing a leader; otherwise the stream was deleted and is created again)",
        ),
        PublishErrorKind::TimedOut => Some(
            " (no acknowledgement in time: in a cluster the stream may be electing a leader; the \
             retry finds out whether the write was stored)",
        ),
        PublishErrorKind::BrokenPipe => Some(
            " (the connection broke; it reconnects by itself, to another server if one is given)",
        ),
        _ => None,
    }
}

fn too_large(write: &Write, max_payload: usize) -> ReplicationError {
    ReplicationError::new(
        ErrorCode::DocumentTooLarge,
        format!(
            "document {:?} was not pushed: it is {} bytes and the server's max_payload is {} \
             bytes. Make the document smaller or raise max_payload in the nats-server config; \
             the other documents were pushed",
            write.id,
            write.body.len(),
            max_payload
        ),
    )
    .with_document(&write.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_symptoms_get_a_hint() {
        for kind in [PublishErrorKind::StreamNotFound, PublishErrorKind::TimedOut] {
            let hint = publish_failure_hint(kind).expect("a hint");
            assert!(hint.contains("electing a leader"), "{kind:?}: {hint}");
        }
        assert!(publish_failure_hint(PublishErrorKind::BrokenPipe).is_some());
    }

    #[test]
    fn other_failures_keep_their_own_text() {
        for kind in [
            PublishErrorKind::WrongLastSequence,
            PublishErrorKind::MaxPayloadExceeded,
            PublishErrorKind::Other,
        ] {
            assert_eq!(publish_failure_hint(kind), None);
        }
    }

    #[test]
    fn a_failed_publish_is_transient_and_names_the_document() {
        let write = Write {
            id: "alice".into(),
            body: Bytes::from_static(b"{}"),
            expected_sequence: 0,
        };
        let err =
            async_nats::jetstream::context::PublishError::new(PublishErrorKind::StreamNotFound);
        let out = publish_failed(&write, &err);
        assert_eq!(out.code, ErrorCode::Unavailable);
        assert_eq!(out.document_id.as_deref(), Some("alice"));
        assert!(
            out.message
                .starts_with("publishing document \"alice\" failed"),
            "{}",
            out.message
        );
        assert!(out.message.contains("electing a leader"), "{}", out.message);
    }
}

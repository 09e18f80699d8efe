#![deny(clippy::all)]
//! N-API surface of rxdb-nats-native: converts and forwards to the core modules, nothing else.
//!
//! Batches cross the boundary as one JSON string each way. Async methods never reject for
//! replication errors: they resolve to `{"ok": ...}` or `{"error": {code, message, ...}}`, and
//! the JS glue turns the latter into an `Error` with a stable `code` (napi-rs async functions
//! cannot reject with a custom code).

pub mod attachments;
pub mod batch;
pub mod connection;
pub mod consumer;
pub mod creds;
pub mod delivery;
pub mod direct;
pub mod error;
pub mod failover;
pub mod kv;
pub mod layout;
pub mod live;
pub mod log;
pub mod objects;
pub mod options;
pub mod pull;
pub mod push;
pub mod replication;
pub mod schema;
pub mod stats;
pub mod stream;
pub mod subject;
pub mod tenant;
#[cfg(test)]
mod test_server;

use batch::{HandedBatch, Modified};
use bytes::Bytes;
use error::ReplicationError;
use futures::FutureExt;
use live::LiveEvent;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use objects::{Encoded, Fetched};
use options::ReplicationOptions;
use replication::{Pushed, Replication};
use serde_json::value::RawValue;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

// Answers are serialized from these types directly: `json!` would parse every document of a
// batch into a `serde_json::Value` (slow, and it fails on deeply nested bodies).
#[derive(serde::Serialize)]
struct Answer<T> {
    ok: T,
}

#[derive(serde::Serialize)]
struct Failure<'a> {
    error: &'a ReplicationError,
}

/// A batch for RxDB: the documents are copied into the JSON text as they are.
#[derive(serde::Serialize)]
struct BatchJson {
    documents: Box<RawValue>,
    /// The stream sequence of each document.
    sequences: Vec<u64>,
    checkpoint: u64,
    skipped: Vec<ReplicationError>,
    /// Messages after the checkpoint were removed unread: reconcile (`missingOnStream`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

/// A live batch for RxDB, with the two moments of its way through native code (epoch ms).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LiveJson {
    batch: BatchJson,
    /// When its first message reached the feed.
    received_at: f64,
    /// When it was written as JSON for the JavaScript thread.
    sent_at: f64,
}

/// Milliseconds since the epoch, the clock `performance.timeOrigin + performance.now()` reads.
fn epoch_ms(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// What `pull.modifier` made of a pulled batch (see `screen_modified`).
#[derive(serde::Deserialize)]
struct ModifiedJson<'a> {
    /// The modifier's output per document; `null` where `failures` says why there is none.
    #[serde(borrow)]
    documents: Vec<Option<&'a RawValue>>,
    ids: Vec<String>,
    sequences: Vec<u64>,
    failures: Vec<Option<FailureJson>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum FailureJson {
    Threw(String),
    NotJson(String),
}

#[derive(serde::Serialize)]
struct StateJson {
    sequence: u64,
    document: Option<Box<RawValue>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum WriteJson {
    Written(u64),
    Conflict(Option<StateJson>),
    Rejected(ReplicationError),
}

#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum EncodedJson {
    /// The body is the string at the same index.
    Body,
    Rejected(ReplicationError),
}

/// Documents encoded for the stream.
#[napi(object, object_from_js = false)]
pub struct EncodedAttachments {
    /// `{"ok":["body" | {"rejected":{code,message,documentId,attachmentId}}]}`, or
    /// `{"error":{..}}` when the call failed as a whole (the push is retried).
    pub outcomes: String,
    /// The body of each document, where its outcome is `body` (empty elsewhere). Plain strings,
    /// not JSON: a body can be most of a megabyte of base64.
    pub bodies: Vec<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum FetchedJson {
    /// The data is the buffer at the same index.
    Data,
    Superseded,
    Error(ReplicationError),
}

/// Objects fetched for pulled documents.
#[napi(object, object_from_js = false)]
pub struct FetchedAttachments {
    /// `{"ok":["data" | "superseded" | {"error":{code,message,documentId,attachmentId}}]}`,
    /// or `{"error":{..}}` when the fetch failed as a whole (retried).
    pub outcomes: String,
    /// The content of each object, where its outcome is `data` (empty elsewhere).
    pub data: Vec<Buffer>,
}

fn ok_json(value: impl serde::Serialize) -> String {
    serde_json::to_string(&Answer { ok: value }).unwrap_or_else(internal)
}

/// Splits results into `{"ok":[outcome...]}` and, beside it, what goes to JS as is (bodies,
/// buffers: too large for JSON), one per result at the same index.
fn outcomes_beside<T, J: serde::Serialize, P>(
    results: Vec<T>,
    split: impl Fn(T) -> (J, P),
) -> (String, Vec<P>) {
    let (outcomes, payloads): (Vec<J>, Vec<P>) = results.into_iter().map(split).unzip();
    (ok_json(outcomes), payloads)
}

/// An argument the glue passes as JSON; a glue bug when it does not parse (answered as
/// `NATS_INTERNAL`).
fn parse_arg<'a, T: serde::Deserialize<'a>>(
    call: &str,
    json: &'a str,
) -> std::result::Result<T, String> {
    serde_json::from_str(json).map_err(|e| internal(format!("{call}(): {e}")))
}

fn error_json(err: &ReplicationError) -> String {
    serde_json::to_string(&Failure { error: err }).unwrap_or_else(internal)
}

/// A `NATS_INTERNAL` answer, written by hand: it is what is left when encoding one failed.
fn internal(e: impl std::fmt::Display) -> String {
    format!(
        r#"{{"error":{{"code":"{}","message":{}}}}}"#,
        error::ErrorCode::Internal.as_str(),
        serde_json::Value::String(e.to_string())
    )
}

/// Runs the future of an exported call; a panic in it becomes `on_panic(message)` (a
/// `NATS_INTERNAL` answer), not the end of the Node process.
async fn guarded<T>(
    call: &str,
    future: impl Future<Output = T>,
    on_panic: impl FnOnce(String) -> T,
) -> T {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(answer) => answer,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            tracing::error!(call, "panic: {message}");
            on_panic(format!(
                "rxdb-nats-native failed inside {call}() ({message}); this is a bug, please \
                 report it. The replication retries the call"
            ))
        }
    }
}

fn batch_json(batch: HandedBatch) -> BatchJson {
    BatchJson {
        documents: raw(batch.documents_json),
        sequences: batch.sequences,
        checkpoint: batch.checkpoint,
        skipped: batch.skipped,
        removed: batch.removed,
    }
}

fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap())
}

/// Turns on logging when `RXDB_NATS_LOG` asks for it, as the addon loads.
#[napi_derive::module_init]
fn init() {
    log::init_from_env();
}

/// Checks `replicateNats()` options; returns `null` or the error as JSON `{code, message}`.
#[napi]
pub fn validate_options(options_json: String) -> Option<String> {
    ReplicationOptions::from_json(&options_json)
        .err()
        .map(|e| serde_json::to_string(&e).unwrap_or_else(internal))
}

/// Shrinks a stream to the newest `maxMsgsPerSubject` (default 1) revisions of each document and
/// bounds it there. Takes `{streamName, connection, maxMsgsPerSubject}` as JSON; resolves
/// `{"ok":{messagesBefore, messagesAfter, maxMsgsPerSubject}}` or `{"error":{..}}`.
#[napi]
pub async fn compact_stream(options_json: String) -> String {
    let compact = async {
        let options = match options::CompactOptions::from_json(&options_json) {
            Ok(options) => options,
            Err(e) => return error_json(&e),
        };
        match stream::compact_with(&options).await {
            Ok(done) => ok_json(done),
            Err(e) => error_json(&e),
        }
    };
    guarded("compactStream", compact, internal).await
}

/// The NATS user permissions of a tenant, from `{streamName, subjectPrefix}` or `{kv:{bucket}}`
/// as JSON: `{"ok":{"publish":{"allow":[..]},"subscribe":{"allow":[..]}}}` or `{"error":{..}}`.
#[napi]
pub fn tenant_permissions(of_json: String) -> String {
    let of = serde_json::from_str::<tenant::TenantOf>(&of_json).map_err(|e| {
        error::ReplicationError::new(
            error::ErrorCode::InvalidOption,
            format!("tenantPermissions(): {e}"),
        )
    });
    match of.and_then(|of| tenant::permissions(&of)) {
        Ok(permissions) => ok_json(permissions),
        Err(e) => error_json(&e),
    }
}

/// The subject that stores document `id` under `prefix` (ids a subject token cannot carry are
/// escaped; see the README).
#[napi]
pub fn subject_for(prefix: String, id: String) -> String {
    subject::subject_for(&prefix, &id)
}

/// The KV key of document `id` in the KV layout (ids a key cannot carry are escaped; see the
/// README's KV layout).
#[napi]
pub fn key_for(id: String) -> String {
    kv::key_for(&id)
}

/// The native half of one replication.
#[napi]
pub struct NativeReplication {
    core: Arc<Replication>,
}

#[napi]
impl NativeReplication {
    /// Options JSON as checked by `validateOptions`; `retryTimeMs` paces the live feed's retries.
    /// Throws an `Error` whose `code` is the error's code (`NATS_INVALID_OPTION`).
    #[napi(constructor)]
    pub fn new(options_json: String, retry_time_ms: u32) -> napi::Result<Self, &'static str> {
        let options = ReplicationOptions::from_json(&options_json)
            .map_err(|e| napi::Error::new(e.code.as_str(), e.message))?;
        let retry = Duration::from_millis(retry_time_ms.max(10) as u64);
        Ok(NativeReplication {
            core: Arc::new(Replication::new(options, retry)),
        })
    }

    /// Resolves `{"ok":{"documents":[...],"sequences":[...],"checkpoint":N,"skipped":[errors]}}`.
    #[napi]
    pub async fn pull(&self, checkpoint: f64, batch_size: u32) -> String {
        let pull = async {
            match self
                .core
                .pull(checkpoint.max(0.0) as u64, batch_size as usize)
                .await
            {
                Ok(batch) => ok_json(batch_json(batch)),
                Err(e) => error_json(&e),
            }
        };
        guarded("pull", pull, internal).await
    }

    /// Checks the documents of a pulled batch as `pull.modifier` made them against the
    /// collection schema. Takes `{"documents":[..|null],"ids":[..],"sequences":[..],
    /// "failures":[null|{"threw":msg}|{"notJson":msg}]}`; returns
    /// `{"ok":{"keep":[bool..],"skipped":[errors]}}`.
    #[napi]
    pub fn screen_modified(&self, modified_json: String) -> String {
        let input: ModifiedJson = match parse_arg("screenModified", &modified_json) {
            Ok(input) => input,
            Err(answer) => return answer,
        };
        let n = input.ids.len();
        if input.documents.len() != n || input.sequences.len() != n || input.failures.len() != n {
            return internal("screenModified(): the arrays differ in length");
        }
        let documents: Vec<(String, u64, Modified)> = input
            .ids
            .into_iter()
            .zip(input.sequences)
            .zip(input.documents.iter().zip(&input.failures))
            .map(|((id, sequence), (document, failure))| {
                let modified = match (failure, document) {
                    (Some(FailureJson::Threw(cause)), _) => Modified::Threw(cause),
                    (Some(FailureJson::NotJson(cause)), _) => Modified::NotJson(cause),
                    (None, Some(raw)) => Modified::Document(raw),
                    (None, None) => Modified::NotJson("null"),
                };
                (id, sequence, modified)
            })
            .collect();
        ok_json(self.core.screen_modified(&documents))
    }

    /// Resolves `{"ok":[null | {"sequence":N,"document":{..}|null}, ...]}`, one per id;
    /// `document` is null when the server holds something that is not a valid document.
    #[napi]
    pub async fn read_current(&self, ids: Vec<String>) -> String {
        let call = async {
            match self.core.read_current(&ids).await {
                Ok(states) => ok_json(states.into_iter().map(state_json).collect::<Vec<_>>()),
                Err(e) => error_json(&e),
            }
        };
        guarded("readCurrent", call, internal).await
    }

    /// Of `ids`, those the stream holds no message of, and the stream's last sequence before
    /// it looked: `{"ok":{"missing":[ids],"sequence":N}}`. Counted in `stats().resyncs`.
    #[napi]
    pub async fn missing_on_stream(&self, ids: Vec<String>) -> String {
        #[derive(serde::Serialize)]
        struct Missing {
            missing: Vec<String>,
            sequence: u64,
        }
        let call = async {
            match self.core.missing_on_stream(&ids).await {
                Ok((missing, sequence)) => ok_json(Missing { missing, sequence }),
                Err(e) => error_json(&e),
            }
        };
        guarded("missingOnStream", call, internal).await
    }

    /// Whether a deleted document on the server holds only its id (the KV layout's delete
    /// markers): the glue then compares RxDB's deleted states of it as that.
    #[napi]
    pub fn tombstones_hold_only_the_id(&self) -> bool {
        self.core.tombstones_hold_only_the_id()
    }

    /// Publishes `bodies[i]` (the JSON document, as the server holds it) as document `ids[i]`, expecting its subject at
    /// `expected[i]` (0: must not exist); `conflictsFound` conflicts of this batch were decided
    /// before. Resolves `{"ok":[{"written":seq} | {"conflict":{"sequence":N,"document":{..}}} |
    /// {"rejected":{code,message}}]}`.
    #[napi]
    pub async fn publish(
        &self,
        ids: Vec<String>,
        bodies: Vec<String>,
        expected: Vec<f64>,
        conflicts_found: u32,
    ) -> String {
        let call = async {
            if ids.len() != bodies.len() || ids.len() != expected.len() {
                return internal("publish(): ids, bodies and expected differ in length");
            }
            let writes: Vec<push::Write> = ids
                .into_iter()
                .zip(bodies)
                .zip(expected)
                .map(|((id, body), seq)| push::Write {
                    id,
                    body: Bytes::from(body),
                    expected_sequence: seq.max(0.0) as u64,
                })
                .collect();
            match self.core.publish(writes, conflicts_found as usize).await {
                Ok(results) => ok_json(
                    results
                        .into_iter()
                        .map(|pushed| match pushed {
                            Pushed::Written(seq) => WriteJson::Written(seq),
                            Pushed::Conflict(state) => WriteJson::Conflict(state_json(Some(state))),
                            Pushed::Rejected(e) => WriteJson::Rejected(e),
                        })
                        .collect::<Vec<_>>(),
                ),
                Err(e) => error_json(&e),
            }
        };
        guarded("publish", call, internal).await
    }

    /// Encodes documents with attachments for the stream: `documentsJson` is
    /// `[{id, body, attachments: [{id, source: {buffer: n} | {base64} | {ref}}]}]`, where
    /// `buffer: n` is `buffers[n]`. Large attachments are uploaded to the Object Store.
    #[napi]
    pub async fn encode_attachments(
        &self,
        documents_json: String,
        buffers: Vec<Buffer>,
    ) -> EncodedAttachments {
        let failed = |outcomes| EncodedAttachments {
            outcomes,
            bodies: Vec::new(),
        };
        let call = async {
            let documents = match parse_arg("encodeAttachments", &documents_json) {
                Ok(d) => d,
                Err(e) => return failed(e),
            };
            let slices: Vec<&[u8]> = buffers.iter().map(|b| b.as_ref()).collect();
            match self.core.encode_attachments(documents, &slices).await {
                Ok(encoded) => {
                    let (outcomes, bodies) = outcomes_beside(encoded, |e| match e {
                        Encoded::Body(body) => (EncodedJson::Body, body),
                        Encoded::Rejected(err) => (EncodedJson::Rejected(err), String::new()),
                    });
                    EncodedAttachments { outcomes, bodies }
                }
                Err(e) => failed(error_json(&e)),
            }
        };
        guarded("encodeAttachments", call, |m| failed(internal(m))).await
    }

    /// Fetches the objects `wantedJson` (`[{documentId, attachmentId, sequence?, ref}]`) names,
    /// each checked against its reference.
    #[napi]
    pub async fn fetch_attachments(&self, wanted_json: String) -> FetchedAttachments {
        let failed = |outcomes| FetchedAttachments {
            outcomes,
            data: Vec::new(),
        };
        let call = async {
            let wanted: Vec<objects::WantedObject> =
                match parse_arg("fetchAttachments", &wanted_json) {
                    Ok(wanted) => wanted,
                    Err(e) => return failed(e),
                };
            match self.core.fetch_attachments(&wanted).await {
                Ok(fetched) => {
                    let empty = || Buffer::from(Vec::new());
                    let (outcomes, data) = outcomes_beside(fetched, |f| match f {
                        Fetched::Data(bytes) => (FetchedJson::Data, Buffer::from(bytes)),
                        Fetched::Superseded => (FetchedJson::Superseded, empty()),
                        Fetched::Failed(err) => (FetchedJson::Error(err), empty()),
                    });
                    FetchedAttachments { outcomes, data }
                }
                Err(e) => failed(error_json(&e)),
            }
        };
        guarded("fetchAttachments", call, |m| failed(internal(m))).await
    }

    /// Removes the attachment objects no document references any more (see the README);
    /// resolves `{"ok":{objects,referenced,removed,removedBytes,incompleteUploads}}` or an error.
    #[napi]
    pub async fn remove_unreferenced_attachments(&self, older_than_ms: f64) -> String {
        let call = async {
            let older_than = Duration::from_millis(older_than_ms.max(0.0) as u64);
            match self.core.remove_unreferenced_attachments(older_than).await {
                Ok(report) => ok_json(report),
                Err(e) => error_json(&e),
            }
        };
        guarded("removeUnreferencedAttachments", call, internal).await
    }

    /// Starts the live feed (no-op while it runs).
    #[napi]
    pub fn start_live(&self, batch_size: u32) {
        // The feed is a tokio task: enter napi's runtime to spawn it from Node's thread.
        napi::bindgen_prelude::within_runtime_if_available(|| {
            self.core.start_live(batch_size as usize)
        });
    }

    /// Stops the live feed; a pending `nextLive()` then resolves `null`.
    #[napi]
    pub fn stop_live(&self) {
        self.core.stop_live();
    }

    /// Resolves the next live event as JSON (`{"batch":{documents,sequences,checkpoint,skipped},
    /// receivedAt, sentAt}` or `{"error":{..}}`), or `null` when the feed is stopped.
    #[napi]
    pub async fn next_live(&self) -> Option<String> {
        let next = async {
            let event = self.core.next_live().await?;
            Some(match event {
                LiveEvent::Batch { batch, received } => serde_json::to_string(&LiveJson {
                    batch: batch_json(batch),
                    received_at: epoch_ms(received),
                    sent_at: epoch_ms(std::time::SystemTime::now()),
                })
                .unwrap_or_else(internal),
                LiveEvent::Error(e) => error_json(&e),
            })
        };
        guarded("nextLive", next, |m| Some(internal(m))).await
    }

    /// Resolves the counters as JSON (see `stats::Stats`; camelCase keys).
    #[napi]
    pub async fn stats(&self) -> String {
        let stats =
            async { serde_json::to_string(&self.core.stats().await).unwrap_or_else(internal) };
        guarded("stats", stats, internal).await
    }

    /// Stops the feed, deletes this replication's consumers and releases the connection.
    #[napi]
    pub async fn close(&self) {
        guarded("close", self.core.close(), |_| ()).await;
    }
}

fn state_json(state: Option<push::CurrentState>) -> Option<StateJson> {
    state.map(|s| StateJson {
        sequence: s.sequence,
        document: s
            .body
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .map(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_an_exported_call_becomes_a_nats_internal_answer() {
        let answer = guarded(
            "pull",
            async {
                let ids: Vec<String> = Vec::new();
                std::hint::black_box(&ids);
                if ids.is_empty() {
                    panic!("a bug in pull");
                }
                ids.concat()
            },
            internal,
        )
        .await;
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["code"], "NATS_INTERNAL");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("inside pull() (a bug in pull)"),
            "{message}"
        );
        // A call that does not panic is answered as it is.
        assert_eq!(guarded("stats", async { 7 }, |_| 0).await, 7);
    }
}

//! Attachment data on the server: placing the attachments of pushed documents (in the message or
//! in a JetStream Object Store), fetching stored objects back, and removing objects no document
//! references any more.
//!
//! Objects are named by the SHA-256 of their content (`attachments::ObjectRef`), so a file is
//! stored once however many documents and revisions hold it, and a changed file is a new object.
//! An object is uploaded completely (chunks, then its meta message) before the message that
//! references it is published, so no reader ever meets a reference to a half-written object.
//! Readers check size and SHA-256 of what they fetch.

use crate::attachments::{self, DocumentToEncode, ObjectRef, Placement, Sizing, Source};
use crate::connection::Connection;
use crate::error::{ErrorCode, ReplicationError, Result};
use crate::options::ReplicationOptions;
use crate::push::HEADER_ALLOWANCE;
use crate::stats::Counters;
use crate::stream::{jetstream_error, replicas_error};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::object_store::{
    self, InfoErrorKind, ObjectInfo, ObjectMetadata, ObjectStore,
};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, StorageType, Stream};
use async_nats::jetstream::ErrorCode as JsCode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::Mutex;

/// An existing object is reused (not uploaded again) only if it was stored this recently. The
/// cleanup removes an unreferenced object only when it is older than `olderThanMs` (an hour by
/// default), so it never removes an object that a push is about to reference.
const REUSE_WITHIN: Duration = Duration::from_secs(10 * 60);
/// A read that gets no chunk for this long fails (and is retried).
const READ_IDLE: Duration = Duration::from_secs(10);
/// Chunks asked for in one pull request while reading an object.
const CHUNKS_PER_FETCH: usize = 64;
/// Objects uploaded, or fetched, at the same time by one call.
const AT_ONCE: usize = 4;

/// Runs `jobs`, `AT_ONCE` of them at a time; their outputs in the order they finish.
async fn at_once<F: std::future::Future>(jobs: Vec<F>) -> Vec<F::Output> {
    futures::stream::iter(jobs)
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

/// An open bucket: the Object Store and the stream under it (`OBJ_<bucket>`).
#[derive(Clone)]
pub struct Bucket {
    pub name: String,
    store: ObjectStore,
    stream: Stream,
}

/// The replication's bucket, opened on first use and looked up again after a failure.
#[derive(Default)]
pub struct Objects {
    bucket: Mutex<Option<Bucket>>,
}

/// What became of one document to push.
#[derive(Debug)]
pub enum Encoded {
    /// The message body to publish.
    Body(String),
    /// The document cannot be written as it is; the others go on.
    Rejected(ReplicationError),
}

/// An object a pulled document needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WantedObject {
    pub document_id: String,
    pub attachment_id: String,
    /// The stream sequence of the message holding the reference (pulls and live batches): a
    /// missing object of a message that a newer revision replaced is no error.
    pub sequence: Option<u64>,
    #[serde(rename = "ref")]
    pub reference: ObjectRef,
}

/// What became of one wanted object.
#[derive(Debug)]
pub enum Fetched {
    Data(Vec<u8>),
    /// The object is gone, but so is the message that referenced it: a newer revision of the
    /// document is on the stream.
    Superseded,
    Failed(ReplicationError),
}

/// What `remove_unreferenced` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    /// Objects in the bucket before.
    pub objects: u64,
    /// Of those, objects the newest message of some document references.
    pub referenced: u64,
    /// Objects removed.
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Leftovers of uploads that never finished (chunks without an object), purged.
    pub incomplete_uploads: u64,
}

/// Why an object could not be read.
enum ReadFailure {
    Missing(String),
    Corrupt(String),
    Failed(ReplicationError),
}

impl Objects {
    /// The bucket, opened (and created if `create`) on first use; `None` if it does not exist.
    pub async fn bucket(
        &self,
        conn: &Connection,
        options: &ReplicationOptions,
        create: bool,
    ) -> Result<Option<Bucket>> {
        let mut bucket = self.bucket.lock().await;
        if bucket.is_none() {
            *bucket = open(conn, options, create).await?;
        }
        Ok(bucket.clone())
    }

    /// After a failure, look the bucket up again next time (it may have been deleted).
    pub async fn forget(&self) {
        self.bucket.lock().await.take();
    }

    /// Places the attachments of each document (message or Object Store), uploads what goes to
    /// the Object Store and returns the bodies to publish.
    pub async fn encode(
        &self,
        conn: &Connection,
        options: &ReplicationOptions,
        counters: &Counters,
        documents: Vec<DocumentToEncode>,
        buffers: &[&[u8]],
    ) -> Result<Vec<Encoded>> {
        let limit = conn
            .max_payload()
            .saturating_sub(HEADER_ALLOWANCE)
            .min(options.max_document_bytes.unwrap_or(usize::MAX));
        let bucket_name = options.attachment_bucket();
        let mut planned = Vec::with_capacity(documents.len());
        for doc in &documents {
            planned.push(plan(doc, buffers, options, limit, &bucket_name));
        }
        // Upload every object needed, each content once.
        let mut uploads: HashMap<String, &[u8]> = HashMap::new();
        for plan in planned.iter().flatten() {
            for (placement, content) in plan.placements.iter().zip(&plan.contents) {
                if let (Placement::Object, Content::Bytes(bytes)) = (placement, content) {
                    uploads.insert(attachments::sha256_hex(bytes), bytes);
                }
            }
        }
        let mut stored: HashMap<String, std::result::Result<ObjectRef, ReplicationError>> =
            HashMap::new();
        if !uploads.is_empty() {
            match self.bucket(conn, options, true).await {
                Ok(Some(bucket)) => {
                    // Futures built first: a closure inside the stream trips the compiler's
                    // lifetime inference for Send futures.
                    let bucket = &bucket;
                    let jobs: Vec<_> = uploads
                        .into_iter()
                        .map(|(sha, bytes)| async move { (sha, store(conn, bucket, bytes).await) })
                        .collect();
                    let results = at_once(jobs).await;
                    for (sha, result) in results {
                        match result {
                            Ok((reference, uploaded)) => {
                                if uploaded {
                                    counters.attachment_pushed(reference.size);
                                }
                                stored.insert(sha, Ok(reference));
                            }
                            // Permanent for this client: those documents are refused, the
                            // others go on.
                            Err(e) if e.code == ErrorCode::PermissionDenied => {
                                stored.insert(sha, Err(e));
                            }
                            Err(e) => {
                                self.forget().await;
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(None) => unreachable!("the bucket is created when missing"),
                Err(e) if e.code == ErrorCode::PermissionDenied => {
                    for sha in uploads.keys() {
                        stored.insert(sha.clone(), Err(e.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::with_capacity(documents.len());
        for (doc, plan) in documents.iter().zip(planned) {
            let encoded = plan.and_then(|plan| assemble(doc, &plan, &stored, limit));
            if encoded.is_err() {
                counters.rejected();
            }
            out.push(match encoded {
                Ok(body) => Encoded::Body(body),
                Err(e) => Encoded::Rejected(e),
            });
        }
        Ok(out)
    }

    /// Fetches the objects pulled documents reference, checking each one's size and SHA-256.
    /// Fails as a whole only for what may pass (outage, timeout): the pull is retried.
    pub async fn fetch(
        &self,
        conn: &Connection,
        documents: &Stream,
        options: &ReplicationOptions,
        counters: &Counters,
        wanted: &[WantedObject],
    ) -> Result<Vec<Fetched>> {
        let ours = options.attachment_bucket();
        let bucket = if wanted.iter().any(|w| w.reference.bucket == ours) {
            match self.bucket(conn, options, false).await {
                Ok(bucket) => bucket,
                Err(e) if e.code == ErrorCode::PermissionDenied => {
                    return Ok(wanted
                        .iter()
                        .map(|w| Fetched::Failed(about(e.clone(), w)))
                        .collect());
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let unique: HashSet<&ObjectRef> = wanted
            .iter()
            .map(|w| &w.reference)
            .filter(|r| r.bucket == ours)
            .collect();
        let mut read: HashMap<&ObjectRef, std::result::Result<Vec<u8>, ReadFailure>> =
            HashMap::new();
        if let Some(bucket) = &bucket {
            let jobs: Vec<_> = unique
                .into_iter()
                .map(|reference| async move {
                    (reference, read_verified(conn, bucket, reference).await)
                })
                .collect();
            let results = at_once(jobs).await;
            for (reference, result) in results {
                if let Err(ReadFailure::Failed(e)) = &result {
                    if e.code != ErrorCode::PermissionDenied {
                        self.forget().await;
                        return Err(e.clone());
                    }
                }
                read.insert(reference, result);
            }
        }
        // An object wanted by several documents is copied for all but the last of them.
        let mut uses: HashMap<&ObjectRef, usize> = HashMap::new();
        for w in wanted {
            *uses.entry(&w.reference).or_default() += 1;
        }
        let mut out = Vec::with_capacity(wanted.len());
        for w in wanted {
            let last_use = uses.get_mut(&w.reference).is_some_and(|n| {
                *n -= 1;
                *n == 0
            });
            let missing = |why: String| {
                ReplicationError::new(
                    ErrorCode::AttachmentMissing,
                    format!(
                        "attachment {:?} of document {:?} was not replicated: {why}. The document is \
                         skipped here until a newer revision of it arrives; put the attachment \
                         again on a client that has it",
                        w.attachment_id, w.document_id
                    ),
                )
            };
            let outcome = if w.reference.bucket != ours {
                Fetched::Failed(about(
                    missing(format!(
                        "it is stored in bucket {:?}, and this replication reads bucket {ours:?}: \
                         give every replication of the stream the same attachments.bucket",
                        w.reference.bucket
                    )),
                    w,
                ))
            } else {
                let taken = if last_use && matches!(read.get(&w.reference), Some(Ok(_))) {
                    read.remove(&w.reference)
                } else {
                    None
                };
                match taken.as_ref().or_else(|| read.get(&w.reference)) {
                    Some(Ok(data)) => {
                        counters.attachment_pulled(data.len() as u64);
                        Fetched::Data(match taken {
                            Some(Ok(data)) => data,
                            _ => data.clone(),
                        })
                    }
                    Some(Err(ReadFailure::Corrupt(why))) => Fetched::Failed(about(
                        ReplicationError::new(
                            ErrorCode::AttachmentCorrupt,
                            format!(
                                "attachment {:?} of document {:?} was not replicated: {why}. The \
                                 document is skipped here until a newer revision of it arrives; \
                                 put the attachment again on a client that has it",
                                w.attachment_id, w.document_id
                            ),
                        ),
                        w,
                    )),
                    Some(Err(ReadFailure::Failed(e))) => Fetched::Failed(about(e.clone(), w)),
                    Some(Err(ReadFailure::Missing(why))) => {
                        if superseded(documents, options, w).await? {
                            Fetched::Superseded
                        } else {
                            Fetched::Failed(about(missing(why.clone()), w))
                        }
                    }
                    None => {
                        if superseded(documents, options, w).await? {
                            Fetched::Superseded
                        } else {
                            let why = format!("bucket {ours:?} does not exist");
                            Fetched::Failed(about(missing(why), w))
                        }
                    }
                }
            };
            out.push(outcome);
        }
        Ok(out)
    }

    /// Removes the objects that the newest message of no document in `documents` references and
    /// that are older than `older_than`, and the chunks of uploads that never finished.
    pub async fn remove_unreferenced(
        &self,
        conn: &Connection,
        documents: &Stream,
        options: &ReplicationOptions,
        older_than: Duration,
    ) -> Result<CleanupReport> {
        let Some(bucket) = self.bucket(conn, options, false).await? else {
            return Ok(CleanupReport::default());
        };
        let result = cleanup(conn, documents, &bucket, older_than).await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }
}

/// The content of one attachment, ready to place.
enum Content<'a> {
    Bytes(Cow<'a>),
    Existing(ObjectRef),
}

type Cow<'a> = std::borrow::Cow<'a, [u8]>;

/// A document's attachments with their contents and placements.
struct Plan<'a> {
    contents: Vec<Content<'a>>,
    placements: Vec<Placement>,
}

fn plan<'a>(
    doc: &DocumentToEncode,
    buffers: &[&'a [u8]],
    options: &ReplicationOptions,
    limit: usize,
    bucket: &str,
) -> Result<Plan<'a>> {
    let mut contents = Vec::with_capacity(doc.attachments.len());
    let mut sizing = Vec::with_capacity(doc.attachments.len());
    for a in &doc.attachments {
        let content = match &a.source {
            Source::Buffer(i) => Content::Bytes(Cow::Borrowed(
                buffers.get(*i).copied().ok_or_else(|| {
                    ReplicationError::new(ErrorCode::InvalidDocument, "attachment buffer missing")
                })?,
            )),
            Source::Base64(text) => {
                Content::Bytes(Cow::Owned(STANDARD.decode(text).map_err(|e| {
                    ReplicationError::new(
                        ErrorCode::AttachmentCorrupt,
                        format!(
                        "document {:?} was not pushed: the server's copy of its attachment {:?} is \
                         not valid base64 ({e}); put the attachment again",
                        doc.id, a.id
                    ),
                    )
                    .with_document(&doc.id)
                    .with_attachment(&a.id)
                })?))
            }
            Source::Ref(reference) => Content::Existing(reference.clone()),
        };
        sizing.push(Sizing {
            id_json: serde_json::to_string(&a.id).map_or(2, |s| s.len()),
            content: match &content {
                Content::Bytes(b) => attachments::Content::Bytes(b.len()),
                Content::Existing(r) => {
                    attachments::Content::Stored(serde_json::to_string(r).map_or(256, |s| s.len()))
                }
            },
        });
        contents.push(content);
    }
    let (placements, size) = attachments::place(
        doc.body.len(),
        &sizing,
        options.inline_max_bytes(),
        limit,
        bucket,
    );
    if size > limit {
        return Err(ReplicationError::new(
            ErrorCode::DocumentTooLarge,
            format!(
                "document {:?} was not pushed: it is {size} bytes even with all its attachments \
                 in the Object Store, over the limit of {limit} bytes (the server's max_payload, \
                 or maxDocumentBytes). Make the document smaller or raise max_payload; the other \
                 documents were pushed",
                doc.id
            ),
        )
        .with_document(&doc.id));
    }
    Ok(Plan {
        contents,
        placements,
    })
}

fn assemble(
    doc: &DocumentToEncode,
    plan: &Plan<'_>,
    stored: &HashMap<String, std::result::Result<ObjectRef, ReplicationError>>,
    limit: usize,
) -> Result<String> {
    let mut inline: Vec<(&str, &[u8])> = Vec::new();
    let mut refs: Vec<(&str, ObjectRef)> = Vec::new();
    for ((a, content), placement) in doc
        .attachments
        .iter()
        .zip(&plan.contents)
        .zip(&plan.placements)
    {
        match (content, placement) {
            (Content::Bytes(bytes), Placement::Inline) => inline.push((&a.id, bytes)),
            (Content::Bytes(bytes), _) => match stored.get(&attachments::sha256_hex(bytes)) {
                Some(Ok(reference)) => refs.push((&a.id, reference.clone())),
                Some(Err(e)) => {
                    let mut e = e.clone().with_document(&doc.id).with_attachment(&a.id);
                    e.message = format!(
                        "document {:?} was not pushed: its attachment {:?} needs the Object Store, \
                         and {}",
                        doc.id, a.id, e.message
                    );
                    return Err(e);
                }
                None => unreachable!("every object is uploaded before assembling"),
            },
            (Content::Existing(reference), _) => refs.push((&a.id, reference.clone())),
        }
    }
    let refs: Vec<(&str, &ObjectRef)> = refs.iter().map(|(id, r)| (*id, r)).collect();
    let body = attachments::assemble(&doc.body, &inline, &refs).map_err(|why| {
        ReplicationError::new(
            ErrorCode::InvalidDocument,
            format!("document {:?} was not pushed: {why}", doc.id),
        )
        .with_document(&doc.id)
    })?;
    debug_assert!(body.len() <= limit + 16, "planned size was too small");
    Ok(body)
}

/// Names the document and attachment an error is about.
fn about(err: ReplicationError, wanted: &WantedObject) -> ReplicationError {
    let mut err = err
        .with_document(&wanted.document_id)
        .with_attachment(&wanted.attachment_id);
    if err.code == ErrorCode::PermissionDenied && !err.message.contains(&wanted.document_id) {
        err.message = format!(
            "attachment {:?} of document {:?} was not replicated: {} The document is skipped \
             here; other documents keep replicating",
            wanted.attachment_id, wanted.document_id, err.message
        );
    }
    err
}

/// Whether the document's subject holds a newer message than the one with this reference.
async fn superseded(
    documents: &Stream,
    options: &ReplicationOptions,
    wanted: &WantedObject,
) -> Result<bool> {
    let Some(sequence) = wanted.sequence else {
        return Ok(false);
    };
    let subject = crate::layout::Layout::of(options).subject_for(&wanted.document_id);
    match documents.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => Ok(message.sequence > sequence),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
        Err(e) => Err(ReplicationError::unavailable(
            &format!(
                "reading the newest revision of document {:?}",
                wanted.document_id
            ),
            &e,
        )),
    }
}

/// Whether a violation reported by the server concerns `bucket`.
fn concerns(bucket: &str) -> impl Fn(&str) -> bool {
    let parts = [
        format!("OBJ_{bucket}\""),
        format!("OBJ_{bucket}."),
        format!("$O.{bucket}."),
    ];
    move |text: &str| parts.iter().any(|p| text.contains(p.as_str()))
}

fn denied(bucket: &str, text: &str) -> ReplicationError {
    ReplicationError::new(
        ErrorCode::PermissionDenied,
        format!(
            "the server refused access to the attachments bucket {bucket:?} ({text}). Grant the \
             user the subjects of the bucket (see the README's Attachments section: \
             $JS.API.*.*.OBJ_{bucket}, $JS.API.DIRECT.GET.OBJ_{bucket}.>, $O.{bucket}.>)"
        ),
    )
}

/// Runs a request of the bucket, turning a permission violation into `PermissionDenied` at once.
async fn in_bucket<F: std::future::Future>(
    conn: &Connection,
    bucket: &str,
    request: F,
) -> Result<F::Output> {
    conn.unless_denied_where(concerns(bucket), request)
        .await
        .map_err(|text| denied(bucket, &text))
}

async fn open(
    conn: &Connection,
    options: &ReplicationOptions,
    create: bool,
) -> Result<Option<Bucket>> {
    let name = options.attachment_bucket();
    match look_up(conn, &name).await? {
        None if create => {
            create_bucket(conn, options, &name).await?;
            look_up(conn, &name).await
        }
        found => Ok(found),
    }
}

/// The bucket and the stream under it; `None` if it does not exist.
async fn look_up(conn: &Connection, name: &str) -> Result<Option<Bucket>> {
    let opening = |e: &(dyn std::error::Error + 'static)| {
        jetstream_error(conn, &format!("opening the attachments bucket {name:?}"), e)
    };
    let looked_up = in_bucket(conn, name, conn.jetstream.get_stream(format!("OBJ_{name}"))).await?;
    let stream = match looked_up {
        Ok(stream) => stream,
        Err(e) => {
            let missing = matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == JsCode::STREAM_NOT_FOUND);
            return if missing { Ok(None) } else { Err(opening(&e)) };
        }
    };
    let store = in_bucket(conn, name, conn.jetstream.get_object_store(name))
        .await?
        .map_err(|e| opening(&e))?;
    Ok(Some(Bucket {
        name: name.to_string(),
        store,
        stream,
    }))
}

/// Creates the bucket with the stream's `streamConfig` (replicas, storage).
async fn create_bucket(conn: &Connection, options: &ReplicationOptions, name: &str) -> Result<()> {
    let settings = &options.stream_config;
    let replicas = settings.replicas.unwrap_or(1);
    let config = object_store::Config {
        bucket: name.to_string(),
        description: Some(format!(
            "attachments of stream {} (rxdb-nats-native)",
            options.stream_name
        )),
        num_replicas: replicas,
        storage: match settings.storage.as_deref() {
            Some("memory") => StorageType::Memory,
            _ => StorageType::File,
        },
        ..Default::default()
    };
    let Err(e) = in_bucket(conn, name, conn.jetstream.create_object_store(config)).await? else {
        return Ok(());
    };
    // Another client may have created it meanwhile.
    if conn.jetstream.get_object_store(name).await.is_ok() {
        return Ok(());
    }
    let code = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<CreateStreamError>())
        .and_then(|c| match c.kind() {
            CreateStreamErrorKind::JetStream(js) => Some(js.error_code()),
            _ => None,
        });
    if let Some(err) =
        code.and_then(|code| replicas_error(code, replicas, &format!("OBJ_{name}"), &conn.servers))
    {
        return Err(err);
    }
    Err(jetstream_error(
        conn,
        &format!("creating the attachments bucket {name:?}"),
        &e,
    ))
}

/// Stores `data` as its content-addressed object; returns its reference and whether it was
/// uploaded (an equal object stored recently is reused).
async fn store(conn: &Connection, bucket: &Bucket, data: &[u8]) -> Result<(ObjectRef, bool)> {
    let reference = ObjectRef::for_content(&bucket.name, data);
    let failed = |what: &str, e: &dyn std::error::Error| {
        ReplicationError::unavailable(
            &format!(
                "{what} object {} in bucket {:?}",
                reference.object, bucket.name
            ),
            e,
        )
    };
    match in_bucket(conn, &bucket.name, bucket.store.info(&reference.object)).await? {
        Ok(info) if reusable(&info, &reference) => return Ok((reference, false)),
        Ok(_) => {}
        Err(e) if e.kind() == InfoErrorKind::NotFound => {}
        Err(e) => return Err(failed("looking up", &e)),
    }
    let meta = ObjectMetadata {
        name: reference.object.clone(),
        ..Default::default()
    };
    let mut reader = data;
    in_bucket(conn, &bucket.name, bucket.store.put(meta, &mut reader))
        .await?
        .map_err(|e| failed("uploading", &e))?;
    Ok((reference, true))
}

/// Whether an existing object can stand for `reference` without uploading it again: complete,
/// with the same content, and stored recently (see `REUSE_WITHIN`).
fn reusable(info: &ObjectInfo, reference: &ObjectRef) -> bool {
    let digest = hex_to_bytes(&reference.sha256).map(|d| format!("SHA-256={}", URL_SAFE.encode(d)));
    !info.deleted
        && info.size as u64 == reference.size
        && digest.is_some()
        && info.digest == digest
        && info.modified.is_some_and(|m| !older_than(m, REUSE_WITHIN))
}

fn hex_to_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// Whether `time` lies more than `age` in the past.
fn older_than(time: async_nats::datetime::DateTime, age: Duration) -> bool {
    async_nats::datetime::add_std_duration(time, age)
        .map(|t| t <= async_nats::datetime::now())
        .unwrap_or(false)
}

/// Reads an object and checks it against the reference. A mismatch is read once more: an object
/// replaced by another upload of the same content loses its old chunks under a reader.
async fn read_verified(
    conn: &Connection,
    bucket: &Bucket,
    reference: &ObjectRef,
) -> std::result::Result<Vec<u8>, ReadFailure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = read(conn, bucket, reference).await;
        let checked = match result {
            Ok(data) if reference.matches(&data) => return Ok(data),
            Ok(data) => Err(ReadFailure::Corrupt(format!(
                "object {} in bucket {:?} holds {} bytes with SHA-256 {}, not the {} bytes with \
                 SHA-256 {} the document references",
                reference.object,
                bucket.name,
                data.len(),
                attachments::sha256_hex(&data),
                reference.size,
                reference.sha256
            ))),
            Err(e) => Err(e),
        };
        match checked {
            Err(ReadFailure::Corrupt(_)) if attempt < 2 => continue,
            other => return other,
        }
    }
}

/// Reads an object's chunks on a consumer of its own.
async fn read(
    conn: &Connection,
    bucket: &Bucket,
    reference: &ObjectRef,
) -> std::result::Result<Vec<u8>, ReadFailure> {
    let failed = |what: &str, e: &dyn std::error::Error| {
        ReadFailure::Failed(ReplicationError::unavailable(
            &format!(
                "{what} object {} in bucket {:?}",
                reference.object, bucket.name
            ),
            e,
        ))
    };
    let info = match in_bucket(conn, &bucket.name, bucket.store.info(&reference.object)).await {
        Err(e) => return Err(ReadFailure::Failed(e)),
        Ok(Ok(info)) if !info.deleted => info,
        Ok(Ok(_)) => {
            return Err(ReadFailure::Missing(format!(
                "object {} was deleted from bucket {:?}",
                reference.object, bucket.name
            )))
        }
        Ok(Err(e)) if e.kind() == InfoErrorKind::NotFound => {
            return Err(ReadFailure::Missing(format!(
                "bucket {:?} has no object {}",
                bucket.name, reference.object
            )))
        }
        Ok(Err(e)) => return Err(failed("looking up", &e)),
    };
    if info.size as u64 != reference.size {
        return Err(ReadFailure::Corrupt(format!(
            "object {} in bucket {:?} is {} bytes, not the {} bytes the document references",
            reference.object, bucket.name, info.size, reference.size
        )));
    }
    if info.chunks == 0 {
        return Ok(Vec::new());
    }
    let filter = format!("$O.{}.C.{}", bucket.name, info.nuid);
    let consumer = in_bucket(
        conn,
        &bucket.name,
        bucket
            .stream
            .create_consumer(scratch_consumer(filter, DeliverPolicy::All)),
    )
    .await
    .map_err(ReadFailure::Failed)?
    .map_err(|e| failed("reading", &e))?;
    let name = consumer.cached_info().name.clone();
    let pending = consumer.cached_info().num_pending as usize;
    let result = async {
        if pending != info.chunks {
            return Err(ReadFailure::Corrupt(format!(
                "object {} in bucket {:?} has {pending} of its {} chunks",
                reference.object, bucket.name, info.chunks
            )));
        }
        let mut data = Vec::with_capacity(info.size);
        let mut got = 0;
        while got < info.chunks {
            let want = (info.chunks - got).min(CHUNKS_PER_FETCH);
            let batch = tokio::time::timeout(READ_IDLE, async {
                let mut messages = crate::pull::fetch_now(&consumer, want)
                    .await
                    .map_err(|e| failed("reading", &e))?;
                let mut n = 0;
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| failed("reading", &*e))?;
                    if data.len() + message.payload.len() > info.size {
                        return Err(ReadFailure::Corrupt(format!(
                            "object {} in bucket {:?} has more data than its {} bytes",
                            reference.object, bucket.name, info.size
                        )));
                    }
                    data.extend_from_slice(&message.payload);
                    n += 1;
                }
                Ok(n)
            })
            .await
            .map_err(|_| {
                ReadFailure::Failed(ReplicationError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "reading object {} in bucket {:?} got no data within {} s; the \
                         replication retries by itself",
                        reference.object,
                        bucket.name,
                        READ_IDLE.as_secs()
                    ),
                ))
            })??;
            if batch == 0 {
                return Err(ReadFailure::Corrupt(format!(
                    "object {} in bucket {:?} ended after {got} of its {} chunks",
                    reference.object, bucket.name, info.chunks
                )));
            }
            got += batch;
        }
        Ok(data)
    }
    .await;
    let _ =
        tokio::time::timeout(Duration::from_secs(2), bucket.stream.delete_consumer(&name)).await;
    result
}

/// A consumer for one read (deleted after it, and by the server when forgotten): no acks, in
/// memory, one replica.
fn scratch_consumer(filter_subject: String, deliver_policy: DeliverPolicy) -> pull::Config {
    pull::Config {
        filter_subject,
        deliver_policy,
        ack_policy: AckPolicy::None,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    }
}

async fn cleanup(
    conn: &Connection,
    documents: &Stream,
    bucket: &Bucket,
    grace: Duration,
) -> Result<CleanupReport> {
    let failed = |what: &str, e: &dyn std::error::Error| {
        ReplicationError::unavailable(&format!("{what} (attachments bucket {:?})", bucket.name), e)
    };
    let objects: Vec<ObjectInfo> = in_bucket(conn, &bucket.name, async {
        bucket
            .store
            .list()
            .await?
            .try_collect::<Vec<_>>()
            .await
            .map_err(async_nats::Error::from)
    })
    .await?
    .map_err(|e| failed("listing the objects", &*e))?;
    let referenced = referenced_objects(documents, &bucket.name).await?;
    let mut report = CleanupReport {
        objects: objects.len() as u64,
        ..Default::default()
    };
    let mut live_uploads: HashSet<String> = HashSet::new();
    for object in &objects {
        if referenced.contains(&object.name) {
            report.referenced += 1;
            live_uploads.insert(object.nuid.clone());
        } else if object.modified.is_some_and(|m| older_than(m, grace))
            && remove_if_unchanged(conn, bucket, &object.name, grace).await?
        {
            report.removed += 1;
            report.removed_bytes += object.size as u64;
        } else {
            live_uploads.insert(object.nuid.clone());
        }
    }
    // Chunks whose object meta was never written: an upload cut off (a crash, a lost server).
    let prefix = format!("$O.{}.C.", bucket.name);
    let chunk_subjects: Vec<(String, usize)> = bucket
        .stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(|e| failed("listing the chunks", &e))?
        .try_collect()
        .await
        .map_err(|e| failed("listing the chunks", &e))?;
    for (subject, _) in chunk_subjects {
        let nuid = subject.strip_prefix(&prefix).unwrap_or_default();
        if live_uploads.contains(nuid) {
            continue;
        }
        let first = bucket
            .stream
            .direct_get_first_for_subject(subject.clone())
            .await
            .map_err(|e| failed("reading a chunk", &e))?;
        if older_than(first.time, grace) {
            bucket
                .stream
                .purge()
                .filter(subject)
                .await
                .map_err(|e| failed("purging the chunks of an unfinished upload", &e))?;
            report.incomplete_uploads += 1;
        }
    }
    Ok(report)
}

/// The objects of `bucket` that the newest message of some subject of `documents` references.
async fn referenced_objects(documents: &Stream, bucket: &str) -> Result<HashSet<String>> {
    let failed = |e: &dyn std::error::Error| {
        ReplicationError::unavailable("reading the newest revision of every document", e)
    };
    let mut referenced = HashSet::new();
    for filter in &documents.cached_info().config.subjects {
        let consumer = documents
            .create_consumer(scratch_consumer(
                filter.clone(),
                DeliverPolicy::LastPerSubject,
            ))
            .await
            .map_err(|e| failed(&e))?;
        let name = consumer.cached_info().name.clone();
        let mut left = consumer.cached_info().num_pending as usize;
        let result = async {
            while left > 0 {
                let mut messages = tokio::time::timeout(
                    READ_IDLE,
                    crate::pull::fetch_now(&consumer, left.min(1000)),
                )
                .await
                .map_err(|_| {
                    ReplicationError::new(
                        ErrorCode::Unavailable,
                        "reading the documents' newest revisions got no answer; try again",
                    )
                })?
                .map_err(|e| failed(&e))?;
                let mut n = 0;
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| failed(&*e))?;
                    for reference in attachments::references(&message.payload) {
                        if reference.bucket == bucket {
                            referenced.insert(reference.object);
                        }
                    }
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
            Ok(())
        }
        .await;
        let _ =
            tokio::time::timeout(Duration::from_secs(2), documents.delete_consumer(&name)).await;
        result?;
    }
    Ok(referenced)
}

/// Deletes an object (as async-nats does: a deleted meta, then its chunks purged), unless its
/// meta changed since it was found old: the delete expects the meta's sequence, so an object a
/// push uploaded again meanwhile stays.
async fn remove_if_unchanged(
    conn: &Connection,
    bucket: &Bucket,
    name: &str,
    age: Duration,
) -> Result<bool> {
    let failed = |e: &dyn std::error::Error| {
        ReplicationError::unavailable(
            &format!("removing object {name} from bucket {:?}", bucket.name),
            e,
        )
    };
    let subject = format!("$O.{}.M.{}", bucket.name, URL_SAFE.encode(name));
    let message = match bucket
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(false),
        Err(e) => return Err(failed(&e)),
    };
    let Ok(mut info) = serde_json::from_slice::<ObjectInfo>(&message.payload) else {
        return Ok(false);
    };
    if info.deleted || !info.modified.is_some_and(|m| older_than(m, age)) {
        return Ok(false);
    }
    let chunks = format!("$O.{}.C.{}", bucket.name, info.nuid);
    info.deleted = true;
    info.size = 0;
    info.chunks = 0;
    let payload = serde_json::to_vec(&info).map_err(|e| failed(&e))?;
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .header(async_nats::header::NATS_ROLLUP, "sub")
        .expected_last_subject_sequence(message.sequence);
    let ack = in_bucket(conn, &bucket.name, async {
        conn.jetstream
            .send_publish(subject.clone(), publish)
            .await?
            .await
    })
    .await?;
    match ack {
        Ok(_) => {}
        Err(e)
            if e.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence =>
        {
            return Ok(false)
        }
        Err(e) => return Err(failed(&e)),
    }
    bucket
        .stream
        .purge()
        .filter(chunks)
        .await
        .map_err(|e| failed(&e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_matched_to_their_bucket() {
        let c = concerns("files");
        assert!(c(
            r#"Permissions Violation for Publish to "$JS.API.STREAM.INFO.OBJ_files""#
        ));
        assert!(c(
            r#"Permissions Violation for Publish to "$JS.API.DIRECT.GET.OBJ_files.$O.files.M.x""#
        ));
        assert!(c(
            r#"Permissions Violation for Publish to "$O.files.C.abc""#
        ));
        assert!(!c(
            r#"Permissions Violation for Publish to "$JS.API.STREAM.INFO.OBJ_files2""#
        ));
        assert!(!c(
            r#"Permissions Violation for Publish to "$JS.API.STREAM.INFO.people""#
        ));
    }

    #[test]
    fn hex_digests_convert_to_the_object_store_digest() {
        let r = ObjectRef::for_content("b", b"abc");
        let bytes = hex_to_bytes(&r.sha256).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(bytes[0], 0xba);
        assert_eq!(hex_to_bytes("zz"), None);
    }
}

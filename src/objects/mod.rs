//! Attachment data on the server: placing the attachments of pushed documents (in the message or
//! in a JetStream Object Store), fetching stored objects back, and removing objects no document
//! references any more.
//!
//! Objects are named by the SHA-256 of their content (`attachments::ObjectRef`), so a file is
//! stored once however many documents and revisions hold it, and a changed file is a new object.
//! An object is uploaded completely (chunks, then its meta message) before the message that
//! references it is published, so no reader ever meets a reference to a half-written object.
//! Readers check size and SHA-256 of what they fetch.//!
//! `store.rs` speaks the Object Store protocol (the bucket, objects in and out, scratch
//! consumers); `upload.rs` places and uploads the attachments of pushed documents;
//! `download.rs` fetches and checks the objects pulled documents reference; `cleanup.rs` removes
//! objects no document references. Each adds its part of `Objects`' methods.

mod cleanup;
mod download;
mod store;
mod upload;

// The parts share the Object Store protocol through `use super::*`.
use store::*;

use crate::attachments::{self, DocumentToEncode, ObjectRef, Placement, Sizing, Source};
use crate::connection::Connection;
use crate::error::{ErrorCode, ReplicationError, Result};
use crate::options::ReplicationOptions;
use crate::push::HEADER_ALLOWANCE;
use crate::stats::Counters;
use crate::stream::{jetstream_error, replicas_error};
use async_nats::jetstream::consumer::DeliverPolicy;
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
}

//! Removing the objects no document's newest revision references.

use super::*;

impl Objects {
    /// Removes the objects that the newest message of no document in `documents` references and
    /// that are older than `older_than`, and the chunks of uploads that never finished.
    pub async fn remove_unreferenced(
        &self,
        conn: &Connection,
        documents: &crate::stream::Opened,
        options: &ReplicationOptions,
        older_than: Duration,
    ) -> Result<CleanupReport> {
        let Some(bucket) = self.bucket(conn, options, false).await? else {
            return Ok(CleanupReport::default());
        };
        let filter = crate::layout::Layout::of(options).filter();
        let result = cleanup(conn, documents, &filter, &bucket, older_than).await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }
}

/// Removes the unreferenced objects of `bucket` older than `grace`, and unfinished uploads.
pub(super) async fn cleanup(
    conn: &Connection,
    documents: &crate::stream::Opened,
    documents_filter: &str,
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
    let referenced = if documents.confined {
        // A tenant's bucket is its own, and its documents are all it may read.
        referenced_by_prefix(conn, documents, documents_filter, &bucket.name).await?
    } else {
        referenced_objects(documents, &bucket.name).await?
    };
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
    let prefix = chunk_subject(&bucket.name, "");
    let chunk_subjects: Vec<(String, usize)> = bucket
        .stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(|e| failed("listing the chunks", &e))?
        .try_collect()
        .await
        .map_err(|e| failed("listing the chunks", &e))?;
    for (subject, _) in chunk_subjects {
        let nuid = upload_of(&prefix, &subject);
        if live_uploads.contains(nuid) {
            continue;
        }
        // A stream get, not a direct one: a tenant's bucket allows no direct gets.
        let first = bucket
            .stream
            .get_first_raw_message_by_subject(subject.clone(), 1)
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

/// The objects of `bucket` that the newest message of some subject on `filter` references, read
/// through the tenant's inbox.
async fn referenced_by_prefix(
    conn: &Connection,
    documents: &crate::stream::Opened,
    filter: &str,
    bucket: &str,
) -> Result<HashSet<String>> {
    let start = crate::consumer::Start::NewestOf;
    let mut delivery =
        crate::delivery::Delivery::open(conn, &documents.handle, start, filter, false).await?;
    let mut referenced = HashSet::new();
    loop {
        let batch = delivery
            .fetch(1000, crate::delivery::READ_WAIT)
            .await
            .map_err(|e| {
                ReplicationError::new(
                    ErrorCode::Unavailable,
                    format!("reading the documents' newest revisions failed ({e}); try again"),
                )
            })?;
        if batch.is_empty() {
            return Ok(referenced);
        }
        for message in batch {
            for reference in attachments::references(&message.payload) {
                if reference.bucket == bucket {
                    referenced.insert(reference.object);
                }
            }
        }
    }
}

/// The objects of `bucket` that the newest message of some subject of `documents` references.
pub(super) async fn referenced_objects(
    documents: &crate::stream::Opened,
    bucket: &str,
) -> Result<HashSet<String>> {
    let failed = |e: &dyn std::error::Error| {
        ReplicationError::unavailable("reading the newest revision of every document", e)
    };
    let mut referenced = HashSet::new();
    for filter in documents.subjects().unwrap_or_default() {
        let consumer = documents
            .handle
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
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            documents.handle.delete_consumer(&name),
        )
        .await;
        result?;
    }
    Ok(referenced)
}

/// Deletes an object (as async-nats does: a deleted meta, then its chunks purged), unless its
/// meta changed since it was found old: the delete expects the meta's sequence, so an object a
/// push uploaded again meanwhile stays.
pub(super) async fn remove_if_unchanged(
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
    let subject = meta_subject(&bucket.name, name);
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
    let chunks = chunk_subject(&bucket.name, &info.nuid);
    info = deleted(info);
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

/// The upload a chunk subject belongs to.
pub(super) fn upload_of<'a>(prefix: &str, subject: &'a str) -> &'a str {
    subject.strip_prefix(prefix).unwrap_or_default()
}

/// The meta that marks an object deleted, as async-nats writes it.
pub(super) fn deleted(mut info: ObjectInfo) -> ObjectInfo {
    info.deleted = true;
    info.size = 0;
    info.chunks = 0;
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_matched_to_their_upload() {
        let prefix = chunk_subject("files", "");
        assert_eq!(upload_of(&prefix, "$O.files.C.N1"), "N1");
        assert_eq!(upload_of(&prefix, "$O.other.C.N1"), "");
    }

    #[test]
    fn a_deleted_meta_keeps_the_name_and_drops_the_content() {
        let info: ObjectInfo = serde_json::from_value(serde_json::json!({
            "name": "sha256-ab", "bucket": "files", "nuid": "N1", "size": 10, "chunks": 2,
            "digest": "SHA-256=x", "mtime": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let gone = deleted(info);
        assert!(gone.deleted);
        assert_eq!((gone.size, gone.chunks), (0, 0));
        assert_eq!(gone.name, "sha256-ab");
        let json = serde_json::to_value(&gone).unwrap();
        assert_eq!(json["deleted"], true);
        assert_eq!(json["nuid"], "N1");
    }

    #[test]
    fn a_report_is_plain_camel_case_json() {
        let report = CleanupReport {
            objects: 3,
            referenced: 1,
            removed: 2,
            removed_bytes: 10,
            incomplete_uploads: 1,
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({"objects":3,"referenced":1,"removed":2,"removedBytes":10,
                               "incompleteUploads":1})
        );
    }
}

//! Fetching the objects pulled documents reference, checking size and SHA-256.

use super::*;

impl Objects {
    /// Fetches the objects pulled documents reference, checking each one's size and SHA-256.
    /// Fails as a whole only for what may pass (outage, timeout): the pull is retried.
    pub async fn fetch(
        &self,
        conn: &Connection,
        documents: &crate::stream::Opened,
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
            let missing = |why: String| not_replicated(ErrorCode::AttachmentMissing, w, &why);
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
                        not_replicated(ErrorCode::AttachmentCorrupt, w, why),
                        w,
                    )),
                    Some(Err(ReadFailure::Failed(e))) => Fetched::Failed(about(e.clone(), w)),
                    Some(Err(ReadFailure::Missing(why))) => {
                        if superseded(conn, documents, options, w).await? {
                            Fetched::Superseded
                        } else {
                            Fetched::Failed(about(missing(why.clone()), w))
                        }
                    }
                    None => {
                        if superseded(conn, documents, options, w).await? {
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
}

/// An attachment that could not be replicated (missing or corrupt): what to do about it.
pub(super) fn not_replicated(code: ErrorCode, w: &WantedObject, why: &str) -> ReplicationError {
    ReplicationError::new(
        code,
        format!(
            "attachment {:?} of document {:?} was not replicated: {why}. The document is skipped \
             here until a newer revision of it arrives; put the attachment again on a client that \
             has it",
            w.attachment_id, w.document_id
        ),
    )
}

/// Names the document and attachment an error is about.
pub(super) fn about(err: ReplicationError, wanted: &WantedObject) -> ReplicationError {
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
pub(super) async fn superseded(
    conn: &Connection,
    documents: &crate::stream::Opened,
    options: &ReplicationOptions,
    wanted: &WantedObject,
) -> Result<bool> {
    let Some(sequence) = wanted.sequence else {
        return Ok(false);
    };
    let subject = crate::layout::Layout::of(options).subject_for(&wanted.document_id);
    if documents.confined {
        let newest = crate::delivery::newest_on(conn, &documents.handle, &subject).await?;
        let newer = newest.and_then(|m| m.info().ok().map(|i| i.stream_sequence > sequence));
        return Ok(newer.unwrap_or(false));
    }
    match documents
        .handle
        .get_last_raw_message_by_subject(&subject)
        .await
    {
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

/// Reads an object and checks it against the reference. A mismatch is read once more: an object
/// replaced by another upload of the same content loses its old chunks under a reader.
pub(super) async fn read_verified(
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
pub(super) async fn read(
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
    let filter = chunk_subject(&bucket.name, &info.nuid);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> WantedObject {
        WantedObject {
            document_id: "alice".into(),
            attachment_id: "photo.jpg".into(),
            sequence: Some(7),
            reference: ObjectRef::for_content("people_attachments", b"jpeg"),
        }
    }

    #[test]
    fn the_wanted_list_is_read_as_the_glue_sends_it() {
        let json = serde_json::json!([{
            "documentId": "alice", "attachmentId": "photo.jpg", "sequence": 7,
            "ref": {"bucket": "b", "object": "sha256-00", "sha256": "00", "size": 1}
        }, {
            "documentId": "bob", "attachmentId": "a",
            "ref": {"bucket": "b", "object": "sha256-00", "sha256": "00", "size": 1}
        }]);
        let list: Vec<WantedObject> = serde_json::from_value(json).unwrap();
        assert_eq!(list[0].sequence, Some(7));
        assert_eq!(list[0].reference.bucket, "b");
        // Without a sequence (a read of the current state) a missing object is never superseded.
        assert_eq!(list[1].sequence, None);
    }

    #[test]
    fn failures_name_the_document_the_attachment_and_the_remedy() {
        let w = wanted();
        let e = about(
            not_replicated(ErrorCode::AttachmentCorrupt, &w, "3 of 4 chunks"),
            &w,
        );
        assert_eq!(e.code, ErrorCode::AttachmentCorrupt);
        assert_eq!(e.document_id.as_deref(), Some("alice"));
        assert_eq!(e.attachment_id.as_deref(), Some("photo.jpg"));
        assert!(e
            .message
            .contains(r#"attachment "photo.jpg" of document "alice""#));
        assert!(e.message.contains("3 of 4 chunks"));
        assert!(e.message.contains("put the attachment again"));
    }

    #[test]
    fn a_bucket_refusal_is_told_about_the_document_once() {
        let w = wanted();
        let refused = ReplicationError::new(ErrorCode::PermissionDenied, "the server refused.");
        let e = about(refused, &w);
        assert!(e
            .message
            .starts_with(r#"attachment "photo.jpg" of document "alice""#));
        assert!(e.message.contains("other documents keep replicating"));
        // An error that names the document already is left as it is.
        let again = about(e.clone(), &w);
        assert_eq!(again.message, e.message);
        // Other errors keep their message and gain the names.
        let other = about(
            ReplicationError::new(ErrorCode::Unavailable, "no answer"),
            &w,
        );
        assert_eq!(other.message, "no answer");
        assert_eq!(other.document_id.as_deref(), Some("alice"));
    }
}

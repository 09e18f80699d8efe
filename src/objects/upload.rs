//! Placing the attachments of pushed documents: in the message or the Object Store.

use super::*;

impl Objects {
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
}

/// The content of one attachment, ready to place.
pub(super) enum Content<'a> {
    Bytes(Cow<'a>),
    Existing(ObjectRef),
}

pub(super) type Cow<'a> = std::borrow::Cow<'a, [u8]>;

/// A document's attachments with their contents and placements.
pub(super) struct Plan<'a> {
    contents: Vec<Content<'a>>,
    placements: Vec<Placement>,
}

pub(super) fn plan<'a>(
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

pub(super) fn assemble(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachments::AttachmentToEncode;

    fn options(inline_max: usize) -> ReplicationOptions {
        ReplicationOptions::from_json(&format!(
            r#"{{"streamName":"s","subjectPrefix":"s.docs","primaryPath":"id",
                "attachments":{{"inlineMaxBytes":{inline_max}}}}}"#
        ))
        .unwrap()
    }

    fn document(attachments: Vec<(&str, Source)>) -> DocumentToEncode {
        DocumentToEncode {
            id: "a".into(),
            body: r#"{"id":"a","_attachments":{},"_deleted":false}"#.into(),
            attachments: attachments
                .into_iter()
                .map(|(id, source)| AttachmentToEncode {
                    id: id.into(),
                    source,
                })
                .collect(),
        }
    }

    /// The uploads `encode` would make: each object once, as the bucket stores it.
    fn uploaded(
        plan: &Plan<'_>,
    ) -> HashMap<String, std::result::Result<ObjectRef, ReplicationError>> {
        let mut stored = HashMap::new();
        for (placement, content) in plan.placements.iter().zip(&plan.contents) {
            if let (Placement::Object, Content::Bytes(bytes)) = (placement, content) {
                let sha = attachments::sha256_hex(bytes);
                stored.insert(sha, Ok(ObjectRef::for_content("s_attachments", bytes)));
            }
        }
        stored
    }

    fn body_of(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn small_content_goes_inline_large_content_to_the_bucket() {
        let big = vec![7u8; 5000];
        let buffers: Vec<&[u8]> = vec![b"hi", &big];
        let doc = document(vec![
            ("note.txt", Source::Buffer(0)),
            ("clip.bin", Source::Buffer(1)),
        ]);
        let plan = plan(&doc, &buffers, &options(1000), 1 << 20, "s_attachments").unwrap();
        assert_eq!(plan.placements, vec![Placement::Inline, Placement::Object]);
        let body = body_of(&assemble(&doc, &plan, &uploaded(&plan), 1 << 20).unwrap());
        assert_eq!(body["_attachments_data"]["note.txt"], "aGk=");
        let reference = &body["_attachments_refs"]["clip.bin"];
        assert_eq!(reference["size"], 5000);
        assert_eq!(reference["bucket"], "s_attachments");
        assert_eq!(reference["sha256"], attachments::sha256_hex(&big));
        assert!(body["_attachments_data"].get("clip.bin").is_none());
    }

    #[test]
    fn unchanged_attachments_keep_their_place() {
        let kept = ObjectRef::for_content("s_attachments", b"old content");
        let doc = document(vec![
            ("a.txt", Source::Base64("aGVsbG8=".into())),
            ("b.bin", Source::Ref(kept.clone())),
        ]);
        let plan = plan(&doc, &[], &options(1000), 1 << 20, "s_attachments").unwrap();
        assert_eq!(plan.placements, vec![Placement::Inline, Placement::Keep]);
        let body = body_of(&assemble(&doc, &plan, &HashMap::new(), 1 << 20).unwrap());
        assert_eq!(body["_attachments_data"]["a.txt"], "aGVsbG8=");
        assert_eq!(body["_attachments_refs"]["b.bin"]["object"], kept.object);
    }

    #[test]
    fn inline_content_moves_out_when_the_message_would_be_too_large() {
        let data = vec![1u8; 900];
        let buffers: Vec<&[u8]> = vec![&data];
        let doc = document(vec![("x", Source::Buffer(0))]);
        // Under inlineMaxBytes, but 1,200 bytes of base64 do not fit a 1,000-byte message.
        let plan = plan(&doc, &buffers, &options(10_000), 1000, "s_attachments").unwrap();
        assert_eq!(plan.placements, vec![Placement::Object]);
        let body = assemble(&doc, &plan, &uploaded(&plan), 1000).unwrap();
        assert!(body.len() <= 1000, "{} bytes", body.len());
    }

    #[test]
    fn a_document_too_large_without_its_attachments_is_refused_by_name() {
        let doc = DocumentToEncode {
            body: format!(r#"{{"id":"a","text":"{}"}}"#, "x".repeat(2000)),
            ..document(vec![("x", Source::Base64("aGk=".into()))])
        };
        let Err(e) = plan(&doc, &[], &options(1000), 1000, "s_attachments") else {
            panic!("a 2 kB body passed a 1 kB limit");
        };
        assert_eq!(e.code, ErrorCode::DocumentTooLarge);
        assert_eq!(e.document_id.as_deref(), Some("a"));
        assert!(e.message.contains("1000 bytes"), "{}", e.message);
    }

    #[test]
    fn a_broken_server_copy_is_reported_with_document_and_attachment() {
        let doc = document(vec![("note.txt", Source::Base64("not base64!".into()))]);
        let Err(e) = plan(&doc, &[], &options(1000), 1 << 20, "s_attachments") else {
            panic!("invalid base64 was accepted");
        };
        assert_eq!(e.code, ErrorCode::AttachmentCorrupt);
        assert_eq!(e.document_id.as_deref(), Some("a"));
        assert_eq!(e.attachment_id.as_deref(), Some("note.txt"));
        let missing = document(vec![("x", Source::Buffer(3))]);
        let Err(e) = plan(&missing, &[], &options(1000), 1 << 20, "s_attachments") else {
            panic!("a missing buffer was accepted");
        };
        assert_eq!(e.code, ErrorCode::InvalidDocument);
    }

    #[test]
    fn a_refused_upload_refuses_only_its_document() {
        let big = vec![9u8; 5000];
        let buffers: Vec<&[u8]> = vec![&big];
        let doc = document(vec![("clip.bin", Source::Buffer(0))]);
        let plan = plan(&doc, &buffers, &options(1000), 1 << 20, "s_attachments").unwrap();
        let refused = ReplicationError::new(ErrorCode::PermissionDenied, "the server refused");
        let stored = HashMap::from([(attachments::sha256_hex(&big), Err(refused))]);
        let e = assemble(&doc, &plan, &stored, 1 << 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert_eq!(e.attachment_id.as_deref(), Some("clip.bin"));
        assert!(
            e.message
                .starts_with(r#"document "a" was not pushed: its attachment "clip.bin""#),
            "{}",
            e.message
        );
    }
}

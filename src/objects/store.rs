//! The Object Store protocol: the bucket found or created, objects stored and read, scratch consumers.

use super::*;
pub(super) use crate::stream::{older_than, scratch_consumer};

/// Whether a violation reported by the server concerns `bucket`.
pub(super) fn concerns(bucket: &str) -> impl Fn(&str) -> bool {
    let parts = [
        format!("OBJ_{bucket}\""),
        format!("OBJ_{bucket}."),
        format!("$O.{bucket}."),
    ];
    move |text: &str| parts.iter().any(|p| text.contains(p.as_str()))
}

pub(super) fn denied(bucket: &str, text: &str) -> ReplicationError {
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
pub(super) async fn in_bucket<F: std::future::Future>(
    conn: &Connection,
    bucket: &str,
    request: F,
) -> Result<F::Output> {
    conn.unless_denied_where(concerns(bucket), request)
        .await
        .map_err(|text| denied(bucket, &text))
}

pub(super) async fn open(
    conn: &Connection,
    options: &ReplicationOptions,
    create: bool,
) -> Result<Option<Bucket>> {
    let name = options.attachment_bucket();
    let tenant = options.tenant == Some(true);
    match look_up(conn, &name, tenant).await? {
        None if create => {
            create_bucket(conn, options, &name).await?;
            look_up(conn, &name, tenant).await
        }
        found => Ok(found),
    }
}

/// The bucket and the stream under it; `None` if it does not exist. A tenant's bucket must not
/// allow direct gets: the Object Store would read with them, and a tenant may not (see
/// `tenant.rs`).
pub(super) async fn look_up(conn: &Connection, name: &str, tenant: bool) -> Result<Option<Bucket>> {
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
    if tenant && stream.cached_info().config.allow_direct {
        return Err(ReplicationError::new(
            ErrorCode::StreamMismatch,
            format!(
                "the attachments bucket {name:?} allows direct gets, which a tenant may not use \
                 (see the README's Tenants): let this replication create its bucket, or turn \
                 allow_direct off on stream OBJ_{name}"
            ),
        ));
    }
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
pub(super) async fn create_bucket(
    conn: &Connection,
    options: &ReplicationOptions,
    name: &str,
) -> Result<()> {
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
    if options.tenant == Some(true) {
        return create_tenant_bucket(conn, config).await;
    }
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

/// A tenant's bucket: the stream async-nats creates for an Object Store, without direct gets.
async fn create_tenant_bucket(conn: &Connection, config: object_store::Config) -> Result<()> {
    let name = config.bucket.clone();
    let stream = async_nats::jetstream::stream::Config {
        name: format!("OBJ_{name}"),
        description: config.description,
        subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
        storage: config.storage,
        num_replicas: config.num_replicas,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: false,
        ..Default::default()
    };
    let replicas = stream.num_replicas;
    let created = in_bucket(conn, &name, conn.jetstream.create_stream(stream)).await?;
    let Err(e) = created else {
        return Ok(());
    };
    if conn.jetstream.get_object_store(&name).await.is_ok() {
        return Ok(());
    }
    if let CreateStreamErrorKind::JetStream(js) = e.kind() {
        let stream = format!("OBJ_{name}");
        if let Some(err) = replicas_error(js.error_code(), replicas, &stream, &conn.servers) {
            return Err(err);
        }
    }
    Err(jetstream_error(
        conn,
        &format!("creating the attachments bucket {name:?}"),
        &e,
    ))
}

/// Stores `data` as its content-addressed object; returns its reference and whether it was
/// uploaded (an equal object stored recently is reused).
pub(super) async fn store(
    conn: &Connection,
    bucket: &Bucket,
    data: &[u8],
) -> Result<(ObjectRef, bool)> {
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
pub(super) fn reusable(info: &ObjectInfo, reference: &ObjectRef) -> bool {
    let digest = reference.object_store_digest();
    !info.deleted
        && info.size as u64 == reference.size
        && digest.is_some()
        && info.digest == digest
        && info.modified.is_some_and(|m| !older_than(m, REUSE_WITHIN))
}

/// The subject of an object's meta message: the name in base64url, as the Object Store writes it.
pub(super) fn meta_subject(bucket: &str, name: &str) -> String {
    format!("$O.{bucket}.M.{}", URL_SAFE.encode(name))
}

/// The subject of the chunks of upload `nuid` (with an empty `nuid`: their common prefix).
pub(super) fn chunk_subject(bucket: &str, nuid: &str) -> String {
    format!("$O.{bucket}.C.{nuid}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::consumer::AckPolicy;

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

    /// The meta an Object Store keeps for `data`, stored `age` ago.
    fn stored(data: &[u8], age: Duration) -> ObjectInfo {
        let reference = ObjectRef::for_content("files", data);
        ObjectInfo {
            name: reference.object.clone(),
            description: None,
            metadata: HashMap::new(),
            headers: None,
            options: None,
            bucket: "files".into(),
            nuid: "N1".into(),
            size: data.len(),
            chunks: 1,
            modified: Some(async_nats::datetime::now() - age),
            digest: reference.object_store_digest(),
            deleted: false,
        }
    }

    #[test]
    fn a_complete_recent_equal_object_is_reused() {
        let reference = ObjectRef::for_content("files", b"hello");
        assert!(reusable(
            &stored(b"hello", Duration::from_secs(5)),
            &reference
        ));
    }

    #[test]
    fn an_object_is_uploaded_again_when_old_deleted_or_different() {
        let reference = ObjectRef::for_content("files", b"hello");
        // Old: the cleanup may be about to remove it.
        let old = stored(b"hello", REUSE_WITHIN + Duration::from_secs(1));
        assert!(!reusable(&old, &reference));
        let deleted = ObjectInfo {
            deleted: true,
            ..stored(b"hello", Duration::ZERO)
        };
        assert!(!reusable(&deleted, &reference));
        // Same name, other content (a broken or foreign upload).
        let other = ObjectInfo {
            name: reference.object.clone(),
            ..stored(b"HELLO", Duration::ZERO)
        };
        assert!(!reusable(&other, &reference));
        let truncated = ObjectInfo {
            size: 3,
            ..stored(b"hello", Duration::ZERO)
        };
        assert!(!reusable(&truncated, &reference));
        let undated = ObjectInfo {
            modified: None,
            ..stored(b"hello", Duration::ZERO)
        };
        assert!(!reusable(&undated, &reference));
    }

    #[test]
    fn ages_compare_against_now() {
        let now = async_nats::datetime::now();
        assert!(older_than(
            now - Duration::from_secs(120),
            Duration::from_secs(60)
        ));
        assert!(!older_than(
            now - Duration::from_secs(30),
            Duration::from_secs(60)
        ));
        assert!(!older_than(now + Duration::from_secs(30), Duration::ZERO));
    }

    #[test]
    fn scratch_consumers_cost_the_server_little() {
        let config = scratch_consumer("$O.files.C.N1".into(), DeliverPolicy::All);
        assert_eq!(config.filter_subject, "$O.files.C.N1");
        assert_eq!(config.ack_policy, AckPolicy::None);
        assert!(config.memory_storage);
        assert_eq!(config.num_replicas, 1);
        assert!(
            config.durable_name.is_none(),
            "the server forgets it when idle"
        );
        assert_eq!(config.inactive_threshold, Duration::from_secs(30));
    }

    #[test]
    fn subjects_are_the_object_stores_own() {
        // As async-nats names them: meta by the base64url of the name, chunks by the upload.
        assert_eq!(
            meta_subject("files", "sha256-ab"),
            format!("$O.files.M.{}", URL_SAFE.encode("sha256-ab"))
        );
        assert_eq!(chunk_subject("files", "N1"), "$O.files.C.N1");
        assert!(concerns("files")(&chunk_subject("files", "N1")));
    }

    #[test]
    fn a_refusal_names_the_bucket_and_the_subjects_to_grant() {
        let e = denied(
            "files",
            "Permissions Violation for Publish to \"$O.files.C.x\"",
        );
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        for part in [
            "\"files\"",
            "$O.files.>",
            "$JS.API.DIRECT.GET.OBJ_files.>",
            "README",
        ] {
            assert!(e.message.contains(part), "{part} missing in {}", e.message);
        }
    }
}

//! The KV layout (option `kv`): the collection is a NATS KV bucket, so every NATS service reads
//! and writes the same documents with `kv.get`, `kv.put`, `kv.delete` and `kv.watch`.
//!
//! A document is the entry whose key is its primary key (`key_for`) and whose value is the
//! document's JSON without RxDB's fields; a deleted document is a KV delete marker. A bucket is
//! the stream `KV_<bucket>` with subjects `$KV.<bucket>.>`, so pull, push and live run on it as on
//! any stream. What differs lives here: the key codec, the bucket (found, or created as the NATS
//! clients create one), the entries' operations and the options. `DocumentShape` (batch.rs) asks
//! it for subjects and turns entries into documents with it, so the other modules need not know.

use crate::batch::{Decoded, OFFICIAL_DELETED_FIELD};
use crate::connection::Connection;
use crate::error::{error_chain, ErrorCode, ReplicationError, Result};
use crate::options::{KvOptions, ReplicationOptions};
use crate::stream::{created_meanwhile, jetstream_error, look_up, replicas_error, LookedUp};
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, StorageType, Stream};
use async_nats::jetstream::ErrorCode as JsCode;
use async_nats::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;

/// The header that says what a KV entry is.
pub const KV_OPERATION: &str = "KV-Operation";

/// First character of an escaped key: allowed in KV keys, and rare at the start of an id.
pub const ESCAPE_MARKER: char = '=';

/// The most revisions per key a KV bucket keeps (the NATS clients' limit).
pub const MAX_HISTORY: u64 = 64;

/// What a KV entry is: a value, or a marker that the key was deleted or purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    /// A value (`KV-Operation: PUT`, or no such header).
    #[default]
    Put,
    /// `KV-Operation: DEL`, what `kv.delete(key)` writes.
    Delete,
    /// `KV-Operation: PURGE`, what `kv.purge(key)` writes (older revisions are removed).
    Purge,
    /// A `KV-Operation` no KV client writes.
    Unknown,
}

impl Operation {
    /// Whether the entry is a delete or purge marker.
    pub fn is_marker(self) -> bool {
        matches!(self, Operation::Delete | Operation::Purge)
    }
}

/// The operation of an entry, from its headers.
pub fn operation(headers: Option<&HeaderMap>) -> Operation {
    match headers
        .and_then(|h| h.get(KV_OPERATION))
        .map(|v| v.as_str())
    {
        None | Some("PUT") => Operation::Put,
        Some("DEL") => Operation::Delete,
        Some("PURGE") => Operation::Purge,
        Some(_) => Operation::Unknown,
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.')
}

/// Whether `id` is its own KV key: a valid KV key (`[-/_=.a-zA-Z0-9]+`, no `.` first or last)
/// that is also a valid subject (no `..`, an empty token) and does not start with the marker.
pub fn is_plain_key(id: &str) -> bool {
    !id.is_empty()
        && id.chars().all(is_key_char)
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..")
        && !id.starts_with(ESCAPE_MARKER)
}

/// The KV key of document `id`: the id itself when it is a plain key, else `=` followed by the
/// unpadded base64url of its UTF-8 bytes, which only has characters KV keys allow. No plain key
/// starts with `=`, so an escaped key never equals a plain id.
pub fn key_for(id: &str) -> String {
    if is_plain_key(id) {
        return id.to_string();
    }
    let mut key = String::with_capacity(1 + id.len().div_ceil(3) * 4);
    key.push(ESCAPE_MARKER);
    URL_SAFE_NO_PAD.encode_string(id.as_bytes(), &mut key);
    key
}

/// The ids a key may stand for: the decoded id when the key is an escape `key_for` writes, and
/// the key itself (another service may use a key starting with `=` as it is).
pub fn candidate_ids(key: &str) -> (Option<String>, &str) {
    let decoded = key
        .strip_prefix(ESCAPE_MARKER)
        .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| key_for(id) == key);
    (decoded, key)
}

/// The id of a key whose value does not name it: the decoded id of an escape, else the key.
pub fn id_of_key(key: &str) -> String {
    let (decoded, literal) = candidate_ids(key);
    decoded.unwrap_or_else(|| literal.to_string())
}

/// The stream of bucket `bucket`.
pub fn stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// What the keys of bucket `bucket` follow in their subjects.
pub fn subject_prefix(bucket: &str) -> String {
    format!("$KV.{bucket}")
}

/// The subject of document `id` in the bucket whose subjects start with `prefix`.
pub fn subject_for(prefix: &str, id: &str) -> String {
    format!("{prefix}.{}", key_for(id))
}

/// The key of `subject` (keys may span several tokens).
pub fn key_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix('.')
        .filter(|key| !key.is_empty())
}

/// Every subject of the bucket whose subjects start with `prefix`.
pub fn filter(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The document RxDB gets for the delete or purge marker of `key`: its id and `_deleted`, as
/// the marker holds nothing else.
pub fn marker_document(primary_path: &str, key: &str) -> Decoded {
    let id = id_of_key(key);
    let body = with_field(b"{}", OFFICIAL_DELETED_FIELD, "true");
    Decoded {
        body: with_field(&body, primary_path, &json_string(&id)),
        id,
    }
}

fn json_string(text: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// A value that does not hold its primary key gets it from the key.
pub fn with_id(value: &[u8], primary_path: &str, id: &str) -> Bytes {
    with_field(value, primary_path, &json_string(id))
}

/// `object` (the text of a JSON object without `field`) with `"<field>":<raw>` put first.
pub fn with_field(object: &[u8], field: &str, raw: &str) -> Bytes {
    let open = object.iter().position(|b| *b == b'{').unwrap_or(0);
    let rest = &object[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(object.len() + field.len() + raw.len() + 8);
    out.push(b'{');
    out.extend(json_string(field).into_bytes());
    out.push(b':');
    out.extend_from_slice(raw.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

fn invalid(message: String) -> Result<()> {
    Err(ReplicationError::new(ErrorCode::InvalidOption, message))
}

/// Checks the options of the KV layout and points the stream options at the bucket: stream
/// `KV_<bucket>`, subjects `$KV.<bucket>.>`.
pub fn apply_options(options: &mut ReplicationOptions) -> Result<()> {
    let Some(kv) = options.kv.clone() else {
        return Ok(());
    };
    if !options.stream_name.is_empty() || !options.subject_prefix.is_empty() {
        return invalid(
            "option kv replaces streamName and subjectPrefix: give either kv (a KV bucket) or \
             streamName and subjectPrefix (a stream), not both"
                .to_string(),
        );
    }
    let valid = !kv.bucket.is_empty()
        && kv
            .bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return invalid(format!(
            "option kv.bucket {:?} is not a valid KV bucket name: use letters, digits, '-' and '_'",
            kv.bucket
        ));
    }
    if let Some(history) = kv.history {
        if !(1..=MAX_HISTORY).contains(&history) {
            return invalid(format!(
                "option kv.history must be an integer from 1 to {MAX_HISTORY} (revisions kept per \
                 key, as in NATS KV), got {history}"
            ));
        }
    }
    if options.deleted_field != crate::batch::OFFICIAL_DELETED_FIELD {
        return invalid(format!(
            "option deletedField ({:?}) does not apply with kv: a deleted document is a KV delete \
             marker, not a field of the value; remove the option",
            options.deleted_field
        ));
    }
    let settings = &options.stream_config;
    if settings.allow_direct.is_some() || settings.max_msgs_per_subject.is_some() {
        return invalid(
            "options streamConfig.allowDirect and streamConfig.maxMsgsPerSubject do not apply \
             with kv: a KV bucket always allows direct gets, and kv.history is its revisions per \
             key (streamConfig.replicas and storage do apply)"
                .to_string(),
        );
    }
    if options.has_attachments() || options.attachments != Default::default() {
        return invalid(format!(
            "the collection has attachments, which the KV layout does not carry: a value in \
             bucket {:?} is the plain document that other services read. Replicate this \
             collection with streamName and subjectPrefix (attachments go to an Object Store \
             there), or remove attachments from its schema",
            kv.bucket
        ));
    }
    options.stream_name = stream_name(&kv.bucket);
    options.subject_prefix = subject_prefix(&kv.bucket);
    Ok(())
}

/// Returns the stream of bucket `kv.bucket`, creating the bucket when it is missing (unless
/// `kv.create` is false) with the settings the NATS clients use (`bucket_config`).
pub async fn ensure_bucket(
    conn: &Connection,
    options: &ReplicationOptions,
    kv: &KvOptions,
) -> Result<Stream> {
    let bucket = &kv.bucket;
    let name = stream_name(bucket);
    let filter = filter(&subject_prefix(bucket));
    let refused = |text: String| {
        ReplicationError::new(
            ErrorCode::PermissionDenied,
            format!(
                "the server refused to look up KV bucket {bucket:?} ({text}): grant this user \
                 publish permission on $JS.API.STREAM.INFO.{name} (see the README's KV layout)"
            ),
        )
    };
    match look_up(
        conn,
        &name,
        &filter,
        &format!("KV bucket {bucket:?}"),
        refused,
    )
    .await?
    {
        LookedUp::Storing(stream) => {
            tracing::debug!(bucket = %bucket, "using the existing KV bucket");
            Ok(*stream)
        }
        LookedUp::Other(subjects) => Err(ReplicationError::new(
            ErrorCode::StreamMismatch,
            format!(
                "stream {name:?} exists with subjects {subjects:?}, so it is not KV bucket \
                 {bucket:?} (subjects [{filter:?}]): choose another kv.bucket, or remove that \
                 stream"
            ),
        )),
        LookedUp::Missing if kv.create == Some(false) => Err(ReplicationError::new(
            ErrorCode::BucketNotFound,
            format!(
                "KV bucket {bucket:?} does not exist on {} and option kv.create is false: create \
                 it (e.g. `nats kv add {bucket}`, or kv.create with any NATS client), or let this \
                 replication create it (kv.create: true, the default)",
                conn.servers
            ),
        )),
        LookedUp::Missing => create_bucket(conn, options, kv).await,
    }
}

/// The stream of bucket `kv.bucket` as the NATS clients create it (async-nats'
/// `kv_to_stream_config`, nats.go's `CreateKeyValue`): every client opens it without a config
/// mismatch. Written out here, not through `create_key_value`, which first asks for account
/// information that nats-server 2.9 does not give.
fn bucket_config(options: &ReplicationOptions, kv: &KvOptions) -> StreamConfig {
    let settings = &options.stream_config;
    StreamConfig {
        name: stream_name(&kv.bucket),
        subjects: vec![filter(&subject_prefix(&kv.bucket))],
        max_messages_per_subject: kv.history.unwrap_or(1) as i64,
        max_bytes: -1,
        max_message_size: -1,
        storage: match settings.storage.as_deref() {
            Some("memory") => StorageType::Memory,
            _ => StorageType::File,
        },
        num_replicas: settings.replicas.unwrap_or(1),
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: DiscardPolicy::New,
        ..Default::default()
    }
}

async fn create_bucket(
    conn: &Connection,
    options: &ReplicationOptions,
    kv: &KvOptions,
) -> Result<Stream> {
    let bucket = &kv.bucket;
    let config = bucket_config(options, kv);
    let name = config.name.clone();
    let replicas = config.num_replicas;
    let create_subject = format!("$JS.API.STREAM.CREATE.{name}");
    let created = conn
        .unless_denied(&create_subject, conn.jetstream.create_stream(config))
        .await
        .map_err(|text| {
            ReplicationError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "KV bucket {bucket:?} does not exist and this user may not create it \
                     ({text}): create it beforehand (`nats kv add {bucket}`), or grant publish \
                     permission on {create_subject}"
                ),
            )
        })?;
    let err = match created {
        Ok(stream) => {
            tracing::info!(bucket = %bucket, replicas, history = kv.history.unwrap_or(1), "created the KV bucket");
            return Ok(stream);
        }
        Err(e) => e,
    };
    if let CreateStreamErrorKind::JetStream(js) = err.kind() {
        let code = js.error_code();
        if code == JsCode::STREAM_SUBJECT_OVERLAP {
            return Err(ReplicationError::new(
                ErrorCode::StreamMismatch,
                format!(
                    "cannot create KV bucket {bucket:?}: another stream already stores subjects \
                     that overlap $KV.{bucket}.> ({}): remove that stream or choose another \
                     kv.bucket",
                    error_chain(&err)
                ),
            ));
        }
        if let Some(e) = replicas_error(code, replicas, &name, &conn.servers) {
            return Err(e);
        }
    }
    // Another client may have created it meanwhile: take it if it is the bucket.
    if let Some(stream) = created_meanwhile(conn, &name, &filter(&subject_prefix(bucket))).await {
        return Ok(stream);
    }
    Err(jetstream_error(
        conn,
        &format!("creating KV bucket {bucket:?}"),
        &err,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// What async-nats, nats.js and nats.go accept as a key, and what makes a valid subject.
    fn is_valid_kv_key(key: &str) -> bool {
        !key.is_empty()
            && key.chars().all(is_key_char)
            && !key.starts_with('.')
            && !key.ends_with('.')
            && !key.contains("..")
    }

    fn check(id: &str) -> String {
        let key = key_for(id);
        assert!(is_valid_kv_key(&key), "{id:?} -> {key:?} is no valid key");
        assert_eq!(
            key == id,
            is_plain_key(id),
            "{id:?}: plain ids and only those stay as they are"
        );
        let (decoded, literal) = candidate_ids(&key);
        assert_eq!(literal, key);
        if is_plain_key(id) {
            assert_eq!(decoded, None, "a plain key is never read as an escape");
        } else {
            assert_eq!(decoded.as_deref(), Some(id), "{id:?} did not round-trip");
        }
        assert_eq!(id_of_key(&key), id);
        key
    }

    #[test]
    fn plain_ids_are_their_own_keys() {
        for id in [
            "alice", "A-Z_0-9", "a.b", "a.b.c", "user/42", "k=v", "a=", "x_", "-", "/", "_", "0",
            "a.=b",
        ] {
            assert!(is_plain_key(id), "{id:?}");
            assert_eq!(check(id), id);
            assert_eq!(subject_for("$KV.b", id), format!("$KV.b.{id}"));
            assert_eq!(key_of("$KV.b", &subject_for("$KV.b", id)), Some(id));
        }
    }

    #[test]
    fn other_ids_are_escaped_with_key_characters_only() {
        for id in [
            "",
            ".",
            "..",
            ".a",
            "a.",
            "a..b",
            "=",
            "=abc",
            "=YWxpY2U",
            "with space",
            "tab\t",
            "nl\n",
            "\u{0}",
            "*",
            ">",
            "a.*",
            "a.>",
            "~x",
            "ünï☃",
            "😀",
            "alice@example.com",
            "100%",
            "$x",
            "a:b",
            "a,b",
            "a\"b",
            "a\\b",
        ] {
            assert!(!is_plain_key(id), "{id:?}");
            let key = check(id);
            assert!(key.starts_with(ESCAPE_MARKER), "{id:?} -> {key:?}");
        }
        assert_eq!(key_for("a..b"), "=YS4uYg");
        assert_eq!(key_for(""), "=");
    }

    #[test]
    fn every_short_id_over_a_hostile_alphabet_round_trips_to_a_distinct_key() {
        // Every string of up to 4 characters over characters that matter to the codec: key
        // characters, the marker, dots, characters keys reject, multi-byte ones.
        let alphabet = [
            'a', 'Z', '0', '-', '/', '_', '=', '.', ' ', '*', '>', '~', 'ü', '😀',
        ];
        let mut ids = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &frontier {
                for c in alphabet {
                    let mut id = prefix.clone();
                    id.push(c);
                    next.push(id);
                }
            }
            ids.extend(next.iter().cloned());
            frontier = next;
        }
        assert_eq!(
            ids.len(),
            1 + 14 + 14 * 14 + 14 * 14 * 14 + 14 * 14 * 14 * 14
        );
        let mut owner: HashMap<String, String> = HashMap::new();
        for id in &ids {
            let key = check(id);
            if let Some(other) = owner.insert(key.clone(), id.clone()) {
                panic!("{id:?} and {other:?} share key {key:?}");
            }
        }
    }

    #[test]
    fn keys_other_services_wrote_with_the_marker_stay_readable() {
        // Not base64, not canonical base64, or an escape of a plain id: the key is the id.
        for key in ["=not base64", "=YWxpY2U", "=YR", "=x.y", "=="] {
            let (decoded, literal) = candidate_ids(key);
            assert_eq!(decoded, None, "{key:?}");
            assert_eq!(literal, key);
            assert_eq!(id_of_key(key), key);
        }
        assert_eq!(candidate_ids("=YS5i").0.as_deref(), None, "a.b is plain");
        assert_eq!(candidate_ids("=YSBi").0.as_deref(), Some("a b"));
    }

    #[test]
    fn keys_come_out_of_their_subjects_whole() {
        assert_eq!(key_of("$KV.people", "$KV.people.a.b.c"), Some("a.b.c"));
        assert_eq!(key_of("$KV.people", "$KV.people."), None);
        assert_eq!(key_of("$KV.people", "$KV.peoplex.a"), None);
        assert_eq!(key_of("$KV.people", "$KV.other.a"), None);
        assert_eq!(filter("$KV.people"), "$KV.people.>");
        assert_eq!(stream_name("people"), "KV_people");
        assert_eq!(subject_prefix("people"), "$KV.people");
    }

    #[test]
    fn operations_come_from_the_kv_operation_header() {
        assert_eq!(operation(None), Operation::Put);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(KV_OPERATION, value);
            operation(Some(&headers))
        };
        assert_eq!(with("PUT"), Operation::Put);
        assert_eq!(with("DEL"), Operation::Delete);
        assert_eq!(with("PURGE"), Operation::Purge);
        assert_eq!(with("SOMETHING"), Operation::Unknown);
        assert_eq!(operation(Some(&HeaderMap::new())), Operation::Put);
    }

    #[test]
    fn a_value_without_its_key_gets_it_from_the_key() {
        let json = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        assert_eq!(
            json(with_id(br#"{"name":"A"}"#, "id", "a b")),
            serde_json::json!({"id": "a b", "name": "A"})
        );
        assert_eq!(
            json(with_id(b" { } ", "id", "x\"y")),
            serde_json::json!({"id": "x\"y"})
        );
    }

    #[test]
    fn markers_are_deleted_documents() {
        let doc = marker_document("key", "=YSBi");
        assert_eq!(doc.id, "a b");
        assert_eq!(&doc.body[..], br#"{"key":"a b","_deleted":true}"#);
        assert!(Operation::Delete.is_marker() && Operation::Purge.is_marker());
        assert!(!Operation::Put.is_marker() && !Operation::Unknown.is_marker());
    }
}

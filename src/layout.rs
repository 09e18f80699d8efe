//! Where documents live on NATS: the one module that knows the two layouts, so nothing above it
//! (batch, pull, push, live, objects, replication, the JS glue) branches on which one is used.
//!
//! - `Stream`: the official plugin's layout. Document `id` is on `<subjectPrefix>.<token>`
//!   (`subject.rs`), the body is the JSON document and holds its deleted flag.
//! - `Kv`: a NATS KV bucket, the stream `KV_<bucket>` with subjects `$KV.<bucket>.<key>`
//!   (`kv.rs` has the key codec). A value is the document without RxDB's `_deleted`; a deleted
//!   document is a delete marker (`KV-Operation: DEL`), which holds only the key.
//!
//! Derived from the validated options (`Layout::of`); it never changes them.

use crate::error::{ErrorCode, ReplicationError};
use crate::kv;
use crate::options::{ReplicationOptions, StreamSettings};
use crate::subject;
use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

pub use crate::options::OFFICIAL_DELETED_FIELD;

/// The header that says what a KV entry is.
pub const KV_OPERATION: &str = "KV-Operation";

/// The resolved layout of one replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Stream {
        stream_name: String,
        subject_prefix: String,
        /// The field of the body that marks a deleted document.
        deleted_field: String,
        /// With a custom `deletedField`, writes also carry `_deleted` (the official plugin's).
        official_flag: bool,
        /// Seconds a tombstone stays (`streamConfig.tombstoneTtl`); `None`: for good.
        tombstone_ttl: Option<u64>,
    },
    Kv {
        bucket: String,
        /// Revisions per key of a bucket this library creates.
        history: u64,
        /// Create the bucket when it is missing.
        create: bool,
        /// Seconds a delete marker stays (`streamConfig.tombstoneTtl`); `None`: for good.
        tombstone_ttl: Option<u64>,
    },
}

/// What a message is, from its headers: a value, or a marker that the key was deleted or purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    /// A document (in the KV layout `KV-Operation: PUT`, or no such header).
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
    /// Whether the message is a delete or purge marker: a deleted document that holds only its
    /// id, which a create may replace.
    pub fn is_marker(self) -> bool {
        matches!(self, Operation::Delete | Operation::Purge)
    }
}

/// What the subject and operation of a message say it holds.
#[derive(Debug, PartialEq)]
pub enum Entry<'s> {
    /// A body to check: the ids the subject may stand for (a decoded escape, the token as it is).
    Body {
        decoded: Option<String>,
        literal: &'s str,
    },
    /// A deleted document known only by its id (a KV marker); the body is ignored.
    Tombstone { id: String },
}

/// Why a message is not an entry of this layout (a phrase for the "skipped" report).
pub type NotAnEntry = String;

impl Layout {
    /// The layout the options describe (they were validated: `kv` or stream name and prefix).
    pub fn of(options: &ReplicationOptions) -> Layout {
        match &options.kv {
            Some(kv) => Layout::Kv {
                bucket: kv.bucket.clone(),
                history: kv.history.unwrap_or(1),
                create: kv.create.unwrap_or(true),
                tombstone_ttl: options.stream_config.tombstone_ttl_secs(),
            },
            None => Layout::Stream {
                stream_name: options.stream_name.clone(),
                subject_prefix: options.subject_prefix.clone(),
                deleted_field: options.deleted_field.clone(),
                official_flag: options.deleted_field != OFFICIAL_DELETED_FIELD
                    && options.official_deleted_flag.unwrap_or(true),
                tombstone_ttl: options.stream_config.tombstone_ttl_secs(),
            },
        }
    }

    /// The stream that stores the documents.
    pub fn stream_name(&self) -> String {
        match self {
            Layout::Stream { stream_name, .. } => stream_name.clone(),
            Layout::Kv { bucket, .. } => format!("KV_{bucket}"),
        }
    }

    /// What every document's subject starts with.
    pub fn subject_prefix(&self) -> String {
        match self {
            Layout::Stream { subject_prefix, .. } => subject_prefix.clone(),
            Layout::Kv { bucket, .. } => format!("$KV.{bucket}"),
        }
    }

    /// The subject of document `id`.
    pub fn subject_for(&self, id: &str) -> String {
        match self {
            Layout::Stream { subject_prefix, .. } => subject::subject_for(subject_prefix, id),
            Layout::Kv { .. } => format!("{}.{}", self.subject_prefix(), kv::key_for(id)),
        }
    }

    /// Every subject a document may be on (keys of a bucket may span several tokens).
    pub fn filter(&self) -> String {
        match self {
            Layout::Stream { subject_prefix, .. } => format!("{subject_prefix}.*"),
            Layout::Kv { .. } => format!("{}.>", self.subject_prefix()),
        }
    }

    /// How errors name where the documents are.
    pub fn what(&self) -> String {
        match self {
            Layout::Stream { stream_name, .. } => format!("stream {stream_name:?}"),
            Layout::Kv { bucket, .. } => format!("KV bucket {bucket:?}"),
        }
    }

    /// The operation of a message, from its headers. The stream layout has no markers: its
    /// bodies say whether a document is deleted, whatever headers another writer added.
    pub fn operation(&self, headers: Option<&HeaderMap>) -> Operation {
        if matches!(self, Layout::Stream { .. }) {
            return Operation::Put;
        }
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

    /// What message `subject` with operation `op` holds.
    pub fn entry<'s>(&self, subject: &'s str, op: Operation) -> Result<Entry<'s>, NotAnEntry> {
        let not_ours = || format!("the subject is not {}.<document id>", self.subject_prefix());
        let prefix = self.subject_prefix();
        let (decoded, literal) = match self {
            Layout::Stream { .. } => {
                subject::candidate_ids(subject::token_of(&prefix, subject).ok_or_else(not_ours)?)
            }
            Layout::Kv { .. } => {
                let key = subject
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .filter(|key| !key.is_empty())
                    .ok_or_else(not_ours)?;
                match op {
                    Operation::Put => kv::candidate_ids(key),
                    Operation::Delete | Operation::Purge => {
                        return Ok(Entry::Tombstone {
                            id: kv::id_of_key(key),
                        })
                    }
                    Operation::Unknown => {
                        return Err(format!(
                            "its {KV_OPERATION} header is none of PUT, DEL and PURGE"
                        ))
                    }
                }
            }
        };
        Ok(Entry::Body { decoded, literal })
    }

    /// Whether a body without its primary key is named by its subject (a KV service may put a
    /// value without its key inside).
    pub fn subject_names_keyless_bodies(&self) -> bool {
        matches!(self, Layout::Kv { .. })
    }

    /// Whether a body is a deleted document, and the value to write into `deletedField` when the
    /// body must say so for RxDB. In the KV layout a value is a live document (a `_deleted` in it
    /// is ignored). In the stream layout with a custom `deletedField`, the official plugin (which
    /// ignores that option) writes `_deleted`; where `_deleted` is a boolean it decides: our
    /// writes keep both flags equal, so they differ only where an official-plugin client wrote
    /// the message, carrying along a stale copy of ours. `Err`: `deletedField` is no boolean.
    pub fn deleted_state(
        &self,
        fields: &HashMap<Cow<'_, str>, &RawValue>,
    ) -> Result<(bool, Option<bool>), NotAnEntry> {
        let Layout::Stream { deleted_field, .. } = self else {
            return Ok((false, None));
        };
        let own = flag(fields, deleted_field).map_err(|NotABoolean| {
            format!("the deleted field {deleted_field:?} is not a boolean")
        })?;
        if deleted_field == OFFICIAL_DELETED_FIELD {
            return Ok((own.unwrap_or(false), None));
        }
        // Not our field under a custom deletedField: a value that is no boolean is ignored.
        match flag(fields, OFFICIAL_DELETED_FIELD).ok().flatten() {
            Some(official) if official != own.unwrap_or(false) => Ok((official, Some(official))),
            Some(official) => Ok((official, None)),
            None => Ok((own.unwrap_or(false), None)),
        }
    }

    /// The body RxDB gets for a checked message body (`rewrite`: from `deleted_state`).
    pub fn body_for_rxdb(
        &self,
        payload: &Bytes,
        fields: &HashMap<Cow<'_, str>, &RawValue>,
        rewrite: Option<bool>,
    ) -> Bytes {
        match (self, rewrite) {
            (Layout::Kv { .. }, _) if fields.contains_key(OFFICIAL_DELETED_FIELD) => {
                with_flag(payload, OFFICIAL_DELETED_FIELD, false)
            }
            (Layout::Kv { .. }, _) => with_field(payload, OFFICIAL_DELETED_FIELD, "false"),
            (Layout::Stream { deleted_field, .. }, Some(value)) => {
                with_flag(payload, deleted_field, value)
            }
            (Layout::Stream { .. }, None) => payload.clone(),
        }
    }

    /// Whether a deleted document on the server holds only its id (KV markers): RxDB's states
    /// of it compare as that.
    pub fn tombstones_hold_only_the_id(&self) -> bool {
        matches!(self, Layout::Kv { .. })
    }

    /// The message body for a pushed document, given as its JSON in the server's format
    /// (`deletedField`). Stream: the document, with `_deleted` beside a custom `deletedField`
    /// when `officialDeletedFlag`; KV: the value without `_deleted`, or, for a deleted document,
    /// an empty body (`write_headers` makes it a delete marker).
    pub fn payload_of(&self, json: &Bytes) -> Bytes {
        match self {
            Layout::Stream {
                official_flag: false,
                ..
            } => json.clone(),
            Layout::Stream { deleted_field, .. } => {
                let Some(fields) = Fields::parse(json) else {
                    return json.clone();
                };
                let deleted = fields.get(deleted_field) == Some("true");
                fields.with(
                    OFFICIAL_DELETED_FIELD,
                    if deleted { "true" } else { "false" },
                )
            }
            Layout::Kv { .. } => {
                let Some(fields) = Fields::parse(json) else {
                    return json.clone();
                };
                if fields.get(OFFICIAL_DELETED_FIELD) == Some("true") {
                    return Bytes::new();
                }
                fields.without(OFFICIAL_DELETED_FIELD)
            }
        }
    }

    /// The headers of a write whose body `payload_of` made. A KV delete is what `kv.delete(key)`
    /// writes, so every KV client sees the key deleted. With `tombstoneTtl` a deletion replaces
    /// the document's earlier revisions (`Nats-Rollup: sub`) and expires (`Nats-TTL`); in the KV
    /// layout it is then a purge marker, what nats.go's `kv.Purge(key, PurgeTTL(ttl))` writes.
    pub fn write_headers(&self, payload: &Bytes) -> Option<HeaderMap> {
        let tombstone = match self {
            Layout::Kv { .. } => payload.is_empty(),
            Layout::Stream {
                tombstone_ttl: None,
                ..
            } => false,
            Layout::Stream { deleted_field, .. } => {
                Fields::parse(payload).is_some_and(|f| f.get(deleted_field) == Some("true"))
            }
        };
        if !tombstone {
            return None;
        }
        let mut headers = HeaderMap::new();
        let ttl = self.tombstone_ttl();
        if matches!(self, Layout::Kv { .. }) {
            headers.insert(KV_OPERATION, if ttl.is_some() { "PURGE" } else { "DEL" });
        }
        if let Some(secs) = ttl {
            headers.insert(async_nats::header::NATS_ROLLUP, "sub");
            headers.insert(
                async_nats::header::NATS_MESSAGE_TTL,
                format!("{secs}s").as_str(),
            );
        }
        Some(headers)
    }

    /// Seconds a tombstone this replication writes stays on the stream (`None`: for good).
    pub fn tombstone_ttl(&self) -> Option<u64> {
        match self {
            Layout::Stream { tombstone_ttl, .. } | Layout::Kv { tombstone_ttl, .. } => {
                *tombstone_ttl
            }
        }
    }

    /// What to do about an existing stream of this name whose subjects are others.
    pub fn remedy_for_other_subjects(&self) -> String {
        match self {
            Layout::Stream { .. } => format!(
                "use another streamName, add {:?} to that stream's subjects, or change \
                 subjectPrefix",
                self.filter()
            ),
            Layout::Kv { .. } => "choose another kv.bucket, or remove that stream".to_string(),
        }
    }

    /// What to do when another stream stores subjects that overlap ours.
    pub fn remedy_for_overlap(&self) -> &'static str {
        match self {
            Layout::Stream { .. } => {
                "Use that stream's name as streamName, or choose another subjectPrefix"
            }
            Layout::Kv { .. } => "Remove that stream, or choose another kv.bucket",
        }
    }

    /// How an administrator creates the stream beforehand.
    pub fn how_to_create(&self) -> String {
        match self {
            Layout::Stream { .. } => {
                format!("subjects [{:?}], as the README says", self.filter())
            }
            Layout::Kv { bucket, .. } => format!("`nats kv add {bucket}`"),
        }
    }

    /// The error for a missing stream this replication may not create.
    pub fn missing(&self, servers: &str) -> ReplicationError {
        let Layout::Kv { bucket, .. } = self else {
            return ReplicationError::new(
                ErrorCode::StreamMismatch,
                format!("{} does not exist on {servers}", self.what()),
            );
        };
        ReplicationError::new(
            ErrorCode::BucketNotFound,
            format!(
                "KV bucket {bucket:?} does not exist on {servers} and option kv.create is false: \
                 create it (e.g. `nats kv add {bucket}`, or kv.create with any NATS client), or \
                 let this replication create it (kv.create: true, the default)"
            ),
        )
    }

    /// Whether the stream or bucket may be created when it is missing.
    pub fn may_create(&self) -> bool {
        match self {
            Layout::Stream { .. } => true,
            Layout::Kv { create, .. } => *create,
        }
    }

    /// The config of the stream this library creates. Stream: what the official plugin creates,
    /// so both plugins open it. KV: the bucket as the NATS clients create it (async-nats'
    /// `kv_to_stream_config`, nats.go's `CreateKeyValue`), written out rather than through
    /// `create_key_value`, which first asks for account information nats-server 2.9 does not give.
    pub fn stream_config(&self, settings: &StreamSettings) -> Config {
        let storage = match settings.storage.as_deref() {
            Some("memory") => StorageType::Memory,
            _ => StorageType::File,
        };
        let base = Config {
            name: self.stream_name(),
            subjects: vec![self.filter()],
            num_replicas: settings.replicas.unwrap_or(1),
            storage,
            // Tombstones that expire, and replace their document's earlier revisions.
            allow_message_ttl: self.tombstone_ttl().is_some(),
            allow_rollup: self.tombstone_ttl().is_some(),
            ..Default::default()
        };
        match self {
            Layout::Stream { .. } => Config {
                subjects: settings.subjects.clone().unwrap_or(base.subjects.clone()),
                allow_direct: settings.allow_direct.unwrap_or(false),
                // Discard old (the default): a document's oldest revisions go, its newest stays.
                max_messages_per_subject: settings.max_msgs_per_subject.map_or(-1, |n| n as i64),
                ..base
            },
            Layout::Kv { history, .. } => Config {
                max_messages_per_subject: *history as i64,
                max_bytes: -1,
                max_message_size: -1,
                allow_rollup: true,
                deny_delete: true,
                deny_purge: false,
                allow_direct: true,
                discard: DiscardPolicy::New,
                ..base
            },
        }
    }

    /// The body RxDB gets for a tombstone known only by its id.
    pub fn tombstone_body(primary_path: &str, id: &str) -> Bytes {
        let body = with_field(b"{}", OFFICIAL_DELETED_FIELD, "true");
        with_field(&body, primary_path, &json_string(id))
    }
}

/// A flag of a document holds something other than a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotABoolean;

/// Reads a boolean flag of a document (`None`: it has none).
pub fn flag(
    fields: &HashMap<Cow<'_, str>, &RawValue>,
    name: &str,
) -> Result<Option<bool>, NotABoolean> {
    match fields.get(name).map(|raw| raw.get()) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(NotABoolean),
    }
}

/// A copy of a JSON object with `field` set to `value` (values other than it keep their text).
fn with_flag(payload: &[u8], field: &str, value: bool) -> Bytes {
    let rewritten =
        serde_json::from_slice::<std::collections::BTreeMap<String, Box<RawValue>>>(payload)
            .ok()
            .and_then(|mut doc| {
                doc.insert(
                    field.to_string(),
                    RawValue::from_string(value.to_string()).ok()?,
                );
                serde_json::to_vec(&doc).ok()
            });
    // Only called on bodies parsed as a JSON object, so the rewrite cannot fail.
    rewritten
        .map(Bytes::from)
        .unwrap_or_else(|| Bytes::copy_from_slice(payload))
}

fn json_string(text: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
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

/// The top-level fields of a JSON object in their order, values as written.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn parse(json: &'a [u8]) -> Option<Self> {
        let map: Vec<(Cow<'a, str>, &'a RawValue)> =
            serde_json::from_slice::<OrderedObject<'a>>(json).ok()?.0;
        Some(Fields(map))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.get())
    }

    /// The object with `name` set to `raw`: in its place if present, else last.
    fn with(&self, name: &str, raw: &str) -> Bytes {
        let mut found = false;
        let mut parts: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(k, v)| {
                if k == name {
                    found = true;
                    (k.as_ref(), raw)
                } else {
                    (k.as_ref(), v.get())
                }
            })
            .collect();
        if !found {
            parts.push((name, raw));
        }
        write_object(&parts)
    }

    /// The object without `name`.
    fn without(&self, name: &str) -> Bytes {
        let parts: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, _)| k != name)
            .map(|(k, v)| (k.as_ref(), v.get()))
            .collect();
        write_object(&parts)
    }
}

fn write_object(parts: &[(&str, &str)]) -> Bytes {
    let mut out = String::with_capacity(parts.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    out.push('{');
    for (i, (key, raw)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(key));
        out.push(':');
        out.push_str(raw);
    }
    out.push('}');
    Bytes::from(out)
}

/// Deserializes a JSON object as its entries in order (serde_json's maps sort their keys).
struct OrderedObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for OrderedObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = OrderedObject<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(OrderedObject(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(deleted_field: &str, official_flag: bool) -> Layout {
        Layout::Stream {
            stream_name: "app".into(),
            subject_prefix: "app.docs".into(),
            deleted_field: deleted_field.into(),
            official_flag,
            tombstone_ttl: None,
        }
    }

    fn kv() -> Layout {
        Layout::Kv {
            bucket: "people".into(),
            history: 1,
            create: true,
            tombstone_ttl: None,
        }
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn each_layout_names_its_stream_subjects_and_filter() {
        let s = stream("_deleted", false);
        assert_eq!(
            (s.stream_name(), s.subject_for("a.b"), s.filter()),
            (
                "app".into(),
                subject::subject_for("app.docs", "a.b"),
                "app.docs.*".into()
            )
        );
        let k = kv();
        assert_eq!(k.stream_name(), "KV_people");
        assert_eq!(k.subject_for("x.y"), "$KV.people.x.y");
        assert_eq!(k.subject_for("a b"), "$KV.people.=YSBi");
        assert_eq!(k.filter(), "$KV.people.>");
        assert_eq!(k.what(), "KV bucket \"people\"");
    }

    #[test]
    fn operations_come_from_kv_headers_and_only_in_the_kv_layout() {
        let with = |layout: &Layout, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(KV_OPERATION, value);
            layout.operation(Some(&headers))
        };
        assert_eq!(kv().operation(None), Operation::Put);
        assert_eq!(with(&kv(), "PUT"), Operation::Put);
        assert_eq!(with(&kv(), "DEL"), Operation::Delete);
        assert_eq!(with(&kv(), "PURGE"), Operation::Purge);
        assert_eq!(with(&kv(), "SOMETHING"), Operation::Unknown);
        assert_eq!(with(&stream("_deleted", false), "DEL"), Operation::Put);
        assert!(Operation::Delete.is_marker() && Operation::Purge.is_marker());
        assert!(!Operation::Put.is_marker() && !Operation::Unknown.is_marker());
    }

    #[test]
    fn entries_name_their_ids_and_markers_are_tombstones() {
        let k = kv();
        assert_eq!(
            k.entry("$KV.people.a.b", Operation::Put),
            Ok(Entry::Body {
                decoded: None,
                literal: "a.b"
            })
        );
        assert_eq!(
            k.entry("$KV.people.=YSBi", Operation::Delete),
            Ok(Entry::Tombstone { id: "a b".into() })
        );
        assert!(k.entry("$KV.other.a", Operation::Put).is_err());
        assert!(k.entry("$KV.people.", Operation::Put).is_err());
        assert!(k
            .entry("$KV.people.a", Operation::Unknown)
            .unwrap_err()
            .contains("KV-Operation"));
        let s = stream("_deleted", false);
        assert!(s.entry("app.docs.a.b", Operation::Put).is_err());
        assert!(matches!(
            s.entry("app.docs.a", Operation::Delete),
            Ok(Entry::Body { literal: "a", .. })
        ));
        assert_eq!(
            &Layout::tombstone_body("key", "a b")[..],
            br#"{"key":"a b","_deleted":true}"#
        );
    }

    #[test]
    fn pushed_bodies_take_the_shape_of_the_layout() {
        let json = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let plain = json(r#"{"id":"a","deleted":true,"n":1}"#);
        assert_eq!(stream("deleted", false).payload_of(&plain), plain);
        assert_eq!(
            text(stream("deleted", true).payload_of(&plain)),
            r#"{"id":"a","deleted":true,"n":1,"_deleted":true}"#
        );
        assert_eq!(
            text(stream("deleted", true).payload_of(&json(r#"{"_deleted":true,"id":"a"}"#))),
            r#"{"_deleted":false,"id":"a"}"#
        );
        let k = kv();
        let value = k.payload_of(&json(r#"{"z":1,"id":"a","_deleted":false,"s":"\u00e9"}"#));
        assert_eq!(text(value.clone()), r#"{"z":1,"id":"a","s":"\u00e9"}"#);
        assert_eq!(k.write_headers(&value), None);
        let deleted = k.payload_of(&json(r#"{"id":"a","_deleted":true}"#));
        assert!(deleted.is_empty());
        let headers = k.write_headers(&deleted).expect("a delete marker");
        assert_eq!(headers.get(KV_OPERATION).unwrap().as_str(), "DEL");
        assert_eq!(stream("_deleted", false).write_headers(&Bytes::new()), None);
    }

    #[test]
    fn created_streams_fit_their_layout() {
        let settings = StreamSettings {
            replicas: Some(3),
            max_msgs_per_subject: Some(5),
            ..Default::default()
        };
        let s = stream("_deleted", false).stream_config(&settings);
        assert_eq!(
            (s.name.as_str(), s.subjects.clone(), s.num_replicas),
            ("app", vec!["app.docs.*".to_string()], 3)
        );
        assert_eq!(s.max_messages_per_subject, 5);
        assert!(!s.allow_direct && !s.allow_rollup);
        let k = Layout::Kv {
            bucket: "people".into(),
            history: 7,
            create: false,
            tombstone_ttl: None,
        };
        let c = k.stream_config(&StreamSettings::default());
        assert_eq!(c.name, "KV_people");
        assert_eq!(c.subjects, vec!["$KV.people.>".to_string()]);
        assert_eq!(c.max_messages_per_subject, 7);
        assert!(c.allow_direct && c.allow_rollup && c.deny_delete);
        assert_eq!(c.discard, DiscardPolicy::New);
        assert!(!k.may_create() && stream("_deleted", false).may_create());
        assert!(!c.allow_message_ttl && !s.allow_message_ttl);
    }

    #[test]
    fn expiring_tombstones_roll_up_and_carry_a_ttl() {
        let ttl = Layout::Stream {
            stream_name: "app".into(),
            subject_prefix: "app.docs".into(),
            deleted_field: "gone".into(),
            official_flag: false,
            tombstone_ttl: Some(2),
        };
        let c = ttl.stream_config(&StreamSettings::default());
        assert!(c.allow_message_ttl && c.allow_rollup);
        let h = ttl
            .write_headers(&Bytes::from_static(br#"{"id":"a","gone":true}"#))
            .expect("a tombstone has headers");
        assert_eq!(h.get("Nats-TTL").map(|v| v.as_str()), Some("2s"));
        assert_eq!(h.get("Nats-Rollup").map(|v| v.as_str()), Some("sub"));
        assert!(h.get(KV_OPERATION).is_none());
        // A live document neither expires nor removes its history.
        for live in [
            r#"{"id":"a","gone":false}"#,
            r#"{"id":"a","_deleted":true}"#,
        ] {
            assert!(ttl.write_headers(&Bytes::from(live)).is_none(), "{live}");
        }
        assert!(stream("_deleted", false)
            .write_headers(&Bytes::from_static(br#"{"id":"a","_deleted":true}"#))
            .is_none());
        let kv_ttl = Layout::Kv {
            bucket: "people".into(),
            history: 1,
            create: true,
            tombstone_ttl: Some(5),
        };
        let h = kv_ttl.write_headers(&Bytes::new()).expect("a KV delete");
        assert_eq!(h.get(KV_OPERATION).map(|v| v.as_str()), Some("PURGE"));
        assert_eq!(h.get("Nats-TTL").map(|v| v.as_str()), Some("5s"));
        assert!(
            kv_ttl
                .stream_config(&StreamSettings::default())
                .allow_message_ttl
        );
        let h = kv().write_headers(&Bytes::new()).expect("a KV delete");
        assert_eq!(h.get(KV_OPERATION).map(|v| v.as_str()), Some("DEL"));
        assert!(h.get("Nats-TTL").is_none());
    }
}

//! Turning stream messages into a batch for RxDB: check each body, keep the newest revision of
//! each document, track the checkpoint, and collect what had to be skipped.

use crate::error::{ErrorCode, ReplicationError};
use crate::layout::{flag, with_field, Entry, Layout, Operation, OFFICIAL_DELETED_FIELD};
use crate::schema::FieldRules;
use bytes::Bytes;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};

/// Deepest nesting of arrays and objects a document may have (serde_json's own limit): deeper
/// bodies are parser bombs, not documents.
const MAX_NESTING: usize = 128;

/// The deepest nesting of `[` and `{` in a JSON text (brackets inside strings do not count).
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// What decides whether a message body is a document of this collection.
#[derive(Debug, Clone)]
pub struct DocumentShape {
    /// Where documents are and how messages hold them.
    pub layout: Layout,
    pub primary_path: String,
    /// The collection schema's top-level rules.
    pub rules: FieldRules,
    /// Bodies above this are skipped (option `maxDocumentBytes`).
    pub max_bytes: Option<usize>,
    /// The glue applies a `pull.modifier`: the schema is checked on what it returns
    /// (`check_modified`), not on the message, which the modifier may repair.
    pub schema_after_modifier: bool,
}

/// A message that holds a document of this collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub id: String,
    /// The body for RxDB: the message's own, or a copy whose `deletedField` says what the
    /// official plugin's `_deleted` says (see `deleted_state`).
    pub body: Bytes,
}

/// Whether a message body is one NATS itself sends as a reply (see `nats_reply`).
pub fn is_nats_reply(payload: &[u8]) -> bool {
    serde_json::from_slice::<HashMap<Cow<'_, str>, &RawValue>>(payload)
        .is_ok_and(|fields| nats_reply(&fields).is_some())
}

/// What NATS itself sends as a reply, where a client can aim it at any subject: a JetStream
/// API response (`"type": "io.nats.jetstream.api.v1..."`) or a publish acknowledgement (only
/// `stream` and `seq`, and maybe `domain`, `duplicate`, `error`).
fn nats_reply(fields: &HashMap<Cow<'_, str>, &RawValue>) -> Option<&'static str> {
    let api_type = fields
        .get("type")
        .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()).ok());
    if api_type.is_some_and(|t| t.starts_with("io.nats.jetstream.api.")) {
        return Some("a JetStream API response");
    }
    let ack_keys = ["stream", "seq", "domain", "duplicate", "error"];
    let ack = fields.contains_key("stream")
        && fields.contains_key("seq")
        && fields.keys().all(|k| ack_keys.contains(&k.as_ref()));
    ack.then_some("a JetStream publish acknowledgement")
}

impl DocumentShape {
    /// The subject of document `id`.
    pub fn subject_for(&self, id: &str) -> String {
        self.layout.subject_for(id)
    }

    /// Checks one message (`op`: what its `KV-Operation` header says) and returns the document
    /// it holds.
    pub fn decode(
        &self,
        subject: &str,
        sequence: u64,
        op: Operation,
        payload: &Bytes,
    ) -> Result<Decoded, ReplicationError> {
        let malformed = |what: String| {
            ReplicationError::new(
                ErrorCode::MalformedMessage,
                format!(
                    "message {sequence} on subject {subject:?} was skipped: {what}. Other \
                     documents keep replicating; publish a valid JSON document on that subject \
                     to repair it"
                ),
            )
            .with_subject(subject, sequence)
        };
        let (decoded, literal) = match self.layout.entry(subject, op).map_err(malformed)? {
            Entry::Body { decoded, literal } => (decoded, literal),
            Entry::Tombstone { id } => {
                let body = Layout::tombstone_body(&self.primary_path, &id);
                return Ok(Decoded { id, body });
            }
        };
        if let Some(max) = self.max_bytes.filter(|max| payload.len() > *max) {
            return Err(ReplicationError::new(
                ErrorCode::DocumentTooLarge,
                format!(
                    "message {sequence} on subject {subject:?} was skipped: its body is {} bytes, \
                     over maxDocumentBytes ({max}). Other documents keep replicating; raise \
                     maxDocumentBytes if documents this large are expected",
                    payload.len()
                ),
            )
            .with_subject(subject, sequence));
        }
        if nesting_depth(payload) > MAX_NESTING {
            return Err(malformed(format!(
                "the body nests deeper than {MAX_NESTING} levels"
            )));
        }
        let fields: HashMap<Cow<'_, str>, &RawValue> =
            serde_json::from_slice(payload).map_err(|e| {
                let what = if payload.first().map(|b| *b != b'{').unwrap_or(true) {
                    "the body is not a JSON object".to_string()
                } else {
                    format!("the body is not valid JSON ({e})")
                };
                malformed(what)
            })?;
        if let Some(what) = nats_reply(&fields) {
            return Err(malformed(format!(
                "the body is {what}, not a document: a client sent a request with this subject \
                 as its reply subject (NATS does not check reply subjects against permissions)"
            )));
        }
        if self.layout.subject_names_keyless_bodies()
            && !fields.contains_key(self.primary_path.as_str())
        {
            let id = decoded.unwrap_or_else(|| literal.to_string());
            let body = with_field(payload, &self.primary_path, &json_string(&id));
            return self.decode(subject, sequence, op, &body);
        }
        let id: String = fields
            .get(self.primary_path.as_str())
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or_else(|| {
                malformed(format!(
                    "the body has no string primary key {:?}",
                    self.primary_path
                ))
            })?;
        let (deleted, rewrite) = self.layout.deleted_state(&fields).map_err(malformed)?;
        if decoded.as_deref() != Some(id.as_str()) && literal != id {
            return Err(malformed(format!(
                "its primary key {id:?} does not belong on this subject"
            )));
        }
        let broken = if self.schema_after_modifier {
            None
        } else {
            self.rules.violation(&fields, deleted)
        };
        if let Some(broken) = broken {
            return Err(ReplicationError::new(
                ErrorCode::InvalidDocument,
                format!(
                    "message {sequence} on subject {subject:?} was skipped: document {id:?} does \
                     not fit the collection schema ({broken}). Other documents keep replicating; \
                     publish a valid revision of it to repair it"
                ),
            )
            .with_subject(subject, sequence)
            .with_document(id));
        }
        let body = self.layout.body_for_rxdb(payload, &fields, rewrite);
        Ok(Decoded { id, body })
    }
}

fn json_string(text: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// What the glue's `pull.modifier` made of one pulled document.
#[derive(Debug, Clone, Copy)]
pub enum Modified<'a> {
    /// Its output, as JSON.
    Document(&'a RawValue),
    /// It threw; the error's message.
    Threw(&'a str),
    /// Its output cannot be written as JSON; why.
    NotJson(&'a str),
}

/// Longest part of a user's error message that is quoted in ours.
const MAX_CAUSE_CHARS: usize = 500;

fn quoted_cause(cause: &str) -> String {
    let mut text: String = cause.chars().take(MAX_CAUSE_CHARS).collect();
    if text.len() < cause.len() {
        text.push('…');
    }
    text
}

impl DocumentShape {
    /// Checks document `id` of message `sequence` as `pull.modifier` returned it (in RxDB's
    /// format: `_deleted`) against the collection schema.
    pub fn check_modified(
        &self,
        id: &str,
        sequence: u64,
        modified: Modified<'_>,
    ) -> Result<(), ReplicationError> {
        let subject = self.subject_for(id);
        let skipped = |code, what: String| {
            ReplicationError::new(
                code,
                format!(
                    "message {sequence} on subject {subject:?} was skipped: {what}. Other \
                     documents keep replicating; the document arrives with its next revision \
                     that passes"
                ),
            )
            .with_subject(&subject, sequence)
            .with_document(id)
        };
        let invalid = |what: String| skipped(ErrorCode::InvalidDocument, what);
        let raw = match modified {
            Modified::Threw(cause) => {
                return Err(skipped(
                    ErrorCode::ModifierFailed,
                    format!(
                        "pull.modifier threw for document {id:?} ({}); fix the modifier",
                        quoted_cause(cause)
                    ),
                ))
            }
            Modified::NotJson(cause) => {
                return Err(invalid(format!(
                    "pull.modifier returned a value that is not JSON for document {id:?} ({})",
                    quoted_cause(cause)
                )))
            }
            Modified::Document(raw) => raw,
        };
        let fields: HashMap<Cow<'_, str>, &RawValue> =
            serde_json::from_str(raw.get()).map_err(|_| {
                invalid(format!(
                    "pull.modifier returned {} for document {id:?}, not an object",
                    raw.get().chars().take(40).collect::<String>()
                ))
            })?;
        let has_key = fields
            .get(self.primary_path.as_str())
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .is_some_and(|key| !key.is_empty());
        if !has_key {
            return Err(invalid(format!(
                "pull.modifier returned document {id:?} without a string primary key {:?}",
                self.primary_path
            )));
        }
        let deleted = flag(&fields, OFFICIAL_DELETED_FIELD) == Ok(Some(true));
        match self.rules.violation(&fields, deleted) {
            Some(broken) => Err(invalid(format!(
                "after pull.modifier, document {id:?} does not fit the collection schema \
                 ({broken}); fix the modifier or publish a valid revision of the document"
            ))),
            None => Ok(()),
        }
    }
}

/// A batch as RxDB gets it, from a pull or the live feed.
#[derive(Debug)]
pub struct HandedBatch {
    /// JSON array of the documents, newest revision of each.
    pub documents_json: String,
    /// The stream sequence of each document.
    pub sequences: Vec<u64>,
    /// Stream sequence of the last message read.
    pub checkpoint: u64,
    /// Messages that were skipped and not reported before.
    pub skipped: Vec<ReplicationError>,
    /// Messages after the checkpoint were removed before they were read (a pull only): the
    /// caller reconciles its documents with `Replication::missing_on_stream`.
    pub removed: bool,
}

/// One batch under construction, in stream order.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    /// Stream sequence and body of each document; `None` where a newer revision replaced it.
    docs: Vec<Option<(u64, Bytes)>>,
    slot_of: HashMap<String, usize>,
    /// The sequence of the last message taken, documents or not.
    pub checkpoint: u64,
    pub skipped: Vec<ReplicationError>,
}

impl BatchBuilder {
    pub fn new(checkpoint: u64) -> Self {
        BatchBuilder {
            checkpoint,
            ..Default::default()
        }
    }

    /// Number of distinct documents so far.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Whether it holds no document yet.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Takes one message, unless it would make the batch hold more than `limit` documents:
    /// then it refuses it (returns `false`), as it belongs to the next batch. Messages at or
    /// below the checkpoint are replays and are ignored.
    pub fn push(
        &mut self,
        shape: &DocumentShape,
        subject: &str,
        sequence: u64,
        op: Operation,
        payload: Bytes,
        limit: usize,
    ) -> bool {
        if sequence <= self.checkpoint {
            return true;
        }
        match shape.decode(subject, sequence, op, &payload) {
            Ok(Decoded { id, body }) => {
                if self.slot_of.len() >= limit && !self.slot_of.contains_key(&id) {
                    return false;
                }
                // A newer revision replaces the older one of the same batch.
                if let Some(old) = self.slot_of.insert(id, self.docs.len()) {
                    self.docs[old] = None;
                }
                self.docs.push(Some((sequence, body)));
            }
            Err(err) => self.skipped.push(err),
        }
        self.checkpoint = sequence;
        true
    }

    /// Adds an earlier revision of a document the batch does not hold (its newest message
    /// was no document), first, leaving the checkpoint where it is. Returns whether it was
    /// added.
    pub fn push_earlier(
        &mut self,
        shape: &DocumentShape,
        subject: &str,
        sequence: u64,
        op: Operation,
        payload: &Bytes,
    ) -> bool {
        match shape.decode(subject, sequence, op, payload) {
            Ok(Decoded { id, body }) if !self.slot_of.contains_key(&id) => {
                // First, so that a part of the batch handed out up to a later document keeps
                // that document's sequence as its checkpoint.
                self.slot_of.values_mut().for_each(|slot| *slot += 1);
                self.slot_of.insert(id, 0);
                self.docs.insert(0, Some((sequence, body)));
                true
            }
            _ => false,
        }
    }

    /// Bytes of the documents' JSON bodies.
    pub fn document_bytes(&self) -> usize {
        self.docs.iter().flatten().map(|(_, b)| b.len()).sum()
    }

    /// The documents' bodies, in the order of `documents_json`.
    pub fn bodies(&self) -> impl Iterator<Item = &Bytes> {
        self.docs.iter().flatten().map(|(_, body)| body)
    }

    /// The stream sequence of each document, in the order of `documents_json`.
    pub fn sequences(&self) -> Vec<u64> {
        self.docs.iter().flatten().map(|(seq, _)| *seq).collect()
    }

    /// The documents as one JSON array (bodies are copied as they are, already checked).
    pub fn documents_json(&self) -> String {
        let size: usize = self.docs.iter().flatten().map(|(_, b)| b.len() + 1).sum();
        let mut out = String::with_capacity(size + 2);
        out.push('[');
        let mut first = true;
        for (_, body) in self.docs.iter().flatten() {
            if !first {
                out.push(',');
            }
            first = false;
            // decode() parsed the body as JSON, so it is UTF-8.
            out.push_str(std::str::from_utf8(body).unwrap_or("null"));
        }
        out.push(']');
        out
    }
}

/// Remembers which messages were already reported, so a skipped message that is read again
/// (after a restart or a resync) is reported once. Bounded: the oldest entries are forgotten.
#[derive(Debug)]
pub struct ReportedOnce {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
    capacity: usize,
}

impl ReportedOnce {
    pub fn new(capacity: usize) -> Self {
        ReportedOnce {
            order: VecDeque::new(),
            seen: HashSet::new(),
            capacity,
        }
    }

    /// Keeps the errors whose sequence was not reported yet, and remembers them.
    pub fn filter_new(&mut self, errors: Vec<ReplicationError>) -> Vec<ReplicationError> {
        errors
            .into_iter()
            .filter(|e| {
                let Some(seq) = e.sequence else { return true };
                if !self.seen.insert(seq) {
                    return false;
                }
                self.order.push_back(seq);
                if self.order.len() > self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.seen.remove(&old);
                    }
                }
                true
            })
            .collect()
    }
}

/// The shape of documents `app.docs.<id>` with key `id`, for tests.
#[cfg(test)]
pub(crate) fn test_shape() -> DocumentShape {
    DocumentShape {
        layout: Layout::Stream {
            stream_name: "app".into(),
            subject_prefix: "app.docs".into(),
            deleted_field: "_deleted".into(),
            official_flag: false,
            tombstone_ttl: None,
        },
        primary_path: "id".into(),
        rules: FieldRules::default(),
        max_bytes: None,
        schema_after_modifier: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(br#"{"a":"[[[[{{{\"]]"}"#), 1);
        let deep = format!(
            "{{\"id\":\"a\",\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = shape()
            .decode("app.docs.a", 9, Operation::Put, &body(&deep))
            .unwrap_err();
        assert!(err.message.contains("deeper than 128"), "{}", err.message);
    }

    use super::test_shape as shape;

    fn body(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn replies_nats_sends_are_no_documents_even_with_the_primary_key() {
        // A collection whose primary key is a field NATS replies have: only their shape tells.
        let s = DocumentShape {
            primary_path: "name".into(),
            ..shape()
        };
        for reply in [
            r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","name":"x","config":{}}"#,
            r#"{"stream":"x","seq":8}"#,
            r#"{"stream":"x","seq":8,"duplicate":true}"#,
        ] {
            let s = DocumentShape {
                primary_path: if reply.contains("type") {
                    "name"
                } else {
                    "stream"
                }
                .into(),
                ..s.clone()
            };
            let err = s
                .decode("app.docs.x", 3, Operation::Put, &body(reply))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedMessage, "{reply}");
            assert!(err.message.contains("reply subject"), "{}", err.message);
        }
        // A document that merely has such fields is one.
        let doc = body(r#"{"name":"x","type":"person","stream":"a","seq":1}"#);
        assert!(s.decode("app.docs.x", 3, Operation::Put, &doc).is_ok());
    }

    #[test]
    fn an_earlier_revision_goes_first_and_keeps_the_checkpoint() {
        let s = shape();
        let mut batch = BatchBuilder::new(0);
        assert!(batch.push(
            &s,
            "app.docs.a",
            5,
            Operation::Put,
            body(r#"{"id":"a"}"#),
            10
        ));
        let ack = body(r#"{"stream":"app","seq":9}"#);
        assert!(crate::batch::is_nats_reply(&ack));
        assert!(batch.push(&s, "app.docs.b", 9, Operation::Put, ack, 10));
        assert!(batch.push_earlier(&s, "app.docs.b", 3, Operation::Put, &body(r#"{"id":"b"}"#)));
        assert!(!batch.push_earlier(&s, "app.docs.a", 2, Operation::Put, &body(r#"{"id":"a"}"#)));
        assert_eq!(batch.sequences(), vec![3, 5]);
        assert_eq!(batch.checkpoint, 9);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn accepts_documents_on_their_subject() {
        let s = shape();
        let plain = body(r#"{"id":"a","_deleted":false}"#);
        let decoded = s.decode("app.docs.a", 1, Operation::Put, &plain).unwrap();
        assert_eq!((decoded.id.as_str(), &decoded.body), ("a", &plain));
        let escaped = crate::subject::subject_for("app.docs", "a.b");
        assert_eq!(
            s.decode(&escaped, 1, Operation::Put, &body(r#"{"id":"a.b"}"#))
                .unwrap()
                .id,
            "a.b"
        );
    }

    #[test]
    fn rejects_every_kind_of_malformed_body() {
        let s = shape();
        for (payload, expect) in [
            (&b"not json"[..], "not a JSON object"),
            (b"[1,2]", "not a JSON object"),
            (b"42", "not a JSON object"),
            (b"{\"id\":", "not valid JSON"),
            (b"{\"name\":\"x\"}", "no string primary key"),
            (b"{\"id\":7}", "no string primary key"),
            (b"{\"id\":\"b\"}", "does not belong"),
            (b"{\"id\":\"a\",\"_deleted\":\"yes\"}", "not a boolean"),
            (b"", "not a JSON object"),
        ] {
            let err = s
                .decode(
                    "app.docs.a",
                    9,
                    Operation::Put,
                    &Bytes::from_static(payload),
                )
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedMessage);
            assert_eq!(err.subject.as_deref(), Some("app.docs.a"));
            assert_eq!(err.sequence, Some(9));
            assert!(err.message.contains(expect), "{payload:?}: {}", err.message);
        }
    }

    #[test]
    fn batch_keeps_newest_revision_and_skips_replays() {
        let s = shape();
        let mut b = BatchBuilder::new(2);
        b.push(
            &s,
            "app.docs.a",
            1,
            Operation::Put,
            body(r#"{"id":"a","v":0}"#),
            usize::MAX,
        );
        b.push(
            &s,
            "app.docs.a",
            3,
            Operation::Put,
            body(r#"{"id":"a","v":1}"#),
            usize::MAX,
        );
        b.push(
            &s,
            "app.docs.b",
            4,
            Operation::Put,
            body(r#"{"id":"b"}"#),
            usize::MAX,
        );
        b.push(
            &s,
            "app.docs.c",
            5,
            Operation::Put,
            body("oops"),
            usize::MAX,
        );
        b.push(
            &s,
            "app.docs.a",
            6,
            Operation::Put,
            body(r#"{"id":"a","v":2}"#),
            usize::MAX,
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b.checkpoint, 6);
        assert_eq!(b.skipped.len(), 1);
        assert_eq!(b.documents_json(), r#"[{"id":"b"},{"id":"a","v":2}]"#);
        assert_eq!(b.sequences(), vec![4, 6]);
    }

    #[test]
    fn a_full_batch_refuses_a_new_document_but_takes_a_newer_revision() {
        let s = shape();
        let mut b = BatchBuilder::new(0);
        assert!(b.push(
            &s,
            "app.docs.a",
            1,
            Operation::Put,
            body(r#"{"id":"a"}"#),
            1
        ));
        assert!(!b.push(
            &s,
            "app.docs.b",
            2,
            Operation::Put,
            body(r#"{"id":"b"}"#),
            1
        ));
        assert!(b.push(
            &s,
            "app.docs.a",
            3,
            Operation::Put,
            body(r#"{"id":"a","v":2}"#),
            1
        ));
        assert_eq!(b.checkpoint, 3);
        assert_eq!(b.documents_json(), r#"[{"id":"a","v":2}]"#);
    }

    #[test]
    fn each_skipped_message_is_reported_once() {
        let mut r = ReportedOnce::new(2);
        let e =
            |seq| ReplicationError::new(ErrorCode::MalformedMessage, "x").with_subject("s", seq);
        assert_eq!(r.filter_new(vec![e(1), e(2)]).len(), 2);
        assert_eq!(r.filter_new(vec![e(1), e(2), e(3)]).len(), 1);
        // capacity 2: sequence 1 was forgotten
        assert_eq!(r.filter_new(vec![e(1)]).len(), 1);
    }

    fn deleted_under(field: &str, json: &str) -> (bool, String) {
        let s = DocumentShape {
            layout: Layout::Stream {
                stream_name: "app".into(),
                subject_prefix: "app.docs".into(),
                deleted_field: field.into(),
                official_flag: true,
                tombstone_ttl: None,
            },
            ..shape()
        };
        let decoded = s
            .decode("app.docs.a", 1, Operation::Put, &body(json))
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&decoded.body).unwrap();
        let deleted = doc[field] == serde_json::Value::Bool(true);
        (deleted, String::from_utf8(decoded.body.to_vec()).unwrap())
    }

    #[test]
    fn official_plugin_tombstones_count_under_a_custom_deleted_field() {
        // The official plugin ignores deletedField and writes _deleted.
        let (deleted, body) = deleted_under("deleted", r#"{"id":"a","_deleted":true}"#);
        assert!(deleted, "{body}");
        // A stale copy of our flag, carried along by an official-plugin client, loses.
        assert!(deleted_under("deleted", r#"{"id":"a","deleted":false,"_deleted":true}"#).0);
        assert!(!deleted_under("deleted", r#"{"id":"a","deleted":true,"_deleted":false}"#).0);
        // Our own writes: bodies that agree are handed over as they are.
        for json in [
            r#"{"id":"a","deleted":true}"#,
            r#"{"id":"a","deleted":true,"_deleted":true}"#,
            r#"{"id":"a","deleted":false,"_deleted":false}"#,
            r#"{"id":"a","_deleted":false}"#,
        ] {
            assert_eq!(deleted_under("deleted", json).1, json);
        }
        assert!(deleted_under("deleted", r#"{"id":"a","deleted":true}"#).0);
        // A _deleted that is no boolean is not our field then: ignored, not malformed.
        assert!(!deleted_under("deleted", r#"{"id":"a","_deleted":"x"}"#).0);
        // Under the default field nothing changes.
        assert!(!deleted_under("_deleted", r#"{"id":"a","deleted":true}"#).0);
    }

    #[test]
    fn a_rewritten_tombstone_keeps_every_other_value_as_written() {
        let (_, body) = deleted_under(
            "deleted",
            r#"{"n":12345678901234567890.50,"id":"a","_deleted":true,"s":"\u00e9"}"#,
        );
        assert_eq!(
            body,
            r#"{"_deleted":true,"deleted":true,"id":"a","n":12345678901234567890.50,"s":"\u00e9"}"#
        );
    }

    fn schema_shape() -> DocumentShape {
        DocumentShape {
            rules: FieldRules::from_schema(&serde_json::json!({
                "properties": { "id": { "type": "string" }, "age": { "type": "integer" } },
                "required": ["id", "age"]
            })),
            schema_after_modifier: true,
            ..shape()
        }
    }

    #[test]
    fn with_a_modifier_the_schema_is_checked_on_its_output_not_on_the_message() {
        let s = schema_shape();
        // The message lacks a required field the modifier will add: not skipped here.
        assert!(s
            .decode("app.docs.a", 3, Operation::Put, &body(r#"{"id":"a"}"#))
            .is_ok());
        let raw = |json: &str| RawValue::from_string(json.to_string()).unwrap();
        let fixed = raw(r#"{"id":"a","age":0,"_deleted":false}"#);
        assert!(s.check_modified("a", 3, Modified::Document(&fixed)).is_ok());
        let still_broken = raw(r#"{"id":"a","_deleted":false}"#);
        let err = s
            .check_modified("a", 3, Modified::Document(&still_broken))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidDocument);
        assert_eq!(
            (err.document_id.as_deref(), err.sequence),
            (Some("a"), Some(3))
        );
        assert!(
            err.message.contains("after pull.modifier"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("\"age\" is missing"),
            "{}",
            err.message
        );
        // A tombstone may omit required fields, as without a modifier.
        let tombstone = raw(r#"{"id":"a","_deleted":true}"#);
        assert!(s
            .check_modified("a", 3, Modified::Document(&tombstone))
            .is_ok());
        let keyless = raw(r#"{"age":1}"#);
        assert!(s
            .check_modified("a", 3, Modified::Document(&keyless))
            .unwrap_err()
            .message
            .contains("without a string primary key"));
        let threw = s
            .check_modified("a", 3, Modified::Threw("boom"))
            .unwrap_err();
        assert_eq!(threw.code, ErrorCode::ModifierFailed);
        assert!(threw.message.contains("(boom)"), "{}", threw.message);
        let long = "x".repeat(2000);
        let threw = s
            .check_modified("a", 3, Modified::Threw(&long))
            .unwrap_err();
        assert!(threw.message.len() < 1000, "a user's long message is cut");
    }

    #[test]
    fn without_a_modifier_the_message_is_checked_against_the_schema() {
        let s = DocumentShape {
            schema_after_modifier: false,
            ..schema_shape()
        };
        let err = s
            .decode("app.docs.a", 3, Operation::Put, &body(r#"{"id":"a"}"#))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidDocument);
    }

    fn kv_shape() -> DocumentShape {
        DocumentShape {
            layout: Layout::Kv {
                bucket: "people".into(),
                history: 1,
                create: true,
                tombstone_ttl: None,
            },
            ..test_shape()
        }
    }

    fn json(bytes: &Bytes) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn kv_values_are_live_documents_named_by_their_key() {
        let s = kv_shape();
        let put = |subject: &str, value: &str| s.decode(subject, 1, Operation::Put, &body(value));
        let d = put("$KV.people.a", r#"{"id":"a","n":1}"#).unwrap();
        assert_eq!(d.id, "a");
        assert_eq!(
            json(&d.body),
            serde_json::json!({"id": "a", "n": 1, "_deleted": false})
        );
        // No id in the value: the key gives it, escaped keys decoded.
        let d = put(&s.subject_for("a b"), r#"{"n":2}"#).unwrap();
        assert_eq!(
            json(&d.body),
            serde_json::json!({"id": "a b", "n": 2, "_deleted": false})
        );
        // Keys may span tokens.
        assert_eq!(put("$KV.people.x.y", r#"{"id":"x.y"}"#).unwrap().id, "x.y");
        // A deleted flag in a value does not delete: only markers do.
        let d = put("$KV.people.a", r#"{"id":"a","_deleted":true}"#).unwrap();
        assert_eq!(json(&d.body)["_deleted"], false);
        for (subject, value) in [
            ("$KV.people.a", r#"{"id":"b"}"#),
            ("$KV.people.a", "not json"),
            ("$KV.people.a", "[1]"),
            ("$KV.other.a", r#"{"id":"a"}"#),
        ] {
            let err = put(subject, value).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedMessage, "{subject} {value}");
        }
    }

    #[test]
    fn kv_delete_and_purge_markers_are_deleted_documents() {
        let s = kv_shape();
        for op in [Operation::Delete, Operation::Purge] {
            let d = s
                .decode(&s.subject_for("a b"), 4, op, &Bytes::new())
                .unwrap();
            assert_eq!(d.id, "a b");
            assert_eq!(
                json(&d.body),
                serde_json::json!({"id": "a b", "_deleted": true})
            );
        }
        let err = s
            .decode("$KV.people.a", 4, Operation::Unknown, &Bytes::new())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedMessage);
        assert!(err.message.contains("KV-Operation"), "{}", err.message);
        assert_eq!(s.layout.filter(), "$KV.people.>");
    }
}

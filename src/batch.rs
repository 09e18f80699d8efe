//! Turning stream messages into a batch for RxDB: check each body, keep the newest revision of
//! each document, track the checkpoint, and collect what had to be skipped.

use crate::error::{ErrorCode, ReplicationError};
use crate::schema::FieldRules;
use crate::subject;
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
#[derive(Debug, Clone, Default)]
pub struct DocumentShape {
    pub subject_prefix: String,
    pub primary_path: String,
    pub deleted_field: String,
    /// The collection schema's top-level rules.
    pub rules: FieldRules,
    /// Bodies above this are skipped (option `maxDocumentBytes`).
    pub max_bytes: Option<usize>,
}

impl DocumentShape {
    /// Checks one message and returns the id of the document it holds.
    pub fn decode(
        &self,
        subject: &str,
        sequence: u64,
        payload: &[u8],
    ) -> Result<String, ReplicationError> {
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
        let token = subject::token_of(&self.subject_prefix, subject).ok_or_else(|| {
            malformed(format!(
                "the subject is not {}.<document id>",
                self.subject_prefix
            ))
        })?;
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
        let id: String = fields
            .get(self.primary_path.as_str())
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or_else(|| {
                malformed(format!(
                    "the body has no string primary key {:?}",
                    self.primary_path
                ))
            })?;
        let deleted = match fields.get(self.deleted_field.as_str()).map(|raw| raw.get()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(malformed(format!(
                    "the deleted field {:?} is not a boolean",
                    self.deleted_field
                )))
            }
        };
        let (decoded, literal) = subject::candidate_ids(token);
        if decoded.as_deref() != Some(id.as_str()) && literal != id {
            return Err(malformed(format!(
                "its primary key {id:?} does not belong on this subject"
            )));
        }
        if let Some(broken) = self.rules.violation(&fields, deleted) {
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
        Ok(id)
    }
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

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Takes one message; messages at or below the checkpoint are replays and are ignored.
    pub fn push(&mut self, shape: &DocumentShape, subject: &str, sequence: u64, payload: Bytes) {
        self.push_within(shape, subject, sequence, payload, usize::MAX);
    }

    /// Like `push`, but refuses (returns `false`) a message that would make the batch hold more
    /// than `limit` documents; that message belongs to the next batch.
    pub fn push_within(
        &mut self,
        shape: &DocumentShape,
        subject: &str,
        sequence: u64,
        payload: Bytes,
        limit: usize,
    ) -> bool {
        if sequence <= self.checkpoint {
            return true;
        }
        match shape.decode(subject, sequence, &payload) {
            Ok(id) => {
                if self.slot_of.len() >= limit && !self.slot_of.contains_key(&id) {
                    return false;
                }
                // A newer revision replaces the older one of the same batch.
                if let Some(old) = self.slot_of.insert(id, self.docs.len()) {
                    self.docs[old] = None;
                }
                self.docs.push(Some((sequence, payload)));
            }
            Err(err) => self.skipped.push(err),
        }
        self.checkpoint = sequence;
        true
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
            .decode("app.docs.a", 9, deep.as_bytes())
            .unwrap_err();
        assert!(err.message.contains("deeper than 128"), "{}", err.message);
    }

    fn shape() -> DocumentShape {
        DocumentShape {
            subject_prefix: "app.docs".into(),
            primary_path: "id".into(),
            deleted_field: "_deleted".into(),
            ..Default::default()
        }
    }

    fn body(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn accepts_documents_on_their_subject() {
        let s = shape();
        assert_eq!(
            s.decode("app.docs.a", 1, br#"{"id":"a","_deleted":false}"#)
                .unwrap(),
            "a"
        );
        let escaped = subject::subject_for("app.docs", "a.b");
        assert_eq!(s.decode(&escaped, 1, br#"{"id":"a.b"}"#).unwrap(), "a.b");
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
            let err = s.decode("app.docs.a", 9, payload).unwrap_err();
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
        b.push(&s, "app.docs.a", 1, body(r#"{"id":"a","v":0}"#));
        b.push(&s, "app.docs.a", 3, body(r#"{"id":"a","v":1}"#));
        b.push(&s, "app.docs.b", 4, body(r#"{"id":"b"}"#));
        b.push(&s, "app.docs.c", 5, body("oops"));
        b.push(&s, "app.docs.a", 6, body(r#"{"id":"a","v":2}"#));
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
        assert!(b.push_within(&s, "app.docs.a", 1, body(r#"{"id":"a"}"#), 1));
        assert!(!b.push_within(&s, "app.docs.b", 2, body(r#"{"id":"b"}"#), 1));
        assert!(b.push_within(&s, "app.docs.a", 3, body(r#"{"id":"a","v":2}"#), 1));
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
}

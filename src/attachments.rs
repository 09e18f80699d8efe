//! Attachments on the stream: the shape of a message that carries them, and where each one goes.
//!
//! A document with attachments is written as RxDB 17's own document transports write it
//! (`serializeDocAttachments`, used by its Google Drive and OneDrive replications): stubs
//! `{digest, length, type}` in `_attachments`, and the data of small attachments base64-encoded
//! in `_attachments_data`. An attachment that does not go in the message (over
//! `inlineMaxBytes`, or the message would exceed `max_payload`) is stored in a JetStream Object
//! Store, and `_attachments_refs` names the object instead:
//!
//! ```json
//! {"id":"a","_deleted":false,
//!  "_attachments":{"note.txt":{"digest":"…","length":16,"type":"text/plain"},
//!                  "clip.mp4":{"digest":"…","length":5242880,"type":"video/mp4"}},
//!  "_attachments_data":{"note.txt":"aGVsbG8…"},
//!  "_attachments_refs":{"clip.mp4":{"bucket":"people_attachments","object":"sha256-<hex>",
//!                                   "sha256":"<hex>","size":5242880}}}
//! ```
//!
//! This module is pure (no I/O): it decides the placement, builds the message and reads
//! references back; `objects/` moves the data.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// The field with the base64 data of the attachments carried in the message.
pub const DATA_FIELD: &str = "_attachments_data";
/// The field with the references of the attachments stored in the Object Store.
pub const REFS_FIELD: &str = "_attachments_refs";

/// Where the content of one attachment is stored: an object named by the SHA-256 (lowercase hex)
/// of the content, so equal content is one object and changed content a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The Object Store bucket.
    pub bucket: String,
    /// The object's name: `sha256-<sha256>`.
    pub object: String,
    /// SHA-256 of the content, lowercase hex; readers check it.
    pub sha256: String,
    /// Bytes of content; readers check it.
    pub size: u64,
}

impl ObjectRef {
    /// The reference of `data` in `bucket`.
    pub fn for_content(bucket: &str, data: &[u8]) -> Self {
        let sha256 = sha256_hex(data);
        ObjectRef {
            bucket: bucket.to_string(),
            object: format!("sha256-{sha256}"),
            sha256,
            size: data.len() as u64,
        }
    }

    /// Whether `data` is the content this reference names.
    pub fn matches(&self, data: &[u8]) -> bool {
        data.len() as u64 == self.size && sha256_hex(data) == self.sha256
    }

    /// The digest the Object Store keeps for this content (`SHA-256=<base64url>`), so a stored
    /// object can be compared without reading it; `None` if `sha256` is not hex.
    pub fn object_store_digest(&self) -> Option<String> {
        let bytes: Option<Vec<u8>> = (0..self.sha256.len())
            .step_by(2)
            .map(|i| {
                self.sha256
                    .get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect();
        bytes.map(|d| format!("SHA-256={}", URL_SAFE.encode(d)))
    }
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the glue found the content of one attachment to push.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The bytes, as the `n`th buffer handed over with the batch.
    Buffer(usize),
    /// Base64 from the server's current message (an unchanged attachment).
    Base64(String),
    /// The reference in the server's current message (an unchanged attachment).
    Ref(ObjectRef),
}

/// One attachment of a document to push.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentToEncode {
    pub id: String,
    pub source: Source,
}

/// A document to push whose attachments need placing: its body (JSON with the stubs, without
/// data) and where each attachment's content is.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentToEncode {
    pub id: String,
    pub body: String,
    pub attachments: Vec<AttachmentToEncode>,
}

/// Where one attachment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Base64 in `_attachments_data`.
    Inline,
    /// Uploaded to the Object Store, referenced in `_attachments_refs`.
    Object,
    /// Already in the Object Store: its reference is kept as it is.
    Keep,
}

/// One attachment as `place` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Length of the attachment id as a JSON string.
    pub id_json: usize,
    /// Bytes of content, or the length of an existing reference as JSON (it stays one).
    pub content: Content,
}

/// What `place` knows of an attachment's content.
#[derive(Debug, Clone, Copy)]
pub enum Content {
    /// This many bytes, to place.
    Bytes(usize),
    /// Already in the Object Store; its reference is this long as JSON.
    Stored(usize),
}

/// Room for a reference in the message: `{"bucket":…,"object":"sha256-<64>","sha256":"<64>","size":N}`.
pub fn reference_length(bucket: &str, size: usize) -> usize {
    let placeholder = ObjectRef {
        bucket: bucket.to_string(),
        object: format!("sha256-{}", "0".repeat(64)),
        sha256: "0".repeat(64),
        size: size as u64,
    };
    serde_json::to_string(&placeholder).map_or(256, |s| s.len())
}

/// Length of `n` bytes in base64 with padding.
pub fn base64_length(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// `,"_attachments_data":{}`, the cost of adding either field.
const FIELD_OVERHEAD: usize = 4 + DATA_FIELD.len() + 2;

/// Decides where each attachment goes and returns the size of the message that results.
/// Attachments over `inline_max` bytes go to the Object Store; if the message is still over
/// `limit`, the largest inline ones follow until it fits (or none is left inline: then the
/// size returned is over `limit` and the document cannot be written).
pub fn place(
    body_len: usize,
    attachments: &[Sizing],
    inline_max: usize,
    limit: usize,
    bucket: &str,
) -> (Vec<Placement>, usize) {
    let inline_cost = |a: &Sizing, n: usize| a.id_json + 1 + base64_length(n) + 2 + 1;
    let ref_cost = |a: &Sizing, json: usize| a.id_json + 1 + json + 1;
    let mut placements: Vec<Placement> = attachments
        .iter()
        .map(|a| match a.content {
            Content::Stored(_) => Placement::Keep,
            Content::Bytes(n) if n > inline_max => Placement::Object,
            Content::Bytes(_) => Placement::Inline,
        })
        .collect();
    let size = |placements: &[Placement]| {
        let (mut inline, mut refs) = (0, 0);
        for (a, p) in attachments.iter().zip(placements) {
            match (a.content, p) {
                (Content::Bytes(n), Placement::Inline) => inline += inline_cost(a, n),
                (Content::Bytes(n), _) => refs += ref_cost(a, reference_length(bucket, n)),
                (Content::Stored(json), _) => refs += ref_cost(a, json),
            }
        }
        body_len
            + if inline > 0 {
                FIELD_OVERHEAD + inline
            } else {
                0
            }
            + if refs > 0 { FIELD_OVERHEAD + refs } else { 0 }
    };
    let mut total = size(&placements);
    while total > limit {
        let largest = placements
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == Placement::Inline)
            .max_by_key(|(i, _)| match attachments[*i].content {
                Content::Bytes(n) => n,
                Content::Stored(_) => 0,
            })
            .map(|(i, _)| i);
        let Some(i) = largest else { break };
        placements[i] = Placement::Object;
        total = size(&placements);
    }
    (placements, total)
}

/// The message body: `body` (a JSON object with the stubs) with `_attachments_data` and
/// `_attachments_refs` added (each only when it has entries).
pub fn assemble(
    body: &str,
    inline: &[(&str, &[u8])],
    refs: &[(&str, &ObjectRef)],
) -> Result<String, String> {
    let trimmed = body.trim_end();
    let Some(open) = trimmed.strip_suffix('}') else {
        return Err("the document body is not a JSON object".to_string());
    };
    let data_len: usize = inline
        .iter()
        .map(|(id, d)| id.len() + base64_length(d.len()) + 8)
        .sum();
    let mut out = String::with_capacity(body.len() + data_len + refs.len() * 256 + 64);
    out.push_str(open);
    push_object_field(&mut out, DATA_FIELD, inline, |out, data| {
        out.push('"');
        STANDARD.encode_string(data, out);
        out.push('"');
        Ok(())
    })?;
    push_object_field(&mut out, REFS_FIELD, refs, |out, reference| {
        out.push_str(&serde_json::to_string(reference).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    out.push('}');
    Ok(out)
}

/// Appends the field `field` (after a comma unless it is the object's first) whose value is an
/// object of `entries`, each value written by `value`; nothing when `entries` is empty.
fn push_object_field<T>(
    out: &mut String,
    field: &str,
    entries: &[(&str, T)],
    mut value: impl FnMut(&mut String, &T) -> Result<(), String>,
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let json = |s: &str| serde_json::to_string(s).map_err(|e| e.to_string());
    if !out.trim_end().ends_with('{') {
        out.push(',');
    }
    out.push_str(&json(field)?);
    out.push_str(":{");
    for (i, (id, entry)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json(id)?);
        out.push(':');
        value(out, entry)?;
    }
    out.push('}');
    Ok(())
}

/// Bytes a base64 text decodes to (padding aware; the text is not checked).
pub fn decoded_length(base64: &str) -> usize {
    let padding = base64
        .bytes()
        .rev()
        .take_while(|b| *b == b'=')
        .count()
        .min(2);
    (base64.len() / 4 * 3).saturating_sub(padding)
}

#[derive(Deserialize)]
struct AttachmentFields<'a> {
    #[serde(rename = "_attachments_data", borrow, default)]
    data: Option<HashMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(rename = "_attachments_refs", borrow, default)]
    refs: Option<HashMap<Cow<'a, str>, &'a RawValue>>,
}

fn fields_of(body: &[u8]) -> Option<AttachmentFields<'_>> {
    let mentions = |field: &str| {
        body.windows(field.len() + 2).any(|w| {
            w[0] == b'"' && &w[1..=field.len()] == field.as_bytes() && w[field.len() + 1] == b'"'
        })
    };
    // Most documents have no attachments: skip parsing them.
    if !mentions(DATA_FIELD) && !mentions(REFS_FIELD) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Bytes of attachment content carried in a message body (decoded size of `_attachments_data`).
pub fn inline_bytes(body: &[u8]) -> u64 {
    fields_of(body)
        .and_then(|f| f.data)
        .map(|data| data.values().map(|b| decoded_length(b) as u64).sum())
        .unwrap_or(0)
}

/// The references a message body holds (malformed entries are left out).
pub fn references(body: &[u8]) -> Vec<ObjectRef> {
    fields_of(body)
        .and_then(|f| f.refs)
        .map(|refs| {
            refs.values()
                .filter_map(|raw| serde_json::from_str(raw.get()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(id: &str, content: Option<usize>) -> Sizing {
        Sizing {
            id_json: serde_json::to_string(id).unwrap().len(),
            content: match content {
                Some(n) => Content::Bytes(n),
                None => Content::Stored(150),
            },
        }
    }

    #[test]
    fn the_object_store_digest_is_the_sha256_in_base64url() {
        // SHA-256 of "abc", as the Object Store writes it into an object's meta.
        let r = ObjectRef::for_content("b", b"abc");
        assert_eq!(
            r.object_store_digest().as_deref(),
            Some("SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=")
        );
        let broken = ObjectRef {
            sha256: "zz".into(),
            ..r
        };
        assert_eq!(broken.object_store_digest(), None);
    }

    #[test]
    fn references_are_named_by_the_sha256_of_the_content() {
        let r = ObjectRef::for_content("b", b"abc");
        assert_eq!(
            r.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(r.object, format!("sha256-{}", r.sha256));
        assert_eq!(r.size, 3);
        assert!(r.matches(b"abc"));
        assert!(!r.matches(b"abd"));
        assert_eq!(
            ObjectRef::for_content("b", b"abc"),
            r,
            "same content, same object"
        );
    }

    #[test]
    fn small_attachments_stay_inline_and_large_ones_go_to_the_bucket() {
        let atts = [sizing("a.txt", Some(16)), sizing("big.bin", Some(500_000))];
        let (p, size) = place(100, &atts, 256 * 1024, 1_000_000, "b");
        assert_eq!(p, vec![Placement::Inline, Placement::Object]);
        assert!(size < 400, "{size}");
        let (p, _) = place(100, &[sizing("x", None)], 256 * 1024, 1_000_000, "b");
        assert_eq!(p, vec![Placement::Keep]);
        let (p, _) = place(100, &[sizing("x", Some(1))], 0, 1_000_000, "b");
        assert_eq!(
            p,
            vec![Placement::Object],
            "inlineMaxBytes 0 puts everything in the bucket"
        );
    }

    #[test]
    fn the_largest_inline_attachments_move_until_the_message_fits() {
        let atts = [
            sizing("a", Some(200_000)),
            sizing("b", Some(250_000)),
            sizing("c", Some(100_000)),
        ];
        // All inline would be ~733 KB of base64: over a 500 KB limit, under 1 MB.
        let (p, size) = place(100, &atts, 256 * 1024, 500_000, "b");
        assert_eq!(
            p,
            vec![Placement::Inline, Placement::Object, Placement::Inline]
        );
        assert!(size <= 500_000, "{size}");
        let (p, _) = place(100, &atts, 256 * 1024, 1_000_000, "b");
        assert!(p.iter().all(|p| *p == Placement::Inline));
        // A body too large by itself stays too large: the caller refuses the document.
        let (_, size) = place(600_000, &atts, 256 * 1024, 500_000, "b");
        assert!(size > 500_000);
    }

    #[test]
    fn the_planned_size_matches_the_assembled_message() {
        let body = r#"{"id":"a","_attachments":{}}"#;
        let data = vec![7u8; 1000];
        let reference = ObjectRef::for_content("bucket", &[1u8; 5000]);
        let stored = Sizing {
            id_json: 3,
            content: Content::Stored(serde_json::to_string(&reference).unwrap().len()),
        };
        let (_, planned) = place(
            body.len(),
            &[sizing("d", Some(1000)), stored],
            2000,
            1 << 20,
            "bucket",
        );
        let out = assemble(body, &[("d", &data)], &[("r", &reference)]).unwrap();
        assert!(
            planned >= out.len() && planned < out.len() + 16,
            "{planned} vs {}",
            out.len()
        );
    }

    #[test]
    fn assembles_the_shape_rxdb_uses_plus_references() {
        let reference = ObjectRef::for_content("files", b"large");
        let out = assemble(
            r#"{"id":"a","_attachments":{"n.txt":{"digest":"d","length":5,"type":"text/plain"}}}"#,
            &[("n.txt", b"hello")],
            &[("big \"one\"", &reference)],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["_attachments_data"]["n.txt"], "aGVsbG8=");
        assert_eq!(v["_attachments_refs"]["big \"one\""]["bucket"], "files");
        assert_eq!(v["_attachments_refs"]["big \"one\""]["size"], 5);
        assert_eq!(v["id"], "a");
        // No data, no field.
        let out = assemble(r#"{"id":"a"}"#, &[], &[]).unwrap();
        assert_eq!(out, r#"{"id":"a"}"#);
        assert!(assemble("[1]", &[], &[]).is_err());
    }

    #[test]
    fn counts_inline_bytes_and_reads_references_back() {
        let reference = ObjectRef::for_content("files", b"large content");
        let body = assemble(
            r#"{"id":"a"}"#,
            &[("x", b"hello"), ("y", b"hi")],
            &[("z", &reference)],
        )
        .unwrap();
        assert_eq!(inline_bytes(body.as_bytes()), 7);
        assert_eq!(references(body.as_bytes()), vec![reference]);
        assert_eq!(inline_bytes(br#"{"id":"a","name":"no attachments"}"#), 0);
        assert!(references(br#"{"id":"a","_attachments_refs":{"z":{"bucket":1}}}"#).is_empty());
        assert_eq!(decoded_length("aGk="), 2);
        assert_eq!(decoded_length("aGVsbG8="), 5);
        assert_eq!(decoded_length(""), 0);
    }
}

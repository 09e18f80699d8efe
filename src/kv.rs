//! The key codec of the KV layout (see `layout.rs`): which ids are their own KV keys, and the
//! escape for the others, so every document id has one valid key and every key one id.

use crate::subject;

/// First character of an escaped key: allowed in KV keys, and rare at the start of an id.
pub const ESCAPE_MARKER: char = '=';

/// The most revisions per key a KV bucket keeps (the NATS clients' limit).
pub const MAX_HISTORY: u64 = 64;

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
    subject::escaped(ESCAPE_MARKER, id)
}

/// The ids a key may stand for: the decoded id when the key is an escape `key_for` writes, and
/// the key itself (another service may use a key starting with `=` as it is).
pub fn candidate_ids(key: &str) -> (Option<String>, &str) {
    let decoded = subject::unescaped(ESCAPE_MARKER, key).filter(|id| key_for(id) == key);
    (decoded, key)
}

/// The id of a key whose value does not name it: the decoded id of an escape, else the key.
pub fn id_of_key(key: &str) -> String {
    let (decoded, literal) = candidate_ids(key);
    decoded.unwrap_or_else(|| literal.to_string())
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
}

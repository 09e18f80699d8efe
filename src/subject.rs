//! Document id <-> NATS subject token.
//!
//! A document lives on `<subjectPrefix>.<token>`. Ids that are a valid single subject token are
//! used as they are, so the subjects match those of `rxdb/plugins/replication-nats`. Ids a token
//! cannot carry (a `.`, whitespace or control characters, exactly `*` or `>`, empty) and ids that
//! start with the escape marker get `ESCAPE_MARKER + base64url(id)` instead, which is reversible.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// First character of an escaped token. `~` is legal in subjects and rare in ids.
pub const ESCAPE_MARKER: char = '~';

/// Whether `id` can be used as a subject token exactly as it is.
pub fn is_plain_token(id: &str) -> bool {
    !id.is_empty()
        && id != "*"
        && id != ">"
        && !id.starts_with(ESCAPE_MARKER)
        && !id
            .chars()
            .any(|c| c == '.' || c.is_whitespace() || c.is_control())
}

/// The subject token that stores document `id`.
pub fn encode_token(id: &str) -> String {
    if is_plain_token(id) {
        id.to_string()
    } else {
        escaped(ESCAPE_MARKER, id)
    }
}

/// `marker` followed by the unpadded base64url of `id`'s UTF-8 bytes: only characters that
/// subject tokens and KV keys allow. The escape of subject tokens and of KV keys.
pub fn escaped(marker: char, id: &str) -> String {
    let mut out = String::with_capacity(1 + id.len().div_ceil(3) * 4);
    out.push(marker);
    URL_SAFE_NO_PAD.encode_string(id.as_bytes(), &mut out);
    out
}

/// The id `escaped(marker, id)` wrote into `text`, if it is such an escape.
pub fn unescaped(marker: char, text: &str) -> Option<String> {
    text.strip_prefix(marker)
        .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The ids a token may stand for, most likely first: the decoded id for an escaped token, and
/// the token itself (another writer may have used a literal `~...` id).
pub fn candidate_ids(token: &str) -> (Option<String>, &str) {
    (unescaped(ESCAPE_MARKER, token), token)
}

/// The full subject of document `id` under `prefix`.
pub fn subject_for(prefix: &str, id: &str) -> String {
    let token = encode_token(id);
    let mut subject = String::with_capacity(prefix.len() + 1 + token.len());
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(&token);
    subject
}

/// The token of `subject` under `prefix`, if the subject is `prefix.<one token>`.
pub fn token_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    if rest.is_empty() || rest.contains('.') {
        None
    } else {
        Some(rest)
    }
}

/// Whether a subject prefix is usable: non-empty tokens, no wildcards, no whitespace.
pub fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
        })
}

/// Whether `pattern` is a subject a stream may store: non-empty tokens, `*` for one token,
/// `>` only as the last.
pub fn is_valid_pattern(pattern: &str) -> bool {
    let tokens: Vec<&str> = pattern.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && (*t != ">" || i == tokens.len() - 1)
            && (t.len() == 1 || !t.contains(['*', '>']))
            && !t.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Whether every subject matching `filter` also matches the stream subject `pattern`
/// (both may hold the wildcards `*` and `>`).
pub fn pattern_covers(pattern: &str, filter: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let filter: Vec<&str> = filter.split('.').collect();
    for (i, p) in pattern.iter().enumerate() {
        if *p == ">" {
            return i < filter.len();
        }
        match filter.get(i) {
            None => return false,
            Some(f) if *f == ">" => return false,
            Some(f) => {
                if *p != "*" && (p != f || *f == "*") {
                    return false;
                }
            }
        }
    }
    pattern.len() == filter.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(id: &str) {
        let token = encode_token(id);
        assert!(!token.contains('.'), "{id:?} -> {token:?} has a dot");
        assert!(!token.is_empty() && token != "*" && token != ">");
        assert!(!token.chars().any(|c| c.is_whitespace() || c.is_control()));
        let (decoded, literal) = candidate_ids(&token);
        if is_plain_token(id) {
            assert_eq!(token, id);
            assert_eq!(literal, id);
        } else {
            assert_eq!(decoded.as_deref(), Some(id), "{id:?} did not round-trip");
        }
    }

    #[test]
    fn plain_ids_keep_the_official_plugins_subject() {
        for id in [
            "alice", "a-b_c", "ü☃", "$x", "100%", "a/b", "a=b", "a*b", "a>b",
        ] {
            assert_eq!(subject_for("app.users", id), format!("app.users.{id}"));
            round_trip(id);
        }
    }

    #[test]
    fn ids_a_token_cannot_carry_are_escaped_and_round_trip() {
        for id in [
            "a.b",
            "a..b",
            ".",
            "with space",
            "tab\there",
            "nl\n",
            "*",
            ">",
            "",
            "\u{0}",
            "~x",
            "~",
            "ü.☃",
            " ",
            "\u{a0}nbsp",
        ] {
            assert!(!is_plain_token(id), "{id:?}");
            assert!(encode_token(id).starts_with(ESCAPE_MARKER));
            round_trip(id);
        }
    }

    #[test]
    fn token_of_takes_exactly_one_token() {
        assert_eq!(token_of("a.b", "a.b.c"), Some("c"));
        assert_eq!(token_of("a.b", "a.b.c.d"), None);
        assert_eq!(token_of("a.b", "a.bc"), None);
        assert_eq!(token_of("a.b", "a.b."), None);
        assert_eq!(token_of("a.b", "x.b.c"), None);
    }

    #[test]
    fn literal_tilde_ids_of_other_writers_stay_readable() {
        let (decoded, literal) = candidate_ids("~not base64!");
        assert_eq!(decoded, None);
        assert_eq!(literal, "~not base64!");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(is_valid_prefix("app"));
        assert!(is_valid_prefix("app.users"));
        for bad in ["", "a.", ".a", "a..b", "a.*", "a.>", "a b"] {
            assert!(!is_valid_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn stream_subject_coverage() {
        assert!(pattern_covers("app.*", "app.*"));
        assert!(pattern_covers("app.>", "app.*"));
        assert!(pattern_covers(">", "app.*"));
        assert!(pattern_covers("*.*", "app.*"));
        assert!(!pattern_covers("app.x", "app.*"));
        assert!(!pattern_covers("other.*", "app.*"));
        assert!(!pattern_covers("app.*.*", "app.*"));
        assert!(!pattern_covers("app", "app.*"));
        assert!(!pattern_covers("app.*", "app.>"));
    }
}

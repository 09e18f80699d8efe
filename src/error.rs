//! One error type for the whole core: a stable `code` that JavaScript receives on `err.code`,
//! and a message that names the option, document, subject or server at fault and says what to do.

use serde::Serialize;
use std::fmt;

/// Stable error codes. The string form (`as_str`) is public API: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// An option passed to `replicateNats()` is missing, of the wrong type or unknown.
    InvalidOption,
    /// No server in `connection.servers` could be reached.
    ConnectFailed,
    /// The server refused the credentials.
    AuthFailed,
    /// The TLS handshake or the TLS files failed.
    TlsFailed,
    /// The server answers but JetStream is not enabled on it.
    JetStreamUnavailable,
    /// A stream named `streamName` exists but does not store `subjectPrefix.*`.
    StreamMismatch,
    /// The account may not use a JetStream API or subject it needs.
    PermissionDenied,
    /// A message on the stream is not a document this collection can take.
    MalformedMessage,
    /// A local document cannot be written to NATS as it is (no primary key, not serializable).
    InvalidDocument,
    /// A local document is larger than the server's `max_payload`.
    DocumentTooLarge,
    /// A `pull.modifier` or `push.modifier` (user code) threw for a document, which was skipped.
    ModifierFailed,
    /// A JetStream request failed for a reason that may pass (timeout, leader election, outage).
    Unavailable,
    /// The replication was cancelled; the call did nothing.
    Closed,
    /// A bug: native code failed where it should not (a panic, an answer it could not encode).
    Internal,
    /// An attachment's data is on neither the message nor the Object Store (object deleted,
    /// bucket gone, or written by a client that does not carry attachment data).
    AttachmentMissing,
    /// An attachment's data does not match its reference (size or SHA-256), or is not base64.
    AttachmentCorrupt,
    /// The KV bucket does not exist and `kv.create` is false.
    BucketNotFound,
    /// The stream's limits removed messages a replication had not read yet; it reconciled.
    HistoryRemoved,
    /// The NATS server is too old for an option that was given (it names the version needed).
    UnsupportedServer,
}

impl ErrorCode {
    /// The stable string JavaScript sees on `err.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidOption => "NATS_INVALID_OPTION",
            ErrorCode::ConnectFailed => "NATS_CONNECT_FAILED",
            ErrorCode::AuthFailed => "NATS_AUTH_FAILED",
            ErrorCode::TlsFailed => "NATS_TLS_FAILED",
            ErrorCode::JetStreamUnavailable => "NATS_JETSTREAM_UNAVAILABLE",
            ErrorCode::StreamMismatch => "NATS_STREAM_MISMATCH",
            ErrorCode::PermissionDenied => "NATS_PERMISSION_DENIED",
            ErrorCode::MalformedMessage => "NATS_MALFORMED_MESSAGE",
            ErrorCode::InvalidDocument => "NATS_INVALID_DOCUMENT",
            ErrorCode::DocumentTooLarge => "NATS_DOCUMENT_TOO_LARGE",
            ErrorCode::ModifierFailed => "NATS_MODIFIER_FAILED",
            ErrorCode::Unavailable => "NATS_UNAVAILABLE",
            ErrorCode::Closed => "NATS_CLOSED",
            ErrorCode::Internal => "NATS_INTERNAL",
            ErrorCode::AttachmentMissing => "NATS_ATTACHMENT_MISSING",
            ErrorCode::AttachmentCorrupt => "NATS_ATTACHMENT_CORRUPT",
            ErrorCode::BucketNotFound => "NATS_BUCKET_NOT_FOUND",
            ErrorCode::HistoryRemoved => "NATS_HISTORY_REMOVED",
            ErrorCode::UnsupportedServer => "NATS_UNSUPPORTED_SERVER",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An error of the replication core. Fields beyond `code` and `message` say where it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
}

impl ReplicationError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ReplicationError {
            code,
            message: message.into(),
            subject: None,
            sequence: None,
            document_id: None,
            attachment_id: None,
        }
    }

    pub fn with_subject(mut self, subject: impl Into<String>, sequence: u64) -> Self {
        self.subject = Some(subject.into());
        self.sequence = Some(sequence);
        self
    }

    pub fn with_document(mut self, id: impl Into<String>) -> Self {
        self.document_id = Some(id.into());
        self
    }

    /// Names the attachment (of the document named by `with_document`) at fault.
    pub fn with_attachment(mut self, id: impl Into<String>) -> Self {
        self.attachment_id = Some(id.into());
        self
    }

    /// A transient failure of a JetStream call: RxDB retries after `retryTime`.
    pub fn unavailable(what: &str, err: &dyn std::error::Error) -> Self {
        Self::unavailable_because(what, err, "")
    }

    /// As `unavailable`, with what the failure most likely means (` (…)`) after the cause.
    pub fn unavailable_because(what: &str, err: &dyn std::error::Error, hint: &str) -> Self {
        ReplicationError::new(
            ErrorCode::Unavailable,
            format!(
                "{what} failed: {}{hint}. The replication retries by itself; if this lasts, \
                 check that the NATS server is up and its JetStream is healthy.",
                error_chain(err)
            ),
        )
    }
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ReplicationError {}

/// Renders an error and its `source()` chain on one line ("a: b: c"), skipping repeats.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

pub type Result<T> = std::result::Result<T, ReplicationError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_stable_code_and_location() {
        let err = ReplicationError::new(ErrorCode::MalformedMessage, "bad").with_subject("p.a", 7);
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(
            json,
            r#"{"code":"NATS_MALFORMED_MESSAGE","message":"bad","subject":"p.a","sequence":7}"#
        );
    }

    #[test]
    fn display_starts_with_code() {
        let err = ReplicationError::new(ErrorCode::Closed, "gone");
        assert_eq!(err.to_string(), "NATS_CLOSED: gone");
    }
}

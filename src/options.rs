//! The options of one replication: parsed and validated once (`from_json`), then plain data that
//! nothing rewrites (`layout.rs` derives the layout from them). Each rule on the values of the
//! native options lives here; js/options.cjs checks names and types and the RxDB options.

use crate::error::{ErrorCode, ReplicationError, Result};
use crate::kv::MAX_HISTORY;
use crate::subject;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// What the native core needs of `replicateNats()` options (the JS glue keeps the RxDB ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicationOptions {
    /// JetStream stream that stores the documents (empty with `kv`: `layout.rs` names the
    /// bucket's).
    #[serde(default)]
    pub stream_name: String,
    /// Documents live on `<subject_prefix>.<id>` (empty with `kv`).
    #[serde(default)]
    pub subject_prefix: String,
    /// The collection's primary key field.
    pub primary_path: String,
    /// Boolean field that marks a deleted document in the message body.
    #[serde(default = "default_deleted_field")]
    pub deleted_field: String,
    /// How to reach the server(s).
    #[serde(default)]
    pub connection: ConnectionOptions,
    /// Settings for a stream this library creates.
    #[serde(default)]
    pub stream_config: StreamSettings,
    /// Documents larger than this many bytes are neither pulled (skipped and reported) nor
    /// pushed; without it only the server's `max_payload` limits them.
    pub max_document_bytes: Option<usize>,
    /// The collection's JSON schema (given by the glue, not the user): pulled documents must
    /// fit its top-level field rules.
    #[serde(default)]
    pub collection_schema: Option<serde_json::Value>,
    /// Set by the glue when the user gave a `pull.modifier`: the glue applies it, and the schema
    /// is checked on its output instead of on the message.
    #[serde(default)]
    pub pull_modifier: bool,
    /// Set by the glue when the replication pulls (has `pull` options): without, `stats()` has
    /// no lag to report.
    #[serde(default)]
    pub pulls: bool,
    /// Where attachment data goes (see `attachments.rs`).
    #[serde(default)]
    pub attachments: AttachmentOptions,
    /// The KV layout: the documents are the entries of this KV bucket (see `layout.rs`).
    #[serde(default)]
    pub kv: Option<KvOptions>,
    /// With a custom `deletedField`, also write `_deleted`, the flag the official plugin reads
    /// and writes (true when not given).
    #[serde(default)]
    pub official_deleted_flag: Option<bool>,
    /// The user has `tenantPermissions()`: receive on the tenant's own inbox and make only the
    /// requests those permissions grant (see `confined()` and the README's "Tenants").
    #[serde(default)]
    pub tenant: Option<bool>,
}

/// The inbox of a tenant whose documents are on `subject_prefix` (`tenantPermissions()` grants
/// it alone to subscribe there). The token count comes first, so no tenant's inbox lies under
/// another's: `app.acme` gets `_RXNATS.2.app.acme`, `app.acme.sub` `_RXNATS.3.app.acme.sub`.
pub fn tenant_inbox(subject_prefix: &str) -> String {
    format!(
        "_RXNATS.{}.{subject_prefix}",
        subject_prefix.split('.').count()
    )
}

/// Option `kv`: replicate with a NATS KV bucket instead of `streamName` + `subjectPrefix`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KvOptions {
    /// The bucket (stream `KV_<bucket>`, subjects `$KV.<bucket>.>`).
    pub bucket: String,
    /// Revisions per key of a bucket this library creates (1 when not given, at most 64).
    pub history: Option<u64>,
    /// Create the bucket when it is missing (true when not given); false requires it to exist.
    pub create: Option<bool>,
}

/// Option `attachments`: small attachments travel in the message, the others in an Object Store.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentOptions {
    /// The Object Store bucket; `<streamName>_attachments` by default.
    pub bucket: Option<String>,
    /// Attachments up to this many bytes travel base64-encoded in the message (as long as the
    /// message stays under `max_payload`); larger ones go to the bucket.
    pub inline_max_bytes: Option<usize>,
}

/// Default of `attachments.inlineMaxBytes`: a 256 KiB file is 342 KiB of base64, well under the
/// default `max_payload` (1 MiB) with room for the document.
pub const DEFAULT_INLINE_MAX_BYTES: usize = 256 * 1024;

/// The deleted flag RxDB uses, and the one the official plugin writes whatever `deletedField` says.
pub const OFFICIAL_DELETED_FIELD: &str = "_deleted";

fn default_deleted_field() -> String {
    OFFICIAL_DELETED_FIELD.to_string()
}

/// Default `connection.pingInterval`: with `maxPingOut` 2, a silent link is found within 20 s.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 10_000;
/// Default `connection.maxPingOut` (as nats.js).
pub const DEFAULT_MAX_PING_OUT: u64 = 2;

/// nats.js `ConnectionOptions` names for what a server needs. Times are milliseconds.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionOptions {
    pub servers: Option<Servers>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub pass: Option<Secret>,
    pub token: Option<Secret>,
    /// An nkey seed (`SU...`), as nats.js `nkeyAuthenticator` takes.
    pub nkey_seed: Option<Secret>,
    /// Path of a `.creds` file (JWT + seed), as nats.js `credsAuthenticator` reads.
    pub creds_file: Option<String>,
    pub timeout: Option<u64>,
    /// -1 (the default) reconnects forever.
    pub max_reconnect_attempts: Option<i64>,
    pub reconnect_time_wait: Option<u64>,
    pub wait_on_first_connect: Option<bool>,
    /// With `max_ping_out`: a link that is silent for `ping_interval * max_ping_out` is dead
    /// (defaults 10 000 ms and 2: 20 s; see `silent_link_after`).
    pub ping_interval: Option<u64>,
    /// nats.js's name: how many ping intervals a link may stay silent before it is dead.
    pub max_ping_out: Option<u64>,
    pub tls: Option<TlsOptions>,
    /// Where replies are received (nats.js `inboxPrefix`; `_INBOX` when not given).
    pub inbox_prefix: Option<String>,
}

/// One server URL or a list of them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Servers {
    One(String),
    Many(Vec<String>),
}

/// TLS files or inline PEM, nats.js names.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsOptions {
    /// CA certificate(s) that sign the server's certificate.
    pub ca_file: Option<String>,
    /// Client certificate and key for mutual TLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Inline PEM (nats.js takes a string or a Buffer): known only to be refused with a
    /// message that says to use the files. The key is a secret, kept out of logs.
    pub ca: Option<serde_json::Value>,
    pub cert: Option<serde_json::Value>,
    pub key: Option<Secret>,
}

/// Settings applied when this library creates the stream (an existing stream is left as it is).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamSettings {
    /// Number of replicas in a JetStream cluster (1 by default).
    pub replicas: Option<usize>,
    /// `"file"` (default) or `"memory"`.
    pub storage: Option<String>,
    /// Let any replica answer reads, which enables one-request conflict checks for a whole
    /// batch on nats-server >= 2.11. Off by default: the official plugin cannot open a stream
    /// whose config differs from its own.
    pub allow_direct: Option<bool>,
    /// Revisions of each document the stream keeps (`max_msgs_per_subject`, like a KV bucket's
    /// `history`); the oldest go first, so the newest revision, a tombstone too, always stays.
    /// Unlimited when not given.
    pub max_msgs_per_subject: Option<u64>,
    /// Let deletions expire: a tombstone this library writes replaces its document's earlier
    /// revisions (a rollup) and leaves the stream this many milliseconds later (an integer
    /// >= 1000, rounded up to whole seconds, as NATS counts TTLs). Needs nats-server >= 2.11.
    pub tombstone_ttl: Option<u64>,
    /// The subjects of the stream when this library creates it (one of them must cover
    /// `<subjectPrefix>.*`): a stream shared with other prefixes, such as `['app.>']` for
    /// tenants on `app.<tenant>`. Not given: `<subjectPrefix>.*`, the official plugin's.
    pub subjects: Option<Vec<String>>,
}

impl StreamSettings {
    /// `tombstone_ttl` in the whole seconds a `Nats-TTL` header carries.
    pub fn tombstone_ttl_secs(&self) -> Option<u64> {
        self.tombstone_ttl.map(|ms| ms.div_ceil(1000))
    }
}

/// The options of `compactStream()`: which stream, how to reach it, how many revisions to keep.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompactOptions {
    pub stream_name: String,
    #[serde(default)]
    pub connection: ConnectionOptions,
    /// Revisions kept per document (1 when not given).
    pub max_msgs_per_subject: Option<u64>,
    /// Also set the stream's `max_msgs_per_subject`, so it stays bounded (false when not given).
    pub limit_stream: Option<bool>,
    /// Also remove every tombstone older than this many milliseconds (0: all), with the earlier
    /// revisions of its document. Not given: tombstones stay.
    pub tombstones_older_than: Option<u64>,
    /// The deleted flag of the replications of the stream (`_deleted` when not given).
    pub deleted_field: Option<String>,
}

/// A credential. Its value never appears in `Debug` output or in error messages.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    // Deserialize through a Value so that serde's "invalid type: string \"...\"" never echoes it.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Secret(s)),
            _ => Err(serde::de::Error::custom(
                "expected a string (value not shown)",
            )),
        }
    }
}

impl ConnectionOptions {
    /// Server addresses, `nats://127.0.0.1:4222` when none is given.
    pub fn server_list(&self) -> Vec<String> {
        match &self.servers {
            None => vec!["nats://127.0.0.1:4222".to_string()],
            Some(Servers::One(s)) => vec![s.clone()],
            Some(Servers::Many(v)) => v.clone(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout.unwrap_or(20_000))
    }

    /// How long a connected link may go without a byte from the server before it counts as
    /// dead and the client reconnects: `pingInterval` (10 s) × `maxPingOut` (2). A partition
    /// that drops packets closes no socket; only this finds it.
    pub fn silent_link_after(&self) -> Duration {
        Duration::from_millis(
            self.ping_interval
                .unwrap_or(DEFAULT_PING_INTERVAL_MS)
                .saturating_mul(self.max_ping_out.unwrap_or(DEFAULT_MAX_PING_OUT)),
        )
    }

    /// The period of the client's pings. async-nats sends one after each period without a
    /// message from the server and drops the link at the third unanswered one (its fixed
    /// `MAX_PENDING_PINGS` is 2), so a third of `silent_link_after`, less 5% for its timer to
    /// fire late, keeps the loss within that limit.
    pub fn client_ping_period(&self) -> Duration {
        let limit = self.silent_link_after();
        ((limit - limit / 20) / 3).max(Duration::from_millis(1))
    }

    /// A key that is equal for equal options, so equal options share one connection.
    pub fn sharing_key(&self) -> String {
        format!("{self:?}|{}", secret_fingerprint(self))
    }
}

// Debug hides secrets, so two option sets differing only in a password must still differ.
fn secret_fingerprint(o: &ConnectionOptions) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in [&o.pass, &o.token, &o.nkey_seed]
        .into_iter()
        .chain(o.tls.as_ref().map(|t| &t.key))
    {
        s.as_ref().map(|s| &s.0).hash(&mut h);
    }
    h.finish()
}

/// Parses options JSON; a mistake is `NATS_INVALID_OPTION` naming the option (path) at fault.
fn parse_options<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    let deserializer = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let mut detail = e.inner().to_string();
        // The position is in a JSON text the caller never saw.
        if let Some(at) = detail.rfind(" at line ") {
            detail.truncate(at);
        }
        let message = if path == "." {
            format!("invalid options: {detail}")
        } else {
            format!("invalid option {path}: {detail}")
        };
        ReplicationError::new(ErrorCode::InvalidOption, message)
    })
}

fn invalid<T>(message: String) -> Result<T> {
    Err(ReplicationError::new(ErrorCode::InvalidOption, message))
}

/// Whether `name` may name a KV or Object Store bucket: letters, digits, `-` and `_`.
pub fn is_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_stream_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
    {
        return invalid(format!(
            "option streamName {name:?} is not a valid JetStream stream name: use letters, \
             digits, '-' and '_' (no '.', '*', '>', '/', '\\' or spaces)"
        ));
    }
    Ok(())
}

fn check_max_msgs_per_subject(value: Option<u64>, option: &str) -> Result<()> {
    if value == Some(0) {
        return invalid(format!(
            "option {option} must be an integer >= 1 (revisions kept per document), got 0"
        ));
    }
    if value.is_some_and(|n| n > i64::MAX as u64) {
        return invalid(format!("option {option} is too large"));
    }
    Ok(())
}

impl CompactOptions {
    /// Parses and checks the options JSON of `compactStream()`.
    pub fn from_json(json: &str) -> Result<Self> {
        let options: CompactOptions = parse_options(json)?;
        check_stream_name(&options.stream_name)?;
        check_max_msgs_per_subject(options.max_msgs_per_subject, "maxMsgsPerSubject")?;
        if options.deleted_field.as_deref().is_some_and(str::is_empty) {
            return invalid("option deletedField must be a non-empty string".to_string());
        }
        options.connection.check()?;
        Ok(options)
    }
}

impl ReplicationOptions {
    /// The Object Store bucket for large attachments.
    pub fn attachment_bucket(&self) -> String {
        self.attachments
            .bucket
            .clone()
            .unwrap_or_else(|| format!("{}_attachments", self.stream_name))
    }

    /// See `AttachmentOptions::inline_max_bytes`.
    pub fn inline_max_bytes(&self) -> usize {
        self.attachments
            .inline_max_bytes
            .unwrap_or(DEFAULT_INLINE_MAX_BYTES)
    }

    /// Whether the collection stores attachments (its schema has `attachments`).
    pub fn has_attachments(&self) -> bool {
        self.collection_schema
            .as_ref()
            .is_some_and(|schema| schema.get("attachments").is_some())
    }

    /// Parses and checks the options JSON the JS glue sends.
    pub fn from_json(json: &str) -> Result<Self> {
        let mut options: ReplicationOptions = parse_options(json)?;
        options.check()?;
        if options.tenant == Some(true) {
            // The prefix of its subjects: `<subjectPrefix>`, or `$KV.<bucket>` (see layout.rs).
            let inbox = tenant_inbox(&match &options.kv {
                Some(kv) => format!("$KV.{}", kv.bucket),
                None => options.subject_prefix.clone(),
            });
            match &options.connection.inbox_prefix {
                Some(given) if *given != inbox => {
                    return invalid(format!(
                        "option connection.inboxPrefix is {given:?}, but a tenant receives on \
                         {inbox:?}, the inbox tenantPermissions() grants it: remove the option"
                    ))
                }
                _ => options.connection.inbox_prefix = Some(inbox),
            }
        }
        Ok(options)
    }

    /// Whether the replication keeps to its prefix's requests on a shared stream (option
    /// `tenant` with the stream layout; a KV tenant has a bucket of its own, granted whole).
    pub fn confined(&self) -> bool {
        self.tenant == Some(true) && self.kv.is_none()
    }

    fn check(&self) -> Result<()> {
        match &self.kv {
            Some(kv) => self.check_kv(kv)?,
            None => self.check_stream()?,
        }
        if self.deleted_field.is_empty() {
            return invalid("option deletedField must not be empty".to_string());
        }
        if self.max_document_bytes == Some(0) {
            return invalid("option maxDocumentBytes must be at least 1 (bytes)".to_string());
        }
        self.connection.check()?;
        if let Some(storage) = &self.stream_config.storage {
            if storage != "file" && storage != "memory" {
                return invalid(format!(
                    "option streamConfig.storage is {storage:?}: use \"file\" or \"memory\""
                ));
            }
        }
        if self.stream_config.replicas == Some(0) {
            return invalid("option streamConfig.replicas must be at least 1".to_string());
        }
        if let Some(ms) = self.stream_config.tombstone_ttl {
            if ms < 1000 {
                return invalid(format!(
                    "option streamConfig.tombstoneTtl is {ms}: use an integer of at least 1000 \
                     (milliseconds; NATS expires messages after whole seconds)"
                ));
            }
        }
        // Checked when the bucket is named, or will be used: a stream name may hold characters
        // a bucket name cannot.
        if self.attachments.bucket.is_some() || self.has_attachments() {
            let bucket = self.attachment_bucket();
            if !is_bucket_name(&bucket) {
                let origin = if self.attachments.bucket.is_some() {
                    "option attachments.bucket".to_string()
                } else {
                    format!(
                        "the default attachments bucket (from streamName {:?})",
                        self.stream_name
                    )
                };
                return invalid(format!(
                    "{origin} {bucket:?} is not a valid Object Store bucket name: use letters, \
                     digits, '-' and '_' (set attachments.bucket)"
                ));
            }
        }
        if self.confined() && self.has_attachments() && self.attachments.bucket.is_none() {
            return invalid(format!(
                "option tenant: a tenant's attachments need a bucket of its own, and the default \
                 ({:?}) is shared by every prefix of the stream: set attachments.bucket, and give \
                 the user tenantPermissions({{ streamName, subjectPrefix, attachments: {{ bucket \
                 }} }})",
                self.attachment_bucket()
            ));
        }
        check_max_msgs_per_subject(
            self.stream_config.max_msgs_per_subject,
            "streamConfig.maxMsgsPerSubject",
        )
    }
}

impl ReplicationOptions {
    fn check_stream(&self) -> Result<()> {
        if self.stream_name.is_empty() || self.subject_prefix.is_empty() {
            return invalid(
                "options streamName and subjectPrefix are required (or kv, for a KV bucket)"
                    .to_string(),
            );
        }
        check_stream_name(&self.stream_name)?;
        if !subject::is_valid_prefix(&self.subject_prefix) {
            return invalid(format!(
                "option subjectPrefix {:?} is not a valid NATS subject prefix: use one or more \
                 non-empty tokens separated by '.', without '*', '>' or spaces",
                self.subject_prefix
            ));
        }
        if let Some(subjects) = &self.stream_config.subjects {
            let filter = format!("{}.*", self.subject_prefix);
            if let Some(bad) = subjects.iter().find(|s| !subject::is_valid_pattern(s)) {
                return invalid(format!(
                    "option streamConfig.subjects holds {bad:?}, which is not a NATS subject: \
                     use non-empty tokens separated by '.', where '*' stands for one token and a \
                     last '>' for one or more"
                ));
            }
            if !subjects.iter().any(|s| subject::pattern_covers(s, &filter)) {
                return invalid(format!(
                    "option streamConfig.subjects {subjects:?} does not cover {filter:?}, where \
                     subjectPrefix {:?} puts the documents: add it, or a pattern such as \
                     \"{}.>\" that covers it",
                    self.subject_prefix,
                    self.subject_prefix.split('.').next().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    /// The KV layout's rules: a bucket replaces the stream options, and some options do not
    /// apply to it.
    fn check_kv(&self, kv: &KvOptions) -> Result<()> {
        if !self.stream_name.is_empty() || !self.subject_prefix.is_empty() {
            return invalid(
                "option kv replaces streamName and subjectPrefix: give either kv (a KV bucket) or \
                 streamName and subjectPrefix (a stream), not both"
                    .to_string(),
            );
        }
        if !is_bucket_name(&kv.bucket) {
            return invalid(format!(
                "option kv.bucket {:?} is not a valid KV bucket name: use letters, digits, '-' \
                 and '_'",
                kv.bucket
            ));
        }
        if let Some(history) = kv.history {
            if !(1..=MAX_HISTORY).contains(&history) {
                return invalid(format!(
                    "option kv.history must be an integer from 1 to {MAX_HISTORY} (revisions \
                     kept per key, as in NATS KV), got {history}"
                ));
            }
        }
        if self.deleted_field != OFFICIAL_DELETED_FIELD {
            return invalid(format!(
                "option deletedField ({:?}) does not apply with kv: a deleted document is a KV \
                 delete marker, not a field of the value; remove the option",
                self.deleted_field
            ));
        }
        let settings = &self.stream_config;
        if settings.allow_direct.is_some()
            || settings.max_msgs_per_subject.is_some()
            || settings.subjects.is_some()
        {
            return invalid(
                "options streamConfig.allowDirect, streamConfig.maxMsgsPerSubject and \
                 streamConfig.subjects do not apply with kv: a KV bucket always allows direct \
                 gets, kv.history is its revisions per key, and its subjects are its keys' \
                 (streamConfig.replicas, storage and tombstoneTtl do apply)"
                    .to_string(),
            );
        }
        if self.has_attachments() || self.attachments != Default::default() {
            return invalid(format!(
                "the collection has attachments, which the KV layout does not carry: a value in \
                 bucket {:?} is the plain document that other services read. Replicate this \
                 collection with streamName and subjectPrefix (attachments go to an Object \
                 Store there), or remove attachments from its schema",
                kv.bucket
            ));
        }
        Ok(())
    }
}

impl ConnectionOptions {
    /// Checks what serde cannot: combinations, and values only a parser can judge.
    fn check(&self) -> Result<()> {
        let c = self;
        if c.server_list().is_empty() {
            return invalid("option connection.servers is an empty list".to_string());
        }
        if c.pass.is_some() && c.user.is_none() {
            return invalid("option connection.pass is set without connection.user".to_string());
        }
        let auth_kinds = [
            c.user.is_some(),
            c.token.is_some(),
            c.nkey_seed.is_some(),
            c.creds_file.is_some(),
        ];
        if auth_kinds.iter().filter(|x| **x).count() > 1 {
            return invalid(
                "options connection.user/pass, token, nkeySeed and credsFile exclude each other: \
                 give one"
                    .to_string(),
            );
        }
        if let Some(seed) = &c.nkey_seed {
            // Checked here: async-nats would report a bad seed as refused credentials.
            if let Err(e) = nkeys::KeyPair::from_seed(&seed.0) {
                return invalid(format!(
                    "option connection.nkeySeed is not a valid nkey seed ({}; value not shown): \
                     pass the seed of a user nkey, the line starting with \"SU\" that \
                     `nk -gen user` or `nsc` prints",
                    e.kind()
                ));
            }
        }
        if let Some(tls) = &c.tls {
            if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() {
                return invalid(
                    "options connection.tls.ca/cert/key (inline PEM) are not supported: write \
                     the PEM to files and pass connection.tls.caFile/certFile/keyFile"
                        .to_string(),
                );
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return invalid(
                    "options connection.tls.certFile and keyFile must be given together"
                        .to_string(),
                );
            }
        }
        if c.ping_interval == Some(0) {
            return invalid(
                "option connection.pingInterval is 0: use a number of milliseconds (default 10000)"
                    .to_string(),
            );
        }
        if c.max_ping_out == Some(0) {
            return invalid(
                "option connection.maxPingOut is 0: use a count of at least 1 (default 2)"
                    .to_string(),
            );
        }
        if let Some(n) = c.max_reconnect_attempts {
            if n < -1 {
                return invalid(format!(
                    "option connection.maxReconnectAttempts is {n}: use -1 (forever) or a count"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ReplicationOptions> {
        ReplicationOptions::from_json(json)
    }

    /// `result` is refused as an invalid option whose message names `named` (`input` for the
    /// failure message).
    fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, named: &str, input: &str) {
        let err = result.unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidOption, "{input}");
        assert!(err.message.contains(named), "{input}: {}", err.message);
    }

    const BASE: &str = r#""streamName":"s","subjectPrefix":"app.docs","primaryPath":"id""#;

    #[test]
    fn stream_subjects_must_be_subjects_that_cover_the_prefix() {
        let with = |subjects: &str| {
            parse(&format!(
                r#"{{{BASE},"streamConfig":{{"subjects":{subjects}}}}}"#
            ))
        };
        for good in [r#"["app.>"]"#, r#"["x.y", "app.*.*"]"#, r#"["app.docs.*"]"#] {
            let o = with(good).unwrap();
            assert!(o.stream_config.subjects.is_some(), "{good}");
        }
        for bad in [r#"["other.>"]"#, r#"["app.docs"]"#, r#"["app.docs.x"]"#] {
            assert_invalid(with(bad), "does not cover \"app.docs.*\"", bad);
        }
        for bad in [
            r#"["app..x"]"#,
            r#"["app.>.x"]"#,
            r#"["app.a*"]"#,
            r#"[""]"#,
        ] {
            assert_invalid(with(bad), "is not a NATS subject", bad);
        }
        let kv = r#"{"kv":{"bucket":"b"},"primaryPath":"id","streamConfig":{"subjects":["a.>"]}}"#;
        assert_invalid(parse(kv), "streamConfig.subjects", kv);
    }

    #[test]
    fn defaults_apply() {
        let o = parse(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(o.deleted_field, "_deleted");
        assert_eq!(o.connection.server_list(), vec!["nats://127.0.0.1:4222"]);
        assert_eq!(o.connection.max_reconnect_attempts, None);
    }

    #[test]
    fn servers_take_a_string_or_a_list() {
        let o = parse(&format!(
            r#"{{{BASE},"connection":{{"servers":"nats://h:1"}}}}"#
        ))
        .unwrap();
        assert_eq!(o.connection.server_list(), vec!["nats://h:1"]);
        let o = parse(&format!(
            r#"{{{BASE},"connection":{{"servers":["nats://a:1","nats://b:2"]}}}}"#
        ))
        .unwrap();
        assert_eq!(o.connection.server_list().len(), 2);
    }

    #[test]
    fn unknown_keys_are_named() {
        let json = format!(r#"{{{BASE},"connection":{{"sever":"x"}}}}"#);
        assert_invalid(parse(&json), "sever", &json);
    }

    #[test]
    fn wrong_types_never_echo_secrets() {
        let err = parse(&format!(
            r#"{{{BASE},"connection":{{"user":"u","pass":12345678}}}}"#
        ))
        .unwrap_err();
        assert!(!err.message.contains("12345678"), "{}", err.message);
        assert!(err.message.contains("value not shown"), "{}", err.message);
        assert!(err.message.contains("connection.pass"), "{}", err.message);
        let o = parse(&format!(
            r#"{{{BASE},"connection":{{"user":"u","pass":"hunter2"}}}}"#
        ))
        .unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
        assert!(!o.connection.sharing_key().contains("hunter2"));
    }

    #[test]
    fn a_malformed_nkey_seed_is_named_and_not_echoed() {
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let broken = format!("{}XX", &seed[..seed.len() - 2]);
        let err = parse(&format!(
            r#"{{{BASE},"connection":{{"nkeySeed":"{broken}"}}}}"#
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidOption);
        assert!(
            err.message.contains("connection.nkeySeed"),
            "{}",
            err.message
        );
        assert!(!err.message.contains(&broken[4..20]), "{}", err.message);
        assert!(parse(&format!(
            r#"{{{BASE},"connection":{{"nkeySeed":"{seed}"}}}}"#
        ))
        .is_ok());
    }

    #[test]
    fn equal_options_share_and_different_passwords_do_not() {
        let a = parse(&format!(
            r#"{{{BASE},"connection":{{"user":"u","pass":"a"}}}}"#
        ))
        .unwrap();
        let b = parse(&format!(
            r#"{{{BASE},"connection":{{"user":"u","pass":"b"}}}}"#
        ))
        .unwrap();
        let a2 = parse(&format!(
            r#"{{{BASE},"connection":{{"user":"u","pass":"a"}}}}"#
        ))
        .unwrap();
        assert_ne!(a.connection.sharing_key(), b.connection.sharing_key());
        assert_eq!(a.connection.sharing_key(), a2.connection.sharing_key());
    }

    #[test]
    fn attachment_options_have_defaults_and_checked_names() {
        let o = parse(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(o.attachment_bucket(), "s_attachments");
        assert_eq!(o.inline_max_bytes(), DEFAULT_INLINE_MAX_BYTES);
        let o = parse(&format!(
            r#"{{{BASE},"attachments":{{"bucket":"files","inlineMaxBytes":0}}}}"#
        ))
        .unwrap();
        assert_eq!(
            (o.attachment_bucket().as_str(), o.inline_max_bytes()),
            ("files", 0)
        );
        for (json, named) in [
            (r#""attachments":{"bucket":"a.b"}"#, "attachments.bucket"),
            (
                r#""attachments":{"inlineMaxBytes":-1}"#,
                "attachments.inlineMaxBytes",
            ),
            (
                r#""attachments":{"inlineMaxBytes":1.5}"#,
                "attachments.inlineMaxBytes",
            ),
            (r#""attachments":{"bukket":"x"}"#, "bukket"),
        ] {
            assert_invalid(parse(&format!("{{{BASE},{json}}}")), named, json);
        }
        // A stream name that cannot name a bucket matters only with attachments in the schema.
        let odd = r#""streamName":"s$1","subjectPrefix":"p","primaryPath":"id""#;
        assert!(parse(&format!("{{{odd}}}")).is_ok());
        let err = parse(&format!(
            r#"{{{odd},"collectionSchema":{{"attachments":{{}}}}}}"#
        ))
        .unwrap_err();
        assert!(
            err.message.contains("set attachments.bucket"),
            "{}",
            err.message
        );
    }

    #[test]
    fn tombstone_ttl_is_whole_seconds_of_at_least_one() {
        let with = |ttl: &str| {
            parse(&format!(
                r#"{{{BASE},"streamConfig":{{"tombstoneTtl":{ttl}}}}}"#
            ))
        };
        assert_eq!(
            with("1000").unwrap().stream_config.tombstone_ttl_secs(),
            Some(1)
        );
        assert_eq!(
            with("1500").unwrap().stream_config.tombstone_ttl_secs(),
            Some(2)
        );
        for bad in ["999", "0", "-5", "1.5", "\"1h\""] {
            assert_invalid(with(bad), "tombstoneTtl", bad);
        }
    }

    #[test]
    fn a_silent_link_is_dead_after_ping_interval_times_max_ping_out() {
        let with = |connection: &str| {
            parse(&format!(r#"{{{BASE},"connection":{connection}}}"#)).map(|o| o.connection)
        };
        let defaults = with("{}").unwrap();
        assert_eq!(defaults.silent_link_after(), Duration::from_secs(20));
        let given = with(r#"{"pingInterval":2000,"maxPingOut":3}"#).unwrap();
        assert_eq!(given.silent_link_after(), Duration::from_secs(6));
        // async-nats drops the link at its third unanswered ping: 3 × 1.9 s < 6 s.
        assert_eq!(given.client_ping_period(), Duration::from_millis(1900));
        for (bad, option) in [
            (r#"{"pingInterval":0}"#, "pingInterval"),
            (r#"{"maxPingOut":0}"#, "maxPingOut"),
            (r#"{"maxPingOut":-1}"#, "maxPingOut"),
        ] {
            assert_invalid(with(bad), option, bad);
        }
    }

    #[test]
    fn bad_names_are_rejected_with_the_option_named() {
        for (json, option) in [
            (
                r#"{"streamName":"a.b","subjectPrefix":"p","primaryPath":"id"}"#,
                "streamName",
            ),
            (
                r#"{"streamName":"s","subjectPrefix":"p.*","primaryPath":"id"}"#,
                "subjectPrefix",
            ),
            (
                r#"{"streamName":"s","subjectPrefix":"","primaryPath":"id"}"#,
                "subjectPrefix",
            ),
            (
                r#"{"streamName":"s","subjectPrefix":"p","primaryPath":"id","connection":{"token":"t","user":"u"}}"#,
                "token",
            ),
            (
                r#"{"streamName":"s","subjectPrefix":"p","primaryPath":"id","connection":{"tls":{"certFile":"c"}}}"#,
                "keyFile",
            ),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.message.contains(option), "{json}: {}", err.message);
        }
    }
}

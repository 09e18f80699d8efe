//! The stream that stores the documents: find it or create it, and check it stores our subjects.

use crate::connection::Connection;
use crate::error::{error_chain, ErrorCode, ReplicationError, Result};
use crate::layout::Layout;
use crate::options::StreamSettings;
pub use crate::pull::older_than;
use crate::subject;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, RequestErrorKind};
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::ErrorCode as JsCode;
use futures::{StreamExt, TryStreamExt};
use std::time::Duration;

/// The stream of a replication as opened: a handle for requests on it, and its config where
/// this user may read it (a tenant may not: the stream's info lists every tenant's subjects).
#[derive(Clone)]
pub struct Opened {
    pub handle: Stream<()>,
    pub config: Option<async_nats::jetstream::stream::Config>,
    /// A tenant's (option `tenant`): only the requests `tenantPermissions()` grants, reading
    /// through consumers that push into its inbox (`delivery.rs`).
    pub confined: bool,
}

impl Opened {
    /// The stream's subjects, when known.
    pub fn subjects(&self) -> Option<&[String]> {
        self.config.as_ref().map(|c| c.subjects.as_slice())
    }

    /// Whether the replication may use direct gets: the stream allows them, and it is no
    /// tenant's (unknown: no).
    pub fn allow_direct(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.allow_direct)
    }
}

/// Opens the stream of `layout`: found or created and checked (`ensure`), or, for a tenant
/// (`confined`), taken as it is without a request, as its stream is created beforehand by an
/// administrator and a tenant may not read its info.
pub async fn open(
    conn: &Connection,
    layout: &Layout,
    options: &crate::options::ReplicationOptions,
) -> Result<Opened> {
    let name = layout.stream_name();
    // Makes no request: a handle for a name (checked by the options).
    let handle = conn
        .jetstream
        .get_stream_no_info(&name)
        .await
        .map_err(|e| {
            ReplicationError::new(
                ErrorCode::InvalidOption,
                format!("option streamName {name:?}: {e}"),
            )
        })?;
    if options.confined() {
        return Ok(Opened {
            handle,
            config: None,
            confined: true,
        });
    }
    let stream = ensure(conn, layout, &options.stream_config).await?;
    let mut config = stream.cached_info().config.clone();
    // A direct get's reply subject can be an API request, which the server then executes with
    // the account's rights: tenants are not granted direct gets, even on a bucket of their own.
    config.allow_direct &= options.tenant != Some(true);
    Ok(Opened {
        handle,
        config: Some(config),
        confined: false,
    })
}

/// Returns the stream of `layout`, creating it when it is missing and the layout may
/// (`Layout::stream_config`: the official plugin's stream, or a bucket as the NATS clients
/// create it, so every client opens it without a config mismatch).
pub async fn ensure(
    conn: &Connection,
    layout: &Layout,
    settings: &StreamSettings,
) -> Result<Stream> {
    let name = &layout.stream_name();
    let filter = layout.filter();
    let what = layout.what();
    let refused = |text: String| {
        denied(format!(
            "the server refused to look up {what} ({text}): grant this user publish permission \
             on $JS.API.STREAM.INFO.{name} (see the README's permissions example)"
        ))
    };
    if layout.tombstone_ttl().is_some() {
        let version = conn.client.server_info().version;
        if !at_least(&version, MESSAGE_TTL_SINCE) {
            return Err(ReplicationError::new(
                ErrorCode::UnsupportedServer,
                format!(
                    "option streamConfig.tombstoneTtl needs nats-server 2.11 or later (per-message \
                     TTLs), but the server at {} is {version}: upgrade the server, or remove \
                     tombstoneTtl and remove old deletions with compactStream({{ \
                     tombstonesOlderThan }})",
                    conn.servers
                ),
            ));
        }
    }
    match look_up(conn, name, &filter, &what, refused).await? {
        LookedUp::Storing(stream) => {
            tracing::debug!(stream = %name, "using the existing stream");
            if layout.tombstone_ttl().is_some() {
                lets_tombstones_expire(&stream, &what)?;
            }
            Ok(*stream)
        }
        LookedUp::Other(subjects) => Err(ReplicationError::new(
            ErrorCode::StreamMismatch,
            format!(
                "stream {name:?} exists with subjects {subjects:?}, which do not include \
                 {filter:?}, so it cannot hold {what}: {}",
                layout.remedy_for_other_subjects()
            ),
        )),
        LookedUp::Missing if !layout.may_create() => Err(layout.missing(&conn.servers)),
        LookedUp::Missing => create(conn, layout, settings).await,
    }
}

/// The first nats-server release with per-message TTLs (ADR-43).
const MESSAGE_TTL_SINCE: (u64, u64) = (2, 11);

/// Whether server version `version` ("2.11.3", "2.12.0-RC.1") is at least `(major, minor)`.
pub fn at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (have_major, have_minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (have_major, have_minor) >= (major, minor)
}

/// An existing stream must allow what `tombstoneTtl` writes: `Nats-TTL` and `Nats-Rollup`
/// headers (without them the server would refuse every deletion).
fn lets_tombstones_expire(stream: &Stream, what: &str) -> Result<()> {
    let config = &stream.cached_info().config;
    let missing: Vec<&str> = [
        (!config.allow_message_ttl).then_some("per-message TTLs (allow_msg_ttl)"),
        (!config.allow_rollup).then_some("rollups (allow_rollup_hdrs)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let name = &config.name;
    Err(ReplicationError::new(
        ErrorCode::StreamMismatch,
        format!(
            "{what} exists without {}, which option streamConfig.tombstoneTtl needs so that \
             deletions expire: allow them on the stream (nats-server >= 2.11, e.g. `nats stream \
             edit {name} --allow-msg-ttl --allow-rollup`), or remove tombstoneTtl",
            missing.join(" and ")
        ),
    ))
}

/// What the server has under a stream name, for a replication whose documents are on `filter`.
enum LookedUp {
    /// The stream, and it stores `filter`.
    Storing(Box<Stream>),
    /// A stream of that name that does not store `filter`, with its subjects.
    Other(Vec<String>),
    /// No stream of that name.
    Missing,
}

/// Looks up stream `name` (`what` names it in errors; `refused` words the error when this user
/// may not look it up).
async fn look_up(
    conn: &Connection,
    name: &str,
    filter: &str,
    what: &str,
    refused: impl FnOnce(String) -> ReplicationError,
) -> Result<LookedUp> {
    let api = format!("$JS.API.STREAM.INFO.{name}");
    let looked_up = conn
        .unless_denied(&api, conn.jetstream.get_stream(name))
        .await
        .map_err(refused)?;
    match looked_up {
        // The lookup is the STREAM.INFO request: its answer is the stream's current config.
        Ok(stream) if stores(&stream, filter) => Ok(LookedUp::Storing(Box::new(stream))),
        Ok(stream) => Ok(LookedUp::Other(
            stream.cached_info().config.subjects.clone(),
        )),
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == JsCode::STREAM_NOT_FOUND) => {
            Ok(LookedUp::Missing)
        }
        Err(e) => Err(jetstream_error(conn, &format!("looking up {what}"), &e)),
    }
}

/// Whether `stream` stores the subjects `filter`.
fn stores(stream: &Stream, filter: &str) -> bool {
    let subjects = &stream.cached_info().config.subjects;
    subjects.iter().any(|s| subject::pattern_covers(s, filter))
}

/// After a failed create: the stream if another client created it meanwhile and it stores
/// `filter`.
async fn created_meanwhile(conn: &Connection, name: &str, filter: &str) -> Option<Stream> {
    let stream = conn.jetstream.get_stream(name).await.ok()?;
    stores(&stream, filter).then_some(stream)
}

async fn create(conn: &Connection, layout: &Layout, settings: &StreamSettings) -> Result<Stream> {
    let config = layout.stream_config(settings);
    let (name, filter, what) = (config.name.clone(), layout.filter(), layout.what());
    let replicas = config.num_replicas;
    let api = format!("$JS.API.STREAM.CREATE.{name}");
    let create = conn.jetstream.create_stream(config);
    let created = conn.unless_denied(&api, create).await.map_err(|text| {
        denied(format!(
            "{what} does not exist and this user may not create it ({text}): create it \
             beforehand with a user that may ({}), or grant publish permission on {api}",
            layout.how_to_create()
        ))
    })?;
    let e = match created {
        Ok(stream) => {
            tracing::info!(stream = %name, subjects = %filter, replicas, "created the stream");
            return Ok(stream);
        }
        Err(e) => e,
    };
    // Another client may have created it meanwhile: take it if it fits.
    if let Some(stream) = created_meanwhile(conn, &name, &filter).await {
        return Ok(stream);
    }
    if let CreateStreamErrorKind::JetStream(js) = e.kind() {
        if js.error_code() == JsCode::STREAM_SUBJECT_OVERLAP {
            return Err(ReplicationError::new(
                ErrorCode::StreamMismatch,
                format!(
                    "cannot create {what} for {filter:?}: another stream already stores \
                     subjects that overlap ({}). {}",
                    error_chain(&e),
                    layout.remedy_for_overlap()
                ),
            ));
        }
        if let Some(err) = replicas_error(js.error_code(), replicas, &name, &conn.servers) {
            return Err(err);
        }
    }
    Err(jetstream_error(conn, &format!("creating {what}"), &e))
}

/// A stream that cannot be created with `streamConfig.replicas` copies: on a server that is not
/// clustered that is a mistake in the option; in a cluster with too few servers up it may pass
/// (servers come back), so it stays `NATS_UNAVAILABLE` and is retried, naming the option.
pub(crate) fn replicas_error(
    code: JsCode,
    replicas: usize,
    name: &str,
    servers: &str,
) -> Option<ReplicationError> {
    if code == JsCode::STREAM_REPLICAS_NOT_SUPPORTED {
        return Some(ReplicationError::new(
            ErrorCode::InvalidOption,
            format!(
                "option streamConfig.replicas is {replicas}, but the NATS server at {servers} is \
                 not part of a JetStream cluster, so stream {name:?} cannot have more than one \
                 replica: use replicas 1 (the default) or connect to a cluster"
            ),
        ));
    }
    if replicas > 1 && (code == JsCode::CLUSTER_NO_PEERS || code == JsCode::INSUFFICIENT_RESOURCES)
    {
        return Some(ReplicationError::new(
            ErrorCode::Unavailable,
            format!(
                "creating stream {name:?} with {replicas} replicas failed: the cluster at \
                 {servers} has fewer than {replicas} JetStream servers available (or too little \
                 storage). Start the missing servers, or lower streamConfig.replicas; the \
                 replication retries by itself"
            ),
        ));
    }
    None
}

/// Explains a failed JetStream call: no JetStream, no permission, or something that may pass.
pub fn jetstream_error(
    conn: &Connection,
    what: &str,
    err: &(dyn std::error::Error + 'static),
) -> ReplicationError {
    if let Some(text) = conn.take_permission_error() {
        return ReplicationError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{what} was refused by the server ({text}): the account needs publish permission \
                 on $JS.API.> and subscribe permission on _INBOX.>; an account that may not \
                 create streams can use a stream created beforehand by an administrator"
            ),
        );
    }
    if !conn.client.server_info().jetstream {
        return ReplicationError::new(
            ErrorCode::JetStreamUnavailable,
            format!(
                "the NATS server at {} does not have JetStream enabled ({what} failed): start \
                 nats-server with -js (or a jetstream block in its config)",
                conn.servers
            ),
        );
    }
    let no_responders = std::iter::successors(Some(err), |e| e.source()).any(|e| {
        e.downcast_ref::<async_nats::jetstream::context::RequestError>()
            .map(|r| r.kind() == RequestErrorKind::NoResponders)
            .unwrap_or(false)
    });
    let mut out = ReplicationError::unavailable(what, err);
    if no_responders {
        out.message.push_str(
            " (no JetStream responders: the stream may be electing a leader, or JetStream is \
             not enabled for this account)",
        );
    }
    out
}

fn denied(message: String) -> ReplicationError {
    ReplicationError::new(ErrorCode::PermissionDenied, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert!(at_least("2.11.0", (2, 11)));
        assert!(at_least("2.15.1", (2, 11)));
        assert!(at_least("2.12.0-RC.1", (2, 11)));
        assert!(at_least("v3.0.0", (2, 11)));
        assert!(!at_least("2.9.10", (2, 11)));
        assert!(!at_least("2.10.24", (2, 11)));
        assert!(!at_least("", (2, 11)));
    }

    /// The error for `code` with `replicas` asked, which must have `expected` and name all of `mentions`.
    fn assert_replicas_error(
        code: JsCode,
        replicas: usize,
        expected: ErrorCode,
        mentions: &[&str],
    ) {
        let err = replicas_error(code, replicas, "people", "nats://h:1").expect("an error");
        assert_eq!(err.code, expected);
        for part in mentions {
            assert!(err.message.contains(part), "{part:?} in {}", err.message);
        }
    }

    #[test]
    fn replicas_on_a_single_server_is_an_option_mistake() {
        assert_replicas_error(
            JsCode::STREAM_REPLICAS_NOT_SUPPORTED,
            3,
            ErrorCode::InvalidOption,
            &["streamConfig.replicas is 3", "nats://h:1"],
        );
    }

    #[test]
    fn too_few_servers_for_the_replicas_is_retried_and_names_the_option() {
        for code in [JsCode::CLUSTER_NO_PEERS, JsCode::INSUFFICIENT_RESOURCES] {
            let mentions = ["streamConfig.replicas", "5 replicas"];
            assert_replicas_error(code, 5, ErrorCode::Unavailable, &mentions);
        }
    }

    #[test]
    fn tombstones_are_deleted_flags_and_kv_markers() {
        assert!(is_tombstone(
            None,
            br#"{"id":"a","_deleted":true}"#,
            "_deleted"
        ));
        assert!(!is_tombstone(
            None,
            br#"{"id":"a","_deleted":false}"#,
            "_deleted"
        ));
        assert!(is_tombstone(None, br#"{"id":"a","gone":true}"#, "gone"));
        // The official plugin writes `_deleted` whatever deletedField says.
        assert!(is_tombstone(
            None,
            br#"{"id":"a","_deleted":true,"gone":true}"#,
            "gone"
        ));
        assert!(!is_tombstone(
            None,
            br#"{"id":"a","_deleted":"yes"}"#,
            "_deleted"
        ));
        assert!(!is_tombstone(None, b"not json", "_deleted"));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(crate::layout::KV_OPERATION, "DEL");
        assert!(is_tombstone(Some(&headers), b"", "_deleted"));
        headers.insert(crate::layout::KV_OPERATION, "PUT");
        assert!(!is_tombstone(Some(&headers), br#"{"id":"a"}"#, "_deleted"));
    }

    #[test]
    fn other_create_failures_are_not_about_replicas() {
        assert_eq!(
            replicas_error(JsCode::INSUFFICIENT_RESOURCES, 1, "people", "nats://h:1"),
            None
        );
        assert_eq!(
            replicas_error(JsCode::STREAM_SUBJECT_OVERLAP, 3, "people", "nats://h:1"),
            None
        );
    }
}

/// A consumer for one read (deleted after it, and by the server when forgotten): no acks, in
/// memory, one replica.
pub fn scratch_consumer(filter_subject: String, deliver_policy: DeliverPolicy) -> pull::Config {
    pull::Config {
        filter_subject,
        deliver_policy,
        ack_policy: AckPolicy::None,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    }
}

/// What `compact` did to a stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compacted {
    pub messages_before: u64,
    pub messages_after: u64,
    /// The stream's `max_msgs_per_subject` now (`None`: unlimited).
    pub max_msgs_per_subject: Option<u64>,
    /// Tombstones removed (with the earlier revisions of their documents), by `tombstonesOlderThan`.
    pub tombstones_removed: u64,
}

/// Which tombstones `compact` removes: those older than `older_than`, a tombstone being a
/// message whose `deleted_field` (or the official plugin's `_deleted`) is true, or a KV delete
/// or purge marker.
#[derive(Debug, Clone)]
pub struct TombstoneRemoval {
    pub older_than: Duration,
    pub deleted_field: String,
}

/// Whether a message is a deleted document (see `TombstoneRemoval`).
pub fn is_tombstone(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    deleted_field: &str,
) -> bool {
    let marker = headers
        .and_then(|h| h.get(crate::layout::KV_OPERATION))
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
    marker
        || serde_json::from_slice::<std::collections::HashMap<String, serde_json::Value>>(payload)
            .is_ok_and(|doc| {
                [deleted_field, crate::options::OFFICIAL_DELETED_FIELD]
                    .iter()
                    .any(|f| doc.get(*f) == Some(&serde_json::Value::Bool(true)))
            })
}

/// Removes each subject's newest message that is a tombstone older than `rule.older_than`,
/// with every earlier message of that subject. The purge ends at the tombstone's sequence, so
/// a revision written since it was read stays (a document created again is not lost).
/// Clients that had not read a removed tombstone reconcile when they next pull (a gap).
async fn remove_tombstones(stream: &Stream, rule: &TombstoneRemoval) -> Result<u64> {
    let name = stream.cached_info().config.name.clone();
    let failed = |what: &str, e: &dyn std::error::Error| {
        ReplicationError::unavailable(&format!("{what} stream {name:?}"), e)
    };
    let mut removed = 0;
    for filter in &stream.cached_info().config.subjects {
        let consumer = stream
            .create_consumer(scratch_consumer(
                filter.clone(),
                DeliverPolicy::LastPerSubject,
            ))
            .await
            .map_err(|e| failed("reading the newest messages of", &e))?;
        let consumer_name = consumer.cached_info().name.clone();
        let mut left = consumer.cached_info().num_pending as usize;
        let result = async {
            while left > 0 {
                let mut messages = crate::pull::fetch_now(&consumer, left.min(1000))
                    .await
                    .map_err(|e| failed("reading the newest messages of", &e))?;
                let mut n = 0;
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| failed("reading", &*e))?;
                    n += 1;
                    if !is_tombstone(
                        message.headers.as_ref(),
                        &message.payload,
                        &rule.deleted_field,
                    ) {
                        continue;
                    }
                    let info = message.info().map_err(|e| failed("reading", &*e))?;
                    let old =
                        rule.older_than.is_zero() || older_than(info.published, rule.older_than);
                    if old {
                        stream
                            .purge()
                            .filter(message.subject.to_string())
                            .sequence(info.stream_sequence + 1)
                            .await
                            .map_err(|e| {
                                failed(&format!("purging {:?} in", message.subject), &e)
                            })?;
                        removed += 1;
                    }
                }
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
            Ok(removed)
        }
        .await;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            stream.delete_consumer(&consumer_name),
        )
        .await;
        result?;
    }
    Ok(removed)
}

/// Shrinks stream `name` to the newest `keep` revisions of each subject; with `limit`, also
/// bounds it there from now on (`max_msgs_per_subject`, which the official plugin's stream
/// check then refuses). Replications keep running: they only lose revisions a newer one
/// replaces. Each subject over `keep` is purged down to it; nats-server >= 2.10 applies a
/// lowered limit to what is stored already, 2.9 to new messages only.
pub async fn compact(
    conn: &Connection,
    name: &str,
    keep: u64,
    limit: bool,
    tombstones: Option<&TombstoneRemoval>,
) -> Result<Compacted> {
    let failed = |what: &str, e: &dyn std::error::Error| {
        ReplicationError::unavailable(&format!("{what} stream {name:?}"), e)
    };
    let mut stream = conn.jetstream.get_stream(name).await.map_err(|e| {
        let missing = matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == JsCode::STREAM_NOT_FOUND);
        if missing {
            ReplicationError::new(
                ErrorCode::InvalidOption,
                format!("option streamName: there is no stream {name:?} to compact"),
            )
        } else {
            jetstream_error(conn, &format!("looking up stream {name:?}"), &e)
        }
    })?;
    let info = stream.info().await.map_err(|e| failed("reading", &e))?;
    let before = info.state.messages;
    let current = info.config.max_messages_per_subject;
    if limit && (current <= 0 || current > keep as i64) {
        let mut config = info.config.clone();
        config.max_messages_per_subject = keep as i64;
        conn.jetstream
            .update_stream(config)
            .await
            .map_err(|e| failed("updating", &e))?;
    }
    let subjects = stream
        .info_with_subjects(">")
        .await
        .map_err(|e| failed("listing the subjects of", &e))?;
    let over: Vec<String> = subjects
        .try_filter_map(
            |(subject, count)| async move { Ok((count as u64 > keep).then_some(subject)) },
        )
        .try_collect()
        .await
        .map_err(|e| failed("listing the subjects of", &e))?;
    for subject in &over {
        stream
            .purge()
            .filter(subject)
            .keep(keep)
            .await
            .map_err(|e| failed(&format!("purging {subject:?} in"), &e))?;
    }
    let tombstones_removed = match tombstones {
        Some(rule) => remove_tombstones(&stream, rule).await?,
        None => 0,
    };
    let after = stream.info().await.map_err(|e| failed("reading", &e))?;
    tracing::info!(stream = %name, before, after = after.state.messages, keep, purged_subjects = over.len(), "compacted the stream");
    Ok(Compacted {
        messages_before: before,
        messages_after: after.state.messages,
        max_msgs_per_subject: u64::try_from(after.config.max_messages_per_subject)
            .ok()
            .filter(|n| *n > 0),
        tombstones_removed,
    })
}

/// `compact` with a connection of its own (shared with replications of equal options).
pub async fn compact_with(options: &crate::options::CompactOptions) -> Result<Compacted> {
    let conn = crate::connection::acquire(&options.connection).await?;
    let done = compact(
        &conn,
        &options.stream_name,
        options.max_msgs_per_subject.unwrap_or(1),
        options.limit_stream.unwrap_or(false),
        options
            .tombstones_older_than
            .map(|ms| TombstoneRemoval {
                older_than: Duration::from_millis(ms),
                deleted_field: options
                    .deleted_field
                    .clone()
                    .unwrap_or_else(|| crate::options::OFFICIAL_DELETED_FIELD.to_string()),
            })
            .as_ref(),
    )
    .await;
    crate::connection::release(&options.connection).await;
    done
}

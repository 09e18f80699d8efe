//! Checkpoint pull: read the replication's subjects after a checkpoint, on one consumer kept
//! per replication (a pull consumer, or for a tenant one that pushes into its inbox).

use crate::batch::{BatchBuilder, DocumentShape};
use crate::connection::Connection;
pub use crate::consumer::Start;
use crate::consumer::{consumer_name, deliver_policy};
use crate::delivery::Delivery;
use crate::error::{ReplicationError, Result};
use crate::layout::Operation;
use async_nats::jetstream::consumer::{self, pull::Config, AckPolicy, PullConsumer};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::VecDeque;
use std::time::Duration;

/// Ephemeral consumers of a replication vanish by themselves this long after their last use.
pub const CONSUMER_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates an ephemeral, unacknowledged pull consumer of the messages on `filter` (the
/// replication's own subjects: other subjects of a shared stream are never read).
pub async fn create_consumer<I>(
    stream: &Stream<I>,
    start: Start,
    filter: &str,
) -> std::result::Result<PullConsumer, consumer::StreamError> {
    stream
        .create_consumer(Config {
            name: Some(consumer_name()),
            deliver_policy: deliver_policy(start),
            filter_subject: filter.to_string(),
            ack_policy: AckPolicy::None,
            inactive_threshold: CONSUMER_IDLE_TIMEOUT,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| consumer::StreamError::with_source(consumer::StreamErrorKind::Other, e))
}

/// Whether `time` lies more than `age` in the past.
pub fn older_than(time: async_nats::datetime::DateTime, age: Duration) -> bool {
    async_nats::datetime::add_std_duration(time, age)
        .map(|t| t <= async_nats::datetime::now())
        .unwrap_or(false)
}

/// How long one fetch may take before the pull fails (and RxDB retries it).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages read ahead per fetch, at least one batch: fewer round trips while RxDB works.
fn read_ahead(batch_size: usize) -> usize {
    batch_size.max((4 * batch_size).min(1000))
}

/// A message read but not returned yet.
struct Buffered {
    subject: String,
    sequence: u64,
    op: Operation,
    payload: Bytes,
}

/// The consumer a replication pulls with, and what it read ahead (bounded by `read_ahead`).
#[derive(Default)]
pub struct PullCursor {
    reader: Option<Reader>,
    /// The checkpoint that the consumer and the buffer continue from.
    follows: u64,
    buffer: VecDeque<Buffered>,
    /// The stream sequence of the last message fetched (0: sequences do not follow each other,
    /// as in a replay of the newest revision of each document, or on a shared stream).
    last_fetched: u64,
    /// The checkpoint whose own message the consumer delivers first (`RemovalWatch::Anchor`).
    anchor: Option<u64>,
    /// The consumer replays the newest message of each subject (a fresh client).
    newest_of_each: bool,
}

/// How a pull sees that messages after its checkpoint were removed before it read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalWatch {
    /// Every subject of the stream is the replication's: its consumer gets every message, so a
    /// stream sequence skipped is a removed message.
    Sequences,
    /// A stream shared with other subjects (other tenants), whose sequences interleave with
    /// ours. The consumer starts at the checkpoint's own message. Limits remove the oldest
    /// messages first, and a TTL removes a tombstone only after it, so when that message is
    /// still there and younger than `horizon` (the tombstone TTL, less a margin for clocks), no
    /// message after it was removed. Otherwise some may have been: the pull reconciles.
    Anchor { horizon: Option<Duration> },
}

impl RemovalWatch {
    /// The watch for a stream with `subjects`, of which the replication reads `filter`;
    /// `tombstone_ttl` in seconds.
    pub fn of(subjects: Option<&[String]>, filter: &str, tombstone_ttl: Option<u64>) -> Self {
        let ours = subjects.is_some_and(|subjects| {
            subjects
                .iter()
                .all(|s| crate::subject::pattern_covers(filter, s))
        });
        if ours {
            RemovalWatch::Sequences
        } else {
            RemovalWatch::Anchor {
                horizon: tombstone_ttl.map(|secs| Duration::from_millis(secs * 900)),
            }
        }
    }
}

/// Messages after a checkpoint that left the stream before they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The checkpoint the read started from.
    pub after: u64,
    /// The stream's first sequence when the removal was seen.
    pub first_sequence: u64,
    /// Whether the stream has age, count or size limits (which remove old messages).
    pub limited: bool,
}

/// Which kind of consumer a replication reads with.
#[derive(Clone, Copy)]
pub enum Reads<'c> {
    /// Pull consumers, deleted after use.
    Pull,
    /// A tenant: consumers that push into the connection's inbox (`delivery.rs`).
    Push(&'c Connection),
}

/// The consumer a pull reads from.
enum Reader {
    Pull(Box<PullConsumer>),
    Push(Box<Delivery>),
}

impl Reader {
    /// A consumer of `filter` from `start`, of the kind `reads` says (`fail` words a failed
    /// create of a pull consumer).
    async fn open<I>(
        stream: &Stream<I>,
        reads: Reads<'_>,
        start: Start,
        filter: &str,
        fail: impl Fn(&(dyn std::error::Error + 'static)) -> ReplicationError,
    ) -> Result<Reader> {
        Ok(match reads {
            Reads::Pull => Reader::Pull(Box::new(
                create_consumer(stream, start, filter)
                    .await
                    .map_err(|e| fail(&e))?,
            )),
            Reads::Push(conn) => {
                let delivery = Delivery::open(conn, stream, start, filter, false).await?;
                Reader::Push(Box::new(delivery))
            }
        })
    }

    /// Up to `want` messages, as many as the server has at once.
    async fn fetch(
        &mut self,
        want: usize,
    ) -> std::result::Result<Vec<async_nats::jetstream::Message>, crate::delivery::Broken> {
        match self {
            Reader::Pull(consumer) => {
                let mut messages = fetch_now(consumer, want).await?;
                let mut got = Vec::with_capacity(want);
                while let Some(message) = messages.next().await {
                    got.push(message?);
                }
                Ok(got)
            }
            Reader::Push(delivery) => delivery.fetch(want, FETCH_TIMEOUT).await,
        }
    }

    fn name(&self) -> &str {
        match self {
            Reader::Pull(consumer) => consumer.cached_info().name.as_str(),
            Reader::Push(delivery) => delivery.name(),
        }
    }
}

impl PullCursor {
    /// Drops the consumer; a pull consumer is deleted on the server (best effort; it also
    /// expires by itself), as is a push consumer once its inbox has no listener.
    pub async fn close<I>(&mut self, stream: Option<&Stream<I>>) {
        self.buffer.clear();
        if let (Some(Reader::Pull(consumer)), Some(stream)) = (self.reader.take(), stream) {
            let name = consumer.cached_info().name.clone();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stream.delete_consumer(&name)).await;
        }
    }
}

/// A pulled batch and whether it reached the end of the stream.
pub struct Pulled {
    pub batch: BatchBuilder,
    /// Every message up to the stream's end (when it was read) is in this batch or before it.
    pub caught_up: bool,
    /// Messages after the checkpoint were removed unread (a gap in the sequences): a deletion
    /// among them may be gone, so the caller must reconcile (see `Replication::missing_on_stream`).
    pub removed: Option<Removed>,
}

/// Whether a message at `sequence`, fetched after one at `last` on a consumer of every message,
/// shows that messages between them were removed.
pub fn is_gap(last: u64, sequence: u64) -> bool {
    last > 0 && sequence > last + 1
}

/// Reads up to `batch_size` distinct documents after `checkpoint`.
///
/// Never stops early while the stream has more (a short batch tells RxDB it is caught up), and
/// never waits when it is caught up: each fetch asks the server not to wait.
pub async fn pull_batch<I>(
    stream: &Stream<I>,
    reads: Reads<'_>,
    cursor: &mut PullCursor,
    shape: &DocumentShape,
    watch: RemovalWatch,
    checkpoint: u64,
    batch_size: usize,
) -> Result<Pulled> {
    match cursor
        .read(stream, reads, shape, watch, checkpoint, batch_size)
        .await
    {
        Ok(batch) => Ok(batch),
        Err(err) => {
            tracing::debug!(error = %err.message, "pull failed; once more on a new consumer");
            // The consumer may have expired or been lost with its node: once more on a new one.
            cursor.close(Some(stream)).await;
            cursor
                .read(stream, reads, shape, watch, checkpoint, batch_size)
                .await
                .inspect_err(|_| cursor.reader = None)
        }
    }
}

/// The messages of one fetch of up to `want`: the server answers at once, with what it has.
pub async fn fetch_now(
    consumer: &PullConsumer,
    want: usize,
) -> std::result::Result<consumer::pull::Batch, consumer::pull::BatchError> {
    consumer.fetch().max_messages(want).messages().await
}

impl PullCursor {
    /// One attempt of `pull_batch`, on the cursor's consumer (created when it does not follow
    /// `checkpoint`).
    async fn read<I>(
        &mut self,
        stream: &Stream<I>,
        reads: Reads<'_>,
        shape: &DocumentShape,
        watch: RemovalWatch,
        checkpoint: u64,
        batch_size: usize,
    ) -> Result<Pulled> {
        let cursor = self;
        let fail = |e: &(dyn std::error::Error + 'static)| {
            ReplicationError::unavailable(
                &format!("pulling from stream after sequence {checkpoint}"),
                e,
            )
        };
        if cursor.reader.is_none() || cursor.follows != checkpoint {
            cursor.close(Some(stream)).await;
            // Without a checkpoint, only each document's newest revision matters: the checkpoint
            // stays right, as every document whose newest message is at or before it was taken.
            let (start, anchor) = match (checkpoint, watch) {
                (0, _) => (Start::NewestOf, None),
                (c, RemovalWatch::Sequences) => (Start::At(c + 1), None),
                (c, RemovalWatch::Anchor { .. }) => (Start::At(c), Some(c)),
            };
            let reader = Reader::open(stream, reads, start, &shape.layout.filter(), fail).await?;
            tracing::debug!(consumer = %reader.name(), after = checkpoint, "created the pull consumer");
            cursor.reader = Some(reader);
            cursor.follows = checkpoint;
            cursor.anchor = anchor;
            cursor.newest_of_each = start == Start::NewestOf;
            cursor.last_fetched = match watch {
                RemovalWatch::Sequences => checkpoint,
                RemovalWatch::Anchor { .. } => 0,
            };
        }
        let mut batch = BatchBuilder::new(checkpoint);
        let mut exhausted = false;
        let mut gap = false;
        let mut anchor_lost = false;
        // Subjects whose newest message is a reply someone aimed there (see `is_nats_reply`).
        let mut hidden = Vec::new();
        'batch: loop {
            while let Some(m) = cursor.buffer.front() {
                let skipped = batch.skipped.len();
                if !batch.push(
                    shape,
                    &m.subject,
                    m.sequence,
                    m.op,
                    m.payload.clone(),
                    batch_size,
                ) {
                    break 'batch;
                }
                // Only a skipped body is parsed again: most messages are documents.
                let was_skipped = batch.skipped.len() > skipped;
                if was_skipped && cursor.newest_of_each && crate::batch::is_nats_reply(&m.payload) {
                    hidden.push((m.subject.clone(), m.sequence));
                }
                cursor.buffer.pop_front();
            }
            if exhausted || batch.len() >= batch_size {
                break;
            }
            // Buffer empty: read ahead. The server answers at once, with what it has.
            let want = read_ahead(batch_size);
            // A fetch has no deadline of its own: a server that dies mid-fetch would hang the pull.
            let reader = cursor.reader.as_mut().expect("consumer was just set");
            let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
                let messages = reader.fetch(want).await.map_err(|e| fail(&*e))?;
                let mut got = Vec::with_capacity(messages.len());
                let mut first_published = None;
                for message in messages {
                    let info = message.info().map_err(|e| fail(&*e))?;
                    first_published = first_published.or(Some(info.published));
                    got.push(Buffered {
                        subject: message.subject.to_string(),
                        sequence: info.stream_sequence,
                        op: shape.layout.operation(message.headers.as_ref()),
                        payload: message.payload.clone(),
                    });
                }
                Ok((got, first_published))
            })
            .await
            .map_err(|_| {
                ReplicationError::new(
                    crate::error::ErrorCode::Unavailable,
                    format!(
                        "pulling from the stream after sequence {checkpoint} got no answer within \
                         {} s; the replication retries by itself",
                        FETCH_TIMEOUT.as_secs()
                    ),
                )
            })??;
            let (mut fetched, first_published) = fetched;
            exhausted = fetched.len() < want;
            if let (Some(anchor), RemovalWatch::Anchor { horizon }) = (cursor.anchor.take(), watch)
            {
                let present = fetched.first().is_some_and(|m| m.sequence == anchor);
                let young = match (horizon, first_published) {
                    (Some(horizon), Some(published)) => !older_than(published, horizon),
                    _ => true,
                };
                anchor_lost = !(present && young);
                if present {
                    // Read before: it is only the anchor.
                    fetched.remove(0);
                }
            }
            for m in &fetched {
                gap |= is_gap(cursor.last_fetched, m.sequence);
                if cursor.last_fetched > 0 {
                    cursor.last_fetched = m.sequence;
                }
            }
            cursor.buffer.extend(fetched);
        }
        for (subject, sequence) in hidden {
            // A fresh client would not see the document: take its newest revision before.
            if let Some(m) =
                newest_document_before(stream, reads, shape, &subject, sequence).await?
            {
                batch.push_earlier(shape, &subject, m.sequence, m.op, &m.payload);
            }
        }
        let mut removed = None;
        if anchor_lost {
            tracing::debug!(
                after = checkpoint,
                "the checkpoint's message is gone or old: later ones may be removed"
            );
            // On a shared stream its first sequence says nothing about this replication's
            // messages (and a tenant may not read the stream's info).
            removed = Some(Removed {
                after: checkpoint,
                first_sequence: 0,
                limited: false,
            });
        }
        if cursor.last_fetched > 0 && (gap || exhausted) {
            let info = stream.get_info().await.map_err(|e| fail(&e))?;
            // Caught up: messages removed after the last one read leave no gap to see, but the
            // stream's last sequence lies beyond it.
            let tail = exhausted
                && info.state.last_sequence > cursor.last_fetched
                && !is_there(stream, cursor.last_fetched + 1).await?;
            if gap || tail {
                let config = &info.config;
                removed = Some(Removed {
                    after: checkpoint,
                    first_sequence: info.state.first_sequence,
                    limited: config.max_age > Duration::ZERO
                        || config.max_messages > 0
                        || config.max_bytes > 0,
                });
            }
        }
        cursor.follows = batch.checkpoint;
        let caught_up = exhausted && cursor.buffer.is_empty();
        if caught_up && matches!(cursor.reader, Some(Reader::Push(_))) {
            // A push consumer would go on pushing (and heartbeats pile up) while no pull reads
            // it: the next pull opens a new one (the live feed reads in the meantime).
            cursor.reader = None;
        }
        tracing::debug!(
            after = checkpoint,
            checkpoint = batch.checkpoint,
            documents = batch.len(),
            skipped = batch.skipped.len(),
            caught_up,
            "pulled a batch"
        );
        Ok(Pulled {
            batch,
            caught_up,
            removed,
        })
    }
}

/// The newest message before `before` on `subject` (one document's) that is a document.
async fn newest_document_before<I>(
    stream: &Stream<I>,
    reads: Reads<'_>,
    shape: &DocumentShape,
    subject: &str,
    before: u64,
) -> Result<Option<Buffered>> {
    let fail = |e: &(dyn std::error::Error + 'static)| {
        ReplicationError::unavailable(&format!("reading the revisions of {subject:?}"), e)
    };
    let mut reader = Reader::open(stream, reads, Start::At(1), subject, fail).await?;
    let mut found = None;
    let read = tokio::time::timeout(FETCH_TIMEOUT, async {
        loop {
            let messages = reader.fetch(100).await.map_err(|e| fail(&*e))?;
            if messages.is_empty() {
                return Ok::<_, ReplicationError>(());
            }
            for message in messages {
                let sequence = message.info().map_err(|e| fail(&*e))?.stream_sequence;
                if sequence >= before {
                    return Ok(());
                }
                let op = shape.layout.operation(message.headers.as_ref());
                if shape
                    .decode(subject, sequence, op, &message.payload)
                    .is_ok()
                {
                    found = Some(Buffered {
                        subject: subject.to_string(),
                        sequence,
                        op,
                        payload: message.payload.clone(),
                    });
                }
            }
        }
    })
    .await;
    if let Reader::Pull(consumer) = &reader {
        let name = consumer.cached_info().name.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.delete_consumer(&name)).await;
    }
    match read {
        Ok(result) => result.map(|()| found),
        Err(_) => Err(ReplicationError::new(
            crate::error::ErrorCode::Unavailable,
            format!("reading the revisions of {subject:?} got no answer; the pull retries"),
        )),
    }
}

/// Whether the message at `sequence` is on the stream (it may have been written since the
/// stream's state was read: then it is no gap).
async fn is_there<I>(stream: &Stream<I>, sequence: u64) -> Result<bool> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    match stream.get_raw_message(sequence).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(false),
        Err(e) => Err(ReplicationError::unavailable(
            &format!("reading stream sequence {sequence}"),
            &e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stream_of_our_own_subjects_shows_removals_by_sequence() {
        let watch = |subjects: &[&str], ttl| {
            let subjects: Vec<String> = subjects.iter().map(|s| s.to_string()).collect();
            RemovalWatch::of(Some(&subjects), "app.acme.*", ttl)
        };
        assert_eq!(watch(&["app.acme.*"], None), RemovalWatch::Sequences);
        assert_eq!(
            watch(&["app.>"], None),
            RemovalWatch::Anchor { horizon: None }
        );
        // A subject beside ours that the filter does not read (a nested prefix).
        assert_eq!(
            watch(&["app.acme.*", "app.acme.sub.*"], Some(10)),
            RemovalWatch::Anchor {
                horizon: Some(Duration::from_secs(9))
            }
        );
        // Stream info not readable (a tenant): assume others share it.
        assert_eq!(
            RemovalWatch::of(None, "app.acme.*", None),
            RemovalWatch::Anchor { horizon: None }
        );
    }

    #[test]
    fn a_gap_is_a_sequence_skipped_after_a_known_one() {
        assert!(!is_gap(5, 6));
        assert!(is_gap(5, 7));
        // A replay of the newest revision of each document skips sequences by design.
        assert!(!is_gap(0, 9));
    }
}

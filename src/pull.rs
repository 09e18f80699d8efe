//! Checkpoint pull: read the stream after a checkpoint, on one consumer kept per replication.

use crate::batch::{BatchBuilder, DocumentShape};
use crate::error::{ReplicationError, Result};
use crate::layout::Operation;
use async_nats::jetstream::consumer::{self, pull::Config, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::VecDeque;
use std::time::Duration;

/// Ephemeral consumers of a replication vanish by themselves this long after their last use.
pub const CONSUMER_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// At this stream sequence (1-based), every message from there.
    At(u64),
    /// The newest message of each subject matching this filter, in stream order, then every
    /// new message: a fresh client reads each document once, not its whole history.
    NewestOf(&'a str),
}

/// Creates an ephemeral, unacknowledged pull consumer.
pub async fn create_consumer(
    stream: &Stream,
    start: Start<'_>,
) -> std::result::Result<PullConsumer, consumer::StreamError> {
    let (deliver_policy, filter_subject) = match start {
        Start::At(seq) if seq <= 1 => (DeliverPolicy::All, String::new()),
        Start::At(seq) => (
            DeliverPolicy::ByStartSequence {
                start_sequence: seq,
            },
            String::new(),
        ),
        Start::NewestOf(filter) => (DeliverPolicy::LastPerSubject, filter.to_string()),
    };
    stream
        .create_consumer(Config {
            deliver_policy,
            filter_subject,
            ack_policy: AckPolicy::None,
            inactive_threshold: CONSUMER_IDLE_TIMEOUT,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| consumer::StreamError::with_source(consumer::StreamErrorKind::Other, e))
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
    consumer: Option<PullConsumer>,
    /// The checkpoint that the consumer and the buffer continue from.
    follows: u64,
    buffer: VecDeque<Buffered>,
    /// The stream sequence of the last message fetched (0: the consumer replays the newest
    /// revision of each document, where sequences do not follow each other).
    last_fetched: u64,
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

impl PullCursor {
    /// Deletes the consumer on the server (best effort; it also expires by itself).
    pub async fn close(&mut self, stream: Option<&Stream>) {
        self.buffer.clear();
        if let (Some(consumer), Some(stream)) = (self.consumer.take(), stream) {
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
pub async fn pull_batch(
    stream: &Stream,
    cursor: &mut PullCursor,
    shape: &DocumentShape,
    checkpoint: u64,
    batch_size: usize,
) -> Result<Pulled> {
    match cursor.read(stream, shape, checkpoint, batch_size).await {
        Ok(batch) => Ok(batch),
        Err(err) => {
            tracing::debug!(error = %err.message, "pull failed; once more on a new consumer");
            // The consumer may have expired or been lost with its node: once more on a new one.
            cursor.close(Some(stream)).await;
            cursor
                .read(stream, shape, checkpoint, batch_size)
                .await
                .inspect_err(|_| cursor.consumer = None)
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
    async fn read(
        &mut self,
        stream: &Stream,
        shape: &DocumentShape,
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
        if cursor.consumer.is_none() || cursor.follows != checkpoint {
            cursor.close(Some(stream)).await;
            // Without a checkpoint, only each document's newest revision matters: the checkpoint
            // stays right, as every document whose newest message is at or before it was taken.
            let filter = shape.layout.filter();
            let start = if checkpoint == 0 {
                Start::NewestOf(&filter)
            } else {
                Start::At(checkpoint + 1)
            };
            let consumer = create_consumer(stream, start).await.map_err(|e| fail(&e))?;
            tracing::debug!(consumer = %consumer.cached_info().name, after = checkpoint, "created the pull consumer");
            cursor.consumer = Some(consumer);
            cursor.follows = checkpoint;
            cursor.last_fetched = checkpoint;
        }
        let consumer = cursor.consumer.clone().expect("consumer was just set");
        let mut batch = BatchBuilder::new(checkpoint);
        let mut exhausted = false;
        let mut gap = false;
        'batch: loop {
            while let Some(m) = cursor.buffer.front() {
                let payload = m.payload.clone();
                if !batch.push(shape, &m.subject, m.sequence, m.op, payload, batch_size) {
                    break 'batch;
                }
                cursor.buffer.pop_front();
            }
            if exhausted || batch.len() >= batch_size {
                break;
            }
            // Buffer empty: read ahead. The server answers at once, with what it has.
            let want = read_ahead(batch_size);
            // A fetch has no deadline of its own: a server that dies mid-fetch would hang the pull.
            let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
                let mut messages = fetch_now(&consumer, want).await.map_err(|e| fail(&e))?;
                let mut got = Vec::with_capacity(want);
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| fail(&*e))?;
                    let sequence = message.info().map_err(|e| fail(&*e))?.stream_sequence;
                    got.push(Buffered {
                        subject: message.subject.to_string(),
                        sequence,
                        op: shape.layout.operation(message.headers.as_ref()),
                        payload: message.payload.clone(),
                    });
                }
                Ok(got)
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
            exhausted = fetched.len() < want;
            for m in &fetched {
                gap |= is_gap(cursor.last_fetched, m.sequence);
                if cursor.last_fetched > 0 {
                    cursor.last_fetched = m.sequence;
                }
            }
            cursor.buffer.extend(fetched);
        }
        let mut removed = None;
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

/// Whether the message at `sequence` is on the stream (it may have been written since the
/// stream's state was read: then it is no gap).
async fn is_there(stream: &Stream, sequence: u64) -> Result<bool> {
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
    fn a_gap_is_a_sequence_skipped_after_a_known_one() {
        assert!(!is_gap(5, 6));
        assert!(is_gap(5, 7));
        // A replay of the newest revision of each document skips sequences by design.
        assert!(!is_gap(0, 9));
    }
}

//! The live feed: one consumer per running replication, starting right after the message where
//! RxDB's next pull that reaches the stream's end stops (RxDB pulls when a replication starts or
//! resumes); messages arriving together become one batch event. After any break (a reconnect, a
//! lost consumer, a gap) the consumer is recreated after the last message taken. So the feed has
//! no gap and never asks RxDB to resync: a resync also makes RxDB push every local document
//! again from a snapshot, racing the documents the feed hands over (see replicate.cjs).
//!
//! The consumer reads only the replication's own subjects; a tenant's pushes into its inbox
//! (`delivery.rs`).
//!
//! The feed knows its replication only through `FeedSource`, and the decisions of its loop (how
//! deliveries become batches, what a connection event means) are plain functions, unit-tested.

use crate::batch::{BatchBuilder, DocumentShape, HandedBatch};
use crate::connection::{Connection, ConnectionEvent};
use crate::consumer::Start;
use crate::delivery::Delivery;
use crate::error::{ReplicationError, Result};
use crate::layout::Operation;
use crate::pull::create_consumer;
use crate::stream::Opened;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, watch, Mutex};
use tokio::task::JoinHandle;

/// Batches waiting for JavaScript; the feed waits while they are not taken (backpressure).
const EVENT_BUFFER: usize = 4;
const HEARTBEAT: Duration = Duration::from_secs(5);
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// What the live feed needs of its replication.
pub(crate) trait FeedSource: Send + Sync + 'static {
    /// The connection and the checked stream, opened when needed.
    fn connected(&self) -> impl Future<Output = Result<(Arc<Connection>, Opened)>> + Send;
    /// Names the cause of a failure the connection knows better.
    fn explain(&self, err: ReplicationError) -> impl Future<Output = ReplicationError> + Send;
    /// What decides whether a message is a document.
    fn shape(&self) -> &DocumentShape;
    /// Counts a batch handed to RxDB and turns it into what RxDB gets.
    fn hand_over(&self, batch: BatchBuilder) -> HandedBatch;
    /// The wait before retrying after a failure (RxDB's `retryTime`).
    fn retry_time(&self) -> Duration;
    /// Pulls that reach the stream's end, from now on: where the feed starts.
    fn caught_up_pulls(&self) -> watch::Receiver<u64>;
}

/// What the live feed tells RxDB.
#[derive(Debug)]
pub enum LiveEvent {
    /// `received`: when the batch's first message reached the feed (the live latency's stages
    /// are timed from there, see `liveTimings$`).
    Batch {
        batch: HandedBatch,
        received: SystemTime,
    },
    Error(ReplicationError),
}

/// A running live feed.
pub(crate) struct LiveFeed {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    events: Arc<Mutex<mpsc::Receiver<LiveEvent>>>,
}

impl LiveFeed {
    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the feed to stop; it deletes its consumer and then ends its event stream.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(true);
    }

    pub(crate) fn events(&self) -> Arc<Mutex<mpsc::Receiver<LiveEvent>>> {
        self.events.clone()
    }
}

pub(crate) fn start<S: FeedSource>(source: Arc<S>, batch_size: usize) -> LiveFeed {
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let (stop, stopped) = watch::channel(false);
    // Subscribed before the task runs, so a pull that ends meanwhile is not missed.
    let pulls = source.caught_up_pulls();
    let task = tokio::spawn(run(source, tx, stopped, pulls, batch_size));
    LiveFeed {
        task,
        stop,
        events: Arc::new(Mutex::new(rx)),
    }
}

/// Why one consumer's round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    Stop,
    Recreate,
}

/// What a connection event means for the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnEvent {
    /// Nothing to do: keep reading.
    Continue,
    /// Tell RxDB the credentials were refused on a reconnect, then keep reading.
    ReportRefused,
    /// The consumer may be gone or stale: start a new one after the last message taken.
    Recreate,
}

fn on_connection_event(
    event: std::result::Result<ConnectionEvent, broadcast::error::RecvError>,
) -> OnEvent {
    match event {
        Ok(ConnectionEvent::Reconnected) | Err(broadcast::error::RecvError::Closed) => {
            OnEvent::Recreate
        }
        Ok(ConnectionEvent::CredentialsRefused) => OnEvent::ReportRefused,
        // Reported by `run`, which listens across rounds.
        Ok(ConnectionEvent::Disconnected) | Err(broadcast::error::RecvError::Lagged(_)) => {
            OnEvent::Continue
        }
    }
}

/// One message as the feed's consumer delivered it.
#[derive(Debug, Clone)]
struct Delivered {
    subject: String,
    stream_sequence: u64,
    consumer_sequence: u64,
    op: Operation,
    payload: Bytes,
}

/// What to do after a delivery was offered to the batch being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gathered {
    /// Taken; take more if more is already here.
    More,
    /// Taken, and the batch is full: hand it over.
    Full,
    /// A delivery was lost (consumer sequences are contiguous): hand over what was gathered,
    /// then recreate the consumer after it.
    Gap,
    /// The consumer's stream ended or failed: hand over what was gathered, then recreate.
    Broken,
}

/// Gathers the deliveries of one consumer into batches, tracking its consumer sequence.
#[derive(Debug, Default)]
struct Gatherer {
    /// The consumer sequence of the last delivery taken.
    delivered: u64,
}

impl Gatherer {
    fn offer(
        &mut self,
        shape: &DocumentShape,
        batch: &mut BatchBuilder,
        delivery: Option<std::result::Result<Delivered, ()>>,
        batch_size: usize,
    ) -> Gathered {
        let Some(Ok(message)) = delivery else {
            return Gathered::Broken;
        };
        if message.consumer_sequence != self.delivered + 1 {
            return Gathered::Gap;
        }
        self.delivered = message.consumer_sequence;
        batch.push(
            shape,
            &message.subject,
            message.stream_sequence,
            message.op,
            message.payload,
            usize::MAX,
        );
        if batch.len() >= batch_size {
            Gathered::Full
        } else {
            Gathered::More
        }
    }
}

async fn run<S: FeedSource>(
    source: Arc<S>,
    tx: mpsc::Sender<LiveEvent>,
    mut stopped: watch::Receiver<bool>,
    mut pulls: watch::Receiver<u64>,
    batch_size: usize,
) {
    // The last sequence taken: to begin with, where RxDB's pull caught up.
    let mut last = tokio::select! {
        changed = pulls.changed() => match changed {
            Ok(()) => *pulls.borrow_and_update(),
            Err(_) => return,
        },
        _ = stopped.changed() => return,
    };
    tracing::debug!(after = last, "live feed starts");
    // Lost links are reported from here, across rounds: a round that is creating its consumer
    // (or waiting to retry) when the link goes would miss the event.
    let mut watched: Option<Watched> = None;
    loop {
        if *stopped.borrow() {
            return;
        }
        if watched.as_ref().is_none_or(|w| w.conn.gave_up()) {
            watched = source
                .connected()
                .await
                .ok()
                .map(|(conn, _)| Watched::new(conn));
        }
        let outcome = {
            let round = feed_once(&*source, &tx, &mut stopped, &mut last, batch_size);
            tokio::pin!(round);
            loop {
                tokio::select! {
                    outcome = &mut round => break outcome,
                    lost = link_lost(&mut watched) => {
                        tracing::warn!(code = lost.code.as_str(), "{}", lost.message);
                        if tx.send(LiveEvent::Error(lost)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(Break::Stop) => {
                tracing::debug!(after = last, "live feed stopped");
                return;
            }
            Ok(Break::Recreate) => {
                tracing::info!(
                    after = last,
                    "live feed: new consumer after a reconnect, a lost consumer or a gap"
                );
            }
            Err(err) => {
                let err = source.explain(err).await;
                tracing::warn!(
                    code = err.code.as_str(),
                    "live feed failed, retrying: {}",
                    err.message
                );
                if tx.send(LiveEvent::Error(err)).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(source.retry_time()) => {}
                    _ = stopped.changed() => return,
                }
            }
        }
    }
}

/// The connection whose losses the feed reports, and its events.
struct Watched {
    conn: Arc<Connection>,
    events: broadcast::Receiver<ConnectionEvent>,
    /// When a loss was last reported.
    reported: Option<tokio::time::Instant>,
}

impl Watched {
    fn new(conn: Arc<Connection>) -> Watched {
        Watched {
            events: conn.subscribe(),
            conn,
            reported: None,
        }
    }
}

/// Resolves with the error to report when the watched connection loses its link; never while
/// nothing is watched. A link that flaps (the server accepts it and drops it again, every
/// `reconnectTimeWait`) is one loss: reported again only after `silent_link_after`.
async fn link_lost(watched: &mut Option<Watched>) -> ReplicationError {
    loop {
        let Some(w) = watched.as_mut() else {
            return std::future::pending().await;
        };
        match w.events.recv().await {
            Ok(ConnectionEvent::Disconnected) => {
                let now = tokio::time::Instant::now();
                if w.reported
                    .is_none_or(|at| now - at >= w.conn.silent_link_after())
                {
                    w.reported = Some(now);
                    return w.conn.lost();
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => *watched = None,
        }
    }
}

/// Reads one consumer, created after `last`, until it must be recreated or the feed stops.
async fn feed_once<S: FeedSource>(
    source: &S,
    tx: &mpsc::Sender<LiveEvent>,
    stopped: &mut watch::Receiver<bool>,
    last: &mut u64,
    batch_size: usize,
) -> Result<Break> {
    let (conn, stream) = source.connected().await?;
    let mut connection_events = conn.subscribe();
    let filter = source.shape().layout.filter();
    let start = Start::At(*last + 1);
    let (mut messages, pull_consumer) = if stream.confined {
        let delivery = Delivery::open(&conn, &stream.handle, start, &filter, false).await?;
        tracing::debug!(consumer = %delivery.name(), after = *last, "created the live consumer");
        (LiveMessages::Push(delivery), None)
    } else {
        let consumer = create_consumer(&stream.handle, start, &filter)
            .await
            .map_err(|e| ReplicationError::unavailable("creating the live consumer", &e))?;
        let name = consumer.cached_info().name.clone();
        tracing::debug!(consumer = %name, after = *last, "created the live consumer");
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch_size)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        match messages {
            Ok(messages) => (LiveMessages::Pull(messages), Some(name)),
            Err(e) => {
                delete_consumer(&stream, &name).await;
                return Err(ReplicationError::unavailable(
                    "starting the live consumer",
                    &e,
                ));
            }
        }
    };
    let result = async {
        let layout = &source.shape().layout;
        let delivered = |m: Option<std::result::Result<async_nats::jetstream::Message, _>>| {
            m.map(|m| {
                let message = m.map_err(|_| ())?;
                let info = message.info().map_err(|_| ())?;
                Ok(Delivered {
                    subject: message.subject.to_string(),
                    stream_sequence: info.stream_sequence,
                    consumer_sequence: info.consumer_sequence,
                    op: layout.operation(message.headers.as_ref()),
                    payload: message.payload.clone(),
                })
            })
        };
        let mut gatherer = Gatherer::default();
        loop {
            let first = tokio::select! {
                _ = stopped.changed() => return Ok(Break::Stop),
                event = connection_events.recv() => match on_connection_event(event) {
                    OnEvent::Recreate => return Ok(Break::Recreate),
                    OnEvent::Continue => continue,
                    OnEvent::ReportRefused => {
                        if tx.send(LiveEvent::Error(conn.refused_on_reconnect())).await.is_err() {
                            return Ok(Break::Stop);
                        }
                        continue;
                    }
                },
                message = messages.next() => message,
            };
            let received = SystemTime::now();
            // Take the first message and whatever else is already here, up to one batch.
            let mut batch = BatchBuilder::new(*last);
            let mut next = delivered(first);
            let ended = loop {
                match gatherer.offer(source.shape(), &mut batch, next, batch_size) {
                    Gathered::More => match messages.next().now_or_never() {
                        Some(m) => next = delivered(m),
                        None => break None,
                    },
                    Gathered::Full => break None,
                    Gathered::Gap | Gathered::Broken => break Some(Break::Recreate),
                }
            };
            if batch.checkpoint > *last {
                tracing::debug!(
                    after = *last,
                    checkpoint = batch.checkpoint,
                    documents = batch.len(),
                    "live batch"
                );
                *last = batch.checkpoint;
                if tx
                    .send(LiveEvent::Batch {
                        batch: source.hand_over(batch),
                        received,
                    })
                    .await
                    .is_err()
                {
                    return Ok(Break::Stop);
                }
            }
            if let Some(ended) = ended {
                return Ok(ended);
            }
        }
    }
    .await;
    if let Some(name) = pull_consumer {
        delete_consumer(&stream, &name).await;
    }
    result
}

/// Deletes a pull consumer of the feed (best effort: it also expires by itself).
async fn delete_consumer(stream: &Opened, name: &str) {
    let deleted = stream.handle.delete_consumer(name);
    let _ = tokio::time::timeout(Duration::from_secs(2), deleted).await;
}

/// The deliveries of the feed's consumer: a pull consumer's stream of messages, or a tenant's
/// push consumer.
enum LiveMessages {
    Pull(async_nats::jetstream::consumer::pull::Stream),
    Push(Delivery),
}

impl LiveMessages {
    /// The next delivery; `Some(Err)` when the consumer broke.
    async fn next(&mut self) -> Option<std::result::Result<async_nats::jetstream::Message, ()>> {
        match self {
            LiveMessages::Pull(messages) => messages.next().await.map(|m| m.map_err(|_| ())),
            LiveMessages::Push(delivery) => Some(delivery.next().await.map_err(|_| ())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gatherer and the batch it fills, fed deliveries of `app.docs.<id>`.
    struct Feed {
        gatherer: Gatherer,
        batch: BatchBuilder,
        batch_size: usize,
    }

    impl Feed {
        fn after(checkpoint: u64, batch_size: usize) -> Self {
            Feed {
                gatherer: Gatherer::default(),
                batch: BatchBuilder::new(checkpoint),
                batch_size,
            }
        }

        fn offer(&mut self, delivery: Option<std::result::Result<Delivered, ()>>) -> Gathered {
            let shape = crate::batch::test_shape();
            self.gatherer
                .offer(&shape, &mut self.batch, delivery, self.batch_size)
        }

        /// Offers the message of document `id` at `stream_sequence`, the consumer's delivery
        /// number `consumer_sequence`.
        fn deliver(&mut self, id: &str, stream_sequence: u64, consumer_sequence: u64) -> Gathered {
            self.offer(Some(Ok(Delivered {
                subject: format!("app.docs.{id}"),
                stream_sequence,
                consumer_sequence,
                op: Operation::Put,
                payload: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
            })))
        }

        /// Documents taken and the checkpoint.
        fn taken(&self) -> (usize, u64) {
            (self.batch.len(), self.batch.checkpoint)
        }
    }

    #[test]
    fn contiguous_deliveries_fill_a_batch_up_to_its_size() {
        let mut feed = Feed::after(10, 3);
        assert_eq!(feed.deliver("a", 11, 1), Gathered::More);
        assert_eq!(feed.deliver("b", 12, 2), Gathered::More);
        assert_eq!(feed.deliver("c", 14, 3), Gathered::Full);
        assert_eq!(feed.taken(), (3, 14));
        // The next batch goes on with the consumer's next delivery.
        feed.batch = BatchBuilder::new(14);
        assert_eq!(feed.deliver("d", 15, 4), Gathered::More);
    }

    #[test]
    fn a_lost_delivery_hands_over_what_came_before_and_recreates_after_it() {
        let mut feed = Feed::after(0, 10);
        assert_eq!(feed.deliver("a", 1, 1), Gathered::More);
        // Consumer sequence 2 never came: the feed must not skip stream sequence 2.
        assert_eq!(feed.deliver("c", 3, 3), Gathered::Gap);
        assert_eq!(feed.taken(), (1, 1), "the gap's message is not taken");
    }

    #[test]
    fn an_ended_or_failed_consumer_is_recreated() {
        let mut feed = Feed::after(5, 10);
        assert_eq!(feed.offer(None), Gathered::Broken);
        assert_eq!(feed.offer(Some(Err(()))), Gathered::Broken);
        assert_eq!(feed.taken(), (0, 5));
    }

    #[test]
    fn replays_at_or_before_the_last_message_taken_are_not_handed_over_again() {
        // A recreated consumer starts after the last message taken; a replay still counts as
        // a delivery of its consumer but adds nothing.
        let mut feed = Feed::after(7, 10);
        assert_eq!(feed.deliver("a", 7, 1), Gathered::More);
        assert_eq!(feed.deliver("b", 8, 2), Gathered::More);
        assert_eq!(feed.taken(), (1, 8));
    }

    #[test]
    fn connection_events_decide_between_reading_on_and_a_new_consumer() {
        use broadcast::error::RecvError;
        assert_eq!(
            on_connection_event(Ok(ConnectionEvent::Reconnected)),
            OnEvent::Recreate
        );
        assert_eq!(
            on_connection_event(Err(RecvError::Closed)),
            OnEvent::Recreate
        );
        assert_eq!(
            on_connection_event(Ok(ConnectionEvent::Disconnected)),
            OnEvent::Continue
        );
        assert_eq!(
            on_connection_event(Err(RecvError::Lagged(3))),
            OnEvent::Continue
        );
        assert_eq!(
            on_connection_event(Ok(ConnectionEvent::CredentialsRefused)),
            OnEvent::ReportRefused
        );
    }
}

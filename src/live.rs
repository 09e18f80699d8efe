//! The live feed: one consumer per running replication, starting right after the message where
//! RxDB's next pull that reaches the stream's end stops (RxDB pulls when a replication starts or
//! resumes); messages arriving together become one batch event. After any break (a reconnect, a
//! lost consumer, a gap) the consumer is recreated after the last message taken. So the feed has
//! no gap and never asks RxDB to resync: a resync also makes RxDB push every local document
//! again from a snapshot, racing the documents the feed hands over (see replicate.cjs).

use crate::batch::BatchBuilder;
use crate::connection::ConnectionEvent;
use crate::error::ReplicationError;
use crate::pull::{create_consumer, Start};
use crate::replication::Replication;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Mutex};
use tokio::task::JoinHandle;

/// Batches waiting for JavaScript; the feed waits while they are not taken (backpressure).
const EVENT_BUFFER: usize = 4;
const HEARTBEAT: Duration = Duration::from_secs(5);
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// What the live feed tells RxDB.
#[derive(Debug)]
pub enum LiveEvent {
    Batch {
        documents_json: String,
        sequences: Vec<u64>,
        checkpoint: u64,
        skipped: Vec<ReplicationError>,
    },
    Error(ReplicationError),
}

/// A running live feed.
pub struct LiveFeed {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    events: Arc<Mutex<mpsc::Receiver<LiveEvent>>>,
}

impl LiveFeed {
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the feed to stop; it deletes its consumer and then ends its event stream.
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }

    pub fn events(&self) -> Arc<Mutex<mpsc::Receiver<LiveEvent>>> {
        self.events.clone()
    }
}

pub fn start(replication: Arc<Replication>, batch_size: usize) -> LiveFeed {
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let (stop, stopped) = watch::channel(false);
    // Subscribed before the task runs, so a pull that ends meanwhile is not missed.
    let pulls = replication.caught_up_pulls();
    let task = tokio::spawn(run(replication, tx, stopped, pulls, batch_size));
    LiveFeed {
        task,
        stop,
        events: Arc::new(Mutex::new(rx)),
    }
}

/// Why the inner loop ended.
enum Break {
    Stop,
    Recreate,
}

async fn run(
    replication: Arc<Replication>,
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
    loop {
        if *stopped.borrow() {
            return;
        }
        let round = feed_once(&replication, &tx, &mut stopped, &mut last, batch_size);
        match round.await {
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
                let err = replication.explain(err).await;
                tracing::warn!(
                    code = err.code.as_str(),
                    "live feed failed, retrying: {}",
                    err.message
                );
                if tx.send(LiveEvent::Error(err)).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(replication.retry_time) => {}
                    _ = stopped.changed() => return,
                }
            }
        }
    }
}

async fn feed_once(
    replication: &Replication,
    tx: &mpsc::Sender<LiveEvent>,
    stopped: &mut watch::Receiver<bool>,
    last: &mut u64,
    batch_size: usize,
) -> Result<Break, ReplicationError> {
    let (conn, stream) = replication.connected().await?;
    let mut connection_events = conn.subscribe();
    let consumer = create_consumer(&stream, Start::At(*last + 1))
        .await
        .map_err(|e| ReplicationError::unavailable("creating the live consumer", &e))?;
    let consumer_name = consumer.cached_info().name.clone();
    tracing::debug!(consumer = %consumer_name, after = *last, "created the live consumer");
    let result = async {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(batch_size)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| ReplicationError::unavailable("starting the live consumer", &e))?;
        let mut delivered: u64 = 0;
        loop {
            let first = tokio::select! {
                _ = stopped.changed() => return Ok(Break::Stop),
                event = connection_events.recv() => match event {
                    Ok(ConnectionEvent::Reconnected) => return Ok(Break::Recreate),
                    Ok(ConnectionEvent::CredentialsRefused) => {
                        if tx.send(LiveEvent::Error(conn.refused_on_reconnect())).await.is_err() {
                            return Ok(Break::Stop);
                        }
                        continue;
                    }
                    Ok(ConnectionEvent::Disconnected) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Ok(Break::Recreate),
                },
                message = messages.next() => message,
            };
            let mut batch = BatchBuilder::new(*last);
            let mut next = first;
            let mut gap = false;
            // Take the first message and whatever else is already here, up to one batch.
            loop {
                match next {
                    None | Some(Err(_)) => return Ok(Break::Recreate),
                    Some(Ok(message)) => {
                        let info = match message.info() {
                            Ok(info) => (info.stream_sequence, info.consumer_sequence),
                            Err(_) => return Ok(Break::Recreate),
                        };
                        // Consumer sequences are contiguous: a jump means a lost delivery.
                        if info.1 != delivered + 1 {
                            gap = true;
                            break;
                        }
                        delivered = info.1;
                        batch.push(&replication.shape, message.subject.as_str(), info.0, message.payload.clone());
                    }
                }
                if batch.len() >= batch_size {
                    break;
                }
                match messages.next().now_or_never() {
                    Some(m) => next = m,
                    None => break,
                }
            }
            if batch.checkpoint > *last {
                tracing::debug!(after = *last, checkpoint = batch.checkpoint, documents = batch.len(), "live batch");
                *last = batch.checkpoint;
                let event = LiveEvent::Batch {
                    documents_json: replication.hand_over(&batch),
                    sequences: batch.sequences(),
                    checkpoint: batch.checkpoint,
                    skipped: replication.first_reports(std::mem::take(&mut batch.skipped)),
                };
                if tx.send(event).await.is_err() {
                    return Ok(Break::Stop);
                }
            }
            if gap {
                return Ok(Break::Recreate);
            }
        }
    }
    .await;
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        stream.delete_consumer(&consumer_name),
    )
    .await;
    result
}

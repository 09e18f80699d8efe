//! The live feed: one consumer per running replication, starting after the newest message when
//! the feed starts; messages arriving together become one batch event. After any break (a
//! reconnect, a lost consumer, a gap) the consumer is recreated after the last message taken.
//! A new consumer is followed by a `Resync` event whenever RxDB may lack messages before it
//! (after a break; on the first start, what landed between the initial pull and the consumer).

use crate::batch::BatchBuilder;
use crate::connection::ConnectionEvent;
use crate::error::ReplicationError;
use crate::pull::create_consumer;
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
        checkpoint: u64,
        skipped: Vec<ReplicationError>,
    },
    /// Messages may have been missed: pull from the last checkpoint.
    Resync,
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
    let task = tokio::spawn(run(replication, tx, stopped, batch_size));
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
    batch_size: usize,
) {
    // The last sequence taken; None until the feed knows where the stream ends.
    let mut last: Option<u64> = None;
    let mut first_round = true;
    loop {
        if *stopped.borrow() {
            return;
        }
        let round = feed_once(
            &replication,
            &tx,
            &mut stopped,
            &mut last,
            first_round,
            batch_size,
        );
        first_round = false;
        match round.await {
            Ok(Break::Stop) => return,
            Ok(Break::Recreate) => {}
            Err(err) => {
                let err = replication.explain(err).await;
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
    last: &mut Option<u64>,
    first_round: bool,
    batch_size: usize,
) -> Result<Break, ReplicationError> {
    let (conn, stream) = replication.connected().await?;
    let start_after = match *last {
        Some(seq) => seq,
        None => {
            let info = stream.get_info().await.map_err(|e| {
                ReplicationError::unavailable("reading the stream's last sequence", &e)
            })?;
            info.state.last_sequence
        }
    };
    *last = Some(start_after);
    let mut connection_events = conn.subscribe();
    let consumer = create_consumer(&stream, start_after + 1)
        .await
        .map_err(|e| ReplicationError::unavailable("creating the live consumer", &e))?;
    let consumer_name = consumer.cached_info().name.clone();
    // This consumer starts after `start_after`: what RxDB has not pulled up to there it must pull
    // now. After a break that is always possible; on the first start only if messages landed
    // after the initial pull's last read (a pull still running reads on past `start_after`).
    // A resync also pushes at once (RxDB skips `waitBeforePersist` for it): only when needed.
    let missed = !first_round || replication.counters.checkpoint() < start_after;
    if missed && tx.send(LiveEvent::Resync).await.is_err() {
        return Ok(Break::Stop);
    }
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
            let mut batch = BatchBuilder::new(last.unwrap_or(0));
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
            if batch.checkpoint > last.unwrap_or(0) {
                *last = Some(batch.checkpoint);
                let event = LiveEvent::Batch {
                    documents_json: replication.hand_over(&batch),
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
